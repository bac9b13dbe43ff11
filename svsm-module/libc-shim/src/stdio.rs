//! Files, streams and descriptors: there are none. `stderr` (and descriptor 2) is the image's
//! log sink, so diagnostics written by C code are kept; every other stream operation fails with
//! its C error convention. `fopen` is called once by OpenSSL's config loader (for its compiled-in
//! `openssl.cnf`), which treats NULL as "no config file".

use crate::{errno, CChar, CInt, CLong, SizeT};
use core::ffi::{c_void, CStr};

/// The stream objects C code names. Only their addresses matter: they are compared, never
/// dereferenced by the C side (all stream functions are here).
#[repr(C)]
pub struct FileMarker(u8);

static STDERR_FILE: FileMarker = FileMarker(2);
static STDIN_FILE: FileMarker = FileMarker(0);

/// A `FILE *` C code reads from the `stderr`/`stdin` globals.
#[repr(transparent)]
pub struct FilePtr(*const FileMarker);

// SAFETY: points to an immutable static; never written through.
unsafe impl Sync for FilePtr {}

/// `FILE *stderr`: the log sink.
#[cfg_attr(target_os = "none", no_mangle)]
#[allow(non_upper_case_globals)]
pub static stderr: FilePtr = FilePtr(&STDERR_FILE);

/// `FILE *stdin`: a stream that is always at an error (there is no input).
#[cfg_attr(target_os = "none", no_mangle)]
#[allow(non_upper_case_globals)]
pub static stdin: FilePtr = FilePtr(&STDIN_FILE);

fn is_stderr(stream: *mut c_void) -> bool {
    core::ptr::eq(stream.cast_const().cast::<FileMarker>(), &STDERR_FILE)
}

fn fail<T>(value: T, code: CInt) -> T {
    crate::stub_called();
    errno::set(code);
    value
}

/// `FILE *fopen(const char *path, const char *mode)`: NULL, `ENOENT` (there is no file system).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fopen(_path: *const CChar, _mode: *const CChar) -> *mut c_void {
    fail(core::ptr::null_mut(), errno::ENOENT)
}

/// `FILE *fopen64(const char *path, const char *mode)`: as [`fopen`].
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fopen64(path: *const CChar, mode: *const CChar) -> *mut c_void {
    fopen(path, mode)
}

/// `int fclose(FILE *)`: `EOF`, `EBADF` (no stream was ever opened).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fclose(_stream: *mut c_void) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int feof(FILE *)`: 0 (the error, not end of file, is what `ferror` reports).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn feof(_stream: *mut c_void) -> CInt {
    0
}

/// `int ferror(FILE *)`: 1 for every stream but `stderr` (they cannot be read or written).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn ferror(stream: *mut c_void) -> CInt {
    CInt::from(!is_stderr(stream))
}

/// `int fflush(FILE *)`: 0 for `stderr` and NULL (the sink is unbuffered); `EOF`/`EBADF`
/// otherwise.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fflush(stream: *mut c_void) -> CInt {
    if stream.is_null() || is_stderr(stream) {
        0
    } else {
        fail(-1, errno::EBADF)
    }
}

/// `char *fgets(char *s, int n, FILE *)`: NULL, `EBADF` (there is no input).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fgets(_s: *mut CChar, _n: CInt, _stream: *mut c_void) -> *mut CChar {
    fail(core::ptr::null_mut(), errno::EBADF)
}

/// `int fileno(FILE *)`: 2 for `stderr`, -1 `EBADF` otherwise.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fileno(stream: *mut c_void) -> CInt {
    if is_stderr(stream) {
        2
    } else {
        fail(-1, errno::EBADF)
    }
}

/// `int fputc(int c, FILE *)`: writes to the log for `stderr`; `EOF`/`EBADF` otherwise.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fputc(c: CInt, stream: *mut c_void) -> CInt {
    if is_stderr(stream) {
        crate::log(&[c as u8]);
        c & 0xff
    } else {
        fail(-1, errno::EBADF)
    }
}

/// `int fputs(const char *s, FILE *)`: writes to the log for `stderr`; `EOF`/`EBADF` otherwise.
///
/// # Safety
/// `s` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn fputs(s: *const CChar, stream: *mut c_void) -> CInt {
    if is_stderr(stream) && !s.is_null() {
        // SAFETY: NUL-terminated per the contract.
        crate::log(unsafe { CStr::from_ptr(s) }.to_bytes());
        0
    } else {
        fail(-1, errno::EBADF)
    }
}

/// `size_t fwrite(const void *p, size_t size, size_t n, FILE *)`: writes to the log for
/// `stderr` (returns `n`); 0 with `EBADF` otherwise.
///
/// # Safety
/// `p` readable for `size * n` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn fwrite(
    p: *const c_void,
    size: SizeT,
    n: SizeT,
    stream: *mut c_void,
) -> SizeT {
    match (is_stderr(stream), size.checked_mul(n)) {
        (true, Some(total)) if !p.is_null() => {
            // SAFETY: readable per the contract.
            crate::log(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), total) });
            n
        }
        _ => fail(0, errno::EBADF),
    }
}

/// `size_t fread(void *p, size_t size, size_t n, FILE *)`: 0, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fread(_p: *mut c_void, _size: SizeT, _n: SizeT, _stream: *mut c_void) -> SizeT {
    fail(0, errno::EBADF)
}

/// `int fseek(FILE *, long, int)`: -1, `ESPIPE`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fseek(_stream: *mut c_void, _off: CLong, _whence: CInt) -> CInt {
    fail(-1, errno::ESPIPE)
}

/// `long ftell(FILE *)`: -1, `ESPIPE`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn ftell(_stream: *mut c_void) -> CLong {
    fail(-1, errno::ESPIPE)
}

/// `void perror(const char *s)`: logs `s` and the current `errno` text.
///
/// # Safety
/// `s` NULL or NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn perror(s: *const CChar) {
    if !s.is_null() {
        // SAFETY: NUL-terminated per the contract.
        crate::log(unsafe { CStr::from_ptr(s) }.to_bytes());
        crate::log(b": ");
    }
    // SAFETY: strerror returns a static NUL-terminated string.
    crate::log(unsafe { CStr::from_ptr(crate::string::strerror(errno::get())) }.to_bytes());
    crate::log(b"\n");
}

/// `int remove(const char *)`: -1, `ENOENT`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn remove(_path: *const CChar) -> CInt {
    fail(-1, errno::ENOENT)
}

/// `int open(const char *path, int flags, ...)`: -1, `ENOENT` (OpenSSL tries its random
/// devices only when `getrandom` failed; they do not exist here either).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn open(_path: *const CChar, _flags: CInt, _mode: CInt) -> CInt {
    fail(-1, errno::ENOENT)
}

/// `ssize_t read(int fd, void *p, size_t n)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn read(_fd: CInt, _p: *mut c_void, _n: SizeT) -> isize {
    fail(-1, errno::EBADF)
}

/// `ssize_t write(int fd, const void *p, size_t n)`: descriptor 2 writes to the log (returns
/// `n`); others -1, `EBADF`.
///
/// # Safety
/// `p` readable for `n` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn write(fd: CInt, p: *const c_void, n: SizeT) -> isize {
    if fd == 2 && !p.is_null() && isize::try_from(n).is_ok() {
        // SAFETY: readable per the contract.
        crate::log(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n) });
        n as isize
    } else {
        fail(-1, errno::EBADF)
    }
}

/// `int close(int fd)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn close(_fd: CInt) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int fcntl(int fd, int cmd, ...)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fcntl(_fd: CInt, _cmd: CInt, _arg: CLong) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int ioctl(int fd, unsigned long req, ...)`: -1, `ENOTTY`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn ioctl(_fd: CInt, _req: core::ffi::c_ulong, _arg: CLong) -> CInt {
    fail(-1, errno::ENOTTY)
}

/// `int stat(const char *, struct stat *)`: -1, `ENOENT`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn stat(_path: *const CChar, _st: *mut c_void) -> CInt {
    fail(-1, errno::ENOENT)
}

/// `int fstat(int fd, struct stat *)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn fstat(_fd: CInt, _st: *mut c_void) -> CInt {
    fail(-1, errno::EBADF)
}

/// `DIR *opendir(const char *)`: NULL, `ENOENT`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn opendir(_path: *const CChar) -> *mut c_void {
    fail(core::ptr::null_mut(), errno::ENOENT)
}

/// `struct dirent *readdir(DIR *)`: NULL, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn readdir(_dir: *mut c_void) -> *mut c_void {
    fail(core::ptr::null_mut(), errno::EBADF)
}

/// `int closedir(DIR *)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn closedir(_dir: *mut c_void) -> CInt {
    fail(-1, errno::EBADF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stderr_exists() {
        let err = stderr.0.cast_mut().cast::<c_void>();
        let inp = stdin.0.cast_mut().cast::<c_void>();
        assert!(fopen(c"/etc/ssl/openssl.cnf".as_ptr(), c"r".as_ptr()).is_null());
        assert_eq!(fileno(err), 2);
        assert_eq!(fileno(inp), -1);
        assert_eq!(ferror(inp), 1);
        assert_eq!(fputc(b'x' as CInt, inp), -1);
        assert_eq!(open(c"/dev/urandom".as_ptr(), 0, 0), -1);
        let mut b = [0u8; 4];
        assert_eq!(read(0, b.as_mut_ptr().cast(), 4), -1);
        // SAFETY: 4 readable bytes.
        assert_eq!(unsafe { write(2, b.as_ptr().cast(), 4) }, 4);
        // SAFETY: as above.
        assert_eq!(unsafe { write(1, b.as_ptr().cast(), 4) }, -1);
    }
}
