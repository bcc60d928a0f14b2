//! Workflow versions: the current ones, and older ones compiled again from
//! their stored text when a queued or resumed run needs them.

use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
use hookflow_model::runtime::Workflow;
use hookflow_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// Most old versions kept compiled at once.
const OLD_VERSIONS_KEPT: usize = 64;

pub struct Versions {
    store: Arc<dyn Store>,
    /// The registry's own map, shared (not copied).
    current: RwLock<Arc<HashMap<String, Arc<Workflow>>>>,
    old: Mutex<HashMap<String, Arc<Workflow>>>,
}

impl Versions {
    pub fn new(store: Arc<dyn Store>) -> Versions {
        Versions {
            store,
            current: RwLock::default(),
            old: Mutex::new(HashMap::new()),
        }
    }

    pub fn publish(&self, workflows: Arc<HashMap<String, Arc<Workflow>>>) {
        if let Ok(mut current) = self.current.write() {
            *current = workflows;
        }
    }

    /// The workflow `id` at `version`.
    pub fn resolve(&self, id: &str, version: &str) -> Result<Arc<Workflow>, String> {
        if let Some(w) = self.current.read().ok().and_then(|c| c.get(id).cloned()) {
            if w.version == version {
                return Ok(w);
            }
        }
        let key = format!("{id}@{version}");
        if let Some(w) = self.old.lock().ok().and_then(|o| o.get(&key).cloned()) {
            return Ok(w);
        }
        let text = self
            .store
            .version(version)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("workflow `{id}` version {version} is not stored"))?;
        let path = PathBuf::from(format!("{id}.yaml"));
        let loaded = load_source(
            id,
            &path,
            &text,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        let workflow = loaded.workflow.ok_or_else(|| {
            let first = loaded
                .diagnostics
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            format!("workflow `{id}` version {version} no longer compiles: {first}")
        })?;
        if let Ok(mut old) = self.old.lock() {
            if old.len() >= OLD_VERSIONS_KEPT {
                old.clear();
            }
            old.insert(key, workflow.clone());
        }
        Ok(workflow)
    }
}
