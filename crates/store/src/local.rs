//! How a command on the same machine reaches the server that holds a data
//! folder: `<data>/server.json` (0600, in the private data folder) names the
//! server's loopback URL and a token its admin API accepts besides
//! `--admin-token`. Written when a server starts, removed when it stops; a
//! file left by a killed server names a URL where nobody answers, and the
//! command then opens the store itself.

use crate::keys::{file_err, private_dir, write_private};
use crate::StoreResult;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `<data>/server.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAccess {
    /// The server's base URL on the loopback interface.
    pub url: String,
    /// A token its admin API accepts (random, new at every start).
    pub token: String,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.json")
}

impl LocalAccess {
    /// A new token for the server at `url`.
    pub fn new(url: String) -> LocalAccess {
        LocalAccess {
            url,
            token: format!(
                "{}{}",
                crate::keys::generate_key(),
                crate::keys::generate_key()
            ),
        }
    }

    /// Writes it to `data_dir` (created 0700 when missing), whole.
    pub fn write(&self, data_dir: &Path) -> StoreResult<()> {
        private_dir(data_dir)?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| file_err(&path(data_dir), e))?;
        write_private(
            data_dir,
            &data_dir.join("server.json.tmp"),
            &path(data_dir),
            &text,
        )
    }

    /// What `data_dir` holds, if a server wrote it and it reads.
    pub fn read(data_dir: &Path) -> Option<LocalAccess> {
        let text = std::fs::read(path(data_dir)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Removes the file, if it is still this server's.
    pub fn remove(&self, data_dir: &Path) {
        if LocalAccess::read(data_dir).as_ref() == Some(self) {
            let _ = std::fs::remove_file(path(data_dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_written_privately_read_back_and_removed_by_its_server_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let access = LocalAccess::new("http://127.0.0.1:1".into());
        assert_eq!(access.token.len(), 44);
        access.write(&data).expect("write");
        assert_eq!(LocalAccess::read(&data), Some(access.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&data.join("server.json")), 0o600);
            assert_eq!(mode(&data), 0o700);
        }
        // A newer server's file is not removed by an older one.
        let newer = LocalAccess::new("http://127.0.0.1:2".into());
        newer.write(&data).expect("write");
        access.remove(&data);
        assert_eq!(LocalAccess::read(&data), Some(newer.clone()));
        newer.remove(&data);
        assert_eq!(LocalAccess::read(&data), None);
    }
}
