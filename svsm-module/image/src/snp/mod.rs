//! The image on SEV-SNP (cargo feature `snp`, `make image-snp`): entered from the IGVM file
//! `snp-measure build-igvm` writes, it runs svsm-core on `svsm-platform-snp` at VMPL0 and
//! starts the guest firmware at VMPL1 under it. NOT EXECUTED ON HARDWARE: no SNP host was
//! available where it was written (docs/launch.md says what was and was not verified).
//!
//! Boot, in order ([`rust_start_snp`], after [`entry`]):
//! 1. descriptor tables and the #VC handler ([`vc`]), which answers CPUID from the CPUID page;
//! 2. the measured boot information page (`svsm_abi::igvm_boot`): refused unless it describes
//!    this image (its base, its end right before the boot pages, the parameter page in RBX);
//! 3. the GHCB: its page (the first free page after the boot pages) made shared through the MSR
//!    protocol, protocol 2 negotiated, registered; the guest-request pages made shared;
//! 4. the rest of the SVSM's memory made private and PVALIDATEd (the firmware VMSA page and
//!    the heap: everything up to the end of `svsm.size`); the heap;
//! 5. `SnpPlatform` (VMPCK0 from the secrets page, the memory model over the IGVM memory map
//!    plus the launched firmware) and `SvsmModule::boot` with the libtpms vTPM, the root key
//!    pinned to the launch's committed TCB, state in memory for this launch only;
//! 6. the firmware's pages: pre-validated ranges, its secrets, CPUID and calling-area pages
//!    made private, validated and zeroed for VMPL1; the CPUID page copied; the firmware
//!    granted to VMPL1; `svsm_core::guest_boot::start_guest` (secrets copy with the SVSM
//!    fields, calling area, VMSA in reset state at VMPL1, AP creation);
//! 7. the request loop: run VMPL1, serve the entry (`svsm_core::request_loop`), drain the log
//!    to COM1, repeat.
//!
//! Failures end the launch through the GHCB MSR protocol's termination request (the host
//! logs the reason): set 2 = this image ([`reason`]), set 3 = an unexpected #VC (code = the
//! exit code's low byte). Once the GHCB is registered the log is printed on COM1 first; before
//! that, the reason code alone says where it stopped.

pub mod entry;
pub mod log;
mod vc;

use crate::boot::sym_addr;
use crate::engine::ImageTpmFactory;
use crate::heap;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use svsm_abi::igvm_boot::{ram_ranges, GpaRange, SvsmBootInfo};
use svsm_abi::snp::cpuid::CpuidTable;
use svsm_abi::snp::ghcb::{
    PageStateOp, PscEntry, TerminationReason, HV_FEATURE_AP_CREATION, HV_FEATURE_MULTI_VMPL,
    HV_FEATURE_SNP, PSC_MAX_ENTRIES,
};
use svsm_abi::snp::secrets::SecretsPage;
use svsm_core::guest_boot::{start_guest, GuestBoot};
use svsm_core::platform::{Gpa, SecureProcessor, StateStore, StoreError, Vmpl};
use svsm_core::request_loop::RequestLoop;
use svsm_core::{BootConfig, SvsmModule};
use svsm_platform_snp::cpu::{pvalidate, CpuOps, PageSize, VmplPermissions};
use svsm_platform_snp::hw::{DirectMap, HardwareCpu, SharedWindow};
use svsm_platform_snp::memory::launch_regions;
use svsm_platform_snp::messenger::GuestRequestPages;
use svsm_platform_snp::platform::SnpConfig;
use svsm_platform_snp::vcpus::SnpVcpus;
use svsm_platform_snp::{Ghcb, SnpPlatform};
use zeroize::Zeroize;

/// Where the private (C-bit set) alias of guest physical memory starts (PML4 entry 1).
pub const PRIVATE_ALIAS: u64 = 0x80_0000_0000;
/// Where the shared (C-bit clear) alias starts (PML4 entry 2).
pub const SHARED_ALIAS: u64 = 0x100_0000_0000;
/// Bytes each alias maps.
pub const ALIAS_SIZE: u64 = 0x80_0000_0000;
/// 4 KiB.
const PAGE: u64 = 4096;
/// The smallest heap the image accepts (the engine and the vault fit in 6 MiB; the memory
/// model records a few dozen bytes per guest page the guest validates through the SVSM).
const HEAP_MIN: u64 = 16 * 1024 * 1024;
/// Pages of the certificate buffer for extended reports.
const CERT_PAGES: u64 = 4;
/// The APIC ID of the boot vCPU (the IGVM file's VMSA is vCPU 0).
const BOOT_APIC_ID: u32 = 0;
/// COM1, where the log goes.
const COM1: u16 = 0x3F8;

/// Termination reason codes of set 2 ([`reason::SET`]); the image's exit codes (panic 0x31,
/// CPU exception 0x32, fatal C condition 0x33) use the same set.
pub mod reason {
    /// This image's reason set.
    pub const SET: u8 = 2;
    /// An unexpected #VC; the code is the exit code's low byte.
    pub const VC_SET: u8 = 3;
    /// The CPUID page has no usable C-bit position (the entry's own check, or the parser's).
    pub const CPUID_PAGE: u8 = 1;
    /// The boot information page was refused or does not describe this image.
    pub const BOOT_INFO: u8 = 2;
    /// The IGVM memory map was refused.
    pub const MEMORY_MAP: u8 = 3;
    /// GHCB negotiation, registration or a page-state change failed.
    pub const GHCB: u8 = 4;
    /// PVALIDATE of the SVSM's own memory failed.
    pub const VALIDATE: u8 = 5;
    /// The SNP platform could not be set up (VMPCK0, the memory model).
    pub const PLATFORM: u8 = 6;
    /// The guest could not be started.
    pub const GUEST: u8 = 7;
    /// The SVSM's memory is too small for its heap.
    pub const HEAP: u8 = 9;
    /// The host does not offer SNP, AP creation and multi-VMPL (GHCB HV features 0, 1, 5).
    pub const HV_FEATURES: u8 = 10;
    /// The CPU lacks INVLPGB/TLBSYNC (CPUID Fn8000_0008 EBX[3]): access taken away in the RMP
    /// could not be flushed from every TLB.
    pub const INVLPGB: u8 = 11;
}

/// The registered GHCB's GPA once there is one (0 before): the termination path prints the
/// log through it.
static LOG_GHCB: AtomicU64 = AtomicU64::new(0);

/// Ends the launch (GHCB MSR protocol termination); never returns. If the GHCB is registered,
/// the log is printed first (re-registering the page: the failure may have come in the middle
/// of a GHCB exchange, whose page contents no longer matter).
pub fn terminate(set: u8, code: u8) -> ! {
    // SAFETY: the image runs at CPL0, VMPL0 of an SNP guest with interrupts off (the entry
    // contract); only the GHCB MSR, VMGEXIT and the shared GHCB page are used here.
    let mut cpu = unsafe { HardwareCpu::new() };
    // Taken, not read: a failure while printing must not print again.
    let gpa = LOG_GHCB.swap(0, Ordering::SeqCst);
    if gpa != 0 {
        crate::log!("svsm-image: terminating (reason set {set}, code {code:#x})");
        if let Ok(mut ghcb) = Ghcb::new(cpu, shared_window(), gpa) {
            if ghcb.register().is_ok() {
                flush_log(&mut ghcb);
            }
        }
    }
    let request = TerminationReason { set, code }.msr_request();
    loop {
        cpu.write_ghcb_msr(request);
        cpu.vmgexit();
        cpu.halt();
    }
}

fn fail<T, E: core::fmt::Display>(code: u8, what: &str) -> impl FnOnce(E) -> T + '_ {
    move |e| {
        crate::log!("svsm-image: {what}: {e}");
        terminate(reason::SET, code)
    }
}

/// Copies a page of private memory out through the identity map.
fn read_page(gpa: u64) -> Box<[u8; 4096]> {
    let mut page = Box::new([0u8; 4096]);
    // SAFETY: callers pass the boot pages (boot information, parameters, secrets, CPUID),
    // which the launch validated and the identity map covers (below 4 GiB, private).
    unsafe {
        for (i, b) in page.iter_mut().enumerate() {
            *b = core::ptr::read_volatile((gpa + i as u64) as *const u8);
        }
    }
    page
}

/// The same, before the heap exists.
fn read_page_early(gpa: u64, out: &mut [u8; 4096]) {
    // SAFETY: as in `read_page`.
    unsafe {
        for (i, b) in out.iter_mut().enumerate() {
            *b = core::ptr::read_volatile((gpa + i as u64) as *const u8);
        }
    }
}

fn shared_window() -> SharedWindow {
    // SAFETY: the entry maps SHARED_ALIAS..+ALIAS_SIZE with the C-bit clear onto guest physical
    // 0..ALIAS_SIZE for the image's life; only pages made shared are accessed through it (the
    // GHCB and guest-request pages), by volatile copies, never through references.
    unsafe { SharedWindow::new(SHARED_ALIAS as *mut u8, 0, ALIAS_SIZE as usize) }
}

/// Where the SVSM keeps its pages after the boot pages.
struct MemoryPlan {
    ghcb: u64,
    request: GuestRequestPages,
    firmware_vmsa: u64,
    heap_start: u64,
    heap_end: u64,
}

impl MemoryPlan {
    fn new(info: &SvsmBootInfo) -> Option<Self> {
        let free = info.cpuid.get().checked_add(PAGE)?;
        let ghcb = free;
        let request = GuestRequestPages {
            request_gpa: free + PAGE,
            response_gpa: free + 2 * PAGE,
            certs_gpa: free + 3 * PAGE,
            cert_pages: CERT_PAGES,
        };
        let mut firmware_vmsa = free + (3 + CERT_PAGES) * PAGE;
        // A VMSA at a 2 MiB-aligned address is refused (the RMP erratum).
        if firmware_vmsa % (2 << 20) == 0 {
            firmware_vmsa += PAGE;
        }
        let heap_start = firmware_vmsa + PAGE;
        let heap_end = info.svsm.end()?;
        (heap_end >= heap_start.checked_add(HEAP_MIN)?).then_some(MemoryPlan {
            ghcb,
            request,
            firmware_vmsa,
            heap_start,
            heap_end,
        })
    }
}

/// Page-state change of `count` pages from `gpa` through the GHCB page (253 per event).
fn page_state_change<S: svsm_platform_snp::SharedMemory>(
    ghcb: &mut Ghcb<HardwareCpu, S>,
    gpa: u64,
    count: u64,
    op: PageStateOp,
) -> Result<(), svsm_platform_snp::GhcbError> {
    let mut entries = [PscEntry {
        cur_page: 0,
        gfn: 0,
        op,
        huge: false,
    }; PSC_MAX_ENTRIES];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(PSC_MAX_ENTRIES as u64) as usize;
        for (i, e) in entries.iter_mut().take(n).enumerate() {
            e.gfn = gpa / PAGE + done + i as u64;
        }
        ghcb.page_state_change(entries.get(..n).unwrap_or(&[]))?;
        done += n as u64;
    }
    Ok(())
}

/// The state store of the SNP build: memory, for this launch only. The host's storage
/// channel under SNP (sealed blobs over the GHCB) is not written; the vTPM is therefore
/// ephemeral, like COCONUT-SVSM's, and its EK changes every launch.
#[derive(Default)]
struct VolatileStore {
    slots: BTreeMap<u8, Vec<u8>>,
}

impl StateStore for VolatileStore {
    fn read(&mut self, slot: u8) -> Result<Vec<u8>, StoreError> {
        self.slots
            .get(&slot)
            .cloned()
            .ok_or(StoreError::Empty(slot))
    }

    fn write(&mut self, slot: u8, blob: &[u8]) -> Result<(), StoreError> {
        self.slots.insert(slot, blob.to_vec());
        Ok(())
    }
}

/// The Rust entry of the SNP build, called by [`entry`] with the boot parameter page.
#[no_mangle]
pub extern "C" fn rust_start_snp(parameters: u64) -> ! {
    crate::cpu::install_descriptor_tables();
    crate::cpu::install_vc_gate(vc::entry_address());
    let mut page = [0u8; 4096];
    read_page_early(parameters + 2 * PAGE, &mut page);
    let cpuid = match CpuidTable::parse(&page) {
        Ok(t) if t.cbit_position().is_ok() => t,
        _ => terminate(reason::SET, reason::CPUID_PAGE),
    };
    vc::set_cpuid(cpuid);
    if cpuid.lookup(0x8000_0008, 0, false).ebx & (1 << 3) == 0 {
        terminate(reason::SET, reason::INVLPGB);
    }
    read_page_early(parameters - PAGE, &mut page);
    let info = match SvsmBootInfo::parse(&page) {
        Ok(info)
            if info.parameters.get() == parameters
                && info.svsm.gpa.get() == sym_addr!(__image_start)
                && sym_addr!(_end) == parameters - PAGE =>
        {
            info
        }
        _ => terminate(reason::SET, reason::BOOT_INFO),
    };
    crate::install_fs_canary();
    crate::paint_stack();
    crate::boot::unmap_page(sym_addr!(boot_stack_guard));
    let plan = MemoryPlan::new(&info).unwrap_or_else(|| terminate(reason::SET, reason::HEAP));

    // 3. The GHCB.
    // SAFETY: CPL0, VMPL0 of an SNP guest, interrupts off (entry contract). PVALIDATE is used
    // below only on the SVSM's own free pages (the VMSA page and the heap), which nothing uses
    // yet; the memory model takes over every later use.
    let cpu = unsafe { HardwareCpu::new() };
    let mut ghcb = Ghcb::new(cpu, shared_window(), plan.ghcb)
        .unwrap_or_else(|_| terminate(reason::SET, reason::GHCB));
    // SEV information first (the GHCB spec's order), the features the SVSM needs, then the
    // page made shared, registered.
    let needed = HV_FEATURE_SNP | HV_FEATURE_AP_CREATION | HV_FEATURE_MULTI_VMPL;
    match ghcb.negotiate().and_then(|_| ghcb.hv_features()) {
        Ok(f) if f & needed == needed => {}
        Ok(_) => terminate(reason::SET, reason::HV_FEATURES),
        Err(_) => terminate(reason::SET, reason::GHCB),
    }
    let ok = ghcb
        .page_state_change_msr(plan.ghcb / PAGE, PageStateOp::Shared)
        .and_then(|()| ghcb.register())
        .and_then(|()| {
            page_state_change(
                &mut ghcb,
                plan.request.request_gpa,
                2 + CERT_PAGES,
                PageStateOp::Shared,
            )
        });
    if ok.is_err() {
        terminate(reason::SET, reason::GHCB);
    }
    LOG_GHCB.store(plan.ghcb, Ordering::SeqCst);

    // 4. The SVSM's private memory: the firmware VMSA page and the heap.
    let first = plan.firmware_vmsa;
    let pages = (plan.heap_end - first) / PAGE;
    if page_state_change(&mut ghcb, first, pages, PageStateOp::Private).is_err() {
        terminate(reason::SET, reason::GHCB);
    }
    let mut raw = cpu;
    for i in 0..pages {
        if pvalidate(&mut raw, first + i * PAGE, PageSize::Size4K, true).is_err() {
            terminate(reason::SET, reason::VALIDATE);
        }
    }
    let heap_size = (plan.heap_end - plan.heap_start) as usize;
    // SAFETY: [heap_start, heap_end) is the SVSM's own memory, just made private and
    // validated, identity-mapped (below 4 GiB), used by nothing else.
    unsafe { heap::init(plan.heap_start as usize, heap_size) };
    libc_shim::set_log_sink(log::write_bytes);
    libc_shim::set_fatal_hook(crate::c_fatal);

    let io = core::cell::RefCell::new(&mut ghcb);
    let hz = crate::cpu::calibrate_tsc_with(&mut crate::cpu::PortIo {
        inb: &mut |port| {
            io.borrow_mut()
                .io_in(port, 1)
                .map(|v| v as u8)
                // A refused read never shows the count done: calibration falls back.
                .unwrap_or(0)
        },
        outb: &mut |port, v| {
            let _ = io.borrow_mut().io_out(port, 1, u32::from(v));
        },
        max_polls: 1_000_000,
    });
    crate::TSC_HZ.store(hz, Ordering::Relaxed);
    libc_shim::time::set_tsc_hz(hz);
    crate::log!(
        "svsm-image: SEV-SNP platform at VMPL0; SVSM memory {:#x}+{:#x}, heap {} MiB, TSC {} MHz",
        info.svsm.gpa.get(),
        info.svsm.size.get(),
        heap_size >> 20,
        hz / 1_000_000
    );
    flush_log(&mut ghcb);

    // 5. The platform and the module.
    let mut secrets_bytes = read_page(info.secrets.get());
    let params = read_page(parameters);
    let ram: Vec<GpaRange> = ram_ranges(&params[..])
        .unwrap_or_else(fail(reason::MEMORY_MAP, "refused"))
        .collect();
    let top = ram
        .iter()
        .filter_map(|r| r.end())
        .max()
        .unwrap_or(0)
        .max(info.firmware.end().unwrap_or(0));
    if top > ALIAS_SIZE {
        crate::log!("svsm-image: guest memory ends at {top:#x}; the SVSM maps 512 GiB");
        terminate(reason::SET, reason::MEMORY_MAP);
    }
    let config = SnpConfig {
        ghcb_gpa: plan.ghcb,
        request_pages: plan.request,
        // Validated: the image and its boot pages, the VMSA page and the heap, the firmware.
        // Not: the GHCB and guest-request pages (shared) and a page skipped for the VMSA.
        regions: launch_regions(
            &ram,
            &[
                GpaRange::new(info.svsm.gpa.get(), plan.ghcb - info.svsm.gpa.get()),
                GpaRange::new(plan.firmware_vmsa, plan.heap_end - plan.firmware_vmsa),
                info.firmware,
            ],
        ),
        svsm_base: info.svsm.gpa.get(),
        svsm_size: info.svsm.size.get(),
        tsc_hz: hz,
    };
    let secrets = SecretsPage::parse(&secrets_bytes[..])
        .unwrap_or_else(fail(reason::PLATFORM, "secrets page"));
    // SAFETY: the entry maps PRIVATE_ALIAS..+ALIAS_SIZE with the C-bit set onto guest physical
    // 0..ALIAS_SIZE (top of guest memory checked above); SnpMemory checks a page's validation
    // before it touches it, and only copies (volatile) through it.
    let private = unsafe { DirectMap::new(PRIVATE_ALIAS as *mut u8, ALIAS_SIZE as usize) };
    let platform = SnpPlatform::new(cpu, shared_window(), private, secrets, config)
        .unwrap_or_else(fail(reason::PLATFORM, "SNP platform"));
    let (memory, mut psp, entropy, _clock) = platform.into_parts();
    let report = psp
        .attestation_report(&[0; 64], Vmpl::ZERO)
        .unwrap_or_else(fail(reason::PLATFORM, "first attestation report"));
    let boot_config = BootConfig {
        min_tcb: report.committed_tcb,
        expected_epoch: None,
    };
    let mut module = SvsmModule::boot(
        memory,
        psp,
        VolatileStore::default(),
        entropy,
        Some(&mut ImageTpmFactory::default()),
        boot_config,
    );
    crate::log!(
        "svsm-image: module booted: state {:?}, vTPM {}",
        module.state_status(),
        if module
            .protocol_versions(svsm_abi::svsm::PROTOCOL_VTPM)
            .is_some()
        {
            "served"
        } else {
            "NOT served"
        }
    );
    flush_log(&mut ghcb);

    // 6. The guest firmware.
    let guest_vmpl = info.guest_vmpl.get() as u8;
    let vmpl = Vmpl::new(guest_vmpl).unwrap_or_else(|| terminate(reason::SET, reason::BOOT_INFO));
    let mut guest_pages: Vec<(u64, u64)> = info
        .prevalidated_ranges()
        .iter()
        .map(|r| (r.gpa.get(), r.size.get() / PAGE))
        .collect();
    for gpa in [
        info.guest_secrets.get(),
        info.guest_cpuid.get(),
        info.guest_caa.get(),
    ] {
        guest_pages.push((gpa, 1));
    }
    for &(gpa, count) in &guest_pages {
        if page_state_change(&mut ghcb, gpa, count, PageStateOp::Private).is_err() {
            terminate(reason::SET, reason::GHCB);
        }
        for i in 0..count {
            module
                .memory_mut()
                .validate_for_guest(gpa + i * PAGE, guest_vmpl)
                .unwrap_or_else(fail(reason::GUEST, "validating the firmware's pages"));
        }
    }
    let mut cpuid_copy = read_page(info.cpuid.get());
    svsm_core::platform::GuestMemory::write(
        module.memory_mut(),
        Vmpl::ZERO,
        Gpa::new(info.guest_cpuid.get()),
        &cpuid_copy[..],
    )
    .unwrap_or_else(fail(reason::GUEST, "the firmware's CPUID page"));
    cpuid_copy.zeroize();
    for i in 0..info.firmware.size.get() / PAGE {
        module
            .memory_mut()
            .set_permissions(
                info.firmware.gpa.get() + i * PAGE,
                guest_vmpl,
                VmplPermissions::RWX,
                false,
            )
            .unwrap_or_else(fail(reason::GUEST, "granting the firmware to the guest"));
    }
    let cpu_signature = cpuid.lookup(1, 0, false).eax;
    let boot = GuestBoot {
        svsm_base: Gpa::new(info.svsm.gpa.get()),
        svsm_size: info.svsm.size.get(),
        guest_vmpl: vmpl,
        apic_id: BOOT_APIC_ID,
        firmware_vmsa: Gpa::new(plan.firmware_vmsa),
        calling_area: Gpa::new(info.guest_caa.get()),
        guest_secrets: Gpa::new(info.guest_secrets.get()),
        sev_features: info.sev_features.get(),
        cpu_signature,
    };
    let core = {
        let mut vcpus = SnpVcpus::new(&mut ghcb, &[BOOT_APIC_ID]);
        start_guest(module.memory_mut(), &mut vcpus, &boot, secrets)
            .unwrap_or_else(fail(reason::GUEST, "starting the firmware"))
    };
    // The SVSM's copy of the secrets page is no longer needed (VMPCK0 lives in the messenger).
    secrets_bytes.zeroize();
    drop(secrets_bytes);
    crate::log!(
        "svsm-image: firmware started at VMPL{guest_vmpl} (VMSA {:#x}, calling area {:#x})",
        plan.firmware_vmsa,
        info.guest_caa.get()
    );

    // 7. The request loop.
    let mut requests = RequestLoop::new(core);
    loop {
        flush_log(&mut ghcb);
        if let Err(e) = ghcb.run_vmpl(guest_vmpl) {
            // Without Run VMPL the guest can never run: nothing to retry.
            crate::log!("svsm-image: the host refused to run VMPL{guest_vmpl}: {e}");
            flush_log(&mut ghcb);
            terminate(reason::SET, reason::GHCB);
        }
        let mut vcpus = SnpVcpus::new(&mut ghcb, &[BOOT_APIC_ID]);
        if let Err(e) = requests.serve(&mut module, &mut vcpus, BOOT_APIC_ID) {
            crate::log!("svsm-image: entry not served: {e}");
        }
    }
}

/// Writes the log ring to COM1 through GHCB I/O events.
fn flush_log<S: svsm_platform_snp::SharedMemory>(ghcb: &mut Ghcb<HardwareCpu, S>) {
    log::drain(&mut |b| {
        let _ = ghcb.io_out(COM1, 1, u32::from(b));
    });
}
