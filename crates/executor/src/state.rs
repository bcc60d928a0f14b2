//! A run's position as plain data: what the interpreter steps through, and
//! what a durable run saves so that it can resume after a crash.
//!
//! A saved position is the stack (small) and named parts stored once each:
//! node results (`r/<key>`) and loop item lists (`l/<n>`), so that a loop of
//! 3,000 items does not store its items again at every step.

use hookflow_model::def::ParallelMode;
use hookflow_model::runtime::{BlockId, NodeId, ROOT_BLOCK};
use hookflow_store::Position;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The part name of a node result.
const RESULT_PART: &str = "r/";
/// The part name of a loop's item list.
const LIST_PART: &str = "l/";

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
        /// The number of its item list (saved once as the part `l/<list>`).
        list: u32,
        /// What it iterates over, evaluated once when the loop started (not
        /// in the saved stack: see `list`).
        #[serde(skip)]
        items: Arc<Vec<Json>>,
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

/// The stacks that can run a node: most runs have one, a parallel node a
/// few (held in place up to two, without an allocation).
pub type Stacks = smallvec::SmallVec<[StackPath; 2]>;

/// Every stack that can run a node: the top level, or, where a stack's top is
/// a parallel frame, each of its undecided branches (recursively).
pub fn runnable_stacks(frames: &[Frame], path: &mut StackPath, out: &mut Stacks) {
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
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The position stack; empty when the run has nothing left to do.
    pub frames: Vec<Frame>,
    /// Node results by key (`nodes.<key>`), for a durable run's saves and
    /// a resumed run's scope (a run that is not durable keeps them in its
    /// scope alone).
    pub results: Map<String, Json>,
    /// The number the next loop's item list gets.
    pub next_list: u32,
}

/// The saved stack.
#[derive(Serialize, Deserialize)]
struct Stack {
    frames: Vec<Frame>,
    next_list: u32,
}

impl RunState {
    /// The state of a run that has not started: at the first top-level node.
    pub fn start() -> RunState {
        // Room for the blocks a branch or a loop enters: the first one
        // entered was a second allocation and a copy.
        let mut frames = Vec::with_capacity(4);
        frames.push(Frame::Block {
            block: ROOT_BLOCK,
            next: 0,
        });
        RunState {
            frames,
            results: Map::new(),
            next_list: 0,
        }
    }

    /// The position to save: the stack, the results named in `results` and
    /// the item lists numbered in `lists` (loops started since the last
    /// save) that are still on the stack.
    pub fn position<'a>(
        &self,
        results: impl IntoIterator<Item = &'a String>,
        lists: &[u32],
    ) -> Position {
        let mut parts = Vec::new();
        for key in results {
            if let Some(value) = self.results.get(key) {
                parts.push((format!("{RESULT_PART}{key}"), value.clone()));
            }
        }
        if !lists.is_empty() {
            visit_loops(&self.frames, &mut |list, items| {
                if lists.contains(&list) {
                    parts.push((format!("{LIST_PART}{list}"), Json::Array(items.to_vec())));
                }
            });
        }
        let stack = Stack {
            frames: self.frames.clone(),
            next_list: self.next_list,
        };
        Position {
            frames: serde_json::to_value(&stack).unwrap_or(Json::Null),
            parts,
        }
    }

    /// Reads a saved position back (a null stack: the start); `None` when it
    /// does not read (or a loop's items are missing).
    pub fn resume(frames: &Json, parts: &BTreeMap<String, Json>) -> Option<RunState> {
        if frames.is_null() {
            return Some(RunState::start());
        }
        let stack: Stack = serde_json::from_value(frames.clone()).ok()?;
        let mut state = RunState {
            frames: stack.frames,
            results: Map::new(),
            next_list: stack.next_list,
        };
        for (name, value) in parts {
            if let Some(key) = name.strip_prefix(RESULT_PART) {
                state.results.insert(key.to_string(), value.clone());
            }
        }
        let mut complete = true;
        fill_loops(&mut state.frames, &mut |list| {
            let items = parts
                .get(&format!("{LIST_PART}{list}"))
                .and_then(Json::as_array)
                .cloned();
            complete &= items.is_some();
            Arc::new(items.unwrap_or_default())
        });
        complete.then_some(state)
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
}

/// Every loop frame's list number and items, branches included.
fn visit_loops(frames: &[Frame], f: &mut impl FnMut(u32, &[Json])) {
    for frame in frames {
        match frame {
            Frame::Loop { list, items, .. } => f(*list, items),
            Frame::Parallel { branches, .. } => {
                for b in branches {
                    visit_loops(&b.frames, f);
                }
            }
            Frame::Block { .. } => {}
        }
    }
}

/// Gives every loop frame its items back, by list number.
fn fill_loops(frames: &mut [Frame], items_of: &mut impl FnMut(u32) -> Arc<Vec<Json>>) {
    for frame in frames {
        match frame {
            Frame::Loop { list, items, .. } => *items = items_of(*list),
            Frame::Parallel { branches, .. } => {
                for b in branches {
                    fill_loops(&mut b.frames, items_of);
                }
            }
            Frame::Block { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positions_save_the_stack_and_each_part_once() {
        assert_eq!(
            RunState::resume(&Json::Null, &BTreeMap::new()),
            Some(RunState::start()),
            "a run never saved starts at the start"
        );
        let mut state = RunState::start();
        state.frames.push(Frame::Loop {
            body: 3,
            list: 0,
            items: Arc::new(vec![json!("a"), json!("b")]),
            next: 1,
        });
        state.next_list = 1;
        state.frames.push(Frame::Block { block: 3, next: 0 });
        state.results.insert("x".into(), json!({"big": [1, 2, 3]}));
        let first = state.position([&"x".to_string()], &[0]);
        assert_eq!(
            first.parts,
            vec![
                ("r/x".to_string(), json!({"big": [1, 2, 3]})),
                ("l/0".to_string(), json!(["a", "b"]))
            ]
        );
        let stack = first.frames.to_string();
        assert!(
            !stack.contains("\"a\""),
            "items are not in the stack: {stack}"
        );
        // A later save with nothing new carries no parts.
        let later = state.position([], &[]);
        assert!(later.parts.is_empty());
        let parts: BTreeMap<String, Json> = first.parts.into_iter().collect();
        assert_eq!(RunState::resume(&later.frames, &parts), Some(state.clone()));
        assert_eq!(state.loop_scopes(&[]), vec![(json!("a"), 0)]);
        // A loop whose items are missing does not resume.
        assert_eq!(RunState::resume(&later.frames, &BTreeMap::new()), None);
    }
}
