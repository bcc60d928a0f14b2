//! Where the runs come from: a running server's admin API when one answers,
//! otherwise the store in the data folder or the PostgreSQL database of
//! `--store` (read only: retries need a server's workers).

use super::client::Client;
use super::{Filter, Reach};
use anyhow::{bail, Context};
use hookflow_service::views::{record_of, summary_json};
use hookflow_store::{
    ExecutionFilter, LocalAccess, PgOptions, PgStore, RunStatus, SledStore, Store,
};
use serde_json::{json, Value as Json};

/// The runs of a server or of a store.
pub enum Source {
    /// A running server's admin API.
    Server(Client),
    /// The store itself (no server answers).
    Store(Box<dyn Store>),
}

impl Source {
    /// The server at `--server` (which must answer), or at `--listen` when
    /// one answers there, else the store of `--store`/`--data`.
    pub async fn reach(reach: &Reach) -> anyhow::Result<Source> {
        let explicit = reach.server.is_some();
        let base = reach
            .server
            .clone()
            .unwrap_or_else(|| format!("http://{}", reach.listen));
        // The server that holds `--data` left its loopback URL and a token
        // there: with it, commands read state whether or not a server runs
        // on the folder and whether or not it has an admin token (SPEC §6).
        let local = LocalAccess::read(&reach.data);
        let token = reach
            .admin_token
            .clone()
            .or_else(|| local.as_ref().map(|l| l.token.clone()));
        let client = Client::new(&base, token.clone())?;
        if client.answers().await {
            if token.is_none() {
                bail!(
                    "a hookflow server answers at {base}: give its admin token \
                     (--admin-token or HOOKFLOW_ADMIN_TOKEN), or --data with its data folder"
                );
            }
            return Ok(Source::Server(client));
        }
        if explicit {
            bail!("no hookflow server answers at {base}");
        }
        if let Some(local) = local.filter(|l| l.url != base) {
            let client = Client::new(&local.url, Some(local.token))?;
            if client.answers().await {
                return Ok(Source::Server(client));
            }
        }
        match reach.store.as_deref().map(str::trim) {
            None | Some("") | Some("sled") => {}
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                // The shared store of several instances: read it directly.
                let store = PgStore::open(url, PgOptions::default())
                    .context("cannot open the PostgreSQL store (--store)")?;
                return Ok(Source::Store(Box::new(store)));
            }
            Some(_) => bail!("--store (HOOKFLOW_STORE) must be `sled` or a postgres:// URL"),
        }
        if !reach.data.join("db").is_dir() {
            bail!(
                "no hookflow server answers at {base} and {} holds no store \
                 (give --server, or --data with the server's data folder)",
                reach.data.display()
            );
        }
        let store = SledStore::open(&reach.data)
            .with_context(|| format!("cannot open the store in {}", reach.data.display()))?;
        Ok(Source::Store(Box::new(store)))
    }

    /// A page of runs: `{"executions": [...], "next_cursor"}`.
    pub async fn list(&self, filter: &Filter, limit: usize) -> anyhow::Result<Json> {
        match self {
            Source::Server(client) => {
                let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
                for (name, value) in [
                    ("workflow", &filter.workflow),
                    ("status", &filter.status),
                    ("since", &filter.since),
                    ("until", &filter.until),
                ] {
                    if let Some(v) = value {
                        query.push((name, v.clone()));
                    }
                }
                client.get_json(&["api", "executions"], &query).await
            }
            Source::Store(store) => {
                let status = match &filter.status {
                    Some(s) => {
                        Some(RunStatus::parse(s).with_context(|| format!("unknown status `{s}`"))?)
                    }
                    None => None,
                };
                let filter = ExecutionFilter {
                    workflow: filter.workflow.clone(),
                    status,
                    since_ms: time("--since", filter.since.as_deref())?,
                    until_ms: time("--until", filter.until.as_deref())?,
                    limit,
                    cursor: None,
                    retry_of: None,
                };
                let (rows, next) = store.list(&filter)?;
                let rows: Vec<Json> = rows.iter().map(summary_json).collect();
                Ok(json!({"executions": rows, "next_cursor": next}))
            }
        }
    }

    /// One run's record.
    pub async fn show(&self, id: &str) -> anyhow::Result<Json> {
        match self {
            Source::Server(client) => client.get_json(&["api", "executions", id], &[]).await,
            Source::Store(store) => {
                record_of(store.as_ref(), id)?.with_context(|| format!("no execution {id}"))
            }
        }
    }

    /// Retries one run on the `version` (`recorded` or `current`).
    pub async fn retry(&self, id: &str, version: &str) -> anyhow::Result<Json> {
        match self {
            Source::Server(client) => {
                client
                    .post_json(
                        &["api", "executions", id, "retry"],
                        &json!({"version": version}),
                    )
                    .await
            }
            Source::Store(_) => bail!(no_workers()),
        }
    }

    /// Retries every finished run matching `body`'s filter.
    pub async fn retry_bulk(&self, body: &Json) -> anyhow::Result<Json> {
        match self {
            Source::Server(client) => {
                client
                    .post_json(&["api", "executions", "retry"], body)
                    .await
            }
            Source::Store(_) => bail!(no_workers()),
        }
    }

    /// The test file of one case made from a run.
    pub async fn test_case(&self, id: &str) -> anyhow::Result<String> {
        match self {
            Source::Server(client) => {
                client
                    .get_text(&["api", "executions", id, "test-case"])
                    .await
            }
            Source::Store(store) => {
                let record = record(store.as_ref(), id)?;
                Ok(hookflow_service::test_case::test_case(&record)?.yaml)
            }
        }
    }
}

/// Why a retry needs a server.
fn no_workers() -> String {
    "no hookflow server answers: a retry runs on a server's workers. Start \
     `hookflow serve` on this data folder (or give --server and --admin-token), then retry"
        .to_string()
}

fn record(store: &dyn Store, id: &str) -> anyhow::Result<hookflow_store::ExecutionRecord> {
    store.get(id)?.with_context(|| format!("no execution {id}"))
}

fn time(flag: &str, value: Option<&str>) -> anyhow::Result<Option<u64>> {
    value
        .map(|v| {
            hookflow_model::time::parse_rfc3339(v).with_context(|| {
                format!("{flag} must be an RFC 3339 time, e.g. 2026-01-31T10:02:00Z")
            })
        })
        .transpose()
}
