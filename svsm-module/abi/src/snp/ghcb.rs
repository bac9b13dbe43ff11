//! The Guest-Hypervisor Communication Block (GHCB spec, AMD pub. 56421, version 2): the GHCB MSR
//! protocol encodings ("GHCB MSR Protocol"), the GHCB page ("GHCB Layout"), the page-state-change
//! descriptor ("Page State Change") and the non-automatic-exit codes an SVSM uses ("Invoking
//! VMGEXIT"). Everything here crosses to the hypervisor, which is untrusted: decoders return
//! typed errors.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The GHCB MSR.
pub const GHCB_MSR: u32 = 0xC001_0130;
/// The GHCB protocol version an SNP guest speaks.
pub const GHCB_PROTOCOL_VERSION: u16 = 2;
/// Size of the GHCB page.
pub const GHCB_PAGE_SIZE: usize = 4096;

/// GHCBInfo (MSR bits 11:0) values of the MSR protocol ("GHCB MSR Protocol" table).
pub mod info {
    /// SEV information response.
    pub const SEV_INFO_RESP: u64 = 0x001;
    /// SEV information request.
    pub const SEV_INFO_REQ: u64 = 0x002;
    /// CPUID request.
    pub const CPUID_REQ: u64 = 0x004;
    /// CPUID response.
    pub const CPUID_RESP: u64 = 0x005;
    /// Preferred GHCB GPA request.
    pub const PREFERRED_GHCB_REQ: u64 = 0x010;
    /// Preferred GHCB GPA response.
    pub const PREFERRED_GHCB_RESP: u64 = 0x011;
    /// Register GHCB GPA request.
    pub const REGISTER_REQ: u64 = 0x012;
    /// Register GHCB GPA response.
    pub const REGISTER_RESP: u64 = 0x013;
    /// SNP page state change request.
    pub const PSC_REQ: u64 = 0x014;
    /// SNP page state change response.
    pub const PSC_RESP: u64 = 0x015;
    /// SNP run VMPL request.
    pub const RUN_VMPL_REQ: u64 = 0x016;
    /// SNP run VMPL response.
    pub const RUN_VMPL_RESP: u64 = 0x017;
    /// Hypervisor feature support request.
    pub const HV_FEATURES_REQ: u64 = 0x080;
    /// Hypervisor feature support response.
    pub const HV_FEATURES_RESP: u64 = 0x081;
    /// Termination request.
    pub const TERMINATE_REQ: u64 = 0x100;
}

/// Mask of GHCBInfo.
pub const MSR_INFO_MASK: u64 = 0xFFF;
/// Largest GFN the MSR page-state-change request encodes (bits 51:12, 40 bits).
pub const MSR_PSC_MAX_GFN: u64 = (1 << 40) - 1;
/// Largest GFN a GHCB registration encodes (bits 63:12, 52 bits).
pub const MSR_MAX_GFN: u64 = (1 << 52) - 1;

/// Page-state-change operations (MSR request bits 55:52; PSC entry bits 55:52).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageStateOp {
    /// Make the page private (assigned to the guest in the RMP).
    Private = 1,
    /// Make the page shared with the hypervisor.
    Shared = 2,
    /// Split a 2 MiB RMP entry (PSC descriptor only).
    Psmash = 3,
    /// Merge 4 KiB RMP entries into a 2 MiB one (PSC descriptor only).
    Unsmash = 4,
}

/// Why an MSR-protocol response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsrProtocolError {
    /// The response's GHCBInfo is not the response code of the request.
    #[error("GHCB MSR response {actual:#x} does not carry GHCBInfo {expected:#x}")]
    UnexpectedInfo {
        /// Expected GHCBInfo.
        expected: u64,
        /// The whole MSR value received.
        actual: u64,
    },
    /// The hypervisor did not echo the GFN of a GHCB registration.
    #[error("GHCB registration of GFN {requested:#x} answered with GFN {answered:#x}")]
    RegistrationRefused {
        /// GFN asked for.
        requested: u64,
        /// GFN in the response.
        answered: u64,
    },
    /// The response's error field (bits 63:32) is non-zero.
    #[error("GHCB MSR request failed with error {0:#x}")]
    Error(u32),
    /// A GFN does not fit the request's field.
    #[error("GFN {0:#x} does not fit the GHCB MSR request")]
    GfnRange(u64),
}

fn expect_info(value: u64, expected: u64) -> Result<(), MsrProtocolError> {
    if value & MSR_INFO_MASK == expected {
        Ok(())
    } else {
        Err(MsrProtocolError::UnexpectedInfo {
            expected,
            actual: value,
        })
    }
}

/// The SEV information response ([63:48] max protocol, [47:32] min protocol, [31:24] C-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevInfo {
    /// Highest protocol version the hypervisor speaks.
    pub max_version: u16,
    /// Lowest protocol version the hypervisor speaks.
    pub min_version: u16,
    /// Position of the C-bit in page-table entries.
    pub cbit: u8,
}

impl SevInfo {
    /// Decodes a SEV information response.
    pub fn decode(value: u64) -> Result<Self, MsrProtocolError> {
        expect_info(value, info::SEV_INFO_RESP)?;
        Ok(SevInfo {
            max_version: (value >> 48) as u16,
            min_version: (value >> 32) as u16,
            cbit: (value >> 24) as u8,
        })
    }

    /// True when `version` lies in [min, max].
    pub fn supports(&self, version: u16) -> bool {
        self.min_version <= version && version <= self.max_version
    }
}

/// Register-GHCB request for page `gfn`.
pub fn register_request(gfn: u64) -> Result<u64, MsrProtocolError> {
    if gfn > MSR_MAX_GFN {
        return Err(MsrProtocolError::GfnRange(gfn));
    }
    Ok((gfn << 12) | info::REGISTER_REQ)
}

/// Checks a register-GHCB response: it must echo `gfn`.
pub fn register_response(value: u64, gfn: u64) -> Result<(), MsrProtocolError> {
    expect_info(value, info::REGISTER_RESP)?;
    let answered = value >> 12;
    if answered != gfn {
        return Err(MsrProtocolError::RegistrationRefused {
            requested: gfn,
            answered,
        });
    }
    Ok(())
}

/// MSR page-state-change request for one 4 KiB page (only Private and Shared are defined here).
pub fn psc_request(gfn: u64, op: PageStateOp) -> Result<u64, MsrProtocolError> {
    if gfn > MSR_PSC_MAX_GFN || !matches!(op, PageStateOp::Private | PageStateOp::Shared) {
        return Err(MsrProtocolError::GfnRange(gfn));
    }
    Ok((u64::from(op as u8) << 52) | (gfn << 12) | info::PSC_REQ)
}

/// Checks an MSR page-state-change response ([63:32] error, 0 = success).
pub fn psc_response(value: u64) -> Result<(), MsrProtocolError> {
    expect_info(value, info::PSC_RESP)?;
    match (value >> 32) as u32 {
        0 => Ok(()),
        e => Err(MsrProtocolError::Error(e)),
    }
}

/// Run-VMPL request ([39:32] target VMPL).
pub fn run_vmpl_request(vmpl: u8) -> u64 {
    (u64::from(vmpl) << 32) | info::RUN_VMPL_REQ
}

/// Checks a run-VMPL response ([63:32] error, 0 = success).
pub fn run_vmpl_response(value: u64) -> Result<(), MsrProtocolError> {
    expect_info(value, info::RUN_VMPL_RESP)?;
    match (value >> 32) as u32 {
        0 => Ok(()),
        e => Err(MsrProtocolError::Error(e)),
    }
}

/// Decodes a hypervisor-features response: the bitmap in [63:12].
pub fn hv_features_response(value: u64) -> Result<u64, MsrProtocolError> {
    expect_info(value, info::HV_FEATURES_RESP)?;
    Ok(value >> 12)
}

/// Hypervisor feature bit: SEV-SNP.
pub const HV_FEATURE_SNP: u64 = 1 << 0;
/// Hypervisor feature bit: AP creation.
pub const HV_FEATURE_AP_CREATION: u64 = 1 << 1;
/// Hypervisor feature bit: multiple VMPLs.
pub const HV_FEATURE_MULTI_VMPL: u64 = 1 << 5;

/// A termination reason: a reason set (4 bits) and a code within it (8 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TerminationReason {
    /// Reason code set: 0 = the GHCB spec's general set.
    pub set: u8,
    /// Code within the set.
    pub code: u8,
}

impl TerminationReason {
    /// Set 0, code 0: general termination request.
    pub const GENERAL: Self = Self { set: 0, code: 0 };
    /// Set 0, code 1: the hypervisor's protocol range does not include version 2.
    pub const PROTOCOL_UNSUPPORTED: Self = Self { set: 0, code: 1 };
    /// Set 0, code 2: SEV-SNP features not supported.
    pub const SNP_UNSUPPORTED: Self = Self { set: 0, code: 2 };

    /// The MSR termination request: [15:12] set, [23:16] code.
    pub fn msr_request(self) -> u64 {
        (u64::from(self.code) << 16) | (u64::from(self.set & 0xF) << 12) | info::TERMINATE_REQ
    }

    /// SW_EXITINFO1 of the GHCB-page termination event: [3:0] set, [11:4] code (different bit
    /// positions from the MSR form).
    pub fn exit_info1(self) -> u64 {
        (u64::from(self.code) << 4) | u64::from(self.set & 0xF)
    }
}

/// Non-automatic-exit codes (SW_EXITCODE) an SVSM uses.
pub mod exit_code {
    /// SNP page state change.
    pub const PAGE_STATE_CHANGE: u64 = 0x8000_0010;
    /// SNP guest request.
    pub const GUEST_REQUEST: u64 = 0x8000_0011;
    /// SNP extended guest request.
    pub const EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    /// SNP AP creation.
    pub const AP_CREATION: u64 = 0x8000_0013;
    /// IN/OUT (SVM exit code IOIO, 0x7B; GHCB spec §4.1.2 "IOIO_PROT").
    pub const IOIO: u64 = 0x7B;
    /// Run VMPL.
    pub const RUN_VMPL: u64 = 0x8000_0018;
    /// Hypervisor features.
    pub const HV_FEATURES: u64 = 0x8000_FFFD;
    /// Termination request.
    pub const TERMINATE: u64 = 0x8000_FFFE;
}

/// AP creation event (SW_EXITINFO1 bits 15:0): create the vCPU when it receives INIT.
pub const AP_CREATE_ON_INIT: u64 = 0;
/// AP creation event: create (and run) the vCPU now.
pub const AP_CREATE: u64 = 1;
/// AP creation event: destroy the vCPU.
pub const AP_DESTROY: u64 = 2;

/// SW_EXITINFO1 of an AP creation NAE event (GHCB spec §4.1.9): bits 15:0 the event, bits
/// 19:16 the VMPL of the VMSA, bits 63:32 the APIC ID. SW_EXITINFO2 is the VMSA's GPA and RAX
/// its SEV_FEATURES (create events only).
pub const fn ap_creation_exit_info1(apic_id: u32, vmpl: u8, event: u64) -> u64 {
    ((apic_id as u64) << 32) | (((vmpl & 0xF) as u64) << 16) | (event & 0xFFFF)
}

/// VMM error (upper half of SW_EXITINFO2 after a guest request): certificate buffer too small.
pub const VMM_ERR_INVALID_LEN: u32 = 1;
/// VMM error: busy, re-send the identical message.
pub const VMM_ERR_BUSY: u32 = 2;
/// VMM error bit KVM uses for any other failure.
pub const VMM_ERR_GENERIC: u32 = 1 << 31;

/// SW_EXITINFO2 after a guest request: (VMM error << 32) | firmware status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRequestResult {
    /// The hypervisor's error (0 = none).
    pub vmm_error: u32,
    /// The PSP firmware's status (0 = success).
    pub fw_status: u32,
}

impl GuestRequestResult {
    /// Splits SW_EXITINFO2.
    pub const fn from_exit_info2(value: u64) -> Self {
        GuestRequestResult {
            vmm_error: (value >> 32) as u32,
            fw_status: value as u32,
        }
    }

    /// Joins into SW_EXITINFO2.
    pub const fn to_exit_info2(self) -> u64 {
        ((self.vmm_error as u64) << 32) | self.fw_status as u64
    }
}

/// SW_EXITINFO1[31:0] on return from a GHCB-page exit: success.
pub const EXIT_INFO1_OK: u32 = 0;
/// SW_EXITINFO1[31:0]: inject the exception described in SW_EXITINFO2.
pub const EXIT_INFO1_EXCEPTION: u32 = 1;
/// SW_EXITINFO1[31:0]: GHCB input error; SW_EXITINFO2 gives the reason.
pub const EXIT_INFO1_INPUT_ERROR: u32 = 2;

/// The GHCB page, 4 KiB (GHCB spec "GHCB Layout"; only the save-area fields an SVSM uses are
/// named, the rest is kept as reserved bytes).
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GhcbPage {
    /// Reserved save-area bytes.
    pub reserved_000: [u8; 0xCB],
    /// CPL.
    pub cpl: u8,
    /// Reserved.
    pub reserved_0cc: [u8; 0x74],
    /// XSS.
    pub xss: U64,
    /// Reserved.
    pub reserved_148: [u8; 0x18],
    /// DR7.
    pub dr7: U64,
    /// Reserved.
    pub reserved_168: [u8; 0x90],
    /// RAX.
    pub rax: U64,
    /// Reserved.
    pub reserved_200: [u8; 0x108],
    /// RCX.
    pub rcx: U64,
    /// RDX.
    pub rdx: U64,
    /// RBX.
    pub rbx: U64,
    /// Reserved.
    pub reserved_320: [u8; 8],
    /// RBP.
    pub rbp: U64,
    /// RSI.
    pub rsi: U64,
    /// RDI.
    pub rdi: U64,
    /// R8..R15.
    pub r8_r15: [U64; 8],
    /// Reserved.
    pub reserved_380: [u8; 0x10],
    /// SW_EXITCODE.
    pub sw_exit_code: U64,
    /// SW_EXITINFO1.
    pub sw_exit_info1: U64,
    /// SW_EXITINFO2.
    pub sw_exit_info2: U64,
    /// SW_SCRATCH: GPA of a shared buffer (usually the GHCB's own at 0x800).
    pub sw_scratch: U64,
    /// Reserved.
    pub reserved_3b0: [u8; 0x38],
    /// XCR0.
    pub xcr0: U64,
    /// VALID_BITMAP: bit n marks the qword at 8·n valid.
    pub valid_bitmap: [u8; 16],
    /// X87 state GPA.
    pub x87_state_gpa: U64,
    /// Reserved.
    pub reserved_408: [u8; 0x3F8],
    /// The shared buffer.
    pub shared_buffer: [u8; GHCB_SHARED_BUFFER_SIZE],
    /// Reserved.
    pub reserved_ff0: [u8; 10],
    /// PROTOCOL_VERSION (2).
    pub protocol_version: U16,
    /// GHCB_USAGE (0 = standard).
    pub ghcb_usage: U32,
}
/// Size of the GHCB shared buffer.
pub const GHCB_SHARED_BUFFER_SIZE: usize = 0x7F0;
/// Offset of the shared buffer in the GHCB page.
pub const GHCB_SHARED_BUFFER_OFFSET: usize = 0x800;
assert_layout!(
    GhcbPage,
    size = GHCB_PAGE_SIZE,
    cpl = 0xCB,
    xss = 0x140,
    dr7 = 0x160,
    rax = 0x1F8,
    rcx = 0x308,
    rdx = 0x310,
    rbx = 0x318,
    rbp = 0x328,
    rsi = 0x330,
    rdi = 0x338,
    r8_r15 = 0x340,
    sw_exit_code = 0x390,
    sw_exit_info1 = 0x398,
    sw_exit_info2 = 0x3A0,
    sw_scratch = 0x3A8,
    xcr0 = 0x3E8,
    valid_bitmap = 0x3F0,
    x87_state_gpa = 0x400,
    shared_buffer = GHCB_SHARED_BUFFER_OFFSET,
    reserved_ff0 = 0xFF0,
    protocol_version = 0xFFA,
    ghcb_usage = 0xFFC
);

/// A qword field of the GHCB save area that is tracked in VALID_BITMAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhcbField {
    /// RAX.
    Rax,
    /// RBX.
    Rbx,
    /// RCX.
    Rcx,
    /// RDX.
    Rdx,
    /// SW_EXITCODE.
    SwExitCode,
    /// SW_EXITINFO1.
    SwExitInfo1,
    /// SW_EXITINFO2.
    SwExitInfo2,
    /// SW_SCRATCH.
    SwScratch,
}

impl GhcbField {
    /// The field's byte offset in the page.
    pub const fn offset(self) -> usize {
        match self {
            GhcbField::Rax => 0x1F8,
            GhcbField::Rbx => 0x318,
            GhcbField::Rcx => 0x308,
            GhcbField::Rdx => 0x310,
            GhcbField::SwExitCode => 0x390,
            GhcbField::SwExitInfo1 => 0x398,
            GhcbField::SwExitInfo2 => 0x3A0,
            GhcbField::SwScratch => 0x3A8,
        }
    }

    /// The field's name in the spec.
    pub const fn name(self) -> &'static str {
        match self {
            GhcbField::Rax => "RAX",
            GhcbField::Rbx => "RBX",
            GhcbField::Rcx => "RCX",
            GhcbField::Rdx => "RDX",
            GhcbField::SwExitCode => "SW_EXITCODE",
            GhcbField::SwExitInfo1 => "SW_EXITINFO1",
            GhcbField::SwExitInfo2 => "SW_EXITINFO2",
            GhcbField::SwScratch => "SW_SCRATCH",
        }
    }
}

impl GhcbPage {
    /// A zeroed page with PROTOCOL_VERSION 2 and standard usage: the state before each call
    /// (every field invalid).
    pub fn new() -> Self {
        let mut page = Self::new_zeroed();
        page.protocol_version = U16::new(GHCB_PROTOCOL_VERSION);
        page.ghcb_usage = U32::new(0);
        page
    }

    fn slot(&mut self, field: GhcbField) -> &mut U64 {
        match field {
            GhcbField::Rax => &mut self.rax,
            GhcbField::Rbx => &mut self.rbx,
            GhcbField::Rcx => &mut self.rcx,
            GhcbField::Rdx => &mut self.rdx,
            GhcbField::SwExitCode => &mut self.sw_exit_code,
            GhcbField::SwExitInfo1 => &mut self.sw_exit_info1,
            GhcbField::SwExitInfo2 => &mut self.sw_exit_info2,
            GhcbField::SwScratch => &mut self.sw_scratch,
        }
    }

    fn value(&self, field: GhcbField) -> u64 {
        match field {
            GhcbField::Rax => self.rax.get(),
            GhcbField::Rbx => self.rbx.get(),
            GhcbField::Rcx => self.rcx.get(),
            GhcbField::Rdx => self.rdx.get(),
            GhcbField::SwExitCode => self.sw_exit_code.get(),
            GhcbField::SwExitInfo1 => self.sw_exit_info1.get(),
            GhcbField::SwExitInfo2 => self.sw_exit_info2.get(),
            GhcbField::SwScratch => self.sw_scratch.get(),
        }
    }

    fn bit(field: GhcbField) -> (usize, u8) {
        let qword = field.offset() / 8;
        (qword / 8, 1 << (qword % 8))
    }

    /// Writes a field and marks it valid.
    pub fn set(&mut self, field: GhcbField, value: u64) {
        *self.slot(field) = U64::new(value);
        let (byte, mask) = Self::bit(field);
        if let Some(b) = self.valid_bitmap.get_mut(byte) {
            *b |= mask;
        }
    }

    /// True when the field's VALID_BITMAP bit is set.
    pub fn is_valid(&self, field: GhcbField) -> bool {
        let (byte, mask) = Self::bit(field);
        self.valid_bitmap.get(byte).is_some_and(|b| b & mask != 0)
    }

    /// A field's value if it is marked valid.
    pub fn get(&self, field: GhcbField) -> Option<u64> {
        self.is_valid(field).then(|| self.value(field))
    }
}

impl Default for GhcbPage {
    fn default() -> Self {
        Self::new()
    }
}

/// Most entries of one page-state-change descriptor (it fills the GHCB shared buffer).
pub const PSC_MAX_ENTRIES: usize = 253;

/// Page-state-change descriptor header (GHCB spec "Page State Change"), 8 bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct PscHeader {
    /// Index of the next entry to process.
    pub cur_entry: U16,
    /// Index of the last entry (inclusive).
    pub end_entry: U16,
    /// MBZ.
    pub reserved: U32,
}
assert_layout!(
    PscHeader,
    size = 8,
    cur_entry = 0,
    end_entry = 2,
    reserved = 4
);

/// A page-state-change descriptor: the header and up to 253 entries, filling the shared buffer.
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PscDescriptor {
    /// Header.
    pub header: PscHeader,
    /// Entries (see [`PscEntry`]).
    pub entries: [U64; PSC_MAX_ENTRIES],
}
assert_layout!(
    PscDescriptor,
    size = GHCB_SHARED_BUFFER_SIZE,
    header = 0,
    entries = 8
);

/// One page-state-change entry: [11:0] cur_page, [51:12] GFN, [55:52] op, [56] 2 MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PscEntry {
    /// Progress inside a 2 MiB entry, in 4 KiB pages.
    pub cur_page: u16,
    /// The guest frame number.
    pub gfn: u64,
    /// The operation.
    pub op: PageStateOp,
    /// True for a 2 MiB page (the GFN must be 2 MiB aligned).
    pub huge: bool,
}

impl PscEntry {
    /// Encodes the entry, or `None` when the GFN does not fit 40 bits, cur_page does not fit 12
    /// bits, or a 2 MiB GFN is not aligned.
    pub fn encode(&self) -> Option<u64> {
        if self.gfn > MSR_PSC_MAX_GFN || self.cur_page > 0xFFF || (self.huge && self.gfn % 512 != 0)
        {
            return None;
        }
        Some(
            u64::from(self.cur_page)
                | (self.gfn << 12)
                | (u64::from(self.op as u8) << 52)
                | (u64::from(self.huge) << 56),
        )
    }

    /// Decodes an entry; `None` for an undefined op or set reserved bits 63:57.
    pub fn decode(value: u64) -> Option<Self> {
        if value >> 57 != 0 {
            return None;
        }
        let op = match (value >> 52) & 0xF {
            1 => PageStateOp::Private,
            2 => PageStateOp::Shared,
            3 => PageStateOp::Psmash,
            4 => PageStateOp::Unsmash,
            _ => return None,
        };
        Some(PscEntry {
            cur_page: (value & 0xFFF) as u16,
            gfn: (value >> 12) & MSR_PSC_MAX_GFN,
            op,
            huge: (value >> 56) & 1 == 1,
        })
    }
}

/// SW_EXITINFO1 of an IOIO event for a non-string IN or OUT of `size` bytes (1, 2 or 4) at
/// `port` (AMD APM vol. 2 §15.10.2, the IOIO intercept's EXITINFO1: TYPE bit 0 = IN, SZ8/16/32
/// bits 4-6, port in bits 31:16; GHCB spec §4.1.2). `None` for another size.
pub const fn ioio_exit_info1(port: u16, size: u8, input: bool) -> Option<u64> {
    let size_bit = match size {
        1 => 1 << 4,
        2 => 1 << 5,
        4 => 1 << 6,
        _ => return None,
    };
    Some(((port as u64) << 16) | size_bit | input as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_encodings() {
        assert_eq!(register_request(0x1234).unwrap(), 0x0123_4012);
        assert!(register_response(0x0123_4013, 0x1234).is_ok());
        assert_eq!(
            register_response(0xFFFF_FFFF_FFFF_F013, 0x1234),
            Err(MsrProtocolError::RegistrationRefused {
                requested: 0x1234,
                answered: 0xF_FFFF_FFFF_FFFF
            })
        );
        assert!(matches!(
            register_response(0x0123_4015, 0x1234),
            Err(MsrProtocolError::UnexpectedInfo { .. })
        ));
        assert_eq!(
            register_request(1 << 52),
            Err(MsrProtocolError::GfnRange(1 << 52))
        );
        assert_eq!(
            psc_request(0x42, PageStateOp::Shared).unwrap(),
            (2 << 52) | (0x42 << 12) | 0x014
        );
        assert!(psc_request(1 << 40, PageStateOp::Private).is_err());
        assert!(psc_request(1, PageStateOp::Psmash).is_err());
        assert_eq!(psc_response(0x015), Ok(()));
        assert_eq!(
            psc_response((7 << 32) | 0x015),
            Err(MsrProtocolError::Error(7))
        );
        assert_eq!(run_vmpl_request(2), (2 << 32) | 0x016);
        assert_eq!(run_vmpl_response(0x017), Ok(()));
        let info = SevInfo::decode((2 << 48) | (1 << 32) | (51 << 24) | 1).unwrap();
        assert_eq!(
            info,
            SevInfo {
                max_version: 2,
                min_version: 1,
                cbit: 51
            }
        );
        assert!(info.supports(2) && !info.supports(3));
        assert_eq!(hv_features_response((0x23 << 12) | 0x081), Ok(0x23));
        assert_eq!(TerminationReason { set: 1, code: 3 }.msr_request(), 0x31100);
        assert_eq!(TerminationReason { set: 1, code: 3 }.exit_info1(), 0x31);
    }

    #[test]
    fn ghcb_valid_bitmap() {
        let mut g = GhcbPage::new();
        assert_eq!(g.get(GhcbField::SwExitInfo2), None);
        g.set(GhcbField::SwExitInfo2, 0xDEAD);
        assert_eq!(g.get(GhcbField::SwExitInfo2), Some(0xDEAD));
        // 0x3A0 / 8 = 116 -> byte 14, bit 4.
        assert_eq!(g.valid_bitmap[14], 1 << 4);
        g.set(GhcbField::Rax, 1);
        // 0x1F8 / 8 = 63 -> byte 7, bit 7.
        assert_eq!(g.valid_bitmap[7], 1 << 7);
        let b = g.as_bytes();
        assert_eq!(&b[0x3A0..0x3A8], &0xDEADu64.to_le_bytes());
        assert_eq!(&b[0xFFA..0xFFC], &2u16.to_le_bytes());
        for f in [
            GhcbField::Rax,
            GhcbField::Rbx,
            GhcbField::Rcx,
            GhcbField::Rdx,
            GhcbField::SwExitCode,
            GhcbField::SwExitInfo1,
            GhcbField::SwExitInfo2,
            GhcbField::SwScratch,
        ] {
            let mut g = GhcbPage::new();
            g.set(f, 0x1122_3344_5566_7788);
            let off = f.offset();
            assert_eq!(
                &g.as_bytes()[off..off + 8],
                &0x1122_3344_5566_7788u64.to_le_bytes()
            );
        }
    }

    #[test]
    fn psc_entries() {
        let e = PscEntry {
            cur_page: 0,
            gfn: 0x200,
            op: PageStateOp::Private,
            huge: true,
        };
        let v = e.encode().unwrap();
        assert_eq!(v, (1 << 56) | (1 << 52) | (0x200 << 12));
        assert_eq!(PscEntry::decode(v), Some(e));
        assert!(PscEntry { gfn: 0x201, ..e }.encode().is_none());
        assert!(PscEntry::decode(1 << 57).is_none());
        assert!(PscEntry::decode(5 << 52).is_none());
    }
}
