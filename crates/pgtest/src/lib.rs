//! Tests only: a private PostgreSQL cluster, started once per test binary
//! from Debian's `postgresql` package (`initdb` as an unprivileged user
//! into a temporary folder, `pg_ctl` on a free port with a socket folder
//! of its own), one database per test, stopped when the test binary ends
//! (a watchdog process stops it and removes the folder should the binary
//! die without cleaning up). A real server, never a mock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// What to run to install PostgreSQL when it is missing.
pub const INSTALL_HINT: &str = "PostgreSQL is needed by these tests and was not found \
     (/usr/lib/postgresql/*/bin/initdb): install it with `apt-get install -y postgresql` \
     (Debian/Ubuntu), then run the tests again";

/// A running private cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run PostgreSQL's programs as this user (`runuser`), when root.
    user: Option<String>,
    /// The CA that signed the server's certificate (TLS is on when
    /// `openssl` was there to make one; for `localhost`).
    ca: Option<PathBuf>,
}

/// The cluster of this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("{e}")))
}

/// The folder of PostgreSQL's programs (the newest version installed).
fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("HOOKFLOW_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| INSTALL_HINT.to_string())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| INSTALL_HINT.to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, mut c: Command, what: &str) -> Result<String, String> {
        let out = c
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start() -> Result<Cluster, String> {
        let bin = find_bin()?;
        let user = is_root().then(|| "postgres".to_string());
        let dir = std::env::temp_dir().join(format!(
            "hookflow-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(dir.join("sock")).map_err(|e| e.to_string())?;
        if let Some(user) = &user {
            let chown = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err(format!("cannot give {} to {user}", dir.display()));
            }
        }
        let mut last = String::new();
        for _ in 0..5 {
            let mut cluster = Cluster {
                bin: bin.clone(),
                dir: dir.clone(),
                port: free_port()?,
                user: user.clone(),
                ca: None,
            };
            if !cluster.dir.join("data").exists() {
                let mut initdb = cluster.command("initdb");
                initdb.args(["-D"]).arg(cluster.dir.join("data")).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]);
                cluster.run(initdb, "initdb")?;
            }
            let mut options = format!(
                "-k {} -p {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
                 -c shared_buffers=32MB",
                cluster.dir.join("sock").display(),
                cluster.port
            );
            if cluster.make_certificates() {
                options.push_str(&format!(
                    " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                    cluster.dir.display()
                ));
                cluster.ca = Some(cluster.dir.join("ca.pem"));
            }
            let mut start = cluster.command("pg_ctl");
            start
                .args(["-w", "-t", "60", "-D"])
                .arg(cluster.dir.join("data"))
                .args(["-l"])
                .arg(cluster.dir.join("log"))
                .args(["-o", &options, "start"]);
            match cluster.run(start, "pg_ctl start") {
                Ok(_) => {
                    cluster.watchdog();
                    return Ok(cluster);
                }
                // Another process may have taken the port meanwhile.
                Err(e) => last = e,
            }
        }
        Err(format!(
            "{last}\n{}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        ))
    }

    /// A test CA and a server certificate for `localhost` signed by it,
    /// made with `openssl` (false when it is missing).
    fn make_certificates(&self) -> bool {
        if self.dir.join("server.crt").exists() {
            return true;
        }
        let script = "set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=hookflow-test-ca -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt \
  -days 2 -extfile ext.cnf
chmod 600 server.key";
        let made = Command::new("sh")
            .args(["-c", script])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if made {
            if let Some(user) = &self.user {
                let _ = Command::new("chown")
                    .args([&format!("{user}:")])
                    .arg(self.dir.join("server.key"))
                    .arg(self.dir.join("server.crt"))
                    .status();
            }
        }
        made
    }

    /// The CA file of the server's certificate (for `localhost`), when the
    /// cluster speaks TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// A process that stops the cluster and removes its folder once this
    /// test binary has ended, however it ended.
    fn watchdog(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = match &self.user {
            Some(u) => format!("runuser -u {u} -- "),
            None => String::new(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {as_user}{pg_ctl} -D {data} -m immediate -t 20 stop >/dev/null 2>&1; \
             rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of database `name` (made if missing).
    pub fn database(&self, name: &str) -> String {
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "a plain database name"
        );
        let exists = self
            .psql(&format!(
                "SELECT 1 FROM pg_database WHERE datname = '{name}'"
            ))
            .unwrap_or_else(|e| panic!("{e}"));
        if exists.trim() != "1" {
            if let Err(e) = self.psql(&format!("CREATE DATABASE {name}")) {
                // Made meanwhile by another test of the same name: fine.
                assert!(e.contains("already exists"), "{e}");
            }
        }
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Runs one SQL command as the superuser; its output (unaligned, no headers).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in("postgres", sql)
    }

    /// Runs one SQL command in database `db` as the superuser.
    pub fn psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", sql]);
        let mut out = self.run(c, "psql");
        if let Err(e) = &out {
            if e.contains("the database system is starting up") {
                std::thread::sleep(Duration::from_millis(200));
                let mut c = Command::new(self.bin.join("psql"));
                c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .args(["-U", "postgres", "-d", db, "-At", "-c", sql]);
                out = self.run(c, "psql");
            }
        }
        out
    }
}

/// A database name for a test folder (the same folder, the same database).
pub fn name_for(path: &Path) -> String {
    // FNV-1a: stable and plain.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("t_{h:016x}")
}
