//! Refused requests on sled, in a tree of their own (`refused`):
//!
//! - `w` workflow `0x00` position (u64, big-endian) → the request (MessagePack);
//! - `t` position workflow → nothing: every workflow's, newest last.
//!
//! Positions grow with time (microseconds, kept increasing by the writer),
//! so a prefix scanned backwards is newest first. The writer applies them
//! in its turn but syncs nothing for them: they reach the disk with the next
//! sync of a durable write or sled's own periodic flush (every 500 ms).
//! After each insert the workflow's oldest go past
//! [`KEPT_PER_WORKFLOW`](crate::refused::KEPT_PER_WORKFLOW).

use super::codec::{decode, encode};
use crate::refused::{page, RefusedFilter, RefusedRequest, KEPT_PER_WORKFLOW};
use crate::{db_err, StoreResult};
use std::collections::HashMap;

const BY_WORKFLOW: u8 = b'w';
const BY_TIME: u8 = b't';

fn workflow_prefix(workflow: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(workflow.len() + 2);
    k.push(BY_WORKFLOW);
    k.extend_from_slice(workflow.as_bytes());
    k.push(0);
    k
}

fn workflow_key(workflow: &str, position: u64) -> Vec<u8> {
    let mut k = workflow_prefix(workflow);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn time_key(position: u64, workflow: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(workflow.len() + 9);
    k.push(BY_TIME);
    k.extend_from_slice(&position.to_be_bytes());
    k.extend_from_slice(workflow.as_bytes());
    k
}

/// The position at the end of a `w` key.
fn position_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// A refused request waiting for the writer, encoded by the caller.
#[derive(Debug)]
pub(crate) struct Pending {
    pub workflow: String,
    pub value: Vec<u8>,
}

impl Pending {
    pub fn of(request: &RefusedRequest) -> StoreResult<Pending> {
        Ok(Pending {
            workflow: request.workflow.clone(),
            value: encode(request)?,
        })
    }
}

/// The writer's side: inserts and keeps each workflow's bound.
pub(crate) struct Keeper {
    tree: sled::Tree,
    /// Entries per workflow, counted on the first insert of each.
    counts: HashMap<String, usize>,
    last: u64,
}

impl Keeper {
    pub fn new(tree: sled::Tree) -> Keeper {
        Keeper {
            tree,
            counts: HashMap::new(),
            last: 0,
        }
    }

    /// Writes one refused request and trims its workflow's oldest.
    pub fn insert(&mut self, pending: Pending) -> sled::Result<()> {
        let now = super::writer::now_micros();
        self.last = now.max(self.last + 1);
        let position = self.last;
        let Pending { workflow, value } = pending;
        self.tree.insert(workflow_key(&workflow, position), value)?;
        self.tree.insert(time_key(position, &workflow), &[])?;
        let prefix = workflow_prefix(&workflow);
        let count = match self.counts.get_mut(&workflow) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                let c = self.tree.scan_prefix(&prefix).count();
                self.counts.insert(workflow.clone(), c);
                c
            }
        };
        let mut over = count.saturating_sub(KEPT_PER_WORKFLOW);
        while over > 0 {
            let Some((oldest, _)) = self.tree.scan_prefix(&prefix).next().transpose()? else {
                break;
            };
            if let Some(p) = position_of(&oldest) {
                self.tree.remove(time_key(p, &workflow))?;
            }
            self.tree.remove(oldest)?;
            over -= 1;
            if let Some(c) = self.counts.get_mut(&workflow) {
                *c -= 1;
            }
        }
        Ok(())
    }
}

/// Lists refused requests newest first (see [`page`]).
pub(crate) fn list(
    tree: &sled::Tree,
    filter: &RefusedFilter,
) -> StoreResult<(Vec<RefusedRequest>, Option<String>)> {
    let before = filter.before().unwrap_or(u64::MAX);
    let read = |key: &[u8], value: &[u8]| -> Option<(u64, RefusedRequest)> {
        let position = position_of(key)?;
        match decode::<RefusedRequest>(key, value) {
            Ok(r) => Some((position, r)),
            Err(error) => {
                tracing::error!(message = "A refused request does not read; skipped.", %error);
                None
            }
        }
    };
    let mut failed = None;
    let result = match &filter.workflow {
        Some(workflow) => {
            let start = workflow_key(workflow, 0);
            let end = workflow_key(workflow, before);
            let entries = tree
                .range(start..end)
                .rev()
                .filter_map(|e| e.map_err(|e| failed = Some(e)).ok())
                .filter_map(|(k, v)| read(&k, &v));
            page(entries, filter)
        }
        None => {
            let start = vec![BY_TIME];
            let mut end = vec![BY_TIME];
            end.extend_from_slice(&before.to_be_bytes());
            let entries = tree
                .range(start..end)
                .rev()
                .filter_map(|e| e.map_err(|e| failed = Some(e)).ok())
                .filter_map(|(k, _)| {
                    let position = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
                    let workflow = std::str::from_utf8(k.get(9..)?).ok()?;
                    let value = tree.get(workflow_key(workflow, position)).ok()??;
                    read(&workflow_key(workflow, position), &value)
                });
            page(entries, filter)
        }
    };
    match failed {
        Some(e) => Err(db_err(e)),
        None => Ok(result),
    }
}
