//! vTPM protocol client, speaking TPM_SEND_COMMAND exactly as Linux's `tpm_svsm` does: one
//! 4 KiB buffer, platform command 8, locality 0, packed size at offset 5.

use crate::core_protocol::query_protocol;
use crate::transport::{call_ok, DriverError, SvsmTransport};
use svsm_abi::svsm::{vtpm_call, CallId, CallRegisters, PROTOCOL_VTPM};
use svsm_abi::vtpm::{
    SendCommand, MAX_TPM_COMMAND, QUERY_SEND_COMMAND_BIT, RESPONSE_HEADER_LEN, VTPM_BUFFER_SIZE,
};

/// A vTPM reached over the SVSM vTPM protocol. The first page of the transport's buffer is the
/// request/response page.
pub struct VtpmClient<T> {
    transport: T,
    page: [u8; VTPM_BUFFER_SIZE],
}

impl<T: SvsmTransport> VtpmClient<T> {
    /// Probes like Linux: the vTPM protocol must be served and QUERY must report bit 8.
    pub fn probe(mut transport: T) -> Result<Self, DriverError> {
        if query_protocol(&mut transport, PROTOCOL_VTPM, 1)?.is_none() {
            return Err(DriverError::ProtocolUnavailable(PROTOCOL_VTPM));
        }
        let regs = CallRegisters {
            rax: CallId {
                protocol: PROTOCOL_VTPM,
                call: vtpm_call::QUERY,
            }
            .to_rax(),
            ..Default::default()
        };
        let out = call_ok(&mut transport, regs)?;
        if out.rcx & QUERY_SEND_COMMAND_BIT == 0 {
            return Err(DriverError::NoSendCommand);
        }
        if transport.buffer_len() < VTPM_BUFFER_SIZE {
            return Err(DriverError::BufferTooSmall {
                needed: VTPM_BUFFER_SIZE,
                available: transport.buffer_len(),
            });
        }
        Ok(VtpmClient {
            transport,
            page: [0; VTPM_BUFFER_SIZE],
        })
    }

    /// The transport (e.g. to reach the simulated machine behind it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends one TPM command; writes the TPM response into `response` and returns its length.
    pub fn send_command(
        &mut self,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, DriverError> {
        if command.len() > MAX_TPM_COMMAND {
            return Err(svsm_abi::vtpm::VtpmBufferError::SizeTooLarge {
                size: u32::try_from(command.len()).unwrap_or(u32::MAX),
                max: MAX_TPM_COMMAND,
            }
            .into());
        }
        let used = SendCommand::encode(0, command, &mut self.page)?;
        let request = self.page.get(..used).unwrap_or(&[]);
        self.transport.write_buffer(0, request)?;
        let regs = CallRegisters {
            rax: CallId {
                protocol: PROTOCOL_VTPM,
                call: vtpm_call::CMD,
            }
            .to_rax(),
            rcx: self.transport.buffer_gpa(),
            ..Default::default()
        };
        call_ok(&mut self.transport, regs)?;
        let mut header = [0u8; RESPONSE_HEADER_LEN];
        self.transport.read_buffer(0, &mut header)?;
        let size = u32::from_le_bytes(header) as usize;
        if size > VTPM_BUFFER_SIZE - RESPONSE_HEADER_LEN {
            return Err(DriverError::BadSize("vTPM response"));
        }
        let available = response.len();
        let out = response
            .get_mut(..size)
            .ok_or(DriverError::ResponseTooLarge {
                needed: size,
                available,
            })?;
        self.transport.read_buffer(RESPONSE_HEADER_LEN, out)?;
        Ok(size)
    }
}
