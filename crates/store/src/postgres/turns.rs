//! The retry turn of instances sharing a database: a session advisory
//! lock, held by one pooled connection while a retry checks which runs it
//! retries and starts them, so that two retries asked of two instances at
//! the same moment do not both retry a run.

use super::{pg_err, Shared};
use crate::StoreResult;
use deadpool_postgres::Object;

/// The advisory lock key of retries ("hookretr" in ASCII, as a number).
const RETRY_LOCK: i64 = 0x686f_6f6b_7265_7472;

/// A held turn; let go when dropped.
pub(crate) struct Turn {
    client: Option<Object>,
    handle: tokio::runtime::Handle,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        self.handle.spawn(async move {
            let unlocked = client
                .execute("SELECT pg_advisory_unlock($1)", &[&RETRY_LOCK])
                .await;
            if unlocked.is_err() {
                // Closed rather than pooled: a session lock ends with its
                // session, and a pooled connection would keep it.
                drop(Object::take(client));
            }
        });
    }
}

/// Takes the turn if no other instance holds it; `None` when one does.
pub(crate) async fn try_take(shared: &Shared) -> StoreResult<Option<Turn>> {
    let client = shared.conn().await?;
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&RETRY_LOCK])
        .await
        .map_err(pg_err)?;
    let taken: bool = row.get(0);
    Ok(taken.then(|| Turn {
        client: Some(client),
        handle: shared.handle.clone(),
    }))
}
