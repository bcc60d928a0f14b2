//! `switch`: the first case whose expression is true.

use super::{NodeCx, NodeError, Step};
use hookflow_model::runtime::BlockId;
use hookflow_model::template::Expr;
use serde_json::Value as Json;

pub fn run(
    cx: &NodeCx<'_>,
    cases: &[(Expr, BlockId)],
    default: Option<BlockId>,
) -> Result<Step, NodeError> {
    for (i, (test, block)) in cases.iter().enumerate() {
        if cx.workflow.templates.truth(test, cx.scope)? {
            return Ok(Step::Enter(Json::from(i), Some(*block)));
        }
    }
    Ok(Step::Enter(Json::Null, default))
}
