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
///
/// Counted in slots, each on a cache line of its own, a thread counting in
/// its own slot: one counter taken twice a request by every HTTP worker
/// was a contended atomic each time.
#[derive(Debug, Default)]
pub struct InFlight([Slot; SLOTS]);

/// Slots of [`InFlight`]: threads past this many share them.
const SLOTS: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(std::sync::atomic::AtomicUsize);

/// One request counted in [`InFlight`] until dropped.
pub(crate) struct Entered<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl InFlight {
    /// Counts a request until the guard drops. Entered before the request
    /// looks at the shutdown flag: either it sees the flag, or the shutdown
    /// sees it counted (every access is `SeqCst`, the slots included).
    pub(crate) fn enter(&self) -> Entered<'_> {
        let slot = &self.0[hookflow_model::published::thread_lane(SLOTS)].0;
        slot.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Entered(slot)
    }

    /// Requests counted now.
    fn count(&self) -> usize {
        self.0
            .iter()
            .map(|s| s.0.load(std::sync::atomic::Ordering::SeqCst))
            .fold(0, usize::wrapping_add)
    }

    /// Resolves once no request is in flight, or after `limit`.
    pub(crate) async fn settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;
    use std::time::Duration;

    /// Requests entered on several threads are all counted until each
    /// guard drops, wherever it drops.
    #[test]
    fn requests_in_flight_are_counted_across_threads() {
        let in_flight = InFlight::default();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for _ in 0..SLOTS_AND_MORE {
                let tx = tx.clone();
                let in_flight = &in_flight;
                scope.spawn(move || {
                    let entered = in_flight.enter();
                    let _ = tx.send(entered);
                });
            }
        });
        drop(tx);
        let held: Vec<_> = rx.iter().collect();
        assert_eq!(in_flight.count(), SLOTS_AND_MORE);
        drop(held);
        assert_eq!(in_flight.count(), 0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _entered = in_flight.enter();
        let started = std::time::Instant::now();
        runtime.block_on(in_flight.settled(Duration::from_millis(100)));
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "one request in flight: the wait lasts its limit"
        );
    }

    /// More threads than slots: some share one.
    const SLOTS_AND_MORE: usize = super::SLOTS + 4;
}
