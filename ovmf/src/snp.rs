//! The launch digest of the QEMU/KVM `-bios OVMF.fd` SNP launch (`sev-snp-guest`), in the order
//! the PSP sees the pages (QEMU `target/i386/sev.c` `snp_metadata_desc_to_page_type`, sev-snp-measure `gctx.py`/`guest.py`;
//! PAGE_INFO: AMD 56860 SNP_LAUNCH_UPDATE):
//!
//! 1. the whole firmware file as NORMAL pages, ascending from 4 GiB − size;
//! 2. the SEV metadata sections in table order (not sorted): SNP_SEC_MEM as ZERO pages
//!    (UNMEASURED on GCE), SNP_SECRETS as one SECRETS page, CPUID as one CPUID page (EC2 moves
//!    all CPUID pages after the other sections), SVSM_CAA as ZERO pages, SNP_KERNEL_HASHES as
//!    one NORMAL page holding the hash table when a kernel is given, else ZERO;
//! 3. one VMSA per vCPU at SNP_LAUNCH_FINISH, vCPU 0 (reset at 0xFFFFFFF0) first, then the APs
//!    (reset at the firmware's SEV-ES AP reset address).

use crate::digest::{LaunchDigest, Measurement};
use crate::error::{FirmwareError, MeasureError};
use crate::firmware::{check_image_size, Firmware, SectionKind};
use crate::hashes::SevHashes;
use crate::vmsa::{reset_vmsa_page, VmmType, BSP_EIP};
use crate::Page;
use svsm_abi::launch::PageType;
use zerocopy::FromBytes;

/// The launch parameters besides the firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchParams {
    /// vCPU count (at least 1).
    pub vcpus: u32,
    /// CPUID(1).EAX signature of the vCPU model (see [`crate::VcpuType::signature`]).
    pub vcpu_sig: u32,
    /// SEV_FEATURES the host stack writes into every VMSA (0x1 SNP only; 0x21 adds DebugSwap,
    /// which recent KVM sets by default). Must equal the host's value bit for bit.
    pub guest_features: u64,
    /// Hypervisor flavour of the reset state.
    pub vmm: VmmType,
    /// Kernel/initrd/cmdline hashes for a measured direct boot (`-kernel` with
    /// `kernel-hashes=on`), or `None`.
    pub hashes: Option<SevHashes>,
    /// Resume from a precomputed firmware-only digest ([`ovmf_hash`]) instead of hashing the
    /// firmware pages again; the image is still parsed for its metadata and reset address.
    pub ovmf_hash: Option<Measurement>,
}

impl LaunchParams {
    /// QEMU parameters for `vcpus` vCPUs of signature `vcpu_sig` with `guest_features`.
    pub fn new(vcpus: u32, vcpu_sig: u32, guest_features: u64) -> Self {
        LaunchParams {
            vcpus,
            vcpu_sig,
            guest_features,
            vmm: VmmType::Qemu,
            hashes: None,
            ovmf_hash: None,
        }
    }
}

fn pages(image: &[u8]) -> Result<&[Page], FirmwareError> {
    check_image_size(image)?;
    <[Page]>::ref_from_bytes(image).map_err(|_| FirmwareError::Size { len: image.len() })
}

/// Step 1: the firmware file as NORMAL pages ending at 4 GiB.
pub fn measure_firmware(ld: &mut LaunchDigest, image: &[u8]) -> Result<(), FirmwareError> {
    let pages = pages(image)?;
    ld.update_normal_pages(crate::firmware::FOUR_GIB - image.len() as u64, pages);
    Ok(())
}

/// The firmware-only digest (`sev-snp-measure --mode snp:ovmf-hash`): a chain state that
/// [`LaunchParams::ovmf_hash`] resumes. Needs only whole pages, no footer table.
pub fn ovmf_hash(image: &[u8]) -> Result<Measurement, FirmwareError> {
    let mut ld = LaunchDigest::new();
    measure_firmware(&mut ld, image)?;
    Ok(ld.value())
}

/// Step 2: the SEV metadata sections.
pub fn measure_sections(
    ld: &mut LaunchDigest,
    fw: &Firmware<'_>,
    vmm: VmmType,
    hashes: Option<&SevHashes>,
) -> Result<(), MeasureError> {
    let sections = fw.sections().ok_or(MeasureError::NoSevMetadata)?;
    if hashes.is_some() && !fw.has_section(SectionKind::SnpKernelHashes) {
        return Err(MeasureError::NoKernelHashesSection);
    }
    for s in sections {
        let gpa = u64::from(s.gpa);
        match s.kind {
            SectionKind::SnpSecMem if vmm == VmmType::Gce => {
                ld.update_empty_pages(PageType::Unmeasured, gpa, s.pages())
            }
            SectionKind::SnpSecMem | SectionKind::SvsmCaa => {
                ld.update_empty_pages(PageType::Zero, gpa, s.pages())
            }
            SectionKind::SnpSecrets => ld.update_empty_pages(PageType::Secrets, gpa, 1),
            SectionKind::Cpuid if vmm == VmmType::Ec2 => {}
            SectionKind::Cpuid => ld.update_empty_pages(PageType::Cpuid, gpa, 1),
            SectionKind::SnpKernelHashes => match hashes {
                Some(h) => {
                    let (base, size) = fw.hash_table_area()?;
                    let page = h.page(base, size)?;
                    ld.update_normal_pages(gpa, core::slice::from_ref(&page));
                }
                None => ld.update_empty_pages(PageType::Zero, gpa, s.pages()),
            },
        }
    }
    if vmm == VmmType::Ec2 {
        for s in sections.iter().filter(|s| s.kind == SectionKind::Cpuid) {
            ld.update_empty_pages(PageType::Cpuid, u64::from(s.gpa), 1);
        }
    }
    Ok(())
}

/// Step 3: one VMSA per vCPU.
pub fn measure_vmsas(
    ld: &mut LaunchDigest,
    fw: &Firmware<'_>,
    params: &LaunchParams,
) -> Result<(), MeasureError> {
    if params.vcpus == 0 {
        return Err(MeasureError::NoVcpus);
    }
    let ap_eip = fw.sev_es_reset_address()?;
    let bsp = reset_vmsa_page(BSP_EIP, params.vcpu_sig, params.guest_features, params.vmm);
    ld.update_vmsa_page(&bsp);
    if params.vcpus > 1 {
        let ap = reset_vmsa_page(ap_eip, params.vcpu_sig, params.guest_features, params.vmm);
        let ap_hash = crate::digest::sha384(&ap);
        for _ in 1..params.vcpus {
            ld.update(PageType::Vmsa, svsm_abi::launch::VMSA_GPA, ap_hash);
        }
    }
    Ok(())
}

/// The expected MEASUREMENT of an SNP guest launched with `-bios` on `fw` with `params`.
pub fn snp_launch_digest(
    fw: &Firmware<'_>,
    params: &LaunchParams,
) -> Result<Measurement, MeasureError> {
    // Refuse before hashing anything.
    if params.vcpus == 0 {
        return Err(MeasureError::NoVcpus);
    }
    fw.sections().ok_or(MeasureError::NoSevMetadata)?;
    fw.sev_es_reset_address()?;
    let mut ld = match params.ovmf_hash {
        Some(seed) => LaunchDigest::from_seed(seed.0),
        None => {
            let mut ld = LaunchDigest::new();
            measure_firmware(&mut ld, fw.image())?;
            ld
        }
    };
    measure_sections(&mut ld, fw, params.vmm, params.hashes.as_ref())?;
    measure_vmsas(&mut ld, fw, params)?;
    Ok(ld.value())
}
