//! The lock behind the engine's one-owner rule. Hosted, it is `std::sync::Mutex` (poisoning
//! ignored: the guarded data is flags and byte vectors, valid wherever a panic interrupted, and
//! one panicking caller must not wedge all others). Freestanding (the SVSM image, one CPU, no
//! threads, panics abort), it is a spin lock from the `spin` crate: it never contends, and a
//! re-entrant lock attempt would hang rather than corrupt, which the lock order in `crate::ffi`
//! rules out.

#[cfg(not(feature = "freestanding"))]
mod imp {
    pub(crate) use std::sync::{Mutex, MutexGuard};

    /// Locks `m`, ignoring poisoning.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(feature = "freestanding")]
mod imp {
    pub(crate) use spin::{Mutex, MutexGuard};

    /// Locks `m`.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock()
    }
}

pub(crate) use imp::{lock, Mutex};
