//! Workflow URL keys: generated once per workflow id and kept in
//! `<data>/keys.json`. A file, not the database, so that `hookflow urls` can read
//! and add keys while a server holds the database; an advisory lock on
//! `<data>/keys.lock` keeps two processes from writing at once.

use crate::{StoreError, StoreResult};
use base64::Engine;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The keys file of a data folder.
#[derive(Debug, Clone)]
pub struct KeyFile {
    dir: PathBuf,
}

pub(crate) fn file_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A new random URL key: 128 random bits (122 of them from UUID v4), base64url, 22 characters.
pub fn generate_key() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// Where webhook URL keys are kept: the data folder's key file, or the
/// database of a shared store.
pub trait KeyStore: Send + Sync {
    /// The keys of `ids`, generating and saving the missing ones; with
    /// every other key kept.
    fn ensure(&self, ids: &[&str]) -> StoreResult<BTreeMap<String, String>>;
}

impl KeyStore for KeyFile {
    fn ensure(&self, ids: &[&str]) -> StoreResult<BTreeMap<String, String>> {
        KeyFile::ensure(self, ids.iter().copied())
    }
}

impl KeyFile {
    /// The keys file under `data_dir`.
    pub fn new(data_dir: &Path) -> KeyFile {
        KeyFile {
            dir: data_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    fn lock(&self) -> StoreResult<File> {
        private_dir(&self.dir)?;
        let path = self.dir.join("keys.lock");
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| file_err(&path, e))?;
        file.lock().map_err(|e| file_err(&path, e))?;
        Ok(file)
    }

    fn read(&self) -> StoreResult<BTreeMap<String, String>> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| file_err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(file_err(&path, e)),
        }
    }

    /// The keys of `ids`, generating and saving the missing ones.
    pub fn ensure<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> StoreResult<BTreeMap<String, String>> {
        let _lock = self.lock()?;
        let mut keys = self.read()?;
        let mut changed = false;
        for id in ids {
            if !keys.contains_key(id) {
                keys.insert(id.to_string(), generate_key());
                changed = true;
            }
        }
        if changed {
            let path = self.path();
            let tmp = self.dir.join("keys.json.tmp");
            let text = serde_json::to_vec_pretty(&keys).map_err(|e| file_err(&path, e))?;
            // Written whole to a private temporary file, synced, renamed over
            // the old one, and the folder synced: a crash leaves the old file
            // or the new one, never a part.
            write_private(&self.dir, &tmp, &path, &text)?;
        }
        Ok(keys)
    }
}

/// Writes `text` to `path` in `dir` whole, through the private temporary
/// file `tmp`: synced, renamed over the old file, the folder synced.
pub(crate) fn write_private(dir: &Path, tmp: &Path, path: &Path, text: &[u8]) -> StoreResult<()> {
    let mut file = private_file(tmp).map_err(|e| file_err(tmp, e))?;
    std::io::Write::write_all(&mut file, text).map_err(|e| file_err(tmp, e))?;
    file.sync_all().map_err(|e| file_err(tmp, e))?;
    std::fs::rename(tmp, path).map_err(|e| file_err(path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(dir, e))
}

/// Creates the data folder (0700) if it is missing.
pub(crate) fn private_dir(dir: &Path) -> StoreResult<()> {
    crate::check_folder(dir)?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| file_err(dir, e))
}

/// A new file only its owner can read (0600), truncated.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = KeyFile::new(dir.path());
        let first = file.ensure(["a", "b"]).expect("ensure");
        assert_eq!(first.len(), 2);
        assert!(first.values().all(|k| k.len() == 22
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
        assert_ne!(first["a"], first["b"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys.json"))
                .expect("keys.json")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "keys.json is private");
        }
        let again = KeyFile::new(dir.path()).ensure(["a", "c"]).expect("ensure");
        assert_eq!(again["a"], first["a"]);
        assert_eq!(again["b"], first["b"]);
        assert_eq!(again.len(), 3);
        assert_eq!(file.ensure([]).expect("read"), again);
    }
}
