//! What the mssim endpoint fronts: the engine directly, or the full SVSM vTPM protocol path
//! (guest-driver -> simulated transport -> svsm-core dispatcher -> vtpm engine).

use crate::mssim::{BackendError, MssimServer, TpmBackend};
use crate::sim::psp::LaunchConfig;
use crate::sim::store::{AnyStore, FileStore, SimStore};
use crate::sim::{SimMachine, SimTransport};
use guest_driver::vtpm::VtpmClient;
use std::path::PathBuf;
use svsm_core::platform::Vmpl;
use svsm_core::tpm::TpmEngine;
use svsm_core::StateStatus;
use vtpm::{Vtpm, VtpmError};

fn engine_error(e: VtpmError) -> BackendError {
    match e.engine_error() {
        Some(engine) => BackendError::Engine(engine),
        None => BackendError::Transport(e.to_string()),
    }
}

/// The engine called directly (used to measure what the protocol path costs).
pub struct DirectBackend(pub Vtpm);

impl TpmBackend for DirectBackend {
    fn send_command(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, BackendError> {
        Ok(self.0.execute(locality, command, response)?)
    }
    fn power_on(&mut self) -> Result<(), BackendError> {
        self.0.power_on().map_err(engine_error)
    }
    fn power_off(&mut self) -> Result<(), BackendError> {
        self.0.power_off();
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        self.0.reset_for_firmware().map_err(engine_error)
    }
}

/// The full path: each TPM command is framed by guest-driver's vTPM client, issued as an SVSM
/// call from VMPL1 on the simulated machine, copied in and validated by svsm-core, and run on
/// the engine. Power signals act on the engine as the platform would.
pub struct SvsmBackend {
    client: VtpmClient<SimTransport>,
}

impl SvsmBackend {
    /// Probes the vTPM protocol on `machine` from VMPL1.
    pub fn new(machine: &SimMachine) -> Result<Self, BackendError> {
        let transport = machine.transport(Vmpl::new(1).unwrap_or(Vmpl::ZERO));
        let client =
            VtpmClient::probe(transport).map_err(|e| BackendError::Transport(e.to_string()))?;
        Ok(SvsmBackend { client })
    }

    fn with_engine<R>(&mut self, f: impl FnOnce(&mut Vtpm) -> R) -> Result<R, BackendError> {
        let machine = self.client.transport_mut().machine().clone();
        let mut module = machine.module();
        let tpm = module
            .tpm_mut()
            .ok_or_else(|| BackendError::Transport("the machine has no vTPM".into()))?;
        Ok(f(tpm))
    }
}

impl TpmBackend for SvsmBackend {
    fn send_command(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, BackendError> {
        // The SVSM vTPM protocol carries locality 0 only (SVSM spec §8 Table 16); a client
        // asking for another locality gets the TPM's own locality error from a real TPM, so we
        // refuse rather than silently downgrade.
        if locality != 0 {
            return Err(BackendError::Transport(format!(
                "the SVSM vTPM protocol carries locality 0 only (asked for {locality})"
            )));
        }
        let n = self
            .client
            .send_command(command, response)
            .map_err(|e| BackendError::Transport(e.to_string()))?;
        Ok(n)
    }
    fn power_on(&mut self) -> Result<(), BackendError> {
        self.with_engine(|tpm| tpm.power_on())?
            .map_err(engine_error)
    }
    fn power_off(&mut self) -> Result<(), BackendError> {
        self.with_engine(|tpm| tpm.power_off())
    }
    fn reset(&mut self) -> Result<(), BackendError> {
        self.with_engine(|tpm| tpm.reset_for_firmware())?
            .map_err(engine_error)
    }
}

/// Starts an endpoint on 127.0.0.1:`port` (0 = any free pair) in front of a fresh simulated
/// machine, going through the full SVSM vTPM protocol path.
pub fn start_endpoint(port: u16) -> Result<MssimServer, Box<dyn std::error::Error>> {
    Ok(start_endpoint_with_state(port, None)?.0)
}

/// Like [`start_endpoint`], with the module's sealed state kept in `state_dir` (two slot
/// files). A reboot with the same launch unseals it; state that does not unseal leaves the
/// module on an explicitly flagged ephemeral vTPM, which `status` describes.
pub fn start_endpoint_with_state(
    port: u16,
    state_dir: Option<PathBuf>,
) -> Result<(MssimServer, String), Box<dyn std::error::Error>> {
    let (machine, status) = boot_machine(state_dir)?;
    let backend = SvsmBackend::new(&machine)?;
    Ok((MssimServer::start(port, Box::new(backend))?, status))
}

/// Boots the simulated machine `svsm-sim` serves (sealed state in `state_dir`, if given) and
/// describes where its state came from.
pub fn boot_machine(
    state_dir: Option<PathBuf>,
) -> Result<(SimMachine, String), Box<dyn std::error::Error>> {
    let store = match state_dir {
        Some(dir) => AnyStore::File(FileStore::new(dir)?),
        None => AnyStore::Memory(SimStore::new()),
    };
    let machine = SimMachine::boot(LaunchConfig::genoa([0x11; 48]), store, None)?;
    let status = {
        let module = machine.module();
        let state = match module.state_status() {
            StateStatus::Fresh => {
                format!("fresh vTPM, sealed state epoch {}", module.state_epoch())
            }
            StateStatus::Restored => {
                format!("restored sealed state epoch {}", module.state_epoch())
            }
            StateStatus::Ephemeral(why) => format!("EPHEMERAL vTPM (state not persisted): {why}"),
        };
        let identity = match (module.ek_ca_public(), module.identity_error()) {
            (Some(ca), None) => {
                format!("EK certificates issued by EK CA {}", hex::encode(&ca[1..9]))
            }
            (_, Some(e)) => format!("NO EK certificates: {e}"),
            (None, None) => "NO EK certificates".to_string(),
        };
        format!("{state}; {identity}")
    };
    Ok((machine, status))
}
