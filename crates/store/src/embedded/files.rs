//! The data folder on disk: made private to its user, and sled opened in it.

use crate::{db_err, StoreError, StoreResult};
use std::path::Path;

/// sled's page cache (its default is 1 GiB).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Makes the data folder and what is in it private to the user running
/// hookflow: 0700 folders, 0600 files (also when they existed).
#[cfg(unix)]
pub(crate) fn make_private(dir: &Path) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let file_err = |p: &Path, e: std::io::Error| StoreError::File {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| file_err(dir, e))?;
    if meta.is_dir() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(dir, e))?;
        for entry in std::fs::read_dir(dir).map_err(|e| file_err(dir, e))? {
            let path = entry.map_err(|e| file_err(dir, e))?.path();
            make_private(&path)?;
        }
    } else if meta.is_file() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| file_err(dir, e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn make_private(_dir: &Path) -> StoreResult<()> {
    Ok(())
}

/// Runs `f`, a panic caught and returned without the panic hook's report
/// (a backtrace on stderr ahead of the error that explains it), while the
/// store opens.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    type Hook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync;
    let hook: std::sync::Arc<Hook> = std::sync::Arc::from(std::panic::take_hook());
    let this = std::thread::current().id();
    let others = hook.clone();
    // Only this thread's panic is held back: another thread's (a test
    // running beside it) is reported as ever.
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != this {
            others(info);
        }
    }));
    let result = std::panic::catch_unwind(f);
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| hook(info)));
    result
}

/// Opens sled in `dir/db`. A database still held is waited for a moment
/// (sled lets go of its lock once its background writes are done: a store
/// closed and opened again in one process); then it is in use by another.
pub(crate) fn open_db(dir: &Path) -> StoreResult<sled::Db> {
    let mut tries = 0;
    loop {
        // sled panics on some damage of its files (a flipped bit in a
        // page it reads at recovery): that is an error of the folder, with
        // what to do about it, not a crash.
        let opened = quietly(|| {
            sled::Config::new()
                .path(dir.join("db"))
                .flush_every_ms(Some(500))
                .cache_capacity(CACHE_BYTES)
                .open()
        });
        let opened = match opened {
            Ok(opened) => opened,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(StoreError::Db(format!(
                    "the store in {} is damaged and cannot be read ({why}); \
                     restore the folder from a backup, or move it aside to start with an empty store",
                    dir.join("db").display()
                )));
            }
        };
        match opened {
            Ok(db) => return Ok(db),
            Err(e) => {
                let text = e.to_string();
                let locked = text.contains("lock")
                    || text.contains("WouldBlock")
                    || text.contains("temporarily unavailable");
                if !locked {
                    return Err(db_err(e));
                }
                if tries >= 50 {
                    return Err(StoreError::Locked(dir.display().to_string()));
                }
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(40));
            }
        }
    }
}
