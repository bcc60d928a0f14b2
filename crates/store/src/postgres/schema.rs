//! The schema and its migrations: applied at start, in order, in one
//! transaction each, under an advisory lock so that instances starting
//! together take turns; a database whose schema is newer than this build
//! knows is refused.

use super::locks::{TxLock, MIGRATION_LOCK};
use super::pg_err;
use crate::{StoreError, StoreResult};
use deadpool_postgres::Object;

/// Every migration, in order: the schema's version is their count.
const MIGRATIONS: &[&str] = &[
    // 1: runs, their live state, idempotency keys, versions, webhook keys.
    r#"
    CREATE FUNCTION hookflow_now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS
      $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
    -- Every run's record: unfinished (live or announced) and finished.
    CREATE TABLE hookflow_runs (
      id text PRIMARY KEY,
      workflow text NOT NULL,
      version text NOT NULL,
      status text NOT NULL,
      started_ms bigint NOT NULL,
      finished_ms bigint,
      response_status integer,
      retry_of text,
      durable boolean NOT NULL,
      record bytea NOT NULL,
      input bytea
    );
    CREATE INDEX hookflow_runs_finished ON hookflow_runs (finished_ms)
      WHERE finished_ms IS NOT NULL;
    CREATE INDEX hookflow_runs_workflow ON hookflow_runs (workflow, id);
    -- Durable runs that have not finished: the queue, waiting runs, leases.
    CREATE TABLE hookflow_queue (
      id text PRIMARY KEY,
      status text NOT NULL,
      wake_at bigint,
      owner text,
      lease_until bigint NOT NULL DEFAULT 0,
      frames bytea
    );
    CREATE INDEX hookflow_queue_wake ON hookflow_queue (wake_at, id) WHERE wake_at IS NOT NULL;
    CREATE INDEX hookflow_queue_lease ON hookflow_queue (lease_until, id) WHERE wake_at IS NULL;
    CREATE INDEX hookflow_queue_owner ON hookflow_queue (owner) WHERE owner IS NOT NULL;
    CREATE TABLE hookflow_jobs (
      run_id text NOT NULL,
      idx integer NOT NULL,
      job bytea NOT NULL,
      PRIMARY KEY (run_id, idx)
    );
    CREATE TABLE hookflow_parts (
      run_id text NOT NULL,
      name text NOT NULL,
      value bytea NOT NULL,
      PRIMARY KEY (run_id, name)
    );
    CREATE TABLE hookflow_idempotency (
      workflow text NOT NULL,
      key bytea NOT NULL,
      execution_id text NOT NULL,
      expires_ms bigint NOT NULL,
      response bytea,
      PRIMARY KEY (workflow, key)
    );
    CREATE INDEX hookflow_idempotency_expiry ON hookflow_idempotency (expires_ms);
    CREATE TABLE hookflow_versions (
      version text PRIMARY KEY,
      source text NOT NULL
    );
    CREATE TABLE hookflow_webhook_keys (
      workflow text PRIMARY KEY,
      key text NOT NULL UNIQUE
    );
    -- Values that did not decode, set aside.
    CREATE TABLE hookflow_quarantine (
      what text NOT NULL,
      id text NOT NULL,
      value bytea,
      at timestamptz NOT NULL DEFAULT now()
    );
    "#,
    // 2: refused requests (SPEC §7), the last 1000 per workflow; the
    // retries of a run found by index.
    r#"
    CREATE INDEX hookflow_runs_retry_of ON hookflow_runs (retry_of, id)
      WHERE retry_of IS NOT NULL;
    CREATE TABLE hookflow_refused (
      position bigserial PRIMARY KEY,
      workflow text NOT NULL,
      at_ms bigint NOT NULL,
      reason text NOT NULL,
      value bytea NOT NULL
    );
    CREATE INDEX hookflow_refused_workflow ON hookflow_refused (workflow, position);
    "#,
];

/// The schema version this build writes and reads.
pub fn current() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Brings the database to this build's schema (or refuses a newer one),
/// one instance at a time: the migration lock is held on a connection of
/// its own while `client` applies the migrations.
pub async fn migrate(lock_client: Object, client: &mut Object) -> StoreResult<()> {
    let lock = TxLock::take(lock_client, MIGRATION_LOCK).await?;
    let done = apply(client).await;
    let unlocked = lock.release().await;
    done?;
    unlocked
}

async fn apply(client: &mut Object) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS hookflow_schema (
               version integer NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(pg_err)?;
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM hookflow_schema", &[])
        .await
        .map_err(pg_err)?;
    let found: i32 = row.get(0);
    let ours = current();
    if found > ours {
        return Err(StoreError::Db(format!(
            "the database's schema is version {found}, newer than this hookflow knows \
             (version {ours}): run a hookflow at least as new as the one that upgraded it"
        )));
    }
    for (n, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let version = i32::try_from(n + 1).unwrap_or(i32::MAX);
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO hookflow_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        tracing::info!(message = "Applied a schema migration.", version);
    }
    Ok(())
}
