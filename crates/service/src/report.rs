//! What loading the workflows folder says in the log, and when: a file's
//! problems are logged when the server starts and again only when that file
//! changes (or its problems do), not on every reload of the folder. A
//! workflow whose declared secrets are not set gets one warning line naming
//! them and how to set them; real errors are errors.

use crate::registry::Refused;
use hookflow_model::load::{unset_secret_message, FileStamp};
use hookflow_model::{Catalog, Diagnostic, LoadedFile, SecretPolicy};
use std::collections::{HashMap, HashSet};

/// A file as it was when its problems were last logged.
#[derive(Debug, PartialEq)]
struct Logged {
    /// Modification time and size of the file as it was read.
    stamp: Option<FileStamp>,
    /// Its diagnostics then.
    diagnostics: Vec<Diagnostic>,
}

/// What has been logged so far, per workflow id.
#[derive(Debug, Default)]
pub struct Reports {
    files: HashMap<String, Logged>,
    /// Problems of no single file (an unreadable folder, a duplicate id).
    other: Vec<Diagnostic>,
    /// Workflows that loaded but are not served, as logged.
    refused: HashSet<Refused>,
}

impl Reports {
    /// Logs what is new in `catalog` since the last call; returns how many
    /// files were reported (for tests).
    pub fn log(&mut self, catalog: &Catalog) -> usize {
        if self.other != catalog.other {
            for d in catalog.other.iter().filter(|d| !self.other.contains(d)) {
                log_diagnostic(d);
            }
            self.other = catalog.other.clone();
        }
        self.files.retain(|id, _| catalog.files.contains_key(id));
        let mut reported = 0;
        for (id, file) in &catalog.files {
            let now = Logged {
                stamp: file.stamp,
                diagnostics: file.diagnostics.clone(),
            };
            if self.files.get(id) == Some(&now) {
                continue;
            }
            // A changed file: why it is not served is said again too.
            self.refused.retain(|r| &r.workflow != id);
            if !now.diagnostics.is_empty() {
                log_file(id, file);
                reported += 1;
            }
            self.files.insert(id.clone(), now);
        }
        reported
    }
}

impl Reports {
    /// Logs the refusals not logged yet (since their file last changed);
    /// returns how many were logged.
    pub fn log_refused(&mut self, refused: &[Refused]) -> usize {
        self.refused.retain(|r| refused.contains(r));
        let mut logged = 0;
        for r in refused {
            if self.refused.insert(r.clone()) {
                match &r.error {
                    Some(error) => {
                        tracing::error!(message = r.reason, workflow = %r.workflow, %error)
                    }
                    None => tracing::error!(message = r.reason, workflow = %r.workflow),
                }
                logged += 1;
            }
        }
        logged
    }
}

fn log_diagnostic(d: &Diagnostic) {
    if d.is_error() {
        tracing::error!(message = "Workflow file problem.", diagnostic = %d);
    } else {
        tracing::warn!(message = "Workflow file problem.", diagnostic = %d);
    }
}

/// One warning line for the unset secrets (not one error per secret), then
/// every other problem of the file.
fn log_file(id: &str, file: &LoadedFile) {
    let secret_messages: Vec<String> = file
        .unset_secrets
        .iter()
        .map(|n| unset_secret_message(n, SecretPolicy::Require))
        .collect();
    let (secret_lines, others): (Vec<&Diagnostic>, Vec<&Diagnostic>) = file
        .diagnostics
        .iter()
        .partition(|d| secret_messages.contains(&d.message));
    if !file.unset_secrets.is_empty() {
        let example: Vec<String> = file
            .unset_secrets
            .iter()
            .map(|n| format!("{n}=..."))
            .collect();
        let at = secret_lines.first().map_or_else(
            || file.path.display().to_string(),
            |d| format!("{}:{}:{}", d.file.display(), d.line, d.column),
        );
        tracing::warn!(
            message = "Workflow not served until its secrets are set.",
            workflow = %id,
            unset = %file.unset_secrets.join(", "),
            declared = %at,
            fix = %format!(
                "start hookflow with them in its environment, e.g. `{} hookflow serve`",
                example.join(" ")
            ),
        );
    }
    for d in others {
        log_diagnostic(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_model::{load_dir, LoadOptions};
    use std::path::Path;

    fn catalog(dir: &Path) -> Catalog {
        load_dir(
            dir,
            &LoadOptions {
                secrets: SecretPolicy::Require,
                env: &|_| None,
            },
        )
    }

    #[test]
    fn a_file_is_reported_once_until_it_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "title: S\nsecrets: [A, B]\ntrigger: { type: webhook }\n";
        std::fs::write(dir.path().join("s.yaml"), secret).expect("write");
        std::fs::write(
            dir.path().join("fine.yaml"),
            "title: F\ntrigger: { type: webhook }\n",
        )
        .expect("write");
        let mut reports = Reports::default();
        assert_eq!(reports.log(&catalog(dir.path())), 1);
        // Another file changes: nothing new to say about `s`.
        std::fs::write(
            dir.path().join("fine.yaml"),
            "title: G\ntrigger: { type: webhook }\n",
        )
        .expect("write");
        assert_eq!(reports.log(&catalog(dir.path())), 0);
        // `s` changes: said again; a broken file is said once too.
        std::fs::write(
            dir.path().join("s.yaml"),
            format!("{secret}description: d\n"),
        )
        .expect("write");
        std::fs::write(dir.path().join("broken.yaml"), "title: [\n").expect("write");
        assert_eq!(reports.log(&catalog(dir.path())), 2);
        assert_eq!(reports.log(&catalog(dir.path())), 0);
        // Removed and brought back: said again.
        std::fs::remove_file(dir.path().join("broken.yaml")).expect("remove");
        assert_eq!(reports.log(&catalog(dir.path())), 0);
        std::fs::write(dir.path().join("broken.yaml"), "title: [\n").expect("write");
        assert_eq!(reports.log(&catalog(dir.path())), 1);
    }

    #[test]
    fn a_refusal_is_logged_once_until_its_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("w.yaml"),
            "title: W\ntrigger: { type: webhook }\n",
        )
        .expect("write");
        let refused = [Refused {
            workflow: "w".into(),
            reason: "Workflow not served: its key is already in use.",
            error: None,
        }];
        let mut reports = Reports::default();
        reports.log(&catalog(dir.path()));
        assert_eq!(reports.log_refused(&refused), 1);
        reports.log(&catalog(dir.path()));
        assert_eq!(reports.log_refused(&refused), 0);
        std::fs::write(
            dir.path().join("w.yaml"),
            "title: V\ntrigger: { type: webhook }\n",
        )
        .expect("write");
        reports.log(&catalog(dir.path()));
        assert_eq!(reports.log_refused(&refused), 1);
        // Gone, then back: logged again.
        assert_eq!(reports.log_refused(&[]), 0);
        assert_eq!(reports.log_refused(&refused), 1);
    }
}
