//! The benchmark ceiling: a hand-written actix-web handler doing the work of
//! `bench/workflows/pay-sync.yaml` (Basic auth, parse `order.id`, `status` and
//! `x-request-id`, branch, templated JSON answer) with nothing else.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:13100`

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

async fn pay(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .is_some_and(|d| d == b"shop:bench-secret");
    if !authorized {
        return HttpResponse::Unauthorized().json(json!({"error": "unauthorized"}));
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "bad_request"}));
    };
    let Some(order) = v.pointer("/order/id").and_then(Value::as_str) else {
        return HttpResponse::BadRequest().json(json!({"error": "bad_request"}));
    };
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if v.get("status").and_then(Value::as_str) == Some("SUCCESS") {
        HttpResponse::Ok().json(json!({"code": "SUCCESS", "order": order, "request": request_id}))
    } else {
        HttpResponse::BadRequest().json(json!({"code": "FAIL", "order": order}))
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:13100".into());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new().route("/api/webhook:trigger/bench-pay-sync", web::post().to(pay))
        })
        .workers(workers)
        .bind(&addr)?;
        println!("ceiling listening on http://{addr}");
        server.run().await
    })
}
