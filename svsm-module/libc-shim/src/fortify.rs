//! glibc's `_FORTIFY_SOURCE` entry points the Debian objects were compiled against. The memory
//! ones are real with their bounds check (a failed check is fatal, as in glibc). The `printf`
//! family is never called on the engine's paths; it is not implemented (stable Rust cannot walk
//! a C `va_list`), so each call fails with -1 and `ENOSYS`, and the stream variants log their
//! raw format string so nothing disappears silently.

use crate::{errno, CChar, CInt, SizeT};
use core::ffi::{c_long, c_void, CStr};

/// `void *__memcpy_chk(void *dst, const void *src, size_t n, size_t dstlen)`: `memcpy` after
/// checking `n <= dstlen` (fatal otherwise).
///
/// # Safety
/// As `memcpy`: `src` readable and `dst` writable for `n` bytes, no overlap.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __memcpy_chk(
    dst: *mut c_void,
    src: *const c_void,
    n: SizeT,
    dstlen: SizeT,
) -> *mut c_void {
    if n > dstlen {
        crate::fatal("__memcpy_chk: buffer overflow");
    }
    // SAFETY: per the contract.
    unsafe { core::ptr::copy_nonoverlapping(src.cast::<u8>(), dst.cast::<u8>(), n) };
    dst
}

/// `void *__memset_chk(void *dst, int c, size_t n, size_t dstlen)`: `memset` after checking
/// `n <= dstlen` (fatal otherwise).
///
/// # Safety
/// As `memset`: `dst` writable for `n` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __memset_chk(
    dst: *mut c_void,
    c: CInt,
    n: SizeT,
    dstlen: SizeT,
) -> *mut c_void {
    if n > dstlen {
        crate::fatal("__memset_chk: buffer overflow");
    }
    // SAFETY: per the contract.
    unsafe { core::ptr::write_bytes(dst.cast::<u8>(), c as u8, n) };
    dst
}

/// `long __fdelt_chk(long fd)`: the `fd_set` word index of `fd`; fatal when `fd` is outside
/// `0..1024` (`FD_SETSIZE`), as in glibc.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __fdelt_chk(fd: c_long) -> c_long {
    if !(0..1024).contains(&fd) {
        crate::fatal("__fdelt_chk: file descriptor out of range");
    }
    fd / 64
}

/// Logs an unformatted `printf` format string (what the caller wanted to print).
///
/// # Safety
/// `fmt` NULL or NUL-terminated.
unsafe fn log_format(fmt: *const CChar) {
    if fmt.is_null() {
        return;
    }
    crate::log(b"libc-shim: unformatted printf: ");
    // SAFETY: NUL-terminated per the contract.
    crate::log(unsafe { CStr::from_ptr(fmt) }.to_bytes());
    crate::log(b"\n");
}

fn unsupported() -> CInt {
    crate::stub_called();
    errno::set(errno::ENOSYS);
    -1
}

/// `int __snprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, ...)`:
/// fails (-1, `ENOSYS`); `s` becomes the empty string when it has room.
///
/// # Safety
/// `s` writable for `n` bytes (or `n` 0).
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __snprintf_chk(
    s: *mut CChar,
    n: SizeT,
    _flag: CInt,
    _slen: SizeT,
    _fmt: *const CChar,
) -> CInt {
    if !s.is_null() && n > 0 {
        // SAFETY: n >= 1 writable bytes.
        unsafe { *s = 0 };
    }
    unsupported()
}

/// `int __vsnprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, va_list)`:
/// fails like [`__snprintf_chk`].
///
/// # Safety
/// `s` writable for `n` bytes (or `n` 0).
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __vsnprintf_chk(
    s: *mut CChar,
    n: SizeT,
    flag: CInt,
    slen: SizeT,
    fmt: *const CChar,
    _ap: *mut c_void,
) -> CInt {
    // SAFETY: forwarded contract.
    unsafe { __snprintf_chk(s, n, flag, slen, fmt) }
}

/// `int __asprintf_chk(char **strp, int flag, const char *fmt, ...)`: fails (-1, `ENOSYS`);
/// `*strp` is left unset, as C allows on failure.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __asprintf_chk(_strp: *mut *mut CChar, _flag: CInt, _fmt: *const CChar) -> CInt {
    unsupported()
}

/// `int __fprintf_chk(FILE *stream, int flag, const char *fmt, ...)`: logs the raw format
/// string and fails (-1, `ENOSYS`).
///
/// # Safety
/// `fmt` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __fprintf_chk(
    _stream: *mut c_void,
    _flag: CInt,
    fmt: *const CChar,
) -> CInt {
    // SAFETY: forwarded contract.
    unsafe { log_format(fmt) };
    unsupported()
}

/// `int __vfprintf_chk(FILE *stream, int flag, const char *fmt, va_list ap)`: as
/// [`__fprintf_chk`].
///
/// # Safety
/// `fmt` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __vfprintf_chk(
    stream: *mut c_void,
    flag: CInt,
    fmt: *const CChar,
    _ap: *mut c_void,
) -> CInt {
    // SAFETY: forwarded contract.
    unsafe { __fprintf_chk(stream, flag, fmt) }
}

/// `int __dprintf_chk(int fd, int flag, const char *fmt, ...)`: as [`__fprintf_chk`].
///
/// # Safety
/// `fmt` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __dprintf_chk(_fd: CInt, _flag: CInt, fmt: *const CChar) -> CInt {
    // SAFETY: forwarded contract.
    unsafe { log_format(fmt) };
    unsupported()
}

/// `int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap)`: as
/// [`__fprintf_chk`].
///
/// # Safety
/// `fmt` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __vdprintf_chk(
    fd: CInt,
    flag: CInt,
    fmt: *const CChar,
    _ap: *mut c_void,
) -> CInt {
    // SAFETY: forwarded contract.
    unsafe { __dprintf_chk(fd, flag, fmt) }
}

/// `int __isoc99_sscanf(const char *s, const char *fmt, ...)`: not implemented; returns `EOF`
/// (-1) with `ENOSYS`, i.e. "input failure before any conversion".
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __isoc99_sscanf(_s: *const CChar, _fmt: *const CChar) -> CInt {
    unsupported()
}

/// `void abort(void)`: fatal.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn abort() -> ! {
    crate::fatal("abort() called by C code")
}

/// `void __assert_fail(const char *expr, const char *file, unsigned line, const char *func)`:
/// logs the failed assertion, then fatal.
///
/// # Safety
/// `expr` and `file` NULL or NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __assert_fail(
    expr: *const CChar,
    file: *const CChar,
    _line: core::ffi::c_uint,
    _func: *const CChar,
) -> ! {
    crate::log(b"libc-shim: assertion failed: ");
    for s in [expr, file] {
        if !s.is_null() {
            // SAFETY: NUL-terminated per the contract.
            crate::log(unsafe { CStr::from_ptr(s) }.to_bytes());
            crate::log(b" ");
        }
    }
    crate::log(b"\n");
    crate::fatal("C assertion failed")
}

/// `void __stack_chk_fail(void)`: the stack protector found a smashed canary: fatal.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __stack_chk_fail() -> ! {
    crate::fatal("stack smashing detected (__stack_chk_fail)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_memory_and_failing_printf() {
        let mut dst = [0u8; 8];
        // SAFETY: 8-byte buffers.
        unsafe {
            __memcpy_chk(dst.as_mut_ptr().cast(), b"abcdefgh".as_ptr().cast(), 8, 8);
            assert_eq!(&dst, b"abcdefgh");
            __memset_chk(dst.as_mut_ptr().cast(), 0x41, 4, 8);
            assert_eq!(&dst, b"AAAAefgh");
            let mut s = [b'x' as CChar; 4];
            assert_eq!(__snprintf_chk(s.as_mut_ptr(), 4, 0, 4, c"%d".as_ptr()), -1);
            assert_eq!(s[0], 0);
        }
        assert_eq!(__fdelt_chk(130), 2);
        assert_eq!(__isoc99_sscanf(c"1".as_ptr(), c"%d".as_ptr()), -1);
    }
}
