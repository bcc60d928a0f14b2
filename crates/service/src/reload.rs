//! Hot reload: watches the workflows folder (its change events, and a paced
//! poll) and reinstalls it when a file changes.

use crate::Service;
use hookflow_model::load::FileStamp;
use hookflow_model::Catalog;
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The folder's state in one number: a digest of each workflow file's
/// name, mtime and size, summed (the order of the listing does not matter,
/// and nothing is kept per file: with 10,000 files a list of them was
/// ~0.8 MB held for the next look). A `stat` per file, relative to the
/// folder (no walk down the whole path each time); a link is followed, so
/// that a file swapped behind one (a Kubernetes ConfigMap) is seen to change.
fn fingerprint(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            hookflow_model::load::workflow_id_of(Path::new(&name))?;
            Some(digest(&name, hookflow_model::load::entry_stamp(&e)))
        })
        .fold(0, u64::wrapping_add)
}

/// One workflow file's share of a fingerprint: its name and stamp (an
/// entry without one counts as modified never, of no bytes).
fn digest(name: &OsStr, stamp: Option<FileStamp>) -> u64 {
    let mut digest = std::hash::DefaultHasher::new();
    name.hash(&mut digest);
    stamp.and_then(|s| s.modified).hash(&mut digest);
    stamp.map_or(0, |s| s.len).hash(&mut digest);
    digest.finish()
}

/// The fingerprint of the folder as `catalog` read it, from each file's
/// stamp (taken from the file as it was opened) and those of the entries
/// it holds no file for (a file whose id another took, a link to nothing):
/// [`fingerprint`]'s, unless a file changed after it was read. An entry
/// without a stamp counts as a look counts one it cannot read.
pub(crate) fn loaded_fingerprint(catalog: &Catalog) -> u64 {
    catalog
        .files
        .values()
        .map(|file| (&file.path, file.stamp))
        .chain(catalog.unheld.iter().map(|(path, stamp)| (path, *stamp)))
        .filter_map(|(path, stamp)| Some(digest(path.file_name()?, stamp)))
        .fold(0, u64::wrapping_add)
}

/// After an event, how long the folder is left to settle before it is
/// looked at: an editor's save, a `git checkout` or a ConfigMap's swap is
/// several events, and one look after the last of them loads once.
const SETTLE: Duration = Duration::from_millis(50);

/// The poll's share of a core, at most one part in this many: the wait
/// before the next look is at least this many times what the last look
/// took. With a thousand files (~2 ms a look) that is still the configured
/// interval; with 10,000 (~20 ms) about 10 s. The events make a change
/// seen at once; the poll is there for folders that give none (NFS, a
/// replaced folder).
const POLL_SHARE: u32 = 500;

/// The longest wait between two looks, however slow a look is.
const POLL_AT_MOST: Duration = Duration::from_secs(30);

/// The wait before the next look, from what the last one took.
fn paced(every: Duration, took: Duration) -> Duration {
    every
        .max(took.saturating_mul(POLL_SHARE))
        .min(POLL_AT_MOST.max(every))
}

/// The folder's change events: each event that may change a workflow file
/// (any but a read: loading opens every file, and a look opens the folder)
/// wakes `changed`.
#[derive(Default)]
struct Events {
    watcher: Option<notify::RecommendedWatcher>,
    /// Whether the last try to subscribe failed (and said so).
    failed: bool,
}

impl Events {
    /// Subscribes to `dir`'s events anew (the old subscription dropped
    /// first). When the system gives none (no inotify, its limits reached,
    /// the folder missing) the poll alone watches; that is logged once,
    /// not again at every change while it lasts.
    fn renew(&mut self, dir: &Path, changed: &Arc<tokio::sync::Notify>) {
        use notify::event::{AccessKind, AccessMode, EventKind};
        use notify::{RecursiveMode, Watcher};
        drop(self.watcher.take());
        let changed = changed.clone();
        let on_event = move |event: notify::Result<notify::Event>| {
            let read = |kind: &EventKind| matches!(kind, EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write));
            if !event.as_ref().is_ok_and(|e| read(&e.kind)) {
                changed.notify_one();
            }
        };
        let subscribed = notify::recommended_watcher(on_event).and_then(|mut watcher| {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match subscribed {
            Ok(watcher) => {
                self.watcher = Some(watcher);
                self.failed = false;
            }
            Err(error) => {
                if !self.failed {
                    tracing::warn!(
                        message = "No change events for the workflows folder; polling it only.",
                        folder = %dir.display(),
                        %error
                    );
                }
                self.failed = true;
            }
        }
    }
}

/// Watches until the service starts shutting down: a look at the folder
/// after each change event, and a paced poll ([`paced`]). The folder is
/// looked at and loaded on the blocking pool: with thousands of files a
/// pass takes milliseconds, which the runtime's workers owe to requests.
pub async fn watch(service: Arc<Service>, every: Duration) {
    let dir = Arc::new(service.settings.workflows_dir.clone());
    let look = |dir: &Arc<PathBuf>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            (fingerprint(&dir), started.elapsed())
        })
    };
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut events = Events::default();
    events.renew(&dir, &changed);
    // The folder as the first load read it, not as the first look finds
    // it: a file written during that load (no events were watched yet)
    // makes the two differ, and is loaded again now. A reload's own look
    // comes before its load, so a write during a reload is seen the same way.
    let mut last = service.first_load_fingerprint();
    let (mut now, mut took) = look(&dir).await.unwrap_or_default();
    loop {
        if now != last {
            last = now;
            // Subscribed again at each change: a folder replaced (or a link
            // to it swapped) gives its events from the new one on.
            events.renew(&dir, &changed);
            let reloading = service.clone();
            let reloaded = tokio::task::spawn_blocking(move || {
                let catalog = reloading.load_catalog();
                reloading.install(&catalog).map(|()| catalog.files.len())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match reloaded {
                Ok(files) => tracing::info!(message = "Workflows reloaded.", files),
                Err(error) => {
                    tracing::error!(message = "Reload failed; still serving the previous workflows.", %error)
                }
            }
        }
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(SETTLE).await,
            () = tokio::time::sleep(paced(every, took)) => {}
        }
        if service.is_shutting_down() {
            return;
        }
        (now, took) = look(&dir).await.unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::{fingerprint, loaded_fingerprint, paced, Events};
    use hookflow_model::Catalog;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_poll_waits_longer_as_a_look_costs_more_within_bounds() {
        let second = Duration::from_secs(1);
        assert_eq!(paced(second, Duration::from_millis(2)), second);
        assert_eq!(
            paced(second, Duration::from_millis(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            paced(second, Duration::from_secs(2)),
            Duration::from_secs(30)
        );
        assert_eq!(
            paced(second, Duration::MAX),
            Duration::from_secs(30),
            "no overflow"
        );
        let minute = Duration::from_secs(60);
        assert_eq!(paced(minute, Duration::from_secs(2)), minute);
    }

    /// Loading opens and reads every file, and each look lists the folder:
    /// neither may wake the watch, or a reload would wake the next one.
    #[tokio::test]
    async fn a_write_in_the_folder_wakes_the_watch_and_a_read_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, "title: a\n").expect("write");
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut events = Events::default();
        events.renew(dir.path(), &changed);
        assert!(events.watcher.is_some(), "events on a local folder");
        std::fs::read(&a).expect("read");
        fingerprint(dir.path());
        let woken = tokio::time::timeout(Duration::from_millis(300), changed.notified()).await;
        assert!(woken.is_err(), "a read woke the watch");
        std::fs::write(&a, "title: a, again\n").expect("write");
        tokio::time::timeout(Duration::from_secs(10), changed.notified())
            .await
            .expect("a write wakes the watch");
        std::fs::remove_file(&a).expect("remove");
        tokio::time::timeout(Duration::from_secs(10), changed.notified())
            .await
            .expect("a removal wakes the watch");
    }

    /// A folder missing at start gives no events (the poll watches); once it
    /// is there, the next renewal (at the change the poll finds) subscribes.
    #[test]
    fn a_missing_folder_is_polled_until_it_can_be_watched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("later");
        let changed = Arc::new(tokio::sync::Notify::new());
        let mut events = Events::default();
        events.renew(&folder, &changed);
        assert!(events.watcher.is_none() && events.failed);
        std::fs::create_dir(&folder).expect("mkdir");
        events.renew(&folder, &changed);
        assert!(events.watcher.is_some() && !events.failed);
    }

    /// With the poll a minute apart, an edit is served within seconds: the
    /// folder's events reload it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edit_is_served_without_waiting_for_the_poll() {
        let yaml = |body: &str| {
            format!("title: W\nenabled: true\ntrigger: {{ type: webhook, mode: sync }}\nnodes:\n  - type: response\n    body: {body}\n")
        };
        let (_dir, workflows, service) = serving(&yaml("v0"));
        let first = service.registry().workflows["w"].version.clone();
        // This thread's copy of the registry is made now: it must follow the reload.
        assert_eq!(service.local_registry().workflows["w"].version, first);
        let _background = service.start_background();
        // Edits go on until one is served, each given 2 s (one made before
        // the watch subscribes is found by its first look instead).
        let mut served = false;
        for n in 1..=5 {
            std::fs::write(workflows.join("w.yaml"), yaml(&format!("v{n}"))).expect("write");
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if service.registry().workflows["w"].version != first {
                    assert_ne!(
                        service.local_registry().workflows["w"].version,
                        first,
                        "the thread's copy follows the published registry"
                    );
                    served = true;
                    break;
                }
            }
            if served {
                break;
            }
        }
        assert!(served, "no edit served within 10 s; the poll is 60 s apart");
    }

    /// A service over a new folder whose one workflow, `w.yaml`, is
    /// `text`; its poll a minute apart. The temporary folder holds both
    /// the workflows folder and the data folder.
    fn serving(text: &str) -> (tempfile::TempDir, std::path::PathBuf, Arc<crate::Service>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let workflows = dir.path().join("workflows");
        std::fs::create_dir(&workflows).expect("mkdir");
        std::fs::write(workflows.join("w.yaml"), text).expect("write");
        let store = Arc::new(hookflow_store::MemoryStore::new());
        let executor =
            hookflow_executor::Executor::new(store, Default::default()).expect("executor");
        let settings = crate::Settings {
            workflows_dir: workflows.clone(),
            data_dir: dir.path().join("data"),
            public_url: "http://127.0.0.1:1".into(),
            shutdown_grace: Duration::from_secs(1),
            reload_every: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
        };
        let service = crate::Service::load(settings, executor).expect("loads");
        (dir, workflows, service)
    }

    /// A file written after the first load read it and before the watch
    /// began (no events watched yet, the poll a minute apart) is loaded at
    /// the watch's first look. Before, that look was where the watch
    /// started from, and the file stayed as first read until its next edit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_written_during_the_first_load_is_loaded_again() {
        let yaml = |title: &str| {
            format!("title: {title}\nenabled: true\ntrigger: {{ type: webhook, mode: sync }}\n")
        };
        let (_dir, workflows, service) = serving(&yaml("first"));
        assert_eq!(service.registry().workflows["w"].title, "first");
        std::fs::write(workflows.join("w.yaml"), yaml("written meanwhile")).expect("write");
        let _background = service.start_background();
        let mut title = String::new();
        for _ in 0..100 {
            title.clone_from(&service.registry().workflows["w"].title);
            if title != "first" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(title, "written meanwhile", "not loaded again within 10 s");
    }

    /// The folder loaded as a server loads it.
    fn load(folder: &Path) -> Catalog {
        hookflow_model::load_dir(
            folder,
            &hookflow_model::LoadOptions {
                secrets: hookflow_model::SecretPolicy::Warn,
                env: &|_| None,
            },
        )
    }

    /// A folder as its load read it has the fingerprint a look finds (no
    /// reload at start for nothing), and not once a file changed since.
    #[test]
    fn a_folder_as_loaded_has_the_fingerprint_a_look_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path();
        let files = [
            ("a.yaml", "title: a\n"),
            ("b.yml", "title: b\nbogus: 1\n"),
            ("notes.txt", "x"),
        ];
        for (name, text) in files {
            std::fs::write(folder.join(name), text).expect("write");
        }
        assert_eq!(loaded_fingerprint(&load(folder)), fingerprint(folder));
        let loaded = load(folder);
        std::fs::write(folder.join("a.yaml"), "title: a, changed\n").expect("write");
        assert_ne!(loaded_fingerprint(&loaded), fingerprint(folder));
    }

    /// Entries the load holds no workflow for, or could not read, are in
    /// the fingerprint of the folder as loaded as a look finds them: no
    /// reload at start for a folder that stayed as it was.
    #[test]
    fn a_folder_with_files_it_cannot_serve_has_the_fingerprint_a_look_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path();
        // One id twice (c): the second file is dropped.
        for (name, text) in [("a.yaml", "a"), ("c.yaml", "c"), ("c.yml", "c, again")] {
            std::fs::write(folder.join(name), format!("title: {text}\n")).expect("write");
        }
        // Larger than a workflow file may be: not read.
        std::fs::write(folder.join("big.yaml"), vec![b'#'; 4 * 1024 * 1024 + 1]).expect("write");
        // A link to nothing, a link to itself, a folder with a workflow's name.
        std::os::unix::fs::symlink(folder.join("missing"), folder.join("gone.yaml")).expect("link");
        std::os::unix::fs::symlink(folder.join("loop.yaml"), folder.join("loop.yaml"))
            .expect("link");
        std::fs::create_dir(folder.join("dir.yaml")).expect("mkdir");
        // Not readable (by a user other than root).
        let locked = folder.join("locked.yaml");
        std::fs::write(&locked, "title: locked\n").expect("write");
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .expect("chmod");
        let catalog = load(folder);
        assert!(
            catalog.files["big"].has_errors() && catalog.other.len() >= 3,
            "the folder has its problems: {catalog:?}"
        );
        assert_eq!(loaded_fingerprint(&catalog), fingerprint(folder));
        std::fs::write(folder.join("c.yml"), "title: c, changed\n").expect("write");
        assert_ne!(
            loaded_fingerprint(&catalog),
            fingerprint(folder),
            "a change to the dropped file is one"
        );
    }

    /// A change is seen in a file, in a new or removed file, and in a file
    /// behind a link whose target is swapped (how a Kubernetes ConfigMap
    /// updates a mounted folder); other files are not looked at.
    #[test]
    fn the_fingerprint_sees_every_kind_of_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("workflows");
        std::fs::create_dir(&folder).expect("mkdir");
        let a = folder.join("a.yaml");
        std::fs::write(&a, "title: a\n").expect("write");
        std::fs::write(folder.join("notes.txt"), "x").expect("write");
        let first = fingerprint(&folder);
        assert_ne!(first, fingerprint(&dir.path().join("missing")));
        assert_eq!(fingerprint(&folder), first);

        std::fs::write(folder.join("notes.txt"), "longer").expect("write");
        assert_eq!(fingerprint(&folder), first, "not a workflow file");

        std::fs::write(&a, "title: a changed\n").expect("write");
        let edited = fingerprint(&folder);
        assert_ne!(edited, first);

        std::fs::write(folder.join("b.yml"), "title: b\n").expect("write");
        let added = fingerprint(&folder);
        assert_ne!(added, edited);

        #[cfg(unix)]
        {
            // As a ConfigMap is mounted: `c.yaml -> data/c.yaml`, and `data`
            // a link to the current version's folder, swapped on update;
            // the link in the workflows folder itself never changes.
            let (v1, v2) = (dir.path().join("v1"), dir.path().join("v2"));
            std::fs::create_dir(&v1).expect("mkdir");
            std::fs::create_dir(&v2).expect("mkdir");
            std::fs::write(v1.join("c.yaml"), "title: c\n").expect("write");
            std::fs::write(v2.join("c.yaml"), "title: c, version two\n").expect("write");
            let data = folder.join("data");
            std::os::unix::fs::symlink(&v1, &data).expect("link");
            std::os::unix::fs::symlink("data/c.yaml", folder.join("c.yaml")).expect("link");
            let linked = fingerprint(&folder);
            assert_ne!(linked, added);
            let swap = folder.join("data.new");
            std::os::unix::fs::symlink(&v2, &swap).expect("link");
            std::fs::rename(&swap, &data).expect("swap");
            assert_ne!(
                fingerprint(&folder),
                linked,
                "the file behind the link changed"
            );
        }

        // Removed, then written back as it was: the same state again.
        let before = fingerprint(&folder);
        let modified = std::fs::metadata(&a)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::remove_file(&a).expect("remove");
        assert_ne!(fingerprint(&folder), before);
        std::fs::write(&a, "title: a changed\n").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&a)
            .and_then(|f| f.set_modified(modified))
            .expect("set mtime");
        assert_eq!(fingerprint(&folder), before);
    }
}
