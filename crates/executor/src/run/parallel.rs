//! The bookkeeping of parallel nodes: a branch's outcome is recorded, and the
//! parallel node is decided once its mode can tell, cancelling the branches left.

use super::{node_failure, Ending, Run, Running};
use crate::state::{stack_at, stack_at_mut, Branch, BranchOutcome, Frame};
use hookflow_model::def::{OnError, ParallelMode};
use hookflow_model::time::now_millis;
use hookflow_store::JobStatus;
use serde_json::{json, Value as Json};

impl Run {
    /// A node failed on the stack at `path`: the run fails, or the branch does.
    pub(super) fn stack_failed(
        &mut self,
        path: &[(usize, usize)],
        error: String,
        running: &mut Running,
    ) -> Option<Ending> {
        if path.is_empty() {
            Some(Ending::Failed(error))
        } else {
            self.branch_ended(path, BranchOutcome::Failed { error }, running)
        }
    }

    /// Records a branch's outcome and decides its parallel node if it can.
    pub(super) fn branch_ended(
        &mut self,
        path: &[(usize, usize)],
        outcome: BranchOutcome,
        running: &mut Running,
    ) -> Option<Ending> {
        let (&(fi, bi), parent) = path.split_last()?;
        if let Some(Frame::Parallel { branches, .. }) =
            stack_at_mut(&mut self.state.frames, parent).and_then(|s| s.get_mut(fi))
        {
            if let Some(b) = branches.get_mut(bi) {
                b.outcome = Some(outcome);
            }
        }
        self.decide(path, running)
    }

    /// Settles the parallel frame that the branch at `path` belongs to, once
    /// its mode can tell the outcome: cancels the undecided branches, sets the
    /// node's result and leaves the frame.
    pub(super) fn decide(
        &mut self,
        path: &[(usize, usize)],
        running: &mut Running,
    ) -> Option<Ending> {
        let (&(fi, just), parent) = path.split_last()?;
        let parent = parent.to_vec();
        let Some(Frame::Parallel {
            node,
            job,
            mode,
            branches,
        }) = stack_at(&self.state.frames, &parent).and_then(|s| s.get(fi))
        else {
            return None;
        };
        let (node, job, mode) = (*node, *job, *mode);
        let outcomes: Vec<Option<BranchOutcome>> =
            branches.iter().map(|b| b.outcome.clone()).collect();
        let failed = |o: &Option<BranchOutcome>| matches!(o, Some(BranchOutcome::Failed { .. }));
        let resolved = |o: &Option<BranchOutcome>| matches!(o, Some(BranchOutcome::Resolved));
        let first_error = outcomes.iter().find_map(|o| match o {
            Some(BranchOutcome::Failed { error }) => Some(error.clone()),
            _ => None,
        });
        let decision: Option<Result<(), String>> = match mode {
            ParallelMode::All if outcomes.iter().any(failed) => {
                Some(Err(first_error.unwrap_or_default()))
            }
            ParallelMode::All if outcomes.iter().all(resolved) => Some(Ok(())),
            ParallelMode::Any if outcomes.iter().any(resolved) => Some(Ok(())),
            ParallelMode::Any if outcomes.iter().all(failed) => Some(Err(format!(
                "every branch failed; the first: {}",
                first_error.unwrap_or_default()
            ))),
            ParallelMode::Race => match outcomes.get(just).cloned().flatten() {
                Some(BranchOutcome::Failed { error }) => Some(Err(error)),
                Some(_) => Some(Ok(())),
                None if outcomes.is_empty() => Some(Ok(())),
                None => None,
            },
            _ => None,
        };
        let decision = match decision {
            Some(d) => d,
            None if outcomes.is_empty() => Ok(()),
            None => return None,
        };
        // Cancel what is still running under this parallel node.
        let mut i = 0;
        while i < running.len() {
            let under = running[i].path.len() > parent.len()
                && running[i].path[..parent.len()] == parent[..]
                && running[i].path[parent.len()].0 == fi;
            if under {
                let r = running.swap_remove(i);
                let cancelled = self.job_of(&r, JobStatus::Cancelled);
                self.push_job(cancelled);
            } else {
                i += 1;
            }
        }
        let stack = stack_at_mut(&mut self.state.frames, &parent)?;
        let Some(Frame::Parallel { branches, .. }) = stack.pop() else {
            return None;
        };
        let result = branches_result(&branches);
        let workflow = self.workflow.clone();
        let parallel = &workflow.nodes[node];
        let env = self.env.clone();
        let headers = self.header_scrubber.clone();
        if let Some(j) = self.record.jobs.get_mut(job) {
            let started = j.started_at.millis();
            j.duration_ms = now_millis().saturating_sub(started);
            match &decision {
                Ok(()) => j.status = JobStatus::Resolved,
                Err(e) => {
                    j.status = JobStatus::Failed;
                    j.error = Some(e.clone());
                }
            }
            crate::record::keep_job(j, result.clone(), &env, &workflow, headers.as_deref());
            self.unsaved.changed(job);
        }
        match decision {
            Ok(()) => {
                self.set_result(node, &result);
                None
            }
            Err(error) if parallel.on_error == OnError::Continue => {
                self.set_result(node, &json!({"error": error, "branches": result}));
                None
            }
            Err(error) => self.stack_failed(&parent, node_failure(parallel, &error), running),
        }
    }
}

/// A parallel node's result: each branch's status (and error).
fn branches_result(branches: &[Branch]) -> Json {
    let result: Vec<Json> = branches
        .iter()
        .map(|b| match &b.outcome {
            Some(BranchOutcome::Resolved) => json!({"status": "resolved"}),
            Some(BranchOutcome::Failed { error }) => {
                json!({"status": "failed", "error": error})
            }
            Some(BranchOutcome::Cancelled) | None => json!({"status": "cancelled"}),
        })
        .collect();
    Json::Array(result)
}
