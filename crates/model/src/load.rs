//! Loading workflow files: one file, or a whole folder, with every diagnostic.

use crate::compile::{compile, Source};
use crate::diag::{Diagnostic, Severity};
use crate::recover::read_workflow;
use crate::runtime::Workflow;
use crate::template::Scope;
use crate::yaml::{Pos, Yaml};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

mod folder;
use folder::load_file;
pub use folder::{entry_stamp, load_dir};

/// What to do about a declared secret that is not set in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPolicy {
    /// Report a warning; the workflow still loads (`validate`).
    Warn,
    /// Report an error; the workflow is not served (`serve`, `validate --require-secrets`).
    Require,
}

/// How a folder is loaded.
pub struct LoadOptions<'a> {
    /// Unset secrets.
    pub secrets: SecretPolicy,
    /// Looks up an environment variable (the process environment in production).
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

impl LoadOptions<'_> {
    /// Options that read the process environment.
    pub fn process_env(secrets: SecretPolicy) -> LoadOptions<'static> {
        LoadOptions {
            secrets,
            env: &|name| std::env::var(name).ok(),
        }
    }
}

/// One workflow file after loading.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    /// The workflow id (file stem).
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// Title, when the file got far enough to have one.
    pub title: Option<String>,
    /// What the file declares of its trigger, when it got that far: what a
    /// listing shows of a file that does not load (its key, mode and
    /// whether it is enabled), as it would once it loads.
    pub declared: Option<Declared>,
    /// The compiled workflow; `None` when the file has errors.
    pub workflow: Option<Arc<Workflow>>,
    /// The file's text, with the compiled workflow: the catalog keeps it so
    /// that the store can keep the version (runs finish on the version they
    /// started with); the compiled workflow does not.
    pub source: Option<Arc<str>>,
    /// Every problem found.
    pub diagnostics: Vec<Diagnostic>,
    /// Declared secrets not set in the environment, in the order declared
    /// (each also has its diagnostic, [`unset_secret_message`]).
    pub unset_secrets: Vec<String>,
    /// The file's modification time and size as it was read: from the open
    /// file, or from the path when it could not be opened (`None` when
    /// loaded from a text, or when neither could be had).
    pub stamp: Option<FileStamp>,
}

/// What a workflow file declares of how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// `enabled`.
    pub enabled: bool,
    /// `trigger.mode`.
    pub mode: crate::def::Mode,
    /// `trigger.key`, when it is a valid key.
    pub pinned_key: Option<String>,
}

/// When a file was last changed, and its size: what tells a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Modification time, where the file system has one.
    pub modified: Option<SystemTime>,
    /// Size in bytes.
    pub len: u64,
}

impl FileStamp {
    /// The stamp `meta` gives.
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        }
    }
}

impl LoadedFile {
    /// True when the file has at least one error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// All workflow files of a folder, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Files by workflow id.
    pub files: BTreeMap<String, LoadedFile>,
    /// Problems that belong to no single workflow (unreadable folder, bad file names).
    pub other: Vec<Diagnostic>,
    /// The folder's other entries with a workflow file's name, as the load
    /// saw them: a file whose id another file took, a link to nothing, a
    /// folder or a pipe (so that the watcher's first look finds the folder
    /// as loaded).
    pub unheld: Vec<(PathBuf, Option<FileStamp>)>,
}

impl Catalog {
    /// Every diagnostic, file by file.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.other
            .iter()
            .chain(self.files.values().flat_map(|f| f.diagnostics.iter()))
    }
}

/// True when `id` matches `[a-z0-9][a-z0-9_-]*`.
pub fn valid_workflow_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The workflow id of a path, when it names a workflow file (`*.yaml`/`*.yml`, not `*.test.yaml`).
pub fn workflow_id_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') || name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
        return None;
    }
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    Some(stem.to_string())
}

fn diag(path: &Path, pos: Pos, severity: Severity, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: pos.line.max(1),
        column: pos.column.max(1),
        severity,
        message,
    }
}

/// Loads one workflow from its text.
///
/// Most files are read the quick way ([`Yaml::parse_quick`]); a file that
/// way cannot read, or that has any diagnostic at all, is read again in
/// full (serde-saphyr's positioned tree), so every message and position is
/// the full path's.
pub fn load_source(id: &str, path: &Path, text: &str, opts: &LoadOptions<'_>) -> LoadedFile {
    if let Some(tree) = Yaml::parse_quick(text) {
        let quick = load_tree(id, path, text, tree, Vec::new(), opts);
        if quick.diagnostics.is_empty() {
            return quick;
        }
    }
    load_full(id, path, text, opts)
}

/// Loads one workflow from serde-saphyr's positioned tree.
fn load_full(id: &str, path: &Path, text: &str, opts: &LoadOptions<'_>) -> LoadedFile {
    let (tree, duplicates) = match Yaml::parse_lenient(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let mut out = LoadedFile::empty(id, path);
            check_id(&mut out, id, path);
            out.diagnostics.push(diag(
                path,
                e.pos,
                Severity::Error,
                format!("YAML syntax error: {}", e.message),
            ));
            return out;
        }
    };
    load_tree(id, path, text, tree, duplicates, opts)
}

impl LoadedFile {
    fn empty(id: &str, path: &Path) -> LoadedFile {
        LoadedFile {
            id: id.to_string(),
            path: path.to_path_buf(),
            title: None,
            declared: None,
            workflow: None,
            source: None,
            diagnostics: Vec::new(),
            unset_secrets: Vec::new(),
            stamp: None,
        }
    }
}

fn check_id(out: &mut LoadedFile, id: &str, path: &Path) {
    if !valid_workflow_id(id) {
        out.diagnostics.push(diag(
            path,
            Pos::default(),
            Severity::Error,
            format!("workflow id `{id}` (the file name) must match [a-z0-9][a-z0-9_-]*"),
        ));
    }
}

/// Loads one workflow from its tree (and the duplicate keys found reading it).
fn load_tree(
    id: &str,
    path: &Path,
    text: &str,
    tree: Yaml,
    duplicates: Vec<crate::yaml::SyntaxError>,
    opts: &LoadOptions<'_>,
) -> LoadedFile {
    let mut out = LoadedFile::empty(id, path);
    check_id(&mut out, id, path);
    for d in duplicates {
        out.diagnostics
            .push(diag(path, d.pos, Severity::Error, d.message));
    }
    // The tree is repaired in place; positions stay those of the file.
    let read = read_workflow(tree);
    for (pos, message) in read.errors {
        out.diagnostics
            .push(diag(path, pos, Severity::Error, message));
    }
    let Some(def) = read.def else {
        sort(&mut out.diagnostics);
        return out;
    };
    out.title = Some(def.title.clone());
    out.declared = Some(Declared {
        enabled: def.enabled,
        mode: def.trigger.mode,
        pinned_key: def
            .trigger
            .key
            .clone()
            .filter(|k| crate::compile::valid_pinned_key(k)),
    });
    let (workflow, diagnostics) = compile(
        &def,
        &Source {
            id,
            path,
            text,
            tree: &read.tree,
            skipped: &read.skipped,
        },
    );
    out.diagnostics.extend(diagnostics);
    for (i, name) in def.secrets.iter().enumerate() {
        if (opts.env)(name).is_none() {
            let pos = read.tree.locate_value(&[
                crate::yaml::Seg::from("secrets"),
                crate::yaml::Seg::Index(i),
            ]);
            let severity = match opts.secrets {
                SecretPolicy::Warn => Severity::Warning,
                SecretPolicy::Require => Severity::Error,
            };
            out.diagnostics.push(diag(
                path,
                pos,
                severity,
                unset_secret_message(name, opts.secrets),
            ));
            out.unset_secrets.push(name.clone());
        }
    }
    if workflow
        .as_ref()
        .is_some_and(|w| has_empty_basic_password(w, opts))
    {
        let pos = read.tree.locate_value(&[
            crate::yaml::Seg::from("trigger"),
            crate::yaml::Seg::from("auth"),
            crate::yaml::Seg::from("basic"),
            crate::yaml::Seg::from("password"),
        ]);
        out.diagnostics.push(diag(
            path,
            pos,
            Severity::Error,
            "the Basic password is empty (as written or in its secret): \
             set a password, or remove `auth` to accept requests without one"
                .into(),
        ));
    }
    if !out.has_errors() {
        out.workflow = workflow.map(Arc::new);
        out.source = out.workflow.as_ref().map(|_| Arc::from(text));
    }
    sort(&mut out.diagnostics);
    out
}

/// The diagnostic's message for a declared secret that is not set.
pub fn unset_secret_message(name: &str, policy: SecretPolicy) -> String {
    let tail = match policy {
        SecretPolicy::Warn => "",
        SecretPolicy::Require => "; the workflow is not served until it is set",
    };
    format!("secret `{name}` is declared but not set in the environment{tail}")
}

/// Diagnostics in the order of the file (stable: one place keeps its order).
fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.line, d.column));
}

/// True when the workflow's Basic password renders to nothing, written so
/// or from a secret that is set but empty: such a workflow would let anyone
/// in (SPEC §6). A password that reads an unset secret is left to that
/// secret's own diagnostic.
fn has_empty_basic_password(workflow: &Workflow, opts: &LoadOptions<'_>) -> bool {
    let Some(auth) = &workflow.trigger.basic_auth else {
        return false;
    };
    let secrets = workflow
        .secrets
        .iter()
        .filter_map(|name| (opts.env)(name).map(|v| (name.clone(), Json::String(v))))
        .collect();
    let mut scope = Scope::new();
    scope.set_owned("secrets", Json::Object(secrets));
    matches!(workflow.templates.render(&auth.password, &scope), Ok(p) if p.is_empty())
}

/// Loads a workflows folder, or one workflow file (`*.yaml`/`*.yml`, not a
/// test file: see [`is_test_file`]).
pub fn load_path(path: &Path, opts: &LoadOptions<'_>) -> Catalog {
    if path.is_dir() {
        return load_dir(path, opts);
    }
    let mut catalog = Catalog::default();
    if !path.exists() {
        catalog.other.push(diag(
            path,
            Pos::default(),
            Severity::Error,
            "no such file or folder".into(),
        ));
        return catalog;
    }
    if !path.is_file() {
        // Opening a named pipe would wait for a writer for ever.
        catalog.other.push(diag(
            path,
            Pos::default(),
            Severity::Error,
            NOT_A_FILE.into(),
        ));
        return catalog;
    }
    match workflow_id_of(path) {
        Some(id) => {
            let file = load_file(&id, path, opts);
            catalog.files.insert(id, file);
        }
        None => catalog.other.push(diag(
            path,
            Pos::default(),
            Severity::Error,
            "not a workflow file: workflows are `.yaml` or `.yml` files \
             (`.test.yaml` files are checked by `hookflow test`)"
                .into(),
        )),
    }
    catalog
}

/// A file's bytes as text; when they are not UTF-8, where the first bad
/// byte is (line and column, counted in characters) and what to do.
pub fn utf8_text(bytes: Vec<u8>) -> Result<String, (Pos, String)> {
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let before = String::from_utf8_lossy(&bytes[..good]);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let bad = bytes.get(good).copied().unwrap_or_default();
        (
            Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            },
            format!(
                "the file is not UTF-8 text (byte 0x{bad:02X} here); save it as UTF-8 \
                 (a text editor's \"Save with encoding\")"
            ),
        )
    })
}

/// What is said of a path that is neither a file nor a folder.
pub const NOT_A_FILE: &str =
    "not a regular file (a named pipe, socket or device); give a file, or the folder it is in";

/// True for a workflow test file (`*.test.yaml`/`*.test.yml`).
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

/// Two workflows pinning the same key: neither is served.
pub fn check_pinned_keys(catalog: &mut Catalog) {
    // Sorted pairs rather than a map of lists: with 10,000 pinned keys the
    // map allocated a list for each.
    let mut pinned: Vec<(&str, &str)> = catalog
        .files
        .values()
        .filter_map(|f| {
            let key = f.workflow.as_ref()?.trigger.pinned_key.as_deref()?;
            Some((key, f.id.as_str()))
        })
        .collect();
    pinned.sort_unstable();
    let colliding: Vec<Vec<String>> = pinned
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|ids| ids.len() > 1)
        .map(|ids| ids.iter().map(|(_, id)| id.to_string()).collect())
        .collect();
    for ids in &colliding {
        for id in ids {
            let others: Vec<&str> = ids
                .iter()
                .filter(|o| *o != id)
                .map(String::as_str)
                .collect();
            if let Some(f) = catalog.files.get_mut(id) {
                let pos = f
                    .source
                    .as_ref()
                    .and_then(|text| Yaml::parse(text).ok())
                    .map(|t| {
                        t.locate_value(&[
                            crate::yaml::Seg::from("trigger"),
                            crate::yaml::Seg::from("key"),
                        ])
                    })
                    .unwrap_or_default();
                f.diagnostics.push(diag(
                    &f.path,
                    pos,
                    Severity::Error,
                    format!(
                        "pinned key collides with workflow {}; neither is served",
                        others.join(", ")
                    ),
                ));
                f.workflow = None;
                f.source = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example workflow, and files with problems, load the same
    /// (workflow, diagnostics, everything `Debug` shows) whichever way read.
    #[test]
    fn the_quick_way_loads_what_the_full_way_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let opts = LoadOptions {
            secrets: SecretPolicy::Warn,
            env: &|name| (name == "PAY_PASSWORD").then(|| "secret".to_string()),
        };
        let mut texts = Vec::new();
        for dir in ["workflows", "bench/workflows"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if let (Some(id), Ok(text)) =
                    (workflow_id_of(&path), std::fs::read_to_string(&path))
                {
                    texts.push((id, text));
                }
            }
        }
        assert!(texts.len() >= 5, "found {} example workflows", texts.len());
        let clean = "title: t\ntrigger: { type: webhook, mode: sync }\nnodes:\n  - type: response\n    status: 200\n";
        texts.push(("clean".into(), clean.into()));
        texts.push(("typo".into(), clean.replace("status:", "statuss:")));
        texts.push(("twice".into(), format!("{clean}title: again\n")));
        texts.push(("Bad Id".into(), clean.into()));
        let mut quick = 0;
        for (id, text) in &texts {
            let path = PathBuf::from(format!("{id}.yaml"));
            let full = format!("{:?}", load_full(id, &path, text, &opts));
            assert_eq!(
                format!("{:?}", load_source(id, &path, text, &opts)),
                full,
                "{id}"
            );
            quick += usize::from(Yaml::parse_quick(text).is_some());
        }
        assert!(quick >= 5, "only {quick} files were read the quick way");
    }
}
