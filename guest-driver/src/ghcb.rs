//! The real transport: how a guest kernel at VMPL1+ calls the SVSM on SEV-SNP hardware.
//!
//! Protocol (SVSM spec §5; GHCB spec "SNP Run VMPL request"): set CALL_PENDING in this vCPU's
//! calling area, ask the hypervisor to run VMPL0 through the GHCB MSR protocol (GHCBData[11:0] =
//! 0x016, [39:32] = target VMPL 0), execute VMGEXIT with the call registers loaded, check the
//! hypervisor's answer (0x017 with [63:32] = 0), restore the GHCB MSR, and atomically exchange
//! CALL_PENDING with 0: a non-zero old value means the SVSM never ran the call.
//!
//! This module is the only `unsafe` code of the crate. It must run at CPL0 in an SEV-SNP guest
//! below VMPL0; it is compiled for `x86_64-unknown-none` in CI but cannot run on the host.

use crate::transport::{SvsmTransport, TransportError};
use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};
use svsm_abi::svsm::CallRegisters;

/// The GHCB MSR.
const MSR_GHCB: u32 = 0xC001_0130;
/// GHCB MSR protocol: SNP Run VMPL request.
const GHCB_MSR_RUN_VMPL_REQ: u64 = 0x016;
/// GHCB MSR protocol: SNP Run VMPL response.
const GHCB_MSR_RUN_VMPL_RESP: u64 = 0x017;

/// Calls the SVSM through the GHCB MSR protocol.
pub struct GhcbMsrTransport {
    calling_area: *mut u8,
    buffer: *mut u8,
    buffer_gpa: u64,
    buffer_len: usize,
}

impl GhcbMsrTransport {
    /// Creates the transport.
    ///
    /// # Safety
    /// `calling_area` must be the mapped virtual address of this vCPU's 4 KiB SVSM calling area
    /// and `buffer` the mapped virtual address of `buffer_len` bytes of guest memory at guest
    /// physical address `buffer_gpa`; both must stay valid, and be used by nothing else, for
    /// the transport's lifetime. The caller runs at CPL0 in an SEV-SNP guest below VMPL0, on
    /// the vCPU owning the calling area, with interrupts disabled around each call.
    pub unsafe fn new(
        calling_area: *mut u8,
        buffer: *mut u8,
        buffer_gpa: u64,
        buffer_len: usize,
    ) -> Self {
        GhcbMsrTransport {
            calling_area,
            buffer,
            buffer_gpa,
            buffer_len,
        }
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), TransportError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.buffer_len => Ok(()),
            _ => Err(TransportError::BufferRange {
                offset,
                len,
                size: self.buffer_len,
            }),
        }
    }
}

/// Reads an MSR.
///
/// # Safety
/// CPL0 only; `msr` must exist.
unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees CPL0 and an existing MSR; rdmsr touches no memory.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// CPL0 only; `msr` must exist and accept `value`.
unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees CPL0 and a writable MSR; wrmsr touches no memory.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags));
    }
}

impl SvsmTransport for GhcbMsrTransport {
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        // SAFETY: `calling_area` is this vCPU's mapped calling area (constructor contract);
        // byte 0 is CALL_PENDING, accessed atomically because the SVSM clears it.
        let pending = unsafe { AtomicU8::from_ptr(self.calling_area) };
        pending.store(1, Ordering::SeqCst);
        // SAFETY: CPL0 in an SNP guest (constructor contract); the GHCB MSR exists there.
        let saved = unsafe { rdmsr(MSR_GHCB) };
        // SAFETY: as above; the value is a GHCB MSR protocol request for VMPL 0.
        unsafe { wrmsr(MSR_GHCB, GHCB_MSR_RUN_VMPL_REQ) };
        // SAFETY: VMGEXIT (`rep vmmcall`) hands control to the hypervisor, which runs the SVSM
        // at VMPL0; the SVSM reads and rewrites RAX, RCX, RDX, R8 and R9 of this vCPU and may
        // write guest memory (the buffers we own), so all five are in/out and memory is
        // clobbered (no `nomem`).
        unsafe {
            asm!("rep vmmcall",
                inout("rax") regs.rax, inout("rcx") regs.rcx, inout("rdx") regs.rdx,
                inout("r8") regs.r8, inout("r9") regs.r9, options(nostack));
        }
        // SAFETY: as for the first rdmsr.
        let response = unsafe { rdmsr(MSR_GHCB) };
        // SAFETY: restores the value read before the call.
        unsafe { wrmsr(MSR_GHCB, saved) };
        let was_pending = pending.swap(0, Ordering::SeqCst);
        if response & 0xFFF != GHCB_MSR_RUN_VMPL_RESP || response >> 32 != 0 {
            return Err(TransportError::Hypervisor(response));
        }
        if was_pending != 0 {
            return Err(TransportError::NotTaken);
        }
        Ok(())
    }

    fn buffer_gpa(&self) -> u64 {
        self.buffer_gpa
    }

    fn buffer_len(&self) -> usize {
        self.buffer_len
    }

    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        self.check(offset, data.len())?;
        // SAFETY: `offset + len <= buffer_len` was checked and the buffer is valid and ours
        // (constructor contract); `data` cannot overlap it (it is a Rust borrow elsewhere).
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.buffer.add(offset), data.len())
        };
        Ok(())
    }

    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        self.check(offset, out.len())?;
        // SAFETY: as in `write_buffer`, reading instead.
        unsafe {
            core::ptr::copy_nonoverlapping(self.buffer.add(offset), out.as_mut_ptr(), out.len())
        };
        Ok(())
    }
}
