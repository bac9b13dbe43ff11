//! The launch-digest record: PAGE_INFO (SNP ABI spec §8.17.2 Table 67, as cited by
//! sev-snp-measure). The PSP extends the launch digest with SHA-384 over one 0x70-byte
//! PAGE_INFO per 4 KiB page it measures; the final value is the report's MEASUREMENT.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// GPA that KVM records for VMSA pages (cut to 52 bits, page aligned).
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Page types of SNP_LAUNCH_UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// Normal page; contents hashed.
    Normal = 1,
    /// VMSA page; contents hashed.
    Vmsa = 2,
    /// Zero page.
    Zero = 3,
    /// Unmeasured page.
    Unmeasured = 4,
    /// SNP secrets page.
    Secrets = 5,
    /// CPUID page.
    Cpuid = 6,
}

impl PageType {
    /// Decodes a page type byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => PageType::Normal,
            2 => PageType::Vmsa,
            3 => PageType::Zero,
            4 => PageType::Unmeasured,
            5 => PageType::Secrets,
            6 => PageType::Cpuid,
            _ => return None,
        })
    }

    /// Whether the page's SHA-384 goes into CONTENTS (else CONTENTS is zero).
    pub const fn hashes_contents(self) -> bool {
        matches!(self, PageType::Normal | PageType::Vmsa)
    }
}

/// PAGE_INFO, 0x70 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PageInfo {
    /// The launch digest so far.
    pub digest_cur: [u8; 48],
    /// SHA-384 of the page for NORMAL and VMSA pages, zero otherwise.
    pub contents: [u8; 48],
    /// Length of this structure, 0x70.
    pub length: U16,
    /// Page type.
    pub page_type: u8,
    /// Bit 0 IMI_PAGE; rest reserved.
    pub imi_page: u8,
    /// VMPL3 permissions (0 at launch).
    pub vmpl3_perms: u8,
    /// VMPL2 permissions.
    pub vmpl2_perms: u8,
    /// VMPL1 permissions.
    pub vmpl1_perms: u8,
    /// Reserved.
    pub reserved: u8,
    /// Guest physical address of the page.
    pub gpa: U64,
}
assert_layout!(
    PageInfo,
    size = 0x70,
    digest_cur = 0,
    contents = 0x30,
    length = 0x60,
    page_type = 0x62,
    imi_page = 0x63,
    vmpl3_perms = 0x64,
    vmpl2_perms = 0x65,
    vmpl1_perms = 0x66,
    reserved = 0x67,
    gpa = 0x68
);

/// Why a PAGE_INFO record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageInfoError {
    /// Not 0x70 bytes.
    #[error("PAGE_INFO is {0} bytes, expected 0x70")]
    Length(usize),
    /// LENGTH field is not 0x70.
    #[error("PAGE_INFO length field {0:#x}, expected 0x70")]
    LengthField(u16),
    /// Unknown page type.
    #[error("PAGE_INFO page type {0} is unknown")]
    PageType(u8),
}

impl PageInfo {
    /// A launch-time record (no IMI, no VMPL permissions).
    pub fn new(digest_cur: [u8; 48], contents: [u8; 48], page_type: PageType, gpa: u64) -> Self {
        PageInfo {
            digest_cur,
            contents,
            length: U16::new(0x70),
            page_type: page_type as u8,
            imi_page: 0,
            vmpl3_perms: 0,
            vmpl2_perms: 0,
            vmpl1_perms: 0,
            reserved: 0,
            gpa: U64::new(gpa),
        }
    }

    /// Reads and checks a record.
    pub fn parse(bytes: &[u8]) -> Result<Self, PageInfoError> {
        let info = Self::read_from_bytes(bytes).map_err(|_| PageInfoError::Length(bytes.len()))?;
        if info.length.get() != 0x70 {
            return Err(PageInfoError::LengthField(info.length.get()));
        }
        PageType::from_u8(info.page_type).ok_or(PageInfoError::PageType(info.page_type))?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_and_checks() {
        let rec = PageInfo::new([1; 48], [2; 48], PageType::Vmsa, VMSA_GPA);
        let b = rec.as_bytes();
        assert_eq!(&b[0x60..0x62], &[0x70, 0]);
        assert_eq!(b[0x62], 2);
        assert_eq!(&b[0x68..0x70], &VMSA_GPA.to_le_bytes());
        assert!(PageInfo::parse(b).is_ok());
        for len in 0..0x70 {
            assert_eq!(
                PageInfo::parse(&b[..len]).unwrap_err(),
                PageInfoError::Length(len)
            );
        }
        let mut bad = b.to_vec();
        bad[0x62] = 7;
        assert_eq!(
            PageInfo::parse(&bad).unwrap_err(),
            PageInfoError::PageType(7)
        );
        bad[0x60] = 0x71;
        assert_eq!(
            PageInfo::parse(&bad).unwrap_err(),
            PageInfoError::LengthField(0x71)
        );
    }
}
