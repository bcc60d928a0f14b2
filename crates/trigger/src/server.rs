//! Builds the actix-web app, runs it, and shuts it down gracefully.

use crate::error::ApiError;
use crate::{admin, limits, ui, webhook, AppState, HttpSettings};
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hookflow_service::{Refusal, WEBHOOK_PREFIX};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection being closed may take: the time an answer has to
/// reach the client before the socket is shut (and what the client still
/// sends is read and dropped meanwhile, so that a close does not reset the
/// connection before the answer is read). Short: a cut-off sender frees its
/// connection quickly.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Routes by path prefix, without the router's regular expressions (they
/// cost a visible share of each webhook request).
async fn dispatch(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<Arc<AppState>>,
) -> HttpResponse {
    let response = route(&req, &mut payload, &state).await;
    limits::settle(&req, payload);
    response
}

async fn route(req: &HttpRequest, payload: &mut web::Payload, state: &AppState) -> HttpResponse {
    // One reading of the clock: when a kept-alive connection's request
    // arrived (its body's deadline), and when a webhook's handling started.
    let now = std::time::Instant::now();
    // Taken by every request: the connection's first one, whatever its route, counts from the accept.
    let deadline = limits::deadline(req, state.http.read_timeout, now);
    if req.path().starts_with(WEBHOOK_PREFIX) {
        // Checks its headers' size itself, so that the refusal is counted.
        return webhook::handle(req, payload, state, deadline, now).await;
    }
    if limits::oversized_header(req) {
        let refusal = ApiError(Refusal::HeadersTooLarge(limits::MAX_HEADER_BYTES));
        return actix_web::ResponseError::error_response(&refusal);
    }
    if req.path() == "/metrics" {
        return crate::metrics::on_main(req, state)
            .unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
    }
    if req.path() == "/healthz" {
        // Draining: webhooks get 503 from now on, so a load balancer is to
        // send them elsewhere.
        if state.service.is_shutting_down() {
            return HttpResponse::ServiceUnavailable()
                .insert_header((
                    "Retry-After",
                    hookflow_service::RETRY_AFTER_SECS.to_string(),
                ))
                .json(serde_json::json!({"status": "shutting_down"}));
        }
        // Not healthy while the store cannot take runs (a full disk, a
        // database away or far behind): webhooks get 503 meanwhile.
        if !state.service.executor.store().healthy() {
            return HttpResponse::ServiceUnavailable()
                .insert_header((
                    "Retry-After",
                    hookflow_service::RETRY_AFTER_SECS.to_string(),
                ))
                .json(serde_json::json!({"status": "store_unavailable"}));
        }
        return HttpResponse::Ok().json(serde_json::json!({"status": "ok"}));
    }
    if let Some(page) = ui::dispatch(req, state) {
        return page.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e));
    }
    // Boxed: the admin API's future is three times a webhook's, and every
    // request's future is as large as its largest branch.
    let result = match Box::pin(admin::dispatch(req, payload, state, deadline)).await {
        Some(result) => result,
        None => Err(ApiError(Refusal::NotFound("no such route".into()))),
    };
    result.unwrap_or_else(|e| actix_web::ResponseError::error_response(&e))
}

/// Open connections each worker takes: the total shared out, at least one.
fn per_worker(settings: &HttpSettings) -> usize {
    (settings.max_connections / settings.http_workers.max(1)).max(1)
}

/// Serves until `shutdown` resolves, then stops gracefully: webhook requests
/// get 503, in-flight requests are answered, running async runs get the
/// shutdown grace to finish (the rest stay on disk and resume at the next
/// start). The service's background work (reload, retention) runs meanwhile.
/// `metrics_listener` (`--metrics-listen`) serves `/metrics` without a token.
pub async fn run(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    metrics_listener: Option<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = state.service.clone();
    let grace = service.settings.shutdown_grace;
    let shared = state.clone();
    let server = HttpServer::new(move || {
        // Each worker's own handle on the state: a request takes one (the
        // extractor clones it), and a count both workers touched was a
        // contended atomic twice a request.
        App::new()
            .app_data(web::Data::new(shared.clone()))
            .app_data(web::PayloadConfig::new(usize::MAX))
            .default_service(web::to(dispatch))
    })
    .workers(state.http.http_workers.max(1))
    .max_connections(per_worker(&state.http))
    .client_request_timeout(state.http.read_timeout)
    .client_disconnect_timeout(DISCONNECT_TIMEOUT)
    .keep_alive(if state.http.keep_alive.is_zero() {
        KeepAlive::Disabled
    } else {
        KeepAlive::Timeout(state.http.keep_alive)
    })
    .on_connect(limits::on_connect)
    .disable_signals()
    // Requests had the grace before the stop (`run`); this only bounds
    // the answers still being written then.
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    let metrics_server = match metrics_listener {
        Some(l) => Some(crate::metrics::listener_server(state.clone(), l)?),
        None => None,
    };
    let metrics_handle = metrics_server.as_ref().map(|s| s.handle());
    let metrics_task = metrics_server.map(tokio::spawn);
    let background = service.start_background();

    shutdown.await;
    tracing::info!(message = "Shutting down.", grace_secs = grace.as_secs_f64());
    // Webhook requests get 503 from here on, and the listener stays open
    // while runs and in-flight requests have their grace: a sender that
    // comes meanwhile is told to retry instead of finding no listener.
    let draining = service.shut_down();
    let (still_running, ()) = tokio::join!(draining, state.in_flight.settled(grace));
    handle.stop(true).await;
    if let Some(h) = metrics_handle {
        h.stop(false).await;
    }
    if still_running > 0 {
        tracing::warn!(
            message = "Runs still going at shutdown stay on disk and resume at the next start.",
            count = still_running
        );
    }
    drop(background);
    let flushed = service.executor.flush().await;
    let _ = server_task.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    // A failed last flush (a full disk, say) may have lost what the
    // process still held: the exit says so, for the supervisor to see.
    flushed.map_err(|error| {
        tracing::error!(message = "Final flush failed.", %error);
        std::io::Error::other(format!("the last flush of the store failed: {error}"))
    })
}
