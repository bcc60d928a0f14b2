//! How values are kept in the database: MessagePack (as the embedded
//! store keeps them) in `bytea` columns; the interpreter's stack and parts
//! (plain JSON) as JSON text. A value that does not decode is set aside.

use super::{pg_err, Shared};
use crate::{StoreError, StoreResult};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value as Json;
use std::sync::atomic::Ordering;

/// A value as stored.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    rmp_serde::encode::write(&mut out, v)
        .map_err(|e| StoreError::Db(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// A stored value; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: &str, v: &[u8]) -> StoreResult<T> {
    rmp_serde::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: what.to_string(),
        message: e.to_string(),
    })
}

/// JSON as stored.
pub fn encode_json(v: &Json) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))
}

/// Stored JSON.
pub fn decode_json(what: &str, v: &[u8]) -> StoreResult<Json> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: what.to_string(),
        message: e.to_string(),
    })
}

/// Unix milliseconds as a column value.
pub fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A column value as Unix milliseconds.
pub fn from_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Sets a run whose stored values do not decode aside: its record moves
/// to the quarantine table, and it is no longer resumed, listed or read.
pub async fn set_aside(shared: &Shared, id: &str, error: &StoreError) -> StoreResult<()> {
    tracing::error!(message = "A stored run does not decode; it is set aside.", execution_id = %id, %error);
    shared.damaged.fetch_add(1, Ordering::SeqCst);
    let mut client = shared.conn().await?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute(
        "INSERT INTO hookflow_quarantine (what, id, value)
         SELECT 'run', id, record FROM hookflow_runs WHERE id = $1",
        &[&id],
    )
    .await
    .map_err(pg_err)?;
    for sql in [
        "DELETE FROM hookflow_runs WHERE id = $1",
        "DELETE FROM hookflow_queue WHERE id = $1",
        "DELETE FROM hookflow_jobs WHERE run_id = $1",
        "DELETE FROM hookflow_parts WHERE run_id = $1",
    ] {
        tx.execute(sql, &[&id]).await.map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)
}
