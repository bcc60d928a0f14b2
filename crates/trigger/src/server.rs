//! Builds the actix-web app, runs it, and shuts it down gracefully.

use crate::{admin, reload, webhook, AppState};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The workflows folder.
    pub workflows_dir: PathBuf,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The base of printed URLs.
    pub public_url: String,
    /// Enables the admin API.
    pub admin_token: Option<String>,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// How long shutdown waits for in-flight requests and runs.
    pub shutdown_grace: Duration,
    /// How often the workflows folder is checked for changes.
    pub reload_every: Duration,
    /// Finished records older than this are removed.
    pub retention: Duration,
}

/// Routes by path prefix, without the router's regular expressions (they
/// cost a visible share of each webhook request).
async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if req.path().starts_with(webhook::PREFIX) {
        return webhook::handle(req, payload, state).await;
    }
    if req.path() == "/healthz" {
        return HttpResponse::Ok().json(serde_json::json!({"status": "ok"}));
    }
    let result = match admin::dispatch(&req, &state).await {
        Some(result) => result,
        None => Err(crate::error::ApiError::NotFound("no such route".into())),
    };
    result.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e))
}

/// Serves until `shutdown` resolves, then stops gracefully: webhook requests
/// get 503, in-flight requests are answered, running async runs get
/// `shutdown_grace` to finish (the rest stay on disk and resume at the next start).
pub async fn run(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let data = web::Data::from(state.clone());
    let grace = state.settings.shutdown_grace;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(usize::MAX))
            .default_service(web::to(dispatch))
    })
    .workers(state.settings.http_workers.max(1))
    .disable_signals()
    .shutdown_timeout(grace.as_secs().max(1))
    .listen(listener)?
    .run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    let watcher = tokio::spawn(reload::watch(state.clone(), state.settings.reload_every));
    let retention = tokio::spawn(retention_loop(state.clone()));

    shutdown.await;
    tracing::info!(message = "Shutting down.", grace_secs = grace.as_secs_f64());
    state.shutting_down.store(true, Ordering::SeqCst);
    let (_, still_running) = tokio::join!(handle.stop(true), state.executor.shutdown(grace));
    if still_running > 0 {
        tracing::warn!(
            message = "Runs still going at shutdown stay on disk and resume at the next start.",
            count = still_running
        );
    }
    watcher.abort();
    retention.abort();
    if let Err(error) = state.executor.flush().await {
        tracing::error!(message = "Final flush failed.", %error);
    }
    let _ = server_task.await;
    Ok(())
}

async fn retention_loop(state: Arc<AppState>) {
    let every = Duration::from_secs(600);
    loop {
        let cutoff = hookflow_model::time::now_millis().saturating_sub(
            u64::try_from(state.settings.retention.as_millis()).unwrap_or(u64::MAX),
        );
        if let Err(error) = state
            .executor
            .store()
            .remove_expired_idempotency(hookflow_model::time::now_millis())
        {
            tracing::warn!(message = "Idempotency key expiry failed.", %error);
        }
        match state.executor.store().remove_finished_before(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(message = "Removed old execution records.", count = n),
            Err(error) => tracing::warn!(message = "Retention failed.", %error),
        }
        tokio::time::sleep(every).await;
    }
}
