//! SNP guest-request payloads (SNP ABI spec §7, "MSG_REPORT_REQ", "MSG_REPORT_RSP",
//! "MSG_KEY_REQ", "MSG_KEY_RSP"). These travel encrypted under a VMPCK; the envelope around
//! them belongs to the platform backend.

use super::report::{RawReport, REPORT_SIZE};
use super::tcb::TcbVersion;
use crate::assert_layout;
use bitflags::bitflags;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Guest message types (SNP ABI spec "Message Type Encodings").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// MSG_CPUID_REQ
    CpuidReq = 1,
    /// MSG_CPUID_RSP
    CpuidRsp = 2,
    /// MSG_KEY_REQ
    KeyReq = 3,
    /// MSG_KEY_RSP
    KeyRsp = 4,
    /// MSG_REPORT_REQ
    ReportReq = 5,
    /// MSG_REPORT_RSP
    ReportRsp = 6,
}

/// Which key the PSP signs with or derives from (KEY_SEL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum KeySelect {
    /// VLEK if one is installed, else VCEK.
    Default = 0,
    /// VCEK only.
    Vcek = 1,
    /// VLEK only.
    Vlek = 2,
}

/// MSG_REPORT_REQ, 0x60 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ReportRequest {
    /// Copied verbatim into the report.
    pub report_data: [u8; 64],
    /// VMPL to report; must be at least the requester's VMPL.
    pub vmpl: U32,
    /// Bits 1:0 KEY_SEL; 31:2 MBZ.
    pub key_sel: U32,
    /// MBZ.
    pub reserved: [u8; 24],
}
assert_layout!(
    ReportRequest,
    size = 0x60,
    report_data = 0,
    vmpl = 0x40,
    key_sel = 0x44,
    reserved = 0x48
);

impl ReportRequest {
    /// A request for `vmpl` with this REPORT_DATA.
    pub fn new(report_data: [u8; 64], vmpl: u32, key: KeySelect) -> Self {
        ReportRequest {
            report_data,
            vmpl: U32::new(vmpl),
            key_sel: U32::new(key as u32),
            reserved: [0; 24],
        }
    }

    /// Reads a request (for the PSP side), checking reserved bits.
    pub fn parse(bytes: &[u8]) -> Result<Self, MessageError> {
        let req = Self::read_from_bytes(bytes).map_err(|_| MessageError::Length {
            actual: bytes.len(),
            expected: core::mem::size_of::<Self>(),
        })?;
        if req.key_sel.get() & !3 != 0 || req.key_sel.get() == 3 {
            return Err(MessageError::Reserved("key_sel"));
        }
        if req.reserved.iter().any(|&b| b != 0) {
            return Err(MessageError::Reserved("reserved@0x48"));
        }
        Ok(req)
    }
}

/// Status codes in MSG_REPORT_RSP / MSG_KEY_RSP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PspStatus {
    /// 0: success.
    Success,
    /// 0x16: invalid parameters.
    InvalidParams,
    /// 0x27: invalid key selection.
    InvalidKey,
    /// Any other value.
    Other(u32),
}

impl PspStatus {
    /// Decodes a status word.
    pub const fn from_u32(v: u32) -> Self {
        match v {
            0 => PspStatus::Success,
            0x16 => PspStatus::InvalidParams,
            0x27 => PspStatus::InvalidKey,
            v => PspStatus::Other(v),
        }
    }
    /// Encodes a status word.
    pub const fn to_u32(self) -> u32 {
        match self {
            PspStatus::Success => 0,
            PspStatus::InvalidParams => 0x16,
            PspStatus::InvalidKey => 0x27,
            PspStatus::Other(v) => v,
        }
    }
}

/// MSG_REPORT_RSP, 0x20-byte header followed by the 1184-byte report.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ReportResponse {
    /// Status.
    pub status: U32,
    /// Size of the report, 0x4A0.
    pub report_size: U32,
    /// Reserved.
    pub reserved: [u8; 24],
    /// The report.
    pub report: RawReport,
}
assert_layout!(
    ReportResponse,
    size = 0x20 + REPORT_SIZE,
    status = 0,
    report_size = 4,
    reserved = 8,
    report = 0x20
);

/// Why a guest-message payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Wrong length.
    #[error("guest message payload is {actual} bytes, expected {expected}")]
    Length {
        /// Bytes given.
        actual: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The PSP reported failure.
    #[error("PSP returned status {0:?}")]
    Status(PspStatus),
    /// REPORT_SIZE is not 0x4A0.
    #[error("MSG_REPORT_RSP report_size {0:#x}, expected 0x4a0")]
    ReportSize(u32),
    /// A reserved field or bit is set.
    #[error("guest message field {0} is reserved")]
    Reserved(&'static str),
}

impl ReportResponse {
    /// Reads a response: successful status and the right report size, or an error.
    pub fn parse(bytes: &[u8]) -> Result<&Self, MessageError> {
        let rsp = Self::ref_from_bytes(bytes).map_err(|_| MessageError::Length {
            actual: bytes.len(),
            expected: core::mem::size_of::<Self>(),
        })?;
        match PspStatus::from_u32(rsp.status.get()) {
            PspStatus::Success => {}
            other => return Err(MessageError::Status(other)),
        }
        if rsp.report_size.get() as usize != REPORT_SIZE {
            return Err(MessageError::ReportSize(rsp.report_size.get()));
        }
        Ok(rsp)
    }
}

bitflags! {
    /// GUEST_FIELD_SELECT of MSG_KEY_REQ: which guest fields are mixed into the derived key.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GuestFieldSelect: u64 {
        /// Guest policy.
        const POLICY = 1 << 0;
        /// Image ID.
        const IMAGE_ID = 1 << 1;
        /// Family ID.
        const FAMILY_ID = 1 << 2;
        /// Launch measurement.
        const MEASUREMENT = 1 << 3;
        /// Guest SVN.
        const GUEST_SVN = 1 << 4;
        /// TCB version.
        const TCB_VERSION = 1 << 5;
        /// Launch mitigation vector (newer firmware).
        const LAUNCH_MIT_VECTOR = 1 << 6;
    }
}

/// Root key of a derived key (ROOT_KEY_SELECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKey {
    /// 0: the VCEK/VLEK-rooted key.
    Vcek,
    /// 1: the VM root key (migration-stable).
    Vmrk,
}

/// MSG_KEY_REQ, 0x28 bytes (older firmware ends at 0x20; the mitigation vector is then zero).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct KeyRequest {
    /// Bit 0 ROOT_KEY_SELECT, bits 2:1 KEY_SEL, 31:3 MBZ.
    pub key_select: U32,
    /// Reserved.
    pub reserved: U32,
    /// GUEST_FIELD_SELECT.
    pub guest_field_select: U64,
    /// VMPL to derive for; at least the requester's.
    pub vmpl: U32,
    /// Guest SVN to mix in; at most the launch SVN.
    pub guest_svn: U32,
    /// TCB to mix in; at most the committed TCB.
    pub tcb_version: TcbVersion,
    /// Launch mitigation vector to mix in.
    pub launch_mit_vector: U64,
}
assert_layout!(
    KeyRequest,
    size = 0x28,
    key_select = 0,
    reserved = 4,
    guest_field_select = 8,
    vmpl = 0x10,
    guest_svn = 0x14,
    tcb_version = 0x18,
    launch_mit_vector = 0x20
);

impl KeyRequest {
    /// Builds a request.
    pub fn new(
        root: RootKey,
        key: KeySelect,
        fields: GuestFieldSelect,
        vmpl: u32,
        guest_svn: u32,
        tcb_version: TcbVersion,
    ) -> Self {
        let root_bit = match root {
            RootKey::Vcek => 0,
            RootKey::Vmrk => 1,
        };
        KeyRequest {
            key_select: U32::new(root_bit | ((key as u32) << 1)),
            reserved: U32::new(0),
            guest_field_select: U64::new(fields.bits()),
            vmpl: U32::new(vmpl),
            guest_svn: U32::new(guest_svn),
            tcb_version,
            launch_mit_vector: U64::new(0),
        }
    }

    /// Reads a request (for the PSP side), refusing reserved bits.
    pub fn parse(bytes: &[u8]) -> Result<Self, MessageError> {
        let req = Self::read_from_bytes(bytes).map_err(|_| MessageError::Length {
            actual: bytes.len(),
            expected: core::mem::size_of::<Self>(),
        })?;
        let ks = req.key_select.get();
        if ks & !7 != 0 || (ks >> 1) & 3 == 3 {
            return Err(MessageError::Reserved("key_select"));
        }
        if req.reserved.get() != 0 {
            return Err(MessageError::Reserved("reserved@0x04"));
        }
        if GuestFieldSelect::from_bits(req.guest_field_select.get()).is_none() {
            return Err(MessageError::Reserved("guest_field_select[63:7]"));
        }
        Ok(req)
    }

    /// The root key selected.
    pub fn root_key(&self) -> RootKey {
        if self.key_select.get() & 1 == 1 {
            RootKey::Vmrk
        } else {
            RootKey::Vcek
        }
    }

    /// The guest fields selected (unknown bits dropped; `parse` refuses them).
    pub fn fields(&self) -> GuestFieldSelect {
        GuestFieldSelect::from_bits_truncate(self.guest_field_select.get())
    }
}

/// MSG_KEY_RSP, 0x40 bytes.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct KeyResponse {
    /// Status.
    pub status: U32,
    /// Reserved.
    pub reserved: [u8; 28],
    /// The derived key.
    pub derived_key: [u8; 32],
}
assert_layout!(
    KeyResponse,
    size = 0x40,
    status = 0,
    reserved = 4,
    derived_key = 0x20
);

impl core::fmt::Debug for KeyResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print key material.
        f.debug_struct("KeyResponse")
            .field("status", &self.status.get())
            .finish_non_exhaustive()
    }
}

impl KeyResponse {
    /// Reads a response; a failed status is an error.
    pub fn parse(bytes: &[u8]) -> Result<&Self, MessageError> {
        let rsp = Self::ref_from_bytes(bytes).map_err(|_| MessageError::Length {
            actual: bytes.len(),
            expected: core::mem::size_of::<Self>(),
        })?;
        match PspStatus::from_u32(rsp.status.get()) {
            PspStatus::Success => Ok(rsp),
            other => Err(MessageError::Status(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn report_request_layout_and_checks() {
        let req = ReportRequest::new([7; 64], 0, KeySelect::Vcek);
        let b = req.as_bytes();
        assert_eq!(&b[0x40..0x48], &[0, 0, 0, 0, 1, 0, 0, 0]);
        assert!(ReportRequest::parse(b).is_ok());
        for len in 0..b.len() {
            assert!(matches!(
                ReportRequest::parse(&b[..len]),
                Err(MessageError::Length { .. })
            ));
        }
        let mut bad = b.to_vec();
        bad[0x44] = 3;
        assert_eq!(
            ReportRequest::parse(&bad).unwrap_err(),
            MessageError::Reserved("key_sel")
        );
        let mut bad = b.to_vec();
        bad[0x5F] = 1;
        assert_eq!(
            ReportRequest::parse(&bad).unwrap_err(),
            MessageError::Reserved("reserved@0x48")
        );
    }

    #[test]
    fn report_response_status_and_size() {
        let mut b = vec![0u8; core::mem::size_of::<ReportResponse>()];
        b[4..8].copy_from_slice(&0x4A0u32.to_le_bytes());
        assert!(ReportResponse::parse(&b).is_ok());
        for len in [0, 0x20, b.len() - 1, b.len() + 1] {
            let mut v = b.clone();
            v.resize(len, 0);
            assert!(matches!(
                ReportResponse::parse(&v),
                Err(MessageError::Length { .. })
            ));
        }
        let mut v = b.clone();
        v[0] = 0x16;
        assert_eq!(
            ReportResponse::parse(&v).unwrap_err(),
            MessageError::Status(PspStatus::InvalidParams)
        );
        let mut v = b;
        v[4] = 0;
        assert_eq!(
            ReportResponse::parse(&v).unwrap_err(),
            MessageError::ReportSize(0x400)
        );
    }

    #[test]
    fn key_request_round_trip_and_reserved_bits() {
        let fields = GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY;
        let req = KeyRequest::new(
            RootKey::Vcek,
            KeySelect::Vcek,
            fields,
            0,
            0,
            TcbVersion::from_raw(4),
        );
        let b = req.as_bytes();
        assert_eq!(&b[..4], &[2, 0, 0, 0]);
        let parsed = KeyRequest::parse(b).unwrap();
        assert_eq!(parsed.fields(), fields);
        assert_eq!(parsed.root_key(), RootKey::Vcek);
        for len in 0..b.len() {
            assert!(KeyRequest::parse(&b[..len]).is_err());
        }
        let mut bad = b.to_vec();
        bad[8] = 0x80; // guest_field_select bit 7
        assert_eq!(
            KeyRequest::parse(&bad).unwrap_err(),
            MessageError::Reserved("guest_field_select[63:7]")
        );
        let mut bad = b.to_vec();
        bad[0] = 6; // KEY_SEL = 3
        assert_eq!(
            KeyRequest::parse(&bad).unwrap_err(),
            MessageError::Reserved("key_select")
        );
        let mut bad = b.to_vec();
        bad[4] = 1;
        assert_eq!(
            KeyRequest::parse(&bad).unwrap_err(),
            MessageError::Reserved("reserved@0x04")
        );
    }

    #[test]
    fn key_response_hides_the_key_and_checks_status() {
        let mut b = [0u8; 0x40];
        b[0x20..].copy_from_slice(&[0xAB; 32]);
        let rsp = KeyResponse::parse(&b).unwrap();
        assert_eq!(rsp.derived_key, [0xAB; 32]);
        assert!(!std::format!("{rsp:?}").contains("171"));
        b[0] = 0x27;
        assert_eq!(
            KeyResponse::parse(&b).unwrap_err(),
            MessageError::Status(PspStatus::InvalidKey)
        );
        assert!(KeyResponse::parse(&b[..0x3F]).is_err());
    }
}
