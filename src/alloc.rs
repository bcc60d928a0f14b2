//! The global allocator: mimalloc, asked for a plain block whenever a plain
//! block satisfies the layout.
//!
//! glibc's allocator spent much of a request's time consolidating chunks
//! freed on other threads (records are built on HTTP workers and written
//! elsewhere), hence mimalloc. The `mimalloc` crate's allocator hands every
//! request to `mi_malloc_aligned`, and mimalloc v3 serves an aligned request
//! over 1 KiB whose rounded size is not a power of two by over-allocating
//! (`mi_theap_malloc_zero_aligned_at_overalloc`, ~600 instructions, and a
//! larger block), even for an alignment of 8 that every block has anyway: a
//! sync webhook made seven such requests (the body's buffer, the record's
//! encoding, the answer), 5 % of its instructions. Every mimalloc block is
//! aligned to at least a machine word, so a layout aligned to a word or less
//! takes `mi_malloc`; the rest keep the aligned calls.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block has: a machine word (its blocks are
/// whole words, in pages that start aligned).
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, with plain calls for layouts aligned to a word or less.
pub(crate) struct Allocator;

// SAFETY: every method forwards to mimalloc, whose blocks are aligned to at
// least `PLAIN_ALIGN` (plain calls) or to the layout's alignment (aligned
// calls), and `dealloc`/`realloc` receive pointers this allocator returned.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around every small bin and across the 1 KiB line where the
    /// aligned calls change path, in every alignment Rust asks for.
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
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null(), "size {size} align {align}");
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    std::ptr::write_bytes(p, 0xa5, size);
                    let grown = Allocator.realloc(p, layout, size * 2 + 7);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0, "realloc {size} align {align}");
                    let kept = std::slice::from_raw_parts(grown, size);
                    assert!(
                        kept.iter().all(|b| *b == 0xa5),
                        "realloc {size} align {align}"
                    );
                    Allocator.dealloc(
                        grown,
                        Layout::from_size_align_unchecked(size * 2 + 7, align),
                    );

                    let z = Allocator.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "zeroed {size} align {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                    Allocator.dealloc(z, layout);
                }
            }
        }
    }
}
