//! SPEC §4, hostile senders: slow bodies and heads, oversized heads, more
//! connections than allowed, the open-files limit. Spoken over raw TCP,
//! since well-behaved clients cannot misbehave on purpose.

use crate::harness::{eventually, Options, TestApp};
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SYNC: &str = r#"
title: Sync
enabled: true
trigger: { type: webhook, mode: sync, key: slow-sync-0001 }
nodes:
  - type: response
    body: { ok: true }
"#;

const ASYNC: &str = r#"
title: Async
enabled: true
trigger: { type: webhook, key: slow-async-001 }
nodes:
  - type: log
    message: ran
"#;

fn app(args: &[&str]) -> TestApp {
    TestApp::spawn_with(
        &[("sync.yaml", SYNC), ("async.yaml", ASYNC)],
        Options {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        },
    )
}

/// A raw connection and what it has received so far.
struct Raw {
    stream: TcpStream,
    received: Vec<u8>,
    closed: bool,
}

impl Raw {
    fn open(app: &TestApp) -> Raw {
        let stream = TcpStream::connect(app.addr()).expect("connect");
        stream.set_nonblocking(true).expect("non-blocking");
        Raw {
            stream,
            received: Vec::new(),
            closed: false,
        }
    }

    /// Sends what the socket takes now; false once the server closed it.
    fn send(&mut self, bytes: &[u8]) -> bool {
        match self.stream.write(bytes) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Reads what has arrived, without waiting.
    fn poll(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        while !self.closed {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
    }

    /// The first response, once all of it (head and Content-Length body) arrived.
    fn response(&self) -> Option<(u16, String, String)> {
        let text = String::from_utf8_lossy(&self.received);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.get(9..12)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        (body.len() >= length).then(|| (status, head.to_lowercase(), body[..length].to_string()))
    }

    /// Waits up to `limit` for the first response or the close.
    fn wait(&mut self, limit: Duration) -> Option<(u16, String, String)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.poll();
            if let Some(r) = self.response() {
                return Some(r);
            }
            if self.closed {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no answer and no close within {limit:?}");
    }

    /// Waits up to `limit` for the server to close the connection, sending `dribble` meanwhile.
    /// What arrived is read before each dribble: a dribble that reaches a closed socket is
    /// answered with a reset, which can take the unread answer with it (seen on a busy machine).
    fn closed_within(&mut self, limit: Duration, dribble: &[u8]) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.poll();
            if self.closed {
                return true;
            }
            if !self.send(dribble) {
                self.poll();
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// One request on a fresh connection: its response, or `None` when the server closed instead.
fn exchange(app: &TestApp, request: &[u8]) -> Option<(u16, String, String)> {
    let mut raw = Raw::open(app);
    raw.stream.set_nonblocking(false).expect("blocking");
    // The server may answer and close before it has read everything.
    let _ = raw.stream.write_all(request);
    raw.stream.set_nonblocking(true).expect("non-blocking");
    raw.wait(Duration::from_secs(10))
}

fn healthz_within(app: &TestApp, limit: Duration) {
    let start = Instant::now();
    let r = app.get("/healthz");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        start.elapsed() < limit,
        "/healthz took {:?}\n{}",
        start.elapsed(),
        app.log_text()
    );
}

#[test]
fn slow_senders_get_408_and_do_not_starve_the_server() {
    let app = app(&["--read-timeout", "2s"]);
    let keys = ["slow-sync-0001", "slow-async-001"];
    let started = Instant::now();
    let mut slow: Vec<Raw> = (0..200)
        .map(|i| {
            let mut raw = Raw::open(&app);
            let head = format!(
                "POST /api/webhook:trigger/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
                keys[i % 2]
            );
            assert!(raw.send(head.as_bytes()));
            raw
        })
        .collect();
    // A byte every 300 ms on every slow connection, until each got its answer.
    let dribbler = std::thread::spawn(move || {
        let mut answered = vec![None; slow.len()];
        let deadline = Instant::now() + Duration::from_secs(20);
        while answered.iter().any(Option::is_none) && Instant::now() < deadline {
            for (raw, answer) in slow.iter_mut().zip(answered.iter_mut()) {
                if answer.is_some() {
                    continue;
                }
                raw.send(b" ");
                raw.poll();
                if let Some(r) = raw.response() {
                    *answer = Some((r, started.elapsed()));
                } else if raw.closed {
                    *answer = Some(((0, String::new(), "closed".into()), started.elapsed()));
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        answered
    });
    // Meanwhile the server answers others at once.
    for _ in 0..5 {
        healthz_within(&app, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(200));
    }
    let answered = dribbler.join().expect("dribbler");
    for (i, answer) in answered.iter().enumerate() {
        let ((status, head, body), at) = answer
            .clone()
            .unwrap_or_else(|| panic!("slow connection {i} got no answer in 20 s"));
        assert_eq!(status, 408, "connection {i}: {head}{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(body["error"], json!("request_timeout"), "{body}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            at >= Duration::from_millis(1900),
            "connection {i} was cut after {at:?}, before the read timeout"
        );
    }
    let runs = app.admin_get("/api/executions").json();
    assert_eq!(runs["executions"], json!([]), "a cut-off request ran");
    healthz_within(&app, Duration::from_secs(1));
}

/// A body that stops coming, with nothing more sent: the read is not woken
/// by the sender again, and still meets the read timeout.
#[test]
fn a_body_that_stops_coming_gets_408_at_the_read_timeout() {
    let app = app(&["--read-timeout", "2s"]);
    let started = Instant::now();
    // Each key with the body's first byte, and with none of it.
    let cases = [
        ("slow-sync-0001", "{"),
        ("slow-async-001", "{"),
        ("slow-sync-0001", ""),
        ("slow-async-001", ""),
    ];
    let mut stalled: Vec<(&str, Raw)> = cases
        .into_iter()
        .map(|(key, sent)| {
            let mut raw = Raw::open(&app);
            let head = format!(
                "POST /api/webhook:trigger/{key} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{sent}"
            );
            assert!(raw.send(head.as_bytes()));
            (key, raw)
        })
        .collect();
    for (key, raw) in &mut stalled {
        let (status, head, body) = raw
            .wait(Duration::from_secs(8))
            .unwrap_or_else(|| panic!("{key}: no answer 8 s after the body stopped"));
        assert_eq!(status, 408, "{key}: {head}{body}");
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "{key}: cut after {:?}, before the read timeout",
            started.elapsed()
        );
    }
    let runs = app.admin_get("/api/executions").json();
    assert_eq!(runs["executions"], json!([]), "a cut-off request ran");
}

#[test]
fn stalled_heads_and_unread_bodies_do_not_hold_connections() {
    let app = app(&["--read-timeout", "2s", "--keep-alive", "10s"]);
    let limit = Duration::from_secs(8);

    // A head that never ends, first on its connection: actix's 408.
    let mut raw = Raw::open(&app);
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    assert!(
        raw.closed_within(limit, b"a"),
        "a dribbled first head kept its connection"
    );
    let (status, head, body) = raw.response().expect("an answer before the close");
    assert_eq!(status, 408, "{head}");
    // As JSON, as every refusal (SPEC §4), though the HTTP layer answers it.
    assert!(head.contains("content-type: application/json"), "{head}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], json!("request_timeout"), "{body}");
    expect_metric_lines(
        &app,
        &["hookflow_refused_requests_total{workflow=\"\",reason=\"request_timeout\"} 1"],
    );

    // The same after a first request on a kept-alive connection.
    let mut raw = Raw::open(&app);
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.wait(limit).map(|r| r.0), Some(200));
    raw.received.clear();
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    let start = Instant::now();
    assert!(
        raw.closed_within(limit, b"a"),
        "a dribbled second head kept its connection"
    );
    assert!(start.elapsed() >= Duration::from_millis(1900));

    // Bodies a route does not read, dribbled: answered, then the connection closes.
    let requests: [&[u8]; 3] = [
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
        b"POST /api/executions/x/retry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-admin-token\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
        b"POST /api/executions/x/retry HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-admin-token\r\nContent-Length: 1000\r\n\r\n{",
    ];
    for request in requests {
        let mut raw = Raw::open(&app);
        raw.send(request);
        let chunked = request.ends_with(b"a\r\n");
        let dribble: &[u8] = if chunked { b"1\r\na\r\n" } else { b" " };
        assert!(
            raw.closed_within(limit, dribble),
            "{}: the connection stayed open",
            String::from_utf8_lossy(request)
        );
        let (status, head, _) = raw.response().expect("an answer before the close");
        assert!(matches!(status, 200 | 404), "{head}");
    }
    healthz_within(&app, Duration::from_secs(1));
}

#[test]
fn each_request_on_a_kept_alive_connection_has_its_own_deadline() {
    let app = app(&["--read-timeout", "1s", "--keep-alive", "10s"]);
    let mut raw = Raw::open(&app);
    let limit = Duration::from_secs(5);
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(raw.wait(limit).map(|r| r.0), Some(200));
    // Later than one read timeout after the accept, a request whose body takes a moment.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..2 {
        raw.received.clear();
        raw.send(b"POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{");
        std::thread::sleep(Duration::from_millis(300));
        raw.send(b"}");
        let (status, head, body) = raw.wait(limit).expect("an answer");
        assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#), "{head}");
    }
}

#[test]
fn oversized_heads_get_431_or_a_close_and_never_a_panic() {
    let app = app(&[]);
    let long_name = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}: v\r\n\r\n",
        "a".repeat(70_000)
    );
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..70)
            .map(|i| format!("X-Pad-{i}: {}\r\n", "b".repeat(1000)))
            .collect::<String>()
    );
    for (what, request) in [
        ("a 70,000-byte header name", &long_name),
        ("a 70 KiB head", &many),
    ] {
        let answer = exchange(&app, request.as_bytes());
        assert!(
            answer.as_ref().is_none_or(|r| r.0 == 431
                && serde_json::from_str::<serde_json::Value>(&r.2)
                    .is_ok_and(|b| b["error"] == json!("headers_too_large"))),
            "{what}: {answer:?}"
        );
        healthz_within(&app, Duration::from_secs(1));
    }

    // One header over 16 KiB in a head under 64 KiB: hookflow's own 431.
    let value = "c".repeat(20 * 1024);
    for target in ["/healthz", "/api/webhook:trigger/slow-sync-0001"] {
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nX-Big: {value}\r\nContent-Length: 0\r\n\r\n"
        );
        let (status, head, body) = exchange(&app, request.as_bytes()).expect("an answer");
        assert_eq!(status, 431, "{target}: {head}{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(body["error"], json!("headers_too_large"), "{body}");
    }
    // The webhook's refusal is counted as its workflow's, as every refusal is.
    expect_metric_lines(
        &app,
        &[
            "hookflow_refused_requests_total{workflow=\"sync\",reason=\"headers_too_large\"} 1",
            "hookflow_webhook_requests_total{workflow=\"sync\",status=\"431\"} 1",
            "hookflow_webhook_request_duration_seconds_count{workflow=\"sync\"} 1",
        ],
    );
    // Just under the cap is fine.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "d".repeat(16 * 1024 - 8)
    );
    assert_eq!(exchange(&app, request.as_bytes()).map(|r| r.0), Some(200));

    healthz_within(&app, Duration::from_secs(1));
    assert_eq!(
        app.admin_get("/api/executions").json()["executions"],
        json!([])
    );
    let log = app.log_text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

#[test]
fn a_full_connection_limit_recovers_once_stalled_connections_are_cut() {
    let app = app(&["--max-connections", "16", "--read-timeout", "2s"]);
    // More idle connections than allowed: they fill the limit, the rest wait in the backlog.
    let idle: Vec<Raw> = (0..40).map(|_| Raw::open(&app)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The limit is in force: a request waits behind the stalled connections...
    let mut probe = Raw::open(&app);
    probe.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(700));
    probe.poll();
    assert!(
        probe.response().is_none(),
        "answered past the connection limit: {}",
        String::from_utf8_lossy(&probe.received)
    );
    // ...until the read timeout has cut them: then it is served.
    let start = Instant::now();
    let served = eventually(Duration::from_secs(20), "/healthz past the limit", || {
        probe.poll();
        probe.response()
    });
    assert_eq!(served.0, 200, "{served:?}");
    assert!(start.elapsed() < Duration::from_secs(15));
    healthz_within(&app, Duration::from_secs(1));
    drop(idle);
}

fn open_files(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line")
        .to_string();
    let mut fields = line.split_whitespace().skip(3);
    (
        fields.next().unwrap_or_default().to_string(),
        fields.next().unwrap_or_default().to_string(),
    )
}

#[test]
fn the_open_files_limit_is_raised_and_connections_fit_in_it() {
    let spawn = |soft, hard| {
        TestApp::spawn_with(
            &[("sync.yaml", SYNC)],
            Options {
                open_files: Some((soft, hard)),
                ..Options::default()
            },
        )
    };
    // The hard limit this process has (an unprivileged process cannot raise it).
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
    assert!(own.rlim_max > 256, "hard limit {}", own.rlim_max);
    let app = spawn(256, own.rlim_max);
    let (soft, hard) = open_files(app.pid());
    assert_eq!(hard, own.rlim_max.to_string());
    assert_eq!(soft, hard, "the soft limit was not raised");
    assert!(!app.log_text().contains("open-files limit"));

    // A hard limit too low for --max-connections (10,000): a warning, and fewer connections.
    let app = spawn(512, 600);
    let (soft, hard) = open_files(app.pid());
    assert_eq!((soft.as_str(), hard.as_str()), ("600", "600"));
    let log = app.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("open-files limit is below"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("open_files=600")
            && warning.contains("max_connections=10000")
            && warning.contains("connections=344"),
        "{warning}"
    );
    healthz_within(&app, Duration::from_secs(1));
}

/// Header values outside visible ASCII reach the run as text: UTF-8 as
/// sent, other bytes decoded lossily (as the raw body is), never dropped.
#[test]
fn header_values_outside_ascii_are_kept_as_text() {
    let app = app(&[]);
    let mut request = b"POST /api/webhook:trigger/slow-async-001 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Name: Jos\xc3\xa9\r\nX-Raw: a\xffb\r\nContent-Type: text/plain; charset=\"\xc3\xa9\"\r\nContent-Length: 2\r\n\r\n".to_vec();
    request.extend_from_slice(b"hi");
    let (status, head, body) = exchange(&app, &request).expect("an answer");
    assert_eq!(status, 200, "{head}{body}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-hookflow-execution: "))
        .expect("an execution id")
        .trim()
        .to_string();
    let record = app.execution(&id);
    let headers = &record["trigger"]["headers"];
    assert_eq!(headers["x-name"], json!("José"), "{record}");
    assert_eq!(headers["x-raw"], json!("a\u{fffd}b"), "{record}");
    assert_eq!(record["trigger"]["body"], json!("hi"), "{record}");
}

/// SPEC §4 bounds a head by its size, not by its lines: 500 short header
/// lines (well under 64 KiB) are a request like any other, and a
/// kept-alive connection goes on after it.
#[test]
fn many_short_header_lines_are_accepted() {
    let app = app(&[]);
    let mut request = b"POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\n".to_vec();
    for n in 0..500 {
        request.extend_from_slice(format!("X-H{n}: a\r\n").as_bytes());
    }
    request.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let ok = b"POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    request.extend_from_slice(ok);
    let mut raw = Raw::open(&app);
    raw.stream.set_nonblocking(false).expect("blocking");
    raw.stream.write_all(&request).expect("send");
    raw.stream.set_nonblocking(true).expect("non-blocking");
    let start = Instant::now();
    while !raw.closed && start.elapsed() < Duration::from_secs(10) {
        raw.poll();
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = String::from_utf8_lossy(&raw.received).to_string();
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    // Still refused past 64 KiB.
    let mut big = b"POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\n".to_vec();
    for n in 0..7000 {
        big.extend_from_slice(format!("X-H{n}: a\r\n").as_bytes());
    }
    big.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    assert!(big.len() > 64 * 1024);
    if let Some((status, head, _)) = exchange(&app, &big) {
        assert_eq!(status, 431, "{head}");
    }
    healthz_within(&app, Duration::from_secs(2));
}

/// A head that is not HTTP/1.1 gets the HTTP layer's 400, with the JSON
/// body every refusal has.
#[test]
fn a_malformed_head_gets_a_json_400() {
    let app = app(&[]);
    for request in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let (status, head, body) = exchange(&app, request).expect("an answer");
        assert_eq!(status, 400, "{head}{body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(body["error"], json!("bad_request"), "{body}");
    }
    healthz_within(&app, Duration::from_secs(1));
    // Counted, though no workflow is known before a head parses.
    expect_metric_lines(
        &app,
        &[
            "hookflow_refused_requests_total{workflow=\"\",reason=\"bad_request\"} 2",
            "hookflow_webhook_requests_total{workflow=\"\",status=\"400\"} 2",
        ],
    );
}

/// Each of `lines` is a line of the server's `/metrics`.
fn expect_metric_lines(app: &TestApp, lines: &[&str]) {
    let metrics = app.admin_get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    for line in lines {
        assert!(
            metrics.body.lines().any(|l| l == *line),
            "{line} in:\n{}",
            metrics.body
        );
    }
}

/// `Upgrade: websocket` does not make a request's body run to the end of
/// the connection: it is framed by its Content-Length, and the request
/// pipelined behind it is answered too (hookflow serves no WebSocket).
#[test]
fn an_upgrade_header_does_not_swallow_the_next_request() {
    let app = app(&[]);
    for connection in ["", "Connection: Upgrade\r\n"] {
        upgrade_then_request(&app, connection);
    }
}

fn upgrade_then_request(app: &TestApp, connection: &str) {
    let mut raw = Raw::open(app);
    let one = format!("POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{connection}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}");
    let two = "POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    raw.stream.set_nonblocking(false).expect("blocking");
    raw.stream
        .write_all(format!("{one}{two}").as_bytes())
        .expect("send");
    raw.stream.set_nonblocking(true).expect("non-blocking");
    let start = Instant::now();
    let answered = loop {
        raw.poll();
        let text = String::from_utf8_lossy(&raw.received).to_string();
        let n = text.matches("HTTP/1.1 200").count();
        if n == 2 || raw.closed || start.elapsed() > Duration::from_secs(5) {
            break (n, text);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        answered.0, 2,
        "both requests answered ({connection:?}):\n{}",
        answered.1
    );
}

/// Pairs that nest a query one level deeper each (`q[]=x&q[k]=y`, again
/// and again) built a value thousands of levels deep: the server's stack
/// overflowed when a template read it, and a stored run could not be read
/// back. The value stays as deep as one key's brackets.
#[test]
fn a_query_that_nests_pair_by_pair_is_answered() {
    let echo = "title: Echo\nenabled: true\ntrigger: { type: webhook, mode: sync, key: echo-query-01 }\nnodes:\n  - type: response\n    body: { query: \"{{ trigger.query }}\" }\n";
    let app = TestApp::spawn(&[("echo.yaml", echo)]);
    let hostile = "q[]=x&q[k]=y&".repeat(4_500);
    let r = app.post(&format!("echo-query-01?{hostile}"), &[], "");
    assert_eq!(r.status, 200, "{}", app.log_text());
    assert!(r.json()["query"]["q"].is_object(), "{:?}", r.json());
    assert_eq!(app.get("/healthz").status, 200, "{}", app.log_text());
}

/// A body whose chunked framing breaks is refused in the sender's terms.
#[test]
fn a_broken_chunked_body_is_refused_plainly() {
    let app = app(&[]);
    let request = b"POST /api/webhook:trigger/slow-sync-0001 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n";
    let (status, _, body) = exchange(&app, request).expect("an answer");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("chunked framing is broken"), "{body}");
    assert!(!body.contains("None"), "{body}");
}

/// A body that arrives in several pieces (chunks of a chunked body, or a
/// sized body in two writes apart) reaches the run whole and in order.
#[test]
fn a_body_in_several_pieces_reaches_the_run_whole() {
    const ECHO: &str = r#"
title: Echo
enabled: true
trigger: { type: webhook, mode: sync, key: echo-body-0001 }
nodes:
  - type: response
    body: { raw: "{{ trigger.raw_body }}", id: "{{ trigger.body.order.id }}" }
"#;
    let app = TestApp::spawn_with(&[("echo.yaml", ECHO)], Options::default());
    let body = r#"{"order":{"id":"A-1"},"pad":"xyz"}"#;
    let (a, rest) = body.split_at(9);
    let (b, c) = rest.split_at(12);
    let chunked = format!(
        "POST /api/webhook:trigger/echo-body-0001 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n{:x}\r\n{c}\r\n0\r\n\r\n",
        a.len(),
        b.len(),
        c.len()
    );
    let (status, _, answer) = exchange(&app, chunked.as_bytes()).expect("an answer");
    assert_eq!(status, 200, "{answer}\n{}", app.log_text());
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer, json!({"raw": body, "id": "A-1"}));

    // A sized body whose second half comes later than its head and first half.
    let mut raw = Raw::open(&app);
    let head = format!(
        "POST /api/webhook:trigger/echo-body-0001 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{a}",
        body.len()
    );
    assert!(raw.send(head.as_bytes()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(raw.send(rest.as_bytes()));
    let (status, _, answer) = raw.wait(Duration::from_secs(10)).expect("an answer");
    assert_eq!(status, 200, "{answer}\n{}", app.log_text());
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer, json!({"raw": body, "id": "A-1"}));
}

const ECHO: &str = r#"
title: Echo
enabled: true
trigger: { type: webhook, mode: sync, key: echo-piped-01 }
nodes:
  - type: response
    body: { n: "{{ trigger.body.n }}" }
"#;

/// Requests sent in one write, with and without bodies (one of them with
/// `Expect: 100-continue` and its body right behind it), are each answered,
/// in the order sent: a request with a body waits for its turn, and its
/// handler first runs once the body in the buffer has been handed over.
#[test]
fn pipelined_requests_with_bodies_are_answered_in_order() {
    let app = TestApp::spawn(&[("echo.yaml", ECHO)]);
    let post = |n: u32, extra: &str| {
        let body = format!("{{\"n\":{n}}}");
        format!(
            "POST /api/webhook:trigger/echo-piped-01 HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let sent = [
        post(1, ""),
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        post(2, "Expect: 100-continue\r\n"),
        post(3, ""),
    ]
    .concat();
    let mut raw = Raw::open(&app);
    raw.stream.set_nonblocking(false).expect("blocking");
    raw.stream.write_all(sent.as_bytes()).expect("send");
    raw.stream.set_nonblocking(true).expect("non-blocking");
    let start = Instant::now();
    let text = loop {
        raw.poll();
        let text = String::from_utf8_lossy(&raw.received).to_string();
        if text.contains(r#"{"n":3}"#) || raw.closed || start.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} in:\n{text}\n{}", app.log_text()))
    };
    let (one, health, cont, two, three) = (
        at(r#"{"n":1}"#),
        at(r#""status":"#),
        at("HTTP/1.1 100 Continue"),
        at(r#"{"n":2}"#),
        at(r#"{"n":3}"#),
    );
    assert!(
        one < health && health < cont && cont < two && two < three,
        "answered in the order sent:\n{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 200").count(), 4, "{text}");
}

/// A sender that waits for `100 Continue` before it sends the body gets
/// it, then the answer once the body came.
#[test]
fn expect_continue_is_answered_before_the_body_comes() {
    let app = TestApp::spawn(&[("echo.yaml", ECHO)]);
    let mut raw = Raw::open(&app);
    let head = "POST /api/webhook:trigger/echo-piped-01 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n";
    assert!(raw.send(head.as_bytes()));
    let start = Instant::now();
    while !String::from_utf8_lossy(&raw.received).contains("100 Continue") {
        assert!(
            start.elapsed() < Duration::from_secs(10) && !raw.closed,
            "no 100 Continue: {:?}",
            String::from_utf8_lossy(&raw.received)
        );
        std::thread::sleep(Duration::from_millis(20));
        raw.poll();
    }
    raw.received.clear();
    assert!(raw.send(br#"{"n":7}"#));
    let (status, _, body) = raw.wait(Duration::from_secs(10)).expect("an answer");
    assert_eq!((status, body.as_str()), (200, r#"{"n":7}"#));
}
