//! Writing YAML (`hookflow sample`, `hookflow new`, test cases from runs):
//! serde types to text through the YAML library, never by hand.

use serde::Serialize;

pub use serde_saphyr::{FlowMap, FlowSeq};

/// Why a value could not be written as YAML.
#[derive(Debug, thiserror::Error)]
#[error("cannot write YAML: {0}")]
pub struct WriteError(String);

/// `value` as a YAML document, written by the YAML crate (never by joining
/// text): strings that would read back as another type are quoted.
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, WriteError> {
    serde_saphyr::to_string(value).map_err(|e| WriteError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_what_reads_back() {
        #[derive(Serialize)]
        struct Doc {
            entries: Vec<FlowMap<serde_json::Value>>,
        }
        let doc = Doc {
            entries: vec![FlowMap(json!({"key": "values.申请人", "alias": "a: b #c"}))],
        };
        let text = to_yaml(&doc).expect("writes");
        assert!(text.contains("- {"), "{text}");
        let back: serde_json::Value = serde_saphyr::from_str(&text).expect("reads back");
        assert_eq!(
            back,
            json!({"entries": [{"key": "values.申请人", "alias": "a: b #c"}]})
        );
    }
}
