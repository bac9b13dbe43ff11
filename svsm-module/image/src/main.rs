//! `svsm-image`: a freestanding (x86_64-unknown-none) SVSM image. It contains svsm-core's
//! `SvsmModule` with the TCG TPM 2.0 engine (Debian's `libtpms.a` + `libcrypto.a`, linked
//! statically through `vtpm`'s `freestanding` feature and the Rust `libc-shim`) and the vault,
//! running over an **EMULATED** platform (see [`platform`]: test PSP key, in-RAM guest memory,
//! the state store on the host over COM2). QEMU boots it with `-kernel` (PVH); the host drives
//! it with framed SVSM calls on COM1, or on a virtio console when QEMU has one ([`server`],
//! [`virtio`]).
//!
//! Boot: PVH trampoline ([`boot`]) -> [`rust_start`]: descriptor tables with an IST exception
//! stack, page 0 and the stack guard unmapped, FS base with a random stack-protector canary,
//! heap after the image, TSC calibration, libc shim hooks, then `SvsmModule::boot` (which
//! unseals state from the host's store or manufactures a fresh vTPM) and the call loop.
//!
//! Exit statuses (QEMU's isa-debug-exit): 33 clean shutdown on request, 99 panic, 101 CPU
//! exception, 103 fatal C condition, 105 not enough RAM. Every failure path wipes the heap and
//! the free stack first. A triple fault would exit with 0, which the host treats as failure.
//!
//! With the cargo feature `snp` (`make image-snp`) the same module runs on SEV-SNP instead:
//! entered from an IGVM file at VMPL0, on `svsm-platform-snp`, starting the guest firmware
//! at VMPL1 and serving it ([`snp`]; docs/launch.md). The PVH entry, the emulated platform
//! and the serial/virtio call lines are not in that build.
//!
//! Switches on the kernel command line (`-append`), for tests of the failure paths only:
//! `fault=entropy` makes the entropy source fail from the start (the vTPM must not start);
//! `fault=control` enables the control calls that panic or fault (exit statuses 99, 101).

#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod cpu;
mod engine;
mod heap;
#[cfg(not(feature = "snp"))]
mod platform;
#[cfg(not(feature = "snp"))]
mod serial;
#[cfg(not(feature = "snp"))]
mod server;
#[cfg(feature = "snp")]
mod snp;
#[cfg(not(feature = "snp"))]
mod store_proto;
#[cfg(not(feature = "snp"))]
mod virtio;

use boot::sym_addr;
use core::sync::atomic::AtomicU64;
#[cfg(not(feature = "snp"))]
use core::sync::atomic::Ordering;
#[cfg(not(feature = "snp"))]
use platform::{BootEnv, EmulatedPlatform, Platform};
#[cfg(not(feature = "snp"))]
use svsm_core::SvsmModule;

// The C symbols libtpms/libcrypto need; referenced so the crate is linked.
use libc_shim as _;

/// Byte the free stack is painted with, to measure the high-water mark.
const STACK_PAINT: u8 = 0x5A;
/// Bytes of RAM the image needs (image + heap), checked against the PVH memory map.
#[cfg(not(feature = "snp"))]
const RAM_NEEDED: u64 = 64 * 1024 * 1024;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The block FS points to: glibc's TCB layout as far as the Debian objects use it (slot 0 =
/// self pointer, the stack-protector canary at offset 0x28; objdump of both archives shows no
/// other %fs offset).
#[repr(C, align(64))]
struct ThreadBlock([u64; 64]);

static mut THREAD_BLOCK: ThreadBlock = ThreadBlock([0; 64]);

/// Sets FS base to [`THREAD_BLOCK`] with a random canary (before any C code runs: without it,
/// `%fs:0x28` reads linear address 0x28, which is unmapped here).
fn install_fs_canary() {
    let mut canary = [0u8; 8];
    if libc_shim::entropy::fill(&mut canary).is_err() {
        // The entropy source failed (and latched: the vTPM will not start). The canary is
        // hardening, not a secret; the TSC still makes it unpredictable enough to matter.
        canary = (cpu::rdtsc().rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15).to_le_bytes();
    }
    // glibc keeps the canary's low byte zero (it stops string overruns from copying it).
    canary[0] = 0;
    // SAFETY: runs once at boot, on the only CPU, before any C code reads the block; the block
    // is a static that lives forever; MSR 0xC000_0100 is IA32_FS_BASE.
    unsafe {
        let block = core::ptr::addr_of_mut!(THREAD_BLOCK);
        (*block).0[0] = block as u64;
        (*block).0[5] = u64::from_le_bytes(canary);
        cpu::wrmsr(0xC000_0100, block as u64);
    }
}

/// hvm_start_info fields the image reads (copied: the structure may sit in page 0, which is
/// unmapped once it has been read).
#[cfg(not(feature = "snp"))]
struct StartInfo {
    cmdline: [u8; 256],
    cmdline_len: usize,
    ram_top: Option<u64>,
}

#[cfg(not(feature = "snp"))]
impl StartInfo {
    fn cmdline(&self) -> &[u8] {
        self.cmdline.get(..self.cmdline_len).unwrap_or(&[])
    }
}

/// Reads the PVH start info at physical `addr` (identity-mapped).
#[cfg(not(feature = "snp"))]
fn read_start_info(addr: u32) -> StartInfo {
    let mut info = StartInfo {
        cmdline: [0; 256],
        cmdline_len: 0,
        ram_top: None,
    };
    if addr == 0 {
        return info;
    }
    let base = addr as u64;
    // SAFETY: QEMU's PVH loader places hvm_start_info (and the command line and memory map it
    // points to) in low RAM, identity-mapped and never written by the image. Each read is
    // bounded by the structure layout (Xen `arch-x86/hvm/start_info.h`).
    unsafe {
        let rd32 = |off: u64| core::ptr::read_unaligned((base + off) as *const u32);
        let rd64 = |off: u64| core::ptr::read_unaligned((base + off) as *const u64);
        if rd32(0) != 0x336e_c578 {
            return info;
        }
        let version = rd32(4);
        let cmdline = rd64(24);
        if cmdline != 0 && cmdline < 0x4000_0000 {
            let p = cmdline as *const u8;
            let mut n = 0;
            while n < info.cmdline.len() && *p.add(n) != 0 {
                info.cmdline[n] = *p.add(n);
                n += 1;
            }
            info.cmdline_len = n;
        }
        if version >= 1 {
            let map = rd64(40);
            let entries = rd32(48) as u64;
            if map != 0 && map < 0x4000_0000 && entries < 128 {
                let mut top = 0u64;
                for i in 0..entries {
                    let e = map + i * 24;
                    let (start, size, kind) = (
                        core::ptr::read_unaligned(e as *const u64),
                        core::ptr::read_unaligned((e + 8) as *const u64),
                        core::ptr::read_unaligned((e + 16) as *const u32),
                    );
                    if kind == 1 && start <= 0x10_0000 && start + size > top {
                        top = start + size;
                    }
                }
                info.ram_top = Some(top);
            }
        }
    }
    info
}

#[cfg(not(feature = "snp"))]
fn has_switch(cmdline: &[u8], switch: &[u8]) -> bool {
    cmdline.split(|&b| b == b' ').any(|w| w == switch)
}

/// Paints the unused stack below the current frame (to measure the high-water mark later).
fn paint_stack() {
    let bottom = sym_addr!(boot_stack_bottom);
    let here = &bottom as *const u64 as u64;
    let end = here.saturating_sub(4096);
    // SAFETY: [bottom, here - 4096) is the unused part of the boot stack: below every live frame
    // (the stack grows down and this function is near the top), owned by nothing else.
    unsafe { core::ptr::write_bytes(bottom as *mut u8, STACK_PAINT, (end - bottom) as usize) };
}

/// Bytes of stack ever used (from the top down to the lowest byte not still painted).
#[cfg(not(feature = "snp"))]
fn stack_high_water() -> u64 {
    let bottom = sym_addr!(boot_stack_bottom);
    let top = sym_addr!(boot_stack_top);
    let mut p = bottom;
    // SAFETY: reads stay inside the boot stack [bottom, top).
    while p < top && unsafe { core::ptr::read_volatile(p as *const u8) } == STACK_PAINT {
        p += 1;
    }
    top - p
}

/// Wipes what may hold secrets: the whole heap (TPM state, vault keys, key hierarchy, guest
/// buffers) and the free part of the stack. Called on every exit path.
pub fn wipe_secrets() {
    heap::wipe();
    let bottom = sym_addr!(boot_stack_bottom);
    let top = sym_addr!(boot_stack_top);
    let marker = 0u64;
    let here = core::ptr::addr_of!(marker) as u64;
    // On the boot stack: wipe below the live frames. On the exception stack (IST1, elsewhere in
    // .bss): nothing returns to the boot stack any more, so wipe all of it.
    let end = if (bottom..top).contains(&here) {
        here.saturating_sub(512).max(bottom)
    } else {
        top
    };
    // SAFETY: [bottom, end) lies inside the boot stack and below every live frame of the
    // current stack (see above), so no live data is overwritten. Volatile so it is not elided.
    unsafe {
        let p = bottom as *mut u8;
        for i in 0..(end - bottom) {
            p.add(i as usize).write_volatile(0);
        }
    }
}

/// The statistics record of the control call (u64 little-endian fields, in this order).
#[cfg(not(feature = "snp"))]
pub fn stats_record<P: Platform>(server: &mut server::Server<P>) -> [u64; 22] {
    let h = heap::stats();
    let (tpm_present, tpm_stopped) = match server.module.tpm_mut() {
        Some(t) => (1, u64::from(t.stopped())),
        None => (0, 0),
    };
    let state = server.state_code();
    let epoch = server.module.state_epoch();
    let (store_requests, store_failures) = P::store_stats(server.module.store_mut());
    [
        u64::from_le_bytes(*server::STATS_MAGIC),
        h.size as u64,
        h.peak as u64,
        h.in_use as u64,
        h.failures,
        libc_shim::mem::peak() as u64,
        libc_shim::mem::largest() as u64,
        libc_shim::mem::failures(),
        boot::STACK_SIZE as u64,
        stack_high_water(),
        sym_addr!(_end) - sym_addr!(__image_start),
        TSC_HZ.load(Ordering::Relaxed),
        server.counters.calls,
        u64::from(libc_shim::entropy::failed()),
        libc_shim::calls::FAILING_STUB.load(Ordering::Relaxed),
        state,
        epoch,
        store_requests,
        store_failures,
        tpm_present | (tpm_stopped << 1),
        server.counters.malformed,
        server.counters.last_call_ticks,
    ]
}

#[cfg(not(feature = "snp"))]
fn log_sink(bytes: &[u8]) {
    serial::debugcon_bytes(bytes);
}

fn c_fatal(why: &str) -> ! {
    log!("svsm-image: FATAL (C): {why}; wiping secrets");
    wipe_secrets();
    cpu::exit_qemu(cpu::exit_code::C_FATAL)
}

/// The Rust entry, called by the trampoline on the boot stack with `hvm_start_info`'s address.
#[cfg(not(feature = "snp"))]
#[no_mangle]
pub extern "C" fn rust_start(start_info: u32) -> ! {
    cpu::install_descriptor_tables();
    let info = read_start_info(start_info);
    install_fs_canary();
    paint_stack();
    boot::unmap_page(0);
    boot::unmap_page(sym_addr!(boot_stack_guard));
    log!("svsm-image: EMULATED platform (test PSP key, no SEV-SNP); booting");

    if has_switch(info.cmdline(), b"fault=entropy") {
        log!("svsm-image: fault injection: entropy source fails");
        libc_shim::entropy::inject_failure();
    }
    let heap_start = (sym_addr!(_end) + 0x1F_FFFF) & !0x1F_FFFF;
    let heap_end = heap_start + heap::HEAP_SIZE as u64;
    match info.ram_top {
        Some(top) if top >= heap_end.max(RAM_NEEDED) => {}
        Some(top) => {
            log!("svsm-image: {top:#x} bytes of RAM; the image needs {heap_end:#x} (use -m 128M)");
            cpu::exit_qemu(cpu::exit_code::NO_MEMORY);
        }
        None => log!("svsm-image: no PVH memory map; assuming -m 128M or more"),
    }
    // SAFETY: [heap_start, heap_end) is RAM (checked above) past the image's end, mapped by
    // the boot page tables (first GiB), and used by nothing else.
    unsafe { heap::init(heap_start as usize, heap::HEAP_SIZE) };

    let hz = cpu::calibrate_tsc();
    TSC_HZ.store(hz, Ordering::Relaxed);
    libc_shim::time::set_tsc_hz(hz);
    libc_shim::set_log_sink(log_sink);
    libc_shim::set_fatal_hook(c_fatal);
    log!(
        "svsm-image: TSC {} MHz, heap {} MiB at {:#x}, image {} KiB",
        hz / 1_000_000,
        heap::HEAP_SIZE >> 20,
        heap_start,
        (sym_addr!(_end) - sym_addr!(__image_start)) >> 10
    );

    let env = BootEnv {
        tsc_hz: hz,
        com2: serial::Uart::init(serial::COM2),
    };
    // The call line: the virtio console when QEMU has one (much faster), else COM1.
    let line = match virtio::VirtioConsole::probe() {
        Some(v) => serial::CallLine::Virtio(v),
        None => serial::CallLine::Uart(serial::Uart::init(serial::COM1)),
    };
    log!("svsm-image: framed SVSM calls on {}", line.name());
    run::<EmulatedPlatform>(&env, line, has_switch(info.cmdline(), b"fault=control"))
}

/// Boots svsm-core's module on platform `P` (unsealing its state or manufacturing a fresh
/// vTPM) and serves framed SVSM calls on `line` forever.
#[cfg(not(feature = "snp"))]
fn run<P: Platform>(env: &BootEnv, line: serial::CallLine, fault_calls: bool) -> ! {
    let (memory, psp, store, rng) = P::build(env);
    let start = cpu::rdtsc();
    let module = SvsmModule::boot(
        memory,
        psp,
        store,
        rng,
        Some(&mut engine::ImageTpmFactory::default()),
        P::boot_config(),
    );
    let ms = cpu::rdtsc().wrapping_sub(start) / (env.tsc_hz / 1000).max(1);
    let vtpm = if module
        .protocol_versions(svsm_abi::svsm::PROTOCOL_VTPM)
        .is_some()
    {
        "served"
    } else {
        "NOT served"
    };
    log!(
        "svsm-image: module booted on the {} in {ms} ms: state {:?}, epoch {}, vTPM {vtpm}",
        P::NAME,
        module.state_status(),
        module.state_epoch()
    );
    let mut server = server::Server::<P>::new(line, module);
    server.fault_calls = fault_calls;
    server.run()
}

/// CPU exceptions (on the IST1 stack): report, wipe, stop.
#[no_mangle]
extern "C" fn rust_exception(frame: &cpu::ExceptionFrame) -> ! {
    log!(
        "svsm-image: CPU EXCEPTION {} (error {:#x}) at rip {:#x}, rsp {:#x}, cr2 {:#x}; wiping secrets",
        frame.vector,
        frame.error,
        frame.rip,
        frame.rsp,
        cpu::cr2()
    );
    wipe_secrets();
    cpu::exit_qemu(cpu::exit_code::EXCEPTION)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    log!("svsm-image: PANIC: {info}; wiping secrets");
    wipe_secrets();
    cpu::exit_qemu(cpu::exit_code::PANIC)
}
