//! A JSON answer parsed into a value, within a memory budget and off the
//! runtime's threads when it is large.
//!
//! A parsed value is many times its text: every object is a map node of a
//! few hundred bytes, every value 32 bytes. A 10 MiB answer of small
//! objects took ~600 MB and stalled the runtime's two threads while it
//! parsed; the bytes read are capped (`MAX_RESPONSE_BODY`, 10 MiB), what
//! they would become is estimated here before parsing.

use serde_json::Value as Json;

/// Answers up to this size parse on the runtime's thread (a few
/// microseconds); larger ones on the blocking pool.
const INLINE: usize = 64 * 1024;

/// The most memory a parsed answer may be estimated to take.
const BUDGET: usize = 64 * 1024 * 1024;

/// What one object is counted at: a map's first node (serde_json's maps
/// are B-trees of eleven entries a node) and its value.
const PER_OBJECT: usize = 640;
/// What one value (or array) is counted at.
const PER_VALUE: usize = 32;

/// The answer as a value; its text as a string when it is not JSON; an
/// error when it would take more than [`BUDGET`].
pub(super) async fn parse(bytes: Vec<u8>) -> Result<Json, String> {
    if bytes.len() <= INLINE {
        return Ok(parse_now(&bytes));
    }
    tokio::task::spawn_blocking(move || {
        let needs = estimate(&bytes);
        if needs > BUDGET {
            return Err(format!(
                "the JSON answer ({} bytes) would take about {} MiB once parsed, more than the {} MiB \
                 an answer may: ask the API for fewer items (a page at a time)",
                bytes.len(),
                needs / (1024 * 1024),
                BUDGET / (1024 * 1024)
            ));
        }
        Ok(parse_now(&bytes))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the JSON answer could not be parsed: {e}")))
}

fn parse_now(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The memory `bytes` would take parsed, from one pass over its
/// structure: objects, and values (commas and opening brackets outside
/// strings count one each).
fn estimate(bytes: &[u8]) -> usize {
    let mut objects = 0usize;
    let mut values = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => {
                objects += 1;
                values += 1;
            }
            b'[' | b',' => values += 1,
            _ => {}
        }
    }
    objects
        .saturating_mul(PER_OBJECT)
        .saturating_add(values.saturating_mul(PER_VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_structure_outside_strings() {
        // One object, its two values, the outer value.
        let small = estimate(br#"{"a": 1, "b": "x,{[y"}"#);
        assert_eq!(small, PER_OBJECT + 3 * PER_VALUE);
        let escaped = estimate(br#"["a\",{", 2]"#);
        assert_eq!(escaped, 3 * PER_VALUE);
    }

    #[tokio::test]
    async fn answers_within_the_budget_parse_and_others_are_refused() {
        let ok = serde_json::to_vec(&serde_json::json!({"items": vec![1; 50_000]})).expect("json");
        assert!(ok.len() > INLINE);
        let parsed = parse(ok).await.expect("parses");
        assert_eq!(parsed["items"].as_array().map(Vec::len), Some(50_000));
        // 2 MiB of empty objects: 350,000 maps.
        let many = format!("[{}{{}}]", "{},".repeat(350_000)).into_bytes();
        let refused = parse(many).await.expect_err("over the budget");
        assert!(refused.contains("fewer items"), "{refused}");
        // Not JSON after all: its text.
        let text = vec![b'x'; INLINE + 1];
        assert_eq!(
            parse(text).await.expect("text").as_str().map(str::len),
            Some(INLINE + 1)
        );
    }
}
