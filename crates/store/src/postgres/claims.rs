//! Claims and leases: a run belongs to the instance that accepted or
//! claimed it while its lease lasts; the instance renews the leases of
//! the runs it holds every third of the lease. Queued and running runs
//! whose lease ran out (their instance died) are claimed by any instance,
//! and waiting runs that are due too, with `FOR UPDATE SKIP LOCKED` in
//! short transactions: two instances never claim the same run at once.
//! Waiting runs belong to no instance.

use super::codec::ms;
use super::{pg_err, Shared};
use crate::StoreResult;
use std::sync::Arc;

fn lease_ms(shared: &Shared) -> i64 {
    ms(u64::try_from(shared.options.lease.as_millis()).unwrap_or(u64::MAX))
}

/// Renews this instance's leases every third of the lease, for as long
/// as the store is open.
pub async fn renew(shared: Arc<Shared>) {
    let every = (shared.options.lease / 3).max(std::time::Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let renewed = async {
            let client = shared.conn().await?;
            client
                .execute(
                    // Rows the writer holds are skipped (renewed next
                    // time): the renewal never waits for it, nor it for
                    // the renewal, so the two cannot deadlock.
                    "UPDATE hookflow_queue SET lease_until = hookflow_now_ms() + $2
                     WHERE id IN (SELECT id FROM hookflow_queue
                                  WHERE owner = $1 AND wake_at IS NULL
                                  FOR UPDATE SKIP LOCKED)",
                    &[&shared.options.instance, &lease_ms(&shared)],
                )
                .await
                .map_err(pg_err)
        };
        if let Err(error) = renewed.await {
            tracing::warn!(message = "Could not renew the leases of this instance's runs.", %error);
        }
        if let Err(error) = super::clock::refresh(&shared).await {
            tracing::warn!(message = "Could not read the database's clock.", %error);
        }
    }
}

/// The claim of runs whose lease ran out ($1 the instance, $2 the lease,
/// $3 how many). Every instance sends it every second: it walks the lease
/// index from the oldest lease and stops at the first one still running
/// (the database's clock is read once, in a sub-query: a volatile call in
/// the condition is no index bound, and each poll read the whole queue).
pub(super) const CLAIM_EXPIRED: &str =
    "UPDATE hookflow_queue q SET owner = $1, lease_until = hookflow_now_ms() + $2
     FROM (SELECT id FROM hookflow_queue
           WHERE wake_at IS NULL AND lease_until < (SELECT hookflow_now_ms())
             AND owner IS DISTINCT FROM $1
           ORDER BY lease_until, id LIMIT $3 FOR UPDATE SKIP LOCKED) c
     WHERE q.id = c.id
     RETURNING q.id";

/// Claims up to `limit` queued or running runs whose lease ran out (those
/// whose lease ran out first); their ids, oldest first. This instance's own runs are not claimed again: it
/// is alive and holds them (a renewal that came late is renewed next time).
pub async fn claim_expired(shared: &Shared, limit: usize) -> StoreResult<Vec<String>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let client = shared.conn().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            CLAIM_EXPIRED,
            &[&shared.options.instance, &lease_ms(shared), &limit],
        )
        .await
        .map_err(pg_err)?;
    let mut ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    ids.sort();
    Ok(ids)
}

/// Claims up to `limit` waiting runs due at `now_ms` (this process's
/// clock, moved onto the database's, on which wake times are kept): they
/// leave the waiting runs (running, this instance's); their ids, earliest
/// first.
pub async fn claim_due(shared: &Shared, now_ms: u64, limit: usize) -> StoreResult<Vec<String>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut client = shared.conn().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = client.transaction().await.map_err(pg_err)?;
    let rows = tx
        .query(
            "UPDATE hookflow_queue q SET status = 'running', wake_at = NULL, owner = $1,
               lease_until = hookflow_now_ms() + $2
             FROM (SELECT id, wake_at FROM hookflow_queue
                   WHERE wake_at <= $3
                   ORDER BY wake_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) c
             WHERE q.id = c.id
             RETURNING q.id, c.wake_at",
            &[
                &shared.options.instance,
                &lease_ms(shared),
                &ms(now_ms).saturating_add(shared.offset_ms()),
                &limit,
            ],
        )
        .await
        .map_err(pg_err)?;
    let mut due: Vec<(i64, String)> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    due.sort();
    let ids: Vec<String> = due.into_iter().map(|(_, id)| id).collect();
    tx.execute(
        "UPDATE hookflow_runs SET status = 'running' WHERE id = ANY($1) AND finished_ms IS NULL",
        &[&ids],
    )
    .await
    .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    Ok(ids)
}

/// Of `ids`, the runs this instance owns now (it may have lost others to
/// an instance that took them over after their lease ran out).
pub async fn still_held(shared: &Shared, ids: Vec<String>) -> StoreResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(ids);
    }
    let client = shared.conn().await?;
    let rows = client
        .query(
            "SELECT id FROM hookflow_queue WHERE id = ANY($1) AND owner = $2",
            &[&ids, &shared.options.instance],
        )
        .await
        .map_err(pg_err)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
