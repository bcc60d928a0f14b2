//! `delay`: wait durably (async runs only), holding no worker.

use super::{NodeCx, NodeError, Step};
use hookflow_model::runtime::DelayWait;
use hookflow_model::time::{now_millis, parse_rfc3339};

pub fn run(cx: &NodeCx<'_>, wait: &DelayWait) -> Result<Step, NodeError> {
    let until_ms = match wait {
        DelayWait::For(d) => {
            now_millis().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        DelayWait::Until(text) => {
            let when = cx.workflow.templates.render(text, cx.scope)?;
            parse_rfc3339(when.trim())
                .ok_or_else(|| NodeError(format!("`until` is not an RFC 3339 time: `{when}`")))?
        }
    };
    Ok(Step::Wait { until_ms })
}
