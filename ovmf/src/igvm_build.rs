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
//! | + image | 1 | PARAMETER_AREA 0 inserted here, unmeasured: the IGVM memory map at offset 0, the vCPU count (u32) at [`VP_COUNT_OFFSET`] |
//! | + 1 page | 1 | SECRETS page |
//! | + 2 pages | 1 | CPUID page (the loader fills it) |
//! | 4 GiB − firmware | the firmware | PAGE_DATA, measured |
//! | 0xFFFFFFFFF000 | 1 | the SVSM's boot VMSA (VMPL0, vCPU 0), measured last |
//!
//! The rest of the SVSM's region is not in the file: the SVSM validates it itself.

use crate::error::IgvmBuildError;
use crate::PAGE_SIZE;
use igvm::snp_defs::SevVmsa;
use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader, IgvmPlatformHeader};
use igvm_defs::{
    IgvmPageDataFlags, IgvmPageDataType, IgvmPlatformType, IGVM_VHS_PARAMETER,
    IGVM_VHS_PARAMETER_INSERT, IGVM_VHS_SUPPORTED_PLATFORM,
};
use svsm_abi::launch::VMSA_GPA;
use svsm_abi::snp::vmsa::{VmcbSegment, VmsaPage};
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, IntoBytes};

/// The SEV-SNP platform's compatibility mask bit in the files this module writes.
pub const SNP_COMPATIBILITY_MASK: u32 = 1;
/// IGVM's SEV-SNP platform version.
const SNP_PLATFORM_VERSION: u16 = 1;
/// Where in the boot parameter page the vCPU count is.
pub const VP_COUNT_OFFSET: u32 = 0xF00;
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
}

/// The GPAs the builder chose, for the caller and the docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IgvmLayout {
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
    // The image and its three boot pages, below 4 GiB (the firmware ends there): every sum
    // below is then far from overflowing.
    let needed = (pages_of(input.svsm_image.len()) + 3) * page;
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

/// Builds the IGVM file.
pub fn build(input: &SvsmIgvm<'_>) -> Result<(Vec<u8>, IgvmLayout), IgvmBuildError> {
    let l = layout(input)?;
    let mut directives = page_data(input.svsm_base, input.svsm_image);
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
