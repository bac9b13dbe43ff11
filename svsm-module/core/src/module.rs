//! The module: platform pieces plus services, and the dispatcher that turns a guest's registers
//! into a result. Every protocol handler returns `Result<(), SvsmError>`; the dispatcher writes
//! the result code into RAX, so no guest input reaches a panic or an unmapped error.

use crate::error::SvsmError;
use crate::platform::{GuestMemory, SecureProcessor, Vmpl};
use crate::tpm::{TpmEngine, MAX_TPM_BUFFER};
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::svsm::{
    core_call, protocol_versions_rcx, CallId, CallRegisters, ProtocolQuery, PROTOCOL_ATTEST,
    PROTOCOL_CORE, PROTOCOL_VAULT, PROTOCOL_VTPM,
};

/// The SVSM module at VMPL0.
pub struct SvsmModule<M, P, T> {
    pub(crate) memory: M,
    pub(crate) psp: P,
    pub(crate) tpm: Option<T>,
    /// The vTPM EK's TPMT_PUBLIC, created on the first attestation and kept.
    pub(crate) ek_public: Option<Vec<u8>>,
    /// Copy-in/copy-out buffers of the vTPM protocol, reused across calls.
    pub(crate) vtpm_request: Vec<u8>,
    pub(crate) vtpm_response: Vec<u8>,
}

impl<M: GuestMemory, P: SecureProcessor, T: TpmEngine> SvsmModule<M, P, T> {
    /// A module over these platform pieces; `tpm` is `None` when no vTPM is served.
    pub fn new(memory: M, psp: P, tpm: Option<T>) -> Self {
        SvsmModule {
            memory,
            psp,
            tpm,
            ek_public: None,
            vtpm_request: vec![0; svsm_abi::vtpm::VTPM_BUFFER_SIZE],
            vtpm_response: vec![0; MAX_TPM_BUFFER],
        }
    }

    /// Guest memory (the simulated machine's guest side uses it to place requests).
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }

    /// The secure processor.
    pub fn psp_mut(&mut self) -> &mut P {
        &mut self.psp
    }

    /// The TPM engine, if served.
    pub fn tpm_mut(&mut self) -> Option<&mut T> {
        self.tpm.as_mut()
    }

    /// Handles one SVSM call from a guest at `caller`: reads the inputs from `regs` and writes
    /// the result code (RAX) and any outputs back into it.
    pub fn handle_call(&mut self, caller: Vmpl, regs: &mut CallRegisters) {
        let id = CallId::from_rax(regs.rax);
        let result = match id.protocol {
            PROTOCOL_CORE => self.core_protocol(id.call, regs),
            PROTOCOL_ATTEST => self.attest_protocol(caller, id.call, regs),
            PROTOCOL_VTPM if self.tpm.is_some() => self.vtpm_protocol(caller, id.call, regs),
            // Reserved for the vault; its calls arrive with the vault service.
            PROTOCOL_VAULT => Err(SvsmError::UnsupportedCall {
                protocol: id.protocol,
                call: id.call,
            }),
            other => Err(SvsmError::UnsupportedProtocol(other)),
        };
        regs.rax = match result {
            Ok(()) => 0,
            Err(e) => u64::from(e.result_code().to_u32()),
        };
    }

    /// The versions served of a protocol as (min, max), or `None`.
    pub fn protocol_versions(&self, protocol: u32) -> Option<(u32, u32)> {
        match protocol {
            PROTOCOL_CORE | PROTOCOL_ATTEST => Some((1, 1)),
            PROTOCOL_VTPM if self.tpm.is_some() => Some((1, 1)),
            // The vault number is reserved but not offered until it has operations.
            _ => None,
        }
    }

    fn core_protocol(&mut self, call: u32, regs: &mut CallRegisters) -> Result<(), SvsmError> {
        match call {
            core_call::QUERY_PROTOCOL => {
                let query = ProtocolQuery::from_rcx(regs.rcx);
                regs.rcx = match self.protocol_versions(query.protocol) {
                    Some((min, max)) if (min..=max).contains(&query.version) => {
                        protocol_versions_rcx(min, max)
                    }
                    _ => 0,
                };
                Ok(())
            }
            // vCPU and memory management belong to the SVSM kernel hosting this module, not to
            // the services; answered as unsupported rather than pretended.
            _ => Err(SvsmError::UnsupportedCall {
                protocol: PROTOCOL_CORE,
                call,
            }),
        }
    }
}
