//! The SNP guest-message envelope (SNP ABI spec, "SNP_GUEST_REQUEST", "Message Header Format"
//! and "Guest Messages"): one 4 KiB page holding a 0x60-byte header and up to 4000 bytes of
//! AES-256-GCM ciphertext under a VMPCK.
//!
//! - AAD = header bytes 0x30..0x60 ([`AuthenticatedHeader`]).
//! - IV = MSG_SEQNO as a little-endian u64, then four zero bytes ([`MessageHeader::iv`]).
//! - The tag is 16 bytes at 0x00; bytes 0x10..0x20 of AUTHTAG are zero.
//! - MSG_SIZE counts the plaintext payload only.
//!
//! The crypto lives in the platform backend; this module owns only the bytes and the checks a
//! response header must pass before its payload is decrypted. Responses may carry non-zero
//! reserved bytes (the firmware leaves them), so only named fields are checked.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of a guest-message page.
pub const MSG_PAGE_SIZE: usize = 4096;
/// Size of the message header.
pub const MSG_HEADER_SIZE: usize = 0x60;
/// Largest payload: the page less the header.
pub const MAX_MSG_PAYLOAD: usize = MSG_PAGE_SIZE - MSG_HEADER_SIZE;
/// Bytes of AUTHTAG that hold the AES-GCM tag.
pub const AUTHTAG_LEN: usize = 16;
/// Offset of the authenticated part of the header.
pub const AAD_OFFSET: usize = 0x30;
/// Length of the AAD.
pub const AAD_LEN: usize = MSG_HEADER_SIZE - AAD_OFFSET;
/// ALGO value of AES-256-GCM (0 is invalid).
pub const ALGO_AES_256_GCM: u8 = 1;
/// HDR_VERSION of this header format.
pub const HEADER_VERSION: u8 = 1;
/// MSG_VERSION of MSG_REPORT and MSG_KEY messages.
pub const MSG_VERSION_1: u8 = 1;

/// The authenticated part of the header, 0x30..0x60 (the AES-GCM AAD).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct AuthenticatedHeader {
    /// ALGO: 1 = AES-256-GCM.
    pub algo: u8,
    /// HDR_VERSION: 1.
    pub hdr_version: u8,
    /// HDR_SIZE: 0x60.
    pub hdr_size: U16,
    /// MSG_TYPE (SNP ABI spec "Message Type Encodings"; a response is the request + 1).
    pub msg_type: u8,
    /// MSG_VERSION.
    pub msg_version: u8,
    /// MSG_SIZE: plaintext payload bytes.
    pub msg_size: U16,
    /// Reserved.
    pub reserved_38: [u8; 4],
    /// MSG_VMPCK: index of the VMPCK that keys the message.
    pub msg_vmpck: u8,
    /// Reserved.
    pub reserved_3d: [u8; 35],
}

/// The message header, 0x60 bytes (SNP ABI spec "Message Header Format").
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct MessageHeader {
    /// AUTHTAG: the 16-byte GCM tag, then 16 zero bytes.
    pub authtag: [u8; 32],
    /// MSG_SEQNO: the IV source; never 0.
    pub msg_seqno: U64,
    /// Reserved.
    pub reserved_28: [u8; 8],
    /// The authenticated fields.
    pub auth: AuthenticatedHeader,
}
assert_layout!(
    MessageHeader,
    size = MSG_HEADER_SIZE,
    authtag = 0,
    msg_seqno = 0x20,
    reserved_28 = 0x28,
    auth = AAD_OFFSET
);
assert_layout!(
    AuthenticatedHeader,
    size = AAD_LEN,
    algo = 0,
    hdr_version = 1,
    hdr_size = 2,
    msg_type = 4,
    msg_version = 5,
    msg_size = 6,
    reserved_38 = 8,
    msg_vmpck = 0xC,
    reserved_3d = 0xD
);

/// A whole guest-message page: header and payload area.
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GuestMessage {
    /// The header.
    pub header: MessageHeader,
    /// Ciphertext (MSG_SIZE bytes used).
    pub payload: [u8; MAX_MSG_PAYLOAD],
}
assert_layout!(
    GuestMessage,
    size = MSG_PAGE_SIZE,
    header = 0,
    payload = 0x60
);

/// Why a message header was refused. Each variant names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The page is not 4096 bytes.
    #[error("guest message page is {actual} bytes, expected {MSG_PAGE_SIZE}")]
    Length {
        /// Bytes given.
        actual: usize,
    },
    /// ALGO is not AES-256-GCM.
    #[error("guest message ALGO {0}, expected 1 (AES-256-GCM)")]
    Algorithm(u8),
    /// HDR_VERSION is not 1.
    #[error("guest message HDR_VERSION {0}, expected 1")]
    HeaderVersion(u8),
    /// HDR_SIZE is not 0x60.
    #[error("guest message HDR_SIZE {0:#x}, expected 0x60")]
    HeaderSize(u16),
    /// MSG_TYPE is not the one expected.
    #[error("guest message MSG_TYPE {actual}, expected {expected}")]
    MessageType {
        /// In the header.
        actual: u8,
        /// Expected.
        expected: u8,
    },
    /// MSG_VERSION is not the one expected.
    #[error("guest message MSG_VERSION {actual}, expected {expected}")]
    MessageVersion {
        /// In the header.
        actual: u8,
        /// Expected.
        expected: u8,
    },
    /// MSG_VMPCK is not the key expected.
    #[error("guest message MSG_VMPCK {actual}, expected {expected}")]
    Vmpck {
        /// In the header.
        actual: u8,
        /// Expected.
        expected: u8,
    },
    /// MSG_VMPCK is above 3.
    #[error("guest message MSG_VMPCK {0} is not a key index (0..=3)")]
    VmpckRange(u8),
    /// MSG_SEQNO is not the one expected (a replayed, skipped or zero sequence number).
    #[error("guest message MSG_SEQNO {actual}, expected {expected}")]
    Sequence {
        /// In the header.
        actual: u64,
        /// Expected.
        expected: u64,
    },
    /// MSG_SIZE is larger than the payload area.
    #[error("guest message MSG_SIZE {0} exceeds {MAX_MSG_PAYLOAD}")]
    PayloadTooLarge(u16),
    /// MSG_SIZE is not the size of the expected payload.
    #[error("guest message MSG_SIZE {actual:#x}, expected {expected:#x}")]
    PayloadSize {
        /// In the header.
        actual: u16,
        /// Expected.
        expected: u16,
    },
}

/// What a response to one request must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedResponse {
    /// MSG_SEQNO: the request's sequence number + 1.
    pub seqno: u64,
    /// MSG_TYPE: the request's type + 1.
    pub msg_type: u8,
    /// MSG_VERSION: the request's version.
    pub msg_version: u8,
    /// MSG_VMPCK: the request's key.
    pub vmpck: u8,
    /// MSG_SIZE: the response payload's size.
    pub msg_size: u16,
}

impl MessageHeader {
    /// A request header with a zero tag (the tag is filled in after encryption).
    pub fn new(seqno: u64, msg_type: u8, msg_version: u8, msg_size: u16, vmpck: u8) -> Self {
        MessageHeader {
            authtag: [0; 32],
            msg_seqno: U64::new(seqno),
            reserved_28: [0; 8],
            auth: AuthenticatedHeader {
                algo: ALGO_AES_256_GCM,
                hdr_version: HEADER_VERSION,
                hdr_size: U16::new(MSG_HEADER_SIZE as u16),
                msg_type,
                msg_version,
                msg_size: U16::new(msg_size),
                reserved_38: [0; 4],
                msg_vmpck: vmpck,
                reserved_3d: [0; 35],
            },
        }
    }

    /// The AES-GCM additional authenticated data: header bytes 0x30..0x60.
    pub fn aad(&self) -> &[u8] {
        self.auth.as_bytes()
    }

    /// The AES-GCM IV: MSG_SEQNO little-endian in bytes 0..8, then four zero bytes.
    pub fn iv(&self) -> [u8; 12] {
        let mut iv = [0u8; 12];
        for (dst, src) in iv.iter_mut().zip(self.msg_seqno.get().to_le_bytes()) {
            *dst = src;
        }
        iv
    }

    /// The 16-byte GCM tag.
    pub fn tag(&self) -> [u8; AUTHTAG_LEN] {
        let mut tag = [0u8; AUTHTAG_LEN];
        for (dst, src) in tag.iter_mut().zip(self.authtag.iter()) {
            *dst = *src;
        }
        tag
    }

    /// Stores a GCM tag (bytes 16..32 of AUTHTAG become zero).
    pub fn set_tag(&mut self, tag: &[u8; AUTHTAG_LEN]) {
        self.authtag = [0; 32];
        for (dst, src) in self.authtag.iter_mut().zip(tag.iter()) {
            *dst = *src;
        }
    }

    /// MSG_SIZE as a byte count.
    pub fn payload_len(&self) -> usize {
        usize::from(self.auth.msg_size.get())
    }

    /// The checks every header passes (request or response): ALGO, HDR_VERSION, HDR_SIZE,
    /// MSG_SIZE within the page, MSG_VMPCK in 0..=3.
    pub fn check_format(&self) -> Result<(), EnvelopeError> {
        let a = &self.auth;
        if a.algo != ALGO_AES_256_GCM {
            return Err(EnvelopeError::Algorithm(a.algo));
        }
        if a.hdr_version != HEADER_VERSION {
            return Err(EnvelopeError::HeaderVersion(a.hdr_version));
        }
        if usize::from(a.hdr_size.get()) != MSG_HEADER_SIZE {
            return Err(EnvelopeError::HeaderSize(a.hdr_size.get()));
        }
        if usize::from(a.msg_size.get()) > MAX_MSG_PAYLOAD {
            return Err(EnvelopeError::PayloadTooLarge(a.msg_size.get()));
        }
        if a.msg_vmpck > 3 {
            return Err(EnvelopeError::VmpckRange(a.msg_vmpck));
        }
        Ok(())
    }

    /// The checks a response header passes before its payload is decrypted: the format, then
    /// every field against the request it answers. Order: format, MSG_VMPCK, MSG_SEQNO,
    /// MSG_TYPE, MSG_VERSION, MSG_SIZE.
    pub fn check_response(&self, expected: &ExpectedResponse) -> Result<(), EnvelopeError> {
        self.check_format()?;
        let a = &self.auth;
        if a.msg_vmpck != expected.vmpck {
            return Err(EnvelopeError::Vmpck {
                actual: a.msg_vmpck,
                expected: expected.vmpck,
            });
        }
        if self.msg_seqno.get() != expected.seqno {
            return Err(EnvelopeError::Sequence {
                actual: self.msg_seqno.get(),
                expected: expected.seqno,
            });
        }
        if a.msg_type != expected.msg_type {
            return Err(EnvelopeError::MessageType {
                actual: a.msg_type,
                expected: expected.msg_type,
            });
        }
        if a.msg_version != expected.msg_version {
            return Err(EnvelopeError::MessageVersion {
                actual: a.msg_version,
                expected: expected.msg_version,
            });
        }
        if a.msg_size.get() != expected.msg_size {
            return Err(EnvelopeError::PayloadSize {
                actual: a.msg_size.get(),
                expected: expected.msg_size,
            });
        }
        Ok(())
    }
}

impl GuestMessage {
    /// Reads a page (4096 bytes) as a message; the header is not checked.
    pub fn from_page(bytes: &[u8]) -> Result<&Self, EnvelopeError> {
        Self::ref_from_bytes(bytes).map_err(|_| EnvelopeError::Length {
            actual: bytes.len(),
        })
    }

    /// The MSG_SIZE bytes of payload, or an error when MSG_SIZE exceeds the page.
    pub fn payload(&self) -> Result<&[u8], EnvelopeError> {
        let size = self.header.auth.msg_size.get();
        self.payload
            .get(..usize::from(size))
            .ok_or(EnvelopeError::PayloadTooLarge(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> ExpectedResponse {
        ExpectedResponse {
            seqno: 2,
            msg_type: 6,
            msg_version: 1,
            vmpck: 0,
            msg_size: 0x4C0,
        }
    }

    #[test]
    fn aad_and_iv_match_the_known_answer_inputs() {
        // AMD 56860 message header as AAD: seqno 1, type 5, version 1, size 0x60, VMPCK 0.
        let h = MessageHeader::new(1, 5, 1, 0x60, 0);
        let mut aad = [0u8; 48];
        aad[..8].copy_from_slice(&[0x01, 0x01, 0x60, 0x00, 0x05, 0x01, 0x60, 0x00]);
        assert_eq!(h.aad(), &aad);
        let mut iv = [0u8; 12];
        iv[0] = 1;
        assert_eq!(h.iv(), iv);
        let mut h = h;
        h.set_tag(&[0xAB; 16]);
        assert_eq!(&h.as_bytes()[..16], &[0xAB; 16]);
        assert_eq!(&h.as_bytes()[16..32], &[0; 16]);
        assert_eq!(h.tag(), [0xAB; 16]);
    }

    #[test]
    fn response_checks_name_the_field() {
        type Case = (fn(&mut MessageHeader), EnvelopeError);
        let good = MessageHeader::new(2, 6, 1, 0x4C0, 0);
        assert_eq!(good.check_response(&expected()), Ok(()));
        let cases: [Case; 9] = [
            (|h| h.auth.algo = 0, EnvelopeError::Algorithm(0)),
            (|h| h.auth.hdr_version = 2, EnvelopeError::HeaderVersion(2)),
            (
                |h| h.auth.hdr_size = U16::new(0x50),
                EnvelopeError::HeaderSize(0x50),
            ),
            (
                |h| h.auth.msg_size = U16::new(4001),
                EnvelopeError::PayloadTooLarge(4001),
            ),
            (
                |h| h.auth.msg_vmpck = 1,
                EnvelopeError::Vmpck {
                    actual: 1,
                    expected: 0,
                },
            ),
            (
                |h| h.msg_seqno = U64::new(4),
                EnvelopeError::Sequence {
                    actual: 4,
                    expected: 2,
                },
            ),
            (
                |h| h.auth.msg_type = 4,
                EnvelopeError::MessageType {
                    actual: 4,
                    expected: 6,
                },
            ),
            (
                |h| h.auth.msg_version = 2,
                EnvelopeError::MessageVersion {
                    actual: 2,
                    expected: 1,
                },
            ),
            (
                |h| h.auth.msg_size = U16::new(0x20),
                EnvelopeError::PayloadSize {
                    actual: 0x20,
                    expected: 0x4C0,
                },
            ),
        ];
        for (mutate, err) in cases {
            let mut h = good;
            mutate(&mut h);
            assert_eq!(h.check_response(&expected()), Err(err));
        }
        // Reserved bytes are not checked in responses.
        let mut h = good;
        h.reserved_28 = [0xFF; 8];
        h.auth.reserved_3d = [0xFF; 35];
        h.authtag[20] = 1;
        assert_eq!(h.check_response(&expected()), Ok(()));
    }

    #[test]
    fn page_view_and_payload_bounds() {
        let mut page = [0u8; MSG_PAGE_SIZE];
        assert!(GuestMessage::from_page(&page[..4095]).is_err());
        page[0x36..0x38].copy_from_slice(&4000u16.to_le_bytes());
        assert_eq!(
            GuestMessage::from_page(&page)
                .unwrap()
                .payload()
                .unwrap()
                .len(),
            4000
        );
        page[0x36..0x38].copy_from_slice(&4001u16.to_le_bytes());
        assert_eq!(
            GuestMessage::from_page(&page).unwrap().payload(),
            Err(EnvelopeError::PayloadTooLarge(4001))
        );
    }
}
