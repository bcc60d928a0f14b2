//! The webhook service without HTTP: what the server does between reading a
//! request and answering it, and around the runs.
//!
//! A [`Service`] holds the served workflows ([`registry`], reloaded from the
//! folder by `reload`), delivers a request to a run ([`delivery`]: the
//! signature check, intake, `idempotency`, the executor), re-runs finished
//! runs ([`retry`]), makes a run a test case ([`test_case`]), shows runs as
//! the admin API does ([`views`]) and removes old records (`retention`); `report` logs
//! each workflow file's problems once per change of the file; [`rejected`]
//! counts, logs and keeps refused requests. [`Refusal`] is
//! the one place where a refused request gets its status and JSON body. The
//! HTTP crate and the `hookflow` binary both use this crate; it knows no HTTP
//! server.

pub mod delivery;
mod idempotency;
mod intake;
pub mod overview;
pub mod parse_entries;
pub mod refusal;
pub mod registry;
pub mod rejected;
mod reload;
mod report;
mod retention;
pub mod retry;
pub mod test_case;
pub mod views;

pub use delivery::Delivery;
pub use hookflow_executor::{metrics, Metrics, WorkflowMetrics};
pub use hookflow_parser::Request;
pub use hookflow_verify::{secret_eq, SecretDigest};
pub use refusal::{Refusal, RETRY_AFTER_SECS};
pub use registry::{webhook_key, webhook_path, Registry, Served, WEBHOOK_PREFIX};
pub use rejected::RefusedParts;
pub use retry::{RetryError, RetryVersion};

use hookflow_executor::Executor;
use hookflow_model::published::Published;
use hookflow_model::{load_dir, Catalog, LoadOptions, SecretPolicy};
use hookflow_store::{KeyFile, KeyStore};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Service settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The workflows folder.
    pub workflows_dir: PathBuf,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The base of printed URLs.
    pub public_url: String,
    /// How long shutdown waits for in-flight requests and runs.
    pub shutdown_grace: Duration,
    /// How often the workflows folder is checked for changes.
    pub reload_every: Duration,
    /// Finished records older than this are removed.
    pub retention: Duration,
}

/// The webhook service: served workflows, the executor, idempotency claims.
pub struct Service {
    /// Runs workflows.
    pub executor: Executor,
    /// Paths, URLs and timings.
    pub settings: Settings,
    keys: Arc<dyn KeyStore>,
    registry: Published<Registry>,
    shutting_down: AtomicBool,
    /// Idempotency keys whose first request is still being handled.
    claims: idempotency::Claims,
    /// What loading has logged, so that a reload says only what is new.
    reports: Mutex<report::Reports>,
    /// Held by a retry from its checks until its runs are started (and
    /// linked to the runs they retry): two bulk retries at once do not both
    /// retry a run.
    retrying: tokio::sync::Mutex<()>,
    /// The idempotency keys of sync retries still running.
    retry_keys: retry::Retrying,
    /// Turns for taking in large bodies off the HTTP workers.
    large_bodies: intake::LargeBodies,
    /// The folder's fingerprint as the first load read it (`reload`).
    first_load: AtomicU64,
}

impl Service {
    /// Loads the workflows folder and builds the first registry.
    pub fn load(settings: Settings, executor: Executor) -> Result<Arc<Service>, String> {
        // A shared store keeps webhook keys for every instance; otherwise
        // they are in the data folder.
        let keys = executor
            .store()
            .keys()
            .unwrap_or_else(|| Arc::new(KeyFile::new(&settings.data_dir)));
        let service = Arc::new(Service {
            executor,
            keys,
            settings,
            registry: Published::default(),
            shutting_down: AtomicBool::new(false),
            claims: idempotency::Claims::default(),
            reports: Mutex::default(),
            retrying: tokio::sync::Mutex::new(()),
            retry_keys: retry::Retrying::default(),
            large_bodies: intake::LargeBodies::default(),
            first_load: AtomicU64::new(0),
        });
        let catalog = service.load_catalog();
        service
            .first_load
            .store(reload::loaded_fingerprint(&catalog), Ordering::Relaxed);
        service.install(&catalog)?;
        Ok(service)
    }

    fn load_catalog(&self) -> Catalog {
        let catalog = load_dir(
            &self.settings.workflows_dir,
            &LoadOptions::process_env(SecretPolicy::Require),
        );
        if let Ok(mut reports) = self.reports.lock() {
            reports.log(&catalog);
        }
        catalog
    }

    /// Builds a registry from `catalog` (keeping last good versions) and publishes it.
    fn install(&self, catalog: &Catalog) -> Result<(), String> {
        let previous = self.registry();
        // Every version served is in the store before it is current (the
        // last good version of a file that now has errors was stored when
        // it loaded).
        let versions: Vec<(&hookflow_model::runtime::Workflow, Arc<str>)> = catalog
            .files
            .values()
            .filter_map(|file| match (&file.workflow, &file.source) {
                (Some(workflow), Some(source)) => Some((workflow.as_ref(), source.clone())),
                _ => None,
            })
            .collect();
        // The texts go to the store (or wait in its folder) on a thread of
        // their own while this one builds the registry: neither needs the
        // other, and at start-up the loaders are done and a core is free
        // (10,000 workflows: ~10 ms of a first start's serial tail;
        // with PostgreSQL, its round trips). A registry that cannot be
        // built leaves the versions stored (or held) and nothing published;
        // the next publish stores what it does not serve and lets it go.
        let registry = std::thread::scope(|scope| {
            let stored = std::thread::Builder::new()
                .name("hookflow-versions".into())
                .spawn_scoped(scope, || self.executor.store_versions(&versions));
            let registry = Registry::build(
                catalog,
                Some(&previous),
                self.keys.as_ref(),
                &self.settings.public_url,
            );
            match stored {
                Ok(stored) => {
                    if let Err(panic) = stored.join() {
                        // A bug in storing; let it surface as one.
                        std::panic::resume_unwind(panic);
                    }
                }
                // No thread to be had: stored here.
                Err(_) => self.executor.store_versions(&versions),
            }
            registry
        })?;
        let (loaded, invalid, disabled) = registry.counts();
        self.executor
            .metrics()
            .set_workflows(loaded, invalid, disabled);
        // Logs, records and admin answers are scrubbed of every served
        // workflow's secrets from now on (and of earlier ones still: runs
        // of older versions may use them).
        self.executor.secrets().add(
            registry
                .workflows
                .values()
                .flat_map(|w| secret_strings(&w.secret_values())),
        );
        self.executor.publish(registry.workflows.clone());
        if let Ok(mut reports) = self.reports.lock() {
            reports.log_refused(&registry.refused);
        }
        self.registry.set(Arc::new(registry));
        Ok(())
    }

    /// The folder's fingerprint as the first load read it.
    fn first_load_fingerprint(&self) -> u64 {
        self.first_load.load(Ordering::Relaxed)
    }

    /// Where everything is counted (`/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.executor.metrics()
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.shared()
    }

    /// The current registry, as this thread last read it
    /// ([`Published::local`]): taken by every webhook request.
    pub fn local_registry(&self) -> Rc<Arc<Registry>> {
        self.registry.local()
    }

    /// True once shutdown began: webhook requests get 503.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts the background work: hot reload of the workflows folder and the
    /// retention of old records. It stops when the returned value is dropped.
    pub fn start_background(self: &Arc<Self>) -> Background {
        Background {
            tasks: vec![
                tokio::spawn(reload::watch(self.clone(), self.settings.reload_every)),
                tokio::spawn(retention::run(
                    self.executor.store().clone(),
                    self.settings.retention,
                )),
            ],
        }
    }

    /// Stops taking webhook requests (they get 503 from the moment this is
    /// called, before the returned future is polled) and queued runs; waits
    /// up to the grace period for running ones and returns how many were
    /// still running (they stay on disk and resume at the next start).
    pub fn shut_down(&self) -> impl std::future::Future<Output = usize> + '_ {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.executor.shutdown(self.settings.shutdown_grace)
    }
}

/// The string values of a `secrets` object.
fn secret_strings(values: &serde_json::Value) -> Vec<String> {
    values
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The service's background tasks; stopped on drop.
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
