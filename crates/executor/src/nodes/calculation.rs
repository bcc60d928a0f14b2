//! `calculation`: the value of an expression.

use super::{NodeCx, NodeError, Step};
use hookflow_model::template::Expr;

pub fn run(cx: &NodeCx<'_>, expression: &Expr) -> Result<Step, NodeError> {
    Ok(Step::Next(
        cx.workflow.templates.eval(expression, cx.scope)?,
    ))
}
