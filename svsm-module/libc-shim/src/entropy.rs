//! Entropy from RDRAND, failing closed.
//!
//! OpenSSL seeds its DRBGs (and through them every libtpms seed and key) from one
//! `syscall(SYS_getrandom)`; the Rust side of the image (vault IVs, instance id) calls [`fill`].
//! Both read the CPU's DRNG with RDRAND:
//! - a read that does not succeed within [`RETRIES`] attempts (CF=0, the DRNG's own failure
//!   signal), an all-zero or all-one word (the signature of known broken RDRAND
//!   implementations), or a word equal to the previous one, is a failure;
//! - a failure **latches**: [`failed`] turns true and every later read fails too, so no caller
//!   can go on with a partly weak stream;
//! - on failure the output buffer is wiped and the caller gets an error (`getrandom` returns -1
//!   with `EIO`). OpenSSL then has no seed, and the image, which checks [`failed`] after every
//!   engine call, stops the TPM (a TPM that failed to seed must not run, although libtpms
//!   itself reports success for manufacture and some commands, as observed on this engine).
//!
//! A CPU without RDRAND has no entropy source here: every read fails.

use crate::{errno, CLong, SizeT};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// RDRAND attempts per 64-bit word before the source is declared failed (Intel's guidance for
/// transient underflow is 10).
pub const RETRIES: usize = 10;
/// Linux x86-64 `SYS_getrandom`.
pub const SYS_GETRANDOM: CLong = 318;

static FAILED: AtomicBool = AtomicBool::new(false);
static LAST: AtomicU64 = AtomicU64::new(0);
/// 0 = not probed, 1 = RDRAND present, 2 = absent.
static SUPPORT: AtomicU8 = AtomicU8::new(0);

/// The entropy source failed (now or earlier); nothing derived from it may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntropyFailed;

/// True once any read failed. Latched: stays true until the machine restarts.
pub fn failed() -> bool {
    FAILED.load(Ordering::SeqCst)
}

/// Declares the source failed (fault injection for tests of the fail-closed path, and what the
/// image does when its own checks fail).
pub fn inject_failure() {
    FAILED.store(true, Ordering::SeqCst);
}

fn rdrand_supported() -> bool {
    match SUPPORT.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // CPUID leaf 1, ECX bit 30 = RDRAND.
            let ecx: u32;
            // SAFETY: CPUID only writes the named registers; rbx is saved and restored because
            // LLVM reserves it.
            unsafe {
                core::arch::asm!(
                    "mov {tmp:r}, rbx",
                    "cpuid",
                    "mov rbx, {tmp:r}",
                    tmp = out(reg) _,
                    inout("eax") 1u32 => _,
                    inout("ecx") 0u32 => ecx,
                    out("edx") _,
                    options(nostack, preserves_flags),
                )
            };
            let ok = ecx & (1 << 30) != 0;
            SUPPORT.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// One RDRAND attempt: `Some(word)` when the DRNG reported success (CF=1).
fn rdrand_once() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: RDRAND only writes the output register and flags; support was checked.
    unsafe {
        core::arch::asm!(
            "rdrand {v}",
            "setc {ok}",
            v = out(reg) value,
            ok = out(reg_byte) ok,
            options(nomem, nostack),
        )
    };
    (ok == 1).then_some(value)
}

fn word() -> Result<u64, EntropyFailed> {
    for _ in 0..RETRIES {
        if let Some(v) = rdrand_once() {
            if v == 0 || v == u64::MAX || v == LAST.swap(v, Ordering::SeqCst) {
                return Err(EntropyFailed);
            }
            return Ok(v);
        }
    }
    Err(EntropyFailed)
}

/// Fills `buf` from RDRAND, or wipes it and fails (latching the failure; see the module docs).
pub fn fill(buf: &mut [u8]) -> Result<(), EntropyFailed> {
    let result = (|| {
        if failed() || !rdrand_supported() {
            return Err(EntropyFailed);
        }
        for chunk in buf.chunks_mut(8) {
            let w = word()?.to_le_bytes();
            chunk.copy_from_slice(w.get(..chunk.len()).ok_or(EntropyFailed)?);
        }
        Ok(())
    })();
    if result.is_err() {
        FAILED.store(true, Ordering::SeqCst);
        buf.fill(0);
        crate::log(b"libc-shim: ENTROPY SOURCE FAILED (RDRAND); failing closed\n");
    }
    result
}

/// `long syscall(long nr, ...)`: only `SYS_getrandom` (318) is served, as
/// `getrandom(buf, len, flags)` filled by [`fill`]: returns `len`, or -1 with `EIO` when the
/// source failed (never a partial or weak buffer). Every other system call: -1, `ENOSYS`.
///
/// # Safety
/// For `SYS_getrandom`, `a1` must be writable for `a2` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn syscall(nr: CLong, a1: CLong, a2: CLong, _a3: CLong) -> CLong {
    if nr != SYS_GETRANDOM {
        crate::stub_called();
        errno::set(errno::ENOSYS);
        return -1;
    }
    crate::calls::bump(&crate::calls::GETRANDOM);
    let (ptr, len) = (a1 as *mut u8, a2 as SizeT);
    if ptr.is_null() || CLong::try_from(len).is_err() {
        errno::set(errno::EINVAL);
        return -1;
    }
    // SAFETY: writable for `len` bytes per the contract.
    let buf = unsafe { core::slice::from_raw_parts_mut(ptr, len) };
    match fill(buf) {
        Ok(()) => len as CLong,
        Err(EntropyFailed) => {
            errno::set(errno::EIO);
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the failure latch is process-global.
    #[test]
    fn reads_then_fails_closed() {
        let mut a = [0u8; 48];
        let mut b = [0u8; 48];
        if rdrand_supported() {
            assert_eq!(fill(&mut a), Ok(()));
            // SAFETY: `b` is writable for 48 bytes.
            let n = unsafe { syscall(SYS_GETRANDOM, b.as_mut_ptr() as CLong, 48, 0) };
            assert_eq!(n, 48);
            assert_ne!(a, b);
            assert!(!failed());
        }
        // SAFETY: not getrandom; nothing is dereferenced.
        assert_eq!(unsafe { syscall(39, 0, 0, 0) }, -1);
        inject_failure();
        b = [0xAA; 48];
        // SAFETY: `b` is writable for 48 bytes.
        let n = unsafe { syscall(SYS_GETRANDOM, b.as_mut_ptr() as CLong, 48, 0) };
        assert_eq!(n, -1);
        assert_eq!(b, [0; 48], "a failed read leaves no bytes behind");
        assert_eq!(fill(&mut a), Err(EntropyFailed));
        assert!(failed());
    }
}
