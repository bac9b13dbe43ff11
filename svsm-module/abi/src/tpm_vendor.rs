//! The vault over a TPM vendor command: how a guest process reaches the vault through the
//! unmodified Linux TPM stack (`/dev/tpmrm0` → `tpm_svsm` → the SVSM vTPM protocol), the route
//! that needs no new kernel driver.
//!
//! Facts this rests on (TCG TPM 2.0 Library Part 2): a command code with bit 29 set is
//! vendor-specific (§6.5.2 TPM_CC, `V`); TPMA_CC (§8.9) holds commandIndex in bits 15:0, `nv`
//! 22, `extensive` 23, `flushed` 24, `cHandles` 27:25, `rHandles` 28 and `V` 29. Linux's resource
//! manager (`drivers/char/tpm/tpm2-space.c`) passes a command to the TPM only if the table it
//! read at boot with TPM2_GetCapability(TPM_CAP_COMMANDS) lists it (matched on `V` and
//! commandIndex), sizing that table by TPM_PT_TOTAL_COMMANDS. So the vTPM lists
//! [`TPMA_CC_SVSM_VAULT`] in TPM_CAP_COMMANDS and counts it in TPM_PT_TOTAL_COMMANDS and
//! TPM_PT_VENDOR_COMMANDS ([`amend_capability`]); every other command reaches the engine and
//! comes back unchanged.
//!
//! **Command**: the TPM header (big-endian, like every TPM structure: tag
//! [`TPM_ST_NO_SESSIONS`], commandSize, commandCode [`TPM_CC_SVSM_VAULT`]), then one vault
//! message exactly as the vault protocol's REQUEST carries it ([`crate::vault`], little-endian).
//!
//! **Response**: the TPM header (tag [`TPM_ST_NO_SESSIONS`], responseSize, responseCode). The
//! responseCode is TPM_RC_SUCCESS whenever the vault was asked; the vault's answer follows as a
//! [`VendorVaultReply`] (the registers the SVSM call would have returned: RAX, RCX, RDX) and,
//! when RAX is 0 or `NotPersisted`, the RCX response bytes. A command that cannot be a vault
//! request gets a TPM error code and nothing else: [`TPM_RC_BAD_TAG`] (a tag other than
//! NO_SESSIONS), [`TPM_RC_COMMAND_SIZE`] (commandSize is not the bytes sent),
//! [`TPM_RC_COMMAND_CODE`] (a vendor code that is not ours).
//!
//! **Parts.** A TPM command carries at most 4 KiB (the vTPM protocol's buffer, Linux's
//! TPM_BUFSIZE), a vault message up to 65 KiB. [`TPM_CC_SVSM_VAULT_PART`] carries one message in
//! parts: its body is a [`PartHeader`] (little-endian: transfer id, action, offset) and data.
//! WRITE appends data to the transfer's staged request (offset = the bytes staged so far; offset
//! 0 starts the transfer anew); RUN appends its data and runs the staged request as one vault
//! message, answering like [`TPM_CC_SVSM_VAULT`] with the response's first bytes (RCX is the
//! whole response's length); READ answers the response's bytes from offset. A response read to
//! its end is wiped and the transfer forgotten. Transfers belong to the VMPL that sent them; a
//! few are kept at once (the oldest goes). A part the vTPM cannot take (unknown transfer, an
//! offset out of order, a message over the vault's maximum, a malformed header) is answered with
//! RAX = SVSM_ERR_INVALID_PARAMETER and no bytes.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// TPM_ST_NO_SESSIONS (Part 2 §6.9).
pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
/// TPM_CC_GetCapability (Part 2 §6.5.2).
pub const TPM_CC_GET_CAPABILITY: u32 = 0x0000_017A;
/// The vendor bit of a command code (TPMA_CC.V, bit 29).
pub const TPM_CC_VENDOR_BIT: u32 = 1 << 29;
/// The vault's vendor command: `V` set, commandIndex 0x5356 ("SV").
pub const TPM_CC_SVSM_VAULT: u32 = TPM_CC_VENDOR_BIT | 0x5356;
/// Its TPMA_CC: commandIndex and `V`; no handles in or out, no NV or extensive attributes
/// (the vault's own sealed state is not TPM NV), so the resource manager translates nothing.
pub const TPMA_CC_SVSM_VAULT: u32 = TPM_CC_SVSM_VAULT;
/// TPM_CAP_COMMANDS (Part 2 §6.12).
pub const TPM_CAP_COMMANDS: u32 = 0x0000_0002;
/// The vendor command carrying a vault message in parts (commandIndex 0x5357, `V`).
pub const TPM_CC_SVSM_VAULT_PART: u32 = TPM_CC_VENDOR_BIT | 0x5357;
/// TPMA_CC of the part command: commandIndex 0x5357, `V` set, no handles, no other flags.
pub const TPMA_CC_SVSM_VAULT_PART: u32 = TPM_CC_SVSM_VAULT_PART;
/// The TPMA_CC entries of the vendor commands, in command-code order (as TPM_CAP_COMMANDS
/// lists them).
pub const VENDOR_COMMANDS: [u32; 2] = [TPMA_CC_SVSM_VAULT, TPMA_CC_SVSM_VAULT_PART];
/// TPM_CAP_TPM_PROPERTIES.
pub const TPM_CAP_TPM_PROPERTIES: u32 = 0x0000_0006;
/// TPM_PT_TOTAL_COMMANDS (Part 2 §6.13: PT_FIXED + 41).
pub const TPM_PT_TOTAL_COMMANDS: u32 = 0x0000_0129;
/// TPM_PT_VENDOR_COMMANDS (PT_FIXED + 43).
pub const TPM_PT_VENDOR_COMMANDS: u32 = 0x0000_012B;
/// TPM_RC_BAD_TAG (Part 2 §6.6.3).
pub const TPM_RC_BAD_TAG: u32 = 0x0000_001E;
/// TPM_RC_COMMAND_SIZE (RC_VER1 + 0x042).
pub const TPM_RC_COMMAND_SIZE: u32 = 0x0000_0142;
/// TPM_RC_COMMAND_CODE (RC_VER1 + 0x043).
pub const TPM_RC_COMMAND_CODE: u32 = 0x0000_0143;
/// Length of a TPM command or response header.
pub const TPM_HEADER_LEN: usize = 10;

/// What follows a successful vendor response's header: the SVSM call's result registers.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VendorVaultReply {
    /// RAX: 0, an SVSM result code, or a vault status (`0x8000_1000 + n`).
    pub status: U32,
    /// RCX: the response length (bytes needed, with `ResponseTooSmall`).
    pub rcx: U64,
    /// RDX: for ReadEventLog, the whole log's length; otherwise 0.
    pub rdx: U64,
}
assert_layout!(VendorVaultReply, size = 20, status = 0, rcx = 4, rdx = 12);

/// Length of [`VendorVaultReply`].
pub const VENDOR_REPLY_LEN: usize = 20;

/// Largest vault response a vendor command can carry in the vTPM's 4 KiB buffer.
pub const MAX_VENDOR_VAULT_RESPONSE: usize =
    crate::vtpm::MAX_TPM_RESPONSE - TPM_HEADER_LEN - VENDOR_REPLY_LEN;

/// The header of a [`TPM_CC_SVSM_VAULT_PART`] command's body, 12 bytes, little-endian.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct PartHeader {
    /// The transfer: a non-zero id the client chose.
    pub transfer: U32,
    /// [`PartAction`].
    pub action: U16,
    /// Zero.
    pub reserved: U16,
    /// WRITE and RUN: where the data goes in the staged request (its length so far); READ:
    /// where in the response to read from.
    pub offset: U32,
}
assert_layout!(
    PartHeader,
    size = 12,
    transfer = 0,
    action = 4,
    reserved = 6,
    offset = 8
);

/// Length of [`PartHeader`].
pub const PART_HEADER_LEN: usize = 12;
/// Most data one part command carries.
pub const MAX_PART_DATA: usize = crate::vtpm::MAX_TPM_COMMAND - TPM_HEADER_LEN - PART_HEADER_LEN;

/// What a part command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum PartAction {
    /// Append data to the staged request.
    Write = 1,
    /// Append data, then run the staged request.
    Run = 2,
    /// Read the response from the offset.
    Read = 3,
}

/// A part command's body, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// The transfer id (non-zero).
    pub transfer: u32,
    /// The action.
    pub action: PartAction,
    /// The offset.
    pub offset: u32,
    /// The data (empty for READ).
    pub data: &'a [u8],
}

/// Why a part command's body is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartError {
    /// Shorter than its header.
    #[error("part command shorter than its header")]
    Truncated,
    /// Transfer id 0.
    #[error("transfer id 0")]
    ZeroTransfer,
    /// An action that is not WRITE, RUN or READ.
    #[error("unknown part action {0}")]
    UnknownAction(u16),
    /// The reserved field is not zero, or a READ carries data.
    #[error("part command field {0} is reserved")]
    Reserved(&'static str),
}

impl<'a> Part<'a> {
    /// Decodes a part command's body.
    pub fn parse(body: &'a [u8]) -> Result<Part<'a>, PartError> {
        let (header, data) = PartHeader::ref_from_prefix(body).map_err(|_| PartError::Truncated)?;
        let transfer = header.transfer.get();
        if transfer == 0 {
            return Err(PartError::ZeroTransfer);
        }
        if header.reserved.get() != 0 {
            return Err(PartError::Reserved("reserved"));
        }
        let action = match header.action.get() {
            1 => PartAction::Write,
            2 => PartAction::Run,
            3 => PartAction::Read,
            other => return Err(PartError::UnknownAction(other)),
        };
        if action == PartAction::Read && !data.is_empty() {
            return Err(PartError::Reserved("data on READ"));
        }
        Ok(Part {
            transfer,
            action,
            offset: header.offset.get(),
            data,
        })
    }
}

/// The TPM and part headers of a part command with `data_len` bytes of data: what a client
/// writes before the data. `None` if the data does not fit one command.
pub fn part_command_header(
    transfer: u32,
    action: PartAction,
    offset: u32,
    data_len: usize,
) -> Option<[u8; TPM_HEADER_LEN + PART_HEADER_LEN]> {
    if data_len > MAX_PART_DATA {
        return None;
    }
    let size = u32::try_from(TPM_HEADER_LEN + PART_HEADER_LEN + data_len).ok()?;
    let mut out = [0u8; TPM_HEADER_LEN + PART_HEADER_LEN];
    let (tpm, part) = out.split_at_mut(TPM_HEADER_LEN);
    tpm.copy_from_slice(&header(size, TPM_CC_SVSM_VAULT_PART));
    let h = PartHeader {
        transfer: transfer.into(),
        action: (action as u16).into(),
        reserved: 0.into(),
        offset: offset.into(),
    };
    part.copy_from_slice(h.as_bytes());
    Some(out)
}

/// How the vTPM routes a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// Not a vendor command: the engine runs it.
    Engine,
    /// The vault request in the command's body.
    Vault(&'a [u8]),
    /// A part command's body ([`Part::parse`] decodes it).
    VaultPart(&'a [u8]),
    /// A vendor command the vTPM refuses with this TPM response code.
    Refuse(u32),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Routes a TPM command: the engine's, the vault's, or refused. A command too short to have
/// a header goes to the engine, which answers it with its own error.
pub fn route(command: &[u8]) -> Route<'_> {
    let (Some(tag), Some(size), Some(code)) =
        (be16(command, 0), be32(command, 2), be32(command, 6))
    else {
        return Route::Engine;
    };
    if code & TPM_CC_VENDOR_BIT == 0 {
        return Route::Engine;
    }
    if code != TPM_CC_SVSM_VAULT && code != TPM_CC_SVSM_VAULT_PART {
        return Route::Refuse(TPM_RC_COMMAND_CODE);
    }
    if tag != TPM_ST_NO_SESSIONS {
        return Route::Refuse(TPM_RC_BAD_TAG);
    }
    if usize::try_from(size).ok() != Some(command.len()) {
        return Route::Refuse(TPM_RC_COMMAND_SIZE);
    }
    match command.get(TPM_HEADER_LEN..) {
        Some(body) if code == TPM_CC_SVSM_VAULT => Route::Vault(body),
        Some(body) => Route::VaultPart(body),
        None => Route::Refuse(TPM_RC_COMMAND_SIZE),
    }
}

/// Writes a header-only TPM response with `code` into `out`; returns its length (0 if `out`
/// is shorter than a header).
pub fn error_response(code: u32, out: &mut [u8]) -> usize {
    write_header(out, TPM_HEADER_LEN, code)
}

/// A TPM header without sessions: tag, `size`, and a command or response `code`.
fn header(size: u32, code: u32) -> [u8; TPM_HEADER_LEN] {
    let mut bytes = [0u8; TPM_HEADER_LEN];
    let (tag, rest) = bytes.split_at_mut(2);
    let (size_field, code_field) = rest.split_at_mut(4);
    tag.copy_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    size_field.copy_from_slice(&size.to_be_bytes());
    code_field.copy_from_slice(&code.to_be_bytes());
    bytes
}

/// Writes a response header for a response of `len` bytes with `code`; returns `len`, or 0
/// when `out` cannot hold the header or `len` does not fit a u32.
pub fn write_header(out: &mut [u8], len: usize, code: u32) -> usize {
    let (Some(dst), Ok(size)) = (out.get_mut(..TPM_HEADER_LEN), u32::try_from(len)) else {
        return 0;
    };
    dst.copy_from_slice(&header(size, code));
    len
}

/// The header of a vendor vault command carrying a vault message of `request_len` bytes:
/// what a client writes to the TPM device before the message. `None` if it cannot be sized.
pub fn vault_command_header(request_len: usize) -> Option<[u8; TPM_HEADER_LEN]> {
    let size = u32::try_from(TPM_HEADER_LEN.checked_add(request_len)?).ok()?;
    Some(header(size, TPM_CC_SVSM_VAULT))
}

/// TPM2_GetCapability(`capability`, `property`, `count`) without sessions (Part 3 §30.2).
pub fn get_capability_command(capability: u32, property: u32, count: u32) -> [u8; 22] {
    let mut bytes = [0u8; 22];
    let fields: [&[u8]; 6] = [
        &TPM_ST_NO_SESSIONS.to_be_bytes(),
        &22u32.to_be_bytes(),
        &TPM_CC_GET_CAPABILITY.to_be_bytes(),
        &capability.to_be_bytes(),
        &property.to_be_bytes(),
        &count.to_be_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        if let Some(dst) = bytes.get_mut(at..at + field.len()) {
            dst.copy_from_slice(field);
        }
        at += field.len();
    }
    bytes
}

/// Why a vendor vault response could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VendorResponseError {
    /// Shorter than its header, or its size field is not its length.
    #[error("the TPM response is truncated or its size field is wrong")]
    Malformed,
    /// The TPM refused the command (not a vTPM of svsm-vhsm, or a malformed command).
    #[error("the TPM answered response code {0:#x} to the vault's vendor command")]
    Tpm(u32),
    /// The reply's response length is not the bytes that follow.
    #[error("the vault reply's length does not match its bytes")]
    Length,
}

/// A vendor vault response, read: the registers and the response bytes.
#[derive(Clone, Copy, Debug)]
pub struct VendorVaultResponse<'a> {
    /// RAX, RCX, RDX.
    pub reply: VendorVaultReply,
    /// The vault's response bytes (empty unless RAX is 0 or `NotPersisted`).
    pub data: &'a [u8],
}

/// Reads a response to a vendor vault command.
pub fn parse_vault_response(
    response: &[u8],
) -> Result<VendorVaultResponse<'_>, VendorResponseError> {
    parse_reply(response, true)
}

/// Reads a response to a part command: as [`parse_vault_response`], but the bytes may be the
/// start of a longer response (RCX is the whole response's length; WRITE: the staged length).
pub fn parse_part_response(
    response: &[u8],
) -> Result<VendorVaultResponse<'_>, VendorResponseError> {
    parse_reply(response, false)
}

fn parse_reply(
    response: &[u8],
    whole: bool,
) -> Result<VendorVaultResponse<'_>, VendorResponseError> {
    let size = be32(response, 2).ok_or(VendorResponseError::Malformed)?;
    let code = be32(response, 6).ok_or(VendorResponseError::Malformed)?;
    if usize::try_from(size).ok() != Some(response.len()) {
        return Err(VendorResponseError::Malformed);
    }
    if code != 0 {
        return Err(VendorResponseError::Tpm(code));
    }
    let rest = response
        .get(TPM_HEADER_LEN..)
        .ok_or(VendorResponseError::Malformed)?;
    let (reply, data) =
        VendorVaultReply::read_from_prefix(rest).map_err(|_| VendorResponseError::Malformed)?;
    // Bytes follow only an answer that has them, and then exactly RCX of them.
    let status = reply.status.get();
    let carries = status == 0 || status == crate::vault::VaultStatus::NotPersisted.result_code();
    let consistent = if carries && whole {
        data.len() as u64 == reply.rcx.get()
    } else if carries {
        data.len() as u64 <= reply.rcx.get()
    } else {
        data.is_empty()
    };
    if !consistent {
        return Err(VendorResponseError::Length);
    }
    Ok(VendorVaultResponse { reply, data })
}

/// Makes the engine's answer to a TPM2_GetCapability `command` tell the truth about the vault
/// commands: appends [`VENDOR_COMMANDS`] to a TPM_CAP_COMMANDS list that reaches them, and
/// counts them in TPM_PT_TOTAL_COMMANDS and TPM_PT_VENDOR_COMMANDS. `response` holds
/// `*len` bytes and has room for 8 more. Anything else (another command, an error response, a
/// command with sessions, a malformed one) is left as it is.
pub fn amend_capability(command: &[u8], response: &mut [u8], len: &mut usize) {
    let Some(parameters) = get_capability_parameters(command) else {
        return;
    };
    let Some(out) = response.get_mut(..*len) else {
        return;
    };
    if be32(out, 6) != Some(0) {
        return;
    }
    // Response parameters: moreData (1), capability (4), then the list's count (4).
    let (more_data, capability, count) = (out.get(10).copied(), be32(out, 11), be32(out, 15));
    let (Some(more_data), Some(capability), Some(count)) = (more_data, capability, count) else {
        return;
    };
    if capability != parameters.capability {
        return;
    }
    let Ok(listed) = usize::try_from(count) else {
        return;
    };
    match capability {
        TPM_CAP_COMMANDS => {
            // The list must be exactly the rest of the response (checked before it is read),
            // complete (moreData clear) and shorter than asked: then the vendor commands from
            // the asked-for code on follow it, as many as were asked for.
            let end = 19usize.saturating_add(listed.saturating_mul(4));
            if more_data != 0 || end != *len {
                return;
            }
            let mut listed_now = count;
            let mut at = end;
            for code in VENDOR_COMMANDS {
                if code < parameters.property || listed_now >= parameters.count {
                    continue;
                }
                let already =
                    (0..listed).any(|i| be32(out_of(response, *len), 19 + 4 * i) == Some(code));
                if already {
                    continue;
                }
                let Some(slot) = response.get_mut(at..at + 4) else {
                    return;
                };
                slot.copy_from_slice(&code.to_be_bytes());
                at += 4;
                listed_now += 1;
            }
            if listed_now == count {
                return;
            }
            if let Some(c) = response.get_mut(15..19) {
                c.copy_from_slice(&listed_now.to_be_bytes());
            }
            *len = write_header_size(response, at).unwrap_or(*len);
        }
        TPM_CAP_TPM_PROPERTIES => {
            // At most as many entries as the response holds.
            for i in 0..listed.min(out.len() / 8) {
                let at = 19 + 8 * i;
                let (Some(property), Some(value)) = (be32(out, at), be32(out, at + 4)) else {
                    return;
                };
                if property == TPM_PT_TOTAL_COMMANDS || property == TPM_PT_VENDOR_COMMANDS {
                    if let Some(v) = out.get_mut(at + 4..at + 8) {
                        let more = VENDOR_COMMANDS.len() as u32;
                        v.copy_from_slice(&value.saturating_add(more).to_be_bytes());
                    }
                }
            }
        }
        _ => {}
    }
}

/// The first `len` bytes of `response` (empty if it is shorter).
fn out_of(response: &[u8], len: usize) -> &[u8] {
    response.get(..len).unwrap_or(&[])
}

/// Rewrites the size field of the response in `response` to `len`; returns `len`.
fn write_header_size(response: &mut [u8], len: usize) -> Option<usize> {
    let size = u32::try_from(len).ok()?;
    response.get_mut(2..6)?.copy_from_slice(&size.to_be_bytes());
    Some(len)
}

/// TPM2_GetCapability's parameters.
struct CapabilityQuery {
    capability: u32,
    property: u32,
    count: u32,
}

fn get_capability_parameters(command: &[u8]) -> Option<CapabilityQuery> {
    if be16(command, 0)? != TPM_ST_NO_SESSIONS || be32(command, 6)? != TPM_CC_GET_CAPABILITY {
        return None;
    }
    if command.len() != TPM_HEADER_LEN + 12 {
        return None;
    }
    Some(CapabilityQuery {
        capability: be32(command, 10)?,
        property: be32(command, 14)?,
        count: be32(command, 18)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(tag: u16, size: u32, code: u32, body: &[u8]) -> std::vec::Vec<u8> {
        let mut c = std::vec::Vec::new();
        c.extend_from_slice(&tag.to_be_bytes());
        c.extend_from_slice(&size.to_be_bytes());
        c.extend_from_slice(&code.to_be_bytes());
        c.extend_from_slice(body);
        c
    }

    #[test]
    fn commands_are_routed_by_code_and_malformed_vendor_commands_refused() {
        let body = [1u8, 2, 3];
        let ok = command(TPM_ST_NO_SESSIONS, 13, TPM_CC_SVSM_VAULT, &body);
        assert_eq!(route(&ok), Route::Vault(&body));
        let startup = command(TPM_ST_NO_SESSIONS, 12, 0x144, &[0, 0]);
        assert_eq!(route(&startup), Route::Engine);
        assert_eq!(route(&[0x80, 0x01, 0]), Route::Engine);
        let sessions = command(0x8002, 13, TPM_CC_SVSM_VAULT, &body);
        assert_eq!(route(&sessions), Route::Refuse(TPM_RC_BAD_TAG));
        let short = command(TPM_ST_NO_SESSIONS, 99, TPM_CC_SVSM_VAULT, &body);
        assert_eq!(route(&short), Route::Refuse(TPM_RC_COMMAND_SIZE));
        let other = command(TPM_ST_NO_SESSIONS, 13, TPM_CC_VENDOR_BIT | 7, &body);
        assert_eq!(route(&other), Route::Refuse(TPM_RC_COMMAND_CODE));
        let header = vault_command_header(body.len()).unwrap();
        assert_eq!(&header[..], &ok[..10]);
    }

    #[test]
    fn the_command_list_and_counts_learn_of_the_vault_command() {
        let query = get_capability_command(TPM_CAP_COMMANDS, 0x11F, 4);
        // An engine's answer with two commands and room for more.
        let mut response = [0u8; 64];
        let engine = command(
            0x8001,
            27,
            0,
            &[
                0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0x01, 0x1F, 0, 0, 0x01, 0x44,
            ],
        );
        response[..27].copy_from_slice(&engine);
        let mut len = 27;
        amend_capability(&query, &mut response, &mut len);
        assert_eq!(len, 35);
        assert_eq!(be32(&response, 2), Some(35));
        assert_eq!(be32(&response, 15), Some(4));
        assert_eq!(be32(&response, 27), Some(TPMA_CC_SVSM_VAULT));
        assert_eq!(be32(&response, 31), Some(TPMA_CC_SVSM_VAULT_PART));
        // Room for one more: the first vendor command; from the part command's code on: it.
        for (from, count, expect) in [
            (0x11F, 3, TPMA_CC_SVSM_VAULT),
            (TPM_CC_SVSM_VAULT_PART, 4, TPMA_CC_SVSM_VAULT_PART),
        ] {
            let query = get_capability_command(TPM_CAP_COMMANDS, from, count);
            let mut r = [0u8; 64];
            r[..27].copy_from_slice(&engine);
            let mut len = 27;
            amend_capability(&query, &mut r, &mut len);
            assert_eq!(
                (len, be32(&r, 15), be32(&r, 27)),
                (31, Some(3), Some(expect))
            );
        }
        // Asked for exactly what the engine has: nothing is added (the count is the caller's).
        let query = get_capability_command(TPM_CAP_COMMANDS, 0x11F, 2);
        let mut response2 = [0u8; 64];
        response2[..27].copy_from_slice(&engine);
        let mut len = 27;
        amend_capability(&query, &mut response2, &mut len);
        assert_eq!(len, 27);
        // Properties: the total and vendor counts go up by one, nothing else changes.
        let query = get_capability_command(TPM_CAP_TPM_PROPERTIES, TPM_PT_TOTAL_COMMANDS, 3);
        let mut props = std::vec::Vec::new();
        props.extend_from_slice(&[0, 0, 0, 0, 6, 0, 0, 0, 3]);
        for (p, v) in [
            (TPM_PT_TOTAL_COMMANDS, 110u32),
            (0x12A, 110),
            (TPM_PT_VENDOR_COMMANDS, 0),
        ] {
            props.extend_from_slice(&p.to_be_bytes());
            props.extend_from_slice(&v.to_be_bytes());
        }
        let answer = command(0x8001, (10 + props.len()) as u32, 0, &props);
        let mut buf = answer.clone();
        buf.extend_from_slice(&[0; 4]);
        let mut len = answer.len();
        amend_capability(&query, &mut buf, &mut len);
        assert_eq!(len, answer.len());
        assert_eq!(be32(&buf, 23), Some(112));
        assert_eq!(be32(&buf, 31), Some(110));
        assert_eq!(be32(&buf, 39), Some(2));
        // A count the response cannot hold is not read (the fuzzer found the long scan).
        for capability in [TPM_CAP_COMMANDS, TPM_CAP_TPM_PROPERTIES] {
            let query = get_capability_command(capability, 0x11F, u32::MAX);
            let mut huge = command(
                0x8001,
                19,
                0,
                &[0, 0, 0, 0, capability as u8, 0xFF, 0xFF, 0xFF, 0xFF],
            );
            huge.extend_from_slice(&[0; 4]);
            let before = huge.clone();
            let mut len = 19;
            amend_capability(&query, &mut huge, &mut len);
            assert_eq!((len, &huge), (19, &before));
        }
        // Error responses and other commands are left alone.
        let mut error = command(0x8001, 10, 0x101, &[]);
        let before = error.clone();
        let mut len = 10;
        amend_capability(&query, &mut error, &mut len);
        assert_eq!(error, before);
    }

    #[test]
    fn part_commands_parse_and_hostile_ones_are_errors() {
        let header = part_command_header(7, PartAction::Write, 12, 3).unwrap();
        let mut c = header.to_vec();
        c.extend_from_slice(b"abc");
        assert_eq!(route(&c), Route::VaultPart(&c[TPM_HEADER_LEN..]));
        let Route::VaultPart(body) = route(&c) else {
            panic!("not a part")
        };
        assert_eq!(
            Part::parse(body),
            Ok(Part {
                transfer: 7,
                action: PartAction::Write,
                offset: 12,
                data: b"abc"
            })
        );
        for len in 0..PART_HEADER_LEN {
            assert_eq!(Part::parse(&body[..len]), Err(PartError::Truncated));
        }
        let mut b = body.to_vec();
        b[0..4].copy_from_slice(&[0; 4]);
        assert_eq!(Part::parse(&b), Err(PartError::ZeroTransfer));
        let mut b = body.to_vec();
        b[4] = 9;
        assert_eq!(Part::parse(&b), Err(PartError::UnknownAction(9)));
        let mut b = body.to_vec();
        b[6] = 1;
        assert!(matches!(Part::parse(&b), Err(PartError::Reserved(_))));
        let mut b = body.to_vec();
        b[4] = PartAction::Read as u8;
        assert!(matches!(Part::parse(&b), Err(PartError::Reserved(_))));
        assert!(part_command_header(7, PartAction::Run, 0, MAX_PART_DATA + 1).is_none());
    }

    #[test]
    fn vendor_responses_are_checked() {
        let mut r = command(0x8001, 30, 0, &[]);
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&0u64.to_le_bytes());
        r.extend_from_slice(&0u64.to_le_bytes());
        assert!(parse_vault_response(&r).is_ok());
        // Data that RCX does not announce.
        let mut extra = r.clone();
        extra.push(1);
        extra[2..6].copy_from_slice(&31u32.to_be_bytes());
        assert_eq!(
            parse_vault_response(&extra).unwrap_err(),
            VendorResponseError::Length
        );
        assert_eq!(
            parse_vault_response(&r[..29]).unwrap_err(),
            VendorResponseError::Malformed
        );
        let refused = command(0x8001, 10, TPM_RC_COMMAND_CODE, &[]);
        assert_eq!(
            parse_vault_response(&refused).unwrap_err(),
            VendorResponseError::Tpm(TPM_RC_COMMAND_CODE)
        );
        assert_eq!(
            parse_vault_response(&[]).unwrap_err(),
            VendorResponseError::Malformed
        );
    }
}
