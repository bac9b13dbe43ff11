//! Measurement of higher-VMPL components: before VMPL1 runs, the module measures what it was
//! given for the guest (firmware, kernel, initrd, command line) into vTPM PCRs following the
//! TCG PC Client conventions, and keeps a TCG crypto-agile event log (SHA-256 and SHA-384) of
//! them. Later measurements by the guest (through the services protocol) go into the same log.
//!
//! PCRs and event types: `svsm_abi::eventlog::LaunchComponent` (firmware 0, kernel 4, command
//! line 8, initrd 9), the table a verifier also uses to compute reference PCRs from the files.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::platform::{Entropy, GuestMemory, SecureProcessor, StateStore};
use crate::tpm::TpmEngine;
use alloc::vec;
use alloc::vec::Vec;
use sha2::{Digest, Sha256, Sha384};
use svsm_abi::eventlog::{self, event_len, write_event};

/// What a launch description lists (the PCR table lives in `svsm_abi`, shared with verifiers).
pub use svsm_abi::eventlog::LaunchComponent as ComponentKind;

/// One component to measure.
#[derive(Clone, Copy, Debug)]
pub struct Component<'a> {
    /// What it is.
    pub kind: ComponentKind,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// A fresh log: just the Spec ID header.
pub(crate) fn new_log() -> Vec<u8> {
    let mut log = vec![0u8; eventlog::SPEC_ID_EVENT_LEN];
    let n = eventlog::write_spec_id_event(&mut log).unwrap_or(0);
    log.truncate(n);
    log
}

impl<M, P, T, S, R> SvsmModule<M, P, T, S, R>
where
    M: GuestMemory,
    P: SecureProcessor,
    T: TpmEngine,
    S: StateStore,
    R: Entropy,
{
    /// Measures the launch components, in order, before the guest runs.
    pub fn measure_launch(&mut self, components: &[Component<'_>]) -> Result<(), SvsmError> {
        for c in components {
            let (pcr, event_type) = c.kind.pcr_and_event();
            let d256: [u8; 32] = Sha256::digest(c.bytes).into();
            let d384: [u8; 48] = Sha384::digest(c.bytes).into();
            self.extend_and_log(pcr, event_type, &d256, &d384, c.kind.name())?;
        }
        Ok(())
    }

    /// Extends both banks of `pcr` and appends the event to the log.
    pub(crate) fn extend_and_log(
        &mut self,
        pcr: u32,
        event_type: u32,
        d256: &[u8; 32],
        d384: &[u8; 48],
        event_data: &[u8],
    ) -> Result<(), SvsmError> {
        let tpm = self.tpm.as_mut().ok_or(SvsmError::UnsupportedProtocol(
            svsm_abi::svsm::PROTOCOL_VTPM,
        ))?;
        crate::tpm2::extend_both(tpm, pcr, d256, d384)?;
        let start = self.event_log.len();
        self.event_log
            .resize(start + event_len(event_data.len()), 0);
        let written = self
            .event_log
            .get_mut(start..)
            .and_then(|slot| write_event(slot, pcr, event_type, d256, d384, event_data));
        if written.is_none() {
            self.event_log.truncate(start);
            return Err(SvsmError::TpmResponse(u32::MAX));
        }
        Ok(())
    }

    /// The event log.
    pub fn event_log(&self) -> &[u8] {
        &self.event_log
    }
}
