//! Builds the IGVM file an SEV-SNP host launches an svsm-vhsm guest from: the SVSM at VMPL0 and
//! the guest firmware (OVMF) it will start at VMPL1, with the pages, parameter areas and the
//! SVSM's boot VMSA a loader needs (docs/launch.md has the layout and the entry contract). The
//! file is written with the `igvm` crate; its launch digest is then what [`crate::igvm`]
//! computes for it (`snp-measure --igvm FILE --igvm-flavor qemu`).
//!
//! Layout (all GPAs 4 KiB aligned; nothing overlaps):
//!
//! | GPA | pages | directive |
//! |---|---|---|
//! | `svsm_base` | the SVSM image | PAGE_DATA, measured |
//! | + image | 1 | the boot information (`svsm_abi::igvm_boot::SvsmBootInfo`), PAGE_DATA, measured |
//! | + 1 page | 1 | PARAMETER_AREA 0 inserted here, unmeasured: the IGVM memory map at offset 0, the vCPU count (u32) at [`VP_COUNT_OFFSET`] |
//! | + 2 pages | 1 | SECRETS page |
//! | + 3 pages | 1 | CPUID page (the loader fills it) |
//! | 4 GiB − firmware | the firmware | PAGE_DATA, measured |
//! | 0xFFFFFFFFF000 | 1 | the SVSM's boot VMSA (VMPL0, vCPU 0), measured last |
//!
//! The rest of the SVSM's region is not in the file: the SVSM validates it itself.

use crate::error::IgvmBuildError;
use crate::firmware::{Firmware, SectionKind};
use crate::PAGE_SIZE;
use igvm::snp_defs::SevVmsa;
use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader, IgvmPlatformHeader};
use igvm_defs::{
    IgvmPageDataFlags, IgvmPageDataType, IgvmPlatformType, IGVM_VHS_PARAMETER,
    IGVM_VHS_PARAMETER_INSERT, IGVM_VHS_SUPPORTED_PLATFORM,
};
use svsm_abi::igvm_boot::{GpaRange, SvsmBootInfo, PREVALIDATED_MAX};
use svsm_abi::launch::VMSA_GPA;
use svsm_abi::snp::vmsa::{VmcbSegment, VmsaPage};
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

/// The SEV-SNP platform's compatibility mask bit in the files this module writes.
pub const SNP_COMPATIBILITY_MASK: u32 = 1;
/// IGVM's SEV-SNP platform version.
const SNP_PLATFORM_VERSION: u16 = 1;
/// Where in the boot parameter page the vCPU count is.
pub const VP_COUNT_OFFSET: u32 = svsm_abi::igvm_boot::VP_COUNT_OFFSET as u32;
/// 4 GiB: the firmware ends here.
const FOUR_GIB: u64 = 1 << 32;
/// Largest SVSM image accepted (its region must also hold the heap).
pub const MAX_SVSM_IMAGE: usize = 64 * 1024 * 1024;
/// Largest firmware accepted (OVMF.fd is 2 or 4 MiB).
pub const MAX_FIRMWARE: usize = 16 * 1024 * 1024;

/// What goes into the file.
#[derive(Clone, Debug)]
pub struct SvsmIgvm<'a> {
    /// The SVSM image, loaded byte for byte at `svsm_base`.
    pub svsm_image: &'a [u8],
    /// First GPA of the SVSM's memory.
    pub svsm_base: u64,
    /// Bytes of the SVSM's memory (image, parameter, secrets and CPUID pages, heap).
    pub svsm_size: u64,
    /// The SVSM's entry point (a GPA inside the image).
    pub svsm_entry: u64,
    /// The guest firmware (OVMF.fd), placed to end at 4 GiB.
    pub firmware: &'a [u8],
    /// The SNP guest policy.
    pub policy: u64,
    /// SEV_FEATURES of every VMSA (bit 0, SNP, must be set).
    pub sev_features: u64,
    /// Where the firmware expects its SNP pages ([`guest_firmware`] reads them from OVMF).
    pub guest: GuestFirmware,
}

/// What the guest firmware expects from whoever launches it as an SNP guest (OVMF's SEV
/// metadata sections), handed to the SVSM in the boot information page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFirmware {
    /// The VMPL the firmware runs at (1..=3).
    pub vmpl: u32,
    /// Its secrets page (SNP_SECRETS).
    pub secrets: u64,
    /// Its CPUID page (CPUID).
    pub cpuid: u64,
    /// The boot vCPU's calling area (SVSM_CAA).
    pub caa: u64,
    /// Memory it expects validated and zero (SNP_SEC_MEM and the kernel-hashes page), as
    /// (GPA, bytes).
    pub prevalidated: Vec<(u64, u64)>,
}

/// Reads [`GuestFirmware`] (at VMPL1) from the firmware's SEV metadata. A firmware without
/// SNP_SECRETS, CPUID or SVSM_CAA sections cannot run under an SVSM (OVMF gained SVSM_CAA in
/// edk2-stable202405): refused, naming the section.
pub fn guest_firmware(firmware: &[u8]) -> Result<GuestFirmware, IgvmBuildError> {
    let fw = Firmware::parse(firmware).map_err(IgvmBuildError::Firmware)?;
    let sections = fw
        .sections()
        .ok_or(IgvmBuildError::FirmwareSection("SEV metadata"))?;
    let one = |kind: SectionKind, name: &'static str| {
        sections
            .iter()
            .find(|s| s.kind == kind)
            .map(|s| u64::from(s.gpa))
            .ok_or(IgvmBuildError::FirmwareSection(name))
    };
    Ok(GuestFirmware {
        vmpl: 1,
        secrets: one(SectionKind::SnpSecrets, "SNP_SECRETS")?,
        cpuid: one(SectionKind::Cpuid, "CPUID")?,
        caa: one(SectionKind::SvsmCaa, "SVSM_CAA")?,
        prevalidated: sections
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    SectionKind::SnpSecMem | SectionKind::SnpKernelHashes
                )
            })
            .map(|s| (u64::from(s.gpa), u64::from(s.size)))
            .collect(),
    })
}

/// An SVSM ELF executable turned into what the file loads: the flat image (every PT_LOAD
/// segment at its address, `.bss` included as zeros, so the SVSM starts with its statics
/// validated and measured), its first GPA and its entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvsmElf {
    /// The bytes from `base`, whole pages.
    pub image: Vec<u8>,
    /// The lowest segment's address, page aligned down.
    pub base: u64,
    /// The ELF entry point.
    pub entry: u64,
}

/// Flattens an x86-64 ELF executable linked at its physical address (below 4 GiB).
pub fn svsm_elf(bytes: &[u8]) -> Result<SvsmElf, IgvmBuildError> {
    use object::{Object, ObjectSegment};
    let bad = IgvmBuildError::Elf;
    let file = object::File::parse(bytes).map_err(|_| bad("not an ELF file object can read"))?;
    if file.format() != object::BinaryFormat::Elf
        || file.architecture() != object::Architecture::X86_64
        || !file.is_64()
    {
        return Err(bad("not a 64-bit x86-64 ELF file"));
    }
    let mut segments = Vec::new();
    for seg in file.segments() {
        let data = seg
            .data()
            .map_err(|_| bad("a segment's file bytes are out of range"))?;
        let (addr, size) = (seg.address(), seg.size());
        let end = addr.checked_add(size).filter(|&e| e <= FOUR_GIB);
        if end.is_none() || (data.len() as u64) > size {
            return Err(bad(
                "a segment ends above 4 GiB or is larger in the file than in memory",
            ));
        }
        if size > 0 {
            segments.push((addr, size, data));
        }
    }
    let base = segments
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or(bad("no loadable segment"))?
        & !(PAGE_SIZE as u64 - 1);
    let end = segments.iter().map(|s| s.0 + s.1).max().unwrap_or(base);
    let len = (end - base).div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
    if len > MAX_SVSM_IMAGE as u64 {
        return Err(IgvmBuildError::ImageSize(len as usize));
    }
    let mut image = vec![0u8; len as usize];
    for (addr, _, data) in &segments {
        let at = (addr - base) as usize;
        let dst = image
            .get_mut(at..at + data.len())
            .ok_or(bad("segments overlap or fall outside the image"))?;
        dst.copy_from_slice(data);
    }
    let entry = file.entry();
    if !(base..end).contains(&entry) {
        return Err(IgvmBuildError::Entry(entry));
    }
    Ok(SvsmElf { image, base, entry })
}

/// The GPAs the builder chose, for the caller and the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IgvmLayout {
    /// The boot information page (measured).
    pub boot_info: u64,
    /// The boot parameter page (memory map, vCPU count); RBX at entry.
    pub parameters: u64,
    /// The secrets page.
    pub secrets: u64,
    /// The CPUID page.
    pub cpuid: u64,
    /// The firmware's first GPA.
    pub firmware: u64,
}

fn pages_of(len: usize) -> u64 {
    (len as u64).div_ceil(PAGE_SIZE as u64)
}

/// The SVSM's boot VMSA: 32-bit protected mode with flat 4 GiB segments and paging off (the
/// state a PVH entry also has), at `entry`, RBX = the boot parameter page, VMPL0.
pub fn svsm_boot_vmsa(entry: u64, parameters: u64, sev_features: u64) -> VmsaPage {
    // The reset state, switched to flat 32-bit protected mode at `entry`.
    let mut v = svsm_abi::snp::vmsa::reset_state(svsm_abi::snp::vmsa::RESET_EIP, 0, sev_features);
    let data = VmcbSegment::new(0x10, 0xC93, 0xFFFF_FFFF, 0);
    v.cs = VmcbSegment::new(0x08, 0xC9B, 0xFFFF_FFFF, 0);
    v.ds = data;
    v.es = data;
    v.ss = data;
    v.fs = data;
    v.gs = data;
    v.cr0 = U64::new(0x11); // PE, ET
    v.rip = U64::new(entry);
    v.rbx = U64::new(parameters);
    v
}

/// The file's layout for these inputs, after checking them.
pub fn layout(input: &SvsmIgvm<'_>) -> Result<IgvmLayout, IgvmBuildError> {
    let page = PAGE_SIZE as u64;
    if input.svsm_image.is_empty() || input.svsm_image.len() > MAX_SVSM_IMAGE {
        return Err(IgvmBuildError::ImageSize(input.svsm_image.len()));
    }
    if input.firmware.is_empty()
        || input.firmware.len() > MAX_FIRMWARE
        || input.firmware.len() % PAGE_SIZE != 0
    {
        return Err(IgvmBuildError::FirmwareSize(input.firmware.len()));
    }
    if input.svsm_base % page != 0 || input.svsm_size % page != 0 {
        return Err(IgvmBuildError::Misaligned);
    }
    if input.sev_features & 1 == 0 {
        return Err(IgvmBuildError::SevFeatures(input.sev_features));
    }
    // The image and its four boot pages, below 4 GiB (the firmware ends there): every sum
    // below is then far from overflowing.
    let needed = (pages_of(input.svsm_image.len()) + 4) * page;
    if input.svsm_base >= FOUR_GIB || input.svsm_size > FOUR_GIB - input.svsm_base {
        return Err(IgvmBuildError::Overlap);
    }
    if needed > input.svsm_size {
        return Err(IgvmBuildError::RegionTooSmall {
            needed,
            size: input.svsm_size,
        });
    }
    let parameters = input.svsm_base + needed - 3 * page;
    let (secrets, cpuid) = (parameters + page, parameters + 2 * page);
    let svsm_end = input.svsm_base + input.svsm_size;
    let entry_end = input.svsm_base + input.svsm_image.len() as u64;
    if !(input.svsm_base..entry_end).contains(&input.svsm_entry) || input.svsm_entry >= FOUR_GIB {
        return Err(IgvmBuildError::Entry(input.svsm_entry));
    }
    let firmware = FOUR_GIB - input.firmware.len() as u64;
    if svsm_end > firmware {
        return Err(IgvmBuildError::Overlap);
    }
    Ok(IgvmLayout {
        boot_info: parameters - page,
        parameters,
        secrets,
        cpuid,
        firmware,
    })
}

fn page_data(gpa: u64, data: &[u8]) -> Vec<IgvmDirectiveHeader> {
    data.chunks(PAGE_SIZE)
        .enumerate()
        .map(|(i, chunk)| IgvmDirectiveHeader::PageData {
            gpa: gpa + (i * PAGE_SIZE) as u64,
            compatibility_mask: SNP_COMPATIBILITY_MASK,
            flags: IgvmPageDataFlags::new(),
            data_type: IgvmPageDataType::NORMAL,
            data: chunk.to_vec(),
        })
        .collect()
}

/// The boot information page for `input` laid out as `l`, checked as the SVSM will check it.
pub fn boot_info(input: &SvsmIgvm<'_>, l: &IgvmLayout) -> Result<SvsmBootInfo, IgvmBuildError> {
    let g = &input.guest;
    if g.prevalidated.len() > PREVALIDATED_MAX {
        return Err(IgvmBuildError::BootInfo(
            svsm_abi::igvm_boot::BootInfoError::Count(g.prevalidated.len() as u32),
        ));
    }
    let mut info = SvsmBootInfo::new();
    info.svsm = GpaRange::new(input.svsm_base, input.svsm_size);
    info.parameters = l.parameters.into();
    info.secrets = l.secrets.into();
    info.cpuid = l.cpuid.into();
    info.firmware = GpaRange::new(l.firmware, input.firmware.len() as u64);
    info.sev_features = input.sev_features.into();
    info.guest_vmpl = g.vmpl.into();
    info.guest_secrets = g.secrets.into();
    info.guest_cpuid = g.cpuid.into();
    info.guest_caa = g.caa.into();
    info.prevalidated_count = (g.prevalidated.len() as u32).into();
    for (slot, (gpa, size)) in info.prevalidated.iter_mut().zip(&g.prevalidated) {
        *slot = GpaRange::new(*gpa, *size);
    }
    SvsmBootInfo::parse(info.as_bytes()).map_err(IgvmBuildError::BootInfo)
}

/// Builds the IGVM file.
pub fn build(input: &SvsmIgvm<'_>) -> Result<(Vec<u8>, IgvmLayout), IgvmBuildError> {
    let l = layout(input)?;
    let info = boot_info(input, &l)?;
    let mut directives = page_data(input.svsm_base, input.svsm_image);
    let mut info_page = info.as_bytes().to_vec();
    info_page.resize(PAGE_SIZE, 0);
    directives.extend(page_data(l.boot_info, &info_page));
    directives.extend([
        IgvmDirectiveHeader::ParameterArea {
            number_of_bytes: PAGE_SIZE as u64,
            parameter_area_index: 0,
            initial_data: Vec::new(),
        },
        IgvmDirectiveHeader::MemoryMap(IGVM_VHS_PARAMETER {
            parameter_area_index: 0,
            byte_offset: 0,
        }),
        IgvmDirectiveHeader::VpCount(IGVM_VHS_PARAMETER {
            parameter_area_index: 0,
            byte_offset: VP_COUNT_OFFSET,
        }),
        IgvmDirectiveHeader::ParameterInsert(IGVM_VHS_PARAMETER_INSERT {
            gpa: l.parameters,
            compatibility_mask: SNP_COMPATIBILITY_MASK,
            parameter_area_index: 0,
        }),
        IgvmDirectiveHeader::PageData {
            gpa: l.secrets,
            compatibility_mask: SNP_COMPATIBILITY_MASK,
            flags: IgvmPageDataFlags::new(),
            data_type: IgvmPageDataType::SECRETS,
            data: Vec::new(),
        },
        IgvmDirectiveHeader::PageData {
            gpa: l.cpuid,
            compatibility_mask: SNP_COMPATIBILITY_MASK,
            flags: IgvmPageDataFlags::new(),
            data_type: IgvmPageDataType::CPUID_DATA,
            data: Vec::new(),
        },
    ]);
    directives.extend(page_data(l.firmware, input.firmware));
    let vmsa = svsm_boot_vmsa(input.svsm_entry, l.parameters, input.sev_features);
    let vmsa = SevVmsa::read_from_bytes(vmsa.as_bytes()).map_err(|_| IgvmBuildError::Vmsa)?;
    directives.push(IgvmDirectiveHeader::SnpVpContext {
        gpa: VMSA_GPA,
        compatibility_mask: SNP_COMPATIBILITY_MASK,
        vp_index: 0,
        vmsa: Box::new(vmsa),
    });
    let file = IgvmFile::new(
        igvm::IgvmRevision::V1,
        vec![IgvmPlatformHeader::SupportedPlatform(
            IGVM_VHS_SUPPORTED_PLATFORM {
                compatibility_mask: SNP_COMPATIBILITY_MASK,
                highest_vtl: 0,
                platform_type: IgvmPlatformType::SEV_SNP,
                platform_version: SNP_PLATFORM_VERSION,
                shared_gpa_boundary: 0,
            },
        )],
        vec![IgvmInitializationHeader::GuestPolicy {
            policy: input.policy,
            compatibility_mask: SNP_COMPATIBILITY_MASK,
        }],
        directives,
    )
    .map_err(IgvmBuildError::Igvm)?;
    let mut out = Vec::new();
    file.serialize(&mut out).map_err(IgvmBuildError::Igvm)?;
    Ok((out, l))
}
