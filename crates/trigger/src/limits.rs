//! How a request may arrive (SPEC §4): no header over [`MAX_HEADER_BYTES`],
//! head and body within the read timeout, and a body left unread never
//! keeps its connection open.
//!
//! actix-http itself times the head of every request (its client request
//! timeout, with the patch in `vendor/actix-http`) and refuses heads over
//! 64 KiB; the body is timed here, by the deadline [`deadline`] gives.

use actix_web::dev::Extensions;
use actix_web::{web, HttpRequest};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// The largest header (name and value) a request may carry.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What hookflow keeps per connection (actix's connection data).
struct Connection {
    /// When the connection was accepted; taken by its first request.
    accepted: Cell<Option<Instant>>,
    /// A body answered before it was read, held until the connection closes.
    unread: RefCell<Option<web::Payload>>,
}

/// actix-web's `on_connect` hook: notes when the connection was accepted.
pub fn on_connect(_io: &dyn Any, data: &mut Extensions) {
    data.insert(Connection {
        accepted: Cell::new(Some(Instant::now())),
        unread: RefCell::new(None),
    });
}

/// Whether one header of the request (name and value) is over [`MAX_HEADER_BYTES`].
pub fn oversized_header(req: &HttpRequest) -> bool {
    req.headers()
        .iter()
        .any(|(name, value)| name.as_str().len() + value.len() > MAX_HEADER_BYTES)
}

/// When the request's body must have arrived: `read_timeout` after the
/// connection was accepted for its first request (head and body share the
/// time, as actix's head timer counts from the accept too), after the head
/// for later requests on a kept-alive connection (their head has its own
/// timer; `now` is when the head was handed over).
pub fn deadline(req: &HttpRequest, read_timeout: Duration, now: Instant) -> Instant {
    let arrived = req
        .conn_data::<Connection>()
        .and_then(|c| c.accepted.take())
        .unwrap_or(now);
    arrived + read_timeout
}

/// Called with the request's body once the answer is ready. What has
/// arrived of a body not read to its end is dropped, and the body is held
/// until the connection closes: actix closes a connection whose body is
/// unfinished and still held after the answer, but a dropped chunked body it
/// drains, for as long as the sender keeps sending.
pub fn settle(req: &HttpRequest, mut payload: web::Payload) {
    use futures_core::Stream;
    use std::task::Poll;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // Ends: what has arrived is finite (the connection's task is this one).
    let finished = loop {
        match std::pin::Pin::new(&mut payload).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(None) => break true,
            Poll::Ready(Some(Err(_))) | Poll::Pending => break false,
        }
    };
    if finished {
        return;
    }
    if let Some(connection) = req.conn_data::<Connection>() {
        if let Ok(mut slot) = connection.unread.try_borrow_mut() {
            *slot = Some(payload);
        }
    }
}
