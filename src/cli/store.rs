//! `--store`: the data folder's sled store, or a PostgreSQL store shared by
//! several instances.

use super::PlaceArgs;
use anyhow::Context;
use hookflow_store::{KeyFile, KeyStore, PgOptions, PgStore};
use std::sync::Arc;
use std::time::Duration;

/// What `--store` names.
pub enum Kind<'a> {
    /// sled in the data folder.
    Sled,
    /// PostgreSQL at this URL.
    Postgres(&'a str),
}

/// Reads `--store`.
pub fn kind(place: &PlaceArgs) -> anyhow::Result<Kind<'_>> {
    match place.store.as_deref().map(str::trim) {
        None | Some("") | Some("sled") => Ok(Kind::Sled),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Kind::Postgres(url))
        }
        Some(_) => anyhow::bail!("--store (HOOKFLOW_STORE) must be `sled` or a postgres:// URL"),
    }
}

/// Opens the PostgreSQL store at `url`.
pub fn open_postgres(url: &str, lease: Duration, max_backlog: u64) -> anyhow::Result<PgStore> {
    let options = PgOptions {
        lease,
        max_backlog,
        ..PgOptions::default()
    };
    // The error names the problem, never the URL (it may hold a password).
    PgStore::open(url, options).context("cannot open the PostgreSQL store (--store)")
}

/// Where the webhook keys are: the data folder's key file, or the database.
pub fn keys(place: &PlaceArgs) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(match kind(place)? {
        Kind::Sled => Arc::new(KeyFile::new(&place.data)),
        Kind::Postgres(url) => Arc::new(DatabaseKeys {
            store: open_postgres(
                url,
                Duration::from_secs(30),
                hookflow_store::postgres::MAX_BACKLOG,
            )?,
        }),
    })
}

/// The keys of a PostgreSQL store, with the store they need kept open.
struct DatabaseKeys {
    store: PgStore,
}

impl KeyStore for DatabaseKeys {
    fn ensure(
        &self,
        ids: &[&str],
    ) -> hookflow_store::StoreResult<std::collections::BTreeMap<String, String>> {
        self.store.webhook_keys().ensure(ids)
    }
}
