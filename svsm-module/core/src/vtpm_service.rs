//! The vTPM protocol (SVSM spec §8): QUERY reports TPM_SEND_COMMAND (bit 8) so the Linux
//! `tpm_svsm` driver binds; CMD copies the request in once (header, then the command it
//! declares), validates the copy, runs the command and copies the response out.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::platform::{Entropy, Gpa, GuestMemory, MemoryError, SecureProcessor, StateStore, Vmpl};
use crate::tpm::TpmEngine;
use svsm_abi::svsm::CallRegisters;
use svsm_abi::svsm::{vtpm_call, PROTOCOL_VTPM};
use svsm_abi::vtpm::{
    parse_send_command_header, VtpmBufferError, MAX_TPM_COMMAND, QUERY_SEND_COMMAND_BIT,
    RESPONSE_HEADER_LEN, SEND_COMMAND_HEADER_LEN, VTPM_BUFFER_SIZE,
};

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
        let tpm = self
            .tpm
            .as_mut()
            .ok_or(SvsmError::UnsupportedProtocol(PROTOCOL_VTPM))?;
        let (out_header, body) = self.vtpm_response.split_at_mut(RESPONSE_HEADER_LEN);
        let n = tpm.execute(0, command, body)?;
        // n <= body.len() < 4096, so it fits the u32 size field.
        out_header.copy_from_slice(&(n as u32).to_le_bytes());
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
}
