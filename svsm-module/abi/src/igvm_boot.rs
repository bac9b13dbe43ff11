//! What the SVSM finds when an IGVM loader starts it (`snp-measure build-igvm` writes it, the
//! image's SNP entry reads it; docs/launch.md has the layout):
//!
//! - the **boot information page** ([`SvsmBootInfo`], ours, *measured*): where the SVSM, its
//!   boot pages and the guest firmware are, and where the firmware expects its secrets page,
//!   CPUID page, calling area and pre-validated memory (from OVMF's SEV metadata);
//! - the **boot parameter page** (*unmeasured*, filled by the loader): the IGVM memory map
//!   (IGVM spec, `IGVM_VHS_MEMORY_MAP_ENTRY`, [`MemoryMapEntry`]) at offset 0 and the vCPU count
//!   (u32) at [`VP_COUNT_OFFSET`]. The host writes it: it is believed only as far as a lie
//!   can do no harm (a page it calls RAM and is not fails PVALIDATE).
//!
//! Pages, from the end of the image: boot information, parameters (RBX at entry), the SNP
//! secrets page, the CPUID page.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// 4 KiB.
pub const PAGE: u64 = 4096;
/// Where in the boot parameter page the vCPU count is.
pub const VP_COUNT_OFFSET: usize = 0xF00;
/// Memory-map entries the parameter page can hold before the vCPU count.
pub const MEMORY_MAP_MAX: usize = VP_COUNT_OFFSET / core::mem::size_of::<MemoryMapEntry>();
/// "SVBI", the boot information page's magic.
pub const BOOT_INFO_MAGIC: u32 = u32::from_le_bytes(*b"SVBI");
/// The boot information layout version.
pub const BOOT_INFO_VERSION: u32 = 1;
/// Pre-validated ranges the boot information can list.
pub const PREVALIDATED_MAX: usize = 16;

/// IGVM memory-map entry type of ordinary RAM (`IGVM_MEMORY_MAP_ENTRY_TYPE::MEMORY`).
pub const MEMORY_MAP_RAM: u16 = 0;

/// One IGVM memory-map entry (IGVM spec `IGVM_VHS_MEMORY_MAP_ENTRY`, 24 bytes). The loader
/// writes them sorted by address; the first entry with zero pages ends the list.
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
pub struct MemoryMapEntry {
    /// First guest page number.
    pub starting_gpa_page_number: U64,
    /// Pages.
    pub number_of_pages: U64,
    /// [`MEMORY_MAP_RAM`], platform reserved (1), persistent (2), VTL2-protectable (3).
    pub entry_type: U16,
    /// Flags (none defined for SNP).
    pub flags: U16,
    /// Reserved.
    pub reserved: U32,
}

assert_layout!(
    MemoryMapEntry,
    size = 24,
    starting_gpa_page_number = 0,
    number_of_pages = 8,
    entry_type = 16,
    flags = 18,
    reserved = 20
);

/// A range of guest physical memory, in bytes, page aligned.
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
pub struct GpaRange {
    /// First GPA.
    pub gpa: U64,
    /// Bytes.
    pub size: U64,
}

assert_layout!(GpaRange, size = 16, gpa = 0, size = 8);

impl GpaRange {
    /// A range.
    pub fn new(gpa: u64, size: u64) -> Self {
        GpaRange {
            gpa: gpa.into(),
            size: size.into(),
        }
    }

    /// One past the last byte, if the range does not wrap.
    pub fn end(&self) -> Option<u64> {
        self.gpa.get().checked_add(self.size.get())
    }

    /// Whether `gpa` is inside.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa.get() && gpa - self.gpa.get() < self.size.get()
    }
}

/// The boot information page's content (the rest of the page is zero).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SvsmBootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: U32,
    /// [`BOOT_INFO_VERSION`].
    pub version: U32,
    /// The SVSM's memory (image, boot pages, heap, its private and shared pages).
    pub svsm: GpaRange,
    /// The boot parameter page (RBX at entry).
    pub parameters: U64,
    /// The SNP secrets page.
    pub secrets: U64,
    /// The CPUID page.
    pub cpuid: U64,
    /// The guest firmware as loaded (validated at launch, VMPL0 access only).
    pub firmware: GpaRange,
    /// SEV_FEATURES of the SVSM's VMSA (the guest's VMSA gets the same).
    pub sev_features: U64,
    /// The VMPL the firmware runs at (1..=3).
    pub guest_vmpl: U32,
    /// Valid entries of `prevalidated`.
    pub prevalidated_count: U32,
    /// Where the firmware expects its secrets page (OVMF's SNP_SECRETS section).
    pub guest_secrets: U64,
    /// Where the firmware expects its CPUID page (OVMF's CPUID section).
    pub guest_cpuid: U64,
    /// The boot vCPU's calling area (OVMF's SVSM_CAA section).
    pub guest_caa: U64,
    /// Memory the firmware expects validated and zero at its reset vector (OVMF's SNP_SEC_MEM
    /// and kernel-hashes sections).
    pub prevalidated: [GpaRange; PREVALIDATED_MAX],
}

assert_layout!(
    SvsmBootInfo,
    size = 0x168,
    magic = 0,
    version = 4,
    svsm = 8,
    parameters = 0x18,
    secrets = 0x20,
    cpuid = 0x28,
    firmware = 0x30,
    sev_features = 0x40,
    guest_vmpl = 0x48,
    prevalidated_count = 0x4C,
    guest_secrets = 0x50,
    guest_cpuid = 0x58,
    guest_caa = 0x60,
    prevalidated = 0x68
);

/// Why the boot information or the memory map was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BootInfoError {
    /// Fewer bytes than the structure.
    #[error("boot information: {0} bytes")]
    Truncated(usize),
    /// Not a boot information page.
    #[error("boot information: magic {0:#x}")]
    Magic(u32),
    /// A version this code does not know.
    #[error("boot information: version {0}")]
    Version(u32),
    /// An address or size is not page aligned, or a range wraps.
    #[error("boot information: {0} is not a page-aligned range")]
    Range(&'static str),
    /// The boot pages are not where the layout puts them.
    #[error("boot information: {0}")]
    Layout(&'static str),
    /// More pre-validated ranges than the array holds.
    #[error("boot information: {0} pre-validated ranges")]
    Count(u32),
    /// The guest VMPL is not 1..=3.
    #[error("boot information: guest VMPL {0}")]
    GuestVmpl(u32),
    /// A memory-map entry is unsorted, overlapping or wraps.
    #[error("IGVM memory map: entry {0} is out of order or wraps")]
    MemoryMap(usize),
}

fn range_ok(r: &GpaRange) -> bool {
    r.gpa.get() % PAGE == 0 && r.size.get() % PAGE == 0 && r.end().is_some()
}

fn page_ok(gpa: u64) -> bool {
    gpa % PAGE == 0 && gpa.checked_add(PAGE).is_some()
}

impl SvsmBootInfo {
    /// A zeroed record with the magic and version set.
    pub fn new() -> Self {
        let mut info = SvsmBootInfo::new_zeroed();
        info.magic = BOOT_INFO_MAGIC.into();
        info.version = BOOT_INFO_VERSION.into();
        info
    }

    /// Parses and checks a boot information page: every range page aligned and not wrapping,
    /// the boot pages in their documented places inside the SVSM's memory, the firmware and
    /// the guest's pages outside it.
    pub fn parse(bytes: &[u8]) -> Result<Self, BootInfoError> {
        let (info, _) = SvsmBootInfo::read_from_prefix(bytes)
            .map_err(|_| BootInfoError::Truncated(bytes.len()))?;
        if info.magic.get() != BOOT_INFO_MAGIC {
            return Err(BootInfoError::Magic(info.magic.get()));
        }
        if info.version.get() != BOOT_INFO_VERSION {
            return Err(BootInfoError::Version(info.version.get()));
        }
        if !range_ok(&info.svsm) || info.svsm.size.get() == 0 {
            return Err(BootInfoError::Range("svsm"));
        }
        if !range_ok(&info.firmware) {
            return Err(BootInfoError::Range("firmware"));
        }
        let params = info.parameters.get();
        if !page_ok(params) {
            return Err(BootInfoError::Range("parameters"));
        }
        if info.secrets.get() != params.wrapping_add(PAGE)
            || info.cpuid.get() != params.wrapping_add(2 * PAGE)
            || !info.svsm.contains(params)
            || !info.svsm.contains(params.wrapping_add(2 * PAGE))
            || !info.svsm.contains(params.wrapping_sub(PAGE))
        {
            return Err(BootInfoError::Layout(
                "the boot pages must be info, parameters, secrets, CPUID in the SVSM's memory",
            ));
        }
        if info.sev_features.get() & 1 == 0 {
            return Err(BootInfoError::Layout("SEV_FEATURES without SNP (bit 0)"));
        }
        let vmpl = info.guest_vmpl.get();
        if !(1..=3).contains(&vmpl) {
            return Err(BootInfoError::GuestVmpl(vmpl));
        }
        let count = info.prevalidated_count.get();
        if count as usize > PREVALIDATED_MAX {
            return Err(BootInfoError::Count(count));
        }
        for (name, gpa) in [
            ("guest_secrets", info.guest_secrets.get()),
            ("guest_cpuid", info.guest_cpuid.get()),
            ("guest_caa", info.guest_caa.get()),
        ] {
            if !page_ok(gpa) {
                return Err(BootInfoError::Range(name));
            }
            if info.svsm.contains(gpa) {
                return Err(BootInfoError::Layout(
                    "a guest page lies in the SVSM's memory",
                ));
            }
        }
        for r in info.prevalidated_ranges() {
            if !range_ok(r) {
                return Err(BootInfoError::Range("prevalidated"));
            }
            let overlaps = r.gpa.get() < info.svsm.gpa.get().saturating_add(info.svsm.size.get())
                && info.svsm.gpa.get() < r.gpa.get().saturating_add(r.size.get());
            if overlaps {
                return Err(BootInfoError::Layout(
                    "a pre-validated range overlaps the SVSM's memory",
                ));
            }
        }
        let fw_end = info
            .firmware
            .gpa
            .get()
            .saturating_add(info.firmware.size.get());
        if info.firmware.size.get() != 0
            && info.firmware.gpa.get() < info.svsm.gpa.get().saturating_add(info.svsm.size.get())
            && info.svsm.gpa.get() < fw_end
        {
            return Err(BootInfoError::Layout(
                "the firmware overlaps the SVSM's memory",
            ));
        }
        Ok(info)
    }

    /// The valid pre-validated ranges.
    pub fn prevalidated_ranges(&self) -> &[GpaRange] {
        let n = (self.prevalidated_count.get() as usize).min(PREVALIDATED_MAX);
        self.prevalidated.get(..n).unwrap_or(&[])
    }
}

impl Default for SvsmBootInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// The RAM ranges of an IGVM memory map (the parameter page's first [`VP_COUNT_OFFSET`]
/// bytes), in order; entries of other types are skipped. Unsorted, overlapping or wrapping
/// entries are refused.
pub fn ram_ranges(page: &[u8]) -> Result<impl Iterator<Item = GpaRange> + '_, BootInfoError> {
    let map = page
        .get(..VP_COUNT_OFFSET)
        .ok_or(BootInfoError::Truncated(page.len()))?;
    let entries = <[MemoryMapEntry]>::ref_from_bytes(map)
        .map_err(|_| BootInfoError::Truncated(page.len()))?;
    let used = entries
        .iter()
        .position(|e| e.number_of_pages.get() == 0)
        .unwrap_or(entries.len());
    let entries = entries.get(..used).unwrap_or(&[]);
    let mut prev_end = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let start = e.starting_gpa_page_number.get().checked_mul(PAGE);
        let end = e
            .starting_gpa_page_number
            .get()
            .checked_add(e.number_of_pages.get())
            .and_then(|p| p.checked_mul(PAGE));
        match (start, end) {
            (Some(s), Some(end)) if s >= prev_end => prev_end = end,
            _ => return Err(BootInfoError::MemoryMap(i)),
        }
    }
    Ok(entries
        .iter()
        .filter(|e| e.entry_type.get() == MEMORY_MAP_RAM)
        .map(|e| {
            GpaRange::new(
                e.starting_gpa_page_number.get() * PAGE,
                e.number_of_pages.get() * PAGE,
            )
        }))
}

/// The vCPU count the loader wrote.
pub fn vp_count(page: &[u8]) -> Option<u32> {
    let b = page.get(VP_COUNT_OFFSET..VP_COUNT_OFFSET + 4)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn info() -> SvsmBootInfo {
        let mut i = SvsmBootInfo::new();
        i.svsm = GpaRange::new(0x400_0000, 0x800_0000);
        i.parameters = 0x410_1000.into();
        i.secrets = 0x410_2000.into();
        i.cpuid = 0x410_3000.into();
        i.firmware = GpaRange::new(0xFFC0_0000, 0x40_0000);
        i.guest_vmpl = 1.into();
        i.sev_features = 1.into();
        i.guest_secrets = 0x80_D000.into();
        i.guest_cpuid = 0x80_E000.into();
        i.guest_caa = 0x80_F000.into();
        i.prevalidated[0] = GpaRange::new(0x80_0000, 0x9000);
        i.prevalidated_count = 1.into();
        i
    }

    #[test]
    fn a_good_page_parses_and_each_bad_field_is_named() {
        let mut page = vec![0u8; 4096];
        page[..0x168].copy_from_slice(info().as_bytes());
        let parsed = SvsmBootInfo::parse(&page).unwrap();
        assert_eq!(
            parsed.prevalidated_ranges(),
            &[GpaRange::new(0x80_0000, 0x9000)]
        );

        let bad = |f: fn(&mut SvsmBootInfo)| {
            let mut i = info();
            f(&mut i);
            SvsmBootInfo::parse(i.as_bytes()).unwrap_err()
        };
        assert_eq!(bad(|i| i.magic = 1.into()), BootInfoError::Magic(1));
        assert_eq!(bad(|i| i.version = 2.into()), BootInfoError::Version(2));
        assert_eq!(
            bad(|i| i.svsm.gpa = 0x400_0800.into()),
            BootInfoError::Range("svsm")
        );
        assert!(matches!(
            bad(|i| i.secrets = 0x410_4000.into()),
            BootInfoError::Layout(_)
        ));
        assert_eq!(
            bad(|i| i.guest_vmpl = 0.into()),
            BootInfoError::GuestVmpl(0)
        );
        assert!(matches!(
            bad(|i| i.sev_features = 0x20.into()),
            BootInfoError::Layout(_)
        ));
        assert_eq!(
            bad(|i| i.prevalidated_count = 17.into()),
            BootInfoError::Count(17)
        );
        assert!(matches!(
            bad(|i| i.guest_caa = 0x400_0000.into()),
            BootInfoError::Layout(_)
        ));
        assert_eq!(
            bad(|i| i.guest_cpuid = 0x80_E001.into()),
            BootInfoError::Range("guest_cpuid")
        );
        assert!(matches!(
            bad(|i| i.prevalidated[0] = GpaRange::new(0x3F0_0000, 0x20_0000)),
            BootInfoError::Layout(_)
        ));
        assert!(matches!(
            bad(|i| i.firmware = GpaRange::new(0x700_0000, 0x40_0000)),
            BootInfoError::Layout(_)
        ));
        assert_eq!(
            bad(|i| i.prevalidated[0] = GpaRange::new(!0xFFF, 0x2000)),
            BootInfoError::Range("prevalidated")
        );
        assert_eq!(
            SvsmBootInfo::parse(&[0; 8]).unwrap_err(),
            BootInfoError::Truncated(8)
        );
    }

    fn map(entries: &[(u64, u64, u16)]) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        for (i, (start, pages, kind)) in entries.iter().enumerate() {
            let e = 24 * i;
            page[e..e + 8].copy_from_slice(&start.to_le_bytes());
            page[e + 8..e + 16].copy_from_slice(&pages.to_le_bytes());
            page[e + 16..e + 18].copy_from_slice(&kind.to_le_bytes());
        }
        page[0xF00..0xF04].copy_from_slice(&4u32.to_le_bytes());
        page
    }

    #[test]
    fn memory_map_ram_ranges_in_order() {
        let page = map(&[
            (0, 0xA0, 0),
            (0x100, 0x7FF00, 0),
            (0xFEC00, 1, 1),
            (0x100000, 0x40000, 0),
        ]);
        let ram: Vec<_> = ram_ranges(&page).unwrap().collect();
        assert_eq!(
            ram,
            vec![
                GpaRange::new(0, 0xA_0000),
                GpaRange::new(0x10_0000, 0x7FF0_0000),
                GpaRange::new(0x1_0000_0000, 0x4000_0000)
            ]
        );
        assert_eq!(vp_count(&page), Some(4));
        assert_eq!(MEMORY_MAP_MAX, 160);
    }

    #[test]
    fn malformed_memory_maps_are_refused() {
        let unsorted = map(&[(0x100, 1, 0), (0, 1, 0)]);
        assert_eq!(
            ram_ranges(&unsorted).err(),
            Some(BootInfoError::MemoryMap(1))
        );
        let overlapping = map(&[(0, 0x200, 0), (0x100, 1, 0)]);
        assert_eq!(
            ram_ranges(&overlapping).err(),
            Some(BootInfoError::MemoryMap(1))
        );
        let wraps = map(&[(u64::MAX / 4096, 2, 0)]);
        assert_eq!(ram_ranges(&wraps).err(), Some(BootInfoError::MemoryMap(0)));
        assert_eq!(
            ram_ranges(&[0u8; 10]).err(),
            Some(BootInfoError::Truncated(10))
        );
        assert_eq!(vp_count(&[0u8; 10]), None);
    }
}
