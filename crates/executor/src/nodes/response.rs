//! `response`: answer the caller of a sync workflow.

use super::{NodeCx, NodeError, Step};
use crate::answer::Answer;
use hookflow_model::runtime::ResponseSpec;

pub fn run(cx: &NodeCx<'_>, spec: &ResponseSpec) -> Result<Step, NodeError> {
    Ok(Step::Respond(Answer::render(
        spec,
        &cx.workflow.templates,
        cx.scope,
    )?))
}
