//! A real HTTP server for request nodes to call, started inside a test.
//!
//! Routes: `/sleep/{ms}` answers after a pause; `/status/{code}` answers that
//! status; `/repeat` answers with the header `x-many` twice (`a`, then `b`);
//! `/cookie` answers with `set-cookie` and `x-auth-token` headers;
//! `/flaky/{n}` answers 503 (with `Retry-After` when `?retry_after=` is
//! given) to its first `n` calls, then 200; `/redirect-to/{host:port}/{path…}`
//! answers 302 to `http://{host:port}/{path…}` (keeping the query string);
//! `/hops/{n}` redirects to `/hops/{n-1}` until `/hops/0`, which answers 200;
//! anything else echoes the request.

#![allow(dead_code)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// Body text.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    hits: Mutex<Vec<Hit>>,
    counts: Mutex<HashMap<String, u32>>,
}

/// A running upstream.
pub struct Upstream {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

async fn handle(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let hit = Hit {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        // A header sent twice reads as its values joined (`a, b`), so that
        // a test sees the repeat.
        headers: req
            .headers()
            .iter()
            .fold(HashMap::new(), |mut all, (n, v)| {
                let v = v.to_str().unwrap_or_default();
                all.entry(n.as_str().to_string())
                    .and_modify(|joined: &mut String| {
                        joined.push_str(", ");
                        joined.push_str(v);
                    })
                    .or_insert_with(|| v.to_string());
                all
            }),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    if let Ok(mut hits) = shared.hits.lock() {
        hits.push(hit.clone());
    }
    let count = {
        let mut counts = shared.counts.lock().expect("counts");
        let c = counts.entry(hit.path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let parts: Vec<&str> = hit.path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["sleep", ms] => {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            HttpResponse::Ok().json(json!({"slept": ms}))
        }
        ["status", code] => {
            let code = actix_web::http::StatusCode::from_u16(code.parse().unwrap_or(500))
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            HttpResponse::build(code).json(json!({"status": code.as_u16()}))
        }
        ["cookie"] => HttpResponse::Ok()
            .append_header(("set-cookie", "sid=UPSTREAM-SESSION-1"))
            .append_header(("x-auth-token", "UPSTREAM-TOKEN-1"))
            .json(json!({"cookie": true})),
        ["cookies"] => HttpResponse::Ok()
            .append_header(("set-cookie", "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT"))
            .append_header(("set-cookie", "b=2; Path=/"))
            .json(json!({"cookies": 2})),
        ["repeat"] => HttpResponse::Ok()
            .append_header(("x-many", "a"))
            .append_header(("x-many", "b"))
            .json(json!({"repeated": true})),
        ["flaky", n] => {
            let n: u32 = n.parse().unwrap_or(0);
            if count <= n {
                let mut r = HttpResponse::ServiceUnavailable();
                if let Some(ra) = hit.query.strip_prefix("retry_after=") {
                    r.insert_header(("retry-after", ra.to_string()));
                }
                r.json(json!({"try": count}))
            } else {
                HttpResponse::Ok().json(json!({"try": count}))
            }
        }
        ["redirect-to", target, rest @ ..] => {
            let mut location = format!("http://{target}/{}", rest.join("/"));
            if !hit.query.is_empty() {
                location = format!("{location}?{}", hit.query);
            }
            HttpResponse::Found()
                .insert_header(("location", location))
                .json(json!({"redirect": true}))
        }
        ["big", kib] => {
            let kib: usize = kib.parse().unwrap_or(1);
            HttpResponse::Ok().json(json!({"pad": "x".repeat(kib * 1024)}))
        }
        ["hops", n] => match n.parse::<u32>().unwrap_or(0) {
            0 => HttpResponse::Ok().json(json!({"hops": "done"})),
            n => HttpResponse::Found()
                .insert_header(("location", format!("/hops/{}", n - 1)))
                .finish(),
        },
        _ => {
            let parsed: Json =
                serde_json::from_str(&hit.body).unwrap_or(Json::String(hit.body.clone()));
            HttpResponse::Ok().json(json!({"method": hit.method, "path": hit.path, "query": hit.query, "headers": hit.headers, "body": parsed}))
        }
    }
}

impl Upstream {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> Upstream {
        Upstream::start_on("127.0.0.1")
    }

    /// Starts on a free port of a loopback address (`127.0.0.2`…).
    pub fn start_on(ip: &'static str) -> Upstream {
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(shared.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(handle))
                })
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .bind((ip, 0))
                .expect("bind upstream");
                let addr = server.addrs()[0];
                let server = server.run();
                let _ = tx.send((addr, server.handle()));
                let _ = server.await;
            });
        });
        let (addr, handle) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream started");
        Upstream {
            base: format!("http://{addr}"),
            shared,
            handle,
        }
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared
            .hits
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Requests to one path.
    pub fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(false)));
    }
}
