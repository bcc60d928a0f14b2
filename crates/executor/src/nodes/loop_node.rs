//! `loop`: run a block once per item of a list, per integer below n, or per character.

use super::{NodeCx, NodeError, Step};
use hookflow_model::runtime::BlockId;
use hookflow_model::template::Expr;
use serde_json::Value as Json;

pub fn run(
    cx: &NodeCx<'_>,
    over: &Expr,
    body: BlockId,
    max_iterations: u64,
) -> Result<Step, NodeError> {
    let value = cx.workflow.templates.eval(over, cx.scope)?;
    let items: Vec<Json> = match value {
        Json::Array(items) => items,
        Json::Number(n) => {
            let count = n.as_u64().ok_or_else(|| {
                NodeError(format!(
                    "`over` must be a list, a whole number or a string; got {n}"
                ))
            })?;
            if count > max_iterations {
                return Err(too_many(count, max_iterations));
            }
            (0..count).map(Json::from).collect()
        }
        Json::String(s) => s.chars().map(|c| Json::String(c.to_string())).collect(),
        Json::Null => Vec::new(),
        other => {
            return Err(NodeError(format!(
                "`over` must be a list, a whole number or a string; got {}",
                match other {
                    Json::Bool(_) => "a boolean",
                    _ => "an object",
                }
            )))
        }
    };
    let count = items.len() as u64;
    if count > max_iterations {
        return Err(too_many(count, max_iterations));
    }
    Ok(Step::Loop { items, body })
}

fn too_many(count: u64, max: u64) -> NodeError {
    NodeError(format!(
        "the loop has {count} iterations, more than max_iterations ({max})"
    ))
}
