//! The template variables of a run: what its templates read of the trigger,
//! the variables, the execution, the secrets and the results of finished nodes.

use crate::state::RunState;
use hookflow_model::runtime::Workflow;
use hookflow_model::template::{Scope, EXECUTION_STARTED_AT, EXECUTION_WORKFLOW};
use hookflow_store::{ExecutionRecord, RunInput, TriggerRequest};
use serde_json::Value as Json;

/// Builds the template variables of a run: those the workflow's templates
/// read (a payment callback's templates seldom read the whole trigger
/// context, and copying it was ~6 % of a small sync run's instructions).
/// `vars` is taken, not copied.
pub fn scope_for(
    workflow: &Workflow,
    record: &ExecutionRecord,
    trigger: &TriggerRequest,
    vars: Json,
    state: &RunState,
) -> Scope {
    let reads = |name| workflow.templates.reads(name);
    let mut scope = Scope::new();
    if reads("trigger") {
        scope.set_owned("trigger", trigger.to_json());
    }
    if reads("vars") {
        scope.set_owned("vars", vars);
    }
    if reads("execution") {
        // Its fields besides the id are made only when a template reads
        // them (a formatted start time is a few hundred instructions).
        let mut execution = serde_json::Map::new();
        execution.insert("id".into(), Json::String(record.id.clone()));
        if reads(EXECUTION_WORKFLOW) {
            execution.insert("workflow".into(), Json::String(record.workflow.clone()));
        }
        if reads(EXECUTION_STARTED_AT) {
            execution.insert(
                "started_at".into(),
                Json::String(record.started_at.to_string()),
            );
        }
        scope.set_owned("execution", Json::Object(execution));
    }
    if reads("secrets") {
        scope.set_owned("secrets", workflow.secret_values());
    }
    if reads("nodes") {
        for (k, v) in &state.results {
            scope.set_node(k, v);
        }
    }
    scope
}

/// [`scope_for`] of an input the caller keeps (its `vars` copied).
pub fn scope_copying(
    workflow: &Workflow,
    record: &ExecutionRecord,
    input: &RunInput,
    state: &RunState,
) -> Scope {
    scope_for(workflow, record, &input.trigger, input.vars.clone(), state)
}
