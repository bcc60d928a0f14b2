//! The global allocator: jemalloc.
//!
//! mimalloc (v3) served the process until 2026-12-05. A request's blocks
//! came back cold from it: a page's freed blocks are handed out again only
//! once its free list runs out, so each of a sync request's ~57
//! allocations landed on memory no request had touched for a while.
//! jemalloc's thread cache hands a freed block out again next (last in,
//! first out), still in the core's cache: the same instructions, 0.3–2.5 µs
//! less CPU a W1 request and +0.6 % to +7.8 % throughput in five paired
//! runs (docs/performance.md).
//!
//! Its defaults, set here and overridden by `_RJEM_MALLOC_CONF` (jemalloc's
//! own variable, read at start), hand freed memory back to the system
//! within about a second rather than ten, which keeps the RSS near the
//! live data under load ([`CONF`]).

/// The allocator `main.rs` installs.
pub(crate) type Allocator = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options, a C string it reads as its
/// `malloc_conf` global before its first allocation (the environment's
/// `_RJEM_MALLOC_CONF` is applied after, so it overrides them).
///
/// - `dirty_decay_ms:1000`: freed pages go back to the system over a
///   second (ten by default): RSS under load stays near the live data.
/// - `muzzy_decay_ms:0`: and are not kept lazily freed after that.
/// - `thp:never`: no transparent huge pages. Where the system turns them
///   on for every mapping (`/sys/kernel/mm/transparent_hugepage/enabled`
///   set to `always`), an idle server sat on 54 MiB, 71 MiB at its peak
///   under W1; with this, 15.7 and 33.8 MiB, as with `madvise`.
#[repr(transparent)]
pub(crate) struct Conf(*const std::ffi::c_char);

// SAFETY: the pointer is to a `'static` C string literal, never written.
unsafe impl Sync for Conf {}

#[used]
#[export_name = "_rjem_malloc_conf"]
pub(crate) static CONF: Conf = Conf(c"dirty_decay_ms:1000,muzzy_decay_ms:0,thp:never".as_ptr());

/// Hands memory freed in bulk back to the system now: every arena's
/// unused pages. After start-up the loader threads are gone and the main
/// thread waits, so what loading freed would otherwise stay resident
/// until the decay above gets to it.
pub(crate) fn release_freed_memory() {
    if let Err(rc) = purge() {
        tracing::debug!(message = "The allocator did not purge its arenas.", rc);
    }
}

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena's unused pages go back;
/// jemalloc's error code if not.
fn purge() -> Result<(), std::ffi::c_int> {
    // The control takes and gives nothing; 4096 is `MALLCTL_ARENAS_ALL`.
    let name = c"arena.4096.purge";
    // SAFETY: a documented control name, NUL-terminated; the call reads
    // and writes no value (null pointers and a zero length, as it requires).
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    /// Reads one of jemalloc's options by name: `value`'s type must be
    /// the option's (`ssize_t` for a decay, `const char *` for text).
    fn read<T>(name: &std::ffi::CStr, mut value: T) -> T {
        let mut len = std::mem::size_of::<T>();
        // SAFETY: `value` and `len` are valid for the call, and `len` is
        // the size of the option's type (jemalloc checks it: EINVAL).
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast(),
                &raw mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "{name:?}");
        value
    }

    /// A text option.
    fn text(name: &std::ffi::CStr) -> String {
        let value: *const std::ffi::c_char = read(name, std::ptr::null());
        assert!(!value.is_null(), "{name:?}");
        // SAFETY: jemalloc returned a pointer to a NUL-terminated string it keeps.
        unsafe { std::ffi::CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned()
    }

    /// The options above are the ones jemalloc runs with (the symbol's
    /// name is right), unless the environment overrides them.
    #[test]
    fn the_compiled_in_options_are_in_force() {
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            return;
        }
        // This test binary allocates through jemalloc too (`main.rs`'s
        // allocator), so it has read its options by now.
        assert_eq!(read::<isize>(c"opt.dirty_decay_ms", -2), 1000);
        assert_eq!(read::<isize>(c"opt.muzzy_decay_ms", -2), 0);
        assert_eq!(text(c"opt.thp"), "never");
    }

    /// The purge after start-up names a control jemalloc has.
    #[test]
    fn every_arena_can_be_purged() {
        assert_eq!(purge(), Ok(()));
    }

    /// Sizes around small bins and across page sizes, in every alignment
    /// Rust asks for: aligned, kept by realloc, zeroed when asked.
    #[test]
    fn blocks_have_the_layout_s_alignment_and_keep_their_bytes() {
        let sizes = (1..=300).chain((1000..1100).step_by(3)).chain([
            1500,
            2048,
            3000,
            4096,
            5000,
            65_536,
            100_003,
            1 << 21,
        ]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).expect("a valid layout");
                // SAFETY: a non-zero size; each block is freed once, by this
                // allocator, with the layout it was made with.
                unsafe {
                    let p = Allocator {}.alloc(layout);
                    assert!(!p.is_null(), "size {size} align {align}");
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xa5, size);
                    let grown = Allocator {}.realloc(p, layout, size * 2 + 7);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0, "realloc {size} align {align}");
                    let kept = std::slice::from_raw_parts(grown, size);
                    assert!(
                        kept.iter().all(|b| *b == 0xa5),
                        "realloc {size} align {align}"
                    );
                    Allocator {}.dealloc(
                        grown,
                        Layout::from_size_align_unchecked(size * 2 + 7, align),
                    );

                    let z = Allocator {}.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "zeroed {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                    Allocator {}.dealloc(z, layout);
                }
            }
        }
    }
}
