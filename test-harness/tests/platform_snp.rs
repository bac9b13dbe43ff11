//! `svsm-platform-snp` end to end on the host: `SnpPlatform` talks GHCB (MSR protocol and GHCB
//! page) to an emulated hypervisor, which forwards guest requests to an emulated PSP speaking the
//! real envelope under the same VMPCK0 and delegating payloads to `SimPsp`. Round trips must
//! match the direct simulated path; hostile replies must end in typed errors, disable VMPCK0
//! where the spec says so, never panic, and never reuse a sequence number.

use std::sync::{Arc, OnceLock};
use svsm_abi::snp::certs::{CertKind, CertTable, CertTableError};
use svsm_abi::snp::guest_msg::EnvelopeError;
use svsm_abi::snp::msg::{
    GuestFieldSelect, KeyRequest, KeySelect, MessageError, PspStatus, ReportRequest, RootKey,
};
use svsm_abi::snp::{ReportVersion, TcbVersion};
use svsm_core::platform::{
    Gpa, GuestMemory, MemoryError, PspError, SecureProcessor, Vmpl, PAGE_SIZE,
};
use svsm_platform_snp::cpu::{PvalidateError, VmplPermissions};
use svsm_platform_snp::ghcb::{reason, GhcbError};
use svsm_platform_snp::memory::RmpError;
use svsm_platform_snp::messenger::MessengerError;
use svsm_platform_snp::SnpPlatform;
use test_harness::sim::chain::TestChain;
use test_harness::sim::envelope::{
    layout, synthetic_cert_table, EmulatedMachine, HostFault, PspFault,
};
use test_harness::sim::psp::{LaunchConfig, SimPsp};
use test_harness::sim::DEFAULT_CHIP_SEED;
use zerocopy::IntoBytes;

type Platform = SnpPlatform<EmulatedMachine, EmulatedMachine, EmulatedMachine>;

const MEASUREMENT: [u8; 48] = [0x3C; 48];

fn genoa_chain() -> Arc<TestChain> {
    static CHAIN: OnceLock<Arc<TestChain>> = OnceLock::new();
    CHAIN
        .get_or_init(|| {
            SimPsp::new(
                LaunchConfig::genoa(MEASUREMENT),
                DEFAULT_CHIP_SEED,
                Vmpl::ZERO,
            )
            .unwrap()
            .chain()
            .clone()
        })
        .clone()
}

fn sim(config: &LaunchConfig, chain: &Arc<TestChain>) -> SimPsp {
    SimPsp::with_chain(config.clone(), DEFAULT_CHIP_SEED, Vmpl::ZERO, chain.clone())
}

/// The platform over a fresh emulated machine, and the direct simulated PSP of the same chip.
fn rig_with(config: LaunchConfig, chain: Arc<TestChain>) -> (Platform, EmulatedMachine, SimPsp) {
    let machine = EmulatedMachine::new(sim(&config, &chain));
    let platform = SnpPlatform::new(
        machine.clone(),
        machine.clone(),
        machine.clone(),
        &EmulatedMachine::secrets_page(),
        EmulatedMachine::config(),
    )
    .unwrap();
    (platform, machine, sim(&config, &chain))
}

fn rig() -> (Platform, EmulatedMachine, SimPsp) {
    rig_with(LaunchConfig::genoa(MEASUREMENT), genoa_chain())
}

fn vmpl(level: u8) -> Vmpl {
    Vmpl::new(level).unwrap()
}

/// Invariants after every test: no IV reuse, the PSP's and the module's counters agree
/// whenever VMPCK0 is still in use, and the platform never touched memory it should not.
fn check_invariants(p: &Platform, m: &EmulatedMachine) {
    assert_eq!(
        m.reused_seqnos(),
        Vec::<u64>::new(),
        "a sequence number was reused"
    );
    let distinct = m.distinct_seqnos() as u64;
    let st = m.state();
    assert_eq!(st.violations, Vec::<String>::new());
    let messenger = p.psp.messenger();
    if !messenger.is_disabled() {
        assert_eq!(messenger.last_seqno(), st.psp.last_seqno());
    }
    let stats = messenger.stats();
    // Every committed sequence number reached the host under exactly one message.
    assert_eq!(distinct, stats.requests_sealed);
}

fn report_request(data: u8) -> ReportRequest {
    ReportRequest::new([data; 64], 0, KeySelect::Default)
}

#[test]
fn reports_match_the_direct_path() {
    for (config, chain) in [
        (LaunchConfig::genoa(MEASUREMENT), genoa_chain()),
        (LaunchConfig::turin(MEASUREMENT), {
            let c = LaunchConfig::turin(MEASUREMENT);
            SimPsp::new(c, DEFAULT_CHIP_SEED, Vmpl::ZERO)
                .unwrap()
                .chain()
                .clone()
        }),
    ] {
        let version: ReportVersion = config.report_version;
        let (mut p, m, mut direct) = rig_with(config, chain);
        for (i, level) in [0u8, 1, 2, 3, 0].into_iter().enumerate() {
            let data = [i as u8 ^ 0x5A; 64];
            let via_envelope = p.attestation_report(&data, vmpl(level)).unwrap();
            let direct_report = direct.attestation_report(&data, vmpl(level)).unwrap();
            assert_eq!(
                via_envelope.as_bytes(),
                direct_report.as_bytes(),
                "{version:?} #{i}"
            );
            assert_eq!(via_envelope.vmpl.get(), u32::from(level));
        }
        assert_eq!(p.psp.messenger().last_seqno(), 10);
        assert_eq!(m.state().psp.sim().requests, 5);
        assert_eq!(m.state().psp.accepted, 5);
        check_invariants(&p, &m);
    }
}

#[test]
fn derived_keys_match_the_direct_path() {
    let (mut p, m, mut direct) = rig();
    let tcb = TcbVersion::encode(
        &LaunchConfig::genoa(MEASUREMENT).tcb,
        svsm_abi::snp::Product::Genoa.tcb_layout(),
    );
    let all = GuestFieldSelect::POLICY
        | GuestFieldSelect::IMAGE_ID
        | GuestFieldSelect::FAMILY_ID
        | GuestFieldSelect::MEASUREMENT
        | GuestFieldSelect::GUEST_SVN
        | GuestFieldSelect::TCB_VERSION;
    let mut with_mit = KeyRequest::new(
        RootKey::Vcek,
        KeySelect::Vcek,
        all | GuestFieldSelect::LAUNCH_MIT_VECTOR,
        0,
        1,
        tcb,
    );
    with_mit.launch_mit_vector = 0x3F.into();
    let requests = [
        KeyRequest::new(
            RootKey::Vcek,
            KeySelect::Vcek,
            GuestFieldSelect::MEASUREMENT,
            0,
            0,
            tcb,
        ),
        KeyRequest::new(RootKey::Vcek, KeySelect::Default, all, 0, 1, tcb),
        KeyRequest::new(RootKey::Vmrk, KeySelect::Vcek, all, 2, 0, tcb),
        KeyRequest::new(
            RootKey::Vcek,
            KeySelect::Vcek,
            GuestFieldSelect::empty(),
            3,
            0,
            tcb,
        ),
        with_mit,
    ];
    let mut keys = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        let a = p.derived_key(req).unwrap();
        let b = direct.derived_key(req).unwrap();
        assert_eq!(a.0, b.0, "request {i}");
        assert!(!keys.contains(&a.0), "request {i} collides");
        keys.push(a.0);
    }
    // Refusals travel inside an authenticated response: typed, same as the direct path, and
    // the channel stays usable.
    let vlek = KeyRequest::new(RootKey::Vcek, KeySelect::Vlek, all, 0, 0, tcb);
    assert_eq!(p.derived_key(&vlek).unwrap_err(), PspError::Refused(0x27));
    assert_eq!(
        direct.derived_key(&vlek).unwrap_err(),
        PspError::Refused(0x27)
    );
    let svn = KeyRequest::new(RootKey::Vcek, KeySelect::Vcek, all, 0, 99, tcb);
    assert_eq!(p.derived_key(&svn).unwrap_err(), PspError::Refused(0x16));
    assert!(!p.psp.messenger().is_disabled());
    assert_eq!(
        p.derived_key(&requests[0]).unwrap().0,
        keys[0],
        "still usable"
    );
    check_invariants(&p, &m);
}

#[test]
fn extended_report_returns_the_certificates() {
    let (mut p, m, mut direct) = rig();
    let certs = p.certificates().unwrap();
    assert_eq!(certs, direct.certificates().unwrap());
    let table = CertTable::parse(&certs).unwrap();
    assert_eq!(table.len(), 3);
    assert_eq!(
        table.find(CertKind::Vcek),
        Some(&genoa_chain().vcek_der[..])
    );
    let (report, certs2) = p
        .psp
        .messenger_mut()
        .extended_report(&report_request(7))
        .unwrap();
    assert_eq!(certs2, certs);
    assert_eq!(
        report.as_bytes(),
        direct
            .attestation_report(&[7; 64], Vmpl::ZERO)
            .unwrap()
            .as_bytes()
    );
    assert!(m.state().seen.iter().all(|s| s.extended));
    // A host without certificates zero-fills the buffer: the empty table.
    m.state().certs = vec![0; 24];
    assert_eq!(p.certificates().unwrap(), vec![0u8; 24]);
    check_invariants(&p, &m);
}

#[test]
fn certificate_buffer_too_small_asks_for_the_right_size() {
    let (mut p, m, _) = rig();
    // Five pages and a bit of certificates against a four-page buffer.
    let table = synthetic_cert_table(3, 7000);
    let needed = (table.len() as u64).div_ceil(PAGE_SIZE);
    assert_eq!(needed, 6);
    m.state().certs = table.clone();
    assert_eq!(
        p.certificates().unwrap_err(),
        PspError::CertificatesTooLarge(6 * 4096)
    );
    assert_eq!(
        p.psp
            .messenger_mut()
            .extended_report(&report_request(1))
            .unwrap_err(),
        MessengerError::CertBufferTooSmall {
            needed_pages: 6,
            capacity_pages: layout::CERT_PAGES
        }
    );
    // The sequence number was consumed by re-issuing the identical message as a plain
    // request: the host saw each number twice with the same bytes, and VMPCK0 is still good.
    {
        let st = m.state();
        assert_eq!(st.seen.len(), 4);
        for pair in st.seen.chunks(2) {
            assert_eq!(pair[0].seqno, pair[1].seqno);
            assert_eq!(pair[0].digest, pair[1].digest);
            assert!(pair[0].extended && !pair[1].extended);
        }
        assert_eq!(st.psp.last_seqno(), 4);
    }
    assert!(!p.psp.messenger().is_disabled());
    // A table that fits works again.
    m.state().certs = synthetic_cert_table(2, 3000);
    let certs = p.certificates().unwrap();
    assert_eq!(certs, synthetic_cert_table(2, 3000));
    // A host that asks for fewer pages than offered is still answered with its number.
    m.state().faults.push_back(HostFault::ClaimCertPages(2));
    assert_eq!(
        p.certificates().unwrap_err(),
        PspError::CertificatesTooLarge(2 * 4096)
    );
    assert!(!p.psp.messenger().is_disabled());
    check_invariants(&p, &m);
}

enum Fault {
    Host(HostFault),
    Psp(PspFault),
}

/// Each hostile reply, the typed error it must produce, and whether VMPCK0 must be disabled.
fn hostile_cases() -> Vec<(&'static str, Fault, MessengerError, bool)> {
    use EnvelopeError as E;
    use Fault::{Host, Psp};
    use MessengerError as M;
    vec![
        (
            "flipped tag byte",
            Host(HostFault::FlipTagByte),
            M::Authentication,
            true,
        ),
        (
            "flipped ciphertext byte",
            Host(HostFault::FlipCiphertextByte),
            M::Authentication,
            true,
        ),
        (
            "replayed response",
            Host(HostFault::ReplayPrevious),
            M::Header(E::Sequence {
                actual: 2,
                expected: 4,
            }),
            true,
        ),
        (
            "skipped sequence number",
            Psp(PspFault::SkipSequence),
            M::Header(E::Sequence {
                actual: 6,
                expected: 4,
            }),
            true,
        ),
        (
            "replayed sequence number",
            Psp(PspFault::ReplaySequence),
            M::Header(E::Sequence {
                actual: 3,
                expected: 4,
            }),
            true,
        ),
        (
            "wrong message type",
            Psp(PspFault::WrongType),
            M::Header(E::MessageType {
                actual: 8,
                expected: 6,
            }),
            true,
        ),
        (
            "wrong message version",
            Psp(PspFault::WrongVersion),
            M::Header(E::MessageVersion {
                actual: 2,
                expected: 1,
            }),
            true,
        ),
        (
            "wrong message size",
            Psp(PspFault::ShortPayload),
            M::Header(E::PayloadSize {
                actual: 0x4BF,
                expected: 0x4C0,
            }),
            true,
        ),
        (
            "wrong VMPCK",
            Psp(PspFault::WrongVmpck),
            M::Header(E::Vmpck {
                actual: 1,
                expected: 0,
            }),
            true,
        ),
        (
            "wrong algorithm",
            Psp(PspFault::WrongAlgo),
            M::Header(E::Algorithm(0)),
            true,
        ),
        (
            "truncated response payload",
            Host(HostFault::TruncateResponse(0x400)),
            M::Authentication,
            true,
        ),
        (
            "truncated response header",
            Host(HostFault::TruncateResponse(0x20)),
            M::Header(E::Algorithm(0)),
            true,
        ),
        (
            "no response written",
            Host(HostFault::Swallow),
            M::Header(E::Algorithm(0)),
            true,
        ),
        (
            "firmware rejected the envelope",
            Host(HostFault::FirmwareError(0x16)),
            M::Firmware(0x16),
            true,
        ),
        (
            "generic VMM error",
            Host(HostFault::VmmError(1 << 31)),
            M::Hypervisor(1 << 31),
            true,
        ),
        (
            "INVALID_LEN on a plain request",
            Host(HostFault::InvalidLenOnPlain),
            M::Hypervisor(1),
            true,
        ),
        (
            "GHCB input error",
            Host(HostFault::GhcbInputError),
            M::Ghcb(GhcbError::Input(5)),
            true,
        ),
        (
            "result not marked valid",
            Host(HostFault::DropValidBits),
            M::Ghcb(GhcbError::Missing("SW_EXITINFO2")),
            true,
        ),
        (
            "busy beyond the retries",
            Host(HostFault::Busy(3)),
            M::Busy,
            true,
        ),
        (
            "refusal inside a good envelope",
            Psp(PspFault::Status(0x16)),
            M::Payload(MessageError::Status(PspStatus::InvalidParams)),
            false,
        ),
    ]
}

#[test]
fn hostile_replies_are_typed_errors_and_disable_vmpck0_where_required() {
    for (name, fault, expected, disables) in hostile_cases() {
        let (mut p, m, _) = rig();
        // One good round trip first, so that replays have something to replay.
        p.attestation_report(&[1; 64], Vmpl::ZERO).unwrap();
        match fault {
            Fault::Host(f) => m.state().faults.push_back(f),
            Fault::Psp(f) => m.state().psp.faults.push_back(f),
        }
        let err = p
            .psp
            .messenger_mut()
            .report(&report_request(2))
            .unwrap_err();
        assert_eq!(err, expected, "{name}");
        assert_eq!(p.psp.messenger().is_disabled(), disables, "{name}");
        let exits_before = m.state().seen.len();
        let next = p.attestation_report(&[3; 64], Vmpl::ZERO);
        if disables {
            assert_eq!(next.unwrap_err(), PspError::ChannelDisabled, "{name}");
            assert_eq!(
                p.psp
                    .messenger_mut()
                    .report(&report_request(4))
                    .unwrap_err(),
                MessengerError::Disabled(0),
                "{name}"
            );
            assert_eq!(m.state().seen.len(), exits_before, "{name}: nothing sent");
        } else {
            next.unwrap();
        }
        check_invariants(&p, &m);
    }
}

#[test]
fn busy_is_resent_byte_identical_within_the_bound() {
    let (mut p, m, _) = rig();
    m.state().faults.push_back(HostFault::Busy(2));
    p.attestation_report(&[9; 64], Vmpl::ZERO).unwrap();
    let st = m.state();
    assert_eq!(st.seen.len(), 3);
    assert!(st.seen.windows(2).all(|w| w[0] == w[1]));
    drop(st);
    check_invariants(&p, &m);
}

#[test]
fn oversized_certificate_table_is_a_typed_error() {
    let (mut p, m, _) = rig();
    m.state().faults.push_back(HostFault::OversizedCertTable);
    let err = p
        .psp
        .messenger_mut()
        .extended_report(&report_request(5))
        .unwrap_err();
    assert!(
        matches!(
            err,
            MessengerError::Certificates(CertTableError::EntryOutOfRange { index: 0, .. })
        ),
        "{err:?}"
    );
    // Host data outside the envelope: the exchange itself was good, VMPCK0 stays.
    assert!(!p.psp.messenger().is_disabled());
    m.state().faults.push_back(HostFault::OversizedCertTable);
    assert_eq!(p.certificates().unwrap_err(), PspError::BadReply);
    assert!(p.certificates().is_ok());
    check_invariants(&p, &m);
}

#[test]
fn sequence_numbers_are_counted_and_never_reused() {
    let (mut p, m, _) = rig();
    let tcb = TcbVersion::from_raw(0);
    let key = KeyRequest::new(
        RootKey::Vcek,
        KeySelect::Vcek,
        GuestFieldSelect::MEASUREMENT,
        0,
        0,
        tcb,
    );
    let mut ok = 0u64;
    for round in 0..40u64 {
        match round % 8 {
            0 => m.state().faults.push_back(HostFault::Busy(1)),
            3 => m.state().psp.faults.push_back(PspFault::Status(0x16)),
            5 => m.state().certs = synthetic_cert_table(4, 5000),
            6 => m.state().certs = synthetic_cert_table(1, 100),
            _ => {}
        }
        let result = match round % 3 {
            0 => p
                .attestation_report(&[round as u8; 64], Vmpl::ZERO)
                .map(|_| ()),
            1 => p.derived_key(&key).map(|_| ()),
            _ => p.certificates().map(|_| ()),
        };
        if result.is_ok() {
            ok += 1;
        }
    }
    assert!(ok > 20, "{ok}");
    assert!(!p.psp.messenger().is_disabled());
    let stats = p.psp.messenger().stats();
    assert_eq!(stats.requests_sealed, 40);
    assert_eq!(stats.responses_accepted, 40);
    assert_eq!(p.psp.messenger().last_seqno(), 80);
    assert_eq!(m.state().psp.last_seqno(), 80);
    assert!(stats.exits > 40, "re-sends happened");
    check_invariants(&p, &m);
}

#[test]
fn guest_memory_follows_the_rmp() {
    let (mut p, m, _) = rig();
    let svsm = Gpa::new(layout::SVSM_FIRST * PAGE_SIZE);
    let guest = layout::GUEST_HIGH * PAGE_SIZE + 3 * PAGE_SIZE;
    let mut buf = [0u8; 32];
    // The SVSM's pages are VMPL0's alone.
    p.write(Vmpl::ZERO, svsm, &[0xAA; 32]).unwrap();
    assert_eq!(
        p.read(vmpl(1), svsm, &mut buf),
        Err(MemoryError::NoAccess {
            gpa: svsm.raw(),
            vmpl: 1
        })
    );
    // The hypervisor-shared pages are not guest memory.
    assert_eq!(
        p.read(vmpl(1), Gpa::new(layout::GHCB * PAGE_SIZE), &mut buf),
        Err(MemoryError::NotPresent(layout::GHCB * PAGE_SIZE))
    );
    // An ordinary guest page, shared with the host and back.
    p.write(vmpl(2), Gpa::new(guest), &[0x11; 32]).unwrap();
    p.convert_to_shared(guest).unwrap();
    assert!(!m.state().rmp[(guest / PAGE_SIZE) as usize].private);
    assert_eq!(
        p.read(Vmpl::ZERO, Gpa::new(guest), &mut buf),
        Err(MemoryError::NotValidated(guest))
    );
    p.convert_to_private(guest).unwrap();
    let entry = m.state().rmp[(guest / PAGE_SIZE) as usize];
    assert!(entry.private && entry.validated);
    // Freshly validated: VMPL0 only until RMPADJUST grants more.
    assert!(p.read(Vmpl::ZERO, Gpa::new(guest), &mut buf).is_ok());
    assert!(matches!(
        p.read(vmpl(2), Gpa::new(guest), &mut buf),
        Err(MemoryError::NoAccess { vmpl: 2, .. })
    ));
    p.memory
        .set_permissions(guest, 2, VmplPermissions::READ, false)
        .unwrap();
    assert_eq!(m.state().rmp[(guest / PAGE_SIZE) as usize].perms[1], 1);
    p.read(vmpl(2), Gpa::new(guest), &mut buf).unwrap();
    assert!(matches!(
        p.write(vmpl(2), Gpa::new(guest), &buf),
        Err(MemoryError::NoAccess { vmpl: 2, .. })
    ));
    // Validating an already validated page changes nothing and says so.
    let next = guest + PAGE_SIZE;
    assert_eq!(
        p.memory.validate_for_guest(next, 1),
        Err(RmpError::Pvalidate(PvalidateError::Unchanged(next)))
    );
    // A page taken back from the guests is inaccessible to everyone.
    p.memory.rescind_from_guest(next).unwrap();
    assert_eq!(
        p.read(Vmpl::ZERO, Gpa::new(next), &mut buf),
        Err(MemoryError::NotValidated(next))
    );
    let entry = m.state().rmp[(next / PAGE_SIZE) as usize];
    assert!(!entry.validated && entry.perms == [0; 3]);
    check_invariants(&p, &m);
}

#[test]
fn termination_reaches_the_hypervisor() {
    let (mut p, m, _) = rig();
    let halted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.terminate(reason::VMPCK_DISABLED)
    }));
    assert!(halted.is_err(), "the emulated vCPU halts");
    assert_eq!(
        m.state().terminated,
        Some(reason::VMPCK_DISABLED.msr_request())
    );
}

#[test]
fn an_absent_vmpck0_is_refused_at_setup() {
    let m = EmulatedMachine::new(sim(&LaunchConfig::genoa(MEASUREMENT), &genoa_chain()));
    let mut secrets = EmulatedMachine::secrets_page();
    secrets.vmpck[0] = [0; 32];
    let err = SnpPlatform::new(
        m.clone(),
        m.clone(),
        m.clone(),
        &secrets,
        EmulatedMachine::config(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err,
        svsm_platform_snp::platform::SetupError::Messenger(MessengerError::Absent(0))
    );
}

#[test]
fn the_emulated_psp_enforces_sequence_numbers_and_the_key() {
    use svsm_platform_snp::ghcb::Ghcb;
    use svsm_platform_snp::messenger::{GhcbChannel, GuestMessenger};
    let cases: [(&str, [u8; 32], u64); 3] = [
        (
            "ahead of the PSP's counter",
            test_harness::sim::envelope::VMPCK0,
            10,
        ),
        ("another VMPL's key", [0x41; 32], 0),
        (
            "the right key and number",
            test_harness::sim::envelope::VMPCK0,
            0,
        ),
    ];
    for (name, key, last) in cases {
        let m = EmulatedMachine::new(sim(&LaunchConfig::genoa(MEASUREMENT), &genoa_chain()));
        let config = EmulatedMachine::config();
        let mut ghcb = Ghcb::new(m.clone(), m.clone(), config.ghcb_gpa).unwrap();
        ghcb.register().unwrap();
        let channel = GhcbChannel::new(ghcb, config.request_pages).unwrap();
        let mut messenger = GuestMessenger::new(channel, 0, &key, last).unwrap();
        let result = messenger.report(&report_request(1));
        if last == 0 && key == test_harness::sim::envelope::VMPCK0 {
            result.unwrap();
            assert_eq!(m.state().psp.accepted, 1, "{name}");
        } else {
            // The PSP rejects the envelope; the module must retire the key.
            assert_eq!(
                result.unwrap_err(),
                MessengerError::Firmware(0x16),
                "{name}"
            );
            assert!(messenger.is_disabled(), "{name}");
            assert_eq!(m.state().psp.rejected, 1, "{name}");
            assert_eq!(
                m.state().psp.last_seqno(),
                0,
                "{name}: the PSP did not advance"
            );
        }
    }
}

#[test]
fn an_exhausted_counter_retires_the_key_without_sending() {
    use svsm_platform_snp::ghcb::Ghcb;
    use svsm_platform_snp::messenger::{GhcbChannel, GuestMessenger};
    let m = EmulatedMachine::new(sim(&LaunchConfig::genoa(MEASUREMENT), &genoa_chain()));
    let config = EmulatedMachine::config();
    let mut ghcb = Ghcb::new(m.clone(), m.clone(), config.ghcb_gpa).unwrap();
    ghcb.register().unwrap();
    let channel = GhcbChannel::new(ghcb, config.request_pages).unwrap();
    let key = test_harness::sim::envelope::VMPCK0;
    let mut messenger = GuestMessenger::new(channel, 0, &key, u64::MAX - 1).unwrap();
    assert_eq!(
        messenger.report(&report_request(1)).unwrap_err(),
        MessengerError::SequenceExhausted(0)
    );
    assert!(messenger.is_disabled());
    assert!(m.state().seen.is_empty());
}

/// The guest side of the SVSM calling convention over the module running on `SnpPlatform`.
struct ModuleTransport<'a, Mo> {
    module: &'a mut Mo,
}

const DRIVER_BUFFER: u64 = (layout::GUEST_HIGH + 8) * PAGE_SIZE;
const DRIVER_PAGES: usize = 16;

type SnpModule = svsm_core::SvsmModule<
    svsm_platform_snp::SnpMemory<EmulatedMachine, EmulatedMachine>,
    svsm_platform_snp::SnpPsp<
        svsm_platform_snp::messenger::GhcbChannel<EmulatedMachine, EmulatedMachine>,
    >,
    vtpm::Vtpm,
    test_harness::sim::store::SimStore,
    svsm_platform_snp::platform::RdseedEntropy<EmulatedMachine>,
>;

impl guest_driver::transport::SvsmTransport for ModuleTransport<'_, SnpModule> {
    fn raw_call(
        &mut self,
        regs: &mut svsm_abi::svsm::CallRegisters,
    ) -> Result<(), guest_driver::transport::TransportError> {
        self.module.handle_call(vmpl(1), regs);
        Ok(())
    }

    fn buffer_gpa(&self) -> u64 {
        DRIVER_BUFFER
    }

    fn buffer_len(&self) -> usize {
        DRIVER_PAGES * PAGE_SIZE as usize
    }

    fn write_buffer(
        &mut self,
        offset: usize,
        data: &[u8],
    ) -> Result<(), guest_driver::transport::TransportError> {
        self.module
            .memory_mut()
            .write(vmpl(1), Gpa::new(DRIVER_BUFFER + offset as u64), data)
            .map_err(|_| guest_driver::transport::TransportError::BufferRange {
                offset,
                len: data.len(),
                size: self.buffer_len(),
            })
    }

    fn read_buffer(
        &mut self,
        offset: usize,
        out: &mut [u8],
    ) -> Result<(), guest_driver::transport::TransportError> {
        let len = out.len();
        self.module
            .memory_mut()
            .read(vmpl(1), Gpa::new(DRIVER_BUFFER + offset as u64), out)
            .map_err(|_| guest_driver::transport::TransportError::BufferRange {
                offset,
                len,
                size: self.buffer_len(),
            })
    }
}

#[test]
fn svsm_core_boots_and_attests_through_the_real_envelope() {
    use sha2::{Digest, Sha512};
    let config = LaunchConfig::genoa(MEASUREMENT);
    let (platform, m, _) = rig();
    let (memory, psp, entropy, _clock) = platform.into_parts();
    let mut module: SnpModule = svsm_core::SvsmModule::boot(
        memory,
        psp,
        test_harness::sim::store::SimStore::new(),
        entropy,
        None::<&mut test_harness::sim::store::VtpmFactory>,
        test_harness::sim::boot_config(&config, None),
    );
    // The root key came from MSG_KEY_REQ through the envelope.
    assert_eq!(module.state_status(), svsm_core::StateStatus::Fresh);
    assert!(m.state().psp.accepted >= 1);
    let nonce = b"platform-snp end to end";
    let evidence = guest_driver::attest::attest(
        &mut ModuleTransport {
            module: &mut module,
        },
        guest_driver::attest::Scope::AllServices,
        nonce,
        true,
    )
    .unwrap();
    let report = svsm_abi::snp::AttestationReport::parse(&evidence.report).unwrap();
    assert_eq!(report.raw().vmpl.get(), 0);
    let expected: [u8; 64] = Sha512::new()
        .chain_update(nonce)
        .chain_update(&evidence.manifest)
        .finalize()
        .into();
    assert_eq!(report.raw().report_data, expected);
    let table = CertTable::parse(&evidence.certs).unwrap();
    assert_eq!(
        table.find(CertKind::Vcek),
        Some(&genoa_chain().vcek_der[..])
    );
    assert!(!module.psp_mut().messenger().is_disabled());
    assert_eq!(m.reused_seqnos(), Vec::<u64>::new());
    assert_eq!(m.state().violations, Vec::<String>::new());
}
