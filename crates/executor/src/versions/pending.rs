//! Texts of versions loaded but not stored yet: each is stored before the
//! first record that names its version ([`super::Versions::keep`]), so a
//! folder of 10,000 workflows is not written at every start. Given a
//! folder (the embedded store's data folder), the texts wait in a private
//! file there rather than in memory: with 10,000 workflows they are
//! ~8 MiB of the server's memory, kept for workflows that may never run
//! (docs/performance.md, "The held version texts wait on disk").
//!
//! The file is unlinked as soon as it is made: it lives as long as the
//! process holds it, no other process finds it, and nothing is left of it
//! after a crash (a text that waited there was never named by a record).
//! A text read back is checked against its version (the hash of its
//! bytes), so a file that changed under the server is refused, not served.

use hookflow_model::runtime::content_hash;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of texts stored since they were written to the file (dead) past
/// which the next hold first copies the live texts into a new file, when
/// they are also more than the live ones: the file stays under twice its
/// live texts plus this.
const COMPACT_PAST: u64 = 1 << 20;

pub(super) struct Pending {
    texts: HashMap<String, Held>,
    /// The folder texts wait in; `None`: in memory.
    dir: Option<PathBuf>,
    spill: Option<Spill>,
}

enum Held {
    Here(Arc<str>),
    Spilled {
        at: u64,
        len: usize,
    },
    /// Could not be read back whole and unchanged; held again when a load
    /// brings the same version's text.
    Lost,
}

/// What [`Pending::text`] finds.
pub(super) enum Text {
    Waiting(Arc<str>),
    /// Could not be read back whole and unchanged, this once: lost from
    /// now on.
    Unreadable(io::Error),
    /// Found unreadable before.
    Lost,
}

/// The private file, and how much of it is in use.
struct Spill {
    file: File,
    /// Bytes written.
    end: u64,
    /// Bytes of texts still waiting (the rest are dead).
    live: u64,
    /// Removed when dropped: set only where it could not be unlinked at
    /// once.
    path: Option<PathBuf>,
}

impl Pending {
    pub fn new(dir: Option<PathBuf>) -> Pending {
        Pending {
            texts: HashMap::new(),
            dir,
            spill: None,
        }
    }

    pub fn contains(&self, version: &str) -> bool {
        self.texts.contains_key(version)
    }

    /// The versions waiting.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }

    /// Holds these texts (by version) until stored; a version already
    /// waiting, or twice in `texts`, is written once (same version, same
    /// bytes). On disk when there is a folder; in memory when writing there
    /// failed. The caller holds the lock `keep` takes: a version's first
    /// run waits for this write (a load's, ~5 ms for 10,000 workflows).
    pub fn hold(&mut self, texts: &[(&str, &Arc<str>)]) {
        let mut seen = HashSet::new();
        let new: Vec<(&str, &Arc<str>)> = texts
            .iter()
            .filter(|(version, _)| {
                !matches!(
                    self.texts.get(*version),
                    Some(Held::Here(_) | Held::Spilled { .. })
                ) && seen.insert(*version)
            })
            .copied()
            .collect();
        if new.is_empty() {
            return;
        }
        self.compact_if_mostly_dead();
        let written = match self.spill_file() {
            Some(spill) => spill.append(&new).map(Some),
            None => Ok(None),
        };
        match written {
            Ok(Some(places)) => {
                for ((version, text), at) in new.iter().zip(places) {
                    let len = text.len();
                    self.texts
                        .insert(version.to_string(), Held::Spilled { at, len });
                }
            }
            Ok(None) | Err(_) => {
                if let Err(error) = written {
                    tracing::warn!(
                        message = "Could not write workflow texts to wait on disk; they wait in memory.",
                        %error
                    );
                }
                for (version, text) in new {
                    self.texts
                        .insert(version.to_string(), Held::Here(text.clone()));
                }
            }
        }
    }

    /// The text of a waiting version; `None` when it is not waiting.
    pub fn text(&mut self, version: &str) -> Option<Text> {
        let read = match *self.texts.get(version)? {
            Held::Here(ref text) => return Some(Text::Waiting(text.clone())),
            Held::Lost => return Some(Text::Lost),
            Held::Spilled { at, len } => match &self.spill {
                Some(spill) => spill.read(version, at, len),
                None => Err(io::Error::other("the file of waiting texts is gone")),
            },
        };
        Some(match read {
            Ok(text) => Text::Waiting(Arc::from(text)),
            Err(error) => {
                self.lose(version);
                Text::Unreadable(error)
            }
        })
    }

    /// True when `version`'s text was found unreadable.
    pub fn is_lost(&self, version: &str) -> bool {
        matches!(self.texts.get(version), Some(Held::Lost))
    }

    /// Forgets a version once stored; the file is emptied when nothing in
    /// it waits any more.
    pub fn remove(&mut self, version: &str) {
        if let Some(Held::Spilled { len, .. }) = self.texts.remove(version) {
            self.release(len);
        }
    }

    /// Marks a version's text lost.
    fn lose(&mut self, version: &str) {
        if let Some(held) = self.texts.get_mut(version) {
            if let Held::Spilled { len, .. } = std::mem::replace(held, Held::Lost) {
                self.release(len);
            }
        }
    }

    /// `len` bytes of the file no longer wait; the file is emptied when
    /// none does.
    fn release(&mut self, len: usize) {
        if let Some(spill) = &mut self.spill {
            spill.live = spill.live.saturating_sub(len as u64);
            if spill.live == 0 && spill.file.set_len(0).is_ok() {
                spill.end = 0;
            }
        }
    }

    /// Overwrites the first bytes of `version`'s text in the file, as a
    /// disk's fault would.
    #[cfg(test)]
    pub fn spoil(&mut self, version: &str) {
        let Some(&Held::Spilled { at, .. }) = self.texts.get(version) else {
            panic!("{version} is not in the file");
        };
        let file = &self.spill.as_ref().expect("file").file;
        (&*file).seek(SeekFrom::Start(at)).expect("seek");
        (&*file).write_all(b"SPOILED").expect("write");
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The file, made at the first hold; `None` without a folder, or when
    /// it could not be made (then texts wait in memory from here on).
    fn spill_file(&mut self) -> Option<&mut Spill> {
        if self.spill.is_none() {
            let dir = self.dir.as_deref()?;
            match Spill::create(dir) {
                Ok(spill) => self.spill = Some(spill),
                Err(error) => {
                    tracing::warn!(
                        message = "Could not make a file for workflow texts to wait in; they wait in memory.",
                        dir = %dir.display(),
                        %error
                    );
                    self.dir = None;
                    return None;
                }
            }
        }
        self.spill.as_mut()
    }

    /// Copies the live texts into a new file once the dead ones are many;
    /// keeps the old file when the new one cannot be made or written. A
    /// text that does not read back is lost (said once), not copied.
    fn compact_if_mostly_dead(&mut self) {
        let (Some(spill), Some(dir)) = (&self.spill, &self.dir) else {
            return;
        };
        let dead = spill.end - spill.live;
        if dead <= COMPACT_PAST || dead <= spill.live {
            return;
        }
        let mut live: Vec<(&str, u64, usize)> = self
            .texts
            .iter()
            .filter_map(|(version, held)| match *held {
                Held::Spilled { at, len } => Some((version.as_str(), at, len)),
                Held::Here(_) | Held::Lost => None,
            })
            .collect();
        live.sort_unstable_by_key(|&(_, at, _)| at);
        let mut read: Vec<(&str, Arc<str>)> = Vec::with_capacity(live.len());
        let mut lost: Vec<String> = Vec::new();
        for (version, at, len) in live {
            match spill.read(version, at, len) {
                Ok(text) => read.push((version, Arc::from(text))),
                Err(error) => {
                    tracing::error!(
                        message = "Could not read back a workflow version's text; it is not stored.",
                        %version,
                        %error
                    );
                    lost.push(version.to_string());
                }
            }
        }
        let copied = Spill::create(dir).and_then(|mut fresh| {
            let pairs: Vec<(&str, &Arc<str>)> = read.iter().map(|(v, t)| (*v, t)).collect();
            let places = fresh.append(&pairs)?;
            Ok((fresh, places))
        });
        let moved: Vec<(String, Held)> = match copied {
            Ok((fresh, places)) => {
                self.spill = Some(fresh);
                read.iter()
                    .zip(places)
                    .map(|((version, text), at)| {
                        let len = text.len();
                        (version.to_string(), Held::Spilled { at, len })
                    })
                    .chain(lost.into_iter().map(|version| (version, Held::Lost)))
                    .collect()
            }
            Err(error) => {
                tracing::warn!(
                    message = "Could not copy the waiting workflow texts to a new file; the old one stays.",
                    %error
                );
                // The lost ones stop counting as the old file's live bytes.
                drop(read);
                for version in lost {
                    self.lose(&version);
                }
                return;
            }
        };
        for (version, held) in moved {
            self.texts.insert(version, held);
        }
    }
}

impl Spill {
    /// A new file in `dir`, readable by this user only, unlinked at once.
    fn create(dir: &Path) -> io::Result<Spill> {
        let path = dir.join(format!(".waiting-versions-{}", uuid::Uuid::new_v4()));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        let path = std::fs::remove_file(&path).is_err().then_some(path);
        Ok(Spill {
            file,
            end: 0,
            live: 0,
            path,
        })
    }

    /// Writes the texts after the last ones; where each starts. Nothing is
    /// counted as written when any write fails.
    fn append(&mut self, texts: &[(&str, &Arc<str>)]) -> io::Result<Vec<u64>> {
        let start = self.end;
        let written = (|| {
            (&self.file).seek(SeekFrom::Start(start))?;
            let mut out = BufWriter::with_capacity(64 * 1024, &self.file);
            let mut at = start;
            let mut places = Vec::with_capacity(texts.len());
            for (_, text) in texts {
                out.write_all(text.as_bytes())?;
                places.push(at);
                at += text.len() as u64;
            }
            out.flush()?;
            Ok((places, at))
        })();
        match written {
            Ok((places, end)) => {
                self.live += end - start;
                self.end = end;
                Ok(places)
            }
            Err(error) => {
                // Best effort: what was written is never read.
                let _ = self.file.set_len(start);
                Err(error)
            }
        }
    }

    /// The text of `version` at `at`, checked against the version.
    fn read(&self, version: &str, at: u64, len: usize) -> io::Result<String> {
        (&self.file).seek(SeekFrom::Start(at))?;
        let mut bytes = vec![0; len];
        (&self.file).read_exact(&mut bytes)?;
        if content_hash(&bytes) != version {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the waiting text of version {version} changed on disk"),
            ));
        }
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> (String, Arc<str>) {
        let text: Arc<str> = Arc::from(format!(
            "title: workflow {n}\n{}",
            "# padding\n".repeat(20 + n % 7)
        ));
        (content_hash(text.as_bytes()), text)
    }

    fn hold(pending: &mut Pending, texts: &[(String, Arc<str>)]) {
        let pairs: Vec<(&str, &Arc<str>)> = texts.iter().map(|(v, t)| (v.as_str(), t)).collect();
        pending.hold(&pairs);
    }

    /// A file in a fresh folder holding the texts of `numbers`.
    fn on_disk(
        numbers: std::ops::Range<usize>,
    ) -> (tempfile::TempDir, Pending, Vec<(String, Arc<str>)>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut pending = Pending::new(Some(dir.path().to_path_buf()));
        let texts: Vec<_> = numbers.map(text).collect();
        hold(&mut pending, &texts);
        (dir, pending, texts)
    }

    fn read(pending: &mut Pending, version: &str) -> Arc<str> {
        match pending.text(version) {
            Some(Text::Waiting(text)) => text,
            Some(Text::Unreadable(error)) => panic!("{version}: {error}"),
            Some(Text::Lost) => panic!("{version}: lost"),
            None => panic!("{version}: not waiting"),
        }
    }

    /// With a folder, a held text is not kept in memory (the caller's copy
    /// is the last one), reads back as it was, and no file is left to find
    /// in the folder.
    #[test]
    fn texts_wait_on_disk_not_in_memory() {
        let (dir, mut pending, texts) = on_disk(0..100);
        for (version, text) in &texts {
            assert_eq!(Arc::strong_count(text), 1, "not held in memory");
            assert_eq!(&*read(&mut pending, version), &**text);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "the file is unlinked at once: {left:?}");
        // Held again (a reload of the same files): not written again.
        let end = pending.spill.as_ref().map(|s| s.end);
        hold(&mut pending, &texts);
        assert_eq!(pending.spill.as_ref().map(|s| s.end), end);
        // Stored one by one: the file is emptied when none waits.
        for (version, _) in &texts {
            pending.remove(version);
        }
        assert!(pending.is_empty());
        let spill = pending.spill.as_ref().expect("file");
        assert_eq!((spill.end, spill.live), (0, 0));
        assert_eq!(spill.file.metadata().expect("metadata").len(), 0);
        // Texts held after that are written from the start and read back.
        let next: Vec<_> = (100..110).map(text).collect();
        hold(&mut pending, &next);
        for (version, text) in &next {
            assert_eq!(&*read(&mut pending, version), &**text);
        }
        let spill = pending.spill.as_ref().expect("file");
        let bytes: u64 = next.iter().map(|(_, t)| t.len() as u64).sum();
        assert_eq!((spill.end, spill.live), (bytes, bytes));
    }

    /// Two files with the same bytes are one version: its text is written
    /// and counted once, and the file empties once it is stored.
    #[test]
    fn a_version_twice_in_a_load_is_written_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut pending = Pending::new(Some(dir.path().to_path_buf()));
        let (version, text) = text(7);
        let twin = Arc::clone(&text);
        hold(
            &mut pending,
            &[(version.clone(), text.clone()), (version.clone(), twin)],
        );
        let spill = pending.spill.as_ref().expect("file");
        assert_eq!(
            (spill.end, spill.live),
            (text.len() as u64, text.len() as u64)
        );
        pending.remove(&version);
        let spill = pending.spill.as_ref().expect("file");
        assert_eq!((spill.end, spill.live), (0, 0));
    }

    /// A text whose bytes changed in the file is refused, not served as its
    /// version.
    #[test]
    fn a_text_changed_on_disk_is_refused() {
        let (_dir, mut pending, texts) = on_disk(0..3);
        pending.spoil(&texts[1].0);
        let Some(Text::Unreadable(error)) = pending.text(&texts[1].0) else {
            panic!("a changed text is unreadable");
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("changed on disk"), "{error}");
        // Lost from then on (said once), the others unharmed.
        assert!(matches!(pending.text(&texts[1].0), Some(Text::Lost)));
        assert!(pending.is_lost(&texts[1].0));
        assert_eq!(&*read(&mut pending, &texts[0].0), &*texts[0].1);
        assert_eq!(&*read(&mut pending, &texts[2].0), &*texts[2].1);
        // A load that brings the version again holds its text again.
        hold(&mut pending, &texts);
        assert_eq!(&*read(&mut pending, &texts[1].0), &*texts[1].1);
    }

    /// Reloads that each bring new versions while the old ones get stored
    /// do not grow the file past twice its live texts plus the bound: the
    /// live ones are copied to a new file, and all read back.
    #[test]
    fn the_file_stays_near_its_live_texts() {
        let (_dir, mut pending, never_run) = on_disk(0..50);
        // One of them spoiled on disk: lost at the first copy, not copied.
        pending.spoil(&never_run[0].0);
        let mut largest = 0;
        for reload in 0..200 {
            let batch: Vec<_> = (0..100).map(|i| text(1000 + reload * 100 + i)).collect();
            hold(&mut pending, &batch);
            let spill = pending.spill.as_ref().expect("file");
            largest = largest.max(spill.end);
            assert!(
                spill.end <= 2 * spill.live + COMPACT_PAST + 64 * 1024,
                "reload {reload}: {} bytes for {} live",
                spill.end,
                spill.live
            );
            for (version, _) in &batch {
                pending.remove(version);
            }
        }
        assert!(largest > COMPACT_PAST, "the bound was reached: {largest}");
        assert!(pending.is_lost(&never_run[0].0));
        for (version, text) in &never_run[1..] {
            assert_eq!(&*read(&mut pending, version), &**text);
        }
    }

    /// A file that cannot be written (a full disk, here a file open for
    /// reading only): the batch waits in memory, nothing of it is counted
    /// as written, and texts written before still read back.
    #[test]
    fn texts_that_cannot_be_written_wait_in_memory() {
        let (dir, mut pending, before) = on_disk(0..3);
        let spill = pending.spill.as_mut().expect("file");
        let end = spill.end;
        let read_only = dir.path().join("read-only");
        std::fs::write(&read_only, b"").expect("file");
        let writable = std::mem::replace(&mut spill.file, File::open(&read_only).expect("open"));
        let after: Vec<_> = (3..6).map(text).collect();
        hold(&mut pending, &after);
        let spill = pending.spill.as_mut().expect("file");
        assert_eq!(spill.end, end, "nothing counted as written");
        spill.file = writable;
        for (version, text) in &after {
            assert!(matches!(pending.texts.get(version), Some(Held::Here(_))));
            assert_eq!(Arc::strong_count(text), 2, "held in memory");
            assert_eq!(&*read(&mut pending, version), &**text);
        }
        for (version, text) in &before {
            assert_eq!(&*read(&mut pending, version), &**text);
        }
    }

    /// Without a folder, or with one that cannot be written, texts wait in
    /// memory and read back the same.
    #[test]
    fn without_a_usable_folder_texts_wait_in_memory() {
        let dir = tempfile::tempdir().expect("temp dir");
        for folder in [None, Some(dir.path().join("missing"))] {
            let mut pending = Pending::new(folder);
            let texts: Vec<_> = (0..3).map(text).collect();
            hold(&mut pending, &texts);
            assert!(pending.spill.is_none());
            for (version, text) in &texts {
                assert_eq!(Arc::strong_count(text), 2, "held in memory");
                assert_eq!(&*read(&mut pending, version), &**text);
            }
        }
    }
}
