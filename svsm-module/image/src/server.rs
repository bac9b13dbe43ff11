//! The call loop: framed SVSM calls (`svsm_abi::frame`) in, reply frames out, on COM1 or, when
//! QEMU has one, on the virtio console (the same byte stream; see [`crate::serial::CallLine`]).
//!
//! For each call frame: the frame's buffer is written into the emulated guest memory at the
//! frame's GPA (as the guest's own writes before VMGEXIT), `SvsmModule::handle_call` runs with
//! the frame's registers and VMPL, and the reply carries the result registers and the buffer as
//! the module left it. VMPL0 callers are refused (only the module itself is VMPL0).
//!
//! The stream is untrusted and may be garbage: the loop hunts for the `"SVFC"` magic, skipping
//! anything else; a frame with a valid magic whose length or fields are wrong gets an error
//! reply (RAX = SVSM_ERR_INVALID_PARAMETER, no buffer) and the hunt resumes. Nothing a host
//! sends makes the image panic. (A host that declares a length and then stops sending stalls
//! the loop: it can always stall its own VM.)
//!
//! One call protocol is answered by the image itself, before the module: [`CONTROL_PROTOCOL`],
//! **emulation only** (it does not exist on an SNP launch, where the host has no such channel):
//! call 0 writes the image statistics ([`Stats`]) into the buffer, call 1 shuts the machine down
//! (heap wiped, QEMU exit status 33), call 4 resets the vTPM as a platform reset does (QEMU's
//! TPM emulator backend sends one at every guest reset; state in NV is kept).

use crate::cpu::{exit_code, exit_qemu, rdtsc};
use crate::engine::GuardedTpm;
use crate::platform::Platform;
use crate::serial::CallLine;
use alloc::vec;
use svsm_abi::frame::{
    declared_length, encode_reply, CallFrame, CALL_HEADER_LEN, MAX_FRAME_BUFFER, REPLY_HEADER_LEN,
};
use svsm_abi::svsm::{CallId, CallRegisters, ResultCode};
use svsm_core::platform::{Gpa, GuestMemory, Vmpl};
use svsm_core::{StateStatus, SvsmModule};

/// The module as the image runs it on platform `P`.
pub type ImageModule<P> = SvsmModule<
    <P as Platform>::Memory,
    <P as Platform>::Psp,
    GuardedTpm,
    <P as Platform>::Store,
    <P as Platform>::Entropy,
>;

/// The emulation-only image control protocol number (not an SVSM protocol).
pub const CONTROL_PROTOCOL: u32 = 0xE000_0001;
/// Control call: statistics into the buffer.
pub const CONTROL_STATS: u32 = 0;
/// Control call: shut down (exit status 33).
pub const CONTROL_SHUTDOWN: u32 = 1;
/// Control call (only with `fault=control` on the command line): panic (exit status 99).
pub const CONTROL_PANIC: u32 = 2;
/// Control call (only with `fault=control`): read unmapped page 0 (#PF, exit status 101).
pub const CONTROL_PAGE_FAULT: u32 = 3;
/// Control call: reset the vTPM engine as a platform reset (`_TPM_Init`) does.
pub const CONTROL_TPM_RESET: u32 = 4;
/// First 8 bytes of the statistics record.
pub const STATS_MAGIC: &[u8; 8] = b"SVIMSTAT";

/// Sent once on COM1 when the module has booted and the loop starts; the host discards
/// everything before it (firmware banners).
pub const READY_MARKER: &[u8] = b"\nSVSM-IMAGE-READY\n";

/// Counters the statistics report, beyond the heap and stack.
#[derive(Default)]
pub struct Counters {
    /// Calls answered (including errors).
    pub calls: u64,
    /// Frames refused as malformed.
    pub malformed: u64,
    /// Bytes skipped while hunting for a frame.
    pub skipped: u64,
    /// TSC ticks spent in the last `handle_call`.
    pub last_call_ticks: u64,
}

/// What [`crate::stats_record`] needs from the loop.
pub struct Server<P: Platform> {
    line: CallLine,
    /// The module.
    pub module: ImageModule<P>,
    /// Loop counters.
    pub counters: Counters,
    /// The fault-injection control calls are enabled (`fault=control`).
    pub fault_calls: bool,
}

fn error_regs(code: ResultCode) -> CallRegisters {
    CallRegisters {
        rax: u64::from(code.to_u32()),
        ..Default::default()
    }
}

impl<P: Platform> Server<P> {
    /// A loop on `line` for `module`.
    pub fn new(line: CallLine, module: ImageModule<P>) -> Self {
        Server {
            line,
            module,
            counters: Counters::default(),
            fault_calls: false,
        }
    }

    fn send(&mut self, regs: &CallRegisters, buffer: &[u8], out: &mut [u8]) {
        match encode_reply(regs, buffer, out) {
            Ok(n) => self.line.write_all(out.get(..n).unwrap_or(&[])),
            Err(_) => {
                let mut small = [0u8; REPLY_HEADER_LEN];
                if let Ok(n) =
                    encode_reply(&error_regs(ResultCode::InvalidParameter), &[], &mut small)
                {
                    self.line.write_all(small.get(..n).unwrap_or(&[]));
                }
            }
        }
    }

    fn refuse(&mut self, out: &mut [u8]) {
        self.counters.malformed += 1;
        self.counters.calls += 1;
        self.send(&error_regs(ResultCode::InvalidParameter), &[], out);
    }

    /// Serves calls forever (or until a shutdown call).
    pub fn run(&mut self) -> ! {
        let mut frame = vec![0u8; CALL_HEADER_LEN + MAX_FRAME_BUFFER];
        let mut reply = vec![0u8; REPLY_HEADER_LEN + MAX_FRAME_BUFFER];
        let mut buffer = vec![0u8; MAX_FRAME_BUFFER];
        self.line.write_all(READY_MARKER);
        loop {
            // Hunt for the magic.
            let mut window = [0u8; 4];
            let mut seen = 0u64;
            loop {
                window.copy_within(1.., 0);
                window[3] = self.line.read_byte();
                seen += 1;
                if &window == b"SVFC" {
                    break;
                }
            }
            self.counters.skipped += seen.saturating_sub(4);
            frame[..4].copy_from_slice(b"SVFC");
            self.line.read_exact(&mut frame[4..8]);
            let total = match declared_length(&frame[..8]) {
                Ok(t) if t >= CALL_HEADER_LEN => t,
                _ => {
                    self.refuse(&mut reply);
                    continue;
                }
            };
            let Some(body) = frame.get_mut(8..total) else {
                self.refuse(&mut reply);
                continue;
            };
            self.line.read_exact(body);
            let Ok(call) = CallFrame::parse(&frame[..total]) else {
                self.refuse(&mut reply);
                continue;
            };
            let Some(vmpl) = Vmpl::new(call.vmpl).filter(|v| *v != Vmpl::ZERO) else {
                self.refuse(&mut reply);
                continue;
            };
            let len = call.buffer.len();
            let gpa = Gpa::new(call.buffer_gpa);
            let mut regs = call.regs;
            buffer[..len].copy_from_slice(call.buffer);
            self.counters.calls += 1;

            let id = CallId::from_rax(regs.rax);
            if id.protocol == CONTROL_PROTOCOL {
                self.control(id.call, &mut regs, &mut buffer[..len]);
                self.send(&regs, &buffer[..len], &mut reply);
                if id.call == CONTROL_SHUTDOWN && regs.rax == 0 {
                    crate::log!("svsm-image: shutdown requested by the host");
                    crate::wipe_secrets();
                    exit_qemu(exit_code::SUCCESS);
                }
                continue;
            }

            if self
                .module
                .memory_mut()
                .write(vmpl, gpa, &buffer[..len])
                .is_err()
            {
                self.send(&error_regs(ResultCode::InvalidAddress), &[], &mut reply);
                continue;
            }
            let start = rdtsc();
            self.module.handle_call(vmpl, &mut regs);
            self.counters.last_call_ticks = rdtsc().wrapping_sub(start);
            if self
                .module
                .memory_mut()
                .read(vmpl, gpa, &mut buffer[..len])
                .is_err()
            {
                self.send(&error_regs(ResultCode::InvalidAddress), &[], &mut reply);
                continue;
            }
            self.send(&regs, &buffer[..len], &mut reply);
        }
    }

    fn control(&mut self, call: u32, regs: &mut CallRegisters, buffer: &mut [u8]) {
        match call {
            CONTROL_STATS => {
                let record = crate::stats_record(self);
                let bytes = record.len() * 8;
                let Some(dst) = buffer.get_mut(..bytes) else {
                    *regs = error_regs(ResultCode::InvalidParameter);
                    return;
                };
                for (chunk, v) in dst.chunks_mut(8).zip(record.iter()) {
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
                *regs = CallRegisters {
                    rax: 0,
                    rcx: bytes as u64,
                    ..Default::default()
                };
            }
            CONTROL_SHUTDOWN => *regs = CallRegisters::default(),
            CONTROL_TPM_RESET => {
                *regs = match self.module.tpm_mut().map(|t| t.reset_for_firmware()) {
                    Some(Ok(())) => CallRegisters::default(),
                    Some(Err(_)) => error_regs(ResultCode::InvalidRequest),
                    None => error_regs(ResultCode::UnsupportedCall),
                };
            }
            CONTROL_PANIC if self.fault_calls => panic!("fault injection: panic requested"),
            CONTROL_PAGE_FAULT if self.fault_calls => {
                // SAFETY: deliberately faults: page 0 is unmapped, so this read raises #PF and
                // the exception handler stops the machine; the read never completes.
                let v =
                    unsafe { core::ptr::read_volatile(core::ptr::without_provenance::<u64>(8)) };
                regs.rcx = v;
            }
            _ => *regs = error_regs(ResultCode::UnsupportedCall),
        }
    }

    /// The module's state status as a number (0 fresh, 1 restored, 2 ephemeral).
    pub fn state_code(&self) -> u64 {
        match self.module.state_status() {
            StateStatus::Fresh => 0,
            StateStatus::Restored => 1,
            StateStatus::Ephemeral(_) => 2,
        }
    }
}
