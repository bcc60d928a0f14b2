//! A real browser for the page tests: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) on a free loopback port, headless, with a
//! profile of its own; both are stopped when the [`Browser`] is dropped.
//! A missing browser fails the test with the command that installs it.

#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value as Json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs them (`apt-get install chromium chromium-driver`);
/// `HOOKFLOW_CHROMIUM` and `HOOKFLOW_CHROMEDRIVER` override.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any one wait for the page may take.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long Chromium may take to start (long: `cargo test` runs the other
/// end-to-end tests beside it on a small machine).
const START: Duration = Duration::from_secs(120);

/// A headless Chromium session; the driver is killed on drop.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    profile: tempfile::TempDir,
}

fn path_of(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of 1280×800.
    pub async fn start() -> Browser {
        let chromium = path_of("HOOKFLOW_CHROMIUM", CHROMIUM);
        let chromedriver = path_of("HOOKFLOW_CHROMEDRIVER", CHROMEDRIVER);
        for (path, package) in [(&chromium, "chromium"), (&chromedriver, "chromium-driver")] {
            assert!(
                path.exists(),
                "the page test needs a real browser: {} is missing. Install Debian's packages with\n    \
                 sudo apt-get install -y chromium chromium-driver\n(`.ci/run` does this on CI; \
                 HOOKFLOW_CHROMIUM / HOOKFLOW_CHROMEDRIVER point elsewhere). Missing package: {package}",
                path.display()
            );
        }
        let profile = tempfile::tempdir().expect("profile folder");
        let port = free_port();
        // A process group of its own: dropping the guard ends chromedriver
        // and every Chromium process it started, whatever state they are in.
        use std::os::unix::process::CommandExt;
        let driver = Command::new(&chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let mut browser_guard = DriverGuard(Some(driver));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let ready = Instant::now();
        loop {
            let status = agent.get(format!("{url}/status")).call();
            if status.is_ok() {
                break;
            }
            assert!(
                ready.elapsed() < START,
                "chromedriver did not answer on {url} within {START:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "--lang=en-US",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        });
        let Json::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            START,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&url),
        )
        .await
        .expect("the browser session started in time")
        .unwrap_or_else(|e| panic!("start a Chromium session: {e}"));
        // The page's viewport is 1280×800 (the window is that plus its frame).
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .expect("viewport size");
        let frame = |i: usize, want: u32| {
            let got = inner[i].as_u64().unwrap_or(u64::from(want));
            want + u32::try_from(u64::from(want).saturating_sub(got)).unwrap_or(0)
        };
        let (width, height) = (frame(0, 1280), frame(1, 800));
        client
            .set_window_size(width, height)
            .await
            .expect("window size");
        let driver = browser_guard.0.take().expect("driver");
        Browser {
            client,
            driver,
            profile,
        }
    }

    /// Waits for an element (bounded by [`WAIT`]).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page within {WAIT:?}: {e}"))
    }

    /// Waits until `check` returns `Some` (bounded by [`WAIT`]), polling the page.
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if start.elapsed() >= WAIT {
                let shot = self.failure_screenshot().await;
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\nat {url:?}\nscreenshot: {shot}\npage text:\n{}",
                    self.text("body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the page as `<target>/ui-artifacts/failure.png`; returns the path.
    pub async fn failure_screenshot(&self) -> String {
        let path = artifact("failure.png");
        match self.client.screenshot().await {
            Ok(png) if std::fs::write(&path, &png).is_ok() => path.display().to_string(),
            _ => "none".into(),
        }
    }

    /// Saves the page as `<target>/ui-artifacts/<name>` and prints the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = artifact(name);
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).expect("save the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// The text of the first element matching `css`, or "" when there is none.
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Ends the session (the driver is killed on drop either way).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

/// Where test artifacts go: `<target>/ui-artifacts/<name>`.
pub fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact folder");
    dir.join(name)
}

/// Kills chromedriver's process group (the driver and its browser).
fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: a signal to the process group of a child we started.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills chromedriver if starting the session fails half-way.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            kill_group(&mut child);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The profile folder is removed after the processes are gone.
        kill_group(&mut self.driver);
    }
}
