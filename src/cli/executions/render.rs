//! Runs as a terminal shows them: a table of runs with aligned columns, a
//! run as a page (its request, each node with each try, its answer).

use hookflow_model::time::parse_rfc3339;
use serde_json::Value as Json;

/// Longest text of a result or a body shown on one line.
const SHORT: usize = 100;

/// A table with aligned columns (the last one is not padded).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time as `2026-01-31 10:02:00`.
fn when(v: &Json) -> String {
    match v.as_str() {
        Some(s) => s.get(..19).unwrap_or(s).replace('T', " "),
        None => "-".to_string(),
    }
}

/// Milliseconds as `850ms`, `1.2s`, `3m04s`.
fn duration_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// How long a run took, or `-` while it runs.
fn took(started: &Json, finished: &Json) -> String {
    let at = |v: &Json| v.as_str().and_then(parse_rfc3339);
    match (at(started), at(finished)) {
        (Some(s), Some(f)) => duration_ms(f.saturating_sub(s)),
        _ => "-".to_string(),
    }
}

/// A value on one line, cut to `max` characters.
fn short(v: &Json, max: usize) -> String {
    let t = match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    if t.chars().count() > max {
        format!("{}…", t.chars().take(max).collect::<String>())
    } else {
        t
    }
}

/// `executions list`.
pub fn list(page: &Json) {
    let rows: Vec<Vec<String>> = page["executions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            vec![
                text(&r["id"]),
                text(&r["workflow"]),
                text(&r["status"]),
                text(&r["response_status"]),
                when(&r["started_at"]),
                took(&r["started_at"], &r["finished_at"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no runs match");
        return;
    }
    println!(
        "{}",
        table(
            &["ID", "WORKFLOW", "STATUS", "HTTP", "STARTED", "DURATION"],
            &rows
        )
    );
    if !page["next_cursor"].is_null() {
        println!("(older runs too: raise --limit or narrow the filter with --since/--until)");
    }
}

/// `executions show`.
pub fn show(r: &Json) {
    let mut head = vec![
        ("execution", text(&r["id"])),
        (
            "workflow",
            format!("{} (version {})", text(&r["workflow"]), text(&r["version"])),
        ),
        ("status", text(&r["status"])),
        ("started", when(&r["started_at"])),
        ("duration", took(&r["started_at"], &r["finished_at"])),
    ];
    if let Some(status) = r["response"]["status"].as_u64() {
        head.push(("answered", status.to_string()));
    }
    if !r["retry_of"].is_null() {
        head.push(("retry of", text(&r["retry_of"])));
    }
    if !r["error"].is_null() {
        head.push(("error", text(&r["error"])));
    }
    for (name, value) in head {
        println!("{name:<10} {value}");
    }
    let t = &r["trigger"];
    if t.is_object() {
        println!("\nrequest");
        let query = t["query"].as_object().filter(|q| !q.is_empty());
        println!(
            "  {} {}{}",
            text(&t["method"]),
            text(&t["path"]),
            query
                .map(|q| format!("  query {}", Json::Object(q.clone())))
                .unwrap_or_default()
        );
        if let Some(headers) = t["headers"].as_object() {
            for (name, value) in headers {
                println!("  {name}: {}", text(value));
            }
        }
        if !t["body"].is_null() {
            let body = serde_json::to_string_pretty(&t["body"]).unwrap_or_default();
            for line in body.lines() {
                println!("  {line}");
            }
        }
    }
    let jobs = r["jobs"].as_array().map(Vec::as_slice).unwrap_or_default();
    println!("\nnodes");
    if jobs.is_empty() {
        println!("  (none ran)");
    } else {
        let mut rows = Vec::new();
        for j in jobs {
            let outcome = if !j["error"].is_null() {
                text(&j["error"])
            } else if j["type"] == "request" && j["result"]["status"].is_u64() {
                let r = &j["result"];
                format!("{} {}", r["status"], short(&r["body"], SHORT - 4))
            } else {
                short(&j["result"], SHORT)
            };
            rows.push(vec![
                text(&j["key"]),
                text(&j["type"]),
                text(&j["status"]),
                duration_ms(j["duration_ms"].as_u64().unwrap_or(0)),
                outcome,
            ]);
            for t in j["tries"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let what = if t["error"].is_null() {
                    format!("{} {}", text(&t["status"]), short(&t["body"], SHORT - 10))
                } else {
                    text(&t["error"])
                };
                rows.push(vec![
                    String::new(),
                    format!("  try {}", text(&t["attempt"])),
                    text(&t["outcome"]),
                    duration_ms(t["duration_ms"].as_u64().unwrap_or(0)),
                    what,
                ]);
            }
        }
        let table = table(
            &["KEY", "TYPE", "STATUS", "DURATION", "RESULT OR ERROR"],
            &rows,
        );
        for line in table.lines() {
            println!("  {line}");
        }
    }
    let answer = &r["response"];
    if answer.is_object() {
        println!("\nanswer {}", text(&answer["status"]));
        let body = serde_json::to_string_pretty(&answer["body"]).unwrap_or_default();
        for line in body.lines() {
            println!("  {line}");
        }
    }
}

/// `executions retry`.
pub fn retried(answer: &Json) {
    if let Some(id) = answer["execution_id"].as_str() {
        println!("started execution {id}");
        return;
    }
    let ids = answer["execution_ids"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    println!("started {} runs", ids.len());
    for id in ids {
        println!("  {}", text(id));
    }
    if let Some(message) = answer["message"].as_str() {
        println!("{message}");
    }
    if let Some(n) = answer["already_retried"].as_u64() {
        println!("{n} matching runs were retried before (their latest retry stands for them)");
    }
    if let Some(n) = answer["already_answered"].as_u64() {
        println!(
            "{n} matching runs were not retried: another run answered their idempotency key with a 2xx since"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = table(
            &["ID", "STATUS", "HTTP"],
            &[
                vec!["a".into(), "resolved".into(), "200".into()],
                vec!["bbbb".into(), "failed".into(), "-".into()],
            ],
        );
        assert_eq!(
            t,
            "ID    STATUS    HTTP\na     resolved  200\nbbbb  failed    -"
        );
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(1250), "1.2s");
        assert_eq!(duration_ms(184_000), "3m04s");
        assert_eq!(
            when(&Json::from("2026-01-31T10:02:00.123Z")),
            "2026-01-31 10:02:00"
        );
    }
}
