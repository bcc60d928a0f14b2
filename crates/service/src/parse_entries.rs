//! A recorded run's request as parse entries: the run page's "parse entries
//! from this request", the same block as `hookflow sample --execution`.

use hookflow_store::ExecutionRecord;

/// The `parse:` block that extracts every leaf of the run's request, as
/// YAML; `None` when the record kept no request.
pub fn parse_entries(record: &ExecutionRecord) -> Option<Result<String, String>> {
    let trigger = record.trigger.as_ref()?;
    Some(
        hookflow_parser::sample::sample_recorded(trigger)
            .to_yaml()
            .map_err(|e| e.to_string()),
    )
}
