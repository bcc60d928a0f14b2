//! Workflow versions: the text of each version served, by content hash.

use crate::{db_err, StoreResult};

/// A batch this large is stored on more than one thread.
const PARALLEL_FROM: usize = 512;

/// Keeps `source` as `version` unless that version is kept already (the same
/// hash is the same text): one pass down the tree, not a look and a write.
pub(super) fn put(tree: &sled::Tree, version: &str, source: &str) -> StoreResult<()> {
    // `Err(_)` inside: the version is there already, which is what we want.
    let _kept = tree
        .compare_and_swap(
            version.as_bytes(),
            None as Option<&[u8]>,
            Some(source.as_bytes()),
        )
        .map_err(db_err)?;
    Ok(())
}

/// Keeps many versions (a folder's worth at start-up): in key order, so that
/// neighbours land in the same leaf, and on up to one thread per core, each
/// with its own range of keys.
pub(super) fn put_many(tree: &sled::Tree, versions: &[(&str, &str)]) -> StoreResult<()> {
    let mut sorted: Vec<&(&str, &str)> = versions.iter().collect();
    sorted.sort_unstable_by_key(|(version, _)| *version);
    let put_all = |chunk: &[&(&str, &str)]| -> StoreResult<()> {
        chunk
            .iter()
            .try_for_each(|(version, source)| put(tree, version, source))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if sorted.len() < PARALLEL_FROM || threads < 2 {
        return put_all(&sorted);
    }
    let size = sorted.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = sorted
            .chunks(size)
            .map(|chunk| scope.spawn(move || put_all(chunk)))
            .collect();
        // Every thread is joined (the scope waits for all); the first error is
        // the answer.
        handles.into_iter().try_for_each(|h| match h.join() {
            Ok(done) => done,
            // A panic in sled is a bug; let it surface as one.
            Err(panic) => std::panic::resume_unwind(panic),
        })
    })
}
