//! `libc-shim`: the C library the freestanding SVSM image does not have, written in Rust, for
//! exactly the 135 libc/POSIX symbols Debian's `libtpms.a` and `libcrypto.a` reference when the
//! vTPM is linked (the undefined symbols `nm -u` lists for the two archives; see
//! `svsm-module/image/README.md`).
//!
//! Rules every function here follows:
//! - What the engine really uses is real: the heap (`malloc` family, over the Rust global
//!   allocator, freed blocks wiped), strings, `pthread_once` and thread-specific keys, errno,
//!   time from the TSC, `setjmp`/`longjmp`, entropy from RDRAND.
//! - Everything else fails cleanly and says so through its C error convention (NULL, -1 with
//!   `errno`, `EOF`, ...): there are no files, sockets, signals, shared objects or processes,
//!   and nothing pretends there are. Output to `stderr` goes to the image's log sink.
//! - **Entropy fails closed** ([`entropy`]): a failed RDRAND read makes `getrandom` fail and
//!   latches, so every later read fails too; OpenSSL's seeding then fails and the TPM refuses
//!   to run. The image checks [`entropy::failed`] after every engine call.
//! - Fatal conditions (`abort`, failed assertions, stack-protector and fortify failures) call
//!   the image's fatal hook ([`set_fatal_hook`]), which wipes secrets and stops the machine.
//!
//! The C symbols are exported un-mangled only for `target_os = "none"`; on a hosted target the
//! same functions are ordinary Rust functions (so the unit tests run them without clashing
//! with the host's libc). Variadic C functions (`syscall`, `fcntl`, the `printf` family, ...)
//! are defined with a fixed arity: under the x86-64 System V ABI a variadic call passes its
//! integer arguments in the same registers as a fixed-arity call, and stable Rust cannot define
//! C-variadic functions.
//!
//! Single CPU, no threads, interrupts off while the engine runs: the shim's global state uses
//! atomics or plain cells accessed from that one context only.

#![no_std]

extern crate alloc;

pub mod ctype;
pub mod entropy;
pub mod errno;
pub mod fortify;
pub mod mem;
pub mod misc;
#[cfg(target_os = "none")]
pub mod setjmp;
pub mod stdio;
pub mod string;
pub mod thread;
pub mod time;
pub mod wipe;

use core::sync::atomic::{AtomicPtr, Ordering};

/// `int` in C.
pub type CInt = core::ffi::c_int;
/// `long` in C.
pub type CLong = core::ffi::c_long;
/// `char` in C.
pub type CChar = core::ffi::c_char;
/// `size_t` in C.
pub type SizeT = usize;

static LOG_SINK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static FATAL_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Where the shim writes what C code sends to `stderr` (and its own diagnostics). Without a
/// sink, such output is dropped.
pub fn set_log_sink(sink: fn(&[u8])) {
    LOG_SINK.store(sink as *mut (), Ordering::SeqCst);
}

/// What `abort`, failed assertions and fortify/stack-protector failures call. It must not
/// return. Without a hook, the shim spins forever (the CPU stops making progress; nothing
/// continues on corrupt state).
pub fn set_fatal_hook(hook: fn(&str) -> !) {
    FATAL_HOOK.store(hook as *mut (), Ordering::SeqCst);
}

/// Writes `bytes` to the log sink, if one is set.
pub fn log(bytes: &[u8]) {
    let p = LOG_SINK.load(Ordering::SeqCst);
    if p.is_null() {
        return;
    }
    // SAFETY: LOG_SINK only ever holds null or a `fn(&[u8])` stored by `set_log_sink`.
    let sink: fn(&[u8]) = unsafe { core::mem::transmute::<*mut (), fn(&[u8])>(p) };
    sink(bytes);
}

/// Stops: calls the fatal hook, or spins forever without one.
pub fn fatal(why: &str) -> ! {
    let p = FATAL_HOOK.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: FATAL_HOOK only ever holds null or a `fn(&str) -> !` stored by
        // `set_fatal_hook`.
        let hook: fn(&str) -> ! = unsafe { core::mem::transmute::<*mut (), fn(&str) -> !>(p) };
        hook(why);
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Counts calls per symbol group, for the image's statistics ("which shim functions ran").
pub mod calls {
    use core::sync::atomic::{AtomicU64, Ordering};

    /// `malloc`/`calloc`/`realloc` calls.
    pub static ALLOC: AtomicU64 = AtomicU64::new(0);
    /// Calls to functions that can only fail here (files, sockets, dl*, mmap, signals, ...).
    pub static FAILING_STUB: AtomicU64 = AtomicU64::new(0);
    /// `getrandom` requests (through `syscall(SYS_getrandom)`).
    pub static GETRANDOM: AtomicU64 = AtomicU64::new(0);
    /// `clock_gettime`/`time`/`gettimeofday`/`clock`.
    pub static TIME: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Marks a call to a function that can only fail here.
pub(crate) fn stub_called() {
    calls::bump(&calls::FAILING_STUB);
}
