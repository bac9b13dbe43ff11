//! The SVSM calling convention: calling area, RAX encoding of protocol and call, result codes,
//! protocol numbers and call ids, and the core protocol's QUERY_PROTOCOL register encoding.
//!
//! Source: AMD "Secure VM Service Module for SEV-SNP Guests" (pub. 58019) §5 Tables 2–4, §6.

use crate::assert_layout;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a calling area: one 4 KiB page per vCPU (SVSM spec §5).
pub const CALLING_AREA_SIZE: usize = 4096;

/// The architected head of the calling area (SVSM spec §5 Table 2). The rest of the page
/// (offset 0x008..0x1000) is free for the guest's parameters.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CallingAreaHeader {
    /// 0 = no call, 1 = call requested; other values are reserved (SVSM_ERR_INVALID_FORMAT).
    pub call_pending: u8,
    /// Non-zero: the SVSM has memory the guest may reclaim with WITHDRAW_MEM.
    pub mem_available: u8,
    /// Reserved; the SVSM need not check it.
    pub reserved: [u8; 6],
}
assert_layout!(
    CallingAreaHeader,
    size = 8,
    call_pending = 0,
    mem_available = 1,
    reserved = 2
);

/// Offset of the free part of the calling area, where Linux and OVMF place request structures.
pub const CALLING_AREA_BUFFER_OFFSET: usize = 8;

/// Protocol number 0: core protocol (SVSM spec §6).
pub const PROTOCOL_CORE: u32 = 0;
/// Protocol number 1: attestation protocol (SVSM spec §7).
pub const PROTOCOL_ATTEST: u32 = 1;
/// Protocol number 2: vTPM protocol (SVSM spec §8).
pub const PROTOCOL_VTPM: u32 = 2;
/// The svsm-vhsm vault protocol. The spec assigns 0..=4 and reserves 0x8000_0000..=0x8000_FFFF
/// for AMD's reference implementation; no third-party range exists, so the vault takes a number
/// far from both (ASCII "vhsm") and is discovered with QUERY_PROTOCOL, never assumed.
pub const PROTOCOL_VAULT: u32 = 0x7668_736d;

/// Core protocol call ids (SVSM spec §6 Table 5).
pub mod core_call {
    /// SVSM_CORE_REMAP_CA
    pub const REMAP_CA: u32 = 0;
    /// SVSM_CORE_PVALIDATE
    pub const PVALIDATE: u32 = 1;
    /// SVSM_CORE_CREATE_VCPU
    pub const CREATE_VCPU: u32 = 2;
    /// SVSM_CORE_DELETE_VCPU
    pub const DELETE_VCPU: u32 = 3;
    /// SVSM_CORE_DEPOSIT_MEM
    pub const DEPOSIT_MEM: u32 = 4;
    /// SVSM_CORE_WITHDRAW_MEM
    pub const WITHDRAW_MEM: u32 = 5;
    /// SVSM_CORE_QUERY_PROTOCOL
    pub const QUERY_PROTOCOL: u32 = 6;
    /// SVSM_CORE_CONFIGURE_VTOM
    pub const CONFIGURE_VTOM: u32 = 7;
}

/// Attestation protocol call ids (SVSM spec §7 Table 10).
pub mod attest_call {
    /// SVSM_ATTEST_SERVICES: a VMPL0 report over the whole services manifest.
    pub const ATTEST_SERVICES: u32 = 0;
    /// SVSM_ATTEST_SINGLE_SERVICE: a VMPL0 report over one service's manifest.
    pub const ATTEST_SINGLE_SERVICE: u32 = 1;
}

/// vTPM protocol call ids (SVSM spec §8 Table 14).
pub mod vtpm_call {
    /// SVSM_VTPM_QUERY: RCX = supported platform commands bitmap, RDX = feature bitmap.
    pub const QUERY: u32 = 0;
    /// SVSM_VTPM_CMD: RCX = GPA of the 4 KiB request/response buffer.
    pub const CMD: u32 = 1;
}

/// The registers of an SVSM call: inputs on entry, outputs on return (SVSM spec §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallRegisters {
    /// In: (protocol << 32) | call. Out: result code.
    pub rax: u64,
    /// First parameter / output.
    pub rcx: u64,
    /// Second parameter / output.
    pub rdx: u64,
    /// Third parameter / output.
    pub r8: u64,
    /// Fourth parameter / output.
    pub r9: u64,
}

/// A decoded RAX of an SVSM call: bits 63:32 protocol, bits 31:0 call id (SVSM spec §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId {
    /// Protocol number.
    pub protocol: u32,
    /// Call id within the protocol.
    pub call: u32,
}

impl CallId {
    /// Splits a guest's RAX.
    pub const fn from_rax(rax: u64) -> Self {
        CallId {
            protocol: (rax >> 32) as u32,
            call: rax as u32,
        }
    }

    /// The RAX value a guest loads for this call.
    pub const fn to_rax(self) -> u64 {
        ((self.protocol as u64) << 32) | self.call as u64
    }
}

/// The first protocol-defined error code (SVSM spec §5 Table 4).
pub const PROTOCOL_ERROR_BASE: u32 = 0x8000_1000;

/// An SVSM call result as returned in RAX (SVSM spec §5 Table 4). Only the low 32 bits count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultCode {
    /// 0x0000_0000 SVSM_SUCCESS.
    Success,
    /// 0x0000_1000..=0x3FFF_FFFF: protocol-defined success information.
    ProtocolSuccess(u32),
    /// 0x4000_0000..=0x7FFF_FFFF: the guest should DEPOSIT_MEM this many 4 KiB pages.
    NeedMemory(u32),
    /// 0x8000_0000 SVSM_ERR_INCOMPLETE: set CALL_PENDING and call again.
    Incomplete,
    /// 0x8000_0001 SVSM_ERR_UNSUPPORTED_PROTOCOL.
    UnsupportedProtocol,
    /// 0x8000_0002 SVSM_ERR_UNSUPPORTED_CALL.
    UnsupportedCall,
    /// 0x8000_0003 SVSM_ERR_INVALID_ADDRESS: a GPA is invalid or faults.
    InvalidAddress,
    /// 0x8000_0004 SVSM_ERR_INVALID_FORMAT.
    InvalidFormat,
    /// 0x8000_0005 SVSM_ERR_INVALID_PARAMETER (includes misaligned input).
    InvalidParameter,
    /// 0x8000_0006 SVSM_ERR_INVALID_REQUEST.
    InvalidRequest,
    /// 0x8000_0007 SVSM_ERR_BUSY: try again; no intermediate state was left behind.
    Busy,
    /// 0x8000_1000..=0xFFFF_FFFF: protocol-defined error `n`, encoded as 0x8000_1000 + n.
    ProtocolError(u32),
    /// A value in a range the spec reserves (0x1..=0xFFF, 0x8000_0008..=0x8000_0FFF).
    Reserved(u32),
}

impl ResultCode {
    /// Encodes the code for RAX (low 32 bits). Values that do not fit their range saturate to
    /// the range's end, so an encoding can never alias another class of result.
    pub const fn to_u32(self) -> u32 {
        match self {
            ResultCode::Success => 0,
            ResultCode::ProtocolSuccess(v) => clamp(v, 0x1000, 0x3FFF_FFFF),
            ResultCode::NeedMemory(pages) => 0x4000_0000 | clamp(pages, 0, 0x3FFF_FFFF),
            ResultCode::Incomplete => 0x8000_0000,
            ResultCode::UnsupportedProtocol => 0x8000_0001,
            ResultCode::UnsupportedCall => 0x8000_0002,
            ResultCode::InvalidAddress => 0x8000_0003,
            ResultCode::InvalidFormat => 0x8000_0004,
            ResultCode::InvalidParameter => 0x8000_0005,
            ResultCode::InvalidRequest => 0x8000_0006,
            ResultCode::Busy => 0x8000_0007,
            ResultCode::ProtocolError(n) => PROTOCOL_ERROR_BASE.saturating_add(n),
            ResultCode::Reserved(v) => v,
        }
    }

    /// Decodes RAX; bits 63:32 are ignored (a sign extension must not matter, SVSM spec §5).
    pub const fn from_rax(rax: u64) -> Self {
        let v = rax as u32;
        match v {
            0 => ResultCode::Success,
            0x1..=0xFFF => ResultCode::Reserved(v),
            0x1000..=0x3FFF_FFFF => ResultCode::ProtocolSuccess(v),
            0x4000_0000..=0x7FFF_FFFF => ResultCode::NeedMemory(v & 0x3FFF_FFFF),
            0x8000_0000 => ResultCode::Incomplete,
            0x8000_0001 => ResultCode::UnsupportedProtocol,
            0x8000_0002 => ResultCode::UnsupportedCall,
            0x8000_0003 => ResultCode::InvalidAddress,
            0x8000_0004 => ResultCode::InvalidFormat,
            0x8000_0005 => ResultCode::InvalidParameter,
            0x8000_0006 => ResultCode::InvalidRequest,
            0x8000_0007 => ResultCode::Busy,
            0x8000_0008..=0x8000_0FFF => ResultCode::Reserved(v),
            _ => ResultCode::ProtocolError(v - PROTOCOL_ERROR_BASE),
        }
    }

    /// True for the success classes (plain and protocol-defined).
    pub const fn is_success(self) -> bool {
        matches!(self, ResultCode::Success | ResultCode::ProtocolSuccess(_))
    }
}

const fn clamp(v: u32, lo: u32, hi: u32) -> u32 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// QUERY_PROTOCOL input in RCX: bits 63:32 protocol, bits 31:0 requested version (SVSM spec §6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolQuery {
    /// Protocol asked about.
    pub protocol: u32,
    /// Version the caller wants.
    pub version: u32,
}

impl ProtocolQuery {
    /// Decodes RCX.
    pub const fn from_rcx(rcx: u64) -> Self {
        ProtocolQuery {
            protocol: (rcx >> 32) as u32,
            version: rcx as u32,
        }
    }

    /// Encodes RCX.
    pub const fn to_rcx(self) -> u64 {
        ((self.protocol as u64) << 32) | self.version as u64
    }
}

/// QUERY_PROTOCOL output in RCX: 0 when unsupported, else (max << 32) | min (SVSM spec §6.7).
pub const fn protocol_versions_rcx(min: u32, max: u32) -> u64 {
    ((max as u64) << 32) | min as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_round_trip_and_ignore_upper_bits() {
        let all = [
            ResultCode::Success,
            ResultCode::ProtocolSuccess(0x1234),
            ResultCode::NeedMemory(7),
            ResultCode::Incomplete,
            ResultCode::UnsupportedProtocol,
            ResultCode::UnsupportedCall,
            ResultCode::InvalidAddress,
            ResultCode::InvalidFormat,
            ResultCode::InvalidParameter,
            ResultCode::InvalidRequest,
            ResultCode::Busy,
            ResultCode::ProtocolError(0),
            ResultCode::ProtocolError(0x10),
            ResultCode::Reserved(5),
        ];
        for code in all {
            let v = code.to_u32();
            assert_eq!(ResultCode::from_rax(u64::from(v)), code);
            assert_eq!(
                ResultCode::from_rax(0xFFFF_FFFF_0000_0000 | u64::from(v)),
                code
            );
        }
        assert_eq!(ResultCode::InvalidParameter.to_u32(), 0x8000_0005);
        assert_eq!(ResultCode::ProtocolError(0x10).to_u32(), 0x8000_1010);
    }

    #[test]
    fn out_of_range_payloads_saturate_inside_their_class() {
        assert_eq!(ResultCode::ProtocolSuccess(1).to_u32(), 0x1000);
        assert_eq!(ResultCode::NeedMemory(u32::MAX).to_u32(), 0x7FFF_FFFF);
        assert_eq!(ResultCode::ProtocolError(u32::MAX).to_u32(), u32::MAX);
    }

    #[test]
    fn rax_split() {
        let id = CallId::from_rax(0x0000_0002_0000_0001);
        assert_eq!(
            id,
            CallId {
                protocol: PROTOCOL_VTPM,
                call: vtpm_call::CMD
            }
        );
        assert_eq!(id.to_rax(), 0x0000_0002_0000_0001);
        assert_eq!(protocol_versions_rcx(1, 1), 0x0000_0001_0000_0001);
    }
}
