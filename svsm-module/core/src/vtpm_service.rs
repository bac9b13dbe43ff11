//! The vTPM protocol (SVSM spec §8): QUERY reports TPM_SEND_COMMAND (bit 8) so the Linux
//! `tpm_svsm` driver binds; CMD copies the request in once (header, then the command it
//! declares), validates the copy, runs the command and copies the response out.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::platform::{Entropy, Gpa, GuestMemory, MemoryError, SecureProcessor, StateStore, Vmpl};
use crate::tpm::TpmEngine;
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
        let reply = tpm_vendor::VendorVaultReply {
            status: status.into(),
            rcx: (response.len() as u64).into(),
            rdx: (if carries { rdx } else { 0 }).into(),
        };
        let total = TPM_HEADER_LEN + VENDOR_REPLY_LEN + data.len();
        let n = match self
            .vtpm_response
            .get_mut(RESPONSE_HEADER_LEN..RESPONSE_HEADER_LEN + total)
        {
            Some(body) => {
                if let Some((_, rest)) = body.split_at_mut_checked(TPM_HEADER_LEN) {
                    if let Some((reply_bytes, data_bytes)) =
                        rest.split_at_mut_checked(VENDOR_REPLY_LEN)
                    {
                        reply_bytes.copy_from_slice(zerocopy::IntoBytes::as_bytes(&reply));
                        data_bytes.copy_from_slice(data);
                    }
                }
                tpm_vendor::write_header(body, total, 0)
            }
            None => 0,
        };
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
}
