//! A run's position as plain data: what is saved after every node so that a
//! run can resume after a crash, and what the interpreter steps through.

use hookflow_model::runtime::{BlockId, ROOT_BLOCK};
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

    /// Reads a saved state.
    pub fn from_json(value: &Json) -> Option<RunState> {
        serde_json::from_value(value.clone()).ok()
    }

    /// `loop.item` and `loop.index` of every iteration in progress, outermost first.
    pub fn loop_scopes(&self) -> Vec<(Json, usize)> {
        let mut out = Vec::new();
        for (i, frame) in self.frames.iter().enumerate() {
            if let Frame::Loop { items, next, .. } = frame {
                if i + 1 < self.frames.len() && *next > 0 {
                    if let Some(item) = items.get(next - 1) {
                        out.push((item.clone(), next - 1));
                    }
                }
            }
        }
        out
    }

    /// The state as saved.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}
