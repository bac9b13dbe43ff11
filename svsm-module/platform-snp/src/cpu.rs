//! The CPU operations the backend needs, behind a small trait so host tests can drive them, and
//! typed wrappers around the RMP instructions (APM vol. 3, "PVALIDATE", "RMPADJUST").
//!
//! PVALIDATE (`F2 0F 01 FF`): RAX = linear address, RCX bit 0 = 2 MiB, RDX bit 0 = validate;
//! out RAX = 0 / 1 FAIL_INPUT / 6 FAIL_SIZEMISMATCH, and CF = 1 with RAX = 0 when the Validated
//! bit already had the requested value. RMPADJUST (`F3 0F 01 FE`): RAX = linear address, RCX
//! bit 0 = 2 MiB, RDX = [7:0] target VMPL, [15:8] permissions, bit 16 VMSA; out RAX = 0 /
//! 1 FAIL_INPUT / 2 FAIL_PERMISSION / 6 FAIL_SIZEMISMATCH. Only VMPL0 executes PVALIDATE, and
//! RMPADJUST changes only numerically higher VMPLs.

use bitflags::bitflags;

/// Page size operand of PVALIDATE and RMPADJUST (RCX bit 0), svsm-abi's.
pub use svsm_core::abi::core_protocol::PageSize;

/// What PVALIDATE left in RAX and CF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvalidateOutput {
    /// RAX: the return code.
    pub rax: u64,
    /// CF: set when nothing changed.
    pub carry: bool,
}

/// The CPU operations the SNP backend uses. [`crate::hw::HardwareCpu`] executes the real
/// instructions; tests implement the trait with a model of the RMP and the hypervisor.
pub trait CpuOps {
    /// PVALIDATE the page at linear address `va`.
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateOutput;
    /// RMPADJUST the page at linear address `va` with the RDX operand `attrs`; returns RAX.
    fn rmpadjust(&mut self, va: u64, size: PageSize, attrs: u64) -> u64;
    /// Reads the GHCB MSR (0xC001_0130).
    fn read_ghcb_msr(&mut self) -> u64;
    /// Writes the GHCB MSR.
    fn write_ghcb_msr(&mut self, value: u64);
    /// VMGEXIT: hands control to the hypervisor, which reads the GHCB MSR (and the GHCB page it
    /// names) and may rewrite both before returning.
    fn vmgexit(&mut self);
    /// One RDSEED of 64 bits, or `None` when the instruction reported no entropy (CF = 0).
    fn rdseed(&mut self) -> Option<u64>;
    /// RDTSC.
    fn rdtsc(&self) -> u64;
    /// INVLPG of `va` on this CPU.
    fn flush_tlb(&mut self, va: u64);
    /// Every TLB entry of this guest on every CPU, waited for (INVLPGB with no address, ASID
    /// or PCID filter and global entries included, then TLBSYNC): after access is taken away in
    /// the RMP, no vCPU at any VMPL may keep using a translation made under the old rights.
    fn flush_tlb_all(&mut self);
    /// HLT (returns when an interrupt or the hypervisor wakes the CPU).
    fn halt(&mut self);
}

bitflags! {
    /// VMPL permission mask of RMPADJUST (RDX bits 15:8, stored here shifted down by 8).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct VmplPermissions: u8 {
        /// Read.
        const READ = 1 << 0;
        /// Write.
        const WRITE = 1 << 1;
        /// Execute at CPL3.
        const EXEC_USER = 1 << 2;
        /// Execute at CPL0..2.
        const EXEC_SUPERVISOR = 1 << 3;
    }
}

impl VmplPermissions {
    /// Read, write and execute at every CPL.
    pub const RWX: VmplPermissions = VmplPermissions::all();
}

/// PVALIDATE return codes.
pub const PVALIDATE_FAIL_INPUT: u64 = 1;
/// PVALIDATE / RMPADJUST: the page size differs from the RMP entry's.
pub const FAIL_SIZEMISMATCH: u64 = 6;
/// RMPADJUST: invalid input.
pub const RMPADJUST_FAIL_INPUT: u64 = 1;
/// RMPADJUST: the caller lacks the permission it tries to grant, or targets a VMPL not below it.
pub const RMPADJUST_FAIL_PERMISSION: u64 = 2;
/// RDX bit 16 of RMPADJUST: the page is a VMSA.
pub const RMPADJUST_VMSA: u64 = 1 << 16;

/// Why PVALIDATE did not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PvalidateError {
    /// The address is not aligned to the page size (refused before executing).
    #[error("PVALIDATE address {va:#x} is not aligned to {size:?}")]
    Misaligned {
        /// The address.
        va: u64,
        /// The size asked for.
        size: PageSize,
    },
    /// FAIL_INPUT (1).
    #[error("PVALIDATE of {0:#x} failed: FAIL_INPUT")]
    FailInput(u64),
    /// FAIL_SIZEMISMATCH (6): a 2 MiB request over 4 KiB RMP entries (or the reverse).
    #[error("PVALIDATE of {0:#x} failed: FAIL_SIZEMISMATCH")]
    SizeMismatch(u64),
    /// CF = 1: the Validated bit already had the requested value; nothing changed.
    #[error("PVALIDATE of {0:#x} changed nothing (already in the requested state)")]
    Unchanged(u64),
    /// A return code the APM does not define for PVALIDATE.
    #[error("PVALIDATE of {va:#x} returned undefined code {code:#x}")]
    Unknown {
        /// The address.
        va: u64,
        /// RAX.
        code: u64,
    },
}

/// Why RMPADJUST did not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RmpadjustError {
    /// The address is not aligned to the page size (refused before executing).
    #[error("RMPADJUST address {va:#x} is not aligned to {size:?}")]
    Misaligned {
        /// The address.
        va: u64,
        /// The size asked for.
        size: PageSize,
    },
    /// The target VMPL is not 1..=3 (VMPL0 adjusts only lower-privileged levels).
    #[error("RMPADJUST target VMPL{0} is not 1..=3")]
    TargetVmpl(u8),
    /// FAIL_INPUT (1).
    #[error("RMPADJUST of {0:#x} failed: FAIL_INPUT")]
    FailInput(u64),
    /// FAIL_PERMISSION (2).
    #[error("RMPADJUST of {0:#x} failed: FAIL_PERMISSION")]
    Permission(u64),
    /// FAIL_SIZEMISMATCH (6).
    #[error("RMPADJUST of {0:#x} failed: FAIL_SIZEMISMATCH")]
    SizeMismatch(u64),
    /// A return code the APM does not define for RMPADJUST.
    #[error("RMPADJUST of {va:#x} returned undefined code {code:#x}")]
    Unknown {
        /// The address.
        va: u64,
        /// RAX.
        code: u64,
    },
}

/// PVALIDATE `va` (validate or rescind), with the return codes as typed errors.
pub fn pvalidate<C: CpuOps + ?Sized>(
    cpu: &mut C,
    va: u64,
    size: PageSize,
    validate: bool,
) -> Result<(), PvalidateError> {
    if va % size.bytes() != 0 {
        return Err(PvalidateError::Misaligned { va, size });
    }
    let out = cpu.pvalidate(va, size, validate);
    match (out.rax, out.carry) {
        (0, false) => Ok(()),
        (0, true) => Err(PvalidateError::Unchanged(va)),
        (PVALIDATE_FAIL_INPUT, _) => Err(PvalidateError::FailInput(va)),
        (FAIL_SIZEMISMATCH, _) => Err(PvalidateError::SizeMismatch(va)),
        (code, _) => Err(PvalidateError::Unknown { va, code }),
    }
}

/// The RDX operand of RMPADJUST.
pub fn rmpadjust_attrs(target_vmpl: u8, perms: VmplPermissions, vmsa: bool) -> u64 {
    u64::from(target_vmpl) | (u64::from(perms.bits()) << 8) | if vmsa { RMPADJUST_VMSA } else { 0 }
}

/// RMPADJUST `va`: give VMPL`target_vmpl` (1..=3) exactly `perms`, and set or clear the VMSA
/// bit, with the return codes as typed errors.
pub fn rmpadjust<C: CpuOps + ?Sized>(
    cpu: &mut C,
    va: u64,
    size: PageSize,
    target_vmpl: u8,
    perms: VmplPermissions,
    vmsa: bool,
) -> Result<(), RmpadjustError> {
    if !(1..=3).contains(&target_vmpl) {
        return Err(RmpadjustError::TargetVmpl(target_vmpl));
    }
    if va % size.bytes() != 0 {
        return Err(RmpadjustError::Misaligned { va, size });
    }
    match cpu.rmpadjust(va, size, rmpadjust_attrs(target_vmpl, perms, vmsa)) {
        0 => Ok(()),
        RMPADJUST_FAIL_INPUT => Err(RmpadjustError::FailInput(va)),
        RMPADJUST_FAIL_PERMISSION => Err(RmpadjustError::Permission(va)),
        FAIL_SIZEMISMATCH => Err(RmpadjustError::SizeMismatch(va)),
        code => Err(RmpadjustError::Unknown { va, code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ScriptedCpu;

    #[test]
    fn pvalidate_codes_are_typed() {
        let mut cpu = ScriptedCpu::default();
        let cases = [
            ((0, false), Ok(())),
            ((0, true), Err(PvalidateError::Unchanged(0x3000))),
            ((1, false), Err(PvalidateError::FailInput(0x3000))),
            ((6, false), Err(PvalidateError::SizeMismatch(0x3000))),
            (
                (9, false),
                Err(PvalidateError::Unknown {
                    va: 0x3000,
                    code: 9,
                }),
            ),
        ];
        for ((rax, carry), want) in cases {
            cpu.pvalidate_out.push_back(PvalidateOutput { rax, carry });
            assert_eq!(pvalidate(&mut cpu, 0x3000, PageSize::Size4K, true), want);
        }
        assert_eq!(
            cpu.pvalidate_calls,
            std::vec![(0x3000, PageSize::Size4K, true); 5]
        );
        // Misaligned addresses never reach the instruction.
        assert_eq!(
            pvalidate(&mut cpu, 0x1000, PageSize::Size2M, false),
            Err(PvalidateError::Misaligned {
                va: 0x1000,
                size: PageSize::Size2M
            })
        );
        assert_eq!(cpu.pvalidate_calls.len(), 5);
        cpu.pvalidate_out.push_back(PvalidateOutput {
            rax: 0,
            carry: false,
        });
        pvalidate(&mut cpu, 0x20_0000, PageSize::Size2M, false).unwrap();
        assert_eq!(
            cpu.pvalidate_calls.last(),
            Some(&(0x20_0000, PageSize::Size2M, false))
        );
    }

    #[test]
    fn rmpadjust_operands_and_codes() {
        assert_eq!(rmpadjust_attrs(1, VmplPermissions::READ, true), 0x1_0101);
        assert_eq!(rmpadjust_attrs(2, VmplPermissions::RWX, false), 0x0F02);
        assert_eq!(
            rmpadjust_attrs(
                3,
                VmplPermissions::WRITE | VmplPermissions::EXEC_SUPERVISOR,
                false
            ),
            0x0A03
        );
        let mut cpu = ScriptedCpu::default();
        let cases = [
            (0, Ok(())),
            (1, Err(RmpadjustError::FailInput(0x5000))),
            (2, Err(RmpadjustError::Permission(0x5000))),
            (6, Err(RmpadjustError::SizeMismatch(0x5000))),
            (
                3,
                Err(RmpadjustError::Unknown {
                    va: 0x5000,
                    code: 3,
                }),
            ),
        ];
        for (rax, want) in cases {
            cpu.rmpadjust_out.push_back(rax);
            assert_eq!(
                rmpadjust(
                    &mut cpu,
                    0x5000,
                    PageSize::Size4K,
                    2,
                    VmplPermissions::RWX,
                    false
                ),
                want
            );
        }
        assert!(cpu
            .rmpadjust_calls
            .iter()
            .all(|c| *c == (0x5000, PageSize::Size4K, 0x0F02)));
        for vmpl in [0, 4, 255] {
            assert_eq!(
                rmpadjust(
                    &mut cpu,
                    0x5000,
                    PageSize::Size4K,
                    vmpl,
                    VmplPermissions::READ,
                    false
                ),
                Err(RmpadjustError::TargetVmpl(vmpl))
            );
        }
        assert_eq!(
            rmpadjust(
                &mut cpu,
                0x5001,
                PageSize::Size4K,
                1,
                VmplPermissions::READ,
                false
            ),
            Err(RmpadjustError::Misaligned {
                va: 0x5001,
                size: PageSize::Size4K
            })
        );
        assert_eq!(cpu.rmpadjust_calls.len(), 5);
    }
}
