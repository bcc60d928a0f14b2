//! `end`: finish the run as resolved or failed.

use super::{NodeCx, NodeError, Step};
use hookflow_model::def::EndStatus;
use hookflow_model::template::Text;

pub fn run(cx: &NodeCx<'_>, status: EndStatus, message: Option<&Text>) -> Result<Step, NodeError> {
    let message = match message {
        Some(m) => Some(cx.workflow.templates.render(m, cx.scope)?),
        None => None,
    };
    Ok(Step::End {
        resolved: status == EndStatus::Resolved,
        message,
    })
}
