//! The clock of the queue's times. Leases and wake times are compared on
//! the database's clock, the one every instance shares, so that instances
//! whose clocks differ agree on when a lease ran out and when a wait is
//! over. Leases are set and read with `hookflow_now_ms()` in the statement
//! itself. A wake time comes from the run (this process's clock): it is
//! moved onto the database's by the difference of the two clocks, taken
//! when the store opens and again with every lease renewal, and changed
//! only when it moved by more than [`STEADY`]; a difference within it
//! counts as none (a time written and read back, across restarts too,
//! comes back as it was written; clocks kept by NTP stay within it).

use super::{pg_err, Shared};
use crate::StoreResult;
use hookflow_model::time::now_millis;
use std::sync::atomic::Ordering;

/// A change of the difference smaller than this is the round trip's noise.
const STEADY: i64 = 250;

/// This process's clock, in Unix milliseconds (in tests, set `skew`
/// ahead of the machine's, as another machine's may be).
fn local_ms(skew: i64) -> i64 {
    i64::try_from(now_millis())
        .unwrap_or(i64::MAX)
        .saturating_add(skew)
}

/// The database's clock minus this process's, in milliseconds: the
/// database's reading against the middle of the round trip.
pub async fn offset(client: &tokio_postgres::Client, skew: i64) -> StoreResult<i64> {
    let before = local_ms(skew);
    let row = client
        .query_one("SELECT hookflow_now_ms()", &[])
        .await
        .map_err(pg_err)?;
    let after = local_ms(skew);
    let db: i64 = row.get(0);
    let offset = db.saturating_sub(before / 2 + after / 2);
    // Clocks within the round trip's noise agree: a time written before a
    // restart reads back as it was written.
    Ok(if offset.abs() <= STEADY { 0 } else { offset })
}

/// Measures the difference again; keeps the new one when it moved.
pub async fn refresh(shared: &Shared) -> StoreResult<()> {
    let client = shared.conn().await?;
    let now = offset(&client, shared.skew()).await?;
    let was = shared.offset_ms();
    if (now - was).abs() > STEADY {
        tracing::info!(message = "This machine's clock and the database's moved apart; wake times follow the database's.", offset_ms = now, was_ms = was);
        shared.offset_ms.store(now, Ordering::Relaxed);
    }
    Ok(())
}
