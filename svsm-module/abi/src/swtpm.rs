//! The control channel of a TPM emulator as QEMU's `-tpmdev emulator` backend speaks it (swtpm's
//! control-channel protocol: `swtpm_ioctls(3)`, `tpm_ioctl.h`; QEMU `backends/tpm/tpm_emulator.c`).
//! QEMU is the client of a UNIX socket and sends one command at a time: a big-endian u32 code,
//! then that command's fixed-size payload; every answer has a fixed size too. The TPM commands
//! themselves travel on a separate data channel whose file descriptor QEMU passes with
//! SET_DATAFD (SCM_RIGHTS): raw TPM command and response bytes, no framing.
//!
//! The bytes come from QEMU, which the host controls: untrusted. [`CtrlCommand::parse`] turns a
//! code and its payload into a typed command or a typed error; [`payload_len`] says how many bytes
//! to read for a code, so a reader never waits for a length the peer chose.

/// Command codes.
pub mod code {
    /// Which commands the emulator supports (answer: u64 capability bits, no result).
    pub const GET_CAPABILITY: u32 = 0x01;
    /// Power on / reset the TPM (payload: u32 flags).
    pub const INIT: u32 = 0x02;
    /// Shut down: persist the state (QEMU sends it when it exits).
    pub const SHUTDOWN: u32 = 0x03;
    /// Read the TPM-established bit.
    pub const GET_TPMESTABLISHED: u32 = 0x04;
    /// Set the locality of the following TPM commands (payload: u8 locality + 3 pad).
    pub const SET_LOCALITY: u32 = 0x05;
    /// Hash start (TPM 1.2 dynamic root); not supported.
    pub const HASH_START: u32 = 0x06;
    /// Hash data; not supported.
    pub const HASH_DATA: u32 = 0x07;
    /// Hash end; not supported.
    pub const HASH_END: u32 = 0x08;
    /// Cancel the running TPM command; not supported.
    pub const CANCEL_TPM_CMD: u32 = 0x09;
    /// Store volatile state; not supported.
    pub const STORE_VOLATILE: u32 = 0x0a;
    /// Reset the TPM-established bit (payload: u8 locality + 3 pad).
    pub const RESET_TPMESTABLISHED: u32 = 0x0b;
    /// Read a state blob (migration); not supported.
    pub const GET_STATEBLOB: u32 = 0x0c;
    /// Write a state blob (migration); not supported.
    pub const SET_STATEBLOB: u32 = 0x0d;
    /// Stop the TPM (before SET_BUFFERSIZE or a reset).
    pub const STOP: u32 = 0x0e;
    /// Configuration flags; not supported.
    pub const GET_CONFIG: u32 = 0x0f;
    /// Take the data channel's file descriptor (it arrives by SCM_RIGHTS; no payload).
    pub const SET_DATAFD: u32 = 0x10;
    /// Query or set the TPM's I/O buffer size (payload: u32 size, 0 = query).
    pub const SET_BUFFERSIZE: u32 = 0x11;
}

/// Capability bits of GET_CAPABILITY (`PTM_CAP_*`).
pub mod cap {
    /// INIT.
    pub const INIT: u64 = 1 << 0;
    /// SHUTDOWN.
    pub const SHUTDOWN: u64 = 1 << 1;
    /// GET_TPMESTABLISHED.
    pub const GET_TPMESTABLISHED: u64 = 1 << 2;
    /// SET_LOCALITY.
    pub const SET_LOCALITY: u64 = 1 << 3;
    /// RESET_TPMESTABLISHED.
    pub const RESET_TPMESTABLISHED: u64 = 1 << 7;
    /// STOP.
    pub const STOP: u64 = 1 << 10;
    /// SET_DATAFD.
    pub const SET_DATAFD: u64 = 1 << 12;
    /// SET_BUFFERSIZE.
    pub const SET_BUFFERSIZE: u64 = 1 << 13;
    /// What QEMU requires of a TPM 2.0 emulator (it refuses one that lacks any of them).
    pub const QEMU_TPM2_REQUIRED: u64 = INIT
        | SHUTDOWN
        | GET_TPMESTABLISHED
        | SET_LOCALITY
        | RESET_TPMESTABLISHED
        | STOP
        | SET_DATAFD
        | SET_BUFFERSIZE;
}

/// INIT flag: delete the volatile state.
pub const INIT_FLAG_DELETE_VOLATILE: u32 = 1;
/// Result code: success.
pub const RESULT_SUCCESS: u32 = 0;
/// Result code: generic failure (TPM 1.2 `TPM_FAIL`, which swtpm answers with).
pub const RESULT_FAIL: u32 = 0x09;
/// Result code: bad parameter (TPM 1.2 `TPM_BAD_PARAMETER`).
pub const RESULT_BAD_PARAMETER: u32 = 0x03;
/// Result code: the command is not supported (TPM 1.2 `TPM_BAD_ORDINAL`).
pub const RESULT_BAD_ORDINAL: u32 = 0x0a;

/// One control command, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlCommand {
    /// GET_CAPABILITY.
    GetCapability,
    /// INIT with its flags.
    Init {
        /// [`INIT_FLAG_DELETE_VOLATILE`] or 0.
        flags: u32,
    },
    /// SHUTDOWN.
    Shutdown,
    /// GET_TPMESTABLISHED.
    GetTpmEstablished,
    /// SET_LOCALITY.
    SetLocality {
        /// 0..=4.
        locality: u8,
    },
    /// RESET_TPMESTABLISHED.
    ResetTpmEstablished {
        /// The locality asking (TPM 2.0 allows 3 and 4).
        locality: u8,
    },
    /// STOP.
    Stop,
    /// SET_DATAFD (the descriptor travels as ancillary data).
    SetDataFd,
    /// SET_BUFFERSIZE.
    SetBufferSize {
        /// The size asked for; 0 queries.
        size: u32,
    },
}

/// Why a control message is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    /// A command this emulator does not implement (and does not advertise).
    #[error("control command {0:#x} is not supported")]
    Unsupported(u32),
    /// The payload is not the command's fixed size.
    #[error("control command {code:#x} takes {expected} payload bytes, got {actual}")]
    PayloadLength {
        /// The command.
        code: u32,
        /// Its payload size.
        expected: usize,
        /// What was given.
        actual: usize,
    },
    /// A locality above 4.
    #[error("locality {0} does not exist (0..=4)")]
    Locality(u8),
    /// Padding or unknown flag bits are not zero.
    #[error("control command {0:#x} has non-zero reserved bits")]
    Reserved(u32),
}

/// The payload size that follows `code`, for every supported command; `None` for the others
/// (the reader cannot know their length and must close the channel after refusing).
pub const fn payload_len(code: u32) -> Option<usize> {
    Some(match code {
        code::GET_CAPABILITY
        | code::SHUTDOWN
        | code::GET_TPMESTABLISHED
        | code::STOP
        | code::SET_DATAFD => 0,
        code::INIT | code::SET_LOCALITY | code::RESET_TPMESTABLISHED | code::SET_BUFFERSIZE => 4,
        _ => return None,
    })
}

/// The capabilities of an emulator that implements exactly [`CtrlCommand`].
pub const SUPPORTED_CAPABILITIES: u64 = cap::QEMU_TPM2_REQUIRED;

fn u32_be(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_be_bytes(a)
}

fn locality(code: u32, payload: &[u8]) -> Result<u8, CtrlError> {
    let (loc, pad) = payload.split_first().ok_or(CtrlError::PayloadLength {
        code,
        expected: 4,
        actual: 0,
    })?;
    if pad.iter().any(|&b| b != 0) {
        return Err(CtrlError::Reserved(code));
    }
    if *loc > 4 {
        return Err(CtrlError::Locality(*loc));
    }
    Ok(*loc)
}

impl CtrlCommand {
    /// Decodes `code` and its `payload` (exactly [`payload_len`] bytes).
    pub fn parse(code: u32, payload: &[u8]) -> Result<Self, CtrlError> {
        let expected = payload_len(code).ok_or(CtrlError::Unsupported(code))?;
        if payload.len() != expected {
            return Err(CtrlError::PayloadLength {
                code,
                expected,
                actual: payload.len(),
            });
        }
        Ok(match code {
            code::GET_CAPABILITY => CtrlCommand::GetCapability,
            code::INIT => {
                let flags = u32_be(payload);
                if flags & !INIT_FLAG_DELETE_VOLATILE != 0 {
                    return Err(CtrlError::Reserved(code));
                }
                CtrlCommand::Init { flags }
            }
            code::SHUTDOWN => CtrlCommand::Shutdown,
            code::GET_TPMESTABLISHED => CtrlCommand::GetTpmEstablished,
            code::SET_LOCALITY => CtrlCommand::SetLocality {
                locality: locality(code, payload)?,
            },
            code::RESET_TPMESTABLISHED => CtrlCommand::ResetTpmEstablished {
                locality: locality(code, payload)?,
            },
            code::STOP => CtrlCommand::Stop,
            code::SET_DATAFD => CtrlCommand::SetDataFd,
            code::SET_BUFFERSIZE => CtrlCommand::SetBufferSize {
                size: u32_be(payload),
            },
            other => return Err(CtrlError::Unsupported(other)),
        })
    }
}

/// Answer of GET_TPMESTABLISHED: result, the bit, three pad bytes.
pub fn tpm_established_response(result: u32, bit: bool) -> [u8; 8] {
    let [a, b, c, d] = result.to_be_bytes();
    [a, b, c, d, u8::from(bit), 0, 0, 0]
}

/// Answer of SET_BUFFERSIZE: result, the size in effect, the minimum and the maximum.
pub fn buffer_size_response(result: u32, size: u32, min: u32, max: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    for (chunk, v) in r.chunks_exact_mut(4).zip([result, size, min, max]) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_command_parses_and_every_other_is_refused() {
        assert_eq!(
            CtrlCommand::parse(code::INIT, &1u32.to_be_bytes()),
            Ok(CtrlCommand::Init { flags: 1 })
        );
        assert_eq!(
            CtrlCommand::parse(code::SET_LOCALITY, &[3, 0, 0, 0]),
            Ok(CtrlCommand::SetLocality { locality: 3 })
        );
        assert_eq!(
            CtrlCommand::parse(code::SET_BUFFERSIZE, &0xF80u32.to_be_bytes()),
            Ok(CtrlCommand::SetBufferSize { size: 0xF80 })
        );
        for c in [
            code::GET_CAPABILITY,
            code::SHUTDOWN,
            code::GET_TPMESTABLISHED,
            code::STOP,
            code::SET_DATAFD,
        ] {
            assert!(CtrlCommand::parse(c, &[]).is_ok(), "{c:#x}");
            assert!(CtrlCommand::parse(c, &[0]).is_err(), "{c:#x}");
        }
        for c in [0, 6, 7, 8, 9, 0x0a, 0x0c, 0x0d, 0x0f, 0x12, u32::MAX] {
            assert_eq!(payload_len(c), None);
            assert_eq!(CtrlCommand::parse(c, &[]), Err(CtrlError::Unsupported(c)));
        }
    }

    #[test]
    fn hostile_payloads_are_typed_errors() {
        assert_eq!(
            CtrlCommand::parse(code::SET_LOCALITY, &[5, 0, 0, 0]),
            Err(CtrlError::Locality(5))
        );
        assert_eq!(
            CtrlCommand::parse(code::SET_LOCALITY, &[0, 1, 0, 0]),
            Err(CtrlError::Reserved(code::SET_LOCALITY))
        );
        assert_eq!(
            CtrlCommand::parse(code::INIT, &2u32.to_be_bytes()),
            Err(CtrlError::Reserved(code::INIT))
        );
        assert_eq!(
            CtrlCommand::parse(code::INIT, &[0, 0]),
            Err(CtrlError::PayloadLength {
                code: code::INIT,
                expected: 4,
                actual: 2
            })
        );
    }

    #[test]
    fn the_advertised_set_is_what_qemu_requires_and_what_parses() {
        assert_eq!(cap::QEMU_TPM2_REQUIRED, 0x348F);
        for (bit, c) in [
            (cap::INIT, code::INIT),
            (cap::SHUTDOWN, code::SHUTDOWN),
            (cap::GET_TPMESTABLISHED, code::GET_TPMESTABLISHED),
            (cap::SET_LOCALITY, code::SET_LOCALITY),
            (cap::RESET_TPMESTABLISHED, code::RESET_TPMESTABLISHED),
            (cap::STOP, code::STOP),
            (cap::SET_DATAFD, code::SET_DATAFD),
            (cap::SET_BUFFERSIZE, code::SET_BUFFERSIZE),
        ] {
            assert_ne!(SUPPORTED_CAPABILITIES & bit, 0);
            assert!(payload_len(c).is_some(), "{c:#x} advertised but not parsed");
        }
    }

    #[test]
    fn responses_are_big_endian_and_fixed_size() {
        assert_eq!(tpm_established_response(0, true), [0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            buffer_size_response(0, 0xF80, 128, 4096)[4..8],
            0xF80u32.to_be_bytes()
        );
    }
}
