//! The SVSM core protocol on the simulated machine's RMP model, with requests laid out byte by
//! byte from the SVSM spec (AMD 58019 §6: RAX = protocol << 32 | call; the PVALIDATE list's
//! u16 count at +0, u16 next at +2, 4 reserved bytes, then u64 entries with the size in bits
//! 1:0, validate in bit 2, "ignore unchanged" in bit 3 and the GFN from bit 12), placed where
//! Linux places them (the calling area + 8), not built from the crate's own structs. Each
//! refusal is checked against the spec's result code.

use svsm_abi::svsm::CallRegisters;
use svsm_core::core_protocol::{Caller, CoreProtocol, VcpuRecord, PVALIDATE_BATCH};
use svsm_core::platform::{Gpa, GuestMemory, Vmpl};
use test_harness::sim::memory::{PagePerms, SimMemory};
use test_harness::sim::vcpus::SimVcpus;

const SUCCESS: u32 = 0;
const INCOMPLETE: u32 = 0x8000_0000;
const UNSUPPORTED_CALL: u32 = 0x8000_0002;
const INVALID_ADDRESS: u32 = 0x8000_0003;
const INVALID_PARAMETER: u32 = 0x8000_0005;
const PVALIDATE_FAIL_SIZEMISMATCH: u32 = 0x8000_1006;
const PVALIDATE_FAIL_UNCHANGED: u32 = 0x8000_1010;
const DELETE_VCPU_IN_USE: u32 = 0x8000_1003;

const REMAP_CA: u64 = 0;
const PVALIDATE: u64 = 1;
const CREATE_VCPU: u64 = 2;
const DELETE_VCPU: u64 = 3;
const DEPOSIT_MEM: u64 = 4;

const SVSM_START: u64 = 0x1_0000;
const SVSM_END: u64 = 0x2_0000;
const BOOT_VMSA: u64 = 0x2_0000;
const BOOT_CA: u64 = 0x2_1000;
/// Pages the tests validate (unvalidated at the start): 0x100000..0x180000.
const POOL: u64 = 0x10_0000;
/// A 2 MiB RMP entry, unvalidated: 0x200000..0x400000.
const LARGE: u64 = 0x20_0000;
/// A 2 MiB region of 4 KiB RMP entries, nothing of the SVSM's in it: 0x400000..0x600000.
const SMALL_2M: u64 = 0x40_0000;
const SEV_FEATURES: u64 = 0x1;

struct Machine {
    memory: SimMemory,
    core: CoreProtocol,
    vcpus: SimVcpus,
}

fn vmpl1() -> Caller {
    Caller {
        vmpl: Vmpl::new(1).unwrap(),
        apic_id: 0,
    }
}

fn machine() -> Machine {
    let mut memory = SimMemory::new(1536);
    for page in (SVSM_START..SVSM_END).step_by(4096) {
        memory.set_perms(page, PagePerms::VMPL0_PRIVATE);
    }
    memory.set_perms(BOOT_VMSA, PagePerms::VMPL0_PRIVATE);
    let unvalidated = PagePerms {
        validated: false,
        ..PagePerms::SHARED
    };
    for page in (POOL..POOL + 0x8_0000).step_by(4096) {
        memory.set_perms(page, unvalidated);
    }
    memory.set_rmp_2m(LARGE, true);
    for page in (LARGE..LARGE + 0x20_0000).step_by(4096) {
        memory.set_perms(page, unvalidated);
    }
    let core = CoreProtocol::new(
        Gpa::new(SVSM_START),
        Gpa::new(SVSM_END),
        VcpuRecord {
            apic_id: 0,
            vmpl: Vmpl::new(1).unwrap(),
            vmsa: Gpa::new(BOOT_VMSA),
            ca: Gpa::new(BOOT_CA),
            boot: true,
            superseded: false,
        },
        SEV_FEATURES,
    );
    Machine {
        memory,
        core,
        vcpus: SimVcpus::new(&[0, 1, 2]),
    }
}

impl Machine {
    /// Issues core call `call` as `caller` with RCX/RDX/R8; returns RAX's low 32 bits.
    fn call_as(&mut self, caller: Caller, call: u64, rcx: u64, rdx: u64, r8: u64) -> u32 {
        let mut regs = CallRegisters {
            rax: call, // protocol 0 in bits 63:32
            rcx,
            rdx,
            r8,
            r9: 0,
        };
        let r = self.core.handle(
            &mut self.memory,
            &mut self.vcpus,
            caller,
            call as u32,
            &mut regs,
        );
        match r {
            Ok(()) => SUCCESS,
            Err(e) => e.result_code().to_u32(),
        }
    }

    fn call(&mut self, call: u64, rcx: u64, rdx: u64, r8: u64) -> u32 {
        self.call_as(vmpl1(), call, rcx, rdx, r8)
    }

    /// Writes a PVALIDATE list at `at`: count, next, 4 reserved bytes, the entries.
    fn list(&mut self, at: u64, next: u16, entries: &[u64]) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        for e in entries {
            bytes.extend_from_slice(&e.to_le_bytes());
        }
        self.memory.poke(at, &bytes);
    }

    fn next(&self, at: u64) -> u16 {
        let b = self.memory.peek(at + 2, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    fn validated(&self, gpa: u64) -> bool {
        self.memory.perms(gpa).unwrap().validated
    }
}

/// Entry: GFN in bits 63:12, size in 1:0 (0 = 4K, 1 = 2M), validate bit 2, ignore-CF bit 3.
fn entry(gpa: u64, size_2m: bool, validate: bool, ignore_unchanged: bool) -> u64 {
    gpa | u64::from(size_2m) | (u64::from(validate) << 2) | (u64::from(ignore_unchanged) << 3)
}

const LIST: u64 = BOOT_CA + 8;

#[test]
fn pvalidate_one_to_n_entries_validates_zeroes_and_grants_the_caller() {
    let mut m = machine();
    // Stale content the host left in a page: zeroed before the guest can read it.
    m.memory.poke(POOL, &[0xAA; 64]);
    m.list(LIST, 0, &[entry(POOL, false, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    assert_eq!(m.next(LIST), 1);
    assert!(m.validated(POOL));
    let mut buf = [0xFFu8; 64];
    m.memory
        .read(Vmpl::new(1).unwrap(), Gpa::new(POOL), &mut buf)
        .unwrap();
    assert_eq!(buf, [0u8; 64]);

    // N entries in one call.
    let pages: Vec<u64> = (1..=10)
        .map(|i| entry(POOL + i * 4096, false, true, false))
        .collect();
    m.list(LIST, 0, &pages);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    assert_eq!(m.next(LIST), 10);
    assert!((1..=10).all(|i| m.validated(POOL + i * 4096)));

    // Rescind: the caller loses the page.
    m.list(LIST, 0, &[entry(POOL, false, false, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    assert!(!m.validated(POOL));
    assert!(m
        .memory
        .read(Vmpl::new(1).unwrap(), Gpa::new(POOL), &mut buf)
        .is_err());
}

#[test]
fn pvalidate_partial_failure_reports_the_failing_index() {
    let mut m = machine();
    let already = POOL + 0x1000;
    m.list(LIST, 0, &[entry(already, false, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    // Entry 1 is already validated and does not allow "unchanged": entries 0 done, 1 fails,
    // 2 untouched.
    m.list(
        LIST,
        0,
        &[
            entry(POOL, false, true, false),
            entry(already, false, true, false),
            entry(POOL + 0x2000, false, true, false),
        ],
    );
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), PVALIDATE_FAIL_UNCHANGED);
    assert_eq!(m.next(LIST), 1);
    assert!(m.validated(POOL));
    assert!(!m.validated(POOL + 0x2000));
    // Bit 3 set on the same entry: the list completes from where it stopped.
    m.list(
        LIST,
        1,
        &[
            entry(POOL, false, true, false),
            entry(already, false, true, true),
            entry(POOL + 0x2000, false, true, false),
        ],
    );
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    assert_eq!(m.next(LIST), 3);
    assert!(m.validated(POOL + 0x2000));
}

#[test]
fn pvalidate_2m_pages_and_size_mismatch() {
    let mut m = machine();
    // 4 KiB inside a 2 MiB RMP entry: FAIL_SIZEMISMATCH (0x8000_1000 + 6), as Linux expects
    // before it falls back.
    m.list(LIST, 0, &[entry(LARGE + 0x1000, false, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), PVALIDATE_FAIL_SIZEMISMATCH);
    assert_eq!(m.next(LIST), 0);
    // 2 MiB over 4 KiB entries: the same.
    m.list(LIST, 0, &[entry(0, true, true, true)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_ADDRESS); // covers the SVSM: refused first
    m.list(LIST, 0, &[entry(SMALL_2M, true, true, true)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), PVALIDATE_FAIL_SIZEMISMATCH);
    // The 2 MiB entry itself.
    m.list(LIST, 0, &[entry(LARGE, true, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    assert!(m.validated(LARGE) && m.validated(LARGE + 0x1F_F000));
    // A 2 MiB entry whose GFN is not 2 MiB aligned: bits 20:12 must be 0.
    m.list(LIST, 0, &[entry(LARGE + 0x1000, true, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_PARAMETER);
}

#[test]
fn pvalidate_malformed_lists_are_refused() {
    let mut m = machine();
    // A list that crosses the page: 2 entries starting 8 bytes before the page's end.
    let near_end = BOOT_CA + 0xFF0;
    m.list(
        near_end,
        0,
        &[
            entry(POOL, false, true, false),
            entry(POOL + 0x1000, false, true, false),
        ],
    );
    assert_eq!(m.call(PVALIDATE, near_end, 0, 0), INVALID_PARAMETER);
    // Not 8-byte aligned.
    assert_eq!(m.call(PVALIDATE, LIST + 4, 0, 0), INVALID_PARAMETER);
    // No entries; next not below the count.
    m.list(LIST, 0, &[]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_PARAMETER);
    m.list(LIST, 1, &[entry(POOL, false, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_PARAMETER);
    // Reserved bits 11:4; page size 2 and 3.
    m.list(LIST, 0, &[entry(POOL, false, true, false) | 0x10]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_PARAMETER);
    m.list(LIST, 0, &[POOL | 2]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_PARAMETER);
    // The SVSM's own page, the boot VMSA, the calling area.
    for gpa in [SVSM_START + 0x3000, BOOT_VMSA, BOOT_CA] {
        m.list(LIST, 0, &[entry(gpa, false, false, true)]);
        assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_ADDRESS, "{gpa:#x}");
        assert_eq!(m.next(LIST), 0);
    }
    // A list in memory the caller cannot read (the SVSM's).
    assert_eq!(m.call(PVALIDATE, SVSM_START, 0, 0), INVALID_ADDRESS);
    // Beyond guest memory.
    m.list(LIST, 0, &[entry(0x4000_0000, false, true, false)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), 0x8000_1001);
}

#[test]
fn pvalidate_long_lists_complete_over_several_calls() {
    let mut m = machine();
    let n = PVALIDATE_BATCH + 36;
    let pages: Vec<u64> = (0..n as u64)
        .map(|i| entry(POOL + i * 4096, false, true, false))
        .collect();
    m.list(LIST, 0, &pages);
    // Linux re-issues the same call on INCOMPLETE; `next` says where the SVSM resumes.
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INCOMPLETE);
    assert_eq!(usize::from(m.next(LIST)), PVALIDATE_BATCH);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), SUCCESS);
    assert_eq!(usize::from(m.next(LIST)), n);
    assert!((0..n as u64).all(|i| m.validated(POOL + i * 4096)));
}

#[test]
fn remap_ca() {
    let mut m = machine();
    assert_eq!(m.call(REMAP_CA, 0x3_0008, 0, 0), INVALID_PARAMETER); // misaligned
    assert_eq!(m.call(REMAP_CA, SVSM_START, 0, 0), INVALID_ADDRESS); // the SVSM's page
    assert_eq!(m.call(REMAP_CA, BOOT_VMSA, 0, 0), INVALID_ADDRESS); // a VMSA
    assert_eq!(m.call(REMAP_CA, POOL, 0, 0), INVALID_ADDRESS); // not validated
    assert_eq!(m.call(REMAP_CA, 0x4000_0000, 0, 0), INVALID_ADDRESS); // not memory
    assert_eq!(m.core.calling_area(0), Some(Gpa::new(BOOT_CA)));
    m.memory.poke(
        0x3_0000,
        &[1, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0x77],
    );
    assert_eq!(m.call(REMAP_CA, 0x3_0000, 0, 0), SUCCESS);
    assert_eq!(m.core.calling_area(0), Some(Gpa::new(0x3_0000)));
    // The new area's first 8 bytes are cleared (no call pending); the rest is the guest's.
    assert_eq!(m.memory.peek(0x3_0000, 9), [0, 0, 0, 0, 0, 0, 0, 0, 0x77]);
    // The old area is an ordinary page again: a list may live there.
    m.list(BOOT_CA + 8, 0, &[entry(POOL, false, true, false)]);
    assert_eq!(m.call(PVALIDATE, BOOT_CA + 8, 0, 0), SUCCESS);
}

/// A VMSA page as a guest prepares one: VMPL at 0xCA, EFER (SVME = bit 12) at 0xD0,
/// SEV_FEATURES at 0x3B0.
fn write_vmsa(m: &mut Machine, at: u64, vmpl: u8, efer: u64, features: u64) {
    let mut page = vec![0u8; 4096];
    page[0xCA] = vmpl;
    page[0xD0..0xD8].copy_from_slice(&efer.to_le_bytes());
    page[0x3B0..0x3B8].copy_from_slice(&features.to_le_bytes());
    m.memory.poke(at, &page);
}

#[test]
fn create_and_delete_vcpu() {
    let mut m = machine();
    let (vmsa, ca) = (0x4_1000, 0x4_2000);
    let svme = 1 << 12;
    m.memory.poke(ca, &[0xCC; 16]);
    // Bad VMSAs, each with its code.
    write_vmsa(&mut m, vmsa, 0, svme, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 1), INVALID_PARAMETER); // VMPL 0
    write_vmsa(&mut m, vmsa, 4, svme, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 1), INVALID_PARAMETER); // VMPL 4
    write_vmsa(&mut m, vmsa, 1, 0, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 1), INVALID_PARAMETER); // SVME clear
    write_vmsa(&mut m, vmsa, 1, svme, SEV_FEATURES | 0x80);
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 1), INVALID_PARAMETER); // other features
    write_vmsa(&mut m, vmsa, 1, svme, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, vmsa + 8, ca, 1), INVALID_PARAMETER); // misaligned
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca + 8, 1), INVALID_PARAMETER);
    // 2 MiB aligned (a readable, validated page: only the erratum check refuses it).
    write_vmsa(&mut m, SMALL_2M, 1, svme, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, SMALL_2M, ca, 1), INVALID_ADDRESS);
    // The boot vCPU's calling area as a VMSA, or as another vCPU's calling area: both pages
    // the caller can read and write, refused only because they are in use.
    write_vmsa(&mut m, BOOT_CA, 1, svme, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, BOOT_CA, ca, 1), INVALID_ADDRESS);
    assert_eq!(m.call(CREATE_VCPU, vmsa, BOOT_CA, 1), INVALID_ADDRESS);
    assert_eq!(m.call(CREATE_VCPU, vmsa, vmsa, 1), INVALID_ADDRESS);
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 9), INVALID_PARAMETER); // no such APIC ID
                                                                     // From VMPL2, a VMPL1 VMSA is more privileged than the caller.
    let vmpl2 = Caller {
        vmpl: Vmpl::new(2).unwrap(),
        apic_id: 0,
    };
    assert_eq!(
        m.call_as(vmpl2, CREATE_VCPU, vmsa, ca, 1),
        INVALID_PARAMETER
    );
    // Nothing changed after any refusal: the page is the caller's, the calling area intact.
    assert_eq!(m.memory.rmp_extra(vmsa).unwrap().vmsa, None);
    assert_eq!(m.memory.perms(vmsa).unwrap(), PagePerms::SHARED);
    assert_eq!(m.memory.peek(ca, 16), [0xCC; 16]);
    assert_eq!(m.core.calling_area(1), None);

    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 1), SUCCESS);
    assert_eq!(m.memory.rmp_extra(vmsa).unwrap().vmsa, Some(1));
    let p = m.memory.perms(vmsa).unwrap();
    assert!(!p.write[1] && !p.write[2] && !p.write[3], "{p:?}");
    assert_eq!(m.core.calling_area(1), Some(Gpa::new(ca)));
    assert_eq!(
        m.memory.peek(ca, 16)[..8],
        [0; 8],
        "no call pending in the new area"
    );
    // The VMSA and the CA are now off limits to PVALIDATE and REMAP_CA.
    m.list(LIST, 0, &[entry(vmsa, false, false, true)]);
    assert_eq!(m.call(PVALIDATE, LIST, 0, 0), INVALID_ADDRESS);
    assert_eq!(m.call(REMAP_CA, ca, 0, 0), INVALID_ADDRESS);

    // Linux brings a vCPU back online: a new VMSA for the same APIC ID (same calling area)
    // first, then DELETE_VCPU of the old one, which leaves the new one alone.
    let vmsa2 = 0x4_3000;
    write_vmsa(&mut m, vmsa2, 1, svme, SEV_FEATURES);
    assert_eq!(m.call(CREATE_VCPU, vmsa2, ca, 1), SUCCESS);
    assert_eq!(m.core.current(1).unwrap().vmsa, Gpa::new(vmsa2));
    assert_eq!(m.call(DELETE_VCPU, vmsa, 0, 0), SUCCESS);
    assert_eq!(m.core.current(1).unwrap().vmsa, Gpa::new(vmsa2));
    assert_eq!(m.memory.rmp_extra(vmsa).unwrap().vmsa, None);
    assert!(m.memory.perms(vmsa).unwrap().write[1]);
    assert_eq!(m.memory.rmp_extra(vmsa2).unwrap().vmsa, Some(1));

    // DELETE_VCPU: not a VMSA, the boot vCPU, a running vCPU, then for real.
    assert_eq!(m.call(DELETE_VCPU, 0x4_4000, 0, 0), INVALID_PARAMETER);
    assert_eq!(m.call(DELETE_VCPU, BOOT_VMSA, 0, 0), INVALID_PARAMETER);
    m.memory.set_vmsa_running(vmsa2, true);
    assert_eq!(m.call(DELETE_VCPU, vmsa2, 0, 0), DELETE_VCPU_IN_USE);
    // Still a VMSA, still runnable (SVME put back).
    assert_eq!(m.memory.rmp_extra(vmsa2).unwrap().vmsa, Some(1));
    let efer = u64::from_le_bytes(m.memory.peek(vmsa2 + 0xD0, 8).try_into().unwrap());
    assert_ne!(efer & svme, 0);
    m.memory.set_vmsa_running(vmsa2, false);
    assert_eq!(m.call(DELETE_VCPU, vmsa2, 0, 0), SUCCESS);
    let efer = u64::from_le_bytes(m.memory.peek(vmsa2 + 0xD0, 8).try_into().unwrap());
    assert_eq!(efer & svme, 0, "the deleted VMSA cannot run again");
    assert_eq!(m.memory.rmp_extra(vmsa2).unwrap().vmsa, None);
    assert!(m.memory.perms(vmsa2).unwrap().write[1]);
    assert_eq!(m.core.calling_area(1), None);
}

#[test]
fn a_vmsa_rewritten_during_create_vcpu_is_refused() {
    use test_harness::sim::memory::Hostility;
    let mut m = machine();
    let (vmsa, ca) = (0x4_1000, 0x4_2000);
    write_vmsa(&mut m, vmsa, 1, 1 << 12, SEV_FEATURES);
    m.memory.poke(ca, &[0xCC; 8]);
    // Another vCPU rewrites the page right after the SVSM copied it for the checks (the
    // hostile memory changes every buffer a guest VMPL's read returned).
    m.memory.hostility = Hostility::MutateAfterRead;
    assert_eq!(m.call(CREATE_VCPU, vmsa, ca, 1), INVALID_PARAMETER);
    m.memory.hostility = Hostility::None;
    assert_eq!(m.memory.rmp_extra(vmsa).unwrap().vmsa, None);
    // Every VMPL has exactly the access it had, and the calling area was not cleared.
    assert_eq!(m.memory.perms(vmsa).unwrap(), PagePerms::SHARED);
    assert_ne!(m.memory.peek(ca, 8), [0u8; 8]);
    assert_eq!(m.core.calling_area(1), None);
}

#[test]
fn unsupported_core_calls_and_the_module_dispatch() {
    let mut m = machine();
    assert_eq!(m.call(DEPOSIT_MEM, LIST, 0, 0), UNSUPPORTED_CALL);
    assert_eq!(m.call(5, LIST, 0, 0), UNSUPPORTED_CALL);
    assert_eq!(m.call(7, 1, 0, 0), UNSUPPORTED_CALL);

    // Through the module of a simulated machine: QUERY_PROTOCOL is the module's, PVALIDATE
    // the core protocol's, on the machine's own memory.
    use test_harness::sim::psp::LaunchConfig;
    use test_harness::sim::SimMachine;
    let machine = SimMachine::new(LaunchConfig::genoa([0x5A; 48])).unwrap();
    let mut module = machine.module();
    let mut core = CoreProtocol::new(
        Gpa::new(0x1000_0000),
        Gpa::new(0x1001_0000),
        VcpuRecord {
            apic_id: 0,
            vmpl: Vmpl::new(1).unwrap(),
            vmsa: Gpa::new(0x1002_0000),
            ca: Gpa::new(0x2000),
            boot: true,
            superseded: false,
        },
        SEV_FEATURES,
    );
    let mut vcpus = SimVcpus::new(&[0]);
    // QUERY_PROTOCOL(core, version 1): RCX = (max << 32) | min.
    let mut regs = CallRegisters {
        rax: 6,
        rcx: 1,
        rdx: 0,
        r8: 0,
        r9: 0,
    };
    module.handle_vcpu_call(&mut core, &mut vcpus, vmpl1(), &mut regs);
    assert_eq!((regs.rax, regs.rcx), (0, (1 << 32) | 1));
    // A one-entry PVALIDATE list at CA+8 rescinding page 0x5000, then validating it again.
    let mut list = vec![1, 0, 0, 0, 0, 0, 0, 0];
    list.extend_from_slice(&(0x5000u64 | 0b1000).to_le_bytes());
    module
        .memory_mut()
        .write(Vmpl::new(1).unwrap(), Gpa::new(0x2008), &list)
        .unwrap();
    let mut regs = CallRegisters {
        rax: 1,
        rcx: 0x2008,
        rdx: 0,
        r8: 0,
        r9: 0,
    };
    module.handle_vcpu_call(&mut core, &mut vcpus, vmpl1(), &mut regs);
    assert_eq!(regs.rax, 0);
    assert!(!module.memory_mut().perms(0x5000).unwrap().validated);
    // Protocol 2 (vTPM) still reaches the module's services.
    let mut regs = CallRegisters {
        rax: 2 << 32,
        rcx: 0,
        rdx: 0,
        r8: 0,
        r9: 0,
    };
    module.handle_vcpu_call(&mut core, &mut vcpus, vmpl1(), &mut regs);
    assert_eq!(regs.rax, 0, "vTPM QUERY");
    assert_ne!(regs.rcx & (1 << 8), 0, "TPM_SEND_COMMAND offered");
}
