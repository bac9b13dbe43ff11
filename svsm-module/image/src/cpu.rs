//! CPU and legacy-device access: port I/O, MSRs, the QEMU exit device, the TSC calibration
//! against the PIT, and exception handling (GDT with a TSS whose IST1 stack serves every
//! exception, so even a stack overflow into the guard page is reported instead of
//! triple-faulting: a triple fault would make QEMU exit with status 0).

use core::arch::asm;

/// Writes a byte to an I/O port.
#[cfg(not(feature = "snp"))]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O to the legacy devices this image drives (UARTs, PIT, debug ports); no
    // memory is touched.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a byte from an I/O port.
#[cfg(not(feature = "snp"))]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Writes a dword to an I/O port.
#[cfg(not(feature = "snp"))]
pub fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Writes an MSR.
///
/// # Safety
/// The MSR and value must be valid and must not break the running code's assumptions.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// QEMU's `isa-debug-exit` device (iobase 0xf4): QEMU exits with status `(code << 1) | 1`.
#[cfg(not(feature = "snp"))]
pub const EXIT_PORT: u16 = 0xf4;

/// Exit codes: QEMU's exit status is `(code << 1) | 1`.
pub mod exit_code {
    /// Clean shutdown on the host's request: status 33.
    #[cfg(not(feature = "snp"))]
    pub const SUCCESS: u32 = 0x10;
    /// Rust panic (secrets wiped): status 99.
    pub const PANIC: u32 = 0x31;
    /// CPU exception (secrets wiped): status 101.
    pub const EXCEPTION: u32 = 0x32;
    /// Fatal C condition (abort, assertion, stack smashing; secrets wiped): status 103.
    pub const C_FATAL: u32 = 0x33;
    /// The machine does not have the RAM the image needs: status 105.
    #[cfg(not(feature = "snp"))]
    pub const NO_MEMORY: u32 = 0x34;
}

/// Stops the machine with `code` (through the exit device; halts forever if there is none).
#[cfg(not(feature = "snp"))]
pub fn exit_qemu(code: u32) -> ! {
    outl(EXIT_PORT, code);
    loop {
        // SAFETY: interrupts are off; HLT just stops this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Ends the launch with `code` (GHCB MSR protocol termination, reason set 2): the SNP build's
/// exit device.
#[cfg(feature = "snp")]
pub fn exit_qemu(code: u32) -> ! {
    crate::snp::terminate(crate::snp::reason::SET, code as u8)
}

/// Reads the TSC.
pub fn rdtsc() -> u64 {
    libc_shim::time::rdtsc()
}

/// Measures the TSC frequency against PIT channel 2 (a 50 ms one-shot); falls back to
/// 2 GHz if the PIT never finishes (then times are approximate, not wrong in order).
#[cfg(not(feature = "snp"))]
pub fn calibrate_tsc() -> u64 {
    calibrate_tsc_with(&mut PortIo {
        inb: &mut inb,
        outb: &mut |port, value| outb(port, value),
        max_polls: 500_000_000,
    })
}

/// Port I/O for [`calibrate_tsc_with`]: the instructions under PVH, GHCB events under SNP.
pub struct PortIo<'a> {
    /// IN of one byte.
    pub inb: &'a mut dyn FnMut(u16) -> u8,
    /// OUT of one byte.
    pub outb: &'a mut dyn FnMut(u16, u8),
    /// Polls of the PIT before giving up (each is a VM exit).
    pub max_polls: u64,
}

/// [`calibrate_tsc`] over any port I/O. The PIT is the hypervisor's either way: under SNP the
/// result only paces timeouts and the TPM's clock, never a security decision.
pub fn calibrate_tsc_with(io: &mut PortIo<'_>) -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const WINDOW_DIV: u64 = 20; // 1/20 s
    let count = (PIT_HZ / WINDOW_DIV) as u16;
    let gate = (io.inb)(0x61);
    (io.outb)(0x61, (gate & !0x02) | 0x01); // gate on, speaker off
    (io.outb)(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0
    (io.outb)(0x42, count as u8);
    (io.outb)(0x42, (count >> 8) as u8);
    let g = (io.inb)(0x61) & !0x01;
    (io.outb)(0x61, g);
    (io.outb)(0x61, g | 0x01); // restart the count
    let start = rdtsc();
    let mut spins: u64 = 0;
    while (io.inb)(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > io.max_polls {
            return 2_000_000_000;
        }
    }
    let ticks = rdtsc().wrapping_sub(start);
    (io.outb)(0x61, gate);
    (ticks * WINDOW_DIV).max(1)
}

// --- descriptor tables -----------------------------------------------------------------------

/// The 64-bit TSS (only IST1 is used).
#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
struct ExceptionStack([u8; 32 * 1024]);

static mut TSS: Tss = Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: 104,
};
static mut EXCEPTION_STACK: ExceptionStack = ExceptionStack([0; 32 * 1024]);
static mut GDT: [u64; 5] = [0; 5];
static mut IDT: [[u64; 2]; 32] = [[0; 2]; 32];

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

// Exception entry stubs, one per vector 0..32: push a zero error code where the CPU pushes none
// (the second macro argument is 1 where it pushes one), then the vector, then call
// `rust_exception` with a pointer to the frame.
core::arch::global_asm!(
    ".macro EXC_STUB n, err",
    ".global exc_stub_\\n",
    "exc_stub_\\n:",
    ".if \\err == 0",
    "push 0",
    ".endif",
    "push \\n",
    "jmp exc_common",
    ".endm",
    "EXC_STUB 0, 0",
    "EXC_STUB 1, 0",
    "EXC_STUB 2, 0",
    "EXC_STUB 3, 0",
    "EXC_STUB 4, 0",
    "EXC_STUB 5, 0",
    "EXC_STUB 6, 0",
    "EXC_STUB 7, 0",
    "EXC_STUB 8, 1",
    "EXC_STUB 9, 0",
    "EXC_STUB 10, 1",
    "EXC_STUB 11, 1",
    "EXC_STUB 12, 1",
    "EXC_STUB 13, 1",
    "EXC_STUB 14, 1",
    "EXC_STUB 15, 0",
    "EXC_STUB 16, 0",
    "EXC_STUB 17, 1",
    "EXC_STUB 18, 0",
    "EXC_STUB 19, 0",
    "EXC_STUB 20, 0",
    "EXC_STUB 21, 1",
    "EXC_STUB 22, 0",
    "EXC_STUB 23, 0",
    "EXC_STUB 24, 0",
    "EXC_STUB 25, 0",
    "EXC_STUB 26, 0",
    "EXC_STUB 27, 0",
    "EXC_STUB 28, 0",
    "EXC_STUB 29, 1",
    "EXC_STUB 30, 1",
    "EXC_STUB 31, 0",
    ".global exc_stub_table",
    ".pushsection .rodata.exc, \"a\"",
    ".balign 8",
    "exc_stub_table:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".quad exc_stub_\\n",
    ".endr",
    ".popsection",
    "exc_common:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call rust_exception",
    "ud2",
);

unsafe extern "C" {
    static exc_stub_table: [u64; 32];
}

/// What the exception stubs leave on the IST stack.
#[repr(C)]
pub struct ExceptionFrame {
    /// Vector number.
    pub vector: u64,
    /// Error code (0 where the CPU pushes none).
    pub error: u64,
    /// Faulting instruction.
    pub rip: u64,
    /// Code segment.
    pub cs: u64,
    /// Flags.
    pub rflags: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
    /// Stack segment.
    pub ss: u64,
}

/// Reads CR2 (the faulting address of a page fault).
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Installs the GDT (code, data, TSS), the TSS with IST1, and an IDT whose 32 exception gates
/// all run on IST1 and end in `rust_exception`.
pub fn install_descriptor_tables() {
    // SAFETY: runs once at boot on the only CPU with interrupts off, before anything else uses
    // these statics; the tables stay alive (statics) for as long as the CPU uses them.
    unsafe {
        let ist_top = core::ptr::addr_of_mut!(EXCEPTION_STACK) as u64 + 32 * 1024;
        let tss = core::ptr::addr_of_mut!(TSS);
        (*tss).ist[0] = ist_top;
        let tss_base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        let gdt = core::ptr::addr_of_mut!(GDT);
        (*gdt)[1] = 0x00AF_9A00_0000_FFFF;
        (*gdt)[2] = 0x00CF_9200_0000_FFFF;
        (*gdt)[3] = (limit & 0xFFFF)
            | ((tss_base & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xF) << 48)
            | (((tss_base >> 24) & 0xFF) << 56);
        (*gdt)[4] = tss_base >> 32;
        let gdt_ptr = DescriptorPointer {
            limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
            base: gdt as u64,
        };
        asm!("lgdt [{0}]", in(reg) &gdt_ptr, options(nostack));
        asm!("ltr {0:x}", in(reg) 0x18u16, options(nostack));

        let idt = core::ptr::addr_of_mut!(IDT);
        let table = core::ptr::addr_of!(exc_stub_table);
        for v in 0..32 {
            let handler = (*table)[v];
            (*idt)[v] = [
                (handler & 0xFFFF)
                    | (0x08 << 16)
                    | (1 << 32) // IST1
                    | (0x8E << 40) // present, interrupt gate
                    | (((handler >> 16) & 0xFFFF) << 48),
                handler >> 32,
            ];
        }
        let idt_ptr = DescriptorPointer {
            limit: (core::mem::size_of::<[[u64; 2]; 32]>() - 1) as u16,
            base: idt as u64,
        };
        asm!("lidt [{0}]", in(reg) &idt_ptr, options(nostack));
    }
}

/// The #VC handler's own stack (IST2): a #VC raised while another exception handler runs on
/// IST1 must not overwrite that handler's frame.
#[cfg(feature = "snp")]
static mut VC_STACK: ExceptionStack = ExceptionStack([0; 32 * 1024]);

/// Points IDT vector 29 (#VC) at `handler`, on IST2. Call after
/// [`install_descriptor_tables`].
#[cfg(feature = "snp")]
pub fn install_vc_gate(handler: u64) {
    // SAFETY: one CPU, interrupts off, at boot: nothing else reads or writes the TSS or IDT
    // statics concurrently; the CPU reads IST2 only on the next #VC, after this write.
    unsafe {
        let tss = core::ptr::addr_of_mut!(TSS);
        (*tss).ist[1] = core::ptr::addr_of_mut!(VC_STACK) as u64 + 32 * 1024;
        let idt = core::ptr::addr_of_mut!(IDT);
        (*idt)[29] = [
            (handler & 0xFFFF)
                | (0x08 << 16)
                | (2 << 32) // IST2
                | (0x8E << 40) // present, interrupt gate
                | (((handler >> 16) & 0xFFFF) << 48),
            handler >> 32,
        ];
    }
}

/// CR4 (the #VC handler reports OSXSAVE from it).
#[cfg(feature = "snp")]
pub fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 at CPL0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
