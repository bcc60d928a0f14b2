//! The workflows being served: by URL key for the webhook route, and as a
//! listing (with diagnostics) for the admin API and the CLI.

use hookflow_executor::{Metrics, WorkflowMetrics};
use hookflow_model::def::Mode;
use hookflow_model::runtime::Workflow;
use hookflow_model::template::Scope;
use hookflow_model::{Catalog, Diagnostic, Severity};
use hookflow_store::KeyStore;
use hookflow_verify::{SecretDigest, Verifier};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Basic credentials: the digest of the user name and password, computed
/// once; a request's pair is hashed the same way and compared in constant time.
pub type Credentials = SecretDigest;

/// A workflow reachable at a URL.
pub struct Served {
    /// The compiled workflow.
    pub workflow: Arc<Workflow>,
    /// Its URL key.
    pub key: String,
    /// Basic credentials, rendered once from the secrets.
    pub basic: Option<Credentials>,
    /// Signature verification, ready for requests (boxed: most workflows
    /// have none, and it is 128 bytes).
    pub verifier: Option<Box<Verifier>>,
    /// Its counters (`/metrics`), made on its first request (see
    /// [`Served::metrics`]).
    metrics: OnceLock<Arc<WorkflowMetrics>>,
}

impl Served {
    /// Its counters (`/metrics`), made on the first request and kept, so that
    /// a request counts without looking anything up and ten thousand idle
    /// workflows hold no handles.
    pub fn metrics(&self, all: &Metrics) -> &Arc<WorkflowMetrics> {
        self.metrics.get_or_init(|| all.workflow(&self.workflow))
    }
}

/// One row of `GET /api/workflows` and `hookflow urls`.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowInfo {
    /// Workflow id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Enabled in the file.
    pub enabled: bool,
    /// sync or async.
    pub mode: Mode,
    /// The webhook URL.
    pub url: String,
    /// Content hash of the version served.
    pub version: Option<String>,
    /// Whether a version is being served.
    pub loaded: bool,
    /// Problems of the file as it is now.
    pub diagnostics: Vec<Diagnostic>,
    /// Declared secrets not set in the environment (not in the admin API:
    /// its diagnostics say the same).
    #[serde(skip)]
    pub unset_secrets: Vec<String>,
}

/// An enabled workflow that loaded but is not served, and why (the service
/// logs it once, not on every reload).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Refused {
    /// Workflow id.
    pub workflow: String,
    /// Why, for the log.
    pub reason: &'static str,
    /// The underlying error, if any.
    pub error: Option<String>,
}

impl Refused {
    /// Why, in one line: the reason and the underlying error.
    pub fn summary(&self) -> String {
        match &self.error {
            Some(e) => format!("{} {e}", self.reason),
            None => self.reason.to_string(),
        }
    }
}

/// Everything the server serves.
#[derive(Default)]
pub struct Registry {
    by_key: HashMap<String, Arc<Served>>,
    /// Current versions by workflow id (what the executor runs: shared
    /// with it, not copied).
    pub workflows: Arc<HashMap<String, Arc<Workflow>>>,
    /// The listing.
    pub listing: Vec<WorkflowInfo>,
    /// Loaded, enabled workflows that are not served.
    pub refused: Vec<Refused>,
    /// Problems of the folder that belong to no single workflow.
    pub other: Vec<Diagnostic>,
}

/// The path prefix of webhook URLs (NocoBase's); the key is the one segment after it.
pub const WEBHOOK_PREFIX: &str = "/api/webhook:trigger";

/// The webhook path of a key.
pub fn webhook_path(key: &str) -> String {
    format!("{WEBHOOK_PREFIX}/{key}")
}

/// The key of a webhook path, if the path is one.
pub fn webhook_key(path: &str) -> Option<&str> {
    path.strip_prefix(WEBHOOK_PREFIX)?.strip_prefix('/')
}

/// The webhook URL of a key.
pub fn webhook_url(public_url: &str, key: &str) -> String {
    // Written into one string: a registry makes one for every workflow.
    let base = public_url.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + WEBHOOK_PREFIX.len() + 1 + key.len());
    url.push_str(base);
    url.push_str(WEBHOOK_PREFIX);
    url.push('/');
    url.push_str(key);
    url
}

impl Registry {
    /// The served workflow behind a key (enabled ones only).
    pub fn get(&self, key: &str) -> Option<&Arc<Served>> {
        self.by_key.get(key)
    }

    /// Builds the registry from a freshly loaded catalog. A file that now has
    /// errors keeps the version in `previous` (the last good one).
    pub fn build(
        catalog: &Catalog,
        previous: Option<&Registry>,
        keys: &dyn KeyStore,
        public_url: &str,
    ) -> Result<Registry, String> {
        let ids: Vec<&str> = catalog
            .files
            .keys()
            .map(String::as_str)
            .filter(|id| hookflow_model::load::valid_workflow_id(id))
            .collect();
        let generated = keys.ensure(&ids).map_err(|e| e.to_string())?;
        let mut registry = Registry {
            other: catalog.other.clone(),
            listing: Vec::with_capacity(catalog.files.len()),
            by_key: HashMap::with_capacity(catalog.files.len()),
            ..Registry::default()
        };
        let mut workflows = HashMap::with_capacity(catalog.files.len());
        for (id, file) in &catalog.files {
            let Some(generated_key) = generated.get(id) else {
                // No key for it (its id is not one): not served, and its
                // problems say why, with the folder's own.
                registry.other.extend(
                    file.diagnostics
                        .iter()
                        .filter(|d| d.severity == Severity::Error)
                        .cloned(),
                );
                continue;
            };
            let current = file
                .workflow
                .clone()
                .or_else(|| previous.and_then(|p| p.workflows.get(id).cloned()));
            // A file that does not load is listed as it declares itself.
            let declared = file.declared.as_ref();
            let key = match &current {
                Some(w) => w.trigger.pinned_key.clone(),
                None => declared.and_then(|d| d.pinned_key.clone()),
            }
            .unwrap_or_else(|| generated_key.clone());
            registry.listing.push(WorkflowInfo {
                id: id.clone(),
                title: current
                    .as_ref()
                    .map(|w| w.title.clone())
                    .or_else(|| file.title.clone())
                    .unwrap_or_default(),
                enabled: match &current {
                    Some(w) => w.enabled,
                    None => declared.is_some_and(|d| d.enabled),
                },
                mode: match &current {
                    Some(w) => w.mode,
                    None => declared.map(|d| d.mode).unwrap_or_default(),
                },
                url: webhook_url(public_url, &key),
                version: current.as_ref().map(|w| w.version.clone()),
                loaded: current.is_some(),
                diagnostics: file.diagnostics.clone(),
                unset_secrets: file.unset_secrets.clone(),
            });
            let Some(workflow) = current else { continue };
            workflows.insert(id.clone(), workflow.clone());
            if !workflow.enabled {
                continue;
            }
            let basic = match credentials(&workflow) {
                Ok(b) => b,
                Err(e) => {
                    registry.refused.push(Refused {
                        workflow: id.clone(),
                        reason: "Workflow not served: its Basic credentials do not render.",
                        error: Some(e),
                    });
                    continue;
                }
            };
            let verifier = match workflow
                .trigger
                .verify
                .as_ref()
                .map(|v| Verifier::build(&workflow, v))
            {
                None => None,
                Some(Ok(v)) => Some(Box::new(v)),
                Some(Err(e)) => {
                    registry.refused.push(Refused {
                        workflow: id.clone(),
                        reason: "Workflow not served: its signature check cannot be set up.",
                        error: Some(e.to_string()),
                    });
                    continue;
                }
            };
            if registry.by_key.contains_key(&key) {
                registry.refused.push(Refused {
                    workflow: id.clone(),
                    reason: "Workflow not served: its key is already in use.",
                    error: None,
                });
                continue;
            }
            registry.by_key.insert(
                key.clone(),
                Arc::new(Served {
                    metrics: OnceLock::new(),
                    workflow,
                    key,
                    basic,
                    verifier,
                }),
            );
        }
        registry.workflows = Arc::new(workflows);
        Ok(registry)
    }

    /// Workflow files by state: served, invalid (not loaded, or loaded but
    /// not served), disabled.
    pub fn counts(&self) -> (usize, usize, usize) {
        let loaded = self.by_key.len();
        let disabled = self
            .listing
            .iter()
            .filter(|w| w.loaded && !w.enabled)
            .count();
        let invalid = self.listing.len().saturating_sub(loaded + disabled);
        (loaded, invalid, disabled)
    }
}

/// Renders Basic credentials with only `secrets` in scope.
fn credentials(workflow: &Workflow) -> Result<Option<Credentials>, String> {
    let Some(auth) = &workflow.trigger.basic_auth else {
        return Ok(None);
    };
    let mut scope = Scope::new();
    scope.set("secrets", &workflow.secret_values());
    let user = workflow
        .templates
        .render(&auth.username, &scope)
        .map_err(|e| e.message)?;
    let pass = workflow
        .templates
        .render(&auth.password, &scope)
        .map_err(|e| e.message)?;
    // Loading refuses this already; a workflow that would let anyone in is
    // never served, whatever the environment became since.
    if pass.is_empty() {
        return Err("the Basic password is empty".into());
    }
    Ok(Some(SecretDigest::of(&[user.as_bytes(), pass.as_bytes()])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL is the public base (a trailing slash or not) and the route.
    #[test]
    fn a_webhook_url_is_the_base_and_the_route() {
        let want = "https://hooks.example.com/api/webhook:trigger/k1";
        assert_eq!(webhook_url("https://hooks.example.com", "k1"), want);
        assert_eq!(webhook_url("https://hooks.example.com/", "k1"), want);
        assert_eq!(webhook_key(&webhook_path("k1")), Some("k1"));
    }
}
