//! The SVSM request loop against a simulated calling area and VMSA (SVSM spec §5): the guest's
//! registers at the VMSA offsets of AMD APM vol. 2 Table B-4 (EFER 0xD0, RIP 0x178, RAX 0x1F8,
//! RCX 0x308, RDX 0x310, R8 0x340, R9 0x348, exit code 0x3C0), CALL_PENDING at calling area
//! byte 0, written here byte by byte as a guest and a host would leave them. Checked: a call
//! clears CALL_PENDING and writes the registers back the way Linux reads them (an output only in
//! a register that changed), spurious entries do nothing, a reserved CALL_PENDING value is
//! INVALID_FORMAT, an interrupted (INCOMPLETE) call resumes when re-issued, and SVME is set again
//! after every entry.

use svsm_core::core_protocol::{CoreProtocol, VcpuRecord, PVALIDATE_BATCH};
use svsm_core::platform::{Gpa, Vmpl};
use svsm_core::request_loop::{RequestLoop, Served};
use test_harness::sim::memory::PagePerms;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::vcpus::SimVcpus;
use test_harness::sim::SimMachine;

const VMSA: u64 = 0x3_1000;
const CA: u64 = 0x3_2000;
const RESULT_AREA: u64 = 0x3_3000;
const SVME: u64 = 1 << 12;
const VMGEXIT: u64 = 0x403;
const ALL_ONES: u64 = !0;

struct Rig {
    machine: SimMachine,
    looper: RequestLoop,
    vcpus: SimVcpus,
    /// Last: released after the machine (and its TPM engine) is gone.
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// One TPM engine per process: machines are built in turn.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn rig() -> Rig {
    let turn = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x5A; 48])).unwrap();
    machine
        .module()
        .memory_mut()
        .set_perms(VMSA, PagePerms::VMPL0_PRIVATE);
    let core = CoreProtocol::new(
        Gpa::new(0x3F_0000),
        Gpa::new(0x40_0000),
        VcpuRecord {
            apic_id: 0,
            vmpl: Vmpl::new(1).unwrap(),
            vmsa: Gpa::new(VMSA),
            ca: Gpa::new(CA),
            boot: true,
            superseded: false,
        },
        1,
    );
    Rig {
        _turn: turn,
        machine,
        looper: RequestLoop::new(core),
        vcpus: SimVcpus::new(&[0, 1]),
    }
}

impl Rig {
    fn poke_u64(&self, gpa: u64, v: u64) {
        self.machine
            .module()
            .memory_mut()
            .poke(gpa, &v.to_le_bytes());
    }
    fn peek_u64(&self, gpa: u64) -> u64 {
        let b = self.machine.module().memory_mut().peek(gpa, 8);
        u64::from_le_bytes(b.try_into().unwrap())
    }
    fn pending(&self) -> u8 {
        self.machine.module().memory_mut().peek(CA, 1)[0]
    }
    fn set_pending(&self, v: u8) {
        self.machine.module().memory_mut().poke(CA, &[v]);
    }
    /// The guest issues a call: registers in its VMSA, CALL_PENDING = 1, VMGEXIT.
    fn issue(&self, rax: u64, rcx: u64, rdx: u64, r8: u64, r9: u64) {
        self.issue_on(VMSA, CA, rax, rcx, rdx, r8, r9);
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_on(&self, vmsa: u64, ca: u64, rax: u64, rcx: u64, rdx: u64, r8: u64, r9: u64) {
        for (off, v) in [
            (0x1F8, rax),
            (0x308, rcx),
            (0x310, rdx),
            (0x340, r8),
            (0x348, r9),
            (0x3C0, VMGEXIT),
            (0xD0, SVME | 0x1000_0500), // SVME, LME, LMA and another bit that must survive
            (0x178, 0xFFFF_FFFF_8100_1234),
        ] {
            self.poke_u64(vmsa + off, v);
        }
        self.machine.module().memory_mut().poke(ca, &[1]);
    }
    fn serve(&mut self) -> Served {
        let mut module = self.machine.module();
        self.looper.serve(&mut module, &mut self.vcpus, 0).unwrap()
    }
    fn regs(&self) -> [u64; 5] {
        [0x1F8, 0x308, 0x310, 0x340, 0x348].map(|off| self.peek_u64(VMSA + off))
    }
    fn efer(&self) -> u64 {
        self.peek_u64(VMSA + 0xD0)
    }
}

#[test]
fn a_call_clears_call_pending_and_writes_back_only_what_changed() {
    let mut r = rig();
    // QUERY_PROTOCOL(attestation, v1): RCX out; RDX, R8, R9 are not outputs.
    r.issue(6, (1 << 32) | 1, ALL_ONES, ALL_ONES, 0x9999);
    assert_eq!(r.serve(), Served::Call(0));
    assert_eq!(r.pending(), 0);
    assert_eq!(r.regs(), [0, (1 << 32) | 1, ALL_ONES, ALL_ONES, 0x9999]);
    assert_eq!(r.efer(), SVME | 0x1000_0500);
    assert_eq!(
        r.peek_u64(VMSA + 0x178),
        0xFFFF_FFFF_8100_1234,
        "RIP untouched"
    );

    // vTPM QUERY: RCX = the command bitmap (bit 8, TPM_SEND_COMMAND), RDX = 0 (no features).
    // Linux reads RCX; RDX changed from ~0 to 0, R8 stays ~0.
    r.issue(2 << 32, ALL_ONES, ALL_ONES, ALL_ONES, ALL_ONES);
    assert_eq!(r.serve(), Served::Call(0));
    assert_eq!(r.regs(), [0, 1 << 8, 0, ALL_ONES, ALL_ONES]);

    // SVSM_ATTEST_SERVICES with a report buffer too small, laid out at CA+8 as Linux does
    // (report gpa/size, nonce gpa/size, manifest gpa/size, certificates gpa/size), RDX = R8 =
    // ~0: INVALID_PARAMETER, and the sizes it needs in RCX (manifest), RDX (certificates) and
    // R8 (report) — registers that changed, which is how Linux knows they are lengths.
    let mut req = Vec::new();
    req.extend_from_slice(&RESULT_AREA.to_le_bytes());
    req.extend_from_slice(&16u32.to_le_bytes()); // report buffer: 16 bytes
    req.extend_from_slice(&[0; 4]);
    req.extend_from_slice(&(RESULT_AREA + 0x800).to_le_bytes()); // nonce
    req.extend_from_slice(&64u16.to_le_bytes());
    req.extend_from_slice(&[0; 6]);
    req.extend_from_slice(&(RESULT_AREA + 0x100).to_le_bytes()); // manifest
    req.extend_from_slice(&0x100u32.to_le_bytes());
    req.extend_from_slice(&[0; 4]);
    req.extend_from_slice(&0u64.to_le_bytes()); // no certificates wanted
    req.extend_from_slice(&0u32.to_le_bytes());
    req.extend_from_slice(&[0; 4]);
    assert_eq!(req.len(), 0x40);
    r.machine.module().memory_mut().poke(CA + 8, &req);
    r.issue(1 << 32, CA + 8, ALL_ONES, ALL_ONES, 0);
    assert_eq!(r.serve(), Served::Call(0x8000_0005));
    let [rax, rcx, rdx, r8, _] = r.regs();
    assert_eq!(rax, 0x8000_0005);
    let needed_manifest = rcx;
    assert_eq!(rdx, 0, "no certificates wanted: RDX changed to 0");
    assert_eq!(r8, 1184, "the report size in R8");
    assert_eq!(r.pending(), 0);
    // With room for everything, the manifest written is exactly the length RCX announced
    // (its total_size field, services manifest header offset 16).
    let mut big = req.clone();
    big[0x08..0x0C].copy_from_slice(&4096u32.to_le_bytes());
    big[0x20..0x28].copy_from_slice(&(RESULT_AREA + 0x1000).to_le_bytes());
    big[0x28..0x2C].copy_from_slice(&0x1000u32.to_le_bytes());
    r.machine.module().memory_mut().poke(CA + 8, &big);
    r.issue(1 << 32, CA + 8, ALL_ONES, ALL_ONES, 0);
    assert_eq!(r.serve(), Served::Call(0));
    let written = r
        .machine
        .module()
        .memory_mut()
        .peek(RESULT_AREA + 0x1000 + 16, 4);
    assert_eq!(
        u64::from(u32::from_le_bytes(written.try_into().unwrap())),
        needed_manifest
    );
    assert_eq!(r.regs()[1], needed_manifest);

    // A certificate table larger than the guest's certificate buffer: the size Linux needs
    // comes back in RDX (it rounds up to pages and retries).
    let table_len = {
        use svsm_core::platform::SecureProcessor;
        r.machine.module().psp_mut().certificates().unwrap().len() as u64
    };
    assert!(table_len > 0x10);
    req[0x08..0x0C].copy_from_slice(&4096u32.to_le_bytes()); // report buffer big enough
    req[0x28..0x2C].copy_from_slice(&0x800u32.to_le_bytes()); // manifest buffer big enough
    req[0x30..0x38].copy_from_slice(&(RESULT_AREA + 0xC00).to_le_bytes());
    req[0x38..0x3C].copy_from_slice(&0x10u32.to_le_bytes()); // 16-byte certificate buffer
    r.machine.module().memory_mut().poke(CA + 8, &req);
    r.issue(1 << 32, CA + 8, ALL_ONES, ALL_ONES, 0);
    assert_eq!(r.serve(), Served::Call(0x8000_0005));
    let [_, _, rdx, r8, _] = r.regs();
    assert_eq!(rdx, table_len, "the certificate table's size in RDX");
    assert_eq!(r8, 1184);
}

#[test]
fn spurious_entries_do_nothing() {
    let mut r = rig();
    // The host enters VMPL0 after an exit that is not VMGEXIT (an NPF, 0x400).
    r.issue(6, (1 << 32) | 1, 7, 8, 9);
    r.poke_u64(VMSA + 0x3C0, 0x400);
    assert_eq!(r.serve(), Served::NotVmgexit(0x400));
    assert_eq!(r.regs(), [6, (1 << 32) | 1, 7, 8, 9]);
    assert_eq!(r.pending(), 1, "the call stays pending");
    assert_eq!(r.efer(), SVME | 0x1000_0500);
    // VMGEXIT without CALL_PENDING.
    r.poke_u64(VMSA + 0x3C0, VMGEXIT);
    r.set_pending(0);
    assert_eq!(r.serve(), Served::NotPending);
    assert_eq!(r.regs(), [6, (1 << 32) | 1, 7, 8, 9]);
    assert_eq!(r.efer(), SVME | 0x1000_0500);
    // A reserved CALL_PENDING value: INVALID_FORMAT, nothing dispatched.
    r.issue(6, (1 << 32) | 1, 7, 8, 9);
    r.set_pending(2);
    assert_eq!(r.serve(), Served::Call(0x8000_0004));
    assert_eq!(r.regs(), [0x8000_0004, (1 << 32) | 1, 7, 8, 9]);
    assert_eq!(r.pending(), 0);
    // An unknown vCPU is an error, not a call.
    let mut module = r.machine.module();
    assert!(r.looper.serve(&mut module, &mut r.vcpus, 5).is_err());
}

#[test]
fn an_interrupted_call_resumes_when_reissued() {
    let mut r = rig();
    // A PVALIDATE list at CA+8 longer than one batch, rescinding pages 0x100000.. (ignore
    // "unchanged"), as Linux sends it.
    let n = PVALIDATE_BATCH + 10;
    let mut list = Vec::new();
    list.extend_from_slice(&(n as u16).to_le_bytes());
    list.extend_from_slice(&0u16.to_le_bytes());
    list.extend_from_slice(&[0; 4]);
    for i in 0..n as u64 {
        list.extend_from_slice(&((0x10_0000 + i * 0x1000) | 0b1000).to_le_bytes());
    }
    r.machine.module().memory_mut().poke(CA + 8, &list);
    r.issue(1, CA + 8, ALL_ONES, ALL_ONES, 0);
    assert_eq!(r.serve(), Served::Call(0x8000_0000), "INCOMPLETE");
    assert_eq!(r.pending(), 0);
    let next = r.machine.module().memory_mut().peek(CA + 10, 2);
    assert_eq!(
        usize::from(u16::from_le_bytes([next[0], next[1]])),
        PVALIDATE_BATCH
    );
    // Linux sees -EAGAIN and issues the same call again.
    r.issue(1, CA + 8, ALL_ONES, ALL_ONES, 0);
    assert_eq!(r.serve(), Served::Call(0));
    let next = r.machine.module().memory_mut().peek(CA + 10, 2);
    assert_eq!(usize::from(u16::from_le_bytes([next[0], next[1]])), n);
    assert!(
        !r.machine
            .module()
            .memory_mut()
            .perms(0x10_0000 + (n as u64 - 1) * 0x1000)
            .unwrap()
            .validated
    );
}

#[test]
fn a_calling_area_the_guest_made_unusable_and_a_vcpu_that_deletes_itself() {
    let mut r = rig();
    // The calling area no longer accessible to the guest: no call can be pending.
    r.issue(6, (1 << 32) | 1, 7, 8, 9);
    r.machine
        .module()
        .memory_mut()
        .set_perms(CA, PagePerms::VMPL0_PRIVATE);
    assert!(matches!(r.serve(), Served::CallingAreaFault(_)));
    assert_eq!(r.regs(), [6, (1 << 32) | 1, 7, 8, 9]);
    assert_eq!(r.efer(), SVME | 0x1000_0500, "the vCPU is runnable again");
    r.machine
        .module()
        .memory_mut()
        .set_perms(CA, PagePerms::SHARED);

    // vCPU 1: created by the boot vCPU through the loop, then it deletes its own VMSA.
    let (vmsa1, ca1) = (0x3_5000, 0x3_6000);
    let mut page = vec![0u8; 4096];
    page[0xCA] = 1; // VMPL1
    page[0xD0..0xD8].copy_from_slice(&SVME.to_le_bytes());
    page[0x3B0..0x3B8].copy_from_slice(&1u64.to_le_bytes());
    r.machine.module().memory_mut().poke(vmsa1, &page);
    r.issue(2, vmsa1, ca1, 1, 0); // CREATE_VCPU(VMSA, CA, APIC 1)
    assert_eq!(r.serve(), Served::Call(0));
    r.issue_on(vmsa1, ca1, 3, vmsa1, ALL_ONES, ALL_ONES, 0); // DELETE_VCPU(itself)
    let mut module = r.machine.module();
    assert_eq!(
        r.looper.serve(&mut module, &mut r.vcpus, 1).unwrap(),
        Served::Deleted(0)
    );
    drop(module);
    // Nothing was written back into the page, which is an ordinary page of the guest again.
    let rax = u64::from_le_bytes(
        r.machine
            .module()
            .memory_mut()
            .peek(vmsa1 + 0x1F8, 8)
            .try_into()
            .unwrap(),
    );
    assert_eq!(rax, 3);
    assert!(r.machine.module().memory_mut().perms(vmsa1).unwrap().write[1]);
}
