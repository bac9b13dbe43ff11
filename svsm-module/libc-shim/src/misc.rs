//! The rest of the 135: the process environment (empty), `rand`, and the families that can only
//! fail here because the image has no such thing: signals, terminals, sockets and name lookup,
//! `mmap`/shared memory, shared objects (`dl*`) and user contexts (OpenSSL's async jobs). None of
//! them is called on the engine's paths (checked by tracing the engine's calls); each fails with its C convention.

use crate::{errno, CChar, CInt, CLong, SizeT};
use core::cell::Cell;
use core::ffi::{c_uint, c_void};

fn fail<T>(value: T, code: CInt) -> T {
    crate::stub_called();
    errno::set(code);
    value
}

/// `char *getenv(const char *)`: NULL: the environment is empty (OpenSSL asks for
/// `OPENSSL_ia32cap`; without it, it uses every CPU feature CPUID reports).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getenv(_name: *const CChar) -> *mut CChar {
    core::ptr::null_mut()
}

/// `char *secure_getenv(const char *)`: NULL (empty environment; OpenSSL asks for
/// `OPENSSL_CONF`).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn secure_getenv(_name: *const CChar) -> *mut CChar {
    core::ptr::null_mut()
}

/// `pid_t getpid(void)`: 1, constant (OpenSSL uses it for fork detection: there is no fork).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getpid() -> CInt {
    1
}

/// `long sysconf(int)`: -1, `EINVAL` (no limits are reported).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn sysconf(_name: CInt) -> CLong {
    fail(-1, errno::EINVAL)
}

/// `int uname(struct utsname *)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn uname(_buf: *mut c_void) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `int atexit(void (*)(void))`: 0. The handler is accepted and never runs, because the image
/// never exits normally (it stops the machine). OpenSSL's initialisation fails if this fails.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn atexit(_f: Option<unsafe extern "C" fn()>) -> CInt {
    0
}

struct Seed(Cell<u32>);
// SAFETY: one CPU, no threads: never accessed concurrently.
unsafe impl Sync for Seed {}
static SEED: Seed = Seed(Cell::new(1));

/// `int rand(void)`: the C standard's example LCG (not for secrets, as C's `rand` never is;
/// libtpms calls it only in its entropy self-test bookkeeping).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn rand() -> CInt {
    let next = SEED
        .0
        .get()
        .wrapping_mul(1_103_515_245)
        .wrapping_add(12_345);
    SEED.0.set(next);
    ((next / 65_536) % 32_768) as CInt
}

/// `void srand(unsigned)`: seeds [`rand`].
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn srand(seed: c_uint) {
    SEED.0.set(seed);
}

/// `int sigaction(int, const struct sigaction *, struct sigaction *)`: -1, `ENOSYS` (no
/// signals).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn sigaction(_sig: CInt, _act: *const c_void, _old: *mut c_void) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `sighandler_t signal(int, sighandler_t)`: `SIG_ERR` (-1), `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn signal(_sig: CInt, _handler: *mut c_void) -> *mut c_void {
    fail(usize::MAX as *mut c_void, errno::ENOSYS)
}

/// `int tcgetattr(int, struct termios *)`: -1, `ENOTTY`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn tcgetattr(_fd: CInt, _t: *mut c_void) -> CInt {
    fail(-1, errno::ENOTTY)
}

/// `int tcsetattr(int, int, const struct termios *)`: -1, `ENOTTY`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn tcsetattr(_fd: CInt, _opt: CInt, _t: *const c_void) -> CInt {
    fail(-1, errno::ENOTTY)
}

// --- sockets and name lookup: there is no network stack --------------------------------------

/// `int socket(int, int, int)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn socket(_d: CInt, _t: CInt, _p: CInt) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `int bind(int, const struct sockaddr *, socklen_t)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn bind(_fd: CInt, _a: *const c_void, _l: c_uint) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int listen(int, int)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn listen(_fd: CInt, _backlog: CInt) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int accept(int, struct sockaddr *, socklen_t *)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn accept(_fd: CInt, _a: *mut c_void, _l: *mut c_uint) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int connect(int, const struct sockaddr *, socklen_t)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn connect(_fd: CInt, _a: *const c_void, _l: c_uint) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int shutdown(int, int)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn shutdown(_fd: CInt, _how: CInt) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int setsockopt(int, int, int, const void *, socklen_t)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn setsockopt(_fd: CInt, _l: CInt, _n: CInt, _v: *const c_void, _s: c_uint) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int getsockopt(int, int, int, void *, socklen_t *)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getsockopt(
    _fd: CInt,
    _l: CInt,
    _n: CInt,
    _v: *mut c_void,
    _s: *mut c_uint,
) -> CInt {
    fail(-1, errno::EBADF)
}

/// `int getsockname(int, struct sockaddr *, socklen_t *)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getsockname(_fd: CInt, _a: *mut c_void, _l: *mut c_uint) -> CInt {
    fail(-1, errno::EBADF)
}

/// `ssize_t sendmsg(int, const struct msghdr *, int)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn sendmsg(_fd: CInt, _m: *const c_void, _f: CInt) -> isize {
    fail(-1, errno::EBADF)
}

/// `ssize_t recvmsg(int, struct msghdr *, int)`: -1, `EBADF`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn recvmsg(_fd: CInt, _m: *mut c_void, _f: CInt) -> isize {
    fail(-1, errno::EBADF)
}

/// `int select(int, fd_set *, fd_set *, fd_set *, struct timeval *)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn select(
    _n: CInt,
    _r: *mut c_void,
    _w: *mut c_void,
    _e: *mut c_void,
    _t: *mut c_void,
) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `getaddrinfo`'s `EAI_FAIL`.
pub const EAI_FAIL: CInt = -4;

/// `int getaddrinfo(...)`: `EAI_FAIL` (no resolver); `*res` is not set.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getaddrinfo(
    _node: *const CChar,
    _service: *const CChar,
    _hints: *const c_void,
    _res: *mut *mut c_void,
) -> CInt {
    crate::stub_called();
    EAI_FAIL
}

/// `void freeaddrinfo(struct addrinfo *)`: nothing to free (no lookup ever succeeds).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn freeaddrinfo(_res: *mut c_void) {}

/// `const char *gai_strerror(int)`: a static message.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn gai_strerror(_code: CInt) -> *const CChar {
    c"name resolution is not available".as_ptr()
}

/// `int getnameinfo(...)`: `EAI_FAIL`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getnameinfo(
    _sa: *const c_void,
    _salen: c_uint,
    _host: *mut CChar,
    _hostlen: c_uint,
    _serv: *mut CChar,
    _servlen: c_uint,
    _flags: CInt,
) -> CInt {
    crate::stub_called();
    EAI_FAIL
}

/// `struct hostent *gethostbyname(const char *)`: NULL.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn gethostbyname(_name: *const CChar) -> *mut c_void {
    fail(core::ptr::null_mut(), errno::ENOSYS)
}

// --- virtual memory: the heap is the only memory C code gets ---------------------------------

/// `void *mmap(...)`: `MAP_FAILED` (-1), `ENOMEM` (OpenSSL's secure heap is not used).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn mmap(
    _addr: *mut c_void,
    _len: SizeT,
    _prot: CInt,
    _flags: CInt,
    _fd: CInt,
    _off: CLong,
) -> *mut c_void {
    fail(usize::MAX as *mut c_void, errno::ENOMEM)
}

/// `int munmap(void *, size_t)`: -1, `EINVAL` (nothing was mapped).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn munmap(_addr: *mut c_void, _len: SizeT) -> CInt {
    fail(-1, errno::EINVAL)
}

/// `int mprotect(void *, size_t, int)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn mprotect(_addr: *mut c_void, _len: SizeT, _prot: CInt) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `int madvise(void *, size_t, int)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn madvise(_addr: *mut c_void, _len: SizeT, _advice: CInt) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `int mlock(const void *, size_t)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn mlock(_addr: *const c_void, _len: SizeT) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `int shmget(key_t, size_t, int)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn shmget(_key: CInt, _size: SizeT, _flags: CInt) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `void *shmat(int, const void *, int)`: `(void *)-1`, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn shmat(_id: CInt, _addr: *const c_void, _flags: CInt) -> *mut c_void {
    fail(usize::MAX as *mut c_void, errno::ENOSYS)
}

/// `int shmdt(const void *)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn shmdt(_addr: *const c_void) -> CInt {
    fail(-1, errno::ENOSYS)
}

// --- shared objects ---------------------------------------------------------------------------

/// `void *dlopen(const char *, int)`: NULL (no dynamic loader).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn dlopen(_file: *const CChar, _mode: CInt) -> *mut c_void {
    crate::stub_called();
    core::ptr::null_mut()
}

/// `void *dlsym(void *, const char *)`: NULL.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn dlsym(_handle: *mut c_void, _name: *const CChar) -> *mut c_void {
    crate::stub_called();
    core::ptr::null_mut()
}

/// `int dlclose(void *)`: -1 (no handle was ever opened).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn dlclose(_handle: *mut c_void) -> CInt {
    crate::stub_called();
    -1
}

/// `char *dlerror(void)`: a static message.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn dlerror() -> *const CChar {
    c"shared objects are not supported".as_ptr()
}

/// `int dladdr(const void *, Dl_info *)`: 0 (failure: no symbol information).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn dladdr(_addr: *const c_void, _info: *mut c_void) -> CInt {
    crate::stub_called();
    0
}

// --- user contexts (OpenSSL async jobs) ------------------------------------------------------

/// `int getcontext(ucontext_t *)`: -1, `ENOSYS` (OpenSSL then runs without async jobs).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn getcontext(_ctx: *mut c_void) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `int setcontext(const ucontext_t *)`: -1, `ENOSYS`.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn setcontext(_ctx: *const c_void) -> CInt {
    fail(-1, errno::ENOSYS)
}

/// `void makecontext(ucontext_t *, void (*)(void), int, ...)`: does nothing (it cannot report
/// failure; it is only reachable after a successful `getcontext`, which never happens).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn makecontext(_ctx: *mut c_void, _f: Option<unsafe extern "C" fn()>, _argc: CInt) {
    crate::stub_called();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_and_failures() {
        assert!(getenv(c"OPENSSL_CONF".as_ptr()).is_null());
        // Constant and documented: OpenSSL compares pids to detect a fork, which cannot happen.
        assert_eq!(getpid(), 1);
        srand(7);
        let a = rand();
        srand(7);
        assert_eq!(rand(), a);
        assert!((0..32768).contains(&a));
        assert_eq!(socket(2, 1, 0), -1);
        assert_eq!(
            mmap(core::ptr::null_mut(), 4096, 3, 0x22, -1, 0) as usize,
            usize::MAX
        );
        assert!(dlopen(core::ptr::null(), 0).is_null());
        assert_eq!(getcontext(core::ptr::null_mut()), -1);
        assert_eq!(
            getaddrinfo(
                core::ptr::null(),
                core::ptr::null(),
                core::ptr::null(),
                core::ptr::null_mut()
            ),
            EAI_FAIL
        );
    }
}
