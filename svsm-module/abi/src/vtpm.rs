//! The SVSM vTPM protocol buffers (SVSM spec §8 Tables 15–17), which follow the TCG TPM
//! simulator ("mssim") platform-command envelope (TCG `TpmTcpProtocol.h`).
//!
//! A request is `u32 platform command`, then for TPM_SEND_COMMAND `u8 locality` and a packed
//! `u32 command size` at offset 5, with the TPM command bytes from offset 9. The response is a
//! `u32 response size` at offset 0 followed by the TPM response. All integers little-endian.
//! The whole exchange lives in one 4 KiB buffer (Linux `SVSM_VTPM_MAX_BUFFER`).

use crate::assert_layout;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the shared request/response buffer.
pub const VTPM_BUFFER_SIZE: usize = 4096;
/// Largest TPM command that fits: 4096 - 9.
pub const MAX_TPM_COMMAND: usize = VTPM_BUFFER_SIZE - SEND_COMMAND_HEADER_LEN;
/// Largest TPM response that fits: 4096 - 4.
pub const MAX_TPM_RESPONSE: usize = VTPM_BUFFER_SIZE - RESPONSE_HEADER_LEN;
/// SVSM_VTPM_QUERY RCX bit for TPM_SEND_COMMAND; Linux binds `tpm_svsm` only if it is set.
pub const QUERY_SEND_COMMAND_BIT: u64 = 1 << PlatformCommand::SendCommand as u32;

/// MSSIM platform commands (TCG `TpmTcpProtocol.h`); the vTPM protocol reuses the numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum PlatformCommand {
    /// TPM_SIGNAL_POWER_ON
    PowerOn = 1,
    /// TPM_SIGNAL_POWER_OFF
    PowerOff = 2,
    /// TPM_SIGNAL_PHYS_PRES_ON
    PhysPresOn = 3,
    /// TPM_SIGNAL_PHYS_PRES_OFF
    PhysPresOff = 4,
    /// TPM_SIGNAL_HASH_START
    HashStart = 5,
    /// TPM_SIGNAL_HASH_DATA
    HashData = 6,
    /// TPM_SIGNAL_HASH_END
    HashEnd = 7,
    /// TPM_SEND_COMMAND: the only command of the SVSM vTPM protocol in use.
    SendCommand = 8,
    /// TPM_SIGNAL_CANCEL_ON
    CancelOn = 9,
    /// TPM_SIGNAL_CANCEL_OFF
    CancelOff = 10,
    /// TPM_SIGNAL_NV_ON
    NvOn = 11,
    /// TPM_SIGNAL_NV_OFF
    NvOff = 12,
    /// TPM_SIGNAL_KEY_CACHE_ON
    KeyCacheOn = 13,
    /// TPM_SIGNAL_KEY_CACHE_OFF
    KeyCacheOff = 14,
    /// TPM_REMOTE_HANDSHAKE
    RemoteHandshake = 15,
    /// TPM_SET_ALTERNATIVE_RESULT
    SetAlternativeResult = 16,
    /// TPM_SIGNAL_RESET
    Reset = 17,
    /// TPM_SIGNAL_RESTART
    Restart = 18,
    /// TPM_SESSION_END
    SessionEnd = 20,
    /// TPM_STOP
    Stop = 21,
    /// TPM_GET_COMMAND_RESPONSE_SIZES
    GetCommandResponseSizes = 25,
    /// TPM_ACT_GET_SIGNALED
    ActGetSignaled = 26,
    /// TPM_TEST_FAILURE_MODE
    TestFailureMode = 30,
}

impl PlatformCommand {
    /// Decodes a platform command number.
    pub const fn from_u32(v: u32) -> Option<Self> {
        use PlatformCommand::*;
        Some(match v {
            1 => PowerOn,
            2 => PowerOff,
            3 => PhysPresOn,
            4 => PhysPresOff,
            5 => HashStart,
            6 => HashData,
            7 => HashEnd,
            8 => SendCommand,
            9 => CancelOn,
            10 => CancelOff,
            11 => NvOn,
            12 => NvOff,
            13 => KeyCacheOn,
            14 => KeyCacheOff,
            15 => RemoteHandshake,
            16 => SetAlternativeResult,
            17 => Reset,
            18 => Restart,
            20 => SessionEnd,
            21 => Stop,
            25 => GetCommandResponseSizes,
            26 => ActGetSignaled,
            30 => TestFailureMode,
            _ => return None,
        })
    }
}

/// TPM_SEND_COMMAND request header (SVSM spec §8 Table 16): packed, 9 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SendCommandHeader {
    /// Platform command, 8.
    pub command: U32,
    /// Locality; the protocol requires 0.
    pub locality: u8,
    /// TPM command size in bytes (unaligned, offset 5).
    pub size: U32,
}
assert_layout!(
    SendCommandHeader,
    size = 9,
    command = 0,
    locality = 4,
    size = 5
);
/// Length of [`SendCommandHeader`].
pub const SEND_COMMAND_HEADER_LEN: usize = 9;

/// TPM_SEND_COMMAND response header (SVSM spec §8 Table 17): 4 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ResponseHeader {
    /// TPM response size in bytes.
    pub size: U32,
}
assert_layout!(ResponseHeader, size = 4, size = 0);
/// Length of [`ResponseHeader`].
pub const RESPONSE_HEADER_LEN: usize = 4;

/// Why a vTPM buffer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VtpmBufferError {
    /// Shorter than the header.
    #[error("vTPM buffer of {0} bytes is shorter than its header")]
    Truncated(usize),
    /// Longer than the 4 KiB protocol buffer.
    #[error("vTPM buffer of {0} bytes exceeds the 4096-byte protocol buffer")]
    Oversized(usize),
    /// The platform command number is not an MSSIM command.
    #[error("unknown vTPM platform command {0}")]
    UnknownCommand(u32),
    /// A known platform command that the SVSM vTPM protocol does not carry.
    #[error("vTPM platform command {0:?} is not served over the SVSM protocol")]
    UnsupportedCommand(PlatformCommand),
    /// Locality other than 0 (SVSM spec §8 Table 16).
    #[error("vTPM locality {0} is not 0")]
    Locality(u8),
    /// The size field is larger than the protocol allows.
    #[error("TPM command/response size {size} exceeds the protocol maximum {max}")]
    SizeTooLarge {
        /// Declared size.
        size: u32,
        /// Protocol maximum.
        max: usize,
    },
    /// The size field points past the end of the buffer.
    #[error("TPM command/response size {size} exceeds the {available} bytes present")]
    SizePastEnd {
        /// Declared size.
        size: u32,
        /// Bytes present after the header.
        available: usize,
    },
}

/// A validated TPM_SEND_COMMAND request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendCommand<'a> {
    /// Locality (always 0 once parsed).
    pub locality: u8,
    /// The TPM command bytes, exactly `size` of them.
    pub tpm_command: &'a [u8],
}

/// Validates a TPM_SEND_COMMAND header (the first 9 bytes of the buffer) and returns the TPM
/// command length it declares. Lets a copy-in path fetch the header, then exactly the command.
pub fn parse_send_command_header(header: &[u8]) -> Result<usize, VtpmBufferError> {
    let raw_command = header
        .get(..4)
        .and_then(|b| U32::read_from_bytes(b).ok())
        .ok_or(VtpmBufferError::Truncated(header.len()))?
        .get();
    let command = PlatformCommand::from_u32(raw_command)
        .ok_or(VtpmBufferError::UnknownCommand(raw_command))?;
    if command != PlatformCommand::SendCommand {
        return Err(VtpmBufferError::UnsupportedCommand(command));
    }
    let (header, _) = SendCommandHeader::ref_from_prefix(header)
        .map_err(|_| VtpmBufferError::Truncated(header.len()))?;
    if header.locality != 0 {
        return Err(VtpmBufferError::Locality(header.locality));
    }
    let size = header.size.get();
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    if len > MAX_TPM_COMMAND {
        return Err(VtpmBufferError::SizeTooLarge {
            size,
            max: MAX_TPM_COMMAND,
        });
    }
    Ok(len)
}

impl<'a> SendCommand<'a> {
    /// Parses a request buffer (normally the 4096 bytes copied in from the guest). Bytes after
    /// the declared command are ignored, as the TCG simulator ignores them.
    pub fn parse(buf: &'a [u8]) -> Result<Self, VtpmBufferError> {
        if buf.len() > VTPM_BUFFER_SIZE {
            return Err(VtpmBufferError::Oversized(buf.len()));
        }
        let len = parse_send_command_header(buf)?;
        let body = buf.get(SEND_COMMAND_HEADER_LEN..).unwrap_or(&[]);
        let size = len as u32;
        let tpm_command = body.get(..len).ok_or(VtpmBufferError::SizePastEnd {
            size,
            available: body.len(),
        })?;
        Ok(SendCommand {
            locality: 0,
            tpm_command,
        })
    }

    /// Writes a TPM_SEND_COMMAND request into `out`; returns the bytes used.
    pub fn encode(
        locality: u8,
        tpm_command: &[u8],
        out: &mut [u8],
    ) -> Result<usize, VtpmBufferError> {
        if tpm_command.len() > MAX_TPM_COMMAND {
            return Err(VtpmBufferError::SizeTooLarge {
                size: u32::try_from(tpm_command.len()).unwrap_or(u32::MAX),
                max: MAX_TPM_COMMAND,
            });
        }
        let total = SEND_COMMAND_HEADER_LEN + tpm_command.len();
        let out_len = out.len();
        let out = out
            .get_mut(..total)
            .ok_or(VtpmBufferError::Truncated(out_len))?;
        let header = SendCommandHeader {
            command: U32::new(PlatformCommand::SendCommand as u32),
            locality,
            size: U32::new(tpm_command.len() as u32),
        };
        let (head, body) = out.split_at_mut(SEND_COMMAND_HEADER_LEN);
        head.copy_from_slice(header.as_bytes());
        body.copy_from_slice(tpm_command);
        Ok(total)
    }
}

/// Writes a TPM_SEND_COMMAND response (size + bytes) into `out`; returns the bytes used.
pub fn encode_response(tpm_response: &[u8], out: &mut [u8]) -> Result<usize, VtpmBufferError> {
    if tpm_response.len() > MAX_TPM_RESPONSE {
        return Err(VtpmBufferError::SizeTooLarge {
            size: u32::try_from(tpm_response.len()).unwrap_or(u32::MAX),
            max: MAX_TPM_RESPONSE,
        });
    }
    let total = RESPONSE_HEADER_LEN + tpm_response.len();
    let out_len = out.len();
    let out = out
        .get_mut(..total)
        .ok_or(VtpmBufferError::Truncated(out_len))?;
    let (head, body) = out.split_at_mut(RESPONSE_HEADER_LEN);
    head.copy_from_slice(&(tpm_response.len() as u32).to_le_bytes());
    body.copy_from_slice(tpm_response);
    Ok(total)
}

/// Reads the TPM response out of a response buffer.
pub fn parse_response(buf: &[u8]) -> Result<&[u8], VtpmBufferError> {
    if buf.len() > VTPM_BUFFER_SIZE {
        return Err(VtpmBufferError::Oversized(buf.len()));
    }
    let (header, body) =
        ResponseHeader::ref_from_prefix(buf).map_err(|_| VtpmBufferError::Truncated(buf.len()))?;
    let size = header.size.get();
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    if len > MAX_TPM_RESPONSE {
        return Err(VtpmBufferError::SizeTooLarge {
            size,
            max: MAX_TPM_RESPONSE,
        });
    }
    body.get(..len).ok_or(VtpmBufferError::SizePastEnd {
        size,
        available: body.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // TPM2_Startup(SU_CLEAR): tag 0x8001, size 12, CC 0x144, 0x0000.
    const STARTUP: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];

    #[test]
    fn request_layout_matches_linux() {
        let mut buf = [0u8; VTPM_BUFFER_SIZE];
        let n = SendCommand::encode(0, &STARTUP, &mut buf).unwrap();
        assert_eq!(n, 21);
        assert_eq!(&buf[..9], &[8, 0, 0, 0, 0, 12, 0, 0, 0]);
        assert_eq!(&buf[9..21], &STARTUP);
        let parsed = SendCommand::parse(&buf).unwrap();
        assert_eq!(parsed.tpm_command, &STARTUP);
        assert_eq!(QUERY_SEND_COMMAND_BIT, 0x100);
    }

    #[test]
    fn every_short_prefix_is_rejected() {
        let mut buf = [0u8; 21];
        SendCommand::encode(0, &STARTUP, &mut buf).unwrap();
        for len in 0..buf.len() {
            assert!(SendCommand::parse(&buf[..len]).is_err(), "len {len}");
        }
        assert!(SendCommand::parse(&buf).is_ok());
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let mut buf = [0u8; VTPM_BUFFER_SIZE];
        SendCommand::encode(0, &STARTUP, &mut buf).unwrap();
        let mut b = buf;
        b[4] = 1;
        assert_eq!(SendCommand::parse(&b), Err(VtpmBufferError::Locality(1)));
        let mut b = buf;
        b[5..9].copy_from_slice(&4088u32.to_le_bytes());
        assert!(matches!(
            SendCommand::parse(&b),
            Err(VtpmBufferError::SizeTooLarge { .. })
        ));
        let mut b = buf;
        b[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            SendCommand::parse(&b),
            Err(VtpmBufferError::SizeTooLarge { .. })
        ));
        let mut b = buf;
        b[0] = 1;
        assert_eq!(
            SendCommand::parse(&b),
            Err(VtpmBufferError::UnsupportedCommand(
                PlatformCommand::PowerOn
            ))
        );
        let mut b = buf;
        b[0] = 19;
        assert_eq!(
            SendCommand::parse(&b),
            Err(VtpmBufferError::UnknownCommand(19))
        );
        let big = [0u8; VTPM_BUFFER_SIZE + 1];
        assert_eq!(
            SendCommand::parse(&big),
            Err(VtpmBufferError::Oversized(4097))
        );
        // A maximal command fits exactly.
        let max_cmd = [0u8; MAX_TPM_COMMAND];
        let mut out = [0u8; VTPM_BUFFER_SIZE];
        assert_eq!(
            SendCommand::encode(0, &max_cmd, &mut out),
            Ok(VTPM_BUFFER_SIZE)
        );
        assert_eq!(
            SendCommand::parse(&out).unwrap().tpm_command.len(),
            MAX_TPM_COMMAND
        );
        let too_big = [0u8; MAX_TPM_COMMAND + 1];
        assert!(SendCommand::encode(0, &too_big, &mut out).is_err());
    }

    #[test]
    fn response_round_trip_and_bounds() {
        let mut buf = [0u8; VTPM_BUFFER_SIZE];
        let rsp = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];
        assert_eq!(encode_response(&rsp, &mut buf), Ok(14));
        assert_eq!(parse_response(&buf), Ok(&rsp[..]));
        for len in 0..14 {
            assert!(parse_response(&buf[..len]).is_err());
        }
        buf[..4].copy_from_slice(&4093u32.to_le_bytes());
        assert!(matches!(
            parse_response(&buf),
            Err(VtpmBufferError::SizeTooLarge { .. })
        ));
        let max = [0u8; MAX_TPM_RESPONSE];
        assert_eq!(encode_response(&max, &mut buf), Ok(VTPM_BUFFER_SIZE));
        assert_eq!(parse_response(&buf).unwrap().len(), MAX_TPM_RESPONSE);
    }
}
