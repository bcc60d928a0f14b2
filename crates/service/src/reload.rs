//! Hot reload: polls the workflows folder and reinstalls it when a file changes.

use crate::Service;
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
            let meta = match e.file_type() {
                Ok(t) if !t.is_symlink() => e.metadata().ok(),
                _ => std::fs::metadata(e.path()).ok(),
            };
            let mut digest = std::hash::DefaultHasher::new();
            name.hash(&mut digest);
            meta.as_ref()
                .and_then(|m| m.modified().ok())
                .hash(&mut digest);
            meta.map_or(0, |m| m.len()).hash(&mut digest);
            Some(digest.finish())
        })
        .fold(0, u64::wrapping_add)
}

/// Watches until the service starts shutting down. The folder is looked at
/// and loaded on the blocking pool: with thousands of files a pass takes
/// milliseconds, which the runtime's workers owe to requests.
pub async fn watch(service: Arc<Service>, every: Duration) {
    let dir = Arc::new(service.settings.workflows_dir.clone());
    let look = |dir: &Arc<PathBuf>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || fingerprint(&dir))
    };
    let mut last = look(&dir).await.unwrap_or_default();
    loop {
        tokio::time::sleep(every).await;
        if service.is_shutting_down() {
            return;
        }
        let now = look(&dir).await.unwrap_or_default();
        if now == last {
            continue;
        }
        last = now;
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
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

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
