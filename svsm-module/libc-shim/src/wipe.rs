//! Wipe-on-free for the image's Rust heap: [`WipeOnFree`] wraps a global allocator and zeroes
//! every block before giving it back, as [`crate::mem`] does for the C heap. Freed blocks held
//! TPM seeds, vault keys, unsealed state and guest plaintext; without the wipe they linger in
//! VMPL0 memory until reused. `realloc` is not forwarded to the inner allocator (which could
//! release the old block unwiped): the default path allocates, copies and then frees the old
//! block through [`WipeOnFree::dealloc`].

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{compiler_fence, Ordering};

/// A global allocator that wipes freed blocks.
pub struct WipeOnFree<A>(pub A);

/// Zeroes `len` bytes at `ptr` with volatile writes the compiler may not elide.
///
/// # Safety
/// `ptr..ptr + len` must be valid for writes.
pub unsafe fn wipe_block(ptr: *mut u8, len: usize) {
    for i in 0..len {
        // SAFETY: `i < len`, and the caller guarantees the whole range is writable.
        unsafe { ptr.add(i).write_volatile(0) };
    }
    compiler_fence(Ordering::SeqCst);
}

// SAFETY: allocation is the inner allocator's; a block is wiped only while it is still owned
// (before `dealloc` hands it back), and `realloc` uses the trait's default, which is built on
// `alloc` and `dealloc` of `self`.
unsafe impl<A: GlobalAlloc> GlobalAlloc for WipeOnFree<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !ptr.is_null() {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes from `alloc` (GlobalAlloc
            // contract), owned until the `dealloc` below.
            unsafe { wipe_block(ptr, layout.size()) };
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::sync::atomic::AtomicUsize;

    /// The system allocator, checking at every free that the block is all zeros.
    struct Checking {
        freed: AtomicUsize,
        dirty: AtomicUsize,
    }

    // SAFETY: delegates to the system allocator; only reads the block before freeing it.
    unsafe impl GlobalAlloc for Checking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` is a live block of `layout.size()` initialised bytes.
            let block = unsafe { core::slice::from_raw_parts(ptr, layout.size()) };
            self.freed.fetch_add(1, Ordering::SeqCst);
            if block.iter().any(|&b| b != 0) {
                self.dirty.fetch_add(1, Ordering::SeqCst);
            }
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn every_freed_block_is_zero_when_the_inner_allocator_gets_it_back() {
        let a = WipeOnFree(Checking {
            freed: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
        });
        let layout = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: every pointer is used within the block it was allocated as, then freed once.
        unsafe {
            let p = a.alloc(layout);
            p.write_bytes(0xA5, 48); // a key
            a.dealloc(p, layout);
            // realloc: the old block is freed through the wrapper, wiped.
            let q = a.alloc(layout);
            q.write_bytes(0x5A, 48);
            let r = a.realloc(q, layout, 4096);
            assert_eq!(*r.add(47), 0x5A, "contents moved");
            a.dealloc(r, Layout::from_size_align(4096, 8).unwrap());
        }
        assert_eq!(a.0.freed.load(Ordering::SeqCst), 3);
        assert_eq!(a.0.dirty.load(Ordering::SeqCst), 0);

        // The image's allocator before the wrapper (the inner one alone): the key is still in
        // the block when it is given back, and the check sees it.
        let bare = Checking {
            freed: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
        };
        // SAFETY: as above.
        unsafe {
            let p = bare.alloc(layout);
            p.write_bytes(0xA5, 48);
            bare.dealloc(p, layout);
        }
        assert_eq!(bare.dirty.load(Ordering::SeqCst), 1);
    }
}
