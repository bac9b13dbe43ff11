//! Higher-VMPL measurement: the module measures the launch components into vTPM PCRs and keeps
//! a TCG crypto-agile event log the guest can read; guest measurements go into the same log;
//! replaying the log gives exactly the PCR values the vTPM reports; the vTPM manifest version 2
//! binds the log digest, the EK and AK, the transport key, the state, the requester and the
//! extra evidence that requester registered for this one attestation.

use guest_driver::attest::{attest, Scope};
use guest_driver::vault::VaultClient;
use guest_driver::vtpm::VtpmClient;
use sha2::{Digest, Sha256, Sha384};
use svsm_abi::attest::{StateKind, VtpmManifest, VTPM_MANIFEST_VERSION, VTPM_SERVICE_GUID};
use svsm_abi::eventlog::EventLog;
use svsm_abi::snp::AttestationReport;
use svsm_core::measure::{Component, ComponentKind};
use svsm_core::platform::Vmpl;
use svsm_core::tpm2::command::{parse_pcr_read, parse_read_public, pcr_read_sha256, read_public};
use svsm_core::tpm2::templates::{AkCurve, KeyTemplate, AK_HANDLE, EK_RSA_HANDLE};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;

fn replay(log: &EventLog<'_>) -> ([[u8; 32]; 24], [[u8; 48]; 24]) {
    let mut p256 = [[0u8; 32]; 24];
    let mut p384 = [[0u8; 48]; 24];
    for e in log.events() {
        let i = e.pcr as usize;
        p256[i] = Sha256::new()
            .chain_update(p256[i])
            .chain_update(e.sha256.unwrap())
            .finalize()
            .into();
        p384[i] = Sha384::new()
            .chain_update(p384[i])
            .chain_update(e.sha384.unwrap())
            .finalize()
            .into();
    }
    (p256, p384)
}

#[test]
fn launch_and_guest_measurements_replay_to_the_vtpm_pcrs() {
    let machine = SimMachine::new(LaunchConfig::genoa([0x55; 48])).unwrap();
    let firmware = vec![0xF0u8; 8192];
    machine
        .module()
        .measure_launch(&[
            Component {
                kind: ComponentKind::Firmware,
                bytes: &firmware,
            },
            Component {
                kind: ComponentKind::Kernel,
                bytes: b"vmlinuz bytes",
            },
            Component {
                kind: ComponentKind::Initrd,
                bytes: b"initrd bytes",
            },
            Component {
                kind: ComponentKind::CommandLine,
                bytes: b"console=ttyS0\0",
            },
        ])
        .unwrap();
    let vmpl1 = Vmpl::new(1).unwrap();
    let mut vault = VaultClient::probe(machine.transport(vmpl1)).unwrap();
    vault.measure(16, 0x0D, b"app v1.2 config").unwrap();
    assert!(
        vault.measure(24, 0x0D, b"x").is_err(),
        "PCR 24 does not exist"
    );

    let log_bytes = vault.read_event_log().unwrap();
    assert_eq!(log_bytes, machine.module().event_log());
    let log = EventLog::parse(&log_bytes).unwrap();
    assert_eq!(log.len(), 5);
    let events: Vec<_> = log.events().collect();
    assert_eq!(
        events.iter().map(|e| e.pcr).collect::<Vec<_>>(),
        vec![0, 4, 9, 8, 16]
    );
    assert_eq!(
        events[0].sha384.unwrap(),
        &<[u8; 48]>::from(Sha384::digest(&firmware))
    );
    assert_eq!(events[4].data, b"app v1.2 config");

    // The log replays to the vTPM's SHA-256 PCRs (read through the SVSM vTPM protocol).
    let (expected256, _) = replay(&log);
    let mut tpm = VtpmClient::probe(machine.transport(vmpl1)).unwrap();
    let mut rsp = [0u8; 4096];
    let mask = (1 << 0) | (1 << 4) | (1 << 8) | (1 << 9) | (1 << 16);
    let n = tpm
        .send_command(&pcr_read_sha256(mask).unwrap(), &mut rsp)
        .unwrap();
    let (returned, values) = parse_pcr_read(&rsp[..n]).unwrap();
    assert_eq!(returned, mask);
    for (value, pcr) in values.iter().zip([0usize, 4, 8, 9, 16]) {
        assert_eq!(value, &expected256[pcr], "PCR {pcr}");
    }

    // Manifest version 2 through SVSM_ATTEST_SINGLE_SERVICE.
    let gpu_report = b"a GPU attestation report";
    vault
        .add_evidence(1, &Sha384::digest(gpu_report).into())
        .unwrap();
    let nonce = [0x33u8; 32];
    let e = attest(
        vault.transport_mut(),
        Scope::SingleService(VTPM_SERVICE_GUID, VTPM_MANIFEST_VERSION),
        &nonce,
        false,
    )
    .unwrap();
    let report = AttestationReport::parse(&e.report).unwrap();
    let bound: [u8; 64] = sha2::Sha512::new()
        .chain_update(nonce)
        .chain_update(&e.manifest)
        .finalize()
        .into();
    assert_eq!(report.raw().report_data, bound);
    let m = VtpmManifest::parse(&e.manifest).unwrap();
    assert_eq!(
        m.event_log_digest,
        &<[u8; 48]>::from(Sha384::digest(&log_bytes))
    );
    assert_eq!(m.module.flags, 0);
    assert_eq!(m.module.state, StateKind::Fresh);
    assert_eq!(m.module.epoch, machine.module().state_epoch());
    assert_eq!(
        &m.module.transport_public[..],
        &vault.transport_key().unwrap()[..]
    );
    assert_eq!(
        m.extra_evidence().collect::<Vec<_>>(),
        vec![(1, &<[u8; 48]>::from(Sha384::digest(gpu_report)))]
    );
    // EK and AK are the keys the vTPM holds at their persistent handles.
    for (handle, public) in [(EK_RSA_HANDLE, m.ek_public), (AK_HANDLE, m.ak_public)] {
        let n = tpm
            .send_command(&read_public(handle).unwrap(), &mut rsp)
            .unwrap();
        assert_eq!(
            parse_read_public(&rsp[..n]).unwrap(),
            public,
            "handle {handle:#x}"
        );
    }
    assert!(KeyTemplate::ak(AkCurve::P256).matches(m.ak_public));

    // Extra evidence is carried by exactly one attestation of the VMPL that registered it.
    let v2 = |vault: &mut VaultClient<_>, nonce: &[u8]| {
        let e = attest(
            vault.transport_mut(),
            Scope::SingleService(VTPM_SERVICE_GUID, VTPM_MANIFEST_VERSION),
            nonce,
            false,
        )
        .unwrap();
        let m = VtpmManifest::parse(&e.manifest).unwrap();
        let extra: Vec<(u16, [u8; 48])> = m.extra_evidence().map(|(k, d)| (k, *d)).collect();
        (m.module.requester_vmpl, extra)
    };
    assert_eq!(
        v2(&mut vault, b"second"),
        (1, vec![]),
        "consumed by the first"
    );
    let mut vault2 = VaultClient::probe(machine.transport(Vmpl::new(2).unwrap())).unwrap();
    let other: [u8; 48] = Sha384::digest(b"VMPL2's report").into();
    vault2.add_evidence(1, &other).unwrap();
    assert_eq!(
        v2(&mut vault, b"third"),
        (1, vec![]),
        "not VMPL1's evidence"
    );
    assert_eq!(v2(&mut vault2, b"fourth"), (2, vec![(1, other)]));
    // A plain SVSM_ATTEST_SERVICES (its manifests carry no extra evidence) leaves it pending.
    vault2.add_evidence(1, &other).unwrap();
    attest(vault2.transport_mut(), Scope::AllServices, b"fifth", false).unwrap();
    assert_eq!(v2(&mut vault2, b"sixth"), (2, vec![(1, other)]));
}
