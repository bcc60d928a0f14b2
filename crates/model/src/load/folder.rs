//! Loading a folder of workflow files: listed once, then read, parsed and
//! compiled on every core.

use super::{check_pinned_keys, diag, load_source, workflow_id_of, Catalog, LoadOptions};
use super::{FileStamp, LoadedFile};
use crate::diag::Severity;
use crate::yaml::Pos;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Loads every workflow file of a folder (not recursive).
pub fn load_dir(dir: &Path, opts: &LoadOptions<'_>) -> Catalog {
    let mut catalog = Catalog::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            catalog.other.push(diag(
                dir,
                Pos::default(),
                Severity::Error,
                format!("cannot read the workflows folder: {e}"),
            ));
            return catalog;
        }
    };
    // The entry's type comes with the listing on most file systems: only
    // a link (or an unknown type) costs a `stat` to know whether it leads
    // to a file.
    let mut skipped: Vec<PathBuf> = Vec::new();
    let mut paths: Vec<(std::ffi::OsString, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let file = match e.file_type() {
                Ok(t) if t.is_file() => return true,
                Ok(t) if t.is_dir() => false,
                _ => {
                    let path = e.path();
                    let file = path.is_file();
                    // A workflow's name on a link to nothing, a pipe or a
                    // socket is said, not skipped in silence.
                    if !file && !path.is_dir() && workflow_id_of(&path).is_some() {
                        skipped.push(path);
                    }
                    file
                }
            };
            if !file && workflow_id_of(Path::new(&e.file_name())).is_some() {
                catalog.unheld.push((e.path(), entry_stamp(e)));
            }
            file
        })
        .map(|e| (e.file_name(), e.path()))
        .collect();
    skipped.sort();
    for path in skipped {
        let message = match std::fs::read_link(&path) {
            Ok(target) if !path.exists() => format!(
                "a link to {}, which does not exist: fix the link or remove it",
                target.display()
            ),
            _ => super::NOT_A_FILE.to_string(),
        };
        catalog
            .other
            .push(diag(&path, Pos::default(), Severity::Error, message));
    }
    // One folder: the names decide the order, taken once from the listing
    // (a path's `file_name()` parses its components at every comparison).
    paths.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let named: Vec<(String, PathBuf)> = paths
        .into_iter()
        .filter_map(|(_, path)| workflow_id_of(&path).map(|id| (id, path)))
        .collect();
    for (id, path, file) in load_all(named, opts) {
        if let Some(first) = catalog.files.get(&id) {
            catalog.unheld.push((path.clone(), file.stamp));
            catalog.other.push(diag(
                &path,
                Pos::default(),
                Severity::Error,
                format!(
                    "workflow id `{id}` is already used by {}; ids must be unique",
                    first.path.display()
                ),
            ));
            continue;
        }
        catalog.files.insert(id, file);
    }
    check_pinned_keys(&mut catalog);
    catalog
}

/// A listed entry's modification time and size (through a link, of what
/// it leads to); none when they cannot be had. The load stamps the entries
/// it serves nothing for with it, and the watcher's look every entry: the
/// two must agree for the first look to find the folder as loaded.
pub fn entry_stamp(entry: &std::fs::DirEntry) -> Option<FileStamp> {
    let meta = match entry.file_type() {
        Ok(t) if !t.is_symlink() => entry.metadata().ok(),
        _ => std::fs::metadata(entry.path()).ok(),
    }?;
    Some(FileStamp::of(&meta))
}

/// Files a thread loads at least: below this, one thread does it all.
const FILES_PER_THREAD: usize = 64;

/// Files a thread takes at a time: small enough that the threads finish
/// together (files differ in size, cores in speed), large enough that
/// taking them costs nothing.
const FILES_PER_TAKE: usize = 16;
/// The stack of a loader thread: a main thread's usual 8 MiB (see `load_all`).
const LOADER_STACK: usize = 8 * 1024 * 1024;

/// Loads the files on as many threads as there are cores (parsing and
/// compiling are CPU work; with thousands of workflows this is most of the
/// start-up), keeping their order. Each thread takes the next few files when
/// it is done with its last ones, so none is left with the slow half. A file
/// whose id repeats another's is loaded anyway and refused by the caller
/// (ids differ only by extension).
fn load_all(
    named: Vec<(String, PathBuf)>,
    opts: &LoadOptions<'_>,
) -> Vec<(String, PathBuf, LoadedFile)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(named.len() / FILES_PER_THREAD)
        .max(1);
    if threads == 1 {
        return named
            .into_iter()
            .map(|(id, path)| {
                let file = load_file(&id, &path, opts);
                (id, path, file)
            })
            .collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut loaded = Vec::new();
        loop {
            let from = next.fetch_add(FILES_PER_TAKE, Ordering::Relaxed);
            if from >= named.len() {
                break;
            }
            let take = &named[from..(from + FILES_PER_TAKE).min(named.len())];
            for (at, (id, path)) in (from..).zip(take) {
                loaded.push((at, load_file(id, path, opts)));
            }
        }
        loaded
    };
    let mut files: Vec<Option<LoadedFile>> = std::thread::scope(|scope| {
        // A file may nest as deep as the parser's budget allows; its
        // compilation recurses, so loader threads get the main thread's
        // usual stack rather than a spawned thread's 2 MiB. A thread that
        // cannot start leaves its share to the others (they take files
        // until none is left).
        let handles: Vec<_> = (1..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .stack_size(LOADER_STACK)
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut files: Vec<Option<LoadedFile>> = Vec::new();
        files.resize_with(named.len(), || None);
        let mut place = |loaded: Vec<(usize, LoadedFile)>| {
            for (at, file) in loaded {
                files[at] = Some(file);
            }
        };
        // This thread loads too.
        place(work());
        for handle in handles {
            match handle.join() {
                Ok(loaded) => place(loaded),
                // A panic in a loader thread is a bug; let it surface as one.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        files
    });
    // Sized once: grown by doubling, it moved the loaded files (~300 bytes
    // each) once more in all, and held up to twice their room meanwhile.
    let mut loaded = Vec::with_capacity(named.len());
    loaded.extend(
        named
            .into_iter()
            .zip(files.iter_mut())
            .filter_map(|((id, path), file)| file.take().map(|file| (id, path, file))),
    );
    loaded
}

/// The largest workflow file read: one dropped into the watched folder by
/// mistake (a log, a dump) must not take the server's memory at reload.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads, parses and compiles one file; its modification time and size are
/// taken from the file as it was opened (what [`LoadedFile::stamp`] says).
pub(super) fn load_file(id: &str, path: &Path, opts: &LoadOptions<'_>) -> LoadedFile {
    let mut stamp = None;
    let read = std::fs::File::open(path).and_then(|file| {
        let meta = file.metadata()?;
        stamp = Some(FileStamp::of(&meta));
        if meta.len() > MAX_FILE_BYTES {
            return Err(std::io::Error::other(format!(
                "the file is {} KiB, and a workflow file is at most {} KiB (a workflow \
                 is a few KB: is this the right file?)",
                meta.len() / 1024,
                MAX_FILE_BYTES / 1024
            )));
        }
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(usize::try_from(meta.len()).unwrap_or(0))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        // At most the length just taken from the open file: a `File`'s own
        // `read_to_end` asks the size and position again and reads once
        // more to find the end (seven system calls a file where four do);
        // once `len` bytes are in, `Take` answers the end itself. A file
        // written meanwhile changes its stamp: the watcher loads it again.
        (&file).take(meta.len()).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    let mut file = match read {
        Ok(bytes) => match super::utf8_text(bytes) {
            Ok(text) => load_source(id, path, &text, opts),
            Err((pos, message)) => {
                let mut file = LoadedFile::empty(id, path);
                file.diagnostics
                    .push(diag(path, pos, Severity::Error, message));
                file
            }
        },
        Err(e) => {
            let mut file = LoadedFile::empty(id, path);
            file.diagnostics.push(diag(
                path,
                Pos::default(),
                Severity::Error,
                format!("cannot read the file: {e}"),
            ));
            // A file that could not be opened is stamped as the folder's
            // look finds it, so that the watcher does not load the folder
            // again for a file that stayed as it was.
            if stamp.is_none() {
                stamp = std::fs::metadata(path)
                    .ok()
                    .map(|meta| FileStamp::of(&meta));
            }
            file
        }
    };
    file.stamp = stamp;
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretPolicy;

    /// A file far larger than any workflow (a log dropped in the folder)
    /// is not read: an error, before its memory is taken.
    #[test]
    fn a_file_larger_than_any_workflow_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        let mut text = String::from("title: T\ntrigger: { type: webhook }\nnodes: []\n");
        text.push_str(&"# padding\n".repeat(500_000));
        std::fs::write(&path, text).expect("write");
        let file = load_file("big", &path, &LoadOptions::process_env(SecretPolicy::Warn));
        let shown: Vec<String> = file.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].contains("and a workflow file is at most 4096 KiB"),
            "{shown:?}"
        );
    }

    /// A file that is not UTF-8 (Latin-1 from an old editor) is an error at
    /// its first bad byte, in hookflow's words. Before: "stream did not
    /// contain valid UTF-8" at 1:1.
    #[test]
    fn a_file_that_is_not_utf8_is_an_error_at_its_first_bad_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.yaml");
        std::fs::write(
            &path,
            b"title: T\ntrigger:\n  type: webhook\nnodes:\n  - type: log\n    message: \"caf\xe9\"\n",
        )
        .expect("write");
        let file = load_file("n", &path, &LoadOptions::process_env(SecretPolicy::Warn));
        let shown: Vec<String> = file.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].ends_with(
                "n.yaml:6:18: the file is not UTF-8 text (byte 0xE9 here); save it as UTF-8 (a text editor's \"Save with encoding\")"
            ),
            "{shown:?}"
        );
    }

    /// A folder large enough to load on every core gives each file its own
    /// result (the one loading it alone gives), with its stamp, in order.
    #[test]
    fn every_file_of_a_large_folder_gets_its_own_result() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = FILES_PER_THREAD * 4 + 7;
        for i in 0..count {
            // Files of different sizes and outcomes: some fine, some with an
            // error on a line that depends on the file, some too long to be
            // quick.
            let text = match i % 3 {
                0 => format!("title: w{i}\ntrigger: {{ type: webhook, key: key-{i:04} }}\n"),
                1 => format!(
                    "title: w{i}\n{}trigger: {{ type: webhook }}\nbogus{i}: 1\n",
                    "# c\n".repeat(i % 17)
                ),
                _ => format!(
                    "title: w{i}\ndescription: \"{}\"\ntrigger: {{ type: webhook }}\n",
                    "x".repeat(i * 40)
                ),
            };
            std::fs::write(dir.path().join(format!("w{i:04}.yaml")), text).expect("write");
        }
        let opts = LoadOptions {
            secrets: SecretPolicy::Warn,
            env: &|_| None,
        };
        let catalog = load_dir(dir.path(), &opts);
        assert_eq!(catalog.files.len(), count);
        for (i, (id, file)) in catalog.files.iter().enumerate() {
            assert_eq!(id, &format!("w{i:04}"));
            let path = dir.path().join(format!("{id}.yaml"));
            assert_eq!(file.path, path);
            let alone = load_file(id, &path, &opts);
            assert_eq!(format!("{file:?}"), format!("{alone:?}"), "{id}");
            assert_eq!(file.title.as_deref(), Some(format!("w{i}").as_str()));
            assert_eq!(file.workflow.is_some(), i % 3 != 1, "{id}");
            let meta = std::fs::metadata(&path).expect("metadata");
            let stamp = file.stamp.expect("a stamp");
            assert_eq!(stamp.len, meta.len());
            assert_eq!(stamp.modified, meta.modified().ok());
        }
    }
}
