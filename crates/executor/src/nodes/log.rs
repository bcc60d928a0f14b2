//! `log`: write a message to the run and the server log.

use super::{NodeCx, NodeError, Step};
use hookflow_model::def::LogLevel;
use hookflow_model::template::Text;
use serde_json::Value as Json;

pub fn run(cx: &NodeCx<'_>, message: &Text, level: LogLevel) -> Result<Step, NodeError> {
    let text = cx.workflow.templates.render(message, cx.scope)?;
    match level {
        LogLevel::Debug => tracing::debug!(message = %text, source = "workflow"),
        LogLevel::Info => tracing::info!(message = %text, source = "workflow"),
        LogLevel::Warn => tracing::warn!(message = %text, source = "workflow"),
        LogLevel::Error => tracing::error!(message = %text, source = "workflow"),
    }
    Ok(Step::Next(Json::String(text)))
}
