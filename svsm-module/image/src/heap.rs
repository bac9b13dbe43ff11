//! The heap: a linked-list allocator over one RAM range after the image, behind a spin lock,
//! counting bytes in use and the high-water mark. Every freed block is zeroed before the
//! allocator takes it back (`libc_shim::wipe::WipeOnFree`), and on a panic or fatal error the
//! whole range is wiped ([`wipe`]): it holds the TPM seeds, the vault keys and the key hierarchy.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use libc_shim::wipe::WipeOnFree;
use linked_list_allocator::Heap;
use spin::Mutex;

/// Heap size. Measured peak 5.1 MiB: the engine (libtpms + OpenSSL) 0.5 MiB, the
/// emulated guest memory 4 MiB, the frame buffers 0.75 MiB; the rest is headroom for the vault.
#[cfg_attr(feature = "snp", allow(dead_code))] // PVH only (the SNP heap is the rest of the SVSM memory; no statistics call)
pub const HEAP_SIZE: usize = 16 * 1024 * 1024;

/// The image's global allocator.
pub struct ImageHeap {
    heap: Mutex<Heap>,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    failures: AtomicU64,
    start: AtomicUsize,
    size: AtomicUsize,
}

#[global_allocator]
static HEAP: WipeOnFree<ImageHeap> = WipeOnFree(ImageHeap {
    heap: Mutex::new(Heap::empty()),
    in_use: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    failures: AtomicU64::new(0),
    start: AtomicUsize::new(0),
    size: AtomicUsize::new(0),
});

/// Hands the range `[start, start + size)` to the allocator.
///
/// # Safety
/// The range must be mapped, writable RAM used by nothing else, for the rest of the run; call
/// once.
pub unsafe fn init(start: usize, size: usize) {
    HEAP.0.start.store(start, Ordering::SeqCst);
    HEAP.0.size.store(size, Ordering::SeqCst);
    // SAFETY: per the caller's contract.
    unsafe { HEAP.0.heap.lock().init(start as *mut u8, size) };
}

// SAFETY: allocation is delegated to `linked_list_allocator::Heap` under a lock, which returns
// blocks of at least the layout's size and alignment from the range given to `init`, or null.
unsafe impl GlobalAlloc for ImageHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.heap.lock().allocate_first_fit(layout) {
            Ok(p) => {
                let now = self.in_use.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
                self.peak.fetch_max(now, Ordering::Relaxed);
                p.as_ptr()
            }
            Err(()) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            self.in_use.fetch_sub(layout.size(), Ordering::Relaxed);
            // SAFETY: `ptr` was returned by `alloc` with this layout (GlobalAlloc contract).
            unsafe { self.heap.lock().deallocate(p, layout) };
        }
    }
}

/// Heap statistics.
#[cfg_attr(feature = "snp", allow(dead_code))] // PVH only (the SNP heap is the rest of the SVSM memory; no statistics call)
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Bytes allocated now.
    pub in_use: usize,
    /// Most bytes allocated at once.
    pub peak: usize,
    /// Heap size.
    pub size: usize,
    /// Failed allocations.
    pub failures: u64,
}

/// The current statistics.
#[cfg_attr(feature = "snp", allow(dead_code))] // PVH only (the SNP heap is the rest of the SVSM memory; no statistics call)
pub fn stats() -> Stats {
    Stats {
        in_use: HEAP.0.in_use.load(Ordering::Relaxed),
        peak: HEAP.0.peak.load(Ordering::Relaxed),
        size: HEAP.0.size.load(Ordering::Relaxed),
        failures: HEAP.0.failures.load(Ordering::Relaxed),
    }
}

/// Zeroes the whole heap range (on the way out after a panic or fatal error: nothing may use
/// the heap afterwards).
pub fn wipe() {
    let start = HEAP.0.start.load(Ordering::SeqCst);
    let size = HEAP.0.size.load(Ordering::SeqCst);
    if start == 0 || size == 0 {
        return;
    }
    // SAFETY: the range was handed to `init` as RAM owned by the heap; the caller is about to
    // stop the machine, so no live allocation is used again. Volatile so it is not elided.
    unsafe {
        let p = start as *mut u64;
        for i in 0..size / 8 {
            p.add(i).write_volatile(0);
        }
    }
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}
