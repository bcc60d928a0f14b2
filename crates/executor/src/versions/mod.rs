//! Workflow versions: the current ones, and older ones compiled again from
//! their stored text when a queued or resumed run needs them.

mod pending;

use crate::lock;
use hookflow_model::load::{load_source, LoadOptions, SecretPolicy};
use hookflow_model::runtime::Workflow;
use hookflow_store::Store;
use pending::{Pending, Text};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

/// Most old versions kept compiled at once.
const OLD_VERSIONS_KEPT: usize = 64;

pub struct Versions {
    store: Arc<dyn Store>,
    /// The registry's own map, shared (not copied).
    current: RwLock<Arc<HashMap<String, Arc<Workflow>>>>,
    old: Mutex<HashMap<String, Arc<Workflow>>>,
    /// Texts of loaded versions not stored yet: each is stored before the
    /// first record that names it ([`Versions::keep`]), or when it stops
    /// being current.
    pending: Mutex<Pending>,
}

impl Versions {
    /// Versions over `store`; texts waiting to be stored wait in a file in
    /// `wait_in` (the embedded store's folder), in memory without one.
    pub fn new(store: Arc<dyn Store>, wait_in: Option<PathBuf>) -> Versions {
        Versions {
            store,
            current: RwLock::default(),
            old: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending::new(wait_in)),
        }
    }

    pub fn publish(&self, workflows: Arc<HashMap<String, Arc<Workflow>>>) {
        let served: HashSet<&str> = workflows.values().map(|w| w.version.as_str()).collect();
        // A version no longer served is stored now: a run that took it
        // just before may still name it.
        let mut pending = lock(&self.pending);
        let gone: Vec<String> = pending
            .versions()
            .filter(|version| !served.contains(version))
            .map(str::to_string)
            .collect();
        for version in gone {
            // A lost text no longer served is let go, so that reloads do
            // not pile lost versions up; one the store refused stays, to be
            // tried again at the next load.
            if !self.store_waiting(&mut pending, &version) && pending.is_lost(&version) {
                pending.remove(&version);
            }
        }
        drop(pending);
        if let Ok(mut current) = self.current.write() {
            *current = workflows;
        }
    }

    /// The texts of versions about to be served: the embedded store gets
    /// each before the first record that names its version (a folder of
    /// 10,000 workflows is not written at every start); a shared store gets
    /// them all now, for the other instances. One batch; when it fails,
    /// each version is tried alone so that one cannot keep the others out.
    pub fn store_or_hold(&self, versions: &[(&Workflow, Arc<str>)]) {
        if !self.store.shared() {
            return self.hold(versions);
        }
        let batch: Vec<(&str, &str)> = versions
            .iter()
            .map(|(workflow, text)| (workflow.version.as_str(), &**text))
            .collect();
        let all_stored = self.store.put_versions(&batch).is_ok();
        for (workflow, text) in versions {
            if all_stored || self.put(&workflow.version, text) {
                workflow.version_kept.store(true, Ordering::Release);
            }
        }
    }

    /// Holds the texts of versions about to be served, to be stored when
    /// first needed ([`Versions::keep`]).
    fn hold(&self, versions: &[(&Workflow, Arc<str>)]) {
        let waiting: Vec<(&str, &Arc<str>)> = versions
            .iter()
            .filter(|(workflow, _)| !workflow.version_kept.load(Ordering::Acquire))
            .map(|(workflow, text)| (workflow.version.as_str(), text))
            .collect();
        lock(&self.pending).hold(&waiting);
    }

    /// Stores `workflow`'s text unless it is stored already; called before
    /// a record names its version. After the first call, one atomic load.
    pub fn keep(&self, workflow: &Workflow) {
        if workflow.version_kept.load(Ordering::Acquire) {
            return;
        }
        // Held while storing: a second first run waits for the text to be
        // in the store before it writes its record.
        let mut pending = lock(&self.pending);
        if pending.contains(&workflow.version)
            && !self.store_waiting(&mut pending, &workflow.version)
        {
            return;
        }
        workflow.version_kept.store(true, Ordering::Release);
    }

    /// Stores a waiting version's text and stops holding it; false (logged)
    /// when it could not be read back or the store refused.
    fn store_waiting(&self, pending: &mut Pending, version: &str) -> bool {
        let text = match pending.text(version) {
            None => return true,
            Some(Text::Waiting(text)) => text,
            // Said once; the version's runs go on, as when the store
            // refuses a text, and it is never taken as stored. A load that
            // brings the same version again holds its text again.
            Some(Text::Unreadable(error)) => {
                tracing::error!(message = "Could not read back a workflow version's text; it is not stored.", %version, %error);
                return false;
            }
            Some(Text::Lost) => return false,
        };
        if !self.put(version, &text) {
            return false;
        }
        pending.remove(version);
        true
    }

    /// Stores a version's text; false (logged) when the store refused.
    fn put(&self, version: &str, text: &str) -> bool {
        match self.store.put_version(version, text) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(message = "Could not store a workflow version.", %version, %error);
                false
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_store::MemoryStore;

    fn loaded(id: &str, title: &str) -> (Arc<Workflow>, Arc<str>) {
        let text = format!(
            "title: {title}\ntrigger: {{ type: webhook }}\nnodes:\n  - {{ key: a, type: calculation, expression: \"1\" }}\n"
        );
        let file = load_source(
            id,
            &PathBuf::from(format!("{id}.yaml")),
            &text,
            &LoadOptions::process_env(SecretPolicy::Warn),
        );
        let workflow = file
            .workflow
            .unwrap_or_else(|| panic!("{:?}", file.diagnostics));
        (workflow, file.source.expect("a served file keeps its text"))
    }

    fn stored(store: &dyn Store, workflow: &Workflow) -> Option<String> {
        store.version(&workflow.version).expect("readable")
    }

    /// A version's text reaches the store before the first record that
    /// names it, or when it stops being served (a run may have taken it just
    /// before), and not before: a folder of 10,000 workflows is not written
    /// at every start. The same whether texts wait in memory or on disk.
    #[test]
    fn a_version_is_stored_when_first_needed_or_when_it_goes() {
        let dir = tempfile::tempdir().expect("temp dir");
        for wait_in in [None, Some(dir.path().to_path_buf())] {
            stored_when_first_needed_or_when_it_goes(wait_in);
        }
    }

    fn stored_when_first_needed_or_when_it_goes(wait_in: Option<PathBuf>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let versions = Versions::new(store.clone(), wait_in);
        let (a, a_text) = loaded("a", "A");
        let (b, b_text) = loaded("b", "B");
        versions.hold(&[(&a, a_text.clone()), (&b, b_text.clone())]);
        let served = |a: &Arc<Workflow>, b: &Arc<Workflow>| {
            Arc::new(HashMap::from([
                ("a".to_string(), a.clone()),
                ("b".to_string(), b.clone()),
            ]))
        };
        versions.publish(served(&a, &b));
        assert_eq!(stored(&*store, &a), None, "held, not stored yet");
        versions.keep(&a);
        assert_eq!(stored(&*store, &a).as_deref(), Some(&*a_text));
        assert!(a.version_kept.load(Ordering::Acquire));
        versions.keep(&a);
        assert_eq!(stored(&*store, &b), None, "b never ran");
        // b is edited: its old version goes, stored as it goes.
        let (b2, b2_text) = loaded("b", "B2");
        versions.hold(&[(&b2, b2_text.clone())]);
        versions.publish(served(&a, &b2));
        assert_eq!(stored(&*store, &b).as_deref(), Some(&*b_text));
        assert_eq!(stored(&*store, &b2), None);
        // A run that took the old b just before still finds it stored.
        versions.keep(&b);
        assert_eq!(stored(&*store, &b).as_deref(), Some(&*b_text));
        versions.keep(&b2);
        assert_eq!(stored(&*store, &b2).as_deref(), Some(&*b2_text));
        assert!(
            lock(&versions.pending).is_empty(),
            "nothing held once stored"
        );
    }

    /// A text that does not read back from the file is never taken as
    /// stored: a run goes on (as when the store refuses it), the next run
    /// tries again and finds it lost, and a load that brings the version
    /// again stores it at its next run.
    #[test]
    fn a_text_that_does_not_read_back_is_never_taken_as_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let versions = Versions::new(store.clone(), Some(dir.path().to_path_buf()));
        let (a, a_text) = loaded("a", "A");
        versions.hold(&[(&a, a_text.clone())]);
        versions.publish(Arc::new(HashMap::from([("a".to_string(), a.clone())])));
        lock(&versions.pending).spoil(&a.version);
        for _ in 0..2 {
            versions.keep(&a);
            assert!(!a.version_kept.load(Ordering::Acquire));
            assert_eq!(stored(&*store, &a), None);
        }
        // The same file loaded again.
        let (a2, a2_text) = loaded("a", "A");
        assert_eq!(a2.version, a.version);
        versions.hold(&[(&a2, a2_text.clone())]);
        versions.publish(Arc::new(HashMap::from([("a".to_string(), a2.clone())])));
        versions.keep(&a2);
        assert!(a2.version_kept.load(Ordering::Acquire));
        assert_eq!(stored(&*store, &a2).as_deref(), Some(&*a2_text));
    }
}
