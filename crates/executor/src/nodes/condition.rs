//! `condition`: branch on an expression.

use super::{NodeCx, NodeError, Step};
use hookflow_model::runtime::BlockId;
use hookflow_model::template::Expr;
use serde_json::Value as Json;

pub fn run(
    cx: &NodeCx<'_>,
    test: &Expr,
    then: Option<BlockId>,
    otherwise: Option<BlockId>,
    reject_on_false: bool,
) -> Result<Step, NodeError> {
    let truth = cx.workflow.templates.truth(test, cx.scope)?;
    if !truth && reject_on_false {
        return Err(NodeError(format!("condition `{}` is false", test.source)));
    }
    let branch = if truth { then } else { otherwise };
    Ok(Step::Enter(Json::Bool(truth), branch))
}
