//! The vault protocol: QUERY, and REQUEST carrying one versioned vault message (see
//! `svsm_abi::vault`). The request is copied in once, decoded into a typed request, run by the
//! vault, and the response copied out; state-changing operations re-seal the state.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::platform::{Entropy, Gpa, GuestMemory, SecureProcessor, StateStore, Vmpl};
use crate::tpm::TpmEngine;
use crate::vault::{OpContext, VaultError};
use alloc::vec::Vec;
use svsm_abi::svsm::{CallRegisters, PROTOCOL_VAULT};
use svsm_abi::vault::{
    Request, VaultStatus, MAX_MESSAGE, VAULT_CALL_QUERY, VAULT_CALL_REQUEST, VAULT_VERSION,
};

impl<M, P, T, S, R> SvsmModule<M, P, T, S, R>
where
    M: GuestMemory,
    P: SecureProcessor,
    T: TpmEngine,
    S: StateStore,
    R: Entropy,
{
    pub(crate) fn vault_protocol(
        &mut self,
        caller: Vmpl,
        call: u32,
        regs: &mut CallRegisters,
    ) -> Result<(), SvsmError> {
        match call {
            VAULT_CALL_QUERY => {
                regs.rcx = u64::from(VAULT_VERSION);
                regs.rdx = MAX_MESSAGE as u64;
                Ok(())
            }
            VAULT_CALL_REQUEST => self.vault_request(caller, regs),
            _ => Err(SvsmError::UnsupportedCall {
                protocol: PROTOCOL_VAULT,
                call,
            }),
        }
    }

    fn vault_request(&mut self, caller: Vmpl, regs: &mut CallRegisters) -> Result<(), SvsmError> {
        let len = usize::try_from(regs.rdx).unwrap_or(usize::MAX);
        if len > MAX_MESSAGE {
            return Err(SvsmError::VaultRequest(
                svsm_abi::vault::VaultRequestError::TrailingBytes(len.saturating_sub(MAX_MESSAGE)),
            ));
        }
        // Reused buffers (no allocation per call); both are wiped after the call, since a
        // request or response may carry a guest's plaintext.
        let mut raw = core::mem::take(&mut self.vault_request);
        let mut response = core::mem::take(&mut self.vault_response);
        // After the wipe below the buffer holds zeros, so keeping its length saves refilling it.
        raw.resize(len, 0);
        response.clear();
        let result = self.vault_request_in(caller, regs, &mut raw, &mut response);
        zeroize::Zeroize::zeroize(raw.as_mut_slice());
        zeroize::Zeroize::zeroize(response.as_mut_slice());
        response.clear();
        self.vault_request = raw;
        self.vault_response = response;
        result
    }

    fn vault_request_in(
        &mut self,
        caller: Vmpl,
        regs: &mut CallRegisters,
        raw: &mut [u8],
        response: &mut Vec<u8>,
    ) -> Result<(), SvsmError> {
        self.memory.read(caller, Gpa::new(regs.rcx), raw)?;
        let capacity = usize::try_from(regs.r9)
            .unwrap_or(usize::MAX)
            .min(MAX_MESSAGE);
        let mut rdx = 0;
        let result = self.vault_execute(caller, raw, capacity, response, &mut rdx);
        match result {
            Ok(()) | Err(SvsmError::Vault(VaultError::Status(VaultStatus::NotPersisted))) => {
                regs.rdx = rdx;
                self.vault_reply(caller, regs, response)?;
                result
            }
            Err(e) => Err(e),
        }
    }

    /// Runs one vault message for `caller` (from the vault protocol or the vTPM's vendor
    /// command): the answer's bytes go to `response` (at most `capacity` of the event log),
    /// the value for RDX to `rdx`. `Err(NotPersisted)` still leaves a valid response: the
    /// operation took effect but a restart would lose it.
    pub(crate) fn vault_execute(
        &mut self,
        caller: Vmpl,
        raw: &[u8],
        capacity: usize,
        response: &mut Vec<u8>,
        rdx: &mut u64,
    ) -> Result<(), SvsmError> {
        let request = Request::parse(raw)?;
        // Measurement requests act on the vTPM and the log, not on vault keys.
        match request {
            Request::Measure {
                pcr,
                event_type,
                data,
            } => {
                use sha2::Digest;
                let d256: [u8; 32] = sha2::Sha256::digest(data).into();
                let d384: [u8; 48] = sha2::Sha384::digest(data).into();
                self.extend_and_log(pcr, event_type, &d256, &d384, data)?;
                return Ok(());
            }
            Request::ReadEventLog { offset } => {
                let start = (offset as usize).min(self.event_log.len());
                let end = start.saturating_add(capacity).min(self.event_log.len());
                response.extend_from_slice(self.event_log.get(start..end).unwrap_or(&[]));
                // RDX: the whole log's length, so the guest knows when it has read it all.
                *rdx = self.event_log.len() as u64;
                return Ok(());
            }
            Request::AddEvidence { kind, digest } => {
                let pending = self
                    .extra_evidence
                    .iter()
                    .filter(|(vmpl, _, _)| *vmpl == caller)
                    .count();
                if pending >= svsm_abi::attest::MAX_EXTRA_EVIDENCE {
                    return Err(SvsmError::Vault(VaultError::Status(VaultStatus::VaultFull)));
                }
                self.extra_evidence.push((caller, kind, *digest));
                return Ok(());
            }
            _ => {}
        }
        let keys = self
            .keys
            .as_ref()
            .ok_or(SvsmError::Vault(VaultError::Unavailable))?;
        let tpm = &mut self.tpm;
        let mut read_pcrs = |mask: u32| -> Result<[u8; 32], VaultError> {
            let tpm = tpm.as_mut().ok_or(VaultError::NoTpm)?;
            crate::tpm2::pcr_digest_sha256(tpm, mask).map_err(|_| VaultError::NoTpm)
        };
        let mut ctx = OpContext {
            keys,
            rng: &mut self.rng,
            instance_id: &self.instance_id,
            transport: self.transport.as_ref(),
            attested_contexts: &self.attested_contexts,
            pcr_digest: Some(&mut read_pcrs),
        };
        let changed = self.vault.handle(caller, &request, &mut ctx, response)?;
        let persisted = if changed { self.persist() } else { Ok(()) };
        persisted.map_err(|_| SvsmError::Vault(VaultError::Status(VaultStatus::NotPersisted)))
    }

    fn vault_reply(
        &mut self,
        caller: Vmpl,
        regs: &mut CallRegisters,
        response: &[u8],
    ) -> Result<(), SvsmError> {
        regs.rcx = response.len() as u64;
        let capacity = usize::try_from(regs.r9).unwrap_or(usize::MAX);
        if response.len() > capacity {
            return Err(SvsmError::Vault(VaultError::Status(
                VaultStatus::ResponseTooSmall,
            )));
        }
        self.memory.write(caller, Gpa::new(regs.r8), response)?;
        Ok(())
    }
}
