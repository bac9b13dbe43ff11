//! The #VC handler (vector 29, on IST2). At VMPL0 with SEV_FEATURES = SNP, the instructions
//! the hypervisor intercepts raise #VC instead of exiting. The image's own code issues port
//! I/O only through GHCB events and reads no intercepted MSR; what remains is CPUID, which
//! OpenSSL executes to detect CPU features: answered from the PSP-checked CPUID page (never
//! from the hypervisor), with OSXSAVE taken from CR4. Any other #VC ends the launch
//! (termination reason set 3, code = the exit code's low byte): an SVSM must not let the
//! hypervisor emulate an instruction it did not expect.

use svsm_abi::snp::cpuid::CpuidTable;

/// SVM exit code of CPUID.
const SVM_EXIT_CPUID: u64 = 0x72;
/// CR4.OSXSAVE.
const CR4_OSXSAVE: u64 = 1 << 18;

/// The CPUID page's table, once the boot code has parsed it.
static CPUID: spin::Mutex<Option<CpuidTable>> = spin::Mutex::new(None);

/// Gives the handler the CPUID table (before any code that may execute CPUID).
pub fn set_cpuid(table: CpuidTable) {
    *CPUID.lock() = Some(table);
}

/// The registers the entry stub saved, in stack order, then the CPU's exception frame (the
/// layout the stub builds; not every field is read).
#[repr(C)]
#[allow(dead_code)]
pub struct VcFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

core::arch::global_asm!(
    ".pushsection .text.snp_vc, \"ax\"",
    ".global snp_vc_entry",
    "snp_vc_entry:",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov rdi, rsp",
    // Rust and C expect DF clear; IRETQ restores the interrupted RFLAGS.
    "    cld",
    // 6 words from the CPU + 15 saved = 168 bytes below a 16-aligned IST top: realign.
    "    sub rsp, 8",
    "    call rust_vc",
    "    add rsp, 8",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    add rsp, 8", // the error code (the exit code)
    "    iretq",
    ".popsection",
);

unsafe extern "C" {
    /// The entry stub above.
    static snp_vc_entry: u8;
}

/// The handler's address, for the IDT.
pub fn entry_address() -> u64 {
    // Taking the address of an extern static is safe; it is never read here.
    core::ptr::addr_of!(snp_vc_entry) as u64
}

/// Whether the two bytes at `rip` are CPUID (0F A2).
fn is_cpuid(rip: u64) -> bool {
    // SAFETY: a #VC with the CPUID exit code is raised by the instruction at RIP, which the
    // CPU has just fetched: the two bytes are mapped and readable (the image's own code).
    let bytes = unsafe { core::ptr::read_unaligned(rip as *const [u8; 2]) };
    bytes == [0x0F, 0xA2]
}

#[no_mangle]
extern "C" fn rust_vc(frame: &mut VcFrame) {
    if frame.error_code == SVM_EXIT_CPUID && is_cpuid(frame.rip) {
        let answer = CPUID.lock().as_ref().map(|t| {
            t.lookup(
                frame.rax as u32,
                frame.rcx as u32,
                crate::cpu::cr4() & CR4_OSXSAVE != 0,
            )
        });
        if let Some(r) = answer {
            frame.rax = u64::from(r.eax);
            frame.rbx = u64::from(r.ebx);
            frame.rcx = u64::from(r.ecx);
            frame.rdx = u64::from(r.edx);
            frame.rip += 2;
            return;
        }
    }
    super::terminate(super::reason::VC_SET, frame.error_code as u8)
}
