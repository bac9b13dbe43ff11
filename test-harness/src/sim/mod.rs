//! The simulated SNP machine: a software PSP with a test certificate chain, guest memory with
//! the RMP's VMPL permissions, and the SVSM module running over them with the real vTPM engine.
//! A [`SimTransport`] is the guest side: it issues SVSM calls as a VMPL1+ guest would.

pub mod chain;
pub mod envelope;
pub mod gpu;
pub mod memory;
pub mod psp;
pub mod store;
pub mod vcpus;

use guest_driver::transport::{SvsmTransport, TransportError};
use memory::SimMemory;
use psp::{LaunchConfig, SimPsp};
use std::sync::{Arc, Mutex, MutexGuard};
use store::{AnyStore, SimEntropy, SimStore, VtpmFactory};
use svsm_abi::svsm::CallRegisters;
use svsm_core::platform::{Gpa, GuestMemory, Vmpl, PAGE_SIZE};
use svsm_core::{BootConfig, SvsmModule};
use vtpm::Vtpm;

/// The module as the simulated machine runs it.
pub type SimModule = SvsmModule<SimMemory, SimPsp, Vtpm, AnyStore, SimEntropy>;

/// Guest memory size of the default machine (4 MiB).
pub const DEFAULT_PAGES: usize = 1024;
/// Where the default guest driver buffer starts (page 512).
pub const DRIVER_BUFFER_GPA: u64 = 512 * PAGE_SIZE;
/// Pages in the default driver buffer: room for a 64 KiB vault request and its response.
pub const DRIVER_BUFFER_PAGES: usize = 40;

/// A fixed chip seed, so the simulated VCEK is the same from run to run.
pub const DEFAULT_CHIP_SEED: [u8; 48] = [0x42; 48];

/// Why the machine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The test chain could not be built.
    #[error("test chain: {0}")]
    Chain(#[from] chain::ChainError),
}

/// A simulated machine shared between the guest side and whoever inspects it.
#[derive(Clone)]
pub struct SimMachine {
    module: Arc<Mutex<SimModule>>,
}

/// The boot configuration the simulated launch uses: root key pinned to the launch TCB.
pub fn boot_config(config: &LaunchConfig, expected_epoch: Option<u64>) -> BootConfig {
    BootConfig {
        min_tcb: svsm_abi::snp::TcbVersion::encode(&config.tcb, config.product.tcb_layout()),
        expected_epoch,
    }
}

impl SimMachine {
    /// A machine launched with `config`, a fresh store and a vTPM.
    pub fn new(config: LaunchConfig) -> Result<Self, SimError> {
        Self::boot(config, AnyStore::Memory(SimStore::new()), None)
    }

    /// Boots a machine on `store` (a reboot when the store holds sealed state).
    pub fn boot(
        config: LaunchConfig,
        store: AnyStore,
        expected_epoch: Option<u64>,
    ) -> Result<Self, SimError> {
        let boot = boot_config(&config, expected_epoch);
        let psp = SimPsp::new(config, DEFAULT_CHIP_SEED, Vmpl::ZERO)?;
        let module = SvsmModule::boot(
            SimMemory::new(DEFAULT_PAGES),
            psp,
            store,
            SimEntropy,
            Some(&mut VtpmFactory::default()),
            boot,
        );
        Ok(SimMachine {
            module: Arc::new(Mutex::new(module)),
        })
    }

    /// A machine from explicit parts; `with_tpm` chooses whether a vTPM is served.
    pub fn from_parts(memory: SimMemory, psp: SimPsp, with_tpm: bool) -> Self {
        let boot = boot_config(psp.config(), None);
        let store = AnyStore::Memory(SimStore::new());
        let module = if with_tpm {
            SvsmModule::boot(
                memory,
                psp,
                store,
                SimEntropy,
                Some(&mut VtpmFactory::default()),
                boot,
            )
        } else {
            SvsmModule::boot(
                memory,
                psp,
                store,
                SimEntropy,
                None::<&mut VtpmFactory>,
                boot,
            )
        };
        SimMachine {
            module: Arc::new(Mutex::new(module)),
        }
    }

    /// Exclusive access to the module (and through it memory, PSP and engine).
    pub fn module(&self) -> MutexGuard<'_, SimModule> {
        self.module.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A guest-side transport for a guest at `vmpl` owning the default driver buffer.
    pub fn transport(&self, vmpl: Vmpl) -> SimTransport {
        SimTransport {
            machine: self.clone(),
            vmpl,
            buffer_gpa: DRIVER_BUFFER_GPA,
            buffer_len: DRIVER_BUFFER_PAGES * PAGE_SIZE as usize,
        }
    }
}

/// The guest side of the simulated machine: SVSM calls go straight to the module's dispatcher,
/// with the caller's VMPL, and the driver buffer lives in simulated guest memory.
pub struct SimTransport {
    machine: SimMachine,
    vmpl: Vmpl,
    buffer_gpa: u64,
    buffer_len: usize,
}

impl SimTransport {
    /// The machine behind the transport.
    pub fn machine(&self) -> &SimMachine {
        &self.machine
    }

    fn range(&self, offset: usize, len: usize) -> Result<u64, TransportError> {
        let err = TransportError::BufferRange {
            offset,
            len,
            size: self.buffer_len,
        };
        let end = offset.checked_add(len).ok_or(err)?;
        if end > self.buffer_len {
            return Err(err);
        }
        Ok(self.buffer_gpa + offset as u64)
    }
}

impl SvsmTransport for SimTransport {
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        self.machine.module().handle_call(self.vmpl, regs);
        Ok(())
    }

    fn buffer_gpa(&self) -> u64 {
        self.buffer_gpa
    }

    fn buffer_len(&self) -> usize {
        self.buffer_len
    }

    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        let gpa = self.range(offset, data.len())?;
        self.machine
            .module()
            .memory_mut()
            .write(self.vmpl, Gpa::new(gpa), data)
            .map_err(|_| TransportError::BufferRange {
                offset,
                len: data.len(),
                size: self.buffer_len,
            })
    }

    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let gpa = self.range(offset, out.len())?;
        self.machine
            .module()
            .memory_mut()
            .read(self.vmpl, Gpa::new(gpa), out)
            .map_err(|_| TransportError::BufferRange {
                offset,
                len: out.len(),
                size: self.buffer_len,
            })
    }
}
