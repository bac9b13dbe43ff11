//! Time from the TSC. The image calibrates the TSC at boot and calls [`set_tsc_hz`]; until then
//! every clock fails (-1, `EINVAL`) rather than return a made-up time. `CLOCK_MONOTONIC` (what
//! libtpms's TPM clock and OpenSSL's DRBG use) is the uptime since [`set_tsc_hz`];
//! `CLOCK_REALTIME` and `time()` are a fixed epoch ([`EPOCH`], not wall time: there is no
//! trusted wall clock here) plus that uptime.

use crate::{errno, CInt, CLong};
use core::ffi::{c_uint, c_void};
use core::sync::atomic::{AtomicU64, Ordering};

/// Seconds since 1970 that `CLOCK_REALTIME` reports at boot: 2025-01-01T00:00:00Z.
pub const EPOCH: u64 = 1_735_689_600;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_START: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; it is available on every x86-64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Sets the TSC frequency and starts the clocks (uptime 0 now).
pub fn set_tsc_hz(hz: u64) {
    TSC_START.store(rdtsc(), Ordering::SeqCst);
    TSC_HZ.store(hz, Ordering::SeqCst);
}

/// Nanoseconds since [`set_tsc_hz`], or `None` before it.
pub fn uptime_ns() -> Option<u64> {
    let hz = TSC_HZ.load(Ordering::SeqCst);
    if hz == 0 {
        return None;
    }
    let ticks = rdtsc().saturating_sub(TSC_START.load(Ordering::SeqCst));
    Some((u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64)
}

/// `struct timespec`.
#[repr(C)]
pub struct Timespec {
    /// Seconds.
    pub tv_sec: i64,
    /// Nanoseconds.
    pub tv_nsec: i64,
}

/// `struct timeval`.
#[repr(C)]
pub struct Timeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// `struct tm` (glibc layout).
#[repr(C)]
pub struct Tm {
    /// Seconds 0..=60.
    pub tm_sec: CInt,
    /// Minutes.
    pub tm_min: CInt,
    /// Hours.
    pub tm_hour: CInt,
    /// Day of month 1..=31.
    pub tm_mday: CInt,
    /// Month 0..=11.
    pub tm_mon: CInt,
    /// Years since 1900.
    pub tm_year: CInt,
    /// Day of week, Sunday = 0.
    pub tm_wday: CInt,
    /// Day of year 0..=365.
    pub tm_yday: CInt,
    /// DST flag.
    pub tm_isdst: CInt,
    /// Offset from UTC.
    pub tm_gmtoff: CLong,
    /// Zone name.
    pub tm_zone: *const core::ffi::c_char,
}

fn now_ns() -> Option<u64> {
    crate::calls::bump(&crate::calls::TIME);
    let up = uptime_ns();
    if up.is_none() {
        errno::set(errno::EINVAL);
    }
    up
}

/// `int clock_gettime(clockid_t clk, struct timespec *ts)`: monotonic clocks (1, 4, 6, 7) and
/// the CPU-time clocks (2, 3) give the uptime; realtime clocks (0, 5) give [`EPOCH`] + uptime.
/// Other ids, a NULL `ts`, or an uncalibrated TSC: -1, `EINVAL`.
///
/// # Safety
/// `ts` NULL or writable.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn clock_gettime(clk: CInt, ts: *mut Timespec) -> CInt {
    let base = match clk {
        1 | 2 | 3 | 4 | 6 | 7 => 0,
        0 | 5 => EPOCH * 1_000_000_000,
        _ => {
            errno::set(errno::EINVAL);
            return -1;
        }
    };
    let (Some(up), false) = (now_ns(), ts.is_null()) else {
        errno::set(errno::EINVAL);
        return -1;
    };
    let t = base + up;
    // SAFETY: non-null and writable per the contract.
    unsafe {
        *ts = Timespec {
            tv_sec: (t / 1_000_000_000) as i64,
            tv_nsec: (t % 1_000_000_000) as i64,
        }
    };
    0
}

/// `int gettimeofday(struct timeval *tv, void *tz)`: realtime as [`clock_gettime`]; `tz` is
/// ignored (obsolete).
///
/// # Safety
/// `tv` NULL or writable.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn gettimeofday(tv: *mut Timeval, _tz: *mut c_void) -> CInt {
    let Some(up) = now_ns() else { return -1 };
    if !tv.is_null() {
        let us = EPOCH * 1_000_000 + up / 1000;
        // SAFETY: non-null and writable per the contract.
        unsafe {
            *tv = Timeval {
                tv_sec: (us / 1_000_000) as i64,
                tv_usec: (us % 1_000_000) as i64,
            }
        };
    }
    0
}

/// `time_t time(time_t *t)`: [`EPOCH`] + uptime seconds, also stored in `*t`; -1 before the
/// TSC is calibrated.
///
/// # Safety
/// `t` NULL or writable.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn time(t: *mut i64) -> i64 {
    let Some(up) = now_ns() else { return -1 };
    let secs = (EPOCH + up / 1_000_000_000) as i64;
    if !t.is_null() {
        // SAFETY: non-null and writable per the contract.
        unsafe { *t = secs };
    }
    secs
}

/// `clock_t clock(void)`: processor time in `CLOCKS_PER_SEC` (10^6) units = uptime (one CPU,
/// one process); -1 before calibration.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn clock() -> CLong {
    match now_ns() {
        Some(up) => (up / 1000) as CLong,
        None => -1,
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// `struct tm *gmtime_r(const time_t *t, struct tm *out)`: UTC broken-down time.
///
/// # Safety
/// `t` readable, `out` writable (either NULL gives NULL with `EINVAL`).
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn gmtime_r(t: *const i64, out: *mut Tm) -> *mut Tm {
    if t.is_null() || out.is_null() {
        errno::set(errno::EINVAL);
        return core::ptr::null_mut();
    }
    // SAFETY: non-null and readable per the contract.
    let secs = unsafe { *t };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = BEFORE[(m - 1) as usize] + i64::from(d) - 1 + i64::from(m > 2 && is_leap(y));
    let Ok(year) = CInt::try_from(y - 1900) else {
        errno::set(crate::errno::ERANGE);
        return core::ptr::null_mut();
    };
    // SAFETY: non-null and writable per the contract.
    unsafe {
        *out = Tm {
            tm_sec: (rem % 60) as CInt,
            tm_min: (rem / 60 % 60) as CInt,
            tm_hour: (rem / 3600) as CInt,
            tm_mday: d as CInt,
            tm_mon: (m - 1) as CInt,
            tm_year: year,
            tm_wday: (days + 4).rem_euclid(7) as CInt,
            tm_yday: yday as CInt,
            tm_isdst: 0,
            tm_gmtoff: 0,
            tm_zone: c"GMT".as_ptr(),
        }
    };
    out
}

fn busy_wait_ns(ns: u64) -> bool {
    let Some(start) = uptime_ns() else {
        return false;
    };
    while uptime_ns().unwrap_or(u64::MAX).saturating_sub(start) < ns {
        core::hint::spin_loop();
    }
    true
}

/// `unsigned sleep(unsigned s)`: busy-waits (there is nothing else to run); returns 0, or `s`
/// (nothing slept) before calibration.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn sleep(s: c_uint) -> c_uint {
    if busy_wait_ns(u64::from(s) * 1_000_000_000) {
        0
    } else {
        s
    }
}

/// `int usleep(useconds_t us)`: busy-waits; -1 `EINVAL` before calibration.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn usleep(us: c_uint) -> CInt {
    if busy_wait_ns(u64::from(us) * 1000) {
        0
    } else {
        errno::set(errno::EINVAL);
        -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_calendar() {
        set_tsc_hz(1_000_000_000);
        let mut a = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut b = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointers.
        unsafe {
            assert_eq!(clock_gettime(1, &mut a), 0);
            assert_eq!(clock_gettime(1, &mut b), 0);
            assert!((b.tv_sec, b.tv_nsec) >= (a.tv_sec, a.tv_nsec));
            assert_eq!(clock_gettime(0, &mut a), 0);
            assert!(a.tv_sec as u64 >= EPOCH);
            assert_eq!(clock_gettime(99, &mut a), -1);
            assert!(time(core::ptr::null_mut()) as u64 >= EPOCH);
        }
        let t: i64 = 951_825_600; // 2000-02-29T12:00:00Z, a Tuesday
        let mut tm = core::mem::MaybeUninit::<Tm>::uninit();
        // SAFETY: valid pointers; gmtime_r fills the whole struct on success.
        let tm = unsafe {
            assert!(!gmtime_r(&t, tm.as_mut_ptr()).is_null());
            tm.assume_init()
        };
        assert_eq!(
            (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_wday, tm.tm_yday),
            (100, 1, 29, 12, 2, 59)
        );
    }
}
