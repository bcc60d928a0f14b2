//! Advisory locks that decide which instance does a thing now (retries,
//! retention, migrations), each taken inside a transaction of its own.
//!
//! A session lock (`pg_advisory_lock`) outlives the statement that took it
//! and stays with the database session: behind PgBouncer in transaction
//! mode the next statement, and the unlock, may reach another session, and
//! the lock stays behind in a session no one owns. A transaction's lock
//! (`pg_try_advisory_xact_lock`) ends with its transaction, and a client
//! in a transaction keeps its session (PgBouncer's transaction mode pins
//! it): the lock is held by a connection taken out of the pool for it, in
//! an open transaction that does nothing else (it writes nothing and, read
//! committed, holds no snapshot between statements: vacuum does not wait
//! for it), while the work runs on other connections. It is let go by committing
//! ([`TxLock::release`], awaited, so the next taker finds it free), or, when
//! dropped unreleased, by closing its connection.

use super::{pg_err, Shared};
use crate::StoreResult;
use deadpool_postgres::Object;

/// Retries ("hookretr" in ASCII, as a number).
pub(crate) const RETRY_LOCK: i64 = 0x686f_6f6b_7265_7472;
/// Retention ("hookrete").
pub(crate) const RETENTION_LOCK: i64 = 0x686f_6f6b_7265_7465;
/// Migrations ("hookflow").
pub(crate) const MIGRATION_LOCK: i64 = 0x686f_6f6b_666c_6f77;

/// A held lock: a connection in a transaction that took it.
pub(crate) struct TxLock {
    client: Option<Object>,
}

/// How a lock's transaction begins: read committed whatever the server's
/// default (no snapshot held between statements, so vacuum does not wait
/// on it), and exempt from the server's timeouts of idle transactions (it
/// is idle while the work it guards runs on other connections; ended by
/// the server, the lock would go with it unnoticed). `transaction_timeout`
/// exists from PostgreSQL 17 and is set where it does.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED;
    SET LOCAL idle_in_transaction_session_timeout = 0;
    SELECT set_config('transaction_timeout', '0', true)
      WHERE current_setting('transaction_timeout', true) IS NOT NULL;";

impl TxLock {
    /// Takes `key` if no other transaction holds it; `None` when one does.
    pub(crate) async fn try_take(shared: &Shared, key: i64) -> StoreResult<Option<TxLock>> {
        let lock = TxLock {
            client: Some(shared.conn().await?),
        };
        let taken = match &lock.client {
            Some(client) => {
                async {
                    client.batch_execute(BEGIN).await?;
                    let row = client
                        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
                        .await?;
                    row.try_get::<_, bool>(0)
                }
                .await
            }
            None => Ok(false),
        };
        match taken {
            Ok(true) => Ok(Some(lock)),
            Ok(false) => lock.release().await.map(|()| None),
            // Dropped: closed, its transaction with it.
            Err(e) => Err(pg_err(e)),
        }
    }

    /// Waits until `key` is free and takes it.
    pub(crate) async fn take(client: Object, key: i64) -> StoreResult<TxLock> {
        // Held from the start: cancelled or failed midway, the connection
        // is closed, not pooled inside a transaction.
        let lock = TxLock {
            client: Some(client),
        };
        if let Some(client) = &lock.client {
            client.batch_execute(BEGIN).await.map_err(pg_err)?;
            client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                .await
                .map_err(pg_err)?;
        }
        Ok(lock)
    }

    /// Lets the lock go now: its transaction commits, and its connection
    /// goes back to the pool (closed instead when the commit fails).
    pub(crate) async fn release(mut self) -> StoreResult<()> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        match client.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                drop(Object::take(client));
                Err(pg_err(e))
            }
        }
    }
}

impl Drop for TxLock {
    fn drop(&mut self) {
        // Not released (an early return, a panic): closed rather than
        // pooled, which ends its transaction and the lock with its session.
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

/// The retry turn of the instances sharing the database
/// ([`crate::Store::retry_turn`]).
pub(crate) struct Turn {
    pub lock: TxLock,
    pub shared: std::sync::Arc<Shared>,
}

impl crate::contract::Held for Turn {
    fn release(self: Box<Self>) -> StoreResult<()> {
        let Turn { lock, shared } = *self;
        shared.call(lock.release())
    }
}
