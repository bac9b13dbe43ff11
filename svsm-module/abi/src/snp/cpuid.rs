//! The SNP CPUID page (SEV-SNP firmware ABI, AMD pub. 56860, §8.17.2.6 "CPUID page": the
//! CPUID_FUNCTION entries SNP_LAUNCH_UPDATE checks against the CPU; the layout Linux names
//! `struct snp_cpuid_table`). At VMPL0 of an SNP guest CPUID is intercepted (#VC), and the
//! hypervisor's answer cannot be trusted; the PSP-checked page can. The SVSM's 32-bit entry takes
//! the C-bit position from it, its #VC handler answers CPUID from it, and the guest firmware
//! gets a copy.
//!
//! The page comes from the launch (the PSP rejects an entry that over-reports a feature), but
//! it is parsed as bytes nonetheless: a count beyond the array is an error, not a panic.

use crate::assert_layout;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Entries a CPUID page holds at most.
pub const CPUID_COUNT_MAX: usize = 64;

/// The leaf whose EBX[5:0] is the C-bit position (AMD APM vol. 3, CPUID Fn8000_001F).
pub const LEAF_SEV: u32 = 0x8000_001F;

/// One CPUID_FUNCTION entry, 48 bytes.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct CpuidFunction {
    /// EAX input (the leaf).
    pub eax_in: U32,
    /// ECX input (the subleaf, for leaves that have them).
    pub ecx_in: U32,
    /// XCR0 input (leaf 0xD).
    pub xcr0_in: U64,
    /// XSS input (leaf 0xD).
    pub xss_in: U64,
    /// Output EAX.
    pub eax: U32,
    /// Output EBX.
    pub ebx: U32,
    /// Output ECX.
    pub ecx: U32,
    /// Output EDX.
    pub edx: U32,
    /// Reserved.
    pub reserved: U64,
}

assert_layout!(
    CpuidFunction,
    size = 48,
    eax_in = 0,
    ecx_in = 4,
    xcr0_in = 8,
    xss_in = 16,
    eax = 24,
    ebx = 28,
    ecx = 32,
    edx = 36,
    reserved = 40
);

/// The page: a count, reserved fields, then [`CPUID_COUNT_MAX`] entries (3088 bytes used).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CpuidPage {
    /// Valid entries.
    pub count: U32,
    /// Reserved.
    pub reserved1: U32,
    /// Reserved.
    pub reserved2: U64,
    /// The entries (`count` of them are valid).
    pub functions: [CpuidFunction; CPUID_COUNT_MAX],
}

assert_layout!(
    CpuidPage,
    size = 16 + 48 * CPUID_COUNT_MAX,
    count = 0,
    functions = 16
);

/// Why a CPUID page was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpuidPageError {
    /// Fewer bytes than the page's fixed part.
    #[error("CPUID page: {0} bytes, at least 3088 needed")]
    Truncated(usize),
    /// The count exceeds the array.
    #[error("CPUID page: count {0} exceeds 64")]
    Count(u32),
    /// The page has no Fn8000_001F entry, or its C-bit position is not one SNP uses (32..=51).
    #[error("CPUID page: no usable C-bit position (Fn8000_001F EBX[5:0] = {0:?})")]
    CbitPosition(Option<u32>),
}

/// A CPUID result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Whether ECX selects a subleaf of `leaf` (AMD APM vol. 3 appendix E and Intel SDM CPUID; the
/// leaves Linux's `snp_cpuid` indexes by ECX).
pub const fn has_subleaves(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1D
            | 0x1E
            | 0x1F
            | 0x20
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
            | 0x8000_0026
    )
}

/// A parsed CPUID page (a copy: the table is looked up from exception context).
#[derive(Clone, Copy, Debug)]
pub struct CpuidTable {
    page: CpuidPage,
}

impl CpuidTable {
    /// Parses the page's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, CpuidPageError> {
        let (page, _) = CpuidPage::read_from_prefix(bytes)
            .map_err(|_| CpuidPageError::Truncated(bytes.len()))?;
        let count = page.count.get();
        if count as usize > CPUID_COUNT_MAX {
            return Err(CpuidPageError::Count(count));
        }
        Ok(CpuidTable { page })
    }

    /// The valid entries.
    pub fn functions(&self) -> &[CpuidFunction] {
        let n = (self.page.count.get() as usize).min(CPUID_COUNT_MAX);
        self.page.functions.get(..n).unwrap_or(&[])
    }

    /// The page's entry for `leaf` (and `subleaf` where the leaf has subleaves), if any. For
    /// leaf 0xD the first entry of the subleaf is taken whatever its XCR0/XSS inputs.
    pub fn find(&self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        self.functions()
            .iter()
            .find(|f| f.eax_in.get() == leaf && (!has_subleaves(leaf) || f.ecx_in.get() == subleaf))
            .map(|f| CpuidResult {
                eax: f.eax.get(),
                ebx: f.ebx.get(),
                ecx: f.ecx.get(),
                edx: f.edx.get(),
            })
    }

    /// CPUID as software at VMPL0 should see it: the page's entry, or zeros for a leaf the page
    /// does not list (what AMD CPUs return beyond the maximum leaf). In leaf 1, ECX.OSXSAVE
    /// (bit 27) is replaced by `osxsave` (CR4.OSXSAVE: the page reports the CPU's, not ours).
    pub fn lookup(&self, leaf: u32, subleaf: u32, osxsave: bool) -> CpuidResult {
        let mut r = self.find(leaf, subleaf).unwrap_or_default();
        if leaf == 1 {
            r.ecx = (r.ecx & !(1 << 27)) | (u32::from(osxsave) << 27);
        }
        r
    }

    /// The C-bit position (Fn8000_001F EBX[5:0]), checked to be one SNP hardware uses.
    pub fn cbit_position(&self) -> Result<u32, CpuidPageError> {
        let pos = self.find(LEAF_SEV, 0).map(|r| r.ebx & 0x3F);
        match pos {
            Some(p) if (32..=51).contains(&p) => Ok(p),
            other => Err(CpuidPageError::CbitPosition(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A page built byte by byte (count, then 48-byte entries at offset 16).
    fn page(entries: &[(u32, u32, [u32; 4])]) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, (leaf, sub, out)) in entries.iter().enumerate() {
            let e = 16 + 48 * i;
            p[e..e + 4].copy_from_slice(&leaf.to_le_bytes());
            p[e + 4..e + 8].copy_from_slice(&sub.to_le_bytes());
            for (j, v) in out.iter().enumerate() {
                p[e + 24 + 4 * j..e + 28 + 4 * j].copy_from_slice(&v.to_le_bytes());
            }
        }
        p
    }

    #[test]
    fn lookup_by_leaf_and_subleaf() {
        let bytes = page(&[
            (0, 0, [0x10, 1, 2, 3]),
            (1, 0, [0x00A1_0F11, 0, 0xFFFF_FFFF, 4]),
            (7, 0, [1, 2, 3, 4]),
            (7, 1, [5, 6, 7, 8]),
            (LEAF_SEV, 0, [0x1B, 0x0000_0133, 0, 0]),
        ]);
        let t = CpuidTable::parse(&bytes).unwrap();
        assert_eq!(t.functions().len(), 5);
        // Leaf 0 ignores ECX; leaf 7 does not.
        assert_eq!(t.lookup(0, 99, false).eax, 0x10);
        assert_eq!(t.lookup(7, 1, false).ebx, 6);
        assert_eq!(t.lookup(7, 2, false), CpuidResult::default());
        // OSXSAVE follows CR4, not the page.
        assert_eq!(t.lookup(1, 0, false).ecx, 0xF7FF_FFFF);
        assert_eq!(t.lookup(1, 0, true).ecx, 0xFFFF_FFFF);
        assert_eq!(t.lookup(0x4000_0000, 0, false), CpuidResult::default());
        assert_eq!(t.cbit_position(), Ok(51));
    }

    #[test]
    fn malformed_pages_are_refused() {
        assert_eq!(
            CpuidTable::parse(&[0u8; 100]).unwrap_err(),
            CpuidPageError::Truncated(100)
        );
        let mut bytes = page(&[]);
        bytes[0] = 65;
        assert_eq!(
            CpuidTable::parse(&bytes).unwrap_err(),
            CpuidPageError::Count(65)
        );
        let t = CpuidTable::parse(&page(&[])).unwrap();
        assert_eq!(t.cbit_position(), Err(CpuidPageError::CbitPosition(None)));
        let t = CpuidTable::parse(&page(&[(LEAF_SEV, 0, [0, 20, 0, 0])])).unwrap();
        assert_eq!(
            t.cbit_position(),
            Err(CpuidPageError::CbitPosition(Some(20)))
        );
    }
}
