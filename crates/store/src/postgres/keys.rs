//! Webhook URL keys kept in the database, so that every instance serves a
//! workflow under the same key: the first instance to need a workflow's
//! key makes it; the others read it (a unique constraint settles a race).

use super::{pg_err, Shared};
use crate::keys::{generate_key, KeyStore};
use crate::StoreResult;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keys inserted at most this many per statement.
const KEYS_PER_STATEMENT: usize = 1000;

/// The webhook keys of a PostgreSQL store.
pub struct PgKeys {
    shared: Arc<Shared>,
}

impl PgKeys {
    pub(crate) fn new(shared: Arc<Shared>) -> PgKeys {
        PgKeys { shared }
    }
}

impl KeyStore for PgKeys {
    fn ensure(&self, ids: &[&str]) -> StoreResult<BTreeMap<String, String>> {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let shared = self.shared.clone();
        self.shared.call(async move {
            let mut client = shared.conn().await?;
            // One transaction (one commit) for a folder's worth of ids, a
            // statement per thousand: not a round trip and a commit each.
            let tx = client.transaction().await.map_err(pg_err)?;
            for chunk in ids.chunks(KEYS_PER_STATEMENT) {
                let keys: Vec<String> = chunk.iter().map(|_| generate_key()).collect();
                tx.execute(
                    "INSERT INTO hookflow_webhook_keys (workflow, key)
                     SELECT * FROM unnest($1::text[], $2::text[])
                     ON CONFLICT DO NOTHING",
                    &[&chunk, &keys],
                )
                .await
                .map_err(pg_err)?;
            }
            tx.commit().await.map_err(pg_err)?;
            let rows = client
                .query("SELECT workflow, key FROM hookflow_webhook_keys", &[])
                .await
                .map_err(pg_err)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect())
        })
    }
}
