//! `hookflow serve`.

use super::{os_limits, LogFormat, PlaceArgs};
use anyhow::Context;
use hookflow_executor::policy::{HostRules, RequestProxy};
use hookflow_executor::{Executor, ExecutorConfig, QueueConfig};
use hookflow_model::load::unset_secret_message;
use hookflow_model::scrub::SecretSet;
use hookflow_model::units::{parse_duration, parse_size};
use hookflow_model::SecretPolicy;
use hookflow_service::registry::WorkflowInfo;
use hookflow_service::{Metrics, Service, Settings};
use hookflow_store::LocalAccess;
use hookflow_store::{SledStore, Store};
use hookflow_trigger::{AppState, HttpSettings};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    place: PlaceArgs,
    /// Bearer token of the admin API (the admin API answers 404 without one).
    #[arg(long, env = "HOOKFLOW_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Async runs executing at once (default: number of cores).
    #[arg(long, env = "HOOKFLOW_WORKERS")]
    workers: Option<usize>,
    /// Async runs waiting to start before requests get 503.
    #[arg(long, default_value_t = 10_000, env = "HOOKFLOW_QUEUE_CAPACITY")]
    queue_capacity: usize,
    /// Finished execution records are kept this long (counted from the finish).
    #[arg(long, default_value = "7d", value_parser = parse_duration, env = "HOOKFLOW_RETENTION")]
    retention: Duration,
    /// A job result kept in a record is cut down to this much JSON (the run
    /// itself uses the whole value).
    #[arg(long, default_value = "256KiB", value_parser = parse_size, env = "HOOKFLOW_MAX_RESULT")]
    max_result: u64,
    /// How long shutdown waits for in-flight requests and runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "HOOKFLOW_SHUTDOWN_GRACE")]
    shutdown_grace: Duration,
    /// A request's head and body must arrive within this; a slower sender
    /// gets 408 and its connection is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "HOOKFLOW_READ_TIMEOUT")]
    read_timeout: Duration,
    /// Idle kept-alive connections are closed after this (0s: no keep-alive).
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "HOOKFLOW_KEEP_ALIVE")]
    keep_alive: Duration,
    /// Open connections at most, in total; more wait in the listen backlog.
    #[arg(long, default_value_t = 10_000, env = "HOOKFLOW_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Hosts or networks request nodes may call (comma-separated; default: any).
    #[arg(long, env = "HOOKFLOW_REQUEST_ALLOW", value_delimiter = ',')]
    request_allow: Vec<String>,
    /// Hosts or networks request nodes may not call (comma-separated; wins over allow).
    #[arg(long, env = "HOOKFLOW_REQUEST_DENY", value_delimiter = ',')]
    request_deny: Vec<String>,
    /// Proxy for request nodes (http:// or https://, user info allowed). None
    /// by default; HTTP_PROXY and HTTPS_PROXY are never used.
    #[arg(long, env = "HOOKFLOW_REQUEST_PROXY", hide_env_values = true)]
    request_proxy: Option<String>,
    /// With a PostgreSQL store: how long a run stays this instance's without
    /// a renewal (renewed every third of it); a run of an instance that died
    /// is taken over once its lease ran out. At least 1s.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "HOOKFLOW_LEASE")]
    lease: Duration,
    /// With a PostgreSQL store: writes not yet committed past which new
    /// webhook requests are refused (503 `store_unavailable`, e.g. during a
    /// database outage); runs already admitted keep every write.
    #[arg(long, default_value_t = hookflow_store::postgres::MAX_BACKLOG, env = "HOOKFLOW_STORE_BACKLOG", hide = true)]
    store_backlog: u64,
    /// Also serve /metrics on this address, without the admin token (e.g.
    /// 127.0.0.1:9464 for a Prometheus on the same host).
    #[arg(long, env = "HOOKFLOW_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "HOOKFLOW_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log one line per webhook request (workflow, status, duration,
    /// execution id), written off the request path. By default the log has
    /// only what needs attention; counts are in /metrics.
    #[arg(long, env = "HOOKFLOW_ACCESS_LOG")]
    access_log: bool,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // A token set but empty is a mistake, not a wish for an open door.
    if args
        .admin_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        anyhow::bail!(
            "the admin token is set but empty (--admin-token or HOOKFLOW_ADMIN_TOKEN): \
             give it a value, or unset it to turn the admin API off"
        );
    }
    // Secret values scrubbed from logs, records and admin answers: the
    // admin token now, the workflows' secrets as they load.
    let secrets = SecretSet::default();
    secrets.add(args.admin_token.iter());
    // Held to the end: what the access log still buffers is written then.
    let _access_log = super::logs::init(args.log_format, secrets.clone(), args.access_log);
    if args.lease < Duration::from_secs(1) {
        anyhow::bail!("--lease must be at least 1s");
    }
    if args.read_timeout.is_zero() || args.max_connections == 0 {
        anyhow::bail!("--read-timeout and --max-connections must be more than 0");
    }
    let open_files = match os_limits::raise_open_files() {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(message = "Cannot raise the open-files limit.", %error);
            None
        }
    };
    // Everything the server creates (the data folder's files, present and
    // future: the store's snapshots) is private to its user.
    #[cfg(unix)]
    // SAFETY: sets the process's file mode mask; no memory is involved.
    unsafe {
        libc::umask(0o077);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    // Async runs get half the cores' threads: the HTTP workers (one a core)
    // take the requests, and a run mostly waits (its store, its upstreams).
    // On two cores, one thread instead of two measured 3–4 % more durable
    // acknowledgements a second (docs/decisions.md). Nothing that blocks
    // runs on these threads (retention and reload use the blocking pool).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.div_ceil(2))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, cores, secrets, open_files))
}

async fn serve(
    args: ServeArgs,
    cores: usize,
    secrets: SecretSet,
    open_files: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    let kind = super::store::kind(&args.place)?;
    // Texts of versions not stored yet wait in the embedded store's folder
    // (a shared store gets every version at load).
    let waiting_texts_dir =
        matches!(kind, super::store::Kind::Sled).then(|| args.place.data.clone());
    let store: Arc<dyn Store> = match kind {
        super::store::Kind::Sled => {
            let sled = SledStore::open(&args.place.data).with_context(|| {
                format!("cannot open the data folder {}", args.place.data.display())
            })?;
            let counted = metrics.clone();
            sled.on_commit(Box::new(move |took| counted.commit(took)));
            Arc::new(sled)
        }
        super::store::Kind::Postgres(url) => {
            let pg = super::store::open_postgres(url, args.lease, args.store_backlog)?;
            let counted = metrics.clone();
            pg.on_commit(Box::new(move |took| counted.commit(took)));
            Arc::new(pg)
        }
    };
    let request_policy = HostRules::parse(&args.request_allow, &args.request_deny)
        .map_err(|e| anyhow::anyhow!("request policy: {e}"))?;
    let request_proxy = match args.request_proxy.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => Some(RequestProxy::parse(url).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let executor = Executor::new(
        store,
        ExecutorConfig {
            queue: QueueConfig {
                workers: args.workers.unwrap_or(cores),
                capacity: args.queue_capacity,
            },
            request_policy,
            request_proxy,
            stubs: Default::default(),
            max_result: usize::try_from(args.max_result)
                .unwrap_or(usize::MAX)
                .max(1),
            secrets,
            metrics: Some(metrics),
            waiting_texts_dir,
        },
    )
    .map_err(anyhow::Error::msg)?;
    let listener = std::net::TcpListener::bind(&args.place.listen)
        .with_context(|| format!("cannot listen on {}", args.place.listen))?;
    let local = listener.local_addr().context("no local address")?;
    if let Err(error) = os_limits::set_backlog(&listener) {
        tracing::warn!(message = "Cannot set the listen backlog.", %error);
    }
    let metrics_listener = match args.metrics_listen.as_deref().map(str::trim) {
        Some(addr) if !addr.is_empty() => Some(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
        _ => None,
    };
    let max_connections = open_files.map_or(args.max_connections, |limit| {
        os_limits::connection_cap(args.max_connections, limit)
    });
    if max_connections < args.max_connections {
        tracing::warn!(
            message = "The open-files limit is below what --max-connections needs; fewer connections are served.",
            open_files,
            max_connections = args.max_connections,
            connections = max_connections,
        );
    }
    let settings = Settings {
        workflows_dir: args.place.workflows.clone(),
        data_dir: args.place.data.clone(),
        public_url: args
            .place
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}")),
        shutdown_grace: args.shutdown_grace,
        reload_every: Duration::from_secs(1),
        retention: args.retention,
    };
    let service = Service::load(settings, executor.clone()).map_err(anyhow::Error::msg)?;
    crate::release_freed_memory();
    let resumed = executor.start().map_err(anyhow::Error::msg)?;
    println!("hookflow listening on http://{local}");
    if let Some(l) = &metrics_listener {
        let addr = l.local_addr().context("no local address")?;
        println!("metrics on http://{addr}/metrics");
    }
    {
        let registry = service.registry();
        print_listing(&registry.listing, &registry.refused, &registry.other);
    }
    if resumed > 0 {
        println!("resumed {resumed} run(s) left on disk");
    }
    // Commands on this machine reach this server through its data folder
    // (`hookflow executions`, `sample --execution`), with or without an
    // admin token.
    let access = LocalAccess::new(format!("http://{}", loopback(local)));
    if let Err(error) = access.write(&args.place.data) {
        tracing::warn!(message = "Commands on this machine cannot find this server through its data folder.", %error);
    }
    let state = Arc::new(AppState {
        service,
        http: HttpSettings {
            admin_token: args.admin_token.clone(),
            local_token: Some(access.token.clone()),
            http_workers: cores,
            read_timeout: args.read_timeout,
            keep_alive: args.keep_alive,
            max_connections,
            access_log: args.access_log,
        },
        in_flight: Default::default(),
    });
    let served = hookflow_trigger::run(state, listener, metrics_listener, shutdown_signal()).await;
    access.remove(&args.place.data);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Where a command on this machine reaches a server listening on `addr`:
/// the loopback address of its family when it listens on all of them.
fn loopback(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Why a workflow is not served, in a few words: its first error, or the
/// secrets to set when they are all that is wrong.
fn why_not_served(w: &WorkflowInfo) -> String {
    let secret_messages: Vec<String> = w
        .unset_secrets
        .iter()
        .map(|n| unset_secret_message(n, SecretPolicy::Require))
        .collect();
    if let Some(error) = w
        .diagnostics
        .iter()
        .find(|d| d.is_error() && !secret_messages.contains(&d.message))
    {
        return format!("not served: {}", error.message);
    }
    match w.unset_secrets.as_slice() {
        [] => "not served: invalid".into(),
        [one] => format!("not served until {one} is set"),
        many => format!("not served until {} are set", many.join(", ")),
    }
}

fn mode_name(mode: hookflow_model::def::Mode) -> &'static str {
    match mode {
        hookflow_model::def::Mode::Sync => "sync",
        hookflow_model::def::Mode::Async => "async",
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Workflows served beyond this many are summed up in one line at start
/// (`hookflow urls` lists them all); files that are not served are always
/// listed.
const LISTED_AT_START: usize = 100;

/// One line per workflow on standard output, written in one go.
fn print_listing(
    listing: &[WorkflowInfo],
    refused: &[hookflow_service::registry::Refused],
    other: &[hookflow_model::Diagnostic],
) {
    use std::io::Write;
    let served = listing.iter().filter(|w| w.loaded && w.enabled).count();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for w in listing {
        // Loaded and enabled, yet not served (its check cannot be set up,
        // its key is taken): never listed with a URL that answers 404.
        if let Some(r) = refused.iter().find(|r| r.workflow == w.id) {
            let _ = writeln!(out, "  {:<28} {}", w.id, r.summary());
            continue;
        }
        let _ = match (w.loaded, w.enabled) {
            (true, true) if served > LISTED_AT_START => Ok(()),
            (true, true) => writeln!(out, "  {:<28} {:<5} {}", w.id, mode_name(w.mode), w.url),
            (true, false) => writeln!(out, "  {:<28} {:<5} (disabled)", w.id, mode_name(w.mode)),
            (false, _) => writeln!(out, "  {:<28} {}", w.id, why_not_served(w)),
        };
    }
    // Files that are no workflow of their own (a second file with an id
    // already used, a link to nothing): not served either, and said so.
    for d in other {
        let name = d.file.file_name().map_or_else(
            || d.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let _ = writeln!(out, "  {name:<28} not served: {}", d.message);
    }
    if served > LISTED_AT_START {
        let _ = writeln!(
            out,
            "  {served} workflows served; `hookflow urls` lists their URLs"
        );
    }
    let _ = out.flush();
}
