//! `log`: write a message to the run and the server log.

use super::{NodeCx, NodeError, Step};
use hookflow_model::def::LogLevel;
use hookflow_model::scrub::Escaped;
use hookflow_model::template::Text;
use serde_json::Value as Json;

pub fn run(cx: &NodeCx<'_>, message: &Text, level: LogLevel) -> Result<Step, NodeError> {
    let text = cx.workflow.templates.render(message, cx.scope)?;
    // The message may carry what the sender wrote: control characters are
    // escaped so that it cannot forge log lines.
    let scrubbed = crate::record::scrubbed(cx.headers, &text);
    let shown = Escaped(&scrubbed);
    match level {
        LogLevel::Debug => tracing::debug!(message = %shown, source = "workflow"),
        LogLevel::Info => tracing::info!(message = %shown, source = "workflow"),
        LogLevel::Warn => tracing::warn!(message = %shown, source = "workflow"),
        LogLevel::Error => tracing::error!(message = %shown, source = "workflow"),
    }
    Ok(Step::Next(Json::String(text)))
}
