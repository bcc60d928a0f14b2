//! Pending claims of sync idempotency keys (SPEC §4b across instances): a
//! sync run claims its key before it starts, so that the same request
//! arriving at another instance waits for its answer instead of running
//! again. A claim is a key row without a response whose `expires_ms` is
//! the claim's end; the answer replaces it (the writer's `put_key`, with
//! the same execution id; never over another run's live claim). Claims
//! and releases are one short statement each, committed on their own
//! outside the writer's turns: a pending claim need not survive a crash,
//! it runs out.

use super::codec::ms;
use super::reads::{key_entry, KEY_ENTRY};
use super::{pg_err, Shared};
use crate::contract::KeyClaim;
use crate::{StoreError, StoreResult};

/// Tries of a claim that found a row gone before it could read it.
const TRIES: usize = 3;

/// Claims `key` for `execution_id` until `until_ms`, or says who holds it.
pub async fn claim(
    shared: &Shared,
    workflow: &str,
    key: &str,
    execution_id: &str,
    now_ms: u64,
    until_ms: u64,
) -> StoreResult<KeyClaim> {
    let client = shared.conn().await?;
    let key = key.as_bytes();
    let (now, until) = (ms(now_ms), ms(until_ms));
    for _ in 0..TRIES {
        // Claimed when the key is free, expired (an answer forgotten or a
        // claim that ran out), or already this run's claim.
        let won = client
            .query_opt(
                "INSERT INTO hookflow_idempotency (workflow, key, execution_id, expires_ms, response)
                 VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (workflow, key) DO UPDATE SET execution_id = EXCLUDED.execution_id,
                   expires_ms = EXCLUDED.expires_ms, response = NULL
                 WHERE hookflow_idempotency.expires_ms <= $5
                   OR (hookflow_idempotency.execution_id = EXCLUDED.execution_id
                       AND hookflow_idempotency.response IS NULL)
                 RETURNING execution_id",
                &[&workflow, &key, &execution_id, &until, &now],
            )
            .await
            .map_err(pg_err)?;
        if won.is_some() {
            return Ok(KeyClaim::Claimed);
        }
        let row = client
            .query_opt(KEY_ENTRY, &[&workflow, &key, &now])
            .await
            .map_err(pg_err)?;
        // Gone meanwhile (released, or expired and removed): try again.
        let Some(row) = row else { continue };
        return match key_entry(&row) {
            Ok(entry) if entry.response.is_some() => Ok(KeyClaim::Held(entry)),
            Ok(entry) => Ok(KeyClaim::Pending(entry.execution_id)),
            // An answer that does not decode cannot be replayed: the key
            // is held all the same (running again is what it prevents).
            Err(error) => {
                tracing::error!(message = "A stored idempotency key does not decode.", %error);
                Ok(KeyClaim::Pending(row.get(0)))
            }
        };
    }
    Err(StoreError::Db(
        "an idempotency key was neither claimed nor held".into(),
    ))
}

/// Removes `execution_id`'s pending claim of `key`, if it still is one.
pub async fn release(
    shared: &Shared,
    workflow: &str,
    key: &str,
    execution_id: &str,
) -> StoreResult<()> {
    let client = shared.conn().await?;
    client
        .execute(
            "DELETE FROM hookflow_idempotency
             WHERE workflow = $1 AND key = $2 AND execution_id = $3 AND response IS NULL",
            &[&workflow, &key.as_bytes(), &execution_id],
        )
        .await
        .map_err(pg_err)?;
    Ok(())
}
