//! The C heap over the Rust global allocator (the image's heap): each block carries a 16-byte
//! header holding its payload size, payloads are 16-byte aligned (what glibc guarantees), and a
//! freed block is wiped before it is released (the engine's heap holds seeds and keys).
//! Allocation failure returns NULL with `errno = ENOMEM` and is counted and logged: the engine
//! does not always report it (it can drop into TPM failure mode silently, see the reference
//! §5), so the image reports [`failures`].

use crate::{errno, SizeT};
use alloc::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const HEADER: usize = 16;
const ALIGN: usize = 16;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static FAILURES: AtomicU64 = AtomicU64::new(0);

/// Payload bytes the C heap holds now.
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

/// Most payload bytes the C heap ever held at once.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The largest single block ever requested.
pub fn largest() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// Allocations that failed.
pub fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

fn layout(size: usize) -> Option<Layout> {
    let total = size.checked_add(HEADER)?;
    Layout::from_size_align(total, ALIGN).ok()
}

fn fail() -> *mut c_void {
    FAILURES.fetch_add(1, Ordering::Relaxed);
    errno::set(errno::ENOMEM);
    crate::log(b"libc-shim: malloc failed (heap exhausted)\n");
    core::ptr::null_mut()
}

fn account_alloc(size: usize) {
    let now = IN_USE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
    LARGEST.fetch_max(size, Ordering::Relaxed);
}

/// Allocates `size` payload bytes (zeroed or not) behind a header; null on failure.
fn allocate(size: usize, zeroed: bool) -> *mut c_void {
    crate::calls::bump(&crate::calls::ALLOC);
    let Some(layout) = layout(size) else {
        return fail();
    };
    // SAFETY: `layout` has a non-zero size (at least HEADER bytes).
    let base = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    if base.is_null() {
        return fail();
    }
    // SAFETY: `base` is a fresh, 16-byte aligned allocation of at least HEADER bytes.
    unsafe { base.cast::<usize>().write(size) };
    account_alloc(size);
    // SAFETY: HEADER <= the allocation's size, so the payload pointer is inside it (or one past
    // its end for a zero-size payload, which C never dereferences).
    unsafe { base.add(HEADER).cast() }
}

/// The payload size recorded in the header of a block from [`malloc`].
///
/// # Safety
/// `ptr` must be a live, non-null pointer returned by this module's allocation functions.
unsafe fn payload_size(ptr: *mut c_void) -> usize {
    // SAFETY: per the contract the header sits HEADER bytes before `ptr`, inside the block.
    unsafe { ptr.cast::<u8>().sub(HEADER).cast::<usize>().read() }
}

/// `void *malloc(size_t size)`: `size` bytes, 16-byte aligned; NULL and `ENOMEM` on failure.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn malloc(size: SizeT) -> *mut c_void {
    allocate(size, false)
}

/// `void *calloc(size_t n, size_t size)`: `n * size` zeroed bytes; NULL and `ENOMEM` when the
/// product overflows or the heap is exhausted.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn calloc(n: SizeT, size: SizeT) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => allocate(total, true),
        None => fail(),
    }
}

/// `void free(void *ptr)`: wipes and releases a block; NULL is ignored.
///
/// # Safety
/// `ptr` must be NULL or a live block from this module's `malloc`/`calloc`/`realloc`, not
/// freed before.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` is a live block from this module (caller contract).
    let size = unsafe { payload_size(ptr) };
    // SAFETY: the block spans HEADER + size bytes starting HEADER bytes before `ptr`.
    let base = unsafe { ptr.cast::<u8>().sub(HEADER) };
    // SAFETY: the payload is `size` writable bytes owned by the block being freed.
    unsafe { core::ptr::write_bytes(ptr.cast::<u8>(), 0, size) };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    IN_USE.fetch_sub(size, Ordering::Relaxed);
    // The layout was valid when the block was allocated, so it is valid now.
    if let Some(layout) = layout(size) {
        // SAFETY: `base` was allocated by the global allocator with exactly this layout.
        unsafe { dealloc(base, layout) };
    }
}

/// `void *realloc(void *ptr, size_t size)`: a block of `size` bytes with the old contents (up to
/// the smaller size); the old block is wiped and freed. NULL `ptr` acts as `malloc`. On failure
/// returns NULL with `ENOMEM` and leaves the old block untouched. `size` 0 frees `ptr` and
/// returns a fresh minimal block (like glibc's non-NULL answer).
///
/// # Safety
/// `ptr` must be NULL or a live block from this module, not freed before.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: SizeT) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    let new = malloc(size);
    if new.is_null() {
        return new;
    }
    // SAFETY: `ptr` is a live block from this module (caller contract).
    let old_size = unsafe { payload_size(ptr) };
    // SAFETY: both blocks are live and distinct; `min` bytes are inside each payload.
    unsafe {
        core::ptr::copy_nonoverlapping(ptr.cast::<u8>(), new.cast::<u8>(), old_size.min(size))
    };
    // SAFETY: `ptr` is live and no longer used by anyone after this call.
    unsafe { free(ptr) };
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malloc_realloc_free_track_usage() {
        let before = in_use();
        let p = malloc(100).cast::<u8>();
        assert!(!p.is_null());
        assert_eq!(p as usize % 16, 0);
        // SAFETY: 100 writable bytes.
        unsafe { core::ptr::write_bytes(p, 0xAB, 100) };
        // SAFETY: `p` is live.
        let q = unsafe { realloc(p.cast(), 300) }.cast::<u8>();
        assert!(!q.is_null());
        // SAFETY: the first 100 bytes were copied.
        assert!(unsafe { core::slice::from_raw_parts(q, 100) }
            .iter()
            .all(|&b| b == 0xAB));
        assert!(in_use() >= before + 300);
        // SAFETY: `q` is live.
        unsafe { free(q.cast()) };
        let z = calloc(4, 8).cast::<u8>();
        // SAFETY: 32 zeroed bytes.
        assert!(unsafe { core::slice::from_raw_parts(z, 32) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: `z` is live.
        unsafe { free(z.cast()) };
        assert!(calloc(usize::MAX, 2).is_null());
        assert!(malloc(usize::MAX - 8).is_null());
        assert!(failures() >= 2);
        assert!(peak() >= 300);
    }
}
