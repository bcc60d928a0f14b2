//! `GET /metrics` (SPEC §7): the service's metrics in the Prometheus text
//! format, which the metrics crate writes; this module only serves it. On
//! the main listener it is an admin route (the bearer token; 404 when no
//! token is set); on `--metrics-listen` it needs no token.

use crate::error::ApiError;
use crate::{admin, AppState};
use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hookflow_service::Refusal;
use std::sync::Arc;

/// The metrics as an answer, with the HTTP layer's own refusals brought
/// up to date (a malformed head, a head over 64 KiB, a slow head: answered
/// before a request reaches a route).
fn text(state: &AppState) -> HttpResponse {
    let metrics = state.service.metrics();
    let layer = actix_http::h1::refusals();
    // A bad or oversized head is answered as soon as it is read; a slow
    // one after the read timeout.
    let instant = std::time::Duration::ZERO;
    metrics.http_layer(&[
        (400, "bad_request", layer.bad_request, instant),
        (
            408,
            "request_timeout",
            layer.request_timeout,
            state.http.read_timeout,
        ),
        (431, "headers_too_large", layer.headers_too_large, instant),
    ]);
    HttpResponse::Ok()
        .content_type(hookflow_service::metrics::CONTENT_TYPE)
        .body(metrics.encode())
}

/// `/metrics` on the main listener.
pub fn on_main(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, ApiError> {
    admin::authorize(req, state)?;
    if req.method() != Method::GET {
        return Err(Refusal::NotFound("no such route".into()).into());
    }
    Ok(text(state))
}

async fn plain(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if req.path() == "/metrics" && req.method() == Method::GET {
        return text(&state);
    }
    actix_web::ResponseError::error_response(&ApiError(Refusal::NotFound("no such route".into())))
}

/// The server of `--metrics-listen`: `/metrics` and nothing else, no token.
pub fn listener_server(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(plain))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}
