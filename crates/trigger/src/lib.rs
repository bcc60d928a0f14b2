//! The HTTP side of hookflow (actix-web): webhook endpoints, the admin API,
//! health, hot reload and graceful shutdown.
//!
//! Only this crate knows HTTP. Handlers authenticate, read the capped body,
//! decode it with the parser crate and hand the run to the executor.

pub mod admin;
pub mod error;
pub mod idempotency;
pub mod registry;
mod reload;
pub mod server;
pub mod verify;
pub mod webhook;

pub use registry::{Registry, WorkflowInfo};
pub use server::{run, Settings};

use hookflow_executor::Executor;
use hookflow_model::{load_dir, Catalog, LoadOptions, SecretPolicy};
use hookflow_store::KeyFile;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Shared state of the server.
pub struct AppState {
    /// Runs workflows.
    pub executor: Executor,
    /// Paths, URLs and tokens.
    pub settings: Settings,
    keys: KeyFile,
    registry: RwLock<Arc<Registry>>,
    shutting_down: AtomicBool,
    /// Idempotency keys whose first request is still being handled.
    pub inflight: idempotency::InFlight,
}

impl AppState {
    /// Loads the workflows folder and builds the first registry.
    pub fn load(settings: Settings, executor: Executor) -> Result<Arc<AppState>, String> {
        let keys = KeyFile::new(&settings.data_dir);
        let state = Arc::new(AppState {
            executor,
            keys,
            settings,
            registry: RwLock::new(Arc::new(Registry::default())),
            shutting_down: AtomicBool::new(false),
            inflight: idempotency::InFlight::default(),
        });
        let catalog = state.load_catalog();
        state.install(&catalog)?;
        Ok(state)
    }

    fn load_catalog(&self) -> Catalog {
        let catalog = load_dir(
            &self.settings.workflows_dir,
            &LoadOptions::process_env(SecretPolicy::Require),
        );
        for d in catalog.diagnostics() {
            if d.is_error() {
                tracing::error!(message = "Workflow file problem.", diagnostic = %d);
            } else {
                tracing::warn!(message = "Workflow file problem.", diagnostic = %d);
            }
        }
        catalog
    }

    /// Builds a registry from `catalog` (keeping last good versions) and publishes it.
    fn install(&self, catalog: &Catalog) -> Result<(), String> {
        let previous = self.registry();
        let registry = Registry::build(
            catalog,
            Some(&previous),
            &self.keys,
            &self.settings.public_url,
        )?;
        self.executor.publish(registry.workflows.clone());
        if let Ok(mut r) = self.registry.write() {
            *r = Arc::new(registry);
        }
        Ok(())
    }

    /// The current registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// True once shutdown began: webhook requests get 503.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
