//! Finished execution records, packed into pages.
//!
//! sled's cost is per operation (a tree descent, a copy-on-write leaf, a log
//! reservation), not per byte. A finished record never changes again, so the
//! writer packs every record a turn finishes into one page per second of
//! start time: under load one sled insert carries dozens of records.
//!
//! A page's key is `f`, the second its records started (taken from the
//! UUIDv7 id, big-endian) and a sequence number; its value is LZ4-compressed
//! ([`seal`], [`open`]): records of one workflow repeat most of their
//! values, so a page shrinks several times, and sled's memory and disk
//! traffic grow with the bytes it is given. Uncompressed, a page is a run of
//! entries, each `id (16) | started_ms (u64 LE) | finished_ms (u64 LE) |
//! status (u8) | workflow length (u16 LE) | workflow | record length (u32 LE)
//! | record | input length (u32 LE) | input`: the record and a durable run's
//! input (kept for retries; empty for sync runs) in MessagePack, as the
//! store encodes every value. The header lets lists filter and sort, and
//! retention find what finished before its cutoff, without decoding.

use super::layout::PAGE;
use crate::record::{ExecutionRecord, RunStatus};
/// Records whose ids fall in the same second share pages.
const BUCKET_MS: u64 = 1000;

/// Unix milliseconds in a UUIDv7 (its first 48 bits).
pub(crate) fn id_millis(id: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&id[..6]);
    u64::from_be_bytes(b)
}

/// The page bucket (start second) of an id.
pub(crate) fn bucket_of(id: &[u8; 16]) -> u64 {
    id_millis(id) / BUCKET_MS
}

/// The bucket holding records started at `ms`.
pub(crate) fn bucket_of_ms(ms: u64) -> u64 {
    ms / BUCKET_MS
}

/// The first millisecond after a bucket.
pub(crate) fn bucket_end_ms(bucket: u64) -> u64 {
    bucket.saturating_add(1).saturating_mul(BUCKET_MS)
}

/// The key prefix of every page of `bucket`.
pub(crate) fn bucket_prefix(bucket: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PAGE;
    k[1..].copy_from_slice(&bucket.to_be_bytes());
    k
}

/// The key of one page.
pub(crate) fn page_key(bucket: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&bucket_prefix(bucket));
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The bucket a page key belongs to.
pub(crate) fn bucket_of_key(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn status_code(s: RunStatus) -> u8 {
    match s {
        RunStatus::Queued => 0,
        RunStatus::Running => 1,
        RunStatus::Waiting => 2,
        RunStatus::Resolved => 3,
        RunStatus::Failed => 4,
        RunStatus::Aborted => 5,
    }
}

fn status_of(code: u8) -> Option<RunStatus> {
    Some(match code {
        0 => RunStatus::Queued,
        1 => RunStatus::Running,
        2 => RunStatus::Waiting,
        3 => RunStatus::Resolved,
        4 => RunStatus::Failed,
        5 => RunStatus::Aborted,
        _ => return None,
    })
}

/// What a page entry's header says of a finished run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Header<'a> {
    /// The execution id.
    pub id: [u8; 16],
    /// When the run started.
    pub started_ms: u64,
    /// When it finished.
    pub finished_ms: u64,
    /// Its final status.
    pub status: RunStatus,
    /// Its workflow id.
    pub workflow: &'a str,
}

/// Appends an entry's header to a page, with room for `body` more bytes.
fn push_head(page: &mut Vec<u8>, header: &Header<'_>, body: usize) {
    // Workflow ids are file names; longer ones are cut (only filters read it).
    let workflow = header.workflow;
    let wf = &workflow.as_bytes()[..workflow.len().min(u16::MAX as usize)];
    page.reserve(16 + 8 + 8 + 1 + 2 + wf.len() + body);
    page.extend_from_slice(&header.id);
    page.extend_from_slice(&header.started_ms.to_le_bytes());
    page.extend_from_slice(&header.finished_ms.to_le_bytes());
    page.push(status_code(header.status));
    page.extend_from_slice(&(wf.len() as u16).to_le_bytes());
    page.extend_from_slice(wf);
}

/// Appends one entry to a page.
pub(crate) fn push_entry(page: &mut Vec<u8>, header: &Header<'_>, record: &[u8], input: &[u8]) {
    push_head(page, header, 4 + record.len() + 4 + input.len());
    page.extend_from_slice(&(record.len() as u32).to_le_bytes());
    page.extend_from_slice(record);
    page.extend_from_slice(&(input.len() as u32).to_le_bytes());
    page.extend_from_slice(input);
}

/// Appends a finished run's entry to `page`, its record packed in place
/// (no input: a run written this way was never accepted).
pub(crate) fn push_record(page: &mut Vec<u8>, id: &[u8; 16], record: &ExecutionRecord) {
    let header = Header {
        id: *id,
        started_ms: record.started_ms,
        finished_ms: record
            .finished_at
            .map_or_else(hookflow_model::time::now_millis, |t| t.millis()),
        status: record.status,
        workflow: &record.workflow,
    };
    // The record's length is known once it is packed: its slot is filled
    // after. (No room is made for the record: the packer makes its own.)
    push_head(page, &header, 4 + 4);
    let at = page.len();
    page.extend_from_slice(&[0; 4]);
    *page = crate::record::pack::record(std::mem::take(page), record);
    let len = page.len() - at - 4;
    if let Some(slot) = page.get_mut(at..at + 4) {
        slot.copy_from_slice(&(len as u32).to_le_bytes());
    }
    page.extend_from_slice(&0u32.to_le_bytes());
}

/// A page's entries as stored: compressed, its length prepended.
pub(crate) fn seal(entries: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(entries)
}

/// A stored page's entries; `Err` marks a damaged page.
pub(crate) fn open(stored: &[u8]) -> Result<Vec<u8>, ()> {
    let (len, body) = stored.split_first_chunk::<4>().ok_or(())?;
    let len = u32::from_le_bytes(*len) as usize;
    // LZ4 expands at most ~255 times: a larger length is damage, not a page
    // (and must not become an allocation).
    if len > body.len().saturating_mul(255).saturating_add(16) {
        return Err(());
    }
    let entries = lz4_flex::block::decompress(body, len).map_err(|_| ())?;
    if entries.len() == len {
        Ok(entries)
    } else {
        Err(())
    }
}

/// The error for a damaged page.
pub(crate) fn corrupt(key: &[u8]) -> crate::StoreError {
    crate::StoreError::Corrupt {
        key: super::codec::show_key(key),
        message: "not a page of records".into(),
    }
}

/// One entry of a page, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    /// The execution id.
    pub id: [u8; 16],
    /// When the run started.
    pub started_ms: u64,
    /// When it finished.
    pub finished_ms: u64,
    /// Its final status.
    pub status: RunStatus,
    /// Its workflow id.
    pub workflow: &'a [u8],
    /// The record, encoded.
    pub record: &'a [u8],
    /// The run's input, encoded; empty when none was kept.
    pub input: &'a [u8],
    /// Where the entry starts and ends in the page.
    pub span: (usize, usize),
}

/// The entries of a page, in the order written; `Err` marks a damaged page.
pub(crate) fn entries(page: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, ()>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= page.len() {
            return None;
        }
        let start = at;
        let mut take = |n: usize| -> Result<&[u8], ()> {
            let s = page.get(at..at.checked_add(n).ok_or(())?).ok_or(())?;
            at += n;
            Ok(s)
        };
        let entry = (|| {
            let id: [u8; 16] = take(16)?.try_into().map_err(|_| ())?;
            let started_ms = u64::from_le_bytes(take(8)?.try_into().map_err(|_| ())?);
            let finished_ms = u64::from_le_bytes(take(8)?.try_into().map_err(|_| ())?);
            let status = status_of(take(1)?[0]).ok_or(())?;
            let wf_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| ())?) as usize;
            let workflow = take(wf_len)?;
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| ())?) as usize;
            let record = take(len)?;
            let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| ())?) as usize;
            let input = take(len)?;
            Ok(Entry {
                id,
                started_ms,
                finished_ms,
                status,
                workflow,
                record,
                input,
                span: (start, 0),
            })
        })();
        match entry {
            Ok(mut e) => {
                e.span.1 = at;
                Some(Ok(e))
            }
            Err(()) => {
                at = page.len();
                Some(Err(()))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_reported() {
        let a = *uuid::Uuid::now_v7().as_bytes();
        let b = *uuid::Uuid::now_v7().as_bytes();
        let mut page = Vec::new();
        let header = |id, started_ms, status, workflow| Header {
            id,
            started_ms,
            finished_ms: started_ms + 10,
            status,
            workflow,
        };
        push_entry(
            &mut page,
            &header(a, 5, RunStatus::Resolved, "pay"),
            b"{\"x\":1}",
            b"",
        );
        push_entry(
            &mut page,
            &header(b, 6, RunStatus::Failed, ""),
            b"{}",
            b"[1]",
        );
        let got: Vec<_> = entries(&page).map(|e| e.expect("entry")).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].id,
                got[0].started_ms,
                got[0].finished_ms,
                got[0].status
            ),
            (a, 5, 15, RunStatus::Resolved)
        );
        assert_eq!(
            (got[0].workflow, got[0].record),
            (&b"pay"[..], &b"{\"x\":1}"[..])
        );
        assert_eq!((got[1].id, got[1].status), (b, RunStatus::Failed));
        assert_eq!((got[0].input, got[1].input), (&b""[..], &b"[1]"[..]));
        assert_eq!(got[1].span.1, page.len());
        // A cut page yields its whole entries, then one error, then stops.
        let cut = &page[..page.len() - 1];
        let got: Vec<_> = entries(cut).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok() && got[1].is_err());
        // Sealed and opened, a page is the same bytes; a damaged one is an error.
        let sealed = seal(&page);
        assert_eq!(open(&sealed).as_deref(), Ok(&page[..]));
        assert!(open(&sealed[..sealed.len() / 2]).is_err());
        assert!(open(b"").is_err());
    }

    #[test]
    fn pages_of_similar_records_shrink() {
        let mut page = Vec::new();
        for i in 0..16u64 {
            let id = *uuid::Uuid::now_v7().as_bytes();
            let json = format!(
                "{{\"id\":\"{i}\",\"workflow\":\"pay\",\"status\":\"resolved\",\"jobs\":[{{\"key\":\"paid\",\"type\":\"condition\"}}]}}"
            );
            let header = Header {
                id,
                started_ms: i,
                finished_ms: i,
                status: RunStatus::Resolved,
                workflow: "pay",
            };
            push_entry(&mut page, &header, json.as_bytes(), b"");
        }
        assert!(
            seal(&page).len() * 2 < page.len(),
            "{} of {}",
            seal(&page).len(),
            page.len()
        );
    }

    #[test]
    fn buckets_follow_the_id_time() {
        let id = uuid::Uuid::now_v7();
        let ms = hookflow_ms_now();
        let bytes = *id.as_bytes();
        assert!(id_millis(&bytes).abs_diff(ms) < 5_000);
        assert_eq!(bucket_of(&bytes), id_millis(&bytes) / 1000);
        let key = page_key(bucket_of(&bytes), 7);
        assert_eq!(bucket_of_key(&key), Some(bucket_of(&bytes)));
        assert!(key.starts_with(&bucket_prefix(bucket_of(&bytes))));
        assert_eq!(bucket_end_ms(3), 4000);
        assert_eq!(bucket_of_ms(3999), 3);
    }

    fn hookflow_ms_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}
