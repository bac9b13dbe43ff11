//! The simulated host's side of persistence and randomness: state stores (in memory, with
//! crash injection; and on disk for `svsm-sim tpm-server --state DIR`), entropy from the OS, and
//! the factory that makes or restores the vTPM engine for the module.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use svsm_core::platform::{Entropy, EntropyError, StateStore, StoreError};
use svsm_core::tpm::{TpmEngineError, TpmState};
use svsm_core::TpmFactory;
use vtpm::{Vtpm, VtpmConfig, VtpmError};

/// Two slots in memory, shared between machine incarnations (a "reboot" keeps the store).
#[derive(Clone, Default)]
pub struct SimStore {
    inner: Arc<Mutex<StoreInner>>,
}

#[derive(Default)]
struct StoreInner {
    slots: [Option<Vec<u8>>; 2],
    crash_after: Option<usize>,
    writes: u64,
}

impl SimStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next write stores only its first `bytes` bytes and fails, like a power loss.
    pub fn crash_next_write_after(&self, bytes: usize) {
        self.inner().crash_after = Some(bytes);
    }

    /// A slot's contents (what the untrusted host sees).
    pub fn slot(&self, slot: u8) -> Option<Vec<u8>> {
        self.inner().slots.get(usize::from(slot)).cloned().flatten()
    }

    /// Replaces a slot's contents (a hostile host).
    pub fn set_slot(&self, slot: u8, blob: Option<Vec<u8>>) {
        if let Some(s) = self.inner().slots.get_mut(usize::from(slot)) {
            *s = blob;
        }
    }

    /// Completed writes.
    pub fn writes(&self) -> u64 {
        self.inner().writes
    }
}

impl StateStore for SimStore {
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError> {
        self.inner()
            .slots
            .get(usize::from(slot))
            .cloned()
            .flatten()
            .ok_or(StoreError::Empty(slot))
    }

    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError> {
        let mut inner = self.inner();
        let crash = inner.crash_after.take();
        let target = inner
            .slots
            .get_mut(usize::from(slot))
            .ok_or(StoreError::Unavailable)?;
        match crash {
            Some(n) => {
                *target = Some(blob[..n.min(blob.len())].to_vec());
                Err(StoreError::Unavailable)
            }
            None => {
                *target = Some(blob.to_vec());
                inner.writes += 1;
                Ok(())
            }
        }
    }
}

/// Two slot files in a directory, each replaced atomically (write a temporary, rename).
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FileStore { dir })
    }

    fn path(&self, slot: u8) -> PathBuf {
        self.dir.join(format!("slot{slot}.sealed"))
    }
}

impl StateStore for FileStore {
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError> {
        match std::fs::read(self.path(slot)) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Empty(slot)),
            Err(_) => Err(StoreError::Unavailable),
        }
    }

    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError> {
        let tmp = self.path(slot).with_extension("tmp");
        std::fs::write(&tmp, blob).map_err(|_| StoreError::Unavailable)?;
        std::fs::rename(&tmp, self.path(slot)).map_err(|_| StoreError::Unavailable)
    }
}

/// Either store, so one machine type serves tests and the CLI.
pub enum AnyStore {
    /// In memory.
    Memory(SimStore),
    /// On disk.
    File(FileStore),
}

impl StateStore for AnyStore {
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError> {
        match self {
            AnyStore::Memory(s) => s.read(slot),
            AnyStore::File(s) => s.read(slot),
        }
    }
    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.write(slot, blob),
            AnyStore::File(s) => s.write(slot, blob),
        }
    }
}

/// Entropy from the host OS (getrandom).
#[derive(Default)]
pub struct SimEntropy;

impl Entropy for SimEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        use rand::RngCore;
        rand::rngs::OsRng
            .try_fill_bytes(buf)
            .map_err(|_| EntropyError::Unavailable)
    }
}

/// Makes the process's vTPM engine for the module.
#[derive(Default)]
pub struct VtpmFactory {
    /// Engine configuration.
    pub config: VtpmConfig,
}

fn engine_error(e: VtpmError) -> TpmEngineError {
    match e {
        VtpmError::Engine(e) => e,
        VtpmError::Tpm { rc, .. } => TpmEngineError::Engine(rc),
        _ => TpmEngineError::StateCorrupt,
    }
}

impl TpmFactory for VtpmFactory {
    type Engine = Vtpm;
    fn manufacture(&mut self) -> Result<Vtpm, TpmEngineError> {
        Vtpm::manufacture(self.config).map_err(engine_error)
    }
    fn restore(&mut self, state: &TpmState) -> Result<Vtpm, TpmEngineError> {
        Vtpm::restore(state, self.config).map_err(engine_error)
    }
}
