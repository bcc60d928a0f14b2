//! The sled implementation of [`Store`]: one writer thread applies queued
//! writes in order, many at a time in one batch, and syncs the disk once per
//! batch that holds a durable write (group commit).
//!
//! Keys of the `runs` tree: `q<seq>` queue pages, the runs one writer turn
//! queued ([`crate::queued`]); `e<id>` a run not finished yet that saved a
//! position or waits (its record, its pending entry, the position it resumes
//! from, and its input); `f<second><seq>` compressed pages of finished
//! records with their inputs ([`crate::pages`]). An async run that finishes
//! without saving a position shares all three of its sled operations (queue
//! page, finished page, the queue page's removal) with the other runs of its
//! writer turns. Values are MessagePack ([`encode`]); the default tree holds
//! the format mark ([`FORMAT`]).

use crate::pages::{self, PAGE};
use crate::queued::{self, Queued, QUEUE};
use crate::record::{
    ExecutionFilter, ExecutionRecord, IdempotencyEntry, Pending, RunInput, RunStatus,
};
use crate::{db_err, BoxFuture, Store, StoreError, StoreResult, Write};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// sled's page cache (its default is 1 GiB).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// A page is closed once its entries hold this much, before compression.
/// sled's CPU is per insert and its resident memory grows with the bytes it
/// is given (measured under the benchmark: uncompressed pages of 1 KiB peak
/// ~46 MiB, of 16 KiB ~155 MiB; compressed 16 KiB pages ~36 MiB), so pages
/// are large and compressed ([`pages::seal`]): ~16 records of a kilobyte
/// cost one insert (232,000 sync records took 29 MB on disk).
const PAGE_BYTES: usize = 16 * 1024;
/// Most writes applied in one batch.
const MAX_BATCH: usize = 4096;
/// How long the writer lets writes nobody waits on gather before a batch; a
/// durable write cuts the wait short (it wakes the writer). Longer gathers
/// mean fewer, larger pages and fewer wake-ups: 4 ms against 1 ms cut 3–9 %
/// of a sync request's CPU in two paired runs.
const GATHER: std::time::Duration = std::time::Duration::from_millis(4);
/// Most writes waiting for the writer; past it, submitting blocks
/// (backpressure). Writes wait encoded (about a kilobyte each), so a writer
/// stall holds at most ~10 MiB.
const BACKLOG: usize = 8192;

const LIVE: u8 = b'e';

/// The layout of the `runs` tree, kept under [`FORMAT_KEY`] in the default
/// tree. Format 3: compressed pages, values in MessagePack. Format 4: a
/// record's request kept as received (headers in order, a body that parses
/// again from the raw body not stored twice). Other folders are refused with
/// a clear error rather than read as damaged pages.
const FORMAT: &[u8] = b"4";
const FORMAT_KEY: &[u8] = b"format";

/// Refuses a database whose values were written in another layout, and
/// marks a new one (one with no runs and no idempotency keys).
fn check_format(db: &sled::Db, trees: &[&sled::Tree], dir: &Path) -> StoreResult<()> {
    let found = db.get(FORMAT_KEY).map_err(db_err)?;
    match found {
        Some(v) if v == FORMAT => Ok(()),
        None if trees.iter().all(|t| t.is_empty()) => {
            db.insert(FORMAT_KEY, FORMAT).map_err(db_err)?;
            db.flush().map_err(db_err)?;
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

/// The value under `e<id>`, a run not finished yet, is `length (u32 LE) |`
/// this [encoded](encode) `| input` (encoded; empty when the run keeps
/// none); the input can then be carried over without decoding it.
#[derive(serde::Deserialize)]
struct Live {
    record: ExecutionRecord,
    pending: Option<Pending>,
}

/// A run not finished, as reads collect it: its id, its entry and its
/// input (encoded; empty for none).
type LiveRun = ([u8; 16], Live, Vec<u8>);

/// [`Live`], borrowed for writing.
#[derive(serde::Serialize)]
struct LiveRef<'a> {
    record: &'a ExecutionRecord,
    pending: Option<&'a Pending>,
}

/// A live entry's value from its encoded record part and its input.
fn live_value(record: &[u8], input: &[u8]) -> StoreResult<Vec<u8>> {
    let len = u32::try_from(record.len())
        .map_err(|_| StoreError::Db("a run's record is larger than 4 GiB".into()))?;
    let mut v = Vec::with_capacity(4 + record.len() + input.len());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(record);
    v.extend_from_slice(input);
    Ok(v)
}

/// A live entry's record part and input.
fn split_live<'a>(key: &[u8], v: &'a [u8]) -> StoreResult<(&'a [u8], &'a [u8])> {
    let damaged = || StoreError::Corrupt {
        key: format!("{key:02x?}"),
        message: "a live run's entry is cut short".into(),
    };
    let len: [u8; 4] = v
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(damaged)?;
    let end = 4 + u32::from_le_bytes(len) as usize;
    Ok((v.get(4..end).ok_or_else(damaged)?, &v[end..]))
}

fn decode_live(key: &[u8], v: &[u8]) -> StoreResult<Live> {
    decode(key, split_live(key, v)?.0)
}

/// An input as stored (empty: none).
fn decode_input(key: &[u8], input: &[u8]) -> StoreResult<Option<RunInput>> {
    if input.is_empty() {
        Ok(None)
    } else {
        decode(key, input).map(Some)
    }
}

/// Work for the writer thread.
enum Job {
    /// A write; with a sender, answer once it is on disk.
    Write(Prepared, Option<oneshot::Sender<StoreResult<()>>>),
    /// Answer once everything before it is on disk.
    Barrier(oneshot::Sender<StoreResult<()>>),
}

/// Executions, pending runs and workflow versions in one sled database.
pub struct SledStore {
    db: sled::Db,
    runs: sled::Tree,
    versions: sled::Tree,
    idempotency: sled::Tree,
    jobs: Option<mpsc::SyncSender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Runs whose live entry is in a queue page ([`crate::queued`]).
    queued: Arc<Mutex<Queued>>,
}

/// The index of queued runs, even if a thread panicked while holding it
/// (its updates are single inserts and removals).
fn lock(q: &Mutex<Queued>) -> MutexGuard<'_, Queued> {
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn id_bytes(id: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

fn key_of(prefix: u8, id: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(id);
    k
}

/// `<workflow> NUL <key>`: keys of different workflows never meet.
fn idempotency_key(workflow: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(workflow.len() + key.len() + 1);
    k.extend_from_slice(workflow.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// A stored value (MessagePack; see [`encode`]).
fn decode<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> StoreResult<T> {
    rmp_serde::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        message: e.to_string(),
    })
}

/// A value as stored: MessagePack, struct fields by position. It copies
/// strings where JSON escapes them (a record's encoding was a tenth of a
/// request's instructions as JSON), and leaves field names out (a fifth of
/// a record's bytes, each encoded and compressed again). A field added to a
/// stored struct goes last, with `#[serde(default)]`, so that older values
/// (shorter arrays) still decode; no stored field may be skipped when
/// serialized.
fn encode<T: serde::Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    // Records are about a kilobyte: start there rather than grow to it.
    let mut out = Vec::with_capacity(1024);
    rmp_serde::encode::write(&mut out, v)
        .map_err(|e| StoreError::Db(format!("cannot encode: {e}")))?;
    Ok(out)
}

impl SledStore {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> StoreResult<SledStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .flush_every_ms(Some(500))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("lock")
                    || text.contains("WouldBlock")
                    || text.contains("temporarily unavailable")
                {
                    StoreError::Locked(dir.display().to_string())
                } else {
                    db_err(e)
                }
            })?;
        let runs = db.open_tree("runs").map_err(db_err)?;
        let versions = db.open_tree("versions").map_err(db_err)?;
        let idempotency = db.open_tree("idempotency").map_err(db_err)?;
        check_format(&db, &[&runs, &idempotency], dir)?;
        let (index, empty) = Queued::rebuild(&runs, LIVE)?;
        for k in empty {
            runs.remove(k).map_err(db_err)?;
        }
        let queued = Arc::new(Mutex::new(index));
        let (tx, rx) = mpsc::sync_channel(BACKLOG);
        let (writer_db, writer_runs, writer_queued) = (db.clone(), runs.clone(), queued.clone());
        let writer = std::thread::Builder::new()
            .name("hookflow-writer".into())
            .spawn(move || write_loop(writer_db, writer_runs, writer_queued, rx))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(SledStore {
            db,
            runs,
            versions,
            idempotency,
            jobs: Some(tx),
            writer: Some(writer),
            queued,
        })
    }

    /// A finished record, from the pages of the second its id names (the
    /// last copy, should a resumed run have finished twice).
    fn packed(&self, id: &[u8; 16]) -> StoreResult<Option<(ExecutionRecord, Option<RunInput>)>> {
        let mut found = None;
        for item in self
            .runs
            .scan_prefix(pages::bucket_prefix(pages::bucket_of(id)))
        {
            let (k, v) = item.map_err(db_err)?;
            let page = pages::open(&v).map_err(|()| pages::corrupt(&k))?;
            for e in pages::entries(&page) {
                let e = e.map_err(|()| pages::corrupt(&k))?;
                if e.id == *id {
                    found = Some((decode(&k, e.record)?, decode_input(&k, e.input)?));
                }
            }
        }
        Ok(found)
    }

    /// A run's record and input, live or finished.
    fn find(&self, id: &[u8; 16]) -> StoreResult<Option<(ExecutionRecord, Option<RunInput>)>> {
        let lk = key_of(LIVE, id);
        if let Some(v) = self.runs.get(lk).map_err(db_err)? {
            let (record, input) = split_live(&lk, &v)?;
            let live: Live = decode(&lk, record)?;
            return Ok(Some((live.record, decode_input(&lk, input)?)));
        }
        let page = lock(&self.queued).runs.get(id).map(|r| r.page);
        if let Some(seq) = page {
            if let Some((live, input)) = self.queue_entry(seq, id)? {
                return Ok(Some((live.record, input)));
            }
        }
        self.packed(id)
    }

    /// A run's entry in a queue page.
    fn queue_entry(
        &self,
        seq: u64,
        id: &[u8; 16],
    ) -> StoreResult<Option<(Live, Option<RunInput>)>> {
        let key = queued::queue_key(seq);
        let Some(v) = self.runs.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        let page = pages::open(&v).map_err(|()| pages::corrupt(&key))?;
        match pages::find(&key, &page, id)? {
            Some(e) => Ok(Some((
                decode(&key, e.record)?,
                decode_input(&key, e.input)?,
            ))),
            None => Ok(None),
        }
    }

    /// Every run not finished: live entries, then queue entries of runs
    /// without one; each with its input (encoded, empty for none), unordered.
    fn live_runs(&self) -> StoreResult<Vec<LiveRun>> {
        let mut out = Vec::new();
        let mut own = std::collections::HashSet::new();
        for item in self.runs.scan_prefix([LIVE]) {
            let (k, v) = item.map_err(db_err)?;
            let (record, input) = split_live(&k, &v)?;
            let live: Live = decode(&k, record)?;
            let Some(id) = id_bytes(&live.record.id) else {
                continue;
            };
            own.insert(id);
            out.push((id, live, input.to_vec()));
        }
        let queued: std::collections::HashSet<[u8; 16]> = lock(&self.queued)
            .runs
            .iter()
            .filter(|(_, r)| !r.finished)
            .map(|(id, _)| *id)
            .collect();
        if queued.is_empty() {
            return Ok(out);
        }
        for item in self.runs.scan_prefix([QUEUE]) {
            let (k, v) = item.map_err(db_err)?;
            let page = pages::open(&v).map_err(|()| pages::corrupt(&k))?;
            for e in pages::entries(&page) {
                let e = e.map_err(|()| pages::corrupt(&k))?;
                if queued.contains(&e.id) && !own.contains(&e.id) {
                    out.push((e.id, decode(&k, e.record)?, e.input.to_vec()));
                }
            }
        }
        Ok(out)
    }

    /// Puts back the trigger context of a record that keeps it in its input
    /// (redacted, as records show it).
    fn with_trigger(mut record: ExecutionRecord, input: Option<RunInput>) -> ExecutionRecord {
        if record.trigger.is_none() {
            record.trigger = input.map(|i| i.trigger.redacted());
        }
        record
    }

    /// Hands a job to the writer; false when the writer has stopped.
    fn submit(&self, job: Job) -> bool {
        let waited_on = !matches!(job, Job::Write(_, None));
        let sent = self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent && waited_on {
            // Someone waits for this one: end the writer's gather now.
            if let Some(writer) = &self.writer {
                writer.thread().unpark();
            }
        }
        sent
    }
}

/// Writes in the order they are applied: a value to insert, or `None` to
/// remove the key.
type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The writes of one writer turn: live entries and queue pages first, then
/// the pages of finished records, then the removals that finishing implies.
/// A crash between them leaves a finished run's live or queue entry next to
/// its page: a live entry resumes the run (at least once) and lists show the
/// finished copy; a queue entry is dropped at the next start. Never a lost
/// record.
#[derive(Default)]
struct Batch {
    ops: Ops,
    /// The queue pages of runs this turn queues; the last one is filling.
    queue_pages: Vec<(u64, Vec<u8>)>,
    /// The page being filled, per second.
    pages: BTreeMap<u64, Vec<u8>>,
    /// Pages already full.
    full: Vec<(u64, Vec<u8>)>,
    after: Ops,
    /// Queued runs this turn finishes, forgotten by the index once written.
    finished: Vec<[u8; 16]>,
}

/// A run's record, encoded, with what a page entry's header says of it.
struct Encoded {
    id: [u8; 16],
    started_ms: u64,
    status: RunStatus,
    workflow: String,
    /// The record (a finished run) or the live entry (record and
    /// position), in MessagePack.
    msgpack: Vec<u8>,
}

impl Encoded {
    /// Appends this run, with its input, to a page.
    fn push_to(&self, page: &mut Vec<u8>, input: &[u8]) {
        pages::push_entry(
            page,
            &self.id,
            self.started_ms,
            self.status,
            &self.workflow,
            &self.msgpack,
            input,
        );
    }
}

/// A write encoded on the thread that submits it, so that the writer only
/// applies it and a waiting write holds bytes, not a record.
enum Prepared {
    /// A finished run: its page entry; `remove_live` when it had a live
    /// entry (whose input the page entry then keeps, unless one is given).
    Finished {
        run: Encoded,
        input: Option<Vec<u8>>,
        remove_live: bool,
    },
    /// A run not finished: its live entry (record and position, encoded);
    /// without an input, the stored one is kept. A run given its input is
    /// new: its entry goes into a queue page.
    Live {
        run: Encoded,
        input: Option<Vec<u8>>,
    },
    /// A record without its position: the writer keeps the stored one.
    Merge([u8; 16], Box<Write>),
}

impl Prepared {
    fn new(mut w: Write) -> StoreResult<Prepared> {
        if w.input_stored {
            // The input holds the trigger context; do not store it twice.
            w.record.trigger = None;
        }
        let Some(id) = id_bytes(&w.record.id) else {
            return Err(StoreError::Db(format!(
                "invalid execution id {}",
                w.record.id
            )));
        };
        let input = w.input.as_ref().map(encode).transpose()?;
        let finished = w.record.status.is_finished();
        if !finished && w.pending.is_none() && !w.clear_pending {
            return Ok(Prepared::Merge(id, Box::new(w)));
        }
        let msgpack = if finished {
            encode(&w.record)?
        } else {
            encode(&LiveRef {
                record: &w.record,
                pending: w.pending.as_ref(),
            })?
        };
        let run = Encoded {
            id,
            started_ms: w.record.started_ms,
            status: w.record.status,
            workflow: w.record.workflow,
            msgpack,
        };
        Ok(if finished {
            Prepared::Finished {
                run,
                input,
                // A run with a pending entry had a live entry; a sync run
                // never did (and costs no removal).
                remove_live: w.clear_pending,
            }
        } else {
            Prepared::Live { run, input }
        })
    }
}

impl Batch {
    fn add(
        &mut self,
        runs: &sled::Tree,
        queued: &mut Queued,
        seq: &mut u64,
        write: Prepared,
    ) -> StoreResult<()> {
        match write {
            Prepared::Finished {
                run: encoded,
                input,
                remove_live,
            } => {
                let id = encoded.id;
                let key = key_of(LIVE, &id);
                let input = match queued.finish(&id) {
                    Some(done) => {
                        let input = match (input, done.input) {
                            (Some(input), _) | (None, Some(input)) => input,
                            (None, None) => self.stored_input(runs, queued, &key)?,
                        };
                        if done.own {
                            self.after.push((key.to_vec(), None));
                        }
                        if done.empty {
                            self.after
                                .push((queued::queue_key(done.page).to_vec(), None));
                        }
                        self.finished.push(id);
                        input
                    }
                    None => {
                        if remove_live {
                            self.after.push((key.to_vec(), None));
                        }
                        match (input, remove_live) {
                            (Some(input), _) => input,
                            (None, true) => self.stored_input(runs, queued, &key)?,
                            (None, false) => Vec::new(),
                        }
                    }
                };
                let bucket = pages::bucket_of(&id);
                let page = self.pages.entry(bucket).or_default();
                if page.len() >= PAGE_BYTES {
                    self.full.push((bucket, std::mem::take(page)));
                }
                encoded.push_to(page, &input);
            }
            Prepared::Live {
                run: encoded,
                input,
            } => {
                let id = encoded.id;
                let key = key_of(LIVE, &id);
                let queued_run = queued.runs.get(&id).map(|r| r.finished);
                match (input, queued_run) {
                    (Some(input), None) => {
                        // A new run: into this turn's queue page.
                        if self
                            .queue_pages
                            .last()
                            .is_none_or(|(_, p)| p.len() >= PAGE_BYTES)
                        {
                            *seq += 1;
                            self.queue_pages.push((*seq, Vec::new()));
                        }
                        if let Some((page_seq, page)) = self.queue_pages.last_mut() {
                            encoded.push_to(page, &input);
                            queued.add(id, *page_seq, input);
                        }
                    }
                    (input, Some(false)) => {
                        // A queued run's own entry, newer than its queue
                        // entry; the input comes along (read before the run
                        // is marked, while its queue entry still counts).
                        let input = match (input, queued.take_input(&id)) {
                            (Some(input), _) | (None, Some(input)) => input,
                            (None, None) => self.stored_input(runs, queued, &key)?,
                        };
                        queued.own(&id);
                        self.ops
                            .push((key.to_vec(), Some(live_value(&encoded.msgpack, &input)?)));
                    }
                    (input, _) => {
                        let input = match input {
                            Some(input) => input,
                            None => self.stored_input(runs, queued, &key)?,
                        };
                        self.ops
                            .push((key.to_vec(), Some(live_value(&encoded.msgpack, &input)?)));
                    }
                }
            }
            Prepared::Merge(id, mut w) => {
                let key = key_of(LIVE, &id);
                w.pending = self.stored_pending(runs, queued, &key)?;
                w.clear_pending = w.pending.is_none();
                return self.add(runs, queued, seq, Prepared::new(*w)?);
            }
        }
        Ok(())
    }

    /// A live run's entry (`e<id>` key), as this batch, the store or its
    /// queue page has it.
    fn stored_live(
        &self,
        runs: &sled::Tree,
        queued: &Queued,
        key: &[u8],
    ) -> StoreResult<Option<Vec<u8>>> {
        if let Some((_, v)) = self.ops.iter().rev().find(|(k, _)| k == key) {
            return Ok(v.clone());
        }
        if let Some(v) = runs.get(key).map_err(db_err)? {
            return Ok(Some(v.to_vec()));
        }
        let Some(id) = key.get(1..).and_then(|id| <[u8; 16]>::try_from(id).ok()) else {
            return Ok(None);
        };
        let Some(run) = queued.runs.get(&id).filter(|r| !r.own) else {
            return Ok(None);
        };
        let qk = queued::queue_key(run.page);
        let stored;
        let page = match self.queue_pages.iter().find(|(s, _)| *s == run.page) {
            Some((_, page)) => page.as_slice(),
            None => match runs.get(qk).map_err(db_err)? {
                Some(v) => {
                    stored = pages::open(&v).map_err(|()| pages::corrupt(&qk))?;
                    stored.as_slice()
                }
                None => return Ok(None),
            },
        };
        match pages::find(&qk, page, &id)? {
            Some(e) => Ok(Some(live_value(e.record, e.input)?)),
            None => Ok(None),
        }
    }

    /// The pending entry of a live run.
    fn stored_pending(
        &self,
        runs: &sled::Tree,
        queued: &Queued,
        key: &[u8],
    ) -> StoreResult<Option<Pending>> {
        match self.stored_live(runs, queued, key)? {
            Some(v) => Ok(decode_live(key, &v)?.pending),
            None => Ok(None),
        }
    }

    /// The input a live run keeps (empty: none).
    fn stored_input(&self, runs: &sled::Tree, queued: &Queued, key: &[u8]) -> StoreResult<Vec<u8>> {
        match self.stored_live(runs, queued, key)? {
            Some(v) => Ok(split_live(key, &v)?.1.to_vec()),
            None => Ok(Vec::new()),
        }
    }

    /// The writes to apply, in order, and the queued runs they finish.
    fn into_ops(self, seq: &mut u64) -> (Ops, Vec<[u8; 16]>) {
        let mut ops = self.ops;
        for (q, page) in self.queue_pages {
            ops.push((queued::queue_key(q).to_vec(), Some(pages::seal(&page))));
        }
        for (bucket, page) in self.full.into_iter().chain(self.pages) {
            *seq += 1;
            ops.push((
                pages::page_key(bucket, *seq).to_vec(),
                Some(pages::seal(&page)),
            ));
        }
        ops.extend(self.after);
        (ops, self.finished)
    }
}

/// Applies writes one by one: cheaper than sled's `apply_batch`, which
/// rolls the log buffer twice per call.
fn apply_each(runs: &sled::Tree, ops: Ops) -> sled::Result<()> {
    for (k, v) in ops {
        match v {
            Some(v) => runs.insert(k, v)?,
            None => runs.remove(k)?,
        };
    }
    Ok(())
}

/// Applies writes atomically (all or none after a crash).
fn apply_atomic(runs: &sled::Tree, ops: Ops) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    for (k, v) in ops {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    runs.apply_batch(batch)
}

/// The writer: takes every job waiting, applies the writes as one batch,
/// syncs once if anyone waits for durability, then answers them.
fn write_loop(db: sled::Db, runs: sled::Tree, queued: Arc<Mutex<Queued>>, rx: mpsc::Receiver<Job>) {
    // Page sequence numbers only need to differ between pages of one second
    // (and queue pages from all other queue pages): start from the clock so
    // that a restarted writer never reuses one.
    let mut seq = hookflow_now_micros();
    while let Ok(first) = rx.recv() {
        if matches!(first, Job::Write(_, None)) {
            // Nobody waits on this one: let a batch gather, until a write
            // somebody waits for wakes the writer. Under load the writer is
            // then rarely blocked, so submitters seldom pay to wake it.
            // (Returns early when unparked, or spuriously: a shorter gather.)
            std::thread::park_timeout(GATHER);
        }
        let mut batch = Batch::default();
        let mut waiters = Vec::new();
        let mut failed: Vec<(oneshot::Sender<StoreResult<()>>, StoreError)> = Vec::new();
        for job in std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1)) {
            match job {
                Job::Write(w, waiter) => {
                    let added = batch.add(&runs, &mut lock(&queued), &mut seq, w);
                    match (added, waiter) {
                        (Ok(()), Some(tx)) => waiters.push(tx),
                        (Ok(()), None) => {}
                        (Err(e), Some(tx)) => failed.push((tx, e)),
                        (Err(error), None) => {
                            tracing::error!(message = "Could not write an execution record.", %error)
                        }
                    }
                }
                Job::Barrier(tx) => waiters.push(tx),
            }
        }
        let (ops, finished) = batch.into_ops(&mut seq);
        // Durable writes (queued runs) go in atomically; the sync follows anyway.
        let mut result = if waiters.is_empty() {
            apply_each(&runs, ops)
        } else {
            apply_atomic(&runs, ops)
        }
        .map_err(|e| e.to_string());
        lock(&queued).forget(&finished);
        if result.is_ok() && !waiters.is_empty() {
            result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        }
        if let Err(error) = &result {
            tracing::error!(message = "Could not write execution records.", %error);
        }
        for tx in waiters {
            let _ = tx.send(result.clone().map_err(StoreError::Db));
        }
        for (tx, e) in failed {
            let _ = tx.send(Err(e));
        }
    }
}

fn hookflow_now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn stopped() -> StoreError {
    StoreError::Db("the store's writer has stopped".into())
}

impl Store for SledStore {
    fn put(&self, write: Write) {
        match Prepared::new(write) {
            Ok(p) => {
                if !self.submit(Job::Write(p, None)) {
                    tracing::error!(
                        message = "The store's writer has stopped; a record was not written."
                    );
                }
            }
            Err(error) => {
                tracing::error!(message = "Could not write an execution record.", %error)
            }
        }
    }

    fn put_durable(&self, write: Write) -> BoxFuture<'_, StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        let submitted = Prepared::new(write).map(|p| self.submit(Job::Write(p, Some(tx))));
        Box::pin(async move {
            match submitted {
                Ok(true) => rx.await.map_err(|_| stopped())?,
                Ok(false) => Err(stopped()),
                Err(e) => Err(e),
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(Job::Barrier(tx));
        Box::pin(async move {
            if !submitted {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?
        })
    }

    fn input(&self, id: &str) -> StoreResult<Option<RunInput>> {
        let Some(id) = id_bytes(id) else {
            return Ok(None);
        };
        Ok(self.find(&id)?.and_then(|(_, input)| input))
    }

    fn get(&self, id: &str) -> StoreResult<Option<ExecutionRecord>> {
        let Some(id) = id_bytes(id) else {
            return Ok(None);
        };
        Ok(self
            .find(&id)?
            .map(|(record, input)| SledStore::with_trigger(record, input)))
    }

    fn list(&self, f: &ExecutionFilter) -> StoreResult<(Vec<ExecutionRecord>, Option<String>)> {
        let cursor = f.cursor.as_deref().and_then(id_bytes);
        let limit = f.limit.max(1);
        let wanted = |id: &[u8; 16], workflow: &[u8], status: RunStatus, started_ms: u64| {
            cursor.is_none_or(|c| *id < c)
                && f.since_ms.is_none_or(|s| started_ms >= s)
                && f.until_ms.is_none_or(|u| started_ms <= u)
                && f.workflow.as_ref().is_none_or(|w| w.as_bytes() == workflow)
                && f.status.is_none_or(|s| s == status)
        };
        // Runs not finished yet are few: read them all, newest first.
        let mut live = Vec::new();
        for (id, entry, _) in self.live_runs()? {
            let record = entry.record;
            if wanted(
                &id,
                record.workflow.as_bytes(),
                record.status,
                record.started_ms,
            ) {
                live.push((id, record));
            }
        }
        live.sort_by_key(|l| std::cmp::Reverse(l.0));
        let mut live = live.into_iter().peekable();
        // Then the pages, one second at a time from the newest, merged with them.
        // One record more than asked tells whether there is a next page.
        let mut out = Vec::new();
        let end = match cursor {
            Some(c) => pages::bucket_prefix(pages::bucket_of(&c).saturating_add(1)).to_vec(),
            None => vec![PAGE + 1],
        };
        let mut walk = self.runs.range(vec![PAGE]..end).rev();
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut group_bucket = None;
        loop {
            let next = match walk.next() {
                Some(item) => {
                    let (k, v) = item.map_err(db_err)?;
                    let bucket = pages::bucket_of_key(&k).ok_or_else(|| pages::corrupt(&k))?;
                    // Ids are time-ordered: a second before `since` ends the walk.
                    let older = f
                        .since_ms
                        .is_some_and(|s| pages::bucket_end_ms(bucket) <= s);
                    if older {
                        None
                    } else {
                        let page = pages::open(&v).map_err(|()| pages::corrupt(&k))?;
                        Some((bucket, page))
                    }
                }
                None => None,
            };
            if !group.is_empty() && next.as_ref().map(|n| n.0) != group_bucket {
                merge_group(&group, &wanted, &mut live, &mut out, limit)?;
                group.clear();
                if out.len() > limit {
                    break;
                }
            }
            let Some((bucket, page)) = next else {
                break;
            };
            group_bucket = Some(bucket);
            group.push(page);
        }
        for (_, record) in live {
            if out.len() > limit {
                break;
            }
            out.push(record);
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let cursor = if more {
            out.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok((out, cursor))
    }

    fn pending(&self) -> StoreResult<Vec<(ExecutionRecord, Pending)>> {
        let mut runs = self.live_runs()?;
        // Oldest first: ids are time-ordered.
        runs.sort_by_key(|r| r.0);
        let mut out = Vec::new();
        for (id, live, input) in runs {
            if let Some(pending) = live.pending {
                let input = decode_input(&key_of(LIVE, &id), &input)?;
                out.push((SledStore::with_trigger(live.record, input), pending));
            }
        }
        Ok(out)
    }

    fn put_version(&self, version: &str, source: &str) -> StoreResult<()> {
        if self
            .versions
            .contains_key(version.as_bytes())
            .map_err(db_err)?
        {
            return Ok(());
        }
        self.versions
            .insert(version.as_bytes(), source.as_bytes())
            .map_err(db_err)?;
        Ok(())
    }

    fn version(&self, version: &str) -> StoreResult<Option<String>> {
        Ok(self
            .versions
            .get(version.as_bytes())
            .map_err(db_err)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn idempotency(
        &self,
        workflow: &str,
        key: &str,
        now_ms: u64,
    ) -> StoreResult<Option<IdempotencyEntry>> {
        let k = idempotency_key(workflow, key);
        match self.idempotency.get(&k).map_err(db_err)? {
            Some(v) => {
                let entry: IdempotencyEntry = decode(&k, &v)?;
                Ok((entry.expires_ms > now_ms).then_some(entry))
            }
            None => Ok(None),
        }
    }

    fn put_idempotency(
        &self,
        workflow: &str,
        key: &str,
        entry: &IdempotencyEntry,
    ) -> StoreResult<()> {
        self.idempotency
            .insert(idempotency_key(workflow, key), encode(entry)?)
            .map_err(db_err)?;
        Ok(())
    }

    fn remove_expired_idempotency(&self, now_ms: u64) -> StoreResult<usize> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self.idempotency.iter() {
            let (k, v) = item.map_err(db_err)?;
            let entry: IdempotencyEntry = decode(&k, &v)?;
            if entry.expires_ms <= now_ms {
                batch.remove(k);
                removed += 1;
            }
        }
        self.idempotency.apply_batch(batch).map_err(db_err)?;
        Ok(removed)
    }

    fn remove_finished_before(&self, cutoff_ms: u64) -> StoreResult<usize> {
        let mut removed = 0;
        let end = pages::bucket_prefix(pages::bucket_of_ms(cutoff_ms).saturating_add(1));
        for item in self.runs.range(vec![PAGE]..end.to_vec()) {
            let (k, v) = item.map_err(db_err)?;
            let page = pages::open(&v).map_err(|()| pages::corrupt(&k))?;
            let mut kept = Vec::new();
            let mut dropped = 0;
            for e in pages::entries(&page) {
                let e = e.map_err(|()| pages::corrupt(&k))?;
                if e.started_ms < cutoff_ms {
                    // Its input goes with it.
                    dropped += 1;
                } else {
                    kept.extend_from_slice(&page[e.span.0..e.span.1]);
                }
            }
            if dropped > 0 {
                if kept.is_empty() {
                    self.runs.remove(&k).map_err(db_err)?;
                } else {
                    self.runs.insert(&k, pages::seal(&kept)).map_err(db_err)?;
                }
            }
            removed += dropped;
        }
        Ok(removed)
    }
}

/// Merges the entries of one second's pages (newest first, the last copy of
/// a record written twice) with the live records newer than each of them.
fn merge_group(
    group: &[Vec<u8>],
    wanted: &impl Fn(&[u8; 16], &[u8], RunStatus, u64) -> bool,
    live: &mut std::iter::Peekable<std::vec::IntoIter<([u8; 16], ExecutionRecord)>>,
    out: &mut Vec<ExecutionRecord>,
    limit: usize,
) -> StoreResult<()> {
    let mut entries = Vec::new();
    // The walk is newest page first, so the first copy of an id is the last written.
    for page in group {
        for e in pages::entries(page) {
            let e = e.map_err(|()| StoreError::Corrupt {
                key: "a page of finished records".into(),
                message: "an entry is cut short".into(),
            })?;
            if wanted(&e.id, e.workflow, e.status, e.started_ms) {
                entries.push(e);
            }
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.id));
    let mut last = None;
    for e in entries {
        if last == Some(e.id) {
            continue;
        }
        last = Some(e.id);
        while let Some((id, _)) = live.peek() {
            if *id < e.id {
                break;
            }
            let newer = *id > e.id;
            if let Some((_, record)) = live.next() {
                // An equal id is a stale live copy of a finished run.
                if newer {
                    out.push(record);
                    if out.len() > limit {
                        return Ok(());
                    }
                }
            }
        }
        out.push(decode(&e.id, e.record)?);
        if out.len() > limit {
            return Ok(());
        }
    }
    Ok(())
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Let the writer apply what is queued, then release its handle on the
        // database and sync.
        self.jobs.take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        let _ = self.db.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RunStatus;
    use hookflow_model::request::TriggerRequest;
    use serde_json::{json, Value as Json};

    fn record(id: &str, workflow: &str, status: RunStatus, started_ms: u64) -> ExecutionRecord {
        ExecutionRecord {
            id: id.into(),
            workflow: workflow.into(),
            version: "v1".into(),
            status,
            started_at: hookflow_model::time::Timestamp(started_ms),
            finished_at: None,
            started_ms,
            trigger: None,
            jobs: Vec::new(),
            response: None,
            retry_of: None,
            error: None,
        }
    }

    fn write(record: ExecutionRecord, pending: Option<Pending>, input: Option<Json>) -> Write {
        Write {
            record,
            clear_pending: pending.is_none(),
            input_stored: input.is_some(),
            pending,
            input: input.map(run_input),
        }
    }

    /// An input whose `vars` is `v` and whose request is `v.trigger` (if any).
    fn run_input(v: Json) -> RunInput {
        RunInput {
            trigger: TriggerRequest::from_json(v.get("trigger").unwrap_or(&Json::Null)),
            vars: v,
        }
    }

    /// A request with one Authorization header.
    fn authorized(value: &str) -> Option<TriggerRequest> {
        Some(TriggerRequest {
            headers: vec![("authorization".into(), value.into())],
            ..TriggerRequest::default()
        })
    }

    /// What the store says of a run's input, as the `vars` it was given.
    fn input_of(store: &SledStore, id: &str) -> Option<Json> {
        store.input(id).expect("input").map(|i| i.vars)
    }

    /// Opens a database just closed. sled's own background threads release
    /// the folder's lock shortly after the store is dropped, so wait a little.
    fn reopen(dir: &Path) -> SledStore {
        for _ in 0..100 {
            match SledStore::open(dir) {
                Ok(store) => return store,
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
        panic!("the database stayed locked for 5 s after it was closed")
    }

    /// Ids a few milliseconds apart, like runs started one after another.
    fn ids(n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                uuid::Uuid::now_v7().to_string()
            })
            .collect()
    }

    /// Ids and statuses of the ten newest runs.
    fn newest_ten(store: &SledStore) -> Vec<(String, RunStatus)> {
        let (all, _) = store
            .list(&ExecutionFilter {
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        all.iter().map(|r| (r.id.clone(), r.status)).collect()
    }

    /// The start time an id names (what the executor records).
    fn ms(id: &str) -> u64 {
        pages::id_millis(&id_bytes(id).expect("uuid"))
    }

    /// Opens the raw database of a data folder once its lock is released.
    fn raw_db(dir: &Path) -> sled::Db {
        for _ in 0..100 {
            if let Ok(db) = sled::open(dir.join("db")) {
                return db;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the database stayed locked for 5 s after it was closed")
    }

    #[test]
    fn every_json_shape_round_trips_through_the_encoding() {
        let mut r = record(&uuid::Uuid::now_v7().to_string(), "w", RunStatus::Failed, 7);
        r.trigger = Some(TriggerRequest {
            body: json!({
                "numbers": [0, -1, u64::MAX, i64::MIN, 99.5, 1.0, -0.25, 1e300],
                "text": ["", "ünïcödé \u{1F600}", "quote \" and \\ and \n"],
                "nested": {"a": {"b": [null, true, false, {}, []]}},
            }),
            ..TriggerRequest::default()
        });
        r.error = Some("a reason".into());
        r.finished_at = None;
        let back: ExecutionRecord = decode(b"k", &encode(&r).expect("encode")).expect("decode");
        assert_eq!(back, r);
        assert_eq!(
            serde_json::to_string(&back.trigger).expect("json"),
            serde_json::to_string(&r.trigger).expect("json"),
            "numbers keep their JSON form (1.0 stays a float)"
        );
        let err = decode::<ExecutionRecord>(b"k", b"\x93junk").expect_err("junk is refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn folders_of_another_format_are_refused_with_a_clear_error() {
        // A folder without a format mark but with runs (an older build).
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = raw_db(dir.path());
            let runs = db.open_tree("runs").expect("tree");
            runs.insert(b"fold", &b"x"[..]).expect("insert");
            db.flush().expect("flush");
        }
        let err = SledStore::open(dir.path()).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains("not migrated"), "{text}");
        assert!(text.contains("2 or older"), "{text}");
        // Or with idempotency keys only (its runs removed by retention).
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = raw_db(dir.path());
            let keys = db.open_tree("idempotency").expect("tree");
            keys.insert(b"w\0k", &b"{}"[..]).expect("insert");
            db.flush().expect("flush");
        }
        assert!(SledStore::open(dir.path()).is_err(), "old idempotency keys");
        // A folder marked with another format.
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SledStore::open(dir.path()).expect("new folder"));
        {
            let db = raw_db(dir.path());
            db.insert(FORMAT_KEY, &b"9"[..]).expect("mark");
            db.flush().expect("flush");
        }
        let text = loop {
            match SledStore::open(dir.path()) {
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => break e.to_string(),
                Ok(_) => panic!("a folder of format 9 was opened"),
            }
        };
        assert!(text.contains("format 9"), "{text}");
        // A new folder is marked and opens again.
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SledStore::open(dir.path()).expect("new folder"));
        drop(reopen(dir.path()));
    }

    /// How many queue pages the database holds.
    fn queue_pages(store: &SledStore) -> usize {
        store.runs.scan_prefix([QUEUE]).count()
    }

    #[tokio::test]
    async fn queued_runs_share_pages_that_go_when_their_runs_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = ids(5);
        let queued = |i: usize| {
            write(
                record(&ids[i], "q", RunStatus::Queued, ms(&ids[i])),
                Some(Pending {
                    status: RunStatus::Queued,
                    state: json!({"i": i}),
                    wake_at: None,
                }),
                Some(json!({"trigger": {"headers": {"authorization": "Basic s"}}, "i": i})),
            )
        };
        let finished = |i: usize| Write {
            record: record(&ids[i], "q", RunStatus::Resolved, ms(&ids[i])),
            pending: None,
            clear_pending: true,
            input_stored: true,
            input: None,
        };
        {
            let store = SledStore::open(dir.path()).expect("open");
            // Acknowledged together: one writer turn, one queue page.
            let acks: Vec<_> = (0..5).map(|i| store.put_durable(queued(i))).collect();
            for ack in acks {
                ack.await.expect("durable");
            }
            assert!(queue_pages(&store) <= 2, "{} pages", queue_pages(&store));
            let q = store.get(&ids[3]).expect("get").expect("queued run");
            assert_eq!(q.status, RunStatus::Queued);
            assert_eq!(q.trigger, authorized("[redacted]"));
            assert_eq!(
                input_of(&store, &ids[3]).map(|i| i["i"].clone()),
                Some(json!(3))
            );
            // 0 and 1 finish; 2 saves a position (an entry of its own), then waits.
            store.put(finished(0));
            store.put(finished(1));
            store.put(write(
                record(&ids[2], "q", RunStatus::Waiting, ms(&ids[2])),
                Some(Pending {
                    status: RunStatus::Waiting,
                    state: json!({"at": "delay"}),
                    wake_at: Some(5),
                }),
                None,
            ));
            store.flush().await.expect("flush");
            let statuses: Vec<_> = newest_ten(&store).into_iter().map(|(_, s)| s).collect();
            assert_eq!(
                statuses,
                vec![
                    RunStatus::Queued,
                    RunStatus::Queued,
                    RunStatus::Waiting,
                    RunStatus::Resolved,
                    RunStatus::Resolved
                ]
            );
            assert_eq!(
                input_of(&store, &ids[0]).map(|i| i["i"].clone()),
                Some(json!(0)),
                "a finished queued run keeps its input for retries"
            );
            // A page whose runs have all finished, left by a crash before its
            // removal: it is dropped at the next start, its run not resumed.
            let mut stale = Vec::new();
            pages::push_entry(
                &mut stale,
                &id_bytes(&ids[0]).expect("id"),
                ms(&ids[0]),
                RunStatus::Queued,
                "q",
                &encode(&LiveRef {
                    record: &record(&ids[0], "q", RunStatus::Queued, ms(&ids[0])),
                    pending: Some(&Pending {
                        status: RunStatus::Queued,
                        state: json!({}),
                        wake_at: None,
                    }),
                })
                .expect("encode"),
                b"",
            );
            store
                .runs
                .insert(queued::queue_key(1), pages::seal(&stale))
                .expect("insert");
        }
        let store = reopen(dir.path());
        assert!(
            store.runs.get(queued::queue_key(1)).expect("get").is_none(),
            "the stale page is gone"
        );
        let pending = store.pending().expect("pending");
        let resumed: Vec<_> = pending
            .iter()
            .map(|(r, p)| (r.id.clone(), p.status))
            .collect();
        assert_eq!(
            resumed,
            vec![
                (ids[2].clone(), RunStatus::Waiting),
                (ids[3].clone(), RunStatus::Queued),
                (ids[4].clone(), RunStatus::Queued)
            ],
            "unfinished runs resume, oldest first, the newest entry winning"
        );
        assert_eq!(pending[1].0.trigger, authorized("[redacted]"));
        // The index is rebuilt: finishing the rest removes every queue page
        // and every live entry, and keeps every record and input.
        for i in 2..5 {
            store.put(finished(i));
        }
        store.flush().await.expect("flush");
        assert_eq!(queue_pages(&store), 0);
        assert_eq!(store.runs.scan_prefix([LIVE]).count(), 0);
        assert!(store.pending().expect("pending").is_empty());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                store.get(id).expect("get").map(|r| r.status),
                Some(RunStatus::Resolved)
            );
            assert_eq!(input_of(&store, id).map(|v| v["i"].clone()), Some(json!(i)));
        }
    }

    #[tokio::test]
    async fn inputs_too_large_to_keep_are_read_back_from_the_queue_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let ids = ids(2);
        let big = json!({"body": "x".repeat(queued::KEPT_INPUT + 100)});
        for id in &ids {
            store
                .put_durable(write(
                    record(id, "q", RunStatus::Queued, ms(id)),
                    Some(Pending {
                        status: RunStatus::Queued,
                        state: json!({}),
                        wake_at: None,
                    }),
                    Some(big.clone()),
                ))
                .await
                .expect("durable");
        }
        // 0 saves a position (its own entry takes the input from the page), then finishes;
        // 1 finishes from the queue.
        store.put(write(
            record(&ids[0], "q", RunStatus::Running, ms(&ids[0])),
            Some(Pending {
                status: RunStatus::Running,
                state: json!({"at": 1}),
                wake_at: None,
            }),
            None,
        ));
        store.flush().await.expect("flush");
        assert_eq!(input_of(&store, &ids[0]), Some(big.clone()));
        for id in &ids {
            store.put(Write {
                record: record(id, "q", RunStatus::Resolved, ms(id)),
                pending: None,
                clear_pending: true,
                input_stored: true,
                input: None,
            });
        }
        store.flush().await.expect("flush");
        assert_eq!(queue_pages(&store), 0);
        for id in &ids {
            assert_eq!(input_of(&store, id), Some(big.clone()), "{id}");
        }
    }

    #[tokio::test]
    async fn durable_writes_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = ids(3);
        {
            let store = SledStore::open(dir.path()).expect("open");
            let p = Pending {
                status: RunStatus::Queued,
                state: json!({"at": 1}),
                wake_at: None,
            };
            store
                .put_durable(write(
                    record(&ids[0], "a", RunStatus::Queued, 1),
                    Some(p),
                    Some(json!({"body": 1})),
                ))
                .await
                .expect("durable put");
            store.put(write(
                record(&ids[1], "a", RunStatus::Resolved, 2),
                None,
                None,
            ));
            store.put_version("v1", "title: x").expect("version");
            // Dropping the store applies what is queued.
        }
        let store = reopen(dir.path());
        let pending = store.pending().expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0.id, ids[0]);
        assert_eq!(pending[0].1.state, json!({"at": 1}));
        assert_eq!(
            store.get(&ids[1]).expect("get").map(|r| r.status),
            Some(RunStatus::Resolved)
        );
        assert_eq!(input_of(&store, &ids[0]), Some(json!({"body": 1})));
        assert_eq!(
            store.version("v1").expect("version").as_deref(),
            Some("title: x")
        );
        // A record written without its position keeps the stored one.
        store.put(Write {
            record: record(&ids[0], "a", RunStatus::Running, 1),
            pending: None,
            clear_pending: false,
            input_stored: true,
            input: None,
        });
        store.flush().await.expect("flush");
        let pending = store.pending().expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0.status, RunStatus::Running);
        assert_eq!(pending[0].1.state, json!({"at": 1}));
        // Writes apply in order: finishing removes the pending entry.
        store.put(write(
            record(&ids[0], "a", RunStatus::Running, 1),
            Some(Pending {
                status: RunStatus::Running,
                state: json!({"at": 2}),
                wake_at: None,
            }),
            None,
        ));
        store.put(write(
            record(&ids[0], "a", RunStatus::Resolved, 1),
            None,
            None,
        ));
        store.flush().await.expect("flush");
        assert!(store.pending().expect("pending").is_empty());
        assert_eq!(
            store.get(&ids[0]).expect("get").map(|r| r.status),
            Some(RunStatus::Resolved)
        );
        assert_eq!(store.get("not-a-uuid").expect("get"), None);
    }

    #[tokio::test]
    async fn listing_filters_and_pages_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let ids = ids(5);
        for (i, id) in ids.iter().enumerate() {
            let wf = if i % 2 == 0 { "even" } else { "odd" };
            store.put(write(
                record(id, wf, RunStatus::Resolved, ms(id)),
                None,
                Some(json!(i)),
            ));
        }
        store.flush().await.expect("flush");
        let page = |f: ExecutionFilter| {
            let (recs, cursor) = store.list(&f).expect("list");
            (recs.into_iter().map(|r| r.id).collect::<Vec<_>>(), cursor)
        };
        let (first, cursor) = page(ExecutionFilter {
            limit: 2,
            ..Default::default()
        });
        assert_eq!(first, vec![ids[4].clone(), ids[3].clone()]);
        assert_eq!(cursor.as_deref(), Some(ids[3].as_str()));
        let (second, cursor) = page(ExecutionFilter {
            limit: 2,
            cursor,
            ..Default::default()
        });
        assert_eq!(second, vec![ids[2].clone(), ids[1].clone()]);
        let (third, cursor) = page(ExecutionFilter {
            limit: 2,
            cursor,
            ..Default::default()
        });
        assert_eq!(third, vec![ids[0].clone()]);
        assert_eq!(cursor, None);
        let (even, _) = page(ExecutionFilter {
            limit: 10,
            workflow: Some("even".into()),
            ..Default::default()
        });
        assert_eq!(even, vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]);
        let (window, _) = page(ExecutionFilter {
            limit: 10,
            since_ms: Some(ms(&ids[1])),
            until_ms: Some(ms(&ids[3])),
            ..Default::default()
        });
        assert_eq!(window, vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);
        assert_eq!(
            store
                .remove_finished_before(ms(&ids[2]))
                .expect("retention"),
            2
        );
        let (left, _) = page(ExecutionFilter {
            limit: 10,
            ..Default::default()
        });
        assert_eq!(left.len(), 3);
        assert_eq!(
            store.input(&ids[0]).expect("input"),
            None,
            "retention removes inputs too"
        );
        assert_eq!(input_of(&store, &ids[2]), Some(json!(2)));
    }

    #[tokio::test]
    async fn finished_runs_are_packed_and_listed_with_live_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = ids(6);
        let pending = |status| Pending {
            status,
            state: json!({}),
            wake_at: None,
        };
        {
            let store = SledStore::open(dir.path()).expect("open");
            // 0, 2, 4 finish (4 as a durable run that was live first); 1, 3, 5 stay live.
            for (i, id) in ids.iter().enumerate() {
                let live = i % 2 == 1 || i == 4;
                let status = if live {
                    RunStatus::Queued
                } else {
                    RunStatus::Resolved
                };
                store.put(write(
                    record(id, "w", status, ms(id)),
                    live.then(|| pending(RunStatus::Queued)),
                    live.then(|| json!({"trigger": {"headers": {"authorization": "Basic x"}}})),
                ));
            }
            // As the executor finishes a durable run: its input stays stored.
            store.put(Write {
                record: record(&ids[4], "w", RunStatus::Failed, ms(&ids[4])),
                pending: None,
                clear_pending: true,
                input_stored: true,
                input: None,
            });
            store.flush().await.expect("flush");
            let listed = newest_ten(&store);
            assert_eq!(
                listed,
                vec![
                    (ids[5].clone(), RunStatus::Queued),
                    (ids[4].clone(), RunStatus::Failed),
                    (ids[3].clone(), RunStatus::Queued),
                    (ids[2].clone(), RunStatus::Resolved),
                    (ids[1].clone(), RunStatus::Queued),
                    (ids[0].clone(), RunStatus::Resolved),
                ]
            );
            // Pages of two and cursors walk the same order across live and packed runs.
            let mut walked = Vec::new();
            let mut cursor = None;
            for _ in 0..10 {
                let (page, next) = store
                    .list(&ExecutionFilter {
                        limit: 2,
                        cursor: cursor.clone(),
                        ..Default::default()
                    })
                    .expect("list");
                walked.extend(page.into_iter().map(|r| r.id));
                cursor = next;
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(
                walked,
                listed.iter().map(|l| l.0.clone()).collect::<Vec<_>>()
            );
            let failed = store.get(&ids[4]).expect("get").expect("record");
            assert_eq!(failed.status, RunStatus::Failed);
            assert_eq!(
                failed.trigger,
                authorized("[redacted]"),
                "a packed durable run reads its trigger back from the input, redacted"
            );
            assert_eq!(
                store.input(&ids[4]).expect("input").map(|i| i.trigger),
                authorized("Basic x"),
                "a finished durable run keeps its full input, for retries"
            );
            // A crash between a finished run's page and the removal of its
            // live entry leaves both.
            let stale = record(&ids[2], "w", RunStatus::Running, ms(&ids[2]));
            store
                .runs
                .insert(
                    &key_of(LIVE, &id_bytes(&ids[2]).expect("uuid"))[..],
                    live_value(
                        &encode(&LiveRef {
                            record: &stale,
                            pending: Some(&pending(RunStatus::Running)),
                        })
                        .expect("encode"),
                        b"",
                    )
                    .expect("value"),
                )
                .expect("insert");
        }
        let store = reopen(dir.path());
        let resumed: Vec<_> = store
            .pending()
            .expect("pending")
            .into_iter()
            .map(|(r, _)| r.id)
            .collect();
        // Such a run resumes (at least once, as after any crash mid-run)...
        assert_eq!(
            resumed,
            vec![
                ids[1].clone(),
                ids[2].clone(),
                ids[3].clone(),
                ids[5].clone()
            ]
        );
        // ...and lists are not confused by the second copy: the finished one shows.
        let listed = newest_ten(&store);
        assert_eq!(listed.len(), 6);
        assert!(listed.contains(&(ids[2].clone(), RunStatus::Resolved)));
        // Retention splits a page: only records started before the cutoff go.
        let removed = store
            .remove_finished_before(ms(&ids[3]))
            .expect("retention");
        assert_eq!(removed, 2, "ids 0 and 2");
        assert_eq!(store.get(&ids[0]).expect("get"), None);
        assert_eq!(
            store.get(&ids[4]).expect("get").map(|r| r.status),
            Some(RunStatus::Failed)
        );
    }

    #[tokio::test]
    async fn full_pages_close_and_every_record_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let ids = ids(40);
        for (i, id) in ids.iter().enumerate() {
            let mut r = record(id, "w", RunStatus::Resolved, ms(id));
            // About 1.2 KiB each, so forty records fill several pages.
            r.error = Some(format!("{i}:{}", "x".repeat(1200)));
            store.put(write(r, None, None));
        }
        store.flush().await.expect("flush");
        let stored: Vec<_> = store
            .runs
            .scan_prefix([PAGE])
            .map(|item| item.expect("page").1)
            .collect();
        assert!(stored.len() >= 3, "{} pages", stored.len());
        for v in &stored {
            let page = pages::open(v).expect("a sealed page");
            assert!(v.len() < page.len(), "pages are stored compressed");
            assert!(
                page.len() < PAGE_BYTES + 2 * 1400,
                "a page closes near its size"
            );
        }
        for (i, id) in ids.iter().enumerate() {
            let r = store.get(id).expect("get").expect("found");
            assert_eq!(
                r.error.as_deref().and_then(|e| e.split(':').next()),
                Some(&*i.to_string())
            );
        }
        let (all, next) = store
            .list(&ExecutionFilter {
                limit: 100,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(next, None);
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(
            all.into_iter().map(|r| r.id).collect::<Vec<_>>(),
            newest_first
        );
        // A damaged page is an error that names it, not a panic or a silent gap.
        let (k, _) = store
            .runs
            .scan_prefix([PAGE])
            .next()
            .expect("a page")
            .expect("read");
        store
            .runs
            .insert(&k, &b"\xff\xff\xff\x7fjunk"[..])
            .expect("damage");
        let err = store
            .list(&ExecutionFilter {
                limit: 100,
                ..Default::default()
            })
            .expect_err("a damaged page is reported");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[tokio::test]
    async fn idempotency_keys_expire_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = IdempotencyEntry {
            execution_id: "e1".into(),
            expires_ms: 1000,
            response: None,
        };
        {
            let store = SledStore::open(dir.path()).expect("open");
            store.put_idempotency("wf", "k", &entry).expect("put");
            store.flush().await.expect("flush");
        }
        let store = reopen(dir.path());
        assert_eq!(
            store.idempotency("wf", "k", 999).expect("get"),
            Some(entry.clone())
        );
        assert_eq!(
            store.idempotency("other", "k", 999).expect("get"),
            None,
            "keys are per workflow"
        );
        assert_eq!(
            store.idempotency("wf", "k", 1000).expect("get"),
            None,
            "expired"
        );
        assert_eq!(store.remove_expired_idempotency(1000).expect("purge"), 1);
        assert_eq!(store.idempotency("wf", "k", 0).expect("get"), None);
    }

    #[tokio::test]
    async fn concurrent_durable_writes_share_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(SledStore::open(dir.path()).expect("open"));
        let mut tasks = Vec::new();
        for id in ids(64) {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.put_durable(write(record(&id, "a", RunStatus::Resolved, 1), None, None))
                    .await
            }));
        }
        for t in tasks {
            t.await.expect("join").expect("durable");
        }
        let (all, _) = store
            .list(&ExecutionFilter {
                limit: 100,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(all.len(), 64);
    }
}
