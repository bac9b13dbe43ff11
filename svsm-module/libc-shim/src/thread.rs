//! The pthread subset OpenSSL uses, for one CPU with one thread of execution.
//! - `pthread_once` really runs the routine once (OpenSSL's whole lazy initialisation hangs on
//!   it).
//! - Thread-specific keys are a real table (OpenSSL keeps its per-thread DRBGs and error state
//!   there): there is one thread, so one value per key.
//! - Read-write locks do nothing and succeed: with one thread and no preemption there is never
//!   a second holder to exclude. That is the truth here, not a pretence; an image with several
//!   CPUs running the engine would need real locks.

use crate::{errno, CInt};
use core::cell::UnsafeCell;
use core::ffi::{c_uint, c_void};

/// Most keys that can exist at once (OpenSSL creates 6).
pub const MAX_KEYS: usize = 64;

#[derive(Clone, Copy)]
struct Key {
    used: bool,
    value: *mut c_void,
}

struct Keys(UnsafeCell<[Key; MAX_KEYS]>);

// SAFETY: one CPU, one thread of execution, no preemption: never accessed concurrently.
unsafe impl Sync for Keys {}

static KEYS: Keys = Keys(UnsafeCell::new(
    [Key {
        used: false,
        value: core::ptr::null_mut(),
    }; MAX_KEYS],
));

fn keys() -> &'static mut [Key; MAX_KEYS] {
    // SAFETY: single-context access (see `Keys`), and no caller keeps the reference across
    // another call into this module.
    unsafe { &mut *KEYS.0.get() }
}

/// `int pthread_once(pthread_once_t *once, void (*init)(void))`: runs `init` the first time
/// this control is used (glibc's `PTHREAD_ONCE_INIT` is 0). A nested call on the same control
/// from inside `init` returns without running it again (one thread cannot wait for itself).
///
/// # Safety
/// `once` must point to a `pthread_once_t` (an `int`) initialised to 0; `init` a valid
/// function.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn pthread_once(
    once: *mut CInt,
    init: Option<unsafe extern "C" fn()>,
) -> CInt {
    if once.is_null() {
        return errno::EINVAL;
    }
    // SAFETY: valid per the contract.
    if unsafe { *once } != 0 {
        return 0;
    }
    // SAFETY: as above.
    unsafe { *once = 1 };
    if let Some(f) = init {
        // SAFETY: a valid C function per the contract.
        unsafe { f() };
    }
    // SAFETY: as above.
    unsafe { *once = 2 };
    0
}

/// `int pthread_key_create(pthread_key_t *key, void (*destructor)(void *))`: a new key whose
/// value starts NULL. The destructor never runs (the one thread never exits). `EAGAIN` (11)
/// when all [`MAX_KEYS`] are in use.
///
/// # Safety
/// `key` writable.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn pthread_key_create(
    key: *mut c_uint,
    _destructor: Option<unsafe extern "C" fn(*mut c_void)>,
) -> CInt {
    if key.is_null() {
        return errno::EINVAL;
    }
    let table = keys();
    let Some(i) = table.iter().position(|k| !k.used) else {
        return 11; // EAGAIN
    };
    if let Some(slot) = table.get_mut(i) {
        *slot = Key {
            used: true,
            value: core::ptr::null_mut(),
        };
    }
    // SAFETY: writable per the contract; i < MAX_KEYS fits in c_uint.
    unsafe { *key = i as c_uint };
    0
}

/// `int pthread_key_delete(pthread_key_t key)`: frees the key; `EINVAL` if it does not exist.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_key_delete(key: c_uint) -> CInt {
    match keys().get_mut(key as usize) {
        Some(k) if k.used => {
            k.used = false;
            k.value = core::ptr::null_mut();
            0
        }
        _ => errno::EINVAL,
    }
}

/// `void *pthread_getspecific(pthread_key_t key)`: the key's value (NULL for unknown keys).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_getspecific(key: c_uint) -> *mut c_void {
    match keys().get(key as usize) {
        Some(k) if k.used => k.value,
        _ => core::ptr::null_mut(),
    }
}

/// `int pthread_setspecific(pthread_key_t key, const void *value)`: sets the key's value;
/// `EINVAL` for unknown keys.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_setspecific(key: c_uint, value: *const c_void) -> CInt {
    match keys().get_mut(key as usize) {
        Some(k) if k.used => {
            k.value = value.cast_mut();
            0
        }
        _ => errno::EINVAL,
    }
}

/// `pthread_t pthread_self(void)`: 1, the one thread.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_self() -> core::ffi::c_ulong {
    1
}

/// `int pthread_rwlock_init(pthread_rwlock_t *, const pthread_rwlockattr_t *)`: 0 (see the
/// module documentation: nothing to exclude).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_rwlock_init(_lock: *mut c_void, _attr: *const c_void) -> CInt {
    0
}

/// `int pthread_rwlock_destroy(pthread_rwlock_t *)`: 0.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_rwlock_destroy(_lock: *mut c_void) -> CInt {
    0
}

/// `int pthread_rwlock_rdlock(pthread_rwlock_t *)`: 0 (one thread: never contended).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_rwlock_rdlock(_lock: *mut c_void) -> CInt {
    0
}

/// `int pthread_rwlock_wrlock(pthread_rwlock_t *)`: 0 (one thread: never contended).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_rwlock_wrlock(_lock: *mut c_void) -> CInt {
    0
}

/// `int pthread_rwlock_unlock(pthread_rwlock_t *)`: 0.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn pthread_rwlock_unlock(_lock: *mut c_void) -> CInt {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU32, Ordering};

    static RUNS: AtomicU32 = AtomicU32::new(0);
    unsafe extern "C" fn init() {
        RUNS.fetch_add(1, Ordering::SeqCst);
    }

    // One test only: the key table is process-global and the test threads would share it.
    #[test]
    fn once_and_keys() {
        let mut once: CInt = 0;
        // SAFETY: valid control and routine.
        unsafe {
            assert_eq!(pthread_once(&mut once, Some(init)), 0);
            assert_eq!(pthread_once(&mut once, Some(init)), 0);
        }
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
        let mut k: c_uint = 99;
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { pthread_key_create(&mut k, None) }, 0);
        assert!(pthread_getspecific(k).is_null());
        let v = 0x1234usize as *const c_void;
        assert_eq!(pthread_setspecific(k, v), 0);
        assert_eq!(pthread_getspecific(k), v.cast_mut());
        assert_eq!(pthread_key_delete(k), 0);
        assert_eq!(pthread_key_delete(k), errno::EINVAL);
        assert_eq!(pthread_setspecific(k, v), errno::EINVAL);
    }
}
