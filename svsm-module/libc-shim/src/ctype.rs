//! glibc's `<ctype.h>` tables: `__ctype_b_loc` (character class bits) and
//! `__ctype_tolower_loc`, each a 384-entry table indexed -128..=255 (C `char` may be signed),
//! for the "C" locale. The bit values are glibc's little-endian `_ISbit` encoding.

use crate::CInt;

const UPPER: u16 = 0x100;
const LOWER: u16 = 0x200;
const ALPHA: u16 = 0x400;
const DIGIT: u16 = 0x800;
const XDIGIT: u16 = 0x1000;
const SPACE: u16 = 0x2000;
const PRINT: u16 = 0x4000;
const GRAPH: u16 = 0x8000;
const BLANK: u16 = 0x1;
const CNTRL: u16 = 0x2;
const PUNCT: u16 = 0x4;
const ALNUM: u16 = 0x8;

const fn class(c: u8) -> u16 {
    let mut bits = 0;
    let upper = c.is_ascii_uppercase();
    let lower = c.is_ascii_lowercase();
    let digit = c.is_ascii_digit();
    if upper {
        bits |= UPPER | ALPHA | ALNUM;
    }
    if lower {
        bits |= LOWER | ALPHA | ALNUM;
    }
    if digit {
        bits |= DIGIT | ALNUM;
    }
    if c.is_ascii_hexdigit() {
        bits |= XDIGIT;
    }
    if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        bits |= SPACE;
    }
    if matches!(c, b' ' | b'\t') {
        bits |= BLANK;
    }
    if c < 0x20 || c == 0x7f {
        bits |= CNTRL;
    }
    if c >= 0x20 && c < 0x7f {
        bits |= PRINT;
    }
    if c > 0x20 && c < 0x7f {
        bits |= GRAPH;
        if !upper && !lower && !digit {
            bits |= PUNCT;
        }
    }
    bits
}

const fn class_table() -> [u16; 384] {
    let mut t = [0u16; 384];
    let mut i = 0;
    while i < 384 {
        // Index i stands for the value i - 128; negative values (signed chars >= 0x80) and
        // 0x80..=0xff have no class in the C locale.
        if i >= 128 && i < 256 {
            t[i] = class((i - 128) as u8);
        }
        i += 1;
    }
    t
}

const fn tolower_table() -> [CInt; 384] {
    let mut t = [0 as CInt; 384];
    let mut i = 0;
    while i < 384 {
        let v = i as CInt - 128;
        t[i] = if v >= b'A' as CInt && v <= b'Z' as CInt {
            v + 32
        } else {
            v
        };
        i += 1;
    }
    t
}

static CLASS: [u16; 384] = class_table();
static TOLOWER: [CInt; 384] = tolower_table();

/// A pointer C code may read through; the tables it points into are immutable statics.
#[repr(transparent)]
pub struct TablePtr<T>(*const T);

// SAFETY: the pointer is to an immutable static table; sharing it is sharing a `&'static`.
unsafe impl<T> Sync for TablePtr<T> {}

static CLASS_PTR: TablePtr<u16> = TablePtr(CLASS.as_ptr().wrapping_add(128));
static TOLOWER_PTR: TablePtr<CInt> = TablePtr(TOLOWER.as_ptr().wrapping_add(128));

/// `const unsigned short **__ctype_b_loc(void)`: the class table, indexable by -128..=255.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __ctype_b_loc() -> *const *const u16 {
    &CLASS_PTR.0
}

/// `const int32_t **__ctype_tolower_loc(void)`: the lower-case table, indexable by -128..=255.
#[cfg_attr(target_os = "none", no_mangle)]
pub extern "C" fn __ctype_tolower_loc() -> *const *const CInt {
    &TOLOWER_PTR.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_the_c_locale() {
        // SAFETY: the returned pointers point into 384-entry tables at index 128.
        let (b, l) = unsafe { (*__ctype_b_loc(), *__ctype_tolower_loc()) };
        // SAFETY: indices -128..=255 are inside the tables.
        let at = |c: isize| unsafe { (*b.offset(c), *l.offset(c)) };
        assert_eq!(
            at(b'A' as isize).0 & (UPPER | ALPHA | XDIGIT),
            UPPER | ALPHA | XDIGIT
        );
        assert_eq!(at(b'A' as isize).1, b'a' as CInt);
        assert_eq!(at(b'z' as isize).0 & LOWER, LOWER);
        assert_eq!(at(b'7' as isize).0 & (DIGIT | ALNUM), DIGIT | ALNUM);
        assert_eq!(
            at(b' ' as isize).0 & (SPACE | BLANK | PRINT),
            SPACE | BLANK | PRINT
        );
        assert_eq!(at(b'!' as isize).0 & (PUNCT | GRAPH), PUNCT | GRAPH);
        assert_eq!(at(-1).0, 0);
        assert_eq!(at(-1).1, -1);
        assert_eq!(at(0xff).0, 0);
    }
}
