//! Retention: old finished records and expired idempotency keys, removed
//! in batches (short transactions, small for vacuum) by one instance at a
//! time (an advisory lock; an instance that finds it taken skips the turn).

use super::codec::ms;
use super::locks::{TxLock, RETENTION_LOCK};
use super::{pg_err, Shared};
use crate::StoreResult;

/// Rows removed per statement.
const BATCH: i64 = 1000;
/// How much older than the cutoff an announced sync run must have started
/// to count as one whose instance died: a live instance's run keeps its
/// record (it has not finished), and no instance tells the database it is
/// alive, so only age tells the two apart.
const ANNOUNCED_GRACE_MS: u64 = 24 * 60 * 60 * 1000;

/// Removes finished records (with their inputs) finished before
/// `cutoff_ms`; returns how many, 0 when another instance is at it.
pub async fn remove_finished(shared: &Shared, cutoff_ms: u64) -> StoreResult<usize> {
    let Some(lock) = TxLock::try_take(shared, RETENTION_LOCK).await? else {
        return Ok(0);
    };
    let client = shared.conn().await?;
    let removed = async {
        let mut total = 0usize;
        loop {
            let n = client
                .execute(
                    "DELETE FROM hookflow_runs WHERE id IN (
                       SELECT id FROM hookflow_runs WHERE finished_ms < $1 LIMIT $2)",
                    &[&ms(cutoff_ms), &BATCH],
                )
                .await
                .map_err(pg_err)?;
            total += usize::try_from(n).unwrap_or(usize::MAX);
            if n < u64::try_from(BATCH).unwrap_or(0) {
                break;
            }
        }
        // Sync runs announced by an instance that died before they
        // finished (a day past the cutoff), and values set aside long ago.
        client
            .execute(
                "DELETE FROM hookflow_runs WHERE id IN (
                   SELECT id FROM hookflow_runs
                   WHERE finished_ms IS NULL AND NOT durable AND started_ms < $1 LIMIT $2)",
                &[&ms(cutoff_ms.saturating_sub(ANNOUNCED_GRACE_MS)), &BATCH],
            )
            .await
            .map_err(pg_err)?;
        client
            .execute(
                "DELETE FROM hookflow_quarantine
                 WHERE at < to_timestamp($1::double precision / 1000)",
                &[&(cutoff_ms as f64)],
            )
            .await
            .map_err(pg_err)?;
        Ok(total)
    }
    .await;
    drop(client);
    let unlocked = lock.release().await;
    let total = removed?;
    unlocked?;
    Ok(total)
}

/// Forgets idempotency keys expired at `now_ms`; returns how many.
pub async fn expire_keys(shared: &Shared, now_ms: u64) -> StoreResult<usize> {
    let client = shared.conn().await?;
    let mut total = 0usize;
    loop {
        let n = client
            .execute(
                "DELETE FROM hookflow_idempotency WHERE ctid IN (
                   SELECT ctid FROM hookflow_idempotency WHERE expires_ms <= $1 LIMIT $2)",
                &[&ms(now_ms), &BATCH],
            )
            .await
            .map_err(pg_err)?;
        total += usize::try_from(n).unwrap_or(usize::MAX);
        if n < u64::try_from(BATCH).unwrap_or(0) {
            return Ok(total);
        }
    }
}
