//! The reset VMSA page KVM measures for every vCPU at SNP_LAUNCH_FINISH (`-bios` flow). Layout:
//! AMD APM Vol. 2 Appendix B, Table B-4 "VMSA Layout, State Save Area for SEV-ES" (Linux
//! `struct sev_es_save_area`); values: the QEMU/KVM reset state as sev-snp-measure 0.0.13
//! (`sevsnpmeasure/vmsa.py`) and the `sev` crate 8.0.0 (`src/measurement/vmsa.rs`) build it,
//! with the FPU fields KVM_SEV_INIT2 syncs. The layout itself is `svsm_abi::snp::vmsa`'s.

use crate::Page;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

pub use svsm_abi::snp::vmsa::{VmcbSegment, VmsaPage};

/// Which hypervisor stack builds the reset state (they differ in a few registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VmmType {
    /// QEMU/KVM (the default, and the only one for the IGVM and hashes paths' references).
    #[default]
    Qemu,
    /// AWS EC2: CS attr 0x9A on the BSP, SS 0x92, TR 0x83, RDX 0x600, no FPU defaults; CPUID
    /// pages measured after the other sections.
    Ec2,
    /// Google GCE: RDX 0x600, G_PAT 0x00070106, no FPU defaults; SNP_SEC_MEM as UNMEASURED.
    Gce,
}

impl VmmType {
    /// sev-snp-measure's name.
    pub const fn name(self) -> &'static str {
        match self {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        }
    }
}

/// Reset EIP of the bootstrap processor.
pub const BSP_EIP: u32 = svsm_abi::snp::vmsa::RESET_EIP;

/// Default PAT (AMD APM Vol. 2 §A.3).
pub const DEFAULT_G_PAT: u64 = svsm_abi::snp::vmsa::DEFAULT_G_PAT;

/// The reset VMSA of a vCPU that starts at `eip` ([`BSP_EIP`] for vCPU 0, the SEV-ES AP reset
/// address for the others).
pub fn reset_vmsa(eip: u32, vcpu_sig: u32, sev_features: u64, vmm: VmmType) -> VmsaPage {
    // QEMU/KVM's reset state is svsm-abi's (the SVSM builds its guest's VMSA from it too); the
    // other stacks differ in a few registers.
    let mut v = svsm_abi::snp::vmsa::reset_state(eip, u64::from(vcpu_sig), sev_features);
    match vmm {
        VmmType::Qemu => {}
        VmmType::Ec2 => {
            if eip == BSP_EIP {
                v.cs.attrib = U16::new(0x9A);
            }
            v.ss.attrib = U16::new(0x92);
            v.tr.attrib = U16::new(0x83);
            v.rdx = U64::new(0x600);
            v.mxcsr = U32::new(0);
            v.x87_fcw = U16::new(0);
        }
        VmmType::Gce => {
            v.rdx = U64::new(0x600);
            v.mxcsr = U32::new(0);
            v.x87_fcw = U16::new(0);
            v.g_pat = U64::new(0x0007_0106);
        }
    }
    v
}

/// The page bytes of [`reset_vmsa`].
pub fn reset_vmsa_page(eip: u32, vcpu_sig: u32, sev_features: u64, vmm: VmmType) -> Page {
    let mut page = [0u8; crate::PAGE_SIZE];
    page.copy_from_slice(reset_vmsa(eip, vcpu_sig, sev_features, vmm).as_bytes());
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsp_fields_at_their_offsets() {
        let p = reset_vmsa_page(BSP_EIP, 0x800F12, 1, VmmType::Qemu);
        let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().unwrap());
        assert_eq!(&p[0x10..0x14], &[0x00, 0xF0, 0x9B, 0x00]);
        assert_eq!(u64_at(0x18), 0xFFFF_0000);
        assert_eq!(u64_at(0x178), 0xFFF0);
        assert_eq!(u64_at(0x310), 0x800F12);
        assert_eq!(u64_at(0x3B0), 1);
        assert_eq!(&p[0x408..0x40C], &0x1F80u32.to_le_bytes());
        assert_eq!(&p[0x410..0x412], &0x037Fu16.to_le_bytes());
        assert!(p[0x412..].iter().all(|&b| b == 0));
    }

    #[test]
    fn ap_uses_the_reset_address() {
        let p = reset_vmsa_page(0x80B004, 0x800F12, 1, VmmType::Qemu);
        assert_eq!(
            u64::from_le_bytes(p[0x18..0x20].try_into().unwrap()),
            0x800000
        );
        assert_eq!(
            u64::from_le_bytes(p[0x178..0x180].try_into().unwrap()),
            0xB004
        );
    }
}
