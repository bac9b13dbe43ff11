//! The vTPM protocol (SVSM spec §8): QUERY reports TPM_SEND_COMMAND (bit 8) so the Linux
//! `tpm_svsm` driver binds; CMD copies the 4 KiB buffer in once, validates the copy, runs the
//! command and copies the response out.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::platform::{Gpa, GuestMemory, SecureProcessor, Vmpl};
use crate::tpm::TpmEngine;
use svsm_abi::svsm::CallRegisters;
use svsm_abi::svsm::{vtpm_call, PROTOCOL_VTPM};
use svsm_abi::vtpm::{SendCommand, QUERY_SEND_COMMAND_BIT, RESPONSE_HEADER_LEN};

impl<M: GuestMemory, P: SecureProcessor, T: TpmEngine> SvsmModule<M, P, T> {
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
        // One copy of the whole buffer; everything below reads the copy only.
        self.memory.read(caller, gpa, &mut self.vtpm_request)?;
        let command = SendCommand::parse(&self.vtpm_request)?;
        let tpm = self
            .tpm
            .as_mut()
            .ok_or(SvsmError::UnsupportedProtocol(PROTOCOL_VTPM))?;
        let (header, body) = self.vtpm_response.split_at_mut(RESPONSE_HEADER_LEN);
        let body_len = body.len();
        let n = tpm.execute(command.locality, command.tpm_command, body)?;
        let size = u32::try_from(n).map_err(|_| {
            SvsmError::Tpm(crate::tpm::TpmEngineError::ResponseTooLarge {
                size: n,
                capacity: body_len,
            })
        })?;
        header.copy_from_slice(&size.to_le_bytes());
        let total = RESPONSE_HEADER_LEN + n;
        let out = self.vtpm_response.get(..total).unwrap_or(&[]);
        self.memory.write(caller, gpa, out)?;
        Ok(())
    }
}
