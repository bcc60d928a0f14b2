//! `json_query`: JSONPath over a templated value.

use super::{NodeCx, NodeError, Step};
use hookflow_model::path::JsonPath;
use hookflow_model::template::ValueTemplate;
use serde_json::Value as Json;

pub fn run(
    cx: &NodeCx<'_>,
    source: &ValueTemplate,
    path: &JsonPath,
    first: bool,
) -> Result<Step, NodeError> {
    let mut value = cx.workflow.templates.eval_value(source, cx.scope)?;
    // A JSON document passed as text (e.g. a text body) is queried as JSON.
    if let Json::String(s) = &value {
        if let Ok(parsed) = serde_json::from_str::<Json>(s) {
            value = parsed;
        }
    }
    let matches = path.query(&value);
    Ok(Step::Next(if first {
        matches.into_iter().next().unwrap_or(Json::Null)
    } else {
        Json::Array(matches)
    }))
}
