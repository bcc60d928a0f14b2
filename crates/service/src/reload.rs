//! Hot reload: polls the workflows folder and reinstalls it when a file changes.

use crate::Service;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What identifies the folder's state: workflow files with their mtime and size.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| hookflow_model::load::workflow_id_of(p).is_some())
                .map(|p| {
                    let meta = std::fs::metadata(&p).ok();
                    let modified = meta.as_ref().and_then(|m| m.modified().ok());
                    let len = meta.map(|m| m.len()).unwrap_or(0);
                    (p, modified, len)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Watches until the service starts shutting down.
pub async fn watch(service: Arc<Service>, every: Duration) {
    let dir = service.settings.workflows_dir.clone();
    let mut last = fingerprint(&dir);
    loop {
        tokio::time::sleep(every).await;
        if service.is_shutting_down() {
            return;
        }
        let now = fingerprint(&dir);
        if now == last {
            continue;
        }
        last = now;
        let catalog = service.load_catalog();
        match service.install(&catalog) {
            Ok(()) => tracing::info!(message = "Workflows reloaded.", files = catalog.files.len()),
            Err(error) => {
                tracing::error!(message = "Reload failed; still serving the previous workflows.", %error)
            }
        }
    }
}
