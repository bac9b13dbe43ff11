//! `<string.h>`/`<stdlib.h>` string functions and `qsort`, as the C standard defines them.
//! `memcpy`, `memmove`, `memset`, `memcmp` and `strlen` come from Rust's `compiler_builtins`.
//! Every pointer argument must be valid as the C standard requires for that function (strings
//! NUL-terminated, buffers large enough); that is each function's `# Safety` contract.

use crate::{errno, mem, CChar, CInt, CLong, SizeT};
use core::ffi::{c_ulong, c_void};

/// Length of the NUL-terminated string at `s`.
///
/// # Safety
/// `s` must point to a NUL-terminated string.
unsafe fn len(s: *const CChar) -> usize {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated, so every byte up to the NUL is readable.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

/// `void *memchr(const void *s, int c, size_t n)`: the first byte equal to `(unsigned char)c`
/// in the first `n` bytes, or NULL.
///
/// # Safety
/// `s` must be readable for `n` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn memchr(s: *const c_void, c: CInt, n: SizeT) -> *mut c_void {
    let p = s.cast::<u8>();
    for i in 0..n {
        // SAFETY: i < n, readable per the contract.
        if unsafe { *p.add(i) } == c as u8 {
            // SAFETY: inside the same object.
            return unsafe { p.add(i) }.cast_mut().cast();
        }
    }
    core::ptr::null_mut()
}

/// `char *strchr(const char *s, int c)`: the first `(char)c` in `s` (the terminator counts),
/// or NULL.
///
/// # Safety
/// `s` must be NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strchr(s: *const CChar, c: CInt) -> *mut CChar {
    let mut p = s;
    loop {
        // SAFETY: `p` walks the NUL-terminated string and stops at its NUL.
        let ch = unsafe { *p };
        if ch == c as CChar {
            return p.cast_mut();
        }
        if ch == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: not yet at the NUL, so the next byte is in the string.
        p = unsafe { p.add(1) };
    }
}

/// `char *strrchr(const char *s, int c)`: the last `(char)c` in `s` (the terminator counts),
/// or NULL.
///
/// # Safety
/// `s` must be NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strrchr(s: *const CChar, c: CInt) -> *mut CChar {
    // SAFETY: NUL-terminated per the contract.
    let n = unsafe { len(s) };
    let mut i = n + 1;
    while i > 0 {
        i -= 1;
        // SAFETY: i <= n, inside the string or its NUL.
        if unsafe { *s.add(i) } == c as CChar {
            // SAFETY: as above.
            return unsafe { s.add(i) }.cast_mut();
        }
    }
    core::ptr::null_mut()
}

/// `int strcmp(const char *a, const char *b)`: compares as unsigned chars.
///
/// # Safety
/// Both must be NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strcmp(a: *const CChar, b: *const CChar) -> CInt {
    // SAFETY: forwarded contract; usize::MAX never limits before a NUL.
    unsafe { strncmp(a, b, usize::MAX) }
}

/// `int strncmp(const char *a, const char *b, size_t n)`: compares at most `n` chars.
///
/// # Safety
/// Both must be NUL-terminated or readable for `n` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strncmp(a: *const CChar, b: *const CChar, n: SizeT) -> CInt {
    for i in 0..n {
        // SAFETY: the walk stops at the first NUL or difference, or at n.
        let (x, y) = unsafe { (*a.add(i) as u8, *b.add(i) as u8) };
        if x != y {
            return CInt::from(x) - CInt::from(y);
        }
        if x == 0 {
            return 0;
        }
    }
    0
}

/// `char *strcpy(char *dst, const char *src)`: copies `src` with its NUL.
///
/// # Safety
/// `src` NUL-terminated; `dst` writable for `strlen(src) + 1` bytes; no overlap.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strcpy(dst: *mut CChar, src: *const CChar) -> *mut CChar {
    // SAFETY: per the contract.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len(src) + 1) };
    dst
}

/// `char *strncpy(char *dst, const char *src, size_t n)`: copies at most `n` chars and pads
/// with NULs up to `n` (no terminator when `src` is `n` or longer, as C specifies).
///
/// # Safety
/// `dst` writable for `n` bytes; `src` NUL-terminated or readable for `n` bytes; no overlap.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strncpy(dst: *mut CChar, src: *const CChar, n: SizeT) -> *mut CChar {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the source walk stops at its NUL.
        let c = unsafe { *src.add(i) };
        if c == 0 {
            break;
        }
        // SAFETY: i < n.
        unsafe { *dst.add(i) = c };
        i += 1;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = 0 };
        i += 1;
    }
    dst
}

/// `char *strcat(char *dst, const char *src)`: appends `src` to `dst`.
///
/// # Safety
/// Both NUL-terminated; `dst` has room for the result; no overlap.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strcat(dst: *mut CChar, src: *const CChar) -> *mut CChar {
    // SAFETY: per the contract.
    unsafe { strcpy(dst.add(len(dst)), src) };
    dst
}

/// `size_t strspn(const char *s, const char *accept)`: length of the prefix of `s` made of
/// characters in `accept`.
///
/// # Safety
/// Both NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strspn(s: *const CChar, accept: *const CChar) -> SizeT {
    let mut n = 0;
    // SAFETY: the walk stops at the NUL of `s`; `strchr` on a NUL-terminated `accept`.
    while unsafe { *s.add(n) } != 0 && !unsafe { strchr(accept, CInt::from(*s.add(n))) }.is_null() {
        n += 1;
    }
    n
}

/// `size_t strcspn(const char *s, const char *reject)`: length of the prefix of `s` made of
/// characters not in `reject`.
///
/// # Safety
/// Both NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strcspn(s: *const CChar, reject: *const CChar) -> SizeT {
    let mut n = 0;
    // SAFETY: as in `strspn`.
    while unsafe { *s.add(n) } != 0 && unsafe { strchr(reject, CInt::from(*s.add(n))) }.is_null() {
        n += 1;
    }
    n
}

/// `char *strstr(const char *hay, const char *needle)`: first occurrence, or NULL; an empty
/// needle matches at `hay`.
///
/// # Safety
/// Both NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strstr(hay: *const CChar, needle: *const CChar) -> *mut CChar {
    // SAFETY: NUL-terminated per the contract.
    let (h, n) = unsafe { (len(hay), len(needle)) };
    if n == 0 {
        return hay.cast_mut();
    }
    let mut i = 0;
    while i + n <= h {
        // SAFETY: i + n <= h, so n bytes from hay+i are inside `hay`.
        if unsafe { strncmp(hay.add(i), needle, n) } == 0 {
            // SAFETY: inside `hay`.
            return unsafe { hay.add(i) }.cast_mut();
        }
        i += 1;
    }
    core::ptr::null_mut()
}

/// `char *strdup(const char *s)`: a `malloc`'ed copy, or NULL with `ENOMEM`.
///
/// # Safety
/// `s` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strdup(s: *const CChar) -> *mut CChar {
    // SAFETY: NUL-terminated per the contract.
    let n = unsafe { len(s) } + 1;
    let d = mem::malloc(n).cast::<CChar>();
    if !d.is_null() {
        // SAFETY: `d` has n bytes; `s` has n bytes with its NUL.
        unsafe { core::ptr::copy_nonoverlapping(s, d, n) };
    }
    d
}

struct TokState(core::cell::Cell<*mut CChar>);
// SAFETY: one CPU, no threads: never accessed concurrently.
unsafe impl Sync for TokState {}
static STRTOK: TokState = TokState(core::cell::Cell::new(core::ptr::null_mut()));

/// `char *strtok(char *s, const char *delim)`: the next token, with the position kept between
/// calls (not re-entrant, as C specifies).
///
/// # Safety
/// `s` NUL-terminated and writable, or NULL to continue the previous string (which must still
/// be live); `delim` NUL-terminated.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strtok(s: *mut CChar, delim: *const CChar) -> *mut CChar {
    let mut p = if s.is_null() { STRTOK.0.get() } else { s };
    if p.is_null() {
        return p;
    }
    // SAFETY: `p` is inside a live NUL-terminated string (contract).
    p = unsafe { p.add(strspn(p, delim)) };
    // SAFETY: as above.
    if unsafe { *p } == 0 {
        STRTOK.0.set(core::ptr::null_mut());
        return core::ptr::null_mut();
    }
    let token = p;
    // SAFETY: as above.
    p = unsafe { p.add(strcspn(p, delim)) };
    // SAFETY: `p` points at a delimiter or the NUL, both inside the writable string.
    if unsafe { *p } != 0 {
        // SAFETY: as above.
        unsafe {
            *p = 0;
            p = p.add(1);
        }
        STRTOK.0.set(p);
    } else {
        STRTOK.0.set(core::ptr::null_mut());
    }
    token
}

/// Parses an integer as `strtoul`/`strtol` do: returns (negative, magnitude, overflowed, end).
///
/// # Safety
/// `s` NUL-terminated.
unsafe fn parse(s: *const CChar, base: CInt) -> Option<(bool, u64, bool, *const CChar)> {
    if base != 0 && !(2..=36).contains(&base) {
        return None;
    }
    let mut p = s;
    // SAFETY: every read below stops at the NUL (which is not a space, sign or digit).
    let at = |p: *const CChar| unsafe { *p as u8 };
    while matches!(at(p), b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        // SAFETY: not at the NUL.
        p = unsafe { p.add(1) };
    }
    let mut negative = false;
    if matches!(at(p), b'+' | b'-') {
        negative = at(p) == b'-';
        // SAFETY: not at the NUL.
        p = unsafe { p.add(1) };
    }
    let mut base = base as u64;
    // SAFETY: `p + 1` is read only when `p` is '0' (not the NUL).
    let hex_prefix = at(p) == b'0' && matches!(at(unsafe { p.add(1) }), b'x' | b'X');
    // SAFETY: `p + 2` is read only after '0' and 'x', not the NUL.
    if hex_prefix && (base == 0 || base == 16) && at(unsafe { p.add(2) }).is_ascii_hexdigit() {
        // SAFETY: skips "0x", both non-NUL.
        p = unsafe { p.add(2) };
        base = 16;
    } else if base == 0 {
        base = if at(p) == b'0' { 8 } else { 10 };
    }
    let start = p;
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(d) = (at(p) as char).to_digit(base as u32) {
        match value
            .checked_mul(base)
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        // SAFETY: a digit is not the NUL.
        p = unsafe { p.add(1) };
    }
    if p == start {
        return Some((false, 0, false, s)); // no digits: end = s, value 0
    }
    Some((negative, value, overflow, p))
}

/// `long strtol(const char *s, char **end, int base)`: C semantics, including `ERANGE` with
/// `LONG_MIN`/`LONG_MAX` on overflow and `EINVAL` for a bad base.
///
/// # Safety
/// `s` NUL-terminated; `end` NULL or writable.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strtol(s: *const CChar, end: *mut *mut CChar, base: CInt) -> CLong {
    // SAFETY: NUL-terminated per the contract.
    let Some((neg, mag, overflow, stop)) = (unsafe { parse(s, base) }) else {
        errno::set(errno::EINVAL);
        return 0;
    };
    if !end.is_null() {
        // SAFETY: writable per the contract.
        unsafe { *end = stop.cast_mut() };
    }
    let limit = if neg {
        CLong::MAX as u64 + 1
    } else {
        CLong::MAX as u64
    };
    if overflow || mag > limit {
        errno::set(errno::ERANGE);
        return if neg { CLong::MIN } else { CLong::MAX };
    }
    if neg {
        (mag as CLong).wrapping_neg()
    } else {
        mag as CLong
    }
}

/// `unsigned long strtoul(const char *s, char **end, int base)`: C semantics (a leading `-`
/// negates in unsigned arithmetic; `ERANGE` with `ULONG_MAX` on overflow).
///
/// # Safety
/// `s` NUL-terminated; `end` NULL or writable.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn strtoul(s: *const CChar, end: *mut *mut CChar, base: CInt) -> c_ulong {
    // SAFETY: NUL-terminated per the contract.
    let Some((neg, mag, overflow, stop)) = (unsafe { parse(s, base) }) else {
        errno::set(errno::EINVAL);
        return 0;
    };
    if !end.is_null() {
        // SAFETY: writable per the contract.
        unsafe { *end = stop.cast_mut() };
    }
    if overflow {
        errno::set(errno::ERANGE);
        return c_ulong::MAX;
    }
    if neg {
        mag.wrapping_neg()
    } else {
        mag
    }
}

fn error_text(errnum: CInt) -> &'static [u8] {
    match errnum {
        0 => b"Success\0",
        errno::ENOENT => b"No such file or directory\0",
        errno::EIO => b"Input/output error\0",
        errno::EBADF => b"Bad file descriptor\0",
        errno::ENOMEM => b"Cannot allocate memory\0",
        errno::EINVAL => b"Invalid argument\0",
        errno::ENOTTY => b"Inappropriate ioctl for device\0",
        errno::ESPIPE => b"Illegal seek\0",
        errno::ERANGE => b"Numerical result out of range\0",
        errno::ENOSYS => b"Function not implemented\0",
        _ => b"Unknown error\0",
    }
}

/// `char *strerror(int errnum)`: a static description (the caller must not modify it).
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn strerror(errnum: CInt) -> *mut CChar {
    error_text(errnum).as_ptr().cast::<CChar>().cast_mut()
}

/// `int __xpg_strerror_r(int errnum, char *buf, size_t n)` (POSIX `strerror_r`): copies the
/// description into `buf`; `ERANGE` (returned) when it does not fit (then truncated).
///
/// # Safety
/// `buf` writable for `n` bytes.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn __xpg_strerror_r(errnum: CInt, buf: *mut CChar, n: SizeT) -> CInt {
    let text = error_text(errnum);
    if n == 0 {
        return errno::ERANGE;
    }
    let copy = text.len().min(n);
    // SAFETY: `copy` <= n writable bytes; `text` is a static slice of at least `copy` bytes.
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr().cast::<CChar>(), buf, copy) };
    if copy < text.len() {
        // SAFETY: n >= 1, the last byte of the buffer.
        unsafe { *buf.add(n - 1) = 0 };
        return errno::ERANGE;
    }
    0
}

/// The comparison function `qsort` takes.
pub type Compare = unsafe extern "C" fn(*const c_void, *const c_void) -> CInt;

/// Swaps two `size`-byte elements.
///
/// # Safety
/// Both valid for `size` bytes; equal or non-overlapping.
unsafe fn swap(a: *mut u8, b: *mut u8, size: usize) {
    if a != b {
        // SAFETY: distinct elements of one array do not overlap.
        unsafe { core::ptr::swap_nonoverlapping(a, b, size) };
    }
}

/// `void qsort(void *base, size_t n, size_t size, compare)`: an in-place heap sort (no extra
/// memory, O(n log n)); not stable, which C does not require.
///
/// # Safety
/// `base` valid for `n * size` bytes; `compare` a valid function for those elements.
#[cfg_attr(target_os = "none", no_mangle)]
pub unsafe extern "C" fn qsort(base: *mut c_void, n: SizeT, size: SizeT, compare: Option<Compare>) {
    let (Some(cmp), false) = (compare, size == 0 || n < 2) else {
        return;
    };
    let b = base.cast::<u8>();
    // SAFETY: i < n, inside the array.
    let el = |i: usize| unsafe { b.add(i * size) };
    let sift = |mut root: usize, end: usize| {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                break;
            }
            // SAFETY: both indices < end <= n.
            if child + 1 < end && unsafe { cmp(el(child).cast(), el(child + 1).cast()) } < 0 {
                child += 1;
            }
            // SAFETY: both indices < n.
            if unsafe { cmp(el(root).cast(), el(child).cast()) } >= 0 {
                break;
            }
            // SAFETY: both elements are inside the array.
            unsafe { swap(el(root), el(child), size) };
            root = child;
        }
    };
    for start in (0..n / 2).rev() {
        sift(start, n);
    }
    for end in (1..n).rev() {
        // SAFETY: both indices < n.
        unsafe { swap(el(0), el(end), size) };
        sift(0, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    fn c(s: &CStr) -> *const CChar {
        s.as_ptr()
    }

    #[test]
    fn compare_search_copy() {
        // SAFETY: all arguments are NUL-terminated literals or adequately sized buffers.
        unsafe {
            assert_eq!(strcmp(c(c"abc"), c(c"abc")), 0);
            assert!(strcmp(c(c"abc"), c(c"abd")) < 0);
            assert!(strcmp(c(c"b"), c(c"abc")) > 0);
            assert!(strcmp(c(c"\xff"), c(c"a")) > 0, "unsigned comparison");
            assert_eq!(strncmp(c(c"abcX"), c(c"abcY"), 3), 0);
            let s = c(c"a.b.c");
            assert_eq!(strchr(s, b'.' as CInt).offset_from(s), 1);
            assert_eq!(strrchr(s, b'.' as CInt).offset_from(s), 3);
            assert_eq!(strchr(s, 0).offset_from(s), 5);
            assert!(strchr(s, b'z' as CInt).is_null());
            assert_eq!(strstr(s, c(c"b.c")).offset_from(s), 2);
            assert!(strstr(s, c(c"cc")).is_null());
            assert_eq!(strspn(c(c"aab1"), c(c"ab")), 3);
            assert_eq!(strcspn(c(c"aab1"), c(c"1")), 3);
            let mut buf = [0x55 as CChar; 16];
            strcpy(buf.as_mut_ptr(), c(c"hi"));
            strcat(buf.as_mut_ptr(), c(c" there"));
            assert_eq!(CStr::from_ptr(buf.as_ptr()).to_bytes(), b"hi there");
            strncpy(buf.as_mut_ptr(), c(c"xy"), 5);
            assert_eq!(
                &buf[..6],
                &[b'x' as CChar, b'y' as CChar, 0, 0, 0, b'e' as CChar]
            );
            let d = strdup(c(c"dup"));
            assert_eq!(CStr::from_ptr(d).to_bytes(), b"dup");
            mem::free(d.cast());
            let m = memchr(b"hello".as_ptr().cast(), b'l' as CInt, 5);
            assert_eq!(m.cast::<u8>().offset_from(b"hello".as_ptr()), 2);
        }
    }

    #[test]
    fn tokens() {
        let mut s = *b",a,,bc,\0";
        let delim = c(c",");
        let mut got = [[0u8; 4]; 2];
        // SAFETY: writable NUL-terminated buffer.
        unsafe {
            let t = strtok(s.as_mut_ptr().cast(), delim);
            got[0][..1].copy_from_slice(CStr::from_ptr(t).to_bytes());
            let t = strtok(core::ptr::null_mut(), delim);
            got[1][..2].copy_from_slice(CStr::from_ptr(t).to_bytes());
            assert!(strtok(core::ptr::null_mut(), delim).is_null());
        }
        assert_eq!(got, [*b"a\0\0\0", *b"bc\0\0"]);
    }

    #[test]
    fn integers() {
        let mut end: *mut CChar = core::ptr::null_mut();
        // SAFETY: NUL-terminated literals, valid out-pointer.
        unsafe {
            let s = c(c"  -0x1fZ");
            assert_eq!(strtol(s, &mut end, 0), -31);
            assert_eq!(end.cast_const().offset_from(s), 7);
            assert_eq!(strtol(c(c"0755"), core::ptr::null_mut(), 0), 0o755);
            assert_eq!(strtol(c(c"z"), core::ptr::null_mut(), 36), 35);
            assert_eq!(
                strtol(c(c"99999999999999999999"), core::ptr::null_mut(), 10),
                CLong::MAX
            );
            assert_eq!(
                strtol(c(c"-9223372036854775808"), core::ptr::null_mut(), 10),
                CLong::MIN
            );
            assert_eq!(strtoul(c(c"-1"), core::ptr::null_mut(), 10), c_ulong::MAX);
            let s = c(c"xyz");
            assert_eq!(strtoul(s, &mut end, 10), 0);
            assert_eq!(end.cast_const(), s);
        }
    }

    #[test]
    fn errors_and_sort() {
        let mut buf = [0 as CChar; 8];
        // SAFETY: 8-byte buffer.
        unsafe {
            assert_eq!(
                __xpg_strerror_r(errno::ENOMEM, buf.as_mut_ptr(), 8),
                errno::ERANGE
            );
            assert_eq!(CStr::from_ptr(buf.as_ptr()).to_bytes(), b"Cannot ");
            assert_eq!(
                CStr::from_ptr(strerror(errno::EINVAL)).to_bytes(),
                b"Invalid argument"
            );
        }
        unsafe extern "C" fn by_value(a: *const c_void, b: *const c_void) -> CInt {
            // SAFETY: qsort passes pointers to u32 elements.
            let (a, b) = unsafe { (*a.cast::<u32>(), *b.cast::<u32>()) };
            a.cmp(&b) as CInt
        }
        let mut v = [5u32, 3, 9, 1, 1, 8, 0, 7, 2, 6, 4];
        // SAFETY: the array holds 11 u32 elements.
        unsafe { qsort(v.as_mut_ptr().cast(), v.len(), 4, Some(by_value)) };
        assert_eq!(v, [0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
