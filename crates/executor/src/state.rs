//! A run's position as plain data: what is saved after every node so that a
//! run can resume after a crash, and what the interpreter steps through.

use hookflow_model::def::ParallelMode;
use hookflow_model::runtime::{BlockId, NodeId, ROOT_BLOCK};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// One level of the position stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum Frame {
    /// Running the nodes of a block; `next` is the index of the next node to run.
    Block {
        /// The block.
        block: BlockId,
        /// The next node's index in the block.
        next: usize,
    },
    /// Running a loop; the iteration in progress (if a block frame sits on
    /// top of this one) is `next - 1`.
    Loop {
        /// The loop's body.
        body: BlockId,
        /// What it iterates over, evaluated once when the loop started.
        items: Vec<Json>,
        /// The index of the next iteration to start.
        next: usize,
    },
    /// Running branches at the same time; each has its own stack.
    Parallel {
        /// The parallel node.
        node: NodeId,
        /// The index of its job in the record.
        job: usize,
        /// How the outcome is decided.
        mode: ParallelMode,
        /// The branches.
        branches: Vec<Branch>,
    },
}

/// One branch of a parallel node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// Its own position stack.
    pub frames: Vec<Frame>,
    /// Set once the branch is decided.
    pub outcome: Option<BranchOutcome>,
}

/// How a branch ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BranchOutcome {
    /// Every node ran.
    Resolved,
    /// A node failed.
    Failed {
        /// Why.
        error: String,
    },
    /// Stopped because the outcome was decided without it.
    Cancelled,
}

/// The stack a node runs on: (frame index, branch index) steps from the top level.
pub type StackPath = Vec<(usize, usize)>;

/// The stack at `path`.
pub fn stack_at<'a>(mut frames: &'a [Frame], path: &[(usize, usize)]) -> Option<&'a [Frame]> {
    for &(fi, bi) in path {
        match frames.get(fi) {
            Some(Frame::Parallel { branches, .. }) => frames = &branches.get(bi)?.frames,
            _ => return None,
        }
    }
    Some(frames)
}

/// The stack at `path`, mutably.
pub fn stack_at_mut<'a>(
    mut frames: &'a mut Vec<Frame>,
    path: &[(usize, usize)],
) -> Option<&'a mut Vec<Frame>> {
    for &(fi, bi) in path {
        match frames.get_mut(fi) {
            Some(Frame::Parallel { branches, .. }) => frames = &mut branches.get_mut(bi)?.frames,
            _ => return None,
        }
    }
    Some(frames)
}

/// Every stack that can run a node: the top level, or, where a stack's top is
/// a parallel frame, each of its undecided branches (recursively).
pub fn runnable_stacks(frames: &[Frame], path: &mut StackPath, out: &mut Vec<StackPath>) {
    match frames.last() {
        Some(Frame::Parallel { branches, .. }) => {
            let fi = frames.len() - 1;
            for (bi, b) in branches.iter().enumerate() {
                if b.outcome.is_none() {
                    path.push((fi, bi));
                    runnable_stacks(&b.frames, path, out);
                    path.pop();
                }
            }
        }
        _ => out.push(path.clone()),
    }
}

/// Everything needed to continue a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The position stack; empty when the run has nothing left to do.
    pub frames: Vec<Frame>,
    /// Node results by key (`nodes.<key>`).
    pub results: Map<String, Json>,
}

impl RunState {
    /// The state of a run that has not started: at the first top-level node.
    pub fn start() -> RunState {
        RunState {
            frames: vec![Frame::Block {
                block: ROOT_BLOCK,
                next: 0,
            }],
            results: Map::new(),
        }
    }

    /// Reads a saved state (null: the start).
    pub fn from_json(value: &Json) -> Option<RunState> {
        if value.is_null() {
            return Some(RunState::start());
        }
        serde_json::from_value(value.clone()).ok()
    }

    /// `loop.item` and `loop.index` of every iteration in progress on the
    /// way to the stack at `path`, outermost first.
    pub fn loop_scopes(&self, path: &[(usize, usize)]) -> Vec<(Json, usize)> {
        let mut out = Vec::new();
        let mut stack: &[Frame] = &self.frames;
        let mut depth = 0;
        loop {
            for (i, frame) in stack.iter().enumerate() {
                if let Frame::Loop { items, next, .. } = frame {
                    if i + 1 < stack.len() && *next > 0 {
                        if let Some(item) = items.get(next - 1) {
                            out.push((item.clone(), next - 1));
                        }
                    }
                }
            }
            let Some(&(fi, bi)) = path.get(depth) else {
                break;
            };
            match stack.get(fi) {
                Some(Frame::Parallel { branches, .. }) => match branches.get(bi) {
                    Some(b) => stack = &b.frames,
                    None => break,
                },
                _ => break,
            }
            depth += 1;
        }
        out
    }

    /// The state as saved: null for the start (every queued run's).
    pub fn to_json(&self) -> Json {
        let at_start = self.results.is_empty()
            && matches!(self.frames.as_slice(), [Frame::Block { block, next: 0 }] if *block == ROOT_BLOCK);
        if at_start {
            return Json::Null;
        }
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_is_saved_as_null_and_other_positions_in_full() {
        let start = RunState::start();
        assert_eq!(start.to_json(), Json::Null);
        assert_eq!(RunState::from_json(&Json::Null), Some(start.clone()));
        let mut moved = start.clone();
        if let Some(Frame::Block { next, .. }) = moved.frames.last_mut() {
            *next = 1;
        }
        let mut with_result = start;
        with_result.results.insert("a".into(), serde_json::json!(1));
        for state in [moved, with_result] {
            let saved = state.to_json();
            assert!(saved.is_object(), "{saved}");
            assert_eq!(RunState::from_json(&saved), Some(state));
        }
    }
}
