//! `errno`: one `int` (one CPU, no threads), reached through `__errno_location` as glibc does.

use crate::CInt;
use core::cell::UnsafeCell;

/// No such file or directory.
pub const ENOENT: CInt = 2;
/// I/O error.
pub const EIO: CInt = 5;
/// Bad file descriptor.
pub const EBADF: CInt = 9;
/// Out of memory.
pub const ENOMEM: CInt = 12;
/// Invalid argument.
pub const EINVAL: CInt = 22;
/// Not a terminal.
pub const ENOTTY: CInt = 25;
/// Illegal seek.
pub const ESPIPE: CInt = 29;
/// Result out of range.
pub const ERANGE: CInt = 34;
/// Function not implemented.
pub const ENOSYS: CInt = 38;

struct ErrnoCell(UnsafeCell<CInt>);

// SAFETY: the image runs C and Rust on one CPU without threads or preemption (interrupts are
// off), so the cell is never accessed concurrently.
unsafe impl Sync for ErrnoCell {}

static ERRNO: ErrnoCell = ErrnoCell(UnsafeCell::new(0));

/// `int *__errno_location(void)`: where C code reads and writes `errno`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __errno_location() -> *mut CInt {
    ERRNO.0.get()
}

/// Sets `errno`.
pub fn set(value: CInt) {
    // SAFETY: single-context access (see `ErrnoCell`); the pointer is to a live static.
    unsafe { *ERRNO.0.get() = value };
}

/// Reads `errno`.
pub fn get() -> CInt {
    // SAFETY: as in `set`.
    unsafe { *ERRNO.0.get() }
}
