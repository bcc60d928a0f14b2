//! The HTTP side of hookflow (actix-web): routes, the webhook endpoint's
//! HTTP checks, the admin API, health and graceful shutdown.
//!
//! Only this crate knows HTTP, and it does nothing else: a webhook handler
//! checks what only HTTP can (method, Basic auth, body size), reads the
//! capped body and hands the request to the [`Service`]; errors become
//! responses in [`error`].

pub mod admin;
pub mod error;
pub mod server;
pub mod webhook;

pub use server::run;

use hookflow_service::Service;
use std::sync::Arc;

/// Settings of the HTTP side.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Enables the admin API.
    pub admin_token: Option<String>,
    /// HTTP worker threads.
    pub http_workers: usize,
}

/// What every handler sees.
pub struct AppState {
    /// The webhook service.
    pub service: Arc<Service>,
    /// Tokens and threads.
    pub http: HttpSettings,
}
