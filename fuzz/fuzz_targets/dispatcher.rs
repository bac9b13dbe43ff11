//! The SVSM dispatcher driven by a hostile guest: arbitrary registers, caller VMPL, guest
//! memory contents and page permissions, into svsm-core with the real vTPM engine and the
//! vault behind it.
//! The module must answer every call with a result code; any panic is a finding.
//!
//! Input: 40 bytes RAX RCX RDX R8 R9 (LE), 1 byte VMPL, 1 byte per-page permission bits for
//! the 8 pages, then up to 8 pages of guest memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use svsm_abi::snp::msg::KeyRequest;
use svsm_abi::snp::RawReport;
use svsm_abi::svsm::CallRegisters;
use svsm_core::platform::{
    DerivedKey, Entropy, EntropyError, Gpa, GuestMemory, MemoryError, PspError, SecureProcessor,
    StateStore, StoreError, Vmpl, PAGE_SIZE,
};
use svsm_core::tpm::{TpmEngineError, TpmState};
use svsm_core::{BootConfig, SvsmModule, TpmFactory};
use vtpm::Vtpm;
use zerocopy::FromZeros;

const PAGES: usize = 8;

/// Guest memory from the fuzz input: bit n of a page's byte = VMPLn may access it.
struct FuzzMemory {
    bytes: Vec<u8>,
    access: [u8; PAGES],
}

impl FuzzMemory {
    fn check(&self, vmpl: Vmpl, gpa: Gpa, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let end = gpa.raw().checked_add(len as u64).ok_or(MemoryError::Overflow { gpa: gpa.raw(), len })?;
        if end > self.bytes.len() as u64 {
            return Err(MemoryError::NotPresent(gpa.raw()));
        }
        if len == 0 {
            return Ok(0..0);
        }
        let first = gpa.raw() / PAGE_SIZE;
        let last = (end - 1) / PAGE_SIZE;
        for page in first..=last {
            if self.access[page as usize] & (1 << vmpl.level()) == 0 {
                return Err(MemoryError::NoAccess { gpa: page * PAGE_SIZE, vmpl: vmpl.level() });
            }
        }
        Ok(gpa.raw() as usize..end as usize)
    }
}

impl GuestMemory for FuzzMemory {
    fn read(&mut self, vmpl: Vmpl, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.check(vmpl, gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r.clone()]);
        // A racing vCPU: what was read changes at once.
        for b in &mut self.bytes[r] {
            *b ^= 0xA5;
        }
        Ok(())
    }
    fn write(&mut self, vmpl: Vmpl, gpa: Gpa, data: &[u8]) -> Result<(), MemoryError> {
        let r = self.check(vmpl, gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

/// A secure processor that answers deterministically (no signature: the target exercises the
/// module's handling, not the PSP's cryptography).
struct FuzzPsp;

impl SecureProcessor for FuzzPsp {
    fn attestation_report(&mut self, report_data: &[u8; 64], vmpl: Vmpl) -> Result<RawReport, PspError> {
        let mut r = RawReport::new_zeroed();
        r.report_data = *report_data;
        r.vmpl.set(u32::from(vmpl.level()));
        Ok(r)
    }
    fn certificates(&mut self) -> Result<Vec<u8>, PspError> {
        Ok(vec![0; 24])
    }
    fn derived_key(&mut self, _request: &KeyRequest) -> Result<DerivedKey, PspError> {
        Ok(DerivedKey([7; 32]))
    }
}

/// Sealed state kept in memory (the dispatcher seals after NV changes and vault mutations).
#[derive(Default)]
struct FuzzStore([Option<Vec<u8>>; 2]);

impl StateStore for FuzzStore {
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError> {
        self.0.get(slot as usize).cloned().flatten().ok_or(StoreError::Empty(slot))
    }
    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError> {
        *self.0.get_mut(slot as usize).ok_or(StoreError::Unavailable)? = Some(blob.to_vec());
        Ok(())
    }
}

/// Deterministic bytes (a counter through SHA-256), so findings reproduce.
struct FuzzEntropy(u64);

impl Entropy for FuzzEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        use sha2::Digest;
        for chunk in buf.chunks_mut(32) {
            self.0 += 1;
            let block = sha2::Sha256::digest(self.0.to_le_bytes());
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

struct Factory;

impl TpmFactory for Factory {
    type Engine = Vtpm;
    fn manufacture(&mut self) -> Result<Vtpm, TpmEngineError> {
        Vtpm::manufacture(Default::default()).map_err(|_| TpmEngineError::InUse)
    }
    fn restore(&mut self, state: &TpmState) -> Result<Vtpm, TpmEngineError> {
        Vtpm::restore(state, Default::default()).map_err(|_| TpmEngineError::StateCorrupt)
    }
}

type Module = SvsmModule<FuzzMemory, FuzzPsp, Vtpm, FuzzStore, FuzzEntropy>;

fn module() -> &'static Mutex<Module> {
    static MODULE: OnceLock<Mutex<Module>> = OnceLock::new();
    MODULE.get_or_init(|| {
        let memory = FuzzMemory { bytes: vec![0; PAGES * PAGE_SIZE as usize], access: [0xF; PAGES] };
        let config = BootConfig { min_tcb: Default::default(), expected_epoch: None };
        Mutex::new(SvsmModule::boot(
            memory,
            FuzzPsp,
            FuzzStore::default(),
            FuzzEntropy(0),
            Some(&mut Factory),
            config,
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 40 + 1 + PAGES {
        return;
    }
    let reg = |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap());
    let mut regs = CallRegisters { rax: reg(0), rcx: reg(1), rdx: reg(2), r8: reg(3), r9: reg(4) };
    let vmpl = Vmpl::new(data[40] % 4).unwrap_or(Vmpl::ZERO);
    let mut module = module().lock().unwrap_or_else(|p| p.into_inner());
    let memory = module.memory_mut();
    memory.access.copy_from_slice(&data[41..41 + PAGES]);
    let contents = &data[41 + PAGES..];
    let n = contents.len().min(memory.bytes.len());
    memory.bytes.fill(0);
    memory.bytes[..n].copy_from_slice(&contents[..n]);
    module.handle_call(vmpl, &mut regs);
    // Only the low 32 bits of RAX carry the result.
    assert_eq!(regs.rax >> 32, 0);
    if let Some(tpm) = module.tpm_mut() {
        if !tpm.is_powered_on() {
            let _ = tpm.power_on();
        }
    }
});
