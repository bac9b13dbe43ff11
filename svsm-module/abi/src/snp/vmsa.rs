//! The SEV-SNP VM save area (VMSA, one 4 KiB page; AMD APM vol. 2 Appendix B, Table B-4 "VMSA
//! Layout, State Save Area for SEV-ES", Linux `struct sev_es_save_area`): the fields the launch
//! digest's reset state sets (the `ovmf` crate builds it) and the fields an SVSM reads or writes
//! when it serves a call from a lower VMPL or checks a VMSA a guest hands it
//! (SVSM_CORE_CREATE_VCPU). Everything else is kept as opaque spans whose comments say what they
//! hold. The SVSM works on copies, never on a reference into a VMSA. (The VMSA's EXITINFO1/2 sit
//! at 0x390/0x398, not at the GHCB's 0x398/0x3A0.)

use crate::assert_layout;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A VMCB segment register (selector, attributes, limit, base), 16 bytes (`struct vmcb_seg`).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VmcbSegment {
    /// Selector.
    pub selector: U16,
    /// Attributes (packed form).
    pub attrib: U16,
    /// Limit.
    pub limit: U32,
    /// Base.
    pub base: U64,
}
assert_layout!(
    VmcbSegment,
    size = 16,
    selector = 0,
    attrib = 2,
    limit = 4,
    base = 8
);

impl VmcbSegment {
    /// A segment from its four fields.
    pub const fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        VmcbSegment {
            selector: U16::new(selector),
            attrib: U16::new(attrib),
            limit: U32::new(limit),
            base: U64::new(base),
        }
    }
}

/// The 4 KiB VMSA page (APM Vol. 2 Table B-4).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VmsaPage {
    /// ES.
    pub es: VmcbSegment,
    /// CS.
    pub cs: VmcbSegment,
    /// SS.
    pub ss: VmcbSegment,
    /// DS.
    pub ds: VmcbSegment,
    /// FS.
    pub fs: VmcbSegment,
    /// GS.
    pub gs: VmcbSegment,
    /// GDTR.
    pub gdtr: VmcbSegment,
    /// LDTR.
    pub ldtr: VmcbSegment,
    /// IDTR.
    pub idtr: VmcbSegment,
    /// TR.
    pub tr: VmcbSegment,
    /// 0xA0..0xCA: VMPL0..3 SSP, U_CET, reserved.
    pub rsvd_a0: [u8; 0x2A],
    /// VMPL: the privilege level this VMSA runs at.
    pub vmpl: u8,
    /// CPL.
    pub cpl: u8,
    /// 0xCC..0xD0: reserved.
    pub rsvd_cc: [u8; 4],
    /// EFER.
    pub efer: U64,
    /// 0xD8..0x148: reserved, XSS.
    pub rsvd_d8: [u8; 0x70],
    /// CR4.
    pub cr4: U64,
    /// CR3.
    pub cr3: U64,
    /// CR0.
    pub cr0: U64,
    /// DR7.
    pub dr7: U64,
    /// DR6.
    pub dr6: U64,
    /// RFLAGS.
    pub rflags: U64,
    /// RIP.
    pub rip: U64,
    /// 0x180..0x1D8: DR0..3 and address masks, reserved.
    pub rsvd_180: [u8; 0x58],
    /// RSP.
    pub rsp: U64,
    /// 0x1E0..0x1F8: S_CET, SSP, ISST.
    pub rsvd_1e0: [u8; 0x18],
    /// RAX: an SVSM call's (protocol << 32 | call) in, its result out.
    pub rax: U64,
    /// 0x200..0x268: STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, SYSENTER_*, CR2, reserved.
    pub rsvd_200: [u8; 0x68],
    /// G_PAT.
    pub g_pat: U64,
    /// 0x270..0x308: DBGCTL, branch/exception records, reserved, PKRU, TSC_AUX, reserved.
    pub rsvd_270: [u8; 0x98],
    /// RCX.
    pub rcx: U64,
    /// RDX (CPUID(1).EAX signature at reset).
    pub rdx: U64,
    /// RBX.
    pub rbx: U64,
    /// 0x320..0x340: reserved, RBP, RSI, RDI.
    pub rsvd_320: [u8; 0x20],
    /// R8.
    pub r8: U64,
    /// R9.
    pub r9: U64,
    /// 0x350..0x390: R10..R15, reserved.
    pub rsvd_350: [u8; 0x40],
    /// GUEST_EXITINFO1 (not the GHCB's 0x398).
    pub exit_info1: U64,
    /// GUEST_EXITINFO2.
    pub exit_info2: U64,
    /// 0x3A0..0x3B0: EXITINTINFO, NRIP.
    pub rsvd_3a0: [u8; 0x10],
    /// SEV_FEATURES: a VMSA a guest creates must have the boot vCPU's.
    pub sev_features: U64,
    /// VINTR_CTRL.
    pub vintr_ctrl: U64,
    /// GUEST_EXIT_CODE: 0x403 after VMGEXIT.
    pub guest_exit_code: U64,
    /// 0x3C8..0x3E8: VIRTUAL_TOM, TLB_ID, PCPU_ID, EVENTINJ.
    pub rsvd_3c8: [u8; 0x20],
    /// XCR0.
    pub xcr0: U64,
    /// 0x3F0..0x408: reserved, X87_DP.
    pub rsvd_3f0: [u8; 0x18],
    /// MXCSR.
    pub mxcsr: U32,
    /// X87 tag word.
    pub x87_ftw: U16,
    /// X87 status word.
    pub x87_fsw: U16,
    /// X87 control word.
    pub x87_fcw: U16,
    /// 0x412..0x1000: X87 FOP, DS, CS, RIP, x87/XMM/YMM registers, reserved.
    pub rsvd_412: [u8; 0x1000 - 0x412],
}
assert_layout!(
    VmsaPage,
    size = 0x1000,
    es = 0x00,
    cs = 0x10,
    ss = 0x20,
    ds = 0x30,
    fs = 0x40,
    gs = 0x50,
    gdtr = 0x60,
    ldtr = 0x70,
    idtr = 0x80,
    tr = 0x90,
    vmpl = 0xCA,
    cpl = 0xCB,
    efer = 0xD0,
    cr4 = 0x148,
    cr3 = 0x150,
    cr0 = 0x158,
    dr7 = 0x160,
    dr6 = 0x168,
    rflags = 0x170,
    rip = 0x178,
    rsp = 0x1D8,
    rax = 0x1F8,
    g_pat = 0x268,
    rcx = 0x308,
    rdx = 0x310,
    rbx = 0x318,
    r8 = 0x340,
    r9 = 0x348,
    exit_info1 = 0x390,
    exit_info2 = 0x398,
    sev_features = 0x3B0,
    vintr_ctrl = 0x3B8,
    guest_exit_code = 0x3C0,
    xcr0 = 0x3E8,
    mxcsr = 0x408,
    x87_ftw = 0x40C,
    x87_fsw = 0x40E,
    x87_fcw = 0x410,
);

/// Size of a VMSA page.
pub const VMSA_SIZE: usize = 4096;
/// Offset of VMPL (u8).
pub const VMPL: usize = core::mem::offset_of!(VmsaPage, vmpl);
/// Offset of CPL (u8).
pub const CPL: usize = core::mem::offset_of!(VmsaPage, cpl);
/// Offset of EFER (u64); bit 12 is SVME.
pub const EFER: usize = core::mem::offset_of!(VmsaPage, efer);
/// EFER.SVME: the vCPU may be run; the SVSM clears it while it edits the VMSA.
pub const EFER_SVME: u64 = 1 << 12;
/// Offset of RFLAGS.
pub const RFLAGS: usize = core::mem::offset_of!(VmsaPage, rflags);
/// Offset of RIP.
pub const RIP: usize = core::mem::offset_of!(VmsaPage, rip);
/// Offset of RSP.
pub const RSP: usize = core::mem::offset_of!(VmsaPage, rsp);
/// Offset of RAX.
pub const RAX: usize = core::mem::offset_of!(VmsaPage, rax);
/// Offset of RCX.
pub const RCX: usize = core::mem::offset_of!(VmsaPage, rcx);
/// Offset of RDX.
pub const RDX: usize = core::mem::offset_of!(VmsaPage, rdx);
/// Offset of RBX.
pub const RBX: usize = core::mem::offset_of!(VmsaPage, rbx);
/// Offset of R8.
pub const R8: usize = core::mem::offset_of!(VmsaPage, r8);
/// Offset of R9.
pub const R9: usize = core::mem::offset_of!(VmsaPage, r9);
/// Offset of GUEST_EXITINFO1.
pub const EXITINFO1: usize = core::mem::offset_of!(VmsaPage, exit_info1);
/// Offset of GUEST_EXITINFO2.
pub const EXITINFO2: usize = core::mem::offset_of!(VmsaPage, exit_info2);
/// Offset of SEV_FEATURES.
pub const SEV_FEATURES: usize = core::mem::offset_of!(VmsaPage, sev_features);
/// Offset of GUEST_EXIT_CODE.
pub const GUEST_EXIT_CODE: usize = core::mem::offset_of!(VmsaPage, guest_exit_code);
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

/// Reset EIP of the bootstrap processor (the x86 reset vector).
pub const RESET_EIP: u32 = 0xFFFF_FFF0;
/// Default PAT (AMD APM vol. 2 §A.3).
pub const DEFAULT_G_PAT: u64 = 0x0007_0406_0007_0406;

/// The reset state of a vCPU that starts at `eip` (real mode, CS = `eip`'s upper half), as
/// QEMU/KVM build it for an SEV-SNP guest: what OVMF expects at its reset vector, and what the
/// PSP measures for a `-bios` launch. `rdx` is CPUID(1).EAX (the processor signature), VMPL 0.
pub fn reset_state(eip: u32, rdx: u64, sev_features: u64) -> VmsaPage {
    use zerocopy::FromZeros;
    let data = VmcbSegment::new(0, 0x93, 0xFFFF, 0);
    let mut v = VmsaPage::new_zeroed();
    v.es = data;
    v.cs = VmcbSegment::new(0xF000, 0x9B, 0xFFFF, u64::from(eip & 0xFFFF_0000));
    v.ss = data;
    v.ds = data;
    v.fs = data;
    v.gs = data;
    v.gdtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.idtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.ldtr = VmcbSegment::new(0, 0x82, 0xFFFF, 0);
    v.tr = VmcbSegment::new(0, 0x8B, 0xFFFF, 0);
    v.efer = U64::new(0x1000); // EFER.SVME, set by KVM
    v.cr4 = U64::new(0x40); // CR4.MCE, set by KVM
    v.cr0 = U64::new(0x10); // CR0.ET
    v.dr7 = U64::new(0x400);
    v.dr6 = U64::new(0xFFFF_0FF0);
    v.rflags = U64::new(0x2);
    v.rip = U64::new(u64::from(eip & 0xFFFF));
    v.g_pat = U64::new(DEFAULT_G_PAT);
    v.rdx = U64::new(rdx);
    v.sev_features = U64::new(sev_features);
    v.xcr0 = U64::new(0x1);
    v.mxcsr = U32::new(0x1F80);
    v.x87_fcw = U16::new(0x037F);
    v
}
