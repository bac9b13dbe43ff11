//! [`HardwareCpu`]: the real instructions behind [`CpuOps`]. Encodings: PVALIDATE
//! `F2 0F 01 FF`, RMPADJUST `F3 0F 01 FE`, VMGEXIT `F3 0F 01 D9` (`rep vmmcall`); emitted as
//! bytes so no assembler support for the SNP mnemonics is needed.

use crate::cpu::{CpuOps, PageSize, PvalidateOutput};
use core::arch::asm;
use svsm_abi::snp::ghcb::GHCB_MSR;

/// The CPU this code runs on, at VMPL0 of an SEV-SNP guest.
#[derive(Clone, Copy, Debug)]
pub struct HardwareCpu {
    _private: (),
}

impl HardwareCpu {
    /// A handle on the executing CPU's instructions.
    ///
    /// # Safety
    /// The caller runs at CPL0 in an SEV-SNP guest at VMPL0 (PVALIDATE faults elsewhere), with
    /// interrupts disabled while the GHCB MSR holds an MSR-protocol value. Every address later
    /// passed to `pvalidate` or `rmpadjust` names a page that no Rust reference or live object
    /// depends on in a way the change would break: rescinding validation of (or revoking access
    /// to) memory the program still uses is the caller's responsibility to exclude.
    pub unsafe fn new() -> Self {
        HardwareCpu { _private: () }
    }
}

impl CpuOps for HardwareCpu {
    fn pvalidate(&mut self, va: u64, size: PageSize, validate: bool) -> PvalidateOutput {
        let rax: u64;
        let carry: u8;
        // SAFETY: PVALIDATE changes only the RMP Validated bit of the page at `va`; the
        // constructor's contract makes the caller responsible for which pages those are. It
        // reads RAX/RCX/RDX, writes RAX and the flags (captured by SETC), and touches no Rust
        // memory; `nomem` is not claimed because later accesses to that page depend on it.
        unsafe {
            asm!(
                ".byte 0xf2, 0x0f, 0x01, 0xff",
                "setc {cf}",
                inout("rax") va => rax,
                in("rcx") size.encoding(),
                in("rdx") u64::from(validate),
                cf = out(reg_byte) carry,
                options(nostack),
            );
        }
        PvalidateOutput {
            rax,
            carry: carry != 0,
        }
    }

    fn rmpadjust(&mut self, va: u64, size: PageSize, attrs: u64) -> u64 {
        let rax: u64;
        // SAFETY: RMPADJUST changes only the RMP permissions/VMSA bit of the page at `va` for a
        // lower-privileged VMPL, which cannot affect VMPL0's own accesses; the caller chose the
        // page (constructor contract). Registers as declared; no Rust memory is touched.
        unsafe {
            asm!(
                ".byte 0xf3, 0x0f, 0x01, 0xfe",
                inout("rax") va => rax,
                in("rcx") size.encoding(),
                in("rdx") attrs,
                options(nostack),
            );
        }
        rax
    }

    fn read_ghcb_msr(&mut self) -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: CPL0 in an SEV-SNP guest (constructor contract), where the GHCB MSR exists;
        // RDMSR touches no memory.
        unsafe {
            asm!("rdmsr", in("ecx") GHCB_MSR, out("eax") lo, out("edx") hi,
                options(nomem, nostack, preserves_flags));
        }
        (u64::from(hi) << 32) | u64::from(lo)
    }

    fn write_ghcb_msr(&mut self, value: u64) {
        // SAFETY: CPL0 in an SEV-SNP guest (constructor contract); the GHCB MSR accepts any
        // value (a GHCB GPA or an MSR-protocol request) and WRMSR touches no memory.
        unsafe {
            asm!("wrmsr", in("ecx") GHCB_MSR, in("eax") value as u32, in("edx") (value >> 32) as u32,
                options(nostack, preserves_flags));
        }
    }

    fn vmgexit(&mut self) {
        // SAFETY: VMGEXIT hands control to the hypervisor, which may rewrite the GHCB MSR and
        // the shared pages (memory is therefore clobbered: no `nomem`). Under SEV-SNP the
        // hypervisor cannot change this vCPU's registers or private memory, so no register is
        // declared as written.
        unsafe {
            asm!("rep vmmcall", options(nostack));
        }
    }

    fn rdseed(&mut self) -> Option<u64> {
        let value: u64;
        let ok: u8;
        // SAFETY: RDSEED writes a register and CF only; it touches no memory.
        unsafe {
            asm!("rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                options(nomem, nostack));
        }
        (ok != 0).then_some(value)
    }

    fn rdtsc(&self) -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: RDTSC writes EAX/EDX only.
        unsafe {
            asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
        }
        (u64::from(hi) << 32) | u64::from(lo)
    }

    fn flush_tlb(&mut self, va: u64) {
        // SAFETY: INVLPG drops a TLB entry; it never faults on an unmapped address and makes
        // no access visible to Rust.
        unsafe {
            asm!("invlpg [{va}]", va = in(reg) va, options(nostack, preserves_flags));
        }
    }

    fn flush_tlb_all(&mut self) {
        // SAFETY: INVLPGB (0F 01 FE) with RAX = 8 (include global entries, no VA/PCID/ASID
        // filter), ECX = 0, EDX = 0 drops this guest's TLB entries on every CPU; TLBSYNC
        // (0F 01 FF) waits for that to finish. Neither touches memory Rust can see. The image
        // checks at boot that the CPU has INVLPGB (CPUID Fn8000_0008 EBX[3]).
        unsafe {
            asm!(
                ".byte 0x0f, 0x01, 0xfe",
                ".byte 0x0f, 0x01, 0xff",
                in("rax") 8u64,
                in("ecx") 0u32,
                in("edx") 0u32,
                options(nostack, preserves_flags),
            );
        }
    }

    fn halt(&mut self) {
        // SAFETY: HLT stops the CPU until the next interrupt; CPL0 (constructor contract).
        unsafe {
            asm!("hlt", options(nomem, nostack, preserves_flags));
        }
    }
}
