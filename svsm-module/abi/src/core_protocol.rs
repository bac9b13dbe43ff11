//! The core protocol's memory operands (SVSM spec, AMD pub. 58019, §6): the SVSM_CORE_PVALIDATE
//! operation list (§6.2 Table 7 header, Table 8 entry) and the protocol-defined result codes the
//! core calls return. Registers are described in `svsm-core`'s core protocol; what lives here is
//! what a guest writes in memory, read by the SVSM and written the same way by any test that
//! plays a guest.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Header of the PVALIDATE operation list (§6.2 Table 7), 8 bytes; the entries follow.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PvalidateHeader {
    /// Number of entries in the list (at least 1).
    pub entries: U16,
    /// The entry to process next; the SVSM writes back how far it got.
    pub next: U16,
    /// Reserved.
    pub reserved: U32,
}
assert_layout!(
    PvalidateHeader,
    size = 8,
    entries = 0,
    next = 2,
    reserved = 4
);

/// Length of [`PvalidateHeader`].
pub const PVALIDATE_HEADER_LEN: usize = core::mem::size_of::<PvalidateHeader>();
/// Length of one entry.
pub const PVALIDATE_ENTRY_LEN: usize = 8;

/// PVALIDATE instruction return code FAIL_INPUT (APM vol. 3, PVALIDATE).
pub const PVALIDATE_FAIL_INPUT: u32 = 1;
/// PVALIDATE instruction return code FAIL_SIZEMISMATCH.
pub const PVALIDATE_FAIL_SIZEMISMATCH: u32 = 6;
/// Protocol error for "the validated state already had the requested value" (CF=1) when the
/// entry does not ask to ignore it: result 0x8000_1010.
pub const PVALIDATE_FAIL_UNCHANGED: u32 = 0x10;
/// Protocol error of SVSM_CORE_DELETE_VCPU for a vCPU that is running: result 0x8000_1003.
pub const DELETE_VCPU_IN_USE: u32 = 3;

/// Page size of a PVALIDATE entry (bits 1:0), and of the PVALIDATE and RMPADJUST
/// instructions (RCX bit 0): the same encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB (the address must be 2 MiB aligned).
    Size2M,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 0x1000,
            PageSize::Size2M => 0x20_0000,
        }
    }

    /// The encoding: 0 for 4 KiB, 1 for 2 MiB (list entry bits 1:0, the instructions' RCX).
    pub const fn encoding(self) -> u64 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
        }
    }
}

/// One decoded PVALIDATE entry (§6.2 Table 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvalidateEntry {
    /// Page size.
    pub size: PageSize,
    /// true: validate; false: rescind.
    pub validate: bool,
    /// Bit 3: do not report "unchanged" (CF=1) as an error.
    pub ignore_unchanged: bool,
    /// The page's guest physical address (GFN << 12).
    pub gpa: u64,
}

/// Why a PVALIDATE entry is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PvalidateEntryError {
    /// Bits 1:0 hold a size other than 4 KiB (0) or 2 MiB (1).
    #[error("page size {0} is not 4 KiB (0) or 2 MiB (1)")]
    PageSize(u8),
    /// Reserved bits 11:4 are not zero.
    #[error("reserved bits 11:4 are set ({0:#x})")]
    Reserved(u64),
    /// A 2 MiB entry whose GFN is not 2 MiB aligned (bits 20:12 set).
    #[error("2 MiB entry at {0:#x} is not 2 MiB aligned")]
    Unaligned(u64),
}

impl PvalidateEntry {
    /// Decodes one entry.
    pub const fn decode(raw: u64) -> Result<Self, PvalidateEntryError> {
        let size = match raw & 0b11 {
            0 => PageSize::Size4K,
            1 => PageSize::Size2M,
            other => return Err(PvalidateEntryError::PageSize(other as u8)),
        };
        if raw & 0xFF0 != 0 {
            return Err(PvalidateEntryError::Reserved(raw & 0xFF0));
        }
        let gpa = raw & !0xFFF;
        if matches!(size, PageSize::Size2M) && gpa & 0x1F_F000 != 0 {
            return Err(PvalidateEntryError::Unaligned(gpa));
        }
        Ok(PvalidateEntry {
            size,
            validate: raw & 0b100 != 0,
            ignore_unchanged: raw & 0b1000 != 0,
            gpa,
        })
    }

    /// Encodes the entry (what a guest writes).
    pub const fn encode(self) -> u64 {
        (self.gpa & !0xFFF)
            | self.size.encoding()
            | if self.validate { 0b100 } else { 0 }
            | if self.ignore_unchanged { 0b1000 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_by_the_table() {
        // GFN 0x12345, 4 KiB, validate, ignore CF.
        let e = PvalidateEntry::decode(0x1234_500C).unwrap();
        assert_eq!(
            e,
            PvalidateEntry {
                size: PageSize::Size4K,
                validate: true,
                ignore_unchanged: true,
                gpa: 0x1234_5000
            }
        );
        assert_eq!(e.encode(), 0x1234_500C);
        assert_eq!(
            PvalidateEntry::decode(0x20_0001).unwrap().size,
            PageSize::Size2M
        );
        assert_eq!(
            PvalidateEntry::decode(0x2),
            Err(PvalidateEntryError::PageSize(2))
        );
        assert_eq!(
            PvalidateEntry::decode(0x10),
            Err(PvalidateEntryError::Reserved(0x10))
        );
        assert_eq!(
            PvalidateEntry::decode(0x20_1001),
            Err(PvalidateEntryError::Unaligned(0x20_1000))
        );
    }
}
