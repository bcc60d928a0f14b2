//! The authoring commands: `hookflow sample` (NocoBase's "parse" button) and
//! `hookflow new`.

use crate::harness::TestApp;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::process::{Command, Output};

fn hookflow_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the hookflow binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workflows/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// One sample: the flags given to `sample`, and the request the server gets.
struct Seed {
    id: &'static str,
    body_file: Option<String>,
    body: String,
    headers: Vec<(&'static str, &'static str)>,
    query: &'static str,
    /// The query as the run decodes it (written by hand: the oracle).
    query_json: Json,
}

impl Seed {
    fn file(id: &'static str, name: &str, headers: Vec<(&'static str, &'static str)>) -> Seed {
        let path = fixture(name);
        let body = std::fs::read_to_string(&path).expect("fixture");
        Seed {
            id,
            body_file: Some(path),
            body,
            headers,
            query: "",
            query_json: json!({}),
        }
    }
}

fn seeds(tmp: &Path) -> Vec<Seed> {
    let nocobase = tmp.join("nocobase.json");
    std::fs::write(&nocobase, r#"{"a": 1, "b": {"c": 2}}"#).expect("write");
    vec![
        Seed::file("steedos", "steedos-draft-submit.json", vec![]),
        Seed::file(
            "skylark-assignment",
            "skylark-assignment.json",
            vec![("X-Slp-Event", "AssignmentEvent")],
        ),
        Seed::file(
            "skylark-response",
            "skylark-response.json",
            vec![("X-Slp-Event", "ResponseEvent")],
        ),
        Seed::file(
            "skylark-member",
            "skylark-member.json",
            vec![("X-Slp-Event", "MemberEvent")],
        ),
        Seed::file("meowflow", "meowflow-event.json", vec![]),
        Seed::file("feishu", "feishu-approval-approved.json", vec![]),
        // NocoBase's own example: a body and a pasted URL with nested and
        // repeated query parameters.
        Seed {
            id: "nocobase",
            body_file: Some(nocobase.to_string_lossy().into_owned()),
            body: r#"{"a": 1, "b": {"c": 2}}"#.into(),
            headers: vec![("X-Request-Id", "r-1")],
            query: "query=1&tag=x&tag=y&filter[status]=paid&items[0][sku]=A&items[1][sku]=B",
            query_json: json!({"query": "1", "tag": ["x", "y"], "filter": {"status": "paid"},
                               "items": [{"sku": "A"}, {"sku": "B"}]}),
        },
    ]
}

/// The value at a key of a parse entry, found without hookflow's code: a
/// dotted path as a JSON pointer, a JSONPath (`.name`, `['name']`, `[*]`)
/// by walking every match.
fn expected_at(key: &str, doc: &Json) -> Option<Json> {
    let Some(path) = key.strip_prefix('$') else {
        let pointer: String = key
            .split('.')
            .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
            .collect();
        return doc.pointer(&pointer).cloned();
    };
    let mut current = vec![doc.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[*]") {
            current = current
                .into_iter()
                .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                .collect();
            rest = r;
        } else if let Some(r) = rest.strip_prefix("['") {
            let mut name = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => name.extend(chars.next().map(|(_, c)| c)),
                    Some((i, '\'')) => break i,
                    Some((_, c)) => name.push(c),
                    None => panic!("unclosed name in {key}"),
                }
            };
            current = current
                .iter()
                .filter_map(|v| v.get(&name).cloned())
                .collect();
            rest = r[end + 1..].strip_prefix(']').expect("closing bracket");
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            current = current
                .iter()
                .filter_map(|v| v.get(&r[..end]).cloned())
                .collect();
            rest = &r[end..];
        } else {
            panic!("unexpected JSONPath {key}");
        }
    }
    (!current.is_empty()).then_some(Json::Array(current))
}

#[test]
fn sample_entries_of_every_seed_payload_extract_the_sample_values() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seeds = seeds(tmp.path());
    let mut files = Vec::new();
    let mut entries_of = Vec::new();
    for seed in &seeds {
        let mut args = vec!["sample".to_string()];
        if let Some(f) = &seed.body_file {
            args.extend(["--body".into(), f.clone()]);
        }
        for (n, v) in &seed.headers {
            args.extend(["-H".into(), format!("{n}: {v}")]);
        }
        if !seed.query.is_empty() {
            args.extend([
                "--url".into(),
                format!(
                    "http://localhost:13000/api/webhook:trigger/1hfmkioou0d?{}",
                    seed.query
                ),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let yaml = hookflow_in(tmp.path(), &args);
        assert!(yaml.status.success(), "{}", text(&yaml.stderr));
        let block = text(&yaml.stdout);
        assert!(block.starts_with("parse:\n"), "{block}");
        let mut json_args = args.clone();
        json_args.extend(["--format", "json"]);
        let listed = hookflow_in(tmp.path(), &json_args);
        assert!(listed.status.success(), "{}", text(&listed.stderr));
        let entries: Vec<Json> = serde_json::from_slice(&listed.stdout).expect("a JSON list");
        assert!(
            entries.len() >= 3 || seed.id == "nocobase",
            "{}: {entries:?}",
            seed.id
        );
        // The printed block, pasted under `trigger:`, answering with every variable.
        let indented: String = block.lines().map(|l| format!("  {l}\n")).collect();
        let workflow = format!(
            "title: {id}\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: sample-{id}\n{indented}nodes:\n  - type: response\n    body: \"{{{{ vars }}}}\"\n",
            id = seed.id
        );
        files.push((format!("{}.yaml", seed.id), workflow));
        entries_of.push(entries);
    }
    // The blocks validate as written.
    let dir = tmp.path().join("workflows");
    std::fs::create_dir(&dir).expect("mkdir");
    for (name, workflow) in &files {
        std::fs::write(dir.join(name), workflow).expect("write");
    }
    let validated = hookflow_in(tmp.path(), &["validate", "workflows"]);
    assert!(
        validated.status.success(),
        "{}{}",
        text(&validated.stdout),
        text(&validated.stderr)
    );
    // Served, each alias holds the sample's value.
    let named: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, w)| (n.as_str(), w.as_str()))
        .collect();
    let app = TestApp::spawn(&named);
    for (seed, entries) in seeds.iter().zip(&entries_of) {
        let mut headers = seed.headers.clone();
        headers.push(("content-type", "application/json"));
        let key = if seed.query.is_empty() {
            format!("sample-{}", seed.id)
        } else {
            format!("sample-{}?{}", seed.id, seed.query)
        };
        let resp = app.post(&key, &headers, &seed.body);
        assert_eq!(resp.status, 200, "{}: {}", seed.id, resp.body);
        let vars = resp.json();
        let body: Json = serde_json::from_str(&seed.body).expect("sample JSON");
        let mut checked = 0;
        for e in entries {
            let alias = e["alias"].as_str().expect("alias");
            let key = e["key"].as_str().expect("key");
            let expected = match e["part"].as_str() {
                Some("headers") => seed
                    .headers
                    .iter()
                    .find(|(n, _)| *n == key)
                    .map(|(_, v)| json!(v)),
                Some("query") => expected_at(key, &seed.query_json),
                Some("body") => expected_at(key, &body),
                other => panic!("unknown part {other:?}"),
            };
            let expected =
                expected.unwrap_or_else(|| panic!("{}: {key} is in the sample", seed.id));
            assert_eq!(vars[alias], expected, "{}: {key} as {alias}", seed.id);
            checked += 1;
        }
        assert_eq!(checked, entries.len());
        assert!(
            vars.as_object().expect("vars").len() == entries.len(),
            "{}: one variable per entry: {vars}",
            seed.id
        );
    }
    // Chinese keys and number keys were among them.
    let all: Vec<&str> = entries_of
        .iter()
        .flatten()
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert!(all.iter().any(|k| k.contains("cached_values['")), "{all:?}");
    assert!(all.iter().any(|k| k.contains("[*]")), "{all:?}");
}

#[test]
fn sample_reads_forms_and_non_ascii_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("form.txt"),
        "out_trade_no=A-1&total_amount=12.50&%E7%94%B3%E8%AF%B7%E4%BA%BA=%E5%BC%A0%E4%B8%89",
    )
    .expect("write");
    std::fs::write(
        tmp.path().join("cn.json"),
        r#"{"values": {"申请人": "张三", "金额": 12}, "a.b": true}"#,
    )
    .expect("write");
    let form = hookflow_in(
        tmp.path(),
        &["sample", "--body", "form.txt", "--format", "json"],
    );
    assert!(form.status.success(), "{}", text(&form.stderr));
    let entries: Vec<Json> = serde_json::from_slice(&form.stdout).expect("JSON");
    assert!(entries.iter().all(|e| e["type"] == "string"), "{entries:?}");
    assert!(entries.iter().any(|e| e["key"] == "申请人"), "{entries:?}");
    let cn = hookflow_in(tmp.path(), &["sample", "--body", "cn.json"]);
    let block = text(&cn.stdout);
    assert!(block.contains("values.申请人"), "{block}");
    assert!(block.contains("$['a.b']"), "{block}");
    // Served: the form and the odd keys really extract.
    let workflow = |key: &str, block: &str| {
        let indented: String = block.lines().map(|l| format!("  {l}\n")).collect();
        format!("title: t\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: {key}\n{indented}nodes:\n  - type: response\n    body: \"{{{{ vars }}}}\"\n")
    };
    let form_block = text(&hookflow_in(tmp.path(), &["sample", "--body", "form.txt"]).stdout);
    let app = TestApp::spawn(&[
        ("form.yaml", &workflow("sample-form", &form_block)),
        ("cn.yaml", &workflow("sample-cn", &block)),
    ]);
    let resp = app.post(
        "sample-form",
        &[("content-type", "application/x-www-form-urlencoded")],
        "out_trade_no=A-1&total_amount=12.50&%E7%94%B3%E8%AF%B7%E4%BA%BA=%E5%BC%A0%E4%B8%89",
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let vars = resp.json();
    assert_eq!(vars["out_trade_no"], "A-1");
    assert_eq!(vars["total_amount"], "12.50");
    assert!(
        vars.as_object()
            .expect("vars")
            .values()
            .any(|v| v == "张三"),
        "{vars}"
    );
    let resp = app.post(
        "sample-cn",
        &[("content-type", "application/json")],
        r#"{"values": {"申请人": "张三", "金额": 12}, "a.b": true}"#,
    );
    let vars = resp.json();
    let values: Vec<&Json> = vars.as_object().expect("vars").values().collect();
    assert!(values.contains(&&json!("张三")), "{vars}");
    assert!(values.contains(&&json!(12)), "{vars}");
    assert!(values.contains(&&json!([true])), "{vars}");
}

#[test]
fn new_writes_a_workflow_and_test_that_validate_and_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let steedos = fixture("steedos-draft-submit.json");
    std::fs::write(
        tmp.path().join("alipay.txt"),
        "out_trade_no=A1&total_amount=9.90",
    )
    .expect("write");
    let runs: Vec<Vec<&str>> = vec![
        vec!["new", "plain"],
        vec!["new", "plain-sync", "--mode", "sync"],
        vec![
            "new",
            "steedos-sync",
            "--mode",
            "sync",
            "--sample",
            &steedos,
        ],
        vec![
            "new",
            "steedos-async",
            "--sample",
            &steedos,
            "--verify",
            "hmac",
        ],
        vec![
            "new",
            "pay",
            "--mode",
            "sync",
            "--sample",
            "alipay.txt",
            "--verify",
            "alipay",
        ],
        vec!["new", "lark", "--verify", "feishu"],
        vec!["new", "wx", "--mode", "sync", "--verify", "wechatpay_v3"],
    ];
    for args in &runs {
        let out = hookflow_in(tmp.path(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let said = text(&out.stdout);
        assert!(
            said.contains("next:") && said.contains("enabled: true"),
            "{said}"
        );
        if args.contains(&"--verify") {
            assert!(said.contains("export "), "names the secret to set: {said}");
        }
    }
    let workflows = tmp.path().join("workflows");
    let sync = std::fs::read_to_string(workflows.join("steedos-sync.yaml")).expect("written");
    assert!(sync.contains("enabled: false"), "{sync}");
    assert!(sync.contains("$.to_users[*].email"), "{sync}");
    let hmac = std::fs::read_to_string(workflows.join("steedos-async.yaml")).expect("written");
    assert!(
        hmac.contains("secrets: [STEEDOS_ASYNC_SECRET]") && hmac.contains("preset: hmac"),
        "{hmac}"
    );
    let validated = hookflow_in(tmp.path(), &["validate", "workflows"]);
    let said = text(&validated.stdout) + &text(&validated.stderr);
    assert!(validated.status.success(), "{said}");
    assert!(!said.contains(": error:"), "{said}");
    let tested = hookflow_in(tmp.path(), &["test", "workflows"]);
    let said = text(&tested.stdout) + &text(&tested.stderr);
    assert!(tested.status.success(), "{said}");
    assert!(
        said.contains(&format!("{} passed, 0 failed", runs.len())),
        "{said}"
    );
    // The sync answer shows the first variable, and its test expects the sample's value.
    let test = std::fs::read_to_string(workflows.join("steedos-sync.test.yaml")).expect("written");
    assert!(test.contains("action: draft_submit"), "{test}");

    // Never overwrites, whatever exists.
    let before = std::fs::read_to_string(workflows.join("plain.yaml")).expect("written");
    let again = hookflow_in(tmp.path(), &["new", "plain", "--mode", "sync"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(workflows.join("plain.yaml")).expect("kept"),
        before
    );
    std::fs::remove_file(workflows.join("plain-sync.yaml")).expect("rm");
    let test_left = hookflow_in(tmp.path(), &["new", "plain-sync"]);
    assert!(
        !test_left.status.success(),
        "a test file of that id is not overwritten either"
    );
    assert!(!workflows.join("plain-sync.yaml").exists());
    let bad = hookflow_in(tmp.path(), &["new", "Bad Id"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("cannot be a workflow id"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn the_readme_starts_a_workflow_with_new_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let section = readme
        .split("### Your own workflow")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a section on starting a workflow");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block");
    // A copy of the repository's workflows folder, as a newcomer has it.
    let tmp = tempfile::tempdir().expect("tempdir");
    let workflows = tmp.path().join("workflows");
    std::fs::create_dir_all(workflows.join("fixtures")).expect("mkdir");
    for entry in std::fs::read_dir(repo.join("workflows/fixtures")).expect("fixtures") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            workflows.join("fixtures").join(entry.file_name()),
        )
        .expect("copy");
    }
    let mut said = String::new();
    let mut ran = 0;
    for line in block.lines() {
        if let Some(expected) = line.strip_prefix("# ") {
            assert!(said.contains(expected), "`{expected}` is not in:\n{said}");
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"hookflow"), "{line}");
        let out = hookflow_in(tmp.path(), &words[1..]);
        said = text(&out.stdout) + &text(&out.stderr);
        assert!(out.status.success(), "{line}:\n{said}");
        ran += 1;
    }
    assert_eq!(ran, 3, "{block}");
}

#[test]
fn sample_of_a_recorded_run_gives_the_same_entries_from_the_server_or_the_store() {
    let workflow = "title: log\nenabled: true\ntrigger:\n  type: webhook\n  mode: sync\n  key: sample-recorded\n  auth:\n    basic: { username: shop, password: s3cret-pass }\nnodes:\n  - type: response\n    body: ok\n";
    let mut app = TestApp::spawn(&[("log.yaml", workflow)]);
    let body =
        r#"{"事件": "审批", "order": {"id": "A-1", "items": [{"sku": "x"}]}, "amount": 9.5}"#;
    let resp = app.post(
        "sample-recorded?source=shop&tag=a&tag=b",
        &[
            ("content-type", "application/json"),
            ("authorization", "Basic c2hvcDpzM2NyZXQtcGFzcw=="),
            ("X-Slp-Event", "ResponseEvent"),
            ("X-Api-Token", "tok-123456"),
        ],
        body,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let id = resp.execution();
    let tmp = tempfile::tempdir().expect("tempdir");
    let from_server = hookflow_in(
        tmp.path(),
        &[
            "sample",
            "--execution",
            &id,
            "--server",
            &app.base,
            "--admin-token",
            crate::harness::ADMIN,
        ],
    );
    let block = text(&from_server.stdout);
    assert!(
        from_server.status.success(),
        "{}",
        text(&from_server.stderr)
    );
    let lines: Vec<&str> = block.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` is not in:\n{block}"))
    };
    position("{key: x-slp-event, alias: x_slp_event, type: string}");
    position("{key: source, alias: source, type: string}");
    position("{key: \"$.tag[*]\", alias: tag, type: string}");
    position("{key: \"$.order.items[*].sku\", alias: order_items_sku, type: string}");
    position("{key: amount, alias: amount, type: number}");
    // The body's own order, not sorted.
    assert!(position("key: 事件") < position("key: order.id"), "{block}");
    assert!(
        position("key: order.id") < position("key: amount"),
        "{block}"
    );
    for absent in [
        "authorization",
        "content-type",
        "host",
        "x-api-token",
        "user-agent",
    ] {
        assert!(
            !block.contains(&format!("key: {absent}")),
            "{absent}: {block}"
        );
    }
    // The run page's "parse entries" asks the admin API for the same block.
    let page = app.admin_get(&format!("/api/executions/{id}/parse-entries"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body, block);
    assert_eq!(
        app.get(&format!("/api/executions/{id}/parse-entries"))
            .status,
        401
    );
    // The same from the data folder once no server runs.
    let mut child = app.sigterm();
    let _ = child.wait();
    let data = app.data_path().to_string_lossy().into_owned();
    let from_store = hookflow_in(
        tmp.path(),
        &[
            "sample",
            "--execution",
            &id,
            "--data",
            &data,
            "--listen",
            "127.0.0.1:1",
        ],
    );
    assert!(from_store.status.success(), "{}", text(&from_store.stderr));
    assert_eq!(text(&from_store.stdout), block);
    let unknown = hookflow_in(
        tmp.path(),
        &[
            "sample",
            "--execution",
            "no-such-run",
            "--data",
            &data,
            "--listen",
            "127.0.0.1:1",
        ],
    );
    assert!(!unknown.status.success());
}

/// `serve` lists every file it does not serve at start, also those that
/// are no workflow of their own: a file name that is no id, a second file
/// with an id already used. Before, these two were only in the log.
#[test]
fn serve_lists_every_file_it_does_not_serve() {
    let flow = "title: D\nenabled: true\ntrigger: { type: webhook }\nnodes:\n  - { type: log, message: a }\n";
    let app = TestApp::spawn(&[("Upper.yaml", flow), ("dup.yaml", flow), ("dup.yml", flow)]);
    let line = |name: &str| {
        app.banner
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not listed: {:#?}", app.banner))
            .clone()
    };
    assert!(line("dup").contains("async"), "{:#?}", app.banner);
    let upper = line("Upper.yaml");
    assert!(
        upper.contains("not served: workflow id `Upper` (the file name) must match"),
        "{upper}"
    );
    let second = line("dup.yml");
    assert!(
        second.contains("not served: workflow id `dup` is already used by"),
        "{second}"
    );
}
