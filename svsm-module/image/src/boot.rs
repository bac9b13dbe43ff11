//! Entry: the Xen PVH ELF note QEMU's `-kernel` loader looks for, and the 32-bit trampoline from
//! the PVH entry state (protected mode, paging off, flat segments, `ebx` = `hvm_start_info`) to
//! 64-bit Rust.
//!
//! The trampoline zeroes `.bss`, builds page tables that identity-map the first 1 GiB (the
//! first 64 MiB with 4 KiB pages, so Rust can unmap page 0 and the stack guard page; the rest
//! with 2 MiB pages), enables PAE, SSE (`CR4.OSFXSR | OSXMMEXCPT`; the Debian objects use SSE),
//! long mode and paging (`CR0.PG | MP`, `EM`/`TS` clear), loads a flat 64-bit GDT, switches to
//! the boot stack and calls `rust_start(start_info)`. Interrupts stay off for the image's life.

/// Bytes of the boot stack (the engine peaks near 12 KiB; see the statistics call).
pub const STACK_SIZE: usize = 512 * 1024;
/// Bytes of 4 KiB-mapped memory from 0 (the rest of the first GiB uses 2 MiB pages).
pub const SMALL_PAGES_END: u64 = 64 * 1024 * 1024;

#[cfg(not(feature = "snp"))]
core::arch::global_asm!(
    // The PVH note: name "Xen", type 18 (XEN_ELFNOTE_PHYS32_ENTRY), desc = the 32-bit entry
    // address, read by QEMU as 8 bytes.
    ".pushsection .note.pvh, \"a\", @note",
    ".balign 4",
    ".long 4",
    ".long 8",
    ".long 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".quad pvh_start32",
    ".balign 4",
    ".popsection",
    "",
    ".pushsection .bss.boot, \"aw\", @nobits",
    ".balign 4096",
    ".global boot_pml4",
    "boot_pml4: .skip 4096",
    "boot_pdpt: .skip 4096",
    "boot_pd: .skip 4096",
    ".global boot_pt",
    "boot_pt: .skip 4096 * 32",
    ".global boot_stack_guard",
    "boot_stack_guard: .skip 4096",
    ".global boot_stack_bottom",
    "boot_stack_bottom: .skip {stack_size}",
    ".global boot_stack_top",
    "boot_stack_top:",
    ".popsection",
    "",
    ".pushsection .rodata.boot, \"a\"",
    ".balign 16",
    "boot_gdt:",
    ".quad 0",
    ".quad 0x00AF9A000000FFFF", // 0x08: 64-bit code
    ".quad 0x00CF92000000FFFF", // 0x10: data
    "boot_gdt_end:",
    ".balign 4",
    "boot_gdt_ptr:",
    ".word boot_gdt_end - boot_gdt - 1",
    ".long boot_gdt",
    ".popsection",
    "",
    ".pushsection .text.pvh_start32, \"ax\"",
    ".code32",
    ".global pvh_start32",
    "pvh_start32:",
    "    cli",
    "    cld",
    "    mov esi, ebx", // keep hvm_start_info
    // zero .bss (page tables, stack, Rust statics)
    "    mov edi, offset __bss_start",
    "    mov ecx, offset __bss_end",
    "    sub ecx, edi",
    "    xor eax, eax",
    "    rep stosb",
    // 4 KiB pages for the first 64 MiB: PT entry i = i * 4096 | present | writable
    "    mov edi, offset boot_pt",
    "    xor ecx, ecx",
    "1:",
    "    mov eax, ecx",
    "    shl eax, 12",
    "    or eax, 3",
    "    mov [edi + ecx * 8], eax",
    "    inc ecx",
    "    cmp ecx, 16384",
    "    jb 1b",
    // PD: entries 0..32 point to the page tables, 32..512 are 2 MiB pages
    "    mov edi, offset boot_pd",
    "    xor ecx, ecx",
    "2:",
    "    cmp ecx, 32",
    "    jae 3f",
    "    mov eax, ecx",
    "    shl eax, 12",
    "    add eax, offset boot_pt",
    "    or eax, 3",
    "    jmp 4f",
    "3:",
    "    mov eax, ecx",
    "    shl eax, 21",
    "    or eax, 0x83",
    "4:",
    "    mov [edi + ecx * 8], eax",
    "    inc ecx",
    "    cmp ecx, 512",
    "    jb 2b",
    "    mov eax, offset boot_pd",
    "    or eax, 3",
    "    mov [boot_pdpt], eax",
    "    mov eax, offset boot_pdpt",
    "    or eax, 3",
    "    mov [boot_pml4], eax",
    // CR4: PAE | OSFXSR | OSXMMEXCPT
    "    mov eax, cr4",
    "    or eax, 0x620",
    "    mov cr4, eax",
    "    mov eax, offset boot_pml4",
    "    mov cr3, eax",
    // EFER.LME
    "    mov ecx, 0xC0000080",
    "    rdmsr",
    "    or eax, 0x100",
    "    wrmsr",
    // CR0: PG | WP | MP | PE, EM and TS clear
    "    mov eax, cr0",
    "    and eax, 0xFFFFFFF3",
    "    or eax, 0x80010003",
    "    mov cr0, eax",
    "    lgdt [boot_gdt_ptr]",
    "    mov eax, 0x08",
    "    push eax",
    "    mov eax, offset boot_long_mode",
    "    push eax",
    "    retf",
    ".code64",
    "boot_long_mode:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    mov fs, ax",
    "    mov gs, ax",
    "    mov rsp, offset boot_stack_top",
    "    xor ebp, ebp",
    "    mov edi, esi",
    "    call rust_start",
    "6:",
    "    hlt",
    "    jmp 6b",
    ".popsection",
    stack_size = const STACK_SIZE,
);

unsafe extern "C" {
    /// The first 64 MiB's page-table entries (16384 x u64), built by the trampoline.
    pub static mut boot_pt: [u64; 16384];
    /// The unmapped page below the stack.
    pub static boot_stack_guard: u8;
    /// Lowest stack byte.
    pub static boot_stack_bottom: u8;
    /// One past the highest stack byte.
    pub static boot_stack_top: u8;
    /// Start of the loaded image (1 MiB).
    pub static __image_start: u8;
    /// End of the image including `.bss`, page aligned.
    pub static _end: u8;
}

/// Address of a linker/asm symbol.
macro_rules! sym_addr {
    ($s:ident) => {
        // Taking the address of an extern static is safe; its value is never read here.
        core::ptr::addr_of!($crate::boot::$s) as u64
    };
}
pub(crate) use sym_addr;

/// Where the 4 KiB-mapped area starts: address 0 under PVH, the image's base under SNP
/// (`snp::entry`).
fn small_pages_start() -> u64 {
    if cfg!(feature = "snp") {
        sym_addr!(__image_start)
    } else {
        0
    }
}

/// Removes the mapping of the 4 KiB page at `addr` (inside the 4 KiB-mapped area:
/// [`SMALL_PAGES_END`] bytes from [`small_pages_start`]; anything else is left alone — under
/// SNP page 0 is never mapped at all).
pub fn unmap_page(addr: u64) {
    let Some(offset) = addr.checked_sub(small_pages_start()) else {
        return;
    };
    if offset >= SMALL_PAGES_END {
        return;
    }
    let index = (offset / 4096) as usize;
    // SAFETY: `boot_pt` is the live page table; index < 16384; one CPU, interrupts off, so no
    // other access races this write. INVLPG drops the stale translation.
    unsafe {
        let table = core::ptr::addr_of_mut!(boot_pt).cast::<u64>();
        table.add(index).write_volatile(0);
        core::arch::asm!("invlpg [{0}]", in(reg) addr, options(nostack));
    }
}
