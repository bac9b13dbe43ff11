//! The vTPM protocol (SVSM spec §8): QUERY reports TPM_SEND_COMMAND (bit 8) so the Linux
//! `tpm_svsm` driver binds; CMD copies the request in once (header, then the command it
//! declares), validates the copy, runs the command and copies the response out.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::platform::{Entropy, Gpa, GuestMemory, MemoryError, SecureProcessor, StateStore, Vmpl};
use crate::tpm::TpmEngine;
use alloc::vec::Vec;
use svsm_abi::svsm::CallRegisters;
use svsm_abi::svsm::{vtpm_call, PROTOCOL_VTPM};
use svsm_abi::tpm_vendor::{self, Route, TPM_HEADER_LEN, VENDOR_REPLY_LEN};
use svsm_abi::vtpm::{
    parse_send_command_header, VtpmBufferError, MAX_TPM_COMMAND, QUERY_SEND_COMMAND_BIT,
    RESPONSE_HEADER_LEN, SEND_COMMAND_HEADER_LEN, VTPM_BUFFER_SIZE,
};

/// Where a vTPM command goes (`svsm_abi::tpm_vendor::route`, owned).
enum Dispatch {
    Engine,
    Refuse(u32),
    Vault,
    VaultPart,
}

impl<M, P, T, S, R> SvsmModule<M, P, T, S, R>
where
    M: GuestMemory,
    P: SecureProcessor,
    T: TpmEngine,
    S: StateStore,
    R: Entropy,
{
    pub(crate) fn vtpm_protocol(
        &mut self,
        caller: Vmpl,
        call: u32,
        regs: &mut CallRegisters,
    ) -> Result<(), SvsmError> {
        match call {
            vtpm_call::QUERY => {
                regs.rcx = QUERY_SEND_COMMAND_BIT;
                regs.rdx = 0; // no vTPM features are defined in protocol version 1
                Ok(())
            }
            vtpm_call::CMD => self.vtpm_command(caller, Gpa::new(regs.rcx)),
            _ => Err(SvsmError::UnsupportedCall {
                protocol: PROTOCOL_VTPM,
                call,
            }),
        }
    }

    fn vtpm_command(&mut self, caller: Vmpl, gpa: Gpa) -> Result<(), SvsmError> {
        // Copy the header, validate the copy, then copy exactly the command it declares: every
        // guest byte is read once, and nothing below looks at guest memory again.
        let mut header = [0u8; SEND_COMMAND_HEADER_LEN];
        self.memory.read(caller, gpa, &mut header)?;
        let len = parse_send_command_header(&header)?;
        let body_gpa =
            gpa.checked_add(SEND_COMMAND_HEADER_LEN as u64)
                .ok_or(MemoryError::Overflow {
                    gpa: gpa.raw(),
                    len: VTPM_BUFFER_SIZE,
                })?;
        let command = self
            .vtpm_request
            .get_mut(..len)
            .ok_or(VtpmBufferError::SizeTooLarge {
                size: len as u32,
                max: MAX_TPM_COMMAND,
            })?;
        self.memory.read(caller, body_gpa, command)?;
        // A vendor command for the vault is answered here; every other command goes to the
        // engine, and its TPM_CAP_COMMANDS / command-count answers learn of the vault command
        // (so Linux's resource manager passes it: svsm_abi::tpm_vendor).
        let route = match tpm_vendor::route(command) {
            Route::Engine => Dispatch::Engine,
            Route::Refuse(code) => Dispatch::Refuse(code),
            Route::Vault(_) => Dispatch::Vault,
            Route::VaultPart(_) => Dispatch::VaultPart,
        };
        let n = match route {
            Dispatch::Engine => {
                let tpm = self
                    .tpm
                    .as_mut()
                    .ok_or(SvsmError::UnsupportedProtocol(PROTOCOL_VTPM))?;
                let command = self.vtpm_request.get(..len).unwrap_or(&[]);
                let body = self
                    .vtpm_response
                    .get_mut(RESPONSE_HEADER_LEN..)
                    .unwrap_or(&mut []);
                let mut n = tpm.execute(0, command, body)?;
                tpm_vendor::amend_capability(command, body, &mut n);
                n
            }
            Dispatch::Refuse(code) => {
                let body = self
                    .vtpm_response
                    .get_mut(RESPONSE_HEADER_LEN..)
                    .unwrap_or(&mut []);
                tpm_vendor::error_response(code, body)
            }
            Dispatch::Vault => self.vendor_vault(caller, len),
            Dispatch::VaultPart => self.vendor_vault_part(caller, len),
        };
        // n <= the body's 4092 bytes, so it fits the u32 size field.
        if let Some(out_header) = self.vtpm_response.get_mut(..RESPONSE_HEADER_LEN) {
            out_header.copy_from_slice(&(n as u32).to_le_bytes());
        }
        let out = self
            .vtpm_response
            .get(..RESPONSE_HEADER_LEN + n)
            .unwrap_or(&[]);
        self.memory.write(caller, gpa, out)?;
        // NV changed (keys made persistent, NV written, ...): seal and store the new state.
        // The TPM response is already the guest's: a failed write cannot be reported through
        // the TPM protocol without failing a command that took effect, so it is recorded and
        // every manifest flags it (MANIFEST_FLAG_NOT_PERSISTED) until a write succeeds.
        if self.tpm.as_ref().is_some_and(|t| t.state_changed()) {
            let _ = self.persist();
        }
        Ok(())
    }

    /// Runs the vault message in the vendor command held in `vtpm_request[..len]` for
    /// `caller` (the VMPL that sent the vTPM command) and writes the TPM response after the
    /// vTPM response header; returns its length. The reply carries what the vault protocol's
    /// registers would: RAX (the result code), RCX (the response length, or the bytes needed
    /// when it does not fit the vTPM buffer), RDX.
    fn vendor_vault(&mut self, caller: Vmpl, len: usize) -> usize {
        let request = core::mem::take(&mut self.vtpm_request);
        let mut response = core::mem::take(&mut self.vault_response);
        response.clear();
        let raw = request.get(TPM_HEADER_LEN..len).unwrap_or(&[]);
        let mut rdx = 0;
        let capacity = tpm_vendor::MAX_VENDOR_VAULT_RESPONSE;
        let result = self.vault_execute(caller, raw, capacity, &mut response, &mut rdx);
        let carries = matches!(
            result,
            Ok(())
                | Err(SvsmError::Vault(crate::vault::VaultError::Status(
                    svsm_abi::vault::VaultStatus::NotPersisted
                )))
        );
        let (status, data): (u32, &[u8]) = match &result {
            _ if carries && response.len() > capacity => (
                svsm_abi::vault::VaultStatus::ResponseTooSmall.result_code(),
                &[],
            ),
            Ok(()) => (0, response.as_slice()),
            Err(e) => (
                e.result_code().to_u32(),
                if carries { response.as_slice() } else { &[] },
            ),
        };
        let n = write_vendor_reply(
            &mut self.vtpm_response,
            status,
            response.len() as u64,
            if carries { rdx } else { 0 },
            data,
        );
        // A request or response may carry a guest's plaintext: wipe both.
        zeroize::Zeroize::zeroize(response.as_mut_slice());
        response.clear();
        self.vault_response = response;
        let mut request = request;
        if let Some(r) = request.get_mut(..len) {
            zeroize::Zeroize::zeroize(r);
        }
        self.vtpm_request = request;
        n
    }

    /// Runs one [`tpm_vendor::TPM_CC_SVSM_VAULT_PART`] command held in `vtpm_request[..len]`
    /// for `caller` and writes the TPM response; returns its length.
    fn vendor_vault_part(&mut self, caller: Vmpl, len: usize) -> usize {
        use crate::vault_parts::PartRefusal;
        use svsm_abi::tpm_vendor::{Part, PartAction};
        let request = core::mem::take(&mut self.vtpm_request);
        let body = request.get(TPM_HEADER_LEN..len).unwrap_or(&[]);
        let capacity = tpm_vendor::MAX_VENDOR_VAULT_RESPONSE;
        let invalid = svsm_abi::svsm::ResultCode::InvalidParameter.to_u32();
        let n = match Part::parse(body) {
            Err(_) => write_vendor_reply(&mut self.vtpm_response, invalid, 0, 0, &[]),
            Ok(part) => match part.action {
                PartAction::Write => {
                    match self
                        .transfers
                        .write(caller, part.transfer, part.offset, part.data)
                    {
                        Ok(staged) => {
                            write_vendor_reply(&mut self.vtpm_response, 0, staged as u64, 0, &[])
                        }
                        Err(_) => write_vendor_reply(&mut self.vtpm_response, invalid, 0, 0, &[]),
                    }
                }
                PartAction::Read => {
                    let response = &mut self.vtpm_response;
                    self.transfers
                        .read(
                            caller,
                            part.transfer,
                            part.offset,
                            capacity,
                            |bytes, total| write_vendor_reply(response, 0, total as u64, 0, bytes),
                        )
                        .unwrap_or_else(|_: PartRefusal| {
                            write_vendor_reply(&mut self.vtpm_response, invalid, 0, 0, &[])
                        })
                }
                PartAction::Run => {
                    match self
                        .transfers
                        .take_request(caller, part.transfer, part.offset, part.data)
                    {
                        Err(_) => write_vendor_reply(&mut self.vtpm_response, invalid, 0, 0, &[]),
                        Ok(message) => {
                            let mut response = zeroize::Zeroizing::new(Vec::new());
                            let mut rdx = 0;
                            // The whole response is kept for READs: the vault's own limit.
                            let result = self.vault_execute(
                                caller,
                                &message,
                                svsm_abi::vault::MAX_MESSAGE,
                                &mut response,
                                &mut rdx,
                            );
                            drop(message);
                            let carries = matches!(
                                result,
                                Ok(())
                                    | Err(SvsmError::Vault(crate::vault::VaultError::Status(
                                        svsm_abi::vault::VaultStatus::NotPersisted
                                    )))
                            );
                            let status = match &result {
                                Ok(()) => 0,
                                Err(e) => e.result_code().to_u32(),
                            };
                            let first = if carries {
                                response.get(..response.len().min(capacity)).unwrap_or(&[])
                            } else {
                                &[]
                            };
                            let n = write_vendor_reply(
                                &mut self.vtpm_response,
                                status,
                                if carries { response.len() as u64 } else { 0 },
                                if carries { rdx } else { 0 },
                                first,
                            );
                            let sent = first.len();
                            let kept = if carries {
                                response
                            } else {
                                zeroize::Zeroizing::new(Vec::new())
                            };
                            self.transfers
                                .keep_response(caller, part.transfer, kept, sent);
                            n
                        }
                    }
                }
            },
        };
        let mut request = request;
        if let Some(r) = request.get_mut(..len) {
            zeroize::Zeroize::zeroize(r);
        }
        self.vtpm_request = request;
        n
    }
}

/// Writes a vendor vault response after the vTPM response header in `out`: the TPM header
/// (success), the registers, `data`; returns the TPM response's length (0 if it cannot fit).
fn write_vendor_reply(out: &mut [u8], status: u32, rcx: u64, rdx: u64, data: &[u8]) -> usize {
    let reply = tpm_vendor::VendorVaultReply {
        status: status.into(),
        rcx: rcx.into(),
        rdx: rdx.into(),
    };
    let total = TPM_HEADER_LEN + VENDOR_REPLY_LEN + data.len();
    match out.get_mut(RESPONSE_HEADER_LEN..RESPONSE_HEADER_LEN + total) {
        Some(body) => {
            if let Some((_, rest)) = body.split_at_mut_checked(TPM_HEADER_LEN) {
                if let Some((reply_bytes, data_bytes)) = rest.split_at_mut_checked(VENDOR_REPLY_LEN)
                {
                    reply_bytes.copy_from_slice(zerocopy::IntoBytes::as_bytes(&reply));
                    data_bytes.copy_from_slice(data);
                }
            }
            tpm_vendor::write_header(body, total, 0)
        }
        None => 0,
    }
}
