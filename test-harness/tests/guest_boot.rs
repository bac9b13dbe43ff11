//! Starting the guest firmware under the SVSM on the simulated machine: the guest's secrets
//! page (VMPCK0 wiped for a VMPL1 guest, the SVSM fields at 0x140.. filled as the SVSM spec §4.1
//! lays them out), the calling area, the firmware's VMSA in reset state at VMPL1 (checked at the
//! APM Table B-4 offsets, not through the crate's struct), marked a VMSA and started; the core
//! protocol that comes out serves that vCPU; bad layouts are refused before anything changes.

use svsm_abi::snp::secrets::SecretsPage;
use svsm_core::guest_boot::{start_guest, GuestBoot, GuestBootError};
use svsm_core::platform::{Gpa, Vmpl};
use test_harness::sim::memory::{PagePerms, SimMemory};
use test_harness::sim::vcpus::SimVcpus;
use zerocopy::FromZeros;

const SVSM_BASE: u64 = 0x10_0000;
const SVSM_SIZE: u64 = 0x4_0000;
const FW_VMSA: u64 = 0x13_F000;
const CA: u64 = 0x8000;
const SECRETS: u64 = 0x9000;

fn boot() -> GuestBoot {
    GuestBoot {
        svsm_base: Gpa::new(SVSM_BASE),
        svsm_size: SVSM_SIZE,
        guest_vmpl: Vmpl::new(1).unwrap(),
        apic_id: 0,
        firmware_vmsa: Gpa::new(FW_VMSA),
        calling_area: Gpa::new(CA),
        guest_secrets: Gpa::new(SECRETS),
        sev_features: 0x1,
        cpu_signature: 0x00A1_0F11,
    }
}

fn machine() -> (SimMemory, SimVcpus, SecretsPage) {
    let mut memory = SimMemory::new(1024);
    for page in (SVSM_BASE..SVSM_BASE + SVSM_SIZE).step_by(4096) {
        memory.set_perms(page, PagePerms::VMPL0_PRIVATE);
    }
    // Guest pages the launch validated but did not yet give the guest.
    for page in [CA, SECRETS] {
        memory.set_perms(page, PagePerms::VMPL0_PRIVATE);
    }
    let mut secrets = SecretsPage::new_zeroed();
    secrets.version = 3.into();
    for (i, key) in secrets.vmpck.iter_mut().enumerate() {
        *key = [0x10 + i as u8; 32];
    }
    (memory, SimVcpus::new(&[0, 1]), secrets)
}

fn u64_at(m: &SimMemory, gpa: u64) -> u64 {
    u64::from_le_bytes(m.peek(gpa, 8).try_into().unwrap())
}

#[test]
fn the_firmware_starts_at_vmpl1_with_its_secrets_page_and_calling_area() {
    let (mut memory, mut vcpus, secrets) = machine();
    memory.poke(CA, &[0xFF; 8]);
    let core = start_guest(&mut memory, &mut vcpus, &boot(), &secrets).unwrap();

    // Secrets page: VMPCK0 (at 0x20) wiped, VMPCK1 (0x40) kept; SVSM_BASE 0x140, SVSM_SIZE
    // 0x148, SVSM_CAA 0x150, SVSM_MAX_VERSION 0x158, SVSM_GUEST_VMPL 0x15C.
    let page = memory.peek(SECRETS, 4096);
    assert_eq!(&page[0x20..0x40], &[0u8; 32]);
    assert_eq!(&page[0x40..0x60], &[0x11u8; 32]);
    assert_eq!(u64_at(&memory, SECRETS + 0x140), SVSM_BASE);
    assert_eq!(u64_at(&memory, SECRETS + 0x148), SVSM_SIZE);
    assert_eq!(u64_at(&memory, SECRETS + 0x150), CA);
    assert_eq!(&page[0x158..0x15C], &1u32.to_le_bytes());
    assert_eq!(page[0x15C], 1);
    assert!(memory.perms(SECRETS).unwrap().read[1]);

    // Calling area: nothing pending, the guest's.
    assert_eq!(memory.peek(CA, 8), [0u8; 8]);
    assert!(memory.perms(CA).unwrap().write[1]);

    // The firmware's VMSA: reset state (CS F000 base FFFF0000, RIP FFF0), VMPL 1, SVME, the
    // processor signature in RDX, the SEV features; a VMSA for VMPL1; started.
    let v = memory.peek(FW_VMSA, 4096);
    assert_eq!(&v[0x10..0x12], &0xF000u16.to_le_bytes());
    assert_eq!(u64_at(&memory, FW_VMSA + 0x18), 0xFFFF_0000);
    assert_eq!(u64_at(&memory, FW_VMSA + 0x178), 0xFFF0);
    assert_eq!(v[0xCA], 1);
    assert_eq!(u64_at(&memory, FW_VMSA + 0xD0), 0x1000);
    assert_eq!(u64_at(&memory, FW_VMSA + 0x310), 0x00A1_0F11);
    assert_eq!(u64_at(&memory, FW_VMSA + 0x3B0), 1);
    assert_eq!(memory.rmp_extra(FW_VMSA).unwrap().vmsa, Some(1));
    assert!(!memory.perms(FW_VMSA).unwrap().write[1]);
    // In the SVSM's memory: the guest cannot even read its VMSA (VMSA_ONLY).
    assert!(!memory.perms(FW_VMSA).unwrap().read[1]);
    assert_eq!(vcpus.started.len(), 1);
    assert_eq!(vcpus.started[0].vmsa, Gpa::new(FW_VMSA));
    assert_eq!(vcpus.started[0].vmpl, Vmpl::new(1).unwrap());

    // The core protocol serves that vCPU.
    assert_eq!(core.calling_area(0), Some(Gpa::new(CA)));
    assert_eq!(core.current(0).unwrap().vmsa, Gpa::new(FW_VMSA));
    assert!(core.current(0).unwrap().boot);
}

#[test]
fn bad_layouts_are_refused_before_anything_changes() {
    type Change = fn(&mut GuestBoot);
    let cases: [(&str, Change); 7] = [
        ("VMSA outside the SVSM", |b| {
            b.firmware_vmsa = Gpa::new(0xA000)
        }),
        ("VMSA 2 MiB aligned", |b| {
            b.svsm_base = Gpa::new(0x20_0000);
            b.firmware_vmsa = Gpa::new(0x20_0000)
        }),
        ("calling area inside the SVSM", |b| {
            b.calling_area = Gpa::new(SVSM_BASE)
        }),
        ("secrets copy = calling area", |b| {
            b.guest_secrets = Gpa::new(CA)
        }),
        ("misaligned", |b| b.calling_area = Gpa::new(CA + 8)),
        ("guest at VMPL0", |b| b.guest_vmpl = Vmpl::ZERO),
        ("SVSM memory wraps", |b| b.svsm_size = !0xFFFu64),
    ];
    for (what, change) in cases {
        let (mut memory, mut vcpus, secrets) = machine();
        let mut b = boot();
        change(&mut b);
        let r = start_guest(&mut memory, &mut vcpus, &b, &secrets);
        assert!(matches!(r, Err(GuestBootError::Layout(_))), "{what}");
        assert!(vcpus.started.is_empty(), "{what}");
        assert_eq!(memory.peek(SECRETS + 0x140, 8), [0u8; 8], "{what}");
    }
    // The platform refusing the vCPU is reported, not hidden.
    let (mut memory, mut vcpus, secrets) = machine();
    let mut b = boot();
    b.apic_id = 7;
    assert!(matches!(
        start_guest(&mut memory, &mut vcpus, &b, &secrets),
        Err(GuestBootError::Vcpu(_))
    ));
}
