//! What the mssim endpoint fronts: the engine directly, or the full SVSM vTPM protocol path
//! (guest-driver -> simulated transport -> svsm-core dispatcher -> vtpm engine).

use crate::mssim::{BackendError, MssimServer, TpmBackend};
use crate::sim::psp::LaunchConfig;
use crate::sim::{SimMachine, SimTransport};
use guest_driver::vtpm::VtpmClient;
use std::path::{Path, PathBuf};
use svsm_core::platform::Vmpl;
use svsm_core::tpm::{TpmEngine, TpmState};
use vtpm::{Vtpm, VtpmError};

fn engine_error(e: VtpmError) -> BackendError {
    match e.engine_error() {
        Some(engine) => BackendError::Engine(engine),
        None => BackendError::Transport(e.to_string()),
    }
}

/// The simulator's state file: the engine's exported state, written after every change. It is
/// a test convenience of the simulated host and is NOT sealed; the module's sealed state lives
/// behind svsm-core's `StateStore`.
///
/// Format: `SVSMSIM1`, then `u32 LE length + bytes` for the permanent and the volatile blob.
pub struct StateFile {
    path: PathBuf,
}

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// I/O on the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state file or is truncated.
    #[error("{0}: not an svsm-sim state file (bad magic or truncated)")]
    Format(PathBuf),
}

const STATE_MAGIC: &[u8; 8] = b"SVSMSIM1";

impl StateFile {
    /// A state file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile { path: path.into() }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state, or `None` when the file does not exist.
    pub fn load(&self) -> Result<Option<TpmState>, StateFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let bad = || StateFileError::Format(self.path.clone());
        let rest = bytes.strip_prefix(STATE_MAGIC.as_slice()).ok_or_else(bad)?;
        let (permanent, rest) = take_blob(rest).ok_or_else(bad)?;
        let (volatile, rest) = take_blob(rest).ok_or_else(bad)?;
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(Some(TpmState {
            permanent: permanent.to_vec(),
            volatile: volatile.to_vec(),
        }))
    }

    /// Writes the state atomically (temporary file, then rename).
    pub fn store(&self, state: &TpmState) -> Result<(), StateFileError> {
        let mut bytes = STATE_MAGIC.to_vec();
        for blob in [&state.permanent, &state.volatile] {
            bytes.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            bytes.extend_from_slice(blob);
        }
        let tmp = self.path.with_extension("tmp");
        let io = |source| StateFileError::Io {
            path: self.path.clone(),
            source,
        };
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

fn take_blob(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    rest.split_at_checked(u32::from_le_bytes(*len) as usize)
}

/// Writes the engine's state to `file` when it changed.
fn persist(tpm: &mut Vtpm, file: Option<&StateFile>) -> Result<(), BackendError> {
    if let Some(file) = file {
        if tpm.state_changed() {
            let state = tpm.export_state()?;
            file.store(&state)
                .map_err(|e| BackendError::Transport(e.to_string()))?;
        }
    }
    Ok(())
}

/// A manufactured vTPM, or the one restored from `state` when the file exists.
pub fn load_or_manufacture(state: Option<&StateFile>) -> Result<Vtpm, Box<dyn std::error::Error>> {
    match state.map(StateFile::load).transpose()?.flatten() {
        Some(saved) => Ok(Vtpm::restore(&saved, Default::default())?),
        None => {
            let mut tpm = Vtpm::manufacture(Default::default())?;
            persist(&mut tpm, state)?;
            Ok(tpm)
        }
    }
}

/// The engine called directly (used to measure what the protocol path costs).
pub struct DirectBackend {
    /// The engine.
    pub tpm: Vtpm,
    /// Where its state goes after every change, if anywhere.
    pub state: Option<StateFile>,
}

impl TpmBackend for DirectBackend {
    fn send_command(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, BackendError> {
        let n = self.tpm.execute(locality, command, response)?;
        persist(&mut self.tpm, self.state.as_ref())?;
        Ok(n)
    }
    fn power_on(&mut self) -> Result<(), BackendError> {
        self.tpm.power_on().map_err(engine_error)
    }
    fn power_off(&mut self) -> Result<(), BackendError> {
        self.tpm.power_off();
        persist(&mut self.tpm, self.state.as_ref())
    }
}

/// The full path: each TPM command is framed by guest-driver's vTPM client, issued as an SVSM
/// call from VMPL1 on the simulated machine, copied in and validated by svsm-core, and run on
/// the engine. Power signals act on the engine as the platform would.
pub struct SvsmBackend {
    client: VtpmClient<SimTransport>,
    state: Option<StateFile>,
}

impl SvsmBackend {
    /// Probes the vTPM protocol on `machine` from VMPL1.
    pub fn new(machine: &SimMachine) -> Result<Self, BackendError> {
        let transport = machine.transport(Vmpl::new(1).unwrap_or(Vmpl::ZERO));
        let client =
            VtpmClient::probe(transport).map_err(|e| BackendError::Transport(e.to_string()))?;
        Ok(SvsmBackend {
            client,
            state: None,
        })
    }

    /// Writes the engine's state to `file` after every change.
    pub fn with_state_file(mut self, file: StateFile) -> Self {
        self.state = Some(file);
        self
    }

    fn save_state(&mut self) -> Result<(), BackendError> {
        let Some(file) = self.state.take() else {
            return Ok(());
        };
        let result = self.with_engine(|tpm| persist(tpm, Some(&file)));
        self.state = Some(file);
        result?
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
        self.save_state()?;
        Ok(n)
    }
    fn power_on(&mut self) -> Result<(), BackendError> {
        self.with_engine(|tpm| tpm.power_on())?
            .map_err(engine_error)
    }
    fn power_off(&mut self) -> Result<(), BackendError> {
        self.with_engine(|tpm| tpm.power_off())?;
        self.save_state()
    }
}

/// Starts an endpoint on 127.0.0.1:`port` (0 = any free pair) in front of a fresh simulated
/// machine, going through the full SVSM vTPM protocol path.
pub fn start_endpoint(port: u16) -> Result<MssimServer, Box<dyn std::error::Error>> {
    start_endpoint_with_state(port, None)
}

/// Like [`start_endpoint`], with the vTPM restored from / saved to a state file.
pub fn start_endpoint_with_state(
    port: u16,
    state: Option<StateFile>,
) -> Result<MssimServer, Box<dyn std::error::Error>> {
    let tpm = load_or_manufacture(state.as_ref())?;
    let machine = SimMachine::with_tpm(LaunchConfig::genoa([0x11; 48]), tpm)?;
    let mut backend = SvsmBackend::new(&machine)?;
    if let Some(file) = state {
        backend = backend.with_state_file(file);
    }
    Ok(MssimServer::start(port, Box::new(backend))?)
}
