//! End-to-end attestation on the simulated SNP machine: guest-driver (VMPL1) -> svsm-core ->
//! software PSP. The report verifies against the simulated ARK -> ASK -> VCEK chain, is a VMPL0
//! report, binds REPORT_DATA = SHA-512(nonce || manifest), and the manifest carries the vTPM
//! service whose version-0 manifest is the EK's TPMT_PUBLIC.

use der::{Decode, Encode};
use guest_driver::attest::{attest, Scope};
use p384::ecdsa::signature::Verifier;
use sha2::{Digest, Sha512};
use std::sync::{Mutex, MutexGuard, OnceLock};
use svsm_abi::attest::{ServicesManifest, VTPM_SERVICE_GUID};
use svsm_abi::snp::certs::{CertKind, CertTable};
use svsm_abi::snp::{AttestationReport, ReportVersion};
use svsm_core::platform::Vmpl;
use svsm_core::tpm2::command::{parse_read_public, read_public};
use svsm_core::tpm2::templates::{KeyTemplate, EK_RSA_HANDLE};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use x509_cert::Certificate;

const MEASUREMENT: [u8; 48] = [0x11; 48];

fn machine() -> MutexGuard<'static, SimMachine> {
    static MACHINE: OnceLock<Mutex<SimMachine>> = OnceLock::new();
    MACHINE
        .get_or_init(|| Mutex::new(SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn vmpl1() -> Vmpl {
    Vmpl::new(1).unwrap()
}

/// RSA-PSS/SHA-384 signature of `cert` by `issuer`'s key.
fn verify_cert(cert: &Certificate, issuer: &Certificate) {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key = rsa::RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes()).unwrap();
    let verifier = rsa::pss::VerifyingKey::<sha2::Sha384>::new(key);
    let signature = rsa::pss::Signature::try_from(cert.signature.raw_bytes()).unwrap();
    rsa::signature::Verifier::verify(
        &verifier,
        &cert.tbs_certificate.to_der().unwrap(),
        &signature,
    )
    .expect("certificate signature");
}

fn verify_report(report: &[u8], certs: &[u8]) {
    let table = CertTable::parse(certs).unwrap();
    let parse = |kind| Certificate::from_der(table.find(kind).unwrap()).unwrap();
    let (ark, ask, vcek) = (
        parse(CertKind::Ark),
        parse(CertKind::Ask),
        parse(CertKind::Vcek),
    );
    verify_cert(&ark, &ark);
    verify_cert(&ask, &ark);
    verify_cert(&vcek, &ask);
    let spki = vcek
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki).unwrap();
    let parsed = AttestationReport::parse(report).unwrap();
    let (r, s) = parsed.raw().signature.to_be_components().unwrap();
    let sig = p384::ecdsa::Signature::from_scalars(r, s).unwrap();
    key.verify(parsed.signed_bytes(), &sig)
        .expect("report signature");
    // One flipped signed byte must fail.
    let mut tampered = report.to_vec();
    tampered[0x90] ^= 1;
    let t = AttestationReport::parse(&tampered).unwrap();
    assert!(key.verify(t.signed_bytes(), &sig).is_err());
}

fn ek_via_vtpm(machine: &SimMachine) -> Vec<u8> {
    let mut module = machine.module();
    let tpm = module.tpm_mut().unwrap();
    let mut rsp = vec![0u8; 4096];
    let n =
        svsm_core::tpm::TpmEngine::execute(tpm, 0, &read_public(EK_RSA_HANDLE).unwrap(), &mut rsp)
            .unwrap();
    parse_read_public(&rsp[..n]).unwrap()
}

#[test]
fn attest_services_binds_nonce_and_manifest_and_verifies() {
    let machine = machine();
    let nonce: Vec<u8> = (0..64u8).collect();
    let evidence = attest(
        &mut machine.transport(vmpl1()),
        Scope::AllServices,
        &nonce,
        true,
    )
    .unwrap();

    verify_report(&evidence.report, &evidence.certs);
    let report = AttestationReport::parse(&evidence.report).unwrap();
    assert_eq!(report.version(), ReportVersion::V3);
    assert_eq!(report.vmpl(), 0, "the SVSM always asks for a VMPL0 report");
    assert_eq!(report.raw().measurement, MEASUREMENT);
    let expected: [u8; 64] = Sha512::new()
        .chain_update(&nonce)
        .chain_update(&evidence.manifest)
        .finalize()
        .into();
    assert_eq!(report.raw().report_data, expected);

    let manifest = ServicesManifest::parse(&evidence.manifest).unwrap();
    assert_eq!(manifest.len(), 2, "the vTPM and the vault");
    let vault = manifest
        .find(&svsm_abi::attest::VAULT_SERVICE_GUID)
        .expect("vault service listed");
    let state = svsm_abi::attest::ModuleState::parse_vault_manifest(vault).unwrap();
    assert_eq!(vault.len(), 136);
    assert_eq!(&vault[..4], &2u32.to_le_bytes(), "vault manifest version");
    assert_eq!(state.flags, 0, "not ephemeral, stored");
    assert_eq!(state.state, svsm_abi::attest::StateKind::Fresh);
    assert_eq!(state.requester_vmpl, 1, "asked for at VMPL1");
    assert_eq!(
        state.transport_public[0], 0x04,
        "SEC1 uncompressed transport key"
    );
    let ek = manifest
        .find(&VTPM_SERVICE_GUID)
        .expect("vTPM service listed");
    assert_eq!(ek.len(), 314, "manifest v0 = the L-1 EK TPMT_PUBLIC");
    assert!(KeyTemplate::ek_rsa_l1().matches(ek));
    assert_eq!(
        ek,
        ek_via_vtpm(&machine),
        "the same EK the vTPM holds at 0x81010001"
    );
}

#[test]
fn attest_single_service_returns_the_bare_ek_manifest() {
    let machine = machine();
    let nonce = [0xA5u8; 64];
    let evidence = attest(
        &mut machine.transport(vmpl1()),
        Scope::SingleService(VTPM_SERVICE_GUID, 0),
        &nonce,
        false,
    )
    .unwrap();
    assert!(evidence.certs.is_empty());
    assert_eq!(evidence.manifest, ek_via_vtpm(&machine));
    let report = AttestationReport::parse(&evidence.report).unwrap();
    let expected: [u8; 64] = Sha512::new()
        .chain_update(nonce)
        .chain_update(&evidence.manifest)
        .finalize()
        .into();
    assert_eq!(report.raw().report_data, expected);
}

#[test]
fn nonces_of_every_size_the_spec_allows_are_bound() {
    let machine = machine();
    // The nonce size field is 16 bits; the driver's layout leaves room for 3840 bytes, which
    // already crosses a page boundary inside the module's copy-in.
    for len in [0usize, 1, 63, 64, 65, 512, 3840] {
        let nonce: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let e = attest(
            &mut machine.transport(vmpl1()),
            Scope::AllServices,
            &nonce,
            false,
        )
        .unwrap();
        let report = AttestationReport::parse(&e.report).unwrap();
        let expected: [u8; 64] = Sha512::new()
            .chain_update(&nonce)
            .chain_update(&e.manifest)
            .finalize()
            .into();
        assert_eq!(report.raw().report_data, expected, "nonce of {len} bytes");
    }
}

#[test]
fn turin_v5_reports_verify_too() {
    // A separate machine needs the engine, which the shared machine holds: take its lock and
    // build the Turin machine around a PSP only (no vTPM), which is all attestation needs.
    let _guard = machine();
    let psp = test_harness::sim::psp::SimPsp::new(
        LaunchConfig::turin([0x22; 48]),
        test_harness::sim::DEFAULT_CHIP_SEED,
        Vmpl::ZERO,
    )
    .unwrap();
    let turin = SimMachine::from_parts(test_harness::sim::memory::SimMemory::new(1024), psp, false);
    let e = attest(
        &mut turin.transport(vmpl1()),
        Scope::AllServices,
        &[1; 32],
        true,
    )
    .unwrap();
    verify_report(&e.report, &e.certs);
    let report = AttestationReport::parse(&e.report).unwrap();
    assert_eq!(report.version(), ReportVersion::V5);
    assert_eq!(report.mit_vectors(), Some((0x3F, 0x3F)));
    let manifest = ServicesManifest::parse(&e.manifest).unwrap();
    assert_eq!(manifest.len(), 1, "no vTPM: only the vault");
    assert!(manifest.find(&VTPM_SERVICE_GUID).is_none());
}
