//! Retention: finished records go some time after they finished; expired
//! idempotency keys go. Unfinished runs are never touched (they are not in
//! the pages), so retention cannot make a run look unfinished or finished.

use super::codec::decode;
use super::layout::{self, Id, EXPIRY, IDEMPOTENCY, PAGE, RETRY};
use super::pages;
use super::SledStore;
use crate::record::IdempotencyEntry;
use crate::{db_err, StoreResult};

impl SledStore {
    /// Removes the records of runs that finished before `cutoff_ms`.
    pub(crate) fn retain(&self, cutoff_ms: u64) -> StoreResult<usize> {
        let mut removed = 0;
        // A run finishes after it starts: pages of seconds after the cutoff
        // hold nothing that finished before it.
        let end = pages::bucket_prefix(pages::bucket_of_ms(cutoff_ms).saturating_add(1));
        for item in self.runs.range(vec![PAGE]..end.to_vec()) {
            let (k, v) = item.map_err(db_err)?;
            let Ok(page) = pages::open(&v) else {
                self.set_aside(vec![k.to_vec()], &pages::corrupt(&k));
                continue;
            };
            let mut kept = Vec::new();
            let mut dropped = 0;
            let mut damaged = false;
            for e in pages::entries(&page) {
                let Ok(e) = e else {
                    damaged = true;
                    break;
                };
                if e.finished_ms < cutoff_ms {
                    // Its input goes with it.
                    dropped += 1;
                } else {
                    kept.extend_from_slice(&page[e.span.0..e.span.1]);
                }
            }
            if damaged {
                self.set_aside(vec![k.to_vec()], &pages::corrupt(&k));
                continue;
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
        // Links between runs and their retries (few) go with their retry's
        // record: checked every pass, so that a link left by a pass that
        // stopped half-way, or by a record set aside as damaged, goes too.
        // A retry that started after the cutoff cannot have finished before it.
        for (key, (_, retry)) in self.retry_links()? {
            if pages::id_millis(&retry) < cutoff_ms && self.read_record(&retry)?.is_none() {
                self.runs.remove(key).map_err(db_err)?;
            }
        }
        Ok(removed)
    }

    /// Every `y` key: a run and one of its retries.
    fn retry_links(&self) -> StoreResult<Vec<(sled::IVec, (Id, Id))>> {
        let mut links = Vec::new();
        for key in self.runs.scan_prefix([RETRY]).keys() {
            let key = key.map_err(db_err)?;
            if let Some(pair) = layout::retry_of(&key) {
                links.push((key, pair));
            }
        }
        Ok(links)
    }

    /// Forgets idempotency keys that expired at `now_ms`, through their
    /// expiry index (no scan of the keys that have not).
    pub(crate) fn expire_keys(&self, now_ms: u64) -> StoreResult<usize> {
        let mut end = vec![EXPIRY];
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        let mut removed = 0;
        for item in self.runs.range(vec![EXPIRY]..end) {
            let (x, _) = item.map_err(db_err)?;
            let key = &x[9..];
            if key.first() == Some(&IDEMPOTENCY) {
                if let Some(v) = self.runs.get(key).map_err(db_err)? {
                    let expired = decode::<IdempotencyEntry>(key, &v)
                        .map_or(true, |e| e.expires_ms <= now_ms);
                    // Only the value read: a key claimed again meanwhile stays.
                    if expired
                        && self
                            .runs
                            .compare_and_swap(key, Some(v), None::<&[u8]>)
                            .map_err(db_err)?
                            .is_ok()
                    {
                        removed += 1;
                    }
                }
            }
            self.runs.remove(&x).map_err(db_err)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
impl SledStore {
    /// Every `y` link, for tests.
    pub(crate) fn retry_links_for_tests(&self) -> Vec<(Id, Id)> {
        self.retry_links()
            .map(|links| links.into_iter().map(|(_, pair)| pair).collect())
            .unwrap_or_default()
    }
}
