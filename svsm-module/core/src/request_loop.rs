//! Serving one entry into VMPL0 on behalf of a guest vCPU (SVSM spec, AMD pub. 58019, §5): the
//! calling area's SVSM_CALL_PENDING protocol and the guest's registers in its VMSA, read and
//! written back the way Linux (`svsm_issue_call`) and OVMF expect.
//!
//! Order, per entry: clear the guest VMSA's EFER.SVME (so the host cannot run the vCPU while
//! the SVSM edits it); a call only when the guest left with VMGEXIT (exit code 0x403) **and**
//! its calling area says CALL_PENDING = 1 — otherwise a spurious entry: nothing is done; clear
//! CALL_PENDING; take RAX, RCX, RDX, R8, R9 from the VMSA; dispatch; write all five back (a
//! register the call did not change keeps the guest's value: Linux takes an output, e.g. an
//! attestation length, only from a register that changed); set SVME again. RIP is not touched:
//! after VMGEXIT it already points past the instruction.
//!
//! SVSM_ERR_BUSY is bounded: Linux and OVMF re-issue a call answered BUSY with interrupts off,
//! so after [`MAX_CONSECUTIVE_BUSY`] BUSY answers in a row to one vCPU the next one is turned
//! into SVSM_ERR_INVALID_REQUEST (the guest's call fails instead of spinning for ever).

use crate::core_protocol::{Caller, CoreProtocol};
use crate::platform::{Entropy, Gpa, GuestMemory, MemoryError, Rmp, SecureProcessor, StateStore};
use crate::platform::{VcpuControl, Vmpl};
use crate::tpm::TpmEngine;
use crate::SvsmModule;
use alloc::collections::BTreeMap;
use svsm_abi::snp::vmsa;
use svsm_abi::svsm::{CallRegisters, ResultCode};

/// BUSY answers in a row to one vCPU before the next becomes INVALID_REQUEST.
pub const MAX_CONSECUTIVE_BUSY: u32 = 1000;

/// What an entry into VMPL0 was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// A call was served; RAX got this result.
    Call(u32),
    /// The caller deleted its own vCPU: nothing is written back to the (former) VMSA.
    Deleted(u32),
    /// Not a call: the guest did not leave with VMGEXIT (its exit code).
    NotVmgexit(u64),
    /// Not a call: the calling area has no call pending.
    NotPending,
    /// Not a call: the caller cannot access its own calling area.
    CallingAreaFault(MemoryError),
}

/// Why an entry could not be served at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoopError {
    /// The vCPU is not one the SVSM serves.
    #[error("vCPU {0} is not served")]
    UnknownVcpu(u32),
    /// The VMSA could not be accessed (the SVSM's own page: an internal fault).
    #[error("VMSA: {0}")]
    Memory(MemoryError),
}

/// The request loop's state: the core protocol and the BUSY counters.
#[derive(Debug)]
pub struct RequestLoop {
    /// The core protocol (vCPUs, calling areas).
    pub core: CoreProtocol,
    busy: BTreeMap<u32, u32>,
}

fn field(vmsa_gpa: Gpa, offset: usize) -> Gpa {
    Gpa::new(vmsa_gpa.raw() + offset as u64)
}

impl RequestLoop {
    /// A loop over `core`'s vCPUs.
    pub fn new(core: CoreProtocol) -> Self {
        RequestLoop {
            core,
            busy: BTreeMap::new(),
        }
    }

    /// Serves one entry into VMPL0 for the guest vCPU `apic_id`.
    pub fn serve<M, P, T, S, R, V>(
        &mut self,
        module: &mut SvsmModule<M, P, T, S, R>,
        vcpus: &mut V,
        apic_id: u32,
    ) -> Result<Served, LoopError>
    where
        M: GuestMemory + Rmp,
        P: SecureProcessor,
        T: TpmEngine,
        S: StateStore,
        R: Entropy,
        V: VcpuControl,
    {
        let record = *self
            .core
            .current(apic_id)
            .ok_or(LoopError::UnknownVcpu(apic_id))?;
        let caller = Caller {
            vmpl: record.vmpl,
            apic_id,
        };
        let mem = module.memory_mut();
        let read_u64 = |mem: &mut M, offset: usize| -> Result<u64, LoopError> {
            let mut b = [0u8; 8];
            mem.read(Vmpl::ZERO, field(record.vmsa, offset), &mut b)
                .map_err(LoopError::Memory)?;
            Ok(u64::from_le_bytes(b))
        };
        let write_u64 = |mem: &mut M, offset: usize, v: u64| -> Result<(), LoopError> {
            mem.write(Vmpl::ZERO, field(record.vmsa, offset), &v.to_le_bytes())
                .map_err(LoopError::Memory)
        };
        // 1. Keep the host from running the vCPU while its VMSA is read and edited.
        let efer = read_u64(mem, vmsa::EFER)?;
        write_u64(mem, vmsa::EFER, efer & !vmsa::EFER_SVME)?;
        let resume = |mem: &mut M| write_u64(mem, vmsa::EFER, efer | vmsa::EFER_SVME);

        // 2. A call only after VMGEXIT with CALL_PENDING set.
        let exit_code = read_u64(mem, vmsa::GUEST_EXIT_CODE)?;
        if exit_code != vmsa::EXIT_CODE_VMGEXIT {
            resume(mem)?;
            return Ok(Served::NotVmgexit(exit_code));
        }
        let mut pending = [0u8; 1];
        let ca = mem
            .read(caller.vmpl, record.ca, &mut pending)
            .and_then(|()| match pending[0] {
                0 => Ok(()),
                // 3. Clear CALL_PENDING (Linux exchanges it with 0 after the call and expects 0).
                _ => mem.write(caller.vmpl, record.ca, &[0]),
            });
        match ca {
            Err(e) => {
                // The guest made its own calling area unusable: no call can be pending.
                resume(mem)?;
                return Ok(Served::CallingAreaFault(e));
            }
            Ok(()) if pending[0] == 0 => {
                resume(mem)?;
                return Ok(Served::NotPending);
            }
            Ok(()) => {}
        }

        // 4. The registers, the call, the registers back.
        let mut regs = CallRegisters {
            rax: read_u64(mem, vmsa::RAX)?,
            rcx: read_u64(mem, vmsa::RCX)?,
            rdx: read_u64(mem, vmsa::RDX)?,
            r8: read_u64(mem, vmsa::R8)?,
            r9: read_u64(mem, vmsa::R9)?,
        };
        if pending[0] != 1 {
            // A reserved CALL_PENDING value (SVSM spec §5 Table 4).
            regs.rax = u64::from(ResultCode::InvalidFormat.to_u32());
        } else {
            module.handle_vcpu_call(&mut self.core, vcpus, caller, &mut regs);
            regs.rax = self.bound_busy(apic_id, regs.rax);
        }
        let result = regs.rax as u32;
        let still_ours = self
            .core
            .vcpus()
            .iter()
            .any(|v| v.apic_id == apic_id && v.vmsa == record.vmsa);
        if !still_ours {
            return Ok(Served::Deleted(result));
        }
        let mem = module.memory_mut();
        for (offset, value) in [
            (vmsa::RAX, regs.rax),
            (vmsa::RCX, regs.rcx),
            (vmsa::RDX, regs.rdx),
            (vmsa::R8, regs.r8),
            (vmsa::R9, regs.r9),
        ] {
            write_u64(mem, offset, value)?;
        }
        // 5. Runnable again.
        resume(mem)?;
        Ok(Served::Call(result))
    }

    fn bound_busy(&mut self, apic_id: u32, rax: u64) -> u64 {
        let busy = ResultCode::from_rax(rax) == ResultCode::Busy;
        let count = self.busy.entry(apic_id).or_insert(0);
        if !busy {
            *count = 0;
            return rax;
        }
        *count += 1;
        if *count > MAX_CONSECUTIVE_BUSY {
            *count = 0;
            return u64::from(ResultCode::InvalidRequest.to_u32());
        }
        rax
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_protocol::VcpuRecord;

    #[test]
    fn busy_is_bounded_per_vcpu() {
        let boot = VcpuRecord {
            apic_id: 0,
            vmpl: Vmpl::new(1).unwrap(),
            vmsa: Gpa::new(0x1000),
            ca: Gpa::new(0x2000),
            boot: true,
            superseded: false,
        };
        let mut l = RequestLoop::new(CoreProtocol::new(Gpa::new(0), Gpa::new(0x1000), boot, 0));
        let busy = u64::from(ResultCode::Busy.to_u32());
        for _ in 0..MAX_CONSECUTIVE_BUSY {
            assert_eq!(l.bound_busy(0, busy), busy);
        }
        // Another vCPU has its own count.
        assert_eq!(l.bound_busy(1, busy), busy);
        assert_eq!(
            l.bound_busy(0, busy),
            u64::from(ResultCode::InvalidRequest.to_u32())
        );
        // The count starts over, and any other answer resets it.
        assert_eq!(l.bound_busy(0, busy), busy);
        assert_eq!(l.bound_busy(0, 0), 0);
        for _ in 0..MAX_CONSECUTIVE_BUSY {
            assert_eq!(l.bound_busy(0, busy), busy);
        }
    }
}
