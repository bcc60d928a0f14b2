//! The end-to-end harness: starts the real `hookflow serve` on a free loopback
//! port with temporary folders, and speaks HTTP to it. On failure, messages
//! include the server's log.

#![allow(dead_code)]

use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token every test server uses.
pub const ADMIN: &str = "test-admin-token";

/// A running server.
pub struct TestApp {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The workflows folder.
    pub workflows: tempfile::TempDir,
    /// The data folder.
    pub data: tempfile::TempDir,
    log: PathBuf,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    open_files: Option<(u64, u64)>,
    /// The lines the server printed at start.
    pub banner: Vec<String>,
}

/// A response, read fully.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Resp {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The execution id header.
    pub fn execution(&self) -> String {
        self.header("x-hookflow-execution")
            .unwrap_or_else(|| panic!("no X-Hookflow-Execution header: {self:?}"))
            .to_string()
    }
}

/// Options of a test server.
#[derive(Default)]
pub struct Options {
    /// Extra flags for `serve`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Environment variables not to set (e.g. `HOOKFLOW_ADMIN_TOKEN`: no admin API).
    pub env_remove: Vec<String>,
    /// The open-files limit (soft, hard) the server starts with.
    pub open_files: Option<(u64, u64)>,
    /// `--store`: `None` for the data folder's sled store, or a PostgreSQL
    /// URL ([`postgres_db`], [`store_of`]); a PostgreSQL server gets
    /// `--lease 1s` unless the test sets one.
    pub store: Option<String>,
}

/// Which store a test that runs on both uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backing {
    /// sled in the data folder.
    Sled,
    /// A fresh database of the test binary's private PostgreSQL cluster.
    Postgres,
}

/// The `--store` of a backing: a fresh database for PostgreSQL.
pub fn store_of(backing: Backing) -> Option<String> {
    match backing {
        Backing::Sled => None,
        Backing::Postgres => Some(postgres_db()),
    }
}

/// A fresh, empty database of this test binary's private PostgreSQL
/// cluster (started on first use; stopped when the binary ends).
pub fn postgres_db() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    hookflow_pgtest::cluster().database(&format!("e2e_{}_{n}", std::process::id()))
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

pub fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    let mut resp = resp.unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut body = String::new();
    let _ = resp.body_mut().as_reader().read_to_string(&mut body);
    Resp {
        status,
        headers,
        body,
    }
}

/// A loopback port nothing listens on, for as long as this value lives.
///
/// The port stays bound, so no other test's server is given it, and is
/// never listened on, so a connection to it is refused. (A port bound and
/// let go at once can be handed to a server another test starts meanwhile,
/// which then answers what was meant to find nobody.)
pub struct ClosedPort {
    _bound: tokio::net::TcpSocket,
    pub port: u16,
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    ClosedPort {
        _bound: socket,
        port,
    }
}

/// Waits up to `limit` for `check` to return `Some`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl TestApp {
    /// Starts a server with these workflow files (`name.yaml`, content).
    pub fn spawn(files: &[(&str, &str)]) -> TestApp {
        TestApp::spawn_with(files, Options::default())
    }

    /// Starts a server with options.
    pub fn spawn_with(files: &[(&str, &str)], opts: Options) -> TestApp {
        let workflows = tempfile::tempdir().expect("tempdir");
        let data = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(workflows.path().join(name), text).expect("write workflow");
        }
        let log = data.path().join("server.log");
        let mut app = TestApp {
            child: None,
            base: String::new(),
            workflows,
            data,
            log,
            extra_args: opts.args,
            env: opts.env,
            env_remove: opts.env_remove,
            open_files: opts.open_files,
            banner: Vec::new(),
        };
        if let Some(url) = opts.store {
            if !app.extra_args.iter().any(|a| a == "--lease") {
                app.extra_args
                    .extend(["--lease".to_string(), "1s".to_string()]);
            }
            app.extra_args.extend(["--store".to_string(), url]);
        }
        app.start();
        app
    }

    /// Starts (again) on the same folders.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookflow"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--workflows")
            .arg(self.workflows.path())
            .arg("--data")
            .arg(self.data.path())
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .env("HOOKFLOW_ADMIN_TOKEN", ADMIN)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for name in &self.env_remove {
            cmd.env_remove(name);
        }
        if let Some((soft, hard)) = self.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: between fork and exec the hook only calls setrlimit,
            // which is async-signal-safe, on a value copied in.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("start hookflow serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.by_ref().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.banner.clear();
        let deadline = Instant::now() + Duration::from_secs(20);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    self.banner.push(line.clone());
                    if let Some(addr) = line.strip_prefix("hookflow listening on ") {
                        break addr.trim().to_string();
                    }
                }
                Err(_) => panic!("the server did not start; log:\n{}", self.log_text()),
            }
        };
        // Collect the rest of the banner (workflow lines) without blocking the pipe.
        std::thread::sleep(Duration::from_millis(50));
        self.banner.extend(rx.try_iter());
        std::thread::spawn(move || for _ in rx.iter() {});
        self.base = base;
        self.child = Some(child);
        eventually(Duration::from_secs(10), "healthz", || {
            (self.get("/healthz").status == 200).then_some(())
        });
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `127.0.0.1:<port>`, for raw connections.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes (or replaces) a workflow file.
    pub fn write_workflow(&self, name: &str, text: &str) {
        let path = self.workflows.path().join(name);
        let tmp = self.workflows.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    }

    /// The data folder.
    pub fn data_path(&self) -> &Path {
        self.data.path()
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns the child (to wait on).
    pub fn sigterm(&mut self) -> Child {
        let child = self.child.take().expect("running");
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        child
    }

    /// The webhook URL of a key.
    pub fn hook(&self, key: &str) -> String {
        format!("{}/api/webhook:trigger/{key}", self.base)
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> Resp {
        read(agent().get(format!("{}{path}", self.base)).call())
    }

    /// GET an admin path with the token.
    pub fn admin_get(&self, path: &str) -> Resp {
        read(
            agent()
                .get(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {ADMIN}"))
                .call(),
        )
    }

    /// What the server left in its data folder for commands on its machine
    /// (`server.json`: its loopback URL and a token).
    pub fn local_access(&self) -> Json {
        let text =
            std::fs::read_to_string(self.data_path().join("server.json")).expect("server.json");
        serde_json::from_str(&text).expect("JSON")
    }

    /// GET a path with the token of [`TestApp::local_access`].
    pub fn local_get(&self, path: &str) -> Resp {
        let access = self.local_access();
        let token = access["token"].as_str().expect("a token");
        read(
            agent()
                .get(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {token}"))
                .call(),
        )
    }

    /// POST an admin path with the token.
    pub fn admin_post(&self, path: &str) -> Resp {
        read(
            agent()
                .post(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {ADMIN}"))
                .send_empty(),
        )
    }

    /// POST a JSON body to an admin path with the token.
    pub fn admin_post_json(&self, path: &str, body: &Json) -> Resp {
        read(
            agent()
                .post(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json")
                .send(body.to_string()),
        )
    }

    /// POST JSON to a key.
    pub fn post_json(&self, key: &str, body: &Json) -> Resp {
        self.post(
            key,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }

    /// POST a body with headers to a key (`key` may carry a query string).
    pub fn post(&self, key: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut req = agent().post(self.hook(key));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        if body.is_empty() {
            read(req.send_empty())
        } else {
            read(req.send(body))
        }
    }

    /// Any method to a key, without a body.
    pub fn call(&self, method: &str, key: &str) -> Resp {
        let url = self.hook(key);
        let a = agent();
        read(match method {
            "GET" => a.get(url).call(),
            "PUT" => a.put(url).send_empty(),
            "DELETE" => a.delete(url).call(),
            other => panic!("unsupported method {other}"),
        })
    }

    /// The execution record (waits until it exists).
    pub fn execution(&self, id: &str) -> Json {
        eventually(Duration::from_secs(10), "the execution record", || {
            let r = self.admin_get(&format!("/api/executions/{id}"));
            (r.status == 200).then(|| r.json())
        })
    }

    /// The version of workflow `id` the server lists now (`null` when none).
    pub fn workflow_version(&self, id: &str) -> Json {
        let listing = self.admin_get("/api/workflows").json();
        listing["workflows"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["id"] == id))
            .map(|w| w["version"].clone())
            .unwrap_or(Json::Null)
    }

    /// Waits until a run is finished and returns its record.
    pub fn finished(&self, id: &str, limit: Duration) -> Json {
        eventually(limit, &format!("execution {id} to finish"), || {
            let r = self.admin_get(&format!("/api/executions/{id}"));
            if r.status != 200 {
                return None;
            }
            let j = r.json();
            matches!(
                j["status"].as_str(),
                Some("resolved" | "failed" | "aborted")
            )
            .then_some(j)
        })
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill9();
    }
}
