//! The launch digest of an IGVM file (COCONUT-SVSM + OVMF, or any SNP IGVM image), as the
//! IGVM specification's directives map to PAGE_INFO in QEMU `backends/igvm.c` and coconut-svsm
//! `tools/igvmmeasure`. The file is parsed by the `igvm`
//! crate (microsoft/igvm 0.5); the PAGE_INFO chain is replayed here.
//!
//! Three consumers of IGVM files disagree on a few directives, so the caller picks one with
//! [`IgvmFlavor`] — there is no silent default:
//!
//! | Directive | `qemu` (QEMU ≥ 10.1 loader + KVM) | `igvmmeasure` | `igvmmeasure-native-zero` | `igvm-crate` (igvm 0.5 `measurement`) |
//! |---|---|---|---|---|
//! | PAGE_DATA NORMAL without data | NORMAL page of zeros | same | ZERO page | same as `qemu` |
//! | PAGE_DATA `shared` flag | measured like any page (the loader ignores the flag) | same | same | skipped |
//! | PARAMETER_INSERT | every 4 KiB of the area, UNMEASURED | **one** UNMEASURED page | one | every 4 KiB |
//! | SNP VP context | exactly one, at 0xFFFFFFFFF000, measured **after** all pages (KVM, LAUNCH_FINISH) | at its GPA, in file order | same | same |
//! | 2 MiB flag | 512 × 4 KiB pages | 512 × 4 KiB | 512 × 4 KiB | one 4 KiB page (the crate ignores the flag) |
//! | GUEST_POLICY header | not needed | not needed | not needed | required (the crate refuses files without) |
//!
//! Common to all: pages are measured in file order; only headers whose compatibility mask has
//! the SEV-SNP platform's bit count (`igvmmeasure` measures VP contexts regardless of mask);
//! SECRETS → one SECRETS page, CPUID_DATA / CPUID_XF → one CPUID page, unmeasured NORMAL →
//! UNMEASURED; short data is zero-padded to the page.
//!
//! The `qemu` flavour assumes the COCONUT QEMU `sev-snp-guest` SVSM init flag (KVM does not
//! measure AP VMSAs; the SVSM starts the APs later). Without it KVM adds one VMSA per AP, whose
//! contents this crate does not model for IGVM launches. Keep parameter areas to one page and
//! the VMSA last at 0xFFFFFFFFF000 and all four flavours agree.

use crate::digest::{sha384, LaunchDigest, Measurement};
use crate::error::IgvmError;
use crate::{Page, PAGE_SIZE};
use core::fmt;
use core::str::FromStr;
use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader, IgvmPlatformHeader};
use igvm_defs::{IgvmPageDataFlags, IgvmPageDataType, IgvmPlatformType};
use std::collections::BTreeMap;
use svsm_abi::launch::{PageType, VMSA_GPA};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Which consumer of the IGVM file to reproduce (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IgvmFlavor {
    /// QEMU's IGVM loader with KVM: what the PSP actually measures for a QEMU launch.
    Qemu,
    /// COCONUT-SVSM `igvmmeasure` (default options).
    Igvmmeasure,
    /// COCONUT-SVSM `igvmmeasure --native-zero`.
    IgvmmeasureNativeZero,
    /// `igvm::measurement::generate_snp_measurement` of the igvm 0.5 crate.
    IgvmCrate,
}

impl IgvmFlavor {
    /// Every flavour.
    pub const ALL: [IgvmFlavor; 4] = [
        IgvmFlavor::Qemu,
        IgvmFlavor::Igvmmeasure,
        IgvmFlavor::IgvmmeasureNativeZero,
        IgvmFlavor::IgvmCrate,
    ];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            IgvmFlavor::Qemu => "qemu",
            IgvmFlavor::Igvmmeasure => "igvmmeasure",
            IgvmFlavor::IgvmmeasureNativeZero => "igvmmeasure-native-zero",
            IgvmFlavor::IgvmCrate => "igvm-crate",
        }
    }

    const fn is_igvmmeasure(self) -> bool {
        matches!(
            self,
            IgvmFlavor::Igvmmeasure | IgvmFlavor::IgvmmeasureNativeZero
        )
    }
}

impl fmt::Display for IgvmFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown flavour name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown IGVM flavour {0:?} (qemu, igvmmeasure, igvmmeasure-native-zero, igvm-crate)")]
pub struct IgvmFlavorError(pub String);

impl FromStr for IgvmFlavor {
    type Err = IgvmFlavorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IgvmFlavor::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| IgvmFlavorError(s.to_owned()))
    }
}

/// Bound on measured pages (16 GiB of guest memory; a bound against hostile sizes).
pub const MAX_PAGES: u64 = 1 << 22;

const PAGE: u64 = PAGE_SIZE as u64;
const PAGE_2M: u64 = 2 << 20;

/// The SEV-SNP compatibility mask of a parsed file.
pub fn snp_compatibility_mask(file: &IgvmFile) -> Result<u32, IgvmError> {
    file.platforms()
        .iter()
        .find_map(|p| match p {
            IgvmPlatformHeader::SupportedPlatform(sp)
                if sp.platform_type == IgvmPlatformType::SEV_SNP =>
            {
                Some(sp.compatibility_mask)
            }
            _ => None,
        })
        .ok_or(IgvmError::NoSnpPlatform)
}

struct Chain {
    ld: LaunchDigest,
    pages: u64,
    zero_hash: [u8; 48],
}

impl Chain {
    fn budget(&mut self, n: u64) -> Result<(), IgvmError> {
        self.pages = self
            .pages
            .checked_add(n)
            .filter(|&p| p <= MAX_PAGES)
            .ok_or(IgvmError::TooManyPages { max: MAX_PAGES })?;
        Ok(())
    }

    fn empty(&mut self, page_type: PageType, gpa: u64, count: u64) -> Result<(), IgvmError> {
        self.budget(count)?;
        self.ld.update_empty_pages(page_type, gpa, count);
        Ok(())
    }

    /// NORMAL pages over `len` bytes at `gpa` from `data` (zero-padded).
    fn normal(&mut self, gpa: u64, len: u64, data: &[u8]) -> Result<(), IgvmError> {
        let count = len / PAGE;
        self.budget(count)?;
        let mut chunks = data.chunks(PAGE_SIZE);
        let mut at = gpa;
        for _ in 0..count {
            let contents = match chunks.next() {
                Some(c) if c.len() == PAGE_SIZE => sha384(c),
                Some(c) => {
                    let mut page: Page = [0; PAGE_SIZE];
                    if let Some(dst) = page.get_mut(..c.len()) {
                        dst.copy_from_slice(c);
                    }
                    sha384(&page)
                }
                None => self.zero_hash,
            };
            self.ld.update(PageType::Normal, at, contents);
            at = at.wrapping_add(PAGE);
        }
        Ok(())
    }

    fn vmsa(&mut self, gpa: u64, vmsa: &[u8]) -> Result<(), IgvmError> {
        self.budget(1)?;
        let mut page: Page = [0; PAGE_SIZE];
        let dst = page.get_mut(..vmsa.len()).ok_or(IgvmError::PageDataSize {
            gpa,
            len: vmsa.len(),
            page: PAGE,
        })?;
        dst.copy_from_slice(vmsa);
        self.ld.update(PageType::Vmsa, gpa, sha384(&page));
        Ok(())
    }
}

fn range(what: &'static str, gpa: u64, bytes: u64) -> Result<(), IgvmError> {
    let err = IgvmError::Range { what, gpa, bytes };
    if gpa % PAGE != 0 {
        return Err(err);
    }
    gpa.checked_add(bytes).map(|_| ()).ok_or(err)
}

fn page_data(
    chain: &mut Chain,
    flavor: IgvmFlavor,
    gpa: u64,
    flags: IgvmPageDataFlags,
    data_type: IgvmPageDataType,
    data: &[u8],
) -> Result<(), IgvmError> {
    if flavor == IgvmFlavor::IgvmCrate && flags.shared() {
        return Ok(());
    }
    let len = if flags.is_2mb_page() && flavor != IgvmFlavor::IgvmCrate {
        PAGE_2M
    } else {
        PAGE
    };
    if data.len() as u64 > len {
        return Err(IgvmError::PageDataSize {
            gpa,
            len: data.len(),
            page: len,
        });
    }
    range("PAGE_DATA", gpa, len)?;
    let count = len / PAGE;
    match data_type {
        IgvmPageDataType::SECRETS => chain.empty(PageType::Secrets, gpa, count),
        IgvmPageDataType::CPUID_DATA | IgvmPageDataType::CPUID_XF => {
            chain.empty(PageType::Cpuid, gpa, count)
        }
        IgvmPageDataType::NORMAL if flags.unmeasured() => {
            chain.empty(PageType::Unmeasured, gpa, count)
        }
        IgvmPageDataType::NORMAL
            if data.is_empty() && flavor == IgvmFlavor::IgvmmeasureNativeZero =>
        {
            chain.empty(PageType::Zero, gpa, count)
        }
        IgvmPageDataType::NORMAL => chain.normal(gpa, len, data),
        other => Err(IgvmError::PageDataType { gpa, kind: other.0 }),
    }
}

/// The launch digest of a parsed IGVM file for `flavor`.
pub fn measure_igvm(file: &IgvmFile, flavor: IgvmFlavor) -> Result<Measurement, IgvmError> {
    let mask = snp_compatibility_mask(file)?;
    let applies = |m: u32| m & mask != 0;
    if flavor == IgvmFlavor::IgvmCrate
        && !file.initializations().iter().any(|h| {
            matches!(h, IgvmInitializationHeader::GuestPolicy { compatibility_mask, .. }
                if compatibility_mask & mask == mask)
        })
    {
        return Err(IgvmError::MissingGuestPolicy { mask });
    }
    let mut chain = Chain {
        ld: LaunchDigest::new(),
        pages: 0,
        zero_hash: sha384(&[0u8; PAGE_SIZE]),
    };
    let mut areas: BTreeMap<u32, u64> = BTreeMap::new();
    let mut deferred_vmsas: Vec<(u64, Page)> = Vec::new();
    for d in file.directives() {
        match d {
            IgvmDirectiveHeader::PageData {
                gpa,
                compatibility_mask,
                flags,
                data_type,
                data,
            } if applies(*compatibility_mask) => {
                page_data(&mut chain, flavor, *gpa, *flags, *data_type, data)?
            }
            IgvmDirectiveHeader::ParameterArea {
                number_of_bytes,
                parameter_area_index,
                ..
            } => {
                areas.insert(*parameter_area_index, *number_of_bytes);
            }
            IgvmDirectiveHeader::ParameterInsert(p) if applies(p.compatibility_mask) => {
                let size = *areas
                    .get(&p.parameter_area_index)
                    .ok_or(IgvmError::ParameterArea {
                        index: p.parameter_area_index,
                        gpa: p.gpa,
                    })?;
                let count = if flavor.is_igvmmeasure() {
                    1
                } else {
                    size.div_ceil(PAGE)
                };
                let bytes = count.checked_mul(PAGE).ok_or(IgvmError::Range {
                    what: "PARAMETER_INSERT",
                    gpa: p.gpa,
                    bytes: size,
                })?;
                range("PARAMETER_INSERT", p.gpa, bytes)?;
                chain.empty(PageType::Unmeasured, p.gpa, count)?;
            }
            IgvmDirectiveHeader::SnpVpContext {
                gpa,
                compatibility_mask,
                vmsa,
                ..
            } if applies(*compatibility_mask) || flavor.is_igvmmeasure() => {
                range("SNP VP context", *gpa, PAGE)?;
                if flavor == IgvmFlavor::Qemu {
                    if *gpa != VMSA_GPA {
                        return Err(IgvmError::VmsaGpa { gpa: *gpa });
                    }
                    let bytes = vmsa.as_bytes();
                    let mut page: Page = [0; PAGE_SIZE];
                    page.get_mut(..bytes.len())
                        .ok_or(IgvmError::PageDataSize {
                            gpa: *gpa,
                            len: bytes.len(),
                            page: PAGE,
                        })?
                        .copy_from_slice(bytes);
                    deferred_vmsas.push((*gpa, page));
                } else {
                    chain.vmsa(*gpa, vmsa.as_bytes())?;
                }
            }
            _ => {}
        }
    }
    if flavor == IgvmFlavor::Qemu {
        match deferred_vmsas.as_slice() {
            [] => return Err(IgvmError::NoVmsa),
            [(_, page)] => chain.vmsa(VMSA_GPA, page)?,
            more => return Err(IgvmError::VmsaCount { count: more.len() }),
        }
    }
    Ok(chain.ld.value())
}

/// The fixed-header prefix common to IGVM format versions 1 and 2 (igvm_defs
/// `IGVM_FIXED_HEADER`, IGVM specification "Fixed header").
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FixedHeader {
    /// "IGVM" (0x4D564749).
    pub magic: U32,
    /// 1 or 2.
    pub format_version: U32,
    /// Offset of the variable headers.
    pub variable_header_offset: U32,
    /// Size of the variable headers.
    pub variable_header_size: U32,
    /// Total file size.
    pub total_file_size: U32,
    /// CRC32 of the fixed and variable headers.
    pub checksum: U32,
}
assert_layout!(
    FixedHeader,
    size = 24,
    magic = 0,
    format_version = 4,
    variable_header_offset = 8,
    variable_header_size = 12,
    total_file_size = 16,
    checksum = 20
);

/// Checks the fixed header's sizes before the `igvm` crate sees the file: igvm 0.5.0 adds
/// `variable_header_offset + variable_header_size` in u32 and splits the file at the size
/// unchecked, which panics on hostile values (found by the `igvm_measure` fuzz target).
pub fn check_fixed_header(file: &[u8]) -> Result<(), IgvmError> {
    let (h, _) = FixedHeader::read_from_prefix(file).map_err(|_| IgvmError::FixedHeader {
        field: "length",
        value: file.len() as u64,
    })?;
    let bad = |field, value: u32| IgvmError::FixedHeader {
        field,
        value: u64::from(value),
    };
    if h.magic.get() != igvm_defs::IGVM_MAGIC_VALUE {
        return Err(bad("magic", h.magic.get()));
    }
    if !matches!(h.format_version.get(), 1 | 2) {
        return Err(bad("format_version", h.format_version.get()));
    }
    if h.total_file_size.get() as usize != file.len() {
        return Err(bad("total_file_size", h.total_file_size.get()));
    }
    let end = u64::from(h.variable_header_offset.get()) + u64::from(h.variable_header_size.get());
    if end > file.len() as u64 {
        return Err(bad("variable_header_size", h.variable_header_size.get()));
    }
    Ok(())
}

/// Parses `file` (an IGVM binary, untrusted) and returns its launch digest for `flavor`.
///
/// The fixed header is checked here first ([`check_fixed_header`]); a panic inside the `igvm`
/// parser on input it fails to bounds-check is caught and returned as
/// [`IgvmError::ParserPanicked`] (with the default `panic = "unwind"`), so hostile files yield
/// an error, not a crash.
pub fn igvm_launch_digest(file: &[u8], flavor: IgvmFlavor) -> Result<Measurement, IgvmError> {
    check_fixed_header(file)?;
    let parsed = std::panic::catch_unwind(|| {
        IgvmFile::new_from_binary(file, Some(igvm::IsolationType::Snp))
    })
    .map_err(|_| IgvmError::ParserPanicked)?
    .map_err(IgvmError::Parse)?;
    measure_igvm(&parsed, flavor)
}
