//! Queue pages: the runs one writer turn accepted share one key, and one
//! bitmap says which of them left it.
//!
//! sled's cost is per operation (~10,000 instructions an insert), so an
//! accepted run does not get a key of its own: the turn's new runs go into
//! one compressed page `q<seq>` (each entry: id, head, input). A run leaves
//! its page when it finishes (its bit is set in `d<seq>` in the same atomic
//! batch as its finished record) or when it first saves progress (the same
//! batch gives it a head key of its own, `r<id>h`); the page and its bitmap
//! go once every bit is set. A run in a page is unfinished exactly when its
//! bit is clear: retention, which removes finished records, cannot make a
//! finished run look unfinished (it never reads the bitmaps), so a run never
//! runs twice.
//!
//! [`Queued`] is the index in memory (rebuilt from the pages at start): the
//! page and entry of each run still in a page, and its input while small
//! (so that finishing it does not read its page back). Runs that saved
//! progress, waiting ones among them, are not in it: they cost disk, not
//! memory.

use super::codec::show_key;
use super::layout::Id;
use super::pages;
use crate::{StoreError, StoreResult};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Hashes an execution id by its last eight bytes, which are random in a
/// UUID v7 (the index is touched twice per async run; SipHash cost more
/// than the rest of the lookup).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(5) ^ n;
    }
}

/// A map keyed by execution id.
pub(crate) type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;

/// The key prefix of queue pages.
pub(crate) const QUEUE: u8 = b'q';
/// The key prefix of their bitmaps of finished runs.
pub(crate) const DONE: u8 = b'd';
/// Inputs up to this size are kept in memory while their run is queued.
pub(crate) const KEPT_INPUT: usize = 16 * 1024;
/// At most this much input is kept in memory in all.
pub(crate) const KEPT_INPUTS: usize = 8 * 1024 * 1024;

/// `q seq` or `d seq`.
pub(crate) fn page_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of a `q`/`d` key.
pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// Appends a run to a queue page (uncompressed).
pub(crate) fn push_entry(page: &mut Vec<u8>, id: &Id, head: &[u8], input: &[u8]) {
    page.reserve(16 + 8 + head.len() + input.len());
    page.extend_from_slice(id);
    page.extend_from_slice(&(head.len() as u32).to_le_bytes());
    page.extend_from_slice(head);
    page.extend_from_slice(&(input.len() as u32).to_le_bytes());
    page.extend_from_slice(input);
}

/// One entry of a queue page, borrowed.
pub(crate) struct Entry<'a> {
    pub id: Id,
    pub head: &'a [u8],
    pub input: &'a [u8],
}

/// The entries of an (uncompressed) queue page; `Err` for a damaged one.
pub(crate) fn entries<'a>(key: &[u8], page: &'a [u8]) -> StoreResult<Vec<Entry<'a>>> {
    let damaged = || StoreError::Corrupt {
        key: show_key(key),
        message: "not a queue page".into(),
    };
    let mut out = Vec::new();
    let mut rest = page;
    let take = |rest: &mut &'a [u8], n: usize| -> StoreResult<&'a [u8]> {
        if rest.len() < n {
            return Err(damaged());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    };
    while !rest.is_empty() {
        let id: Id = take(&mut rest, 16)?.try_into().map_err(|_| damaged())?;
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().map_err(|_| damaged())?);
        let head = take(&mut rest, len as usize)?;
        let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().map_err(|_| damaged())?);
        let input = take(&mut rest, len as usize)?;
        out.push(Entry { id, head, input });
    }
    Ok(out)
}

/// A stored queue page, opened.
pub(crate) fn open(key: &[u8], stored: &[u8]) -> StoreResult<Vec<u8>> {
    pages::open(stored).map_err(|()| StoreError::Corrupt {
        key: show_key(key),
        message: "not a queue page".into(),
    })
}

/// Whether entry `index` is set in a bitmap.
pub(crate) fn is_done(bitmap: &[u8], index: usize) -> bool {
    bitmap
        .get(index / 8)
        .is_some_and(|b| b & (1 << (index % 8)) != 0)
}

/// Sets entry `index` in a bitmap.
pub(crate) fn set_done(bitmap: &mut Vec<u8>, index: usize) {
    if bitmap.len() <= index / 8 {
        bitmap.resize(index / 8 + 1, 0);
    }
    bitmap[index / 8] |= 1 << (index % 8);
}

/// A run in a queue page that has not left it.
#[derive(Debug, Clone)]
pub(crate) struct QueuedRun {
    /// Its page.
    pub page: u64,
    /// Its entry in the page.
    pub index: u16,
    /// Its input, while small.
    pub input: Option<Arc<Vec<u8>>>,
}

/// A queue page's bookkeeping.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageState {
    /// Its entries.
    pub entries: u16,
    /// Which finished.
    pub done: Vec<u8>,
}

impl PageState {
    /// True once every entry finished.
    pub fn complete(&self) -> bool {
        (0..usize::from(self.entries)).all(|i| is_done(&self.done, i))
    }
}

/// The index of queued runs.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// Unfinished runs by id.
    pub runs: IdMap<QueuedRun>,
    /// Pages with unfinished runs.
    pub pages: HashMap<u64, PageState>,
    /// Bytes of inputs kept.
    pub kept: usize,
}

impl Queued {
    /// Adds a run accepted into `page` at `index`.
    pub fn add(&mut self, id: Id, page: u64, index: u16, input: &[u8]) {
        let input =
            (input.len() <= KEPT_INPUT && self.kept + input.len() <= KEPT_INPUTS).then(|| {
                self.kept += input.len();
                Arc::new(input.to_vec())
            });
        self.runs.insert(id, QueuedRun { page, index, input });
        let state = self.pages.entry(page).or_default();
        state.entries = state.entries.max(index + 1);
    }

    /// The run leaves its page (it finished, or saved progress): its bit is
    /// set. Returns its page and entry, the page's new bitmap, whether the
    /// page is now complete, and its input if kept.
    pub fn leave(&mut self, id: &Id) -> Option<Left> {
        let run = self.runs.remove(id)?;
        if let Some(input) = &run.input {
            self.kept -= input.len();
        }
        let state = self.pages.entry(run.page).or_default();
        set_done(&mut state.done, usize::from(run.index));
        let complete = state.complete();
        let done = state.done.clone();
        if complete {
            self.pages.remove(&run.page);
        }
        Some(Left {
            page: run.page,
            index: run.index,
            done,
            complete,
            input: run.input,
        })
    }
}

/// What a run leaving its queue page changes.
pub(crate) struct Left {
    pub page: u64,
    pub index: u16,
    pub done: Vec<u8>,
    pub complete: bool,
    pub input: Option<Arc<Vec<u8>>>,
}

/// What [`rebuild`] found.
pub(crate) struct Rebuilt {
    /// The index.
    pub index: Queued,
    /// Keys of pages whose runs all finished (left by a crash): to remove.
    pub spent: Vec<Vec<u8>>,
    /// Keys of damaged queue pages: to set aside.
    pub damaged: Vec<Vec<u8>>,
}

/// Rebuilds the index from the stored pages and bitmaps.
pub(crate) fn rebuild(runs: &sled::Tree) -> StoreResult<Rebuilt> {
    let mut index = Queued::default();
    let mut spent = Vec::new();
    let mut damaged = Vec::new();
    for item in runs.scan_prefix([QUEUE]) {
        let (k, v) = item.map_err(crate::db_err)?;
        let Some(seq) = seq_of(&k) else { continue };
        let done_key = page_key(DONE, seq);
        let done = runs
            .get(done_key)
            .map_err(crate::db_err)?
            .map(|d| d.to_vec())
            .unwrap_or_default();
        let page = match open(&k, &v) {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(message = "A damaged queue page was set aside.", key = %show_key(&k), %error);
                damaged.push(k.to_vec());
                continue;
            }
        };
        let entries = match entries(&k, &page) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(message = "A damaged queue page was set aside.", key = %show_key(&k), %error);
                damaged.push(k.to_vec());
                continue;
            }
        };
        let mut left = 0;
        for (i, e) in entries.iter().enumerate() {
            let Ok(i) = u16::try_from(i) else { break };
            if !is_done(&done, usize::from(i)) {
                index.add(e.id, seq, i, e.input);
                left += 1;
            }
        }
        let state = index.pages.entry(seq).or_default();
        state.entries = u16::try_from(entries.len()).unwrap_or(u16::MAX);
        state.done = done;
        if left == 0 {
            index.pages.remove(&seq);
            spent.push(k.to_vec());
            spent.push(done_key.to_vec());
        }
    }
    Ok(Rebuilt {
        index,
        spent,
        damaged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_and_entries_round_trip() {
        let mut bits = Vec::new();
        set_done(&mut bits, 0);
        set_done(&mut bits, 9);
        assert!(is_done(&bits, 0) && is_done(&bits, 9));
        assert!(!is_done(&bits, 1) && !is_done(&bits, 64));
        let mut page = Vec::new();
        push_entry(&mut page, &[1; 16], b"head", b"");
        push_entry(&mut page, &[2; 16], b"h2", b"input");
        let got = entries(b"q", &page).expect("entries");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[1].id, got[1].head, got[1].input),
            ([2; 16], &b"h2"[..], &b"input"[..])
        );
        assert!(entries(b"q", &page[..page.len() - 1]).is_err());
    }

    #[test]
    fn a_page_is_complete_when_every_run_left() {
        let mut q = Queued::default();
        q.add([1; 16], 7, 0, b"in");
        q.add([2; 16], 7, 1, b"");
        let first = q.leave(&[1; 16]).expect("queued");
        assert!(!first.complete);
        assert_eq!(first.input.as_deref().map(Vec::as_slice), Some(&b"in"[..]));
        let second = q.leave(&[2; 16]).expect("queued");
        assert!(second.complete);
        assert!(is_done(&second.done, 0) && is_done(&second.done, 1));
        assert!(q.leave(&[2; 16]).is_none(), "left once");
        assert!(q.pages.is_empty() && q.runs.is_empty());
        assert_eq!(q.kept, 0);
    }
}
