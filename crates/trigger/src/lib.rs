//! The HTTP side of hookflow (actix-web): routes, the webhook endpoint's
//! HTTP checks, the admin API, the run history page (`/ui`), health and
//! graceful shutdown.
//!
//! Only this crate knows HTTP, and it does nothing else: a webhook handler
//! checks what only HTTP can (method, Basic auth, body size), reads the
//! capped body and hands the request to the [`Service`]; errors become
//! responses in [`error`].

pub mod admin;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod parse_entries;
pub mod requests;
pub mod retries;
mod scheme;
pub mod server;
pub mod test_case;
pub mod ui;
pub mod webhook;

pub use server::run;

use hookflow_service::Service;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Enables the admin API.
    pub admin_token: Option<String>,
    /// A token the admin API also accepts: the one a server leaves for
    /// commands on its machine in its data folder (`LocalAccess`). Without
    /// `admin_token`, a request without it gets 404, as if there were no
    /// admin API.
    pub local_token: Option<String>,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// A request's head and body must arrive within this (`--read-timeout`).
    pub read_timeout: Duration,
    /// Idle kept-alive connections are closed after this; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// Open connections, in total, across the workers.
    pub max_connections: usize,
    /// One log line per webhook request (`--access-log`), with target
    /// [`ACCESS_TARGET`].
    pub access_log: bool,
}

/// The tracing target of access log lines (the binary writes them apart,
/// through a buffered writer off the request path).
pub const ACCESS_TARGET: &str = "hookflow::access";

/// What every handler sees.
pub struct AppState {
    /// The webhook service.
    pub service: Arc<Service>,
    /// Tokens and threads.
    pub http: HttpSettings,
    /// Webhook requests being answered.
    pub in_flight: InFlight,
}

/// Webhook requests being answered. At shutdown the listener stays open
/// until none is left (or the grace has passed), so that a new request
/// meanwhile is answered 503 instead of finding no listener.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::atomic::AtomicUsize);

/// One request counted in [`InFlight`] until dropped.
pub(crate) struct Entered<'a>(&'a InFlight);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl InFlight {
    /// Counts a request until the guard drops. Entered before the request
    /// looks at the shutdown flag: either it sees the flag, or the shutdown
    /// sees it counted.
    pub(crate) fn enter(&self) -> Entered<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Entered(self)
    }

    /// Resolves once no request is in flight, or after `limit`.
    pub(crate) async fn settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.0.load(std::sync::atomic::Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
