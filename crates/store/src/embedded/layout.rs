//! The keys of the `runs` tree and the data folder's format mark.
//!
//! Everything about runs lives in one sled tree, so that a writer turn that
//! touches a durable run is one atomic batch (a finished run's record goes
//! in with its queue bit, never one without the other). A run's own keys
//! (made once it saves progress) are contiguous (`r`, its id, then a kind
//! byte), so that one scan finds all of them:
//!
//! | key | value |
//! | --- | --- |
//! | `q` seq | a queue page: the runs one turn accepted, each its head (record without jobs or request) and input ([`super::queued`]) |
//! | `d` seq | which runs of queue page `seq` left it (a bitmap) |
//! | `r` id `h` | the head of a run that saved progress: record length (u32 LE), record, input |
//! | `r` id `j` index | one job (u32 big-endian index in the record) |
//! | `r` id `p` name | one named part of its position (node results, loop items) |
//! | `r` id `s` | the stack it resumes from |
//! | `r` id `t` | its status and wake time, once it saved progress |
//! | `u` id | a run with a head of its own that is running (no value): the runs to resume without reading any run's data |
//! | `w` wake-ms id | a waiting run, by wake time (no value) |
//! | `f` second seq | a compressed page of finished runs ([`super::pages`]) |
//! | `k` workflow NUL key | an idempotency entry |
//! | `x` expires-ms workflow NUL key | its expiry (no value) |
//! | `y` id retry-id | a retry of run `id` (no value): a record's `retries` |
//!
//! Ids are UUID v7 (16 bytes, time-ordered), times big-endian Unix ms, so
//! keys sort by time.

use crate::{StoreError, StoreResult};
use std::path::Path;

/// The prefix of an unfinished run's keys.
pub(crate) const RUN: u8 = b'r';
/// Kinds of a run's keys (the byte after its id).
pub(crate) const HEAD: u8 = b'h';
pub(crate) const JOB: u8 = b'j';
pub(crate) const PART: u8 = b'p';
pub(crate) const STACK: u8 = b's';
pub(crate) const STATE: u8 = b't';
pub(crate) const RUNNING: u8 = b'u';
pub(crate) const WAKE: u8 = b'w';
pub(crate) const PAGE: u8 = b'f';
pub(crate) const IDEMPOTENCY: u8 = b'k';
pub(crate) const EXPIRY: u8 = b'x';
pub(crate) const RETRY: u8 = b'y';

/// An execution id as stored.
pub(crate) type Id = [u8; 16];

/// The id of an execution id string, if it is one.
pub(crate) fn id_bytes(id: &str) -> Option<Id> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

/// The string form of a stored id.
pub(crate) fn id_string(id: &Id) -> String {
    uuid::Uuid::from_bytes(*id).to_string()
}

/// `r id`: the prefix of every key of one run.
pub(crate) fn run_prefix(id: &Id) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RUN;
    k[1..].copy_from_slice(id);
    k
}

/// `u id`.
pub(crate) fn running_key(id: &Id) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RUNNING;
    k[1..].copy_from_slice(id);
    k
}

/// `r id kind`.
pub(crate) fn run_key(id: &Id, kind: u8) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..17].copy_from_slice(&run_prefix(id));
    k[17] = kind;
    k
}

/// The id of an `r id …` key.
pub(crate) fn id_of(key: &[u8]) -> Option<Id> {
    key.get(1..17)?.try_into().ok()
}

/// The kind of an `r id kind …` key.
pub(crate) fn kind_of(key: &[u8]) -> Option<u8> {
    key.get(17).copied()
}

/// `r id j index`.
pub(crate) fn job_key(id: &Id, index: u32) -> [u8; 22] {
    let mut k = [0u8; 22];
    k[..18].copy_from_slice(&run_key(id, JOB));
    k[18..].copy_from_slice(&index.to_be_bytes());
    k
}

/// `r id p name`.
pub(crate) fn part_key(id: &Id, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(18 + name.len());
    k.extend_from_slice(&run_key(id, PART));
    k.extend_from_slice(name.as_bytes());
    k
}

/// `w wake id`.
pub(crate) fn wake_key(wake_ms: u64, id: &Id) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = WAKE;
    k[1..9].copy_from_slice(&wake_ms.to_be_bytes());
    k[9..].copy_from_slice(id);
    k
}

/// The wake time and id of a `w` key.
pub(crate) fn wake_of(key: &[u8]) -> Option<(u64, Id)> {
    let ms = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    Some((ms, key.get(9..25)?.try_into().ok()?))
}

/// `k workflow NUL key`: keys of different workflows never meet.
pub(crate) fn idempotency_key(workflow: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(workflow.len() + key.len() + 2);
    k.push(IDEMPOTENCY);
    k.extend_from_slice(workflow.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `x expires k…`: the expiry index entry of an idempotency key.
pub(crate) fn expiry_key(expires_ms: u64, idempotency_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + idempotency_key.len());
    k.push(EXPIRY);
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.extend_from_slice(idempotency_key);
    k
}

/// `y id retry`: `retry` is a retry of run `id`.
pub(crate) fn retry_key(id: &Id, retry: &Id) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[..17].copy_from_slice(&retry_prefix(id));
    k[17..].copy_from_slice(retry);
    k
}

/// `y id`: the prefix of run `id`'s retry links.
pub(crate) fn retry_prefix(id: &Id) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RETRY;
    k[1..].copy_from_slice(id);
    k
}

/// The run and its retry of a `y` key.
pub(crate) fn retry_of(key: &[u8]) -> Option<(Id, Id)> {
    Some((
        key.get(1..17)?.try_into().ok()?,
        key.get(17..33)?.try_into().ok()?,
    ))
}

/// The layout of the data folder, kept under [`FORMAT_KEY`] in the default
/// tree. Format 5: one key per unfinished run and per saved job (no shared
/// queue pages), finished pages with their finish times, idempotency keys
/// beside the runs. Other folders are refused with a clear error rather
/// than read as damage.
pub(crate) const FORMAT: &[u8] = b"5";
const FORMAT_KEY: &[u8] = b"format";

/// Refuses a database whose values were written in another layout, and
/// marks a new one (one whose trees are empty).
pub(crate) fn check_format(db: &sled::Db, trees: &[&sled::Tree], dir: &Path) -> StoreResult<()> {
    let found = db.get(FORMAT_KEY).map_err(super::db_err)?;
    match found {
        Some(v) if v == FORMAT => Ok(()),
        None if trees.iter().all(|t| t.is_empty()) => {
            db.insert(FORMAT_KEY, FORMAT).map_err(super::db_err)?;
            db.flush().map_err(super::db_err)?;
            Ok(())
        }
        other => Err(StoreError::Db(format!(
            "{}: execution records were written by another hookflow version (format {}, this \
             one reads {}); they are not migrated: stop the server and move {} away \
             (keys.json stays, so URLs do not change)",
            dir.display(),
            other.map_or_else(
                || "2 or older".into(),
                |v| String::from_utf8_lossy(&v).into_owned()
            ),
            String::from_utf8_lossy(FORMAT),
            dir.join("db").display(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_read_back() {
        let a = *uuid::Uuid::now_v7().as_bytes();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = *uuid::Uuid::now_v7().as_bytes();
        assert!(run_key(&a, JOB) < run_key(&b, JOB));
        assert!(
            run_key(&a, STATE) < run_key(&b, JOB),
            "a run's keys are together"
        );
        assert!(job_key(&a, 1) < job_key(&a, 256), "jobs in index order");
        assert_eq!(job_key(&a, 256)[18..], 256u32.to_be_bytes());
        assert_eq!(&part_key(&a, "r/x")[18..], b"r/x");
        assert!(wake_key(5, &b) < wake_key(6, &a), "wake keys by time first");
        assert_eq!(wake_of(&wake_key(7, &a)), Some((7, a)));
        assert_eq!(id_of(&part_key(&a, "r/x")), Some(a));
        assert_eq!(id_bytes(&id_string(&a)), Some(a));
        assert_ne!(idempotency_key("ab", "c"), idempotency_key("a", "bc"));
        assert_eq!(retry_of(&retry_key(&a, &b)), Some((a, b)));
        assert!(
            retry_key(&a, &a) < retry_key(&a, &b),
            "a run's retries by time"
        );
    }
}
