//! The fields of an SEV-SNP VM save area (VMSA, one 4 KiB page; AMD APM vol. 2 Table B-4
//! "VMSA layout, state save area for SEV-ES/SNP") that an SVSM reads or writes when it serves a
//! call from a lower VMPL or checks a VMSA a guest hands it (SVSM_CORE_CREATE_VCPU). Only
//! offsets and accessors over a copied page: the SVSM never keeps a reference into a VMSA.
//! (The VMSA's EXITINFO1/2 sit at 0x390/0x398, not at the GHCB's 0x398/0x3A0.)

/// Size of a VMSA page.
pub const VMSA_SIZE: usize = 4096;
/// VMPL (u8): the privilege level this VMSA runs at.
pub const VMPL: usize = 0x0CA;
/// CPL (u8).
pub const CPL: usize = 0x0CB;
/// EFER (u64); bit 12 is SVME.
pub const EFER: usize = 0x0D0;
/// EFER.SVME: the vCPU may be run; the SVSM clears it while it edits the VMSA.
pub const EFER_SVME: u64 = 1 << 12;
/// RFLAGS (u64).
pub const RFLAGS: usize = 0x170;
/// RIP (u64).
pub const RIP: usize = 0x178;
/// RSP (u64).
pub const RSP: usize = 0x1D8;
/// RAX (u64): the call (protocol << 32 | call id) in, the result code out.
pub const RAX: usize = 0x1F8;
/// RCX (u64).
pub const RCX: usize = 0x308;
/// RDX (u64).
pub const RDX: usize = 0x310;
/// RBX (u64).
pub const RBX: usize = 0x318;
/// R8 (u64).
pub const R8: usize = 0x340;
/// R9 (u64).
pub const R9: usize = 0x348;
/// GUEST_EXITINFO1 (u64).
pub const EXITINFO1: usize = 0x390;
/// GUEST_EXITINFO2 (u64).
pub const EXITINFO2: usize = 0x398;
/// SEV_FEATURES (u64): must equal the boot vCPU's for a VMSA a guest creates.
pub const SEV_FEATURES: usize = 0x3B0;
/// GUEST_EXIT_CODE (u64): 0x403 when the vCPU left with VMGEXIT.
pub const GUEST_EXIT_CODE: usize = 0x3C0;
/// The exit code of VMGEXIT (AMD APM vol. 2, SVM intercept codes).
pub const EXIT_CODE_VMGEXIT: u64 = 0x403;

/// A u64 field of a copied VMSA page (little-endian).
pub fn read_u64(page: &[u8; VMSA_SIZE], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = page.get(offset..offset.saturating_add(8)) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// Writes a u64 field of a VMSA page copy.
pub fn write_u64(page: &mut [u8; VMSA_SIZE], offset: usize, value: u64) {
    if let Some(dst) = page.get_mut(offset..offset.saturating_add(8)) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

/// A u8 field of a copied VMSA page.
pub fn read_u8(page: &[u8; VMSA_SIZE], offset: usize) -> u8 {
    page.get(offset).copied().unwrap_or(0)
}
