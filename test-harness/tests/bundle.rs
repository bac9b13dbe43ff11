//! Evidence bundles end to end: real bundles gathered from simulated SNP machines
//! (`test_harness::evidence::collect`) appraised by `host_verifier::bundle_verify`, positive, and
//! mutated part by part — each mutation asserting exactly which checks fail and why.
//!
//! Machines (one vTPM engine per process: built in turn, each dropped before the next):
//! * A: the expected launch (MEASUREMENT `MEAS_A`, kernel A) with a GPU report; two bundles,
//!   for `NONCE` and, later, `NONCE_LATER`;
//! * B: the same chip launched with another kernel and MEASUREMENT (parts to swap, another AK);
//! * C: another chip (its VCEK certifies another CHIP_ID), the expected launch;
//! * E: the expected launch on a store whose sealed state does not open: ephemeral state.
//!
//! "Insider" cases re-sign the SNP report with the test VCEK after changing the manifest, so
//! a check behind the REPORT_DATA binding is reached on its own (what a buggy SVSM could emit).

use guest_driver::vault::VaultClient;
use host_verifier::bundle::Bundle;
use host_verifier::bundle_verify::tpm::{AttestError, PublicError, SignatureError};
use host_verifier::bundle_verify::{
    verify_bundle, BundleAppraisal, BundleCheckId as C, BundleContext, BundleFailure as F,
};
use host_verifier::gpu::{GpuFailure, GpuReferenceValues, GpuVerifier};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Outcome, Policy, TrustStore, Verdict, Verifier};
use p384::ecdsa::signature::Signer;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use svsm_abi::eventlog::{event_len, write_event, EventLogError, SPEC_ID_EVENT_LEN};
use svsm_abi::snp::certs::{cert_table_len, write_cert_table, CertKind, CertTableError};
use svsm_abi::snp::report::{EcdsaSignature, SIGNED_LEN};
use svsm_abi::snp::{Product, RawReport, SigningKey};
use svsm_core::measure::{Component, ComponentKind};
use svsm_core::platform::Vmpl;
use test_harness::evidence::collect;
use test_harness::sim::chain::TestChain;
use test_harness::sim::gpu::SimGpu;
use test_harness::sim::memory::SimMemory;
use test_harness::sim::psp::{LaunchConfig, SimPsp};
use test_harness::sim::store::{AnyStore, SimStore};
use test_harness::sim::{SimMachine, DEFAULT_PAGES};
use zerocopy::{FromBytes, IntoBytes};

const MEAS_A: [u8; 48] = [0x5A; 48];
const MEAS_B: [u8; 48] = [0xB5; 48];
const FIRMWARE: &[u8] = &[0xF0; 4096];
const KERNEL_A: &[u8] = b"vmlinuz 6.8.0 (the expected kernel)";
const KERNEL_B: &[u8] = b"vmlinuz 6.8.0 (a tampered kernel!)";
const INITRD: &[u8] = b"initrd bytes";
const CMDLINE: &[u8] = b"console=ttyS0\0";
const NONCE: [u8; 32] = *b"relying party nonce, request #1.";
const NONCE_LATER: [u8; 32] = *b"relying party nonce, request #2.";
const NONCE_FRESH: [u8; 32] = *b"relying party nonce, request #3.";
/// 2026-06-01T00:00:00Z (the test chain is valid 2020..2049).
const AT: u64 = 1_780_272_000;
/// The PCR-16 guest measurements after the launch.
const APP_EVENTS: [&[u8]; 2] = [b"app config v1", b"app data v1"];

/// The TPMS_ATTEST offset of clockInfo (magic, type, qualifiedSigner, extraData before it).
fn clock_offset(attest: &[u8]) -> usize {
    let signer = u16::from_be_bytes([attest[6], attest[7]]) as usize;
    let extra_at = 8 + signer;
    let extra = u16::from_be_bytes([attest[extra_at], attest[extra_at + 1]]) as usize;
    extra_at + 2 + extra
}

struct Fixture {
    /// Machine A, `NONCE`, with a GPU report made for `NONCE`.
    a: Bundle,
    /// Machine A, `NONCE`, presenting (and registering) a GPU report made for `NONCE_LATER`.
    a_gpu_other_request: Bundle,
    /// Machine A, `NONCE`, presenting NVIDIA's real H100 report with its real chain.
    a_real_gpu: Bundle,
    /// Machine A again, `NONCE_LATER` (same AK, same PCRs).
    a_later: Bundle,
    /// Machine B (same chip, other kernel and MEASUREMENT), `NONCE`, its own GPU report.
    b: Bundle,
    /// Machine C (another chip), `NONCE`.
    c: Bundle,
    /// Machine E (ephemeral state), `NONCE`.
    e: Bundle,
    /// Machine R (rebooted once: restored state at `r_epoch`), `NONCE`.
    r: Bundle,
    /// R's sealed-state epoch.
    r_epoch: u64,
    /// The test chain of A's chip (ARK, ASK, VCEK and its key).
    chain: Arc<TestChain>,
    /// A's sealed-state epoch.
    epoch: u64,
}

/// One engine per process: machines are built in turn.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn vmpl1() -> Vmpl {
    Vmpl::new(1).unwrap()
}

fn launch(machine: &SimMachine, kernel: &[u8]) {
    machine
        .module()
        .measure_launch(&[
            Component {
                kind: ComponentKind::Firmware,
                bytes: FIRMWARE,
            },
            Component {
                kind: ComponentKind::Kernel,
                bytes: kernel,
            },
            Component {
                kind: ComponentKind::Initrd,
                bytes: INITRD,
            },
            Component {
                kind: ComponentKind::CommandLine,
                bytes: CMDLINE,
            },
        ])
        .unwrap();
    let mut vault = VaultClient::probe(machine.transport(vmpl1())).unwrap();
    for data in APP_EVENTS {
        vault.measure(16, 0x0D, data).unwrap();
    }
}

fn gather(machine: &SimMachine, nonce: &[u8], extra: &[(u16, Vec<u8>)]) -> Bundle {
    collect(
        machine.transport(vmpl1()),
        machine.transport(vmpl1()),
        nonce,
        extra,
    )
    .unwrap()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let _t = turn();
        let (a, a_later, a_gpu_other_request, a_real_gpu, chain, epoch) = {
            let m = SimMachine::new(LaunchConfig::genoa(MEAS_A)).unwrap();
            launch(&m, KERNEL_A);
            let a = gather(&m, &NONCE, &[(1, sim_gpus()[0].evidence(&NONCE))]);
            let later = gather(&m, &NONCE_LATER, &[]);
            let other = gather(&m, &NONCE, &[(1, sim_gpus()[0].evidence(&NONCE_LATER))]);
            let real = gather(&m, &NONCE, &[(1, real_gpu_evidence())]);
            let chain = m.module().psp_mut().chain().clone();
            let epoch = m.module().state_epoch();
            (a, later, other, real, chain, epoch)
        };
        let b = {
            let m = SimMachine::new(LaunchConfig::genoa(MEAS_B)).unwrap();
            launch(&m, KERNEL_B);
            gather(&m, &NONCE, &[(1, sim_gpus()[1].evidence(&NONCE))])
        };
        let c = {
            let mut config = LaunchConfig::genoa(MEAS_A);
            config.chip_id = [0xC3; 64];
            let psp = SimPsp::new(config, [0x24; 48], Vmpl::ZERO).unwrap();
            let m = SimMachine::from_parts(SimMemory::new(DEFAULT_PAGES), psp, true);
            launch(&m, KERNEL_A);
            gather(&m, &NONCE, &[])
        };
        let e = {
            let store = SimStore::new();
            store.set_slot(0, Some(vec![0xEE; 256]));
            let m = SimMachine::boot(LaunchConfig::genoa(MEAS_A), AnyStore::Memory(store), None)
                .unwrap();
            launch(&m, KERNEL_A);
            gather(&m, &NONCE, &[])
        };
        let (r, r_epoch) = {
            let store = SimStore::new();
            let boot = || {
                SimMachine::boot(
                    LaunchConfig::genoa(MEAS_A),
                    AnyStore::Memory(store.clone()),
                    None,
                )
                .unwrap()
            };
            drop(boot());
            let m = boot();
            launch(&m, KERNEL_A);
            let bundle = gather(&m, &NONCE, &[]);
            let epoch = m.module().state_epoch();
            (bundle, epoch)
        };
        Fixture {
            a,
            a_gpu_other_request,
            a_real_gpu,
            a_later,
            b,
            c,
            e,
            r,
            r_epoch,
            chain,
            epoch,
        }
    })
}

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(AT)
}

/// VCEK only, VMPL 0, MEASUREMENT in `allowed`.
fn policy(allowed: [u8; 48]) -> Policy {
    Policy {
        measurements: Some(vec![allowed]),
        vmpl: Some(0),
        signing_keys: vec![SigningKey::Vcek],
        ..Policy::default()
    }
}

/// The simulator's TEST chain as the only anchors (Genoa).
fn test_roots(chain: &TestChain) -> Arc<TrustStore> {
    Arc::new(TrustStore::new(vec![ProductAnchors::load(
        Product::Genoa,
        &chain.ark_der,
        &chain.ask_der,
        &chain.ask_der,
    )
    .unwrap()]))
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| Verifier::with_trust_store(test_roots(&fixture().chain), policy(MEAS_A)))
}

/// Machine A's and machine B's simulated GPUs (TEST roots).
fn sim_gpus() -> &'static [SimGpu; 2] {
    static G: OnceLock<[SimGpu; 2]> = OnceLock::new();
    G.get_or_init(|| {
        [
            SimGpu::new(b"machine A's GPU").unwrap(),
            SimGpu::new(b"machine B's GPU").unwrap(),
        ]
    })
}

/// Both simulated GPUs' TEST roots.
fn gpu_verifier() -> &'static GpuVerifier {
    static V: OnceLock<GpuVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let roots = sim_gpus()[0].root_pem() + &sim_gpus()[1].root_pem();
        GpuVerifier::with_roots_pem(roots.as_bytes()).unwrap()
    })
}

/// NVIDIA's real H100 report and its valid chain in a GPU evidence container.
fn real_gpu_evidence() -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors/nvidia");
    let hex_text = std::fs::read_to_string(dir.join("hopperAttestationReport.txt")).unwrap();
    let report = hex::decode(hex_text.trim()).unwrap();
    let chain = std::fs::read(dir.join("hopper_cert_chain_case1.txt")).unwrap();
    let mut out = svsm_abi::gpu::GpuEvidence::header(&report, &chain)
        .unwrap()
        .as_bytes()
        .to_vec();
    out.extend_from_slice(&report);
    out.extend_from_slice(&chain);
    out
}

fn appraise_with(b: &Bundle, f: impl FnOnce(&mut BundleContext<'_>)) -> BundleAppraisal {
    let mut ctx = BundleContext::new(verifier(), &NONCE, at());
    ctx.gpu_verifier = gpu_verifier();
    f(&mut ctx);
    verify_bundle(b, &ctx).unwrap()
}

fn appraise(b: &Bundle) -> BundleAppraisal {
    appraise_with(b, |_| {})
}

fn appraise_by(b: &Bundle, verifier: &Verifier) -> BundleAppraisal {
    let mut ctx = BundleContext::new(verifier, &NONCE, at());
    ctx.gpu_verifier = gpu_verifier();
    verify_bundle(b, &ctx).unwrap()
}

/// Exactly these checks fail (in report order), and the verdict follows.
#[track_caller]
fn expect(a: &BundleAppraisal, failed: &[C]) {
    let got: Vec<C> = a.failures().map(|c| c.id).collect();
    assert_eq!(got, failed, "\n{}", a.render_text());
    let verdict = if failed.is_empty() {
        Verdict::Affirming
    } else {
        Verdict::Contraindicated
    };
    assert_eq!(a.verdict(), verdict);
}

#[track_caller]
fn reason(a: &BundleAppraisal, id: C) -> &F {
    a.failure(id)
        .unwrap_or_else(|| panic!("{id} did not fail\n{}", a.render_text()))
}

#[track_caller]
fn passes(a: &BundleAppraisal, id: C) {
    assert_eq!(
        a.check(id).unwrap().outcome,
        Outcome::Pass,
        "{id}\n{}",
        a.render_text()
    );
}

/// The checks a failed quote signature takes down with it.
const AFTER_SIGNATURE: [C; 3] = [C::VtpmQuoteNonce, C::VtpmPcrDigest, C::VtpmLogReplay];

fn a() -> Bundle {
    fixture().a.clone()
}

/// Re-signs the report with the test VCEK over REPORT_DATA = SHA-512(nonce ‖ manifest).
fn resign(b: &mut Bundle) {
    resign_at(b, 0);
}

/// [`resign`] as if the report had been requested at `vmpl`.
fn resign_at(b: &mut Bundle, vmpl: u32) {
    let mut raw = RawReport::read_from_bytes(&b.snp_report).unwrap();
    raw.vmpl = vmpl.into();
    raw.report_data = Sha512::new()
        .chain_update(&b.nonce)
        .chain_update(&b.manifest)
        .finalize()
        .into();
    let sig: p384::ecdsa::Signature = fixture().chain.vcek_key.sign(&raw.as_bytes()[..SIGNED_LEN]);
    let (r, s) = sig.split_bytes();
    raw.signature = EcdsaSignature::from_be_components(&r.into(), &s.into());
    b.snp_report = raw.as_bytes().to_vec();
}

/// Manifest offsets (svsm_abi::attest::VtpmManifest: the 136-byte StateHeader, then the
/// log digest).
const MANIFEST_LOG_DIGEST: std::ops::Range<usize> = 136..184;
const MANIFEST_REQUESTER: usize = 10;

fn ak_range(manifest: &[u8]) -> std::ops::Range<usize> {
    let ek = u16::from_le_bytes([manifest[184], manifest[185]]) as usize;
    let at = 186 + ek;
    let ak = u16::from_le_bytes([manifest[at], manifest[at + 1]]) as usize;
    at + 2..at + 2 + ak
}

/// Sets the manifest's log digest to the log's and re-signs (an SVSM that logs what it is given).
fn rebind_log(b: &mut Bundle) {
    let d: [u8; 48] = Sha384::digest(&b.event_log).into();
    b.manifest[MANIFEST_LOG_DIGEST].copy_from_slice(&d);
    resign(b);
}

/// (offset, length) of every event after the Spec ID header.
fn events(log: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = SPEC_ID_EVENT_LEN;
    while at < log.len() {
        let size = u32::from_le_bytes(log[at + 96..at + 100].try_into().unwrap()) as usize;
        out.push((at, event_len(size)));
        at += event_len(size);
    }
    out
}

fn event(pcr: u32, data: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; event_len(data.len())];
    let d256: [u8; 32] = Sha256::digest(data).into();
    let d384: [u8; 48] = Sha384::digest(data).into();
    write_event(&mut e, pcr, 0x0D, &d256, &d384, data).unwrap();
    e
}

fn cert_table(certs: &[(CertKind, &[u8])]) -> Vec<u8> {
    let mut t = vec![0u8; cert_table_len(certs).unwrap()];
    write_cert_table(certs, &mut t).unwrap();
    t
}

fn replay_mismatch(a: &BundleAppraisal) -> (usize, Vec<usize>) {
    match reason(a, C::VtpmLogReplay) {
        F::ReplayMismatch { pcr, all, .. } => (*pcr, all.clone()),
        other => panic!("{other}"),
    }
}

// ---------------------------------------------------------------- positive ----

#[test]
fn a_real_bundle_is_affirming_with_every_part() {
    let f = fixture();
    let a = appraise(&f.a);
    expect(&a, &[]);
    for id in C::ALL {
        if id == C::VtpmReferencePcrs
            || id == C::SvsmEpoch
            || id == C::SvsmRequester
            || id == C::GpuMeasurements
        {
            continue; // not asked for
        }
        if id == C::VtpmImaReplay || id == C::VtpmImaBootAggregate || id == C::VtpmImaPolicy {
            // The simulated machine boots no kernel: no IMA log, the checks do not apply.
            assert!(
                matches!(
                    a.check(id).map(|c| &c.outcome),
                    Some(host_verifier::Outcome::NotApplicable(_))
                ),
                "{id}"
            );
            continue;
        }
        passes(&a, id);
    }
    assert_eq!(a.event_log.events, Some(6));
    assert_eq!(a.event_log.pcrs_extended, vec![0, 4, 8, 9, 16]);
    assert_eq!(a.pcrs.len(), 24);
    assert_eq!(a.manifest.as_ref().unwrap().epoch, f.epoch);
    assert!(a.has_gpu());
    let ear = a.to_ear_json(1).unwrap();
    let submods = ear["submods"].as_object().unwrap();
    assert_eq!(
        submods.keys().collect::<Vec<_>>(),
        vec!["cpu", "gpu", "svsm", "vtpm"]
    );
    for (name, s) in submods {
        assert_eq!(s["ear_status"], "affirming", "{name}: {s}");
    }
    assert_eq!(ear["ear_status"], "affirming");
    let text = a.render_text();
    assert!(text.contains("verdict: AFFIRMING"), "{text}");
}

#[test]
fn the_json_form_round_trips_and_stays_affirming() {
    let json = fixture().a.to_json().unwrap();
    let back = Bundle::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, fixture().a);
    expect(&appraise(&back), &[]);
}

#[test]
fn the_other_machines_bundles_are_genuine_on_their_own() {
    let f = fixture();
    expect(
        &appraise_by(
            &f.b,
            &Verifier::with_trust_store(test_roots(&f.chain), policy(MEAS_B)),
        ),
        &[],
    );
    expect(&appraise(&f.c), &[]);
    expect(&appraise_with(&f.e, |c| c.allow_ephemeral = true), &[]);
}

#[test]
fn reference_values_epoch_and_required_extra_evidence_pass_when_met() {
    let f = fixture();
    // A fresh state meets only a minimum of 0 (see epoch_rolled_back for a restored one).
    let a = appraise_with(&f.a, |c| {
        c.min_epoch = Some(0);
        c.require_extra_evidence = true;
        for pcr in [0usize, 4, 8, 9, 16, 23] {
            c.expected_pcrs.insert(pcr, f.a.pcrs_sha256[pcr]);
        }
    });
    expect(&a, &[]);
    passes(&a, C::VtpmReferencePcrs);
    passes(&a, C::SvsmEpoch);
}

// ------------------------------------------------------ parts swapped ----

#[test]
fn report_swapped_with_another_machines() {
    let mut b = a();
    b.snp_report = fixture().b.snp_report.clone();
    let a = appraise(&b);
    expect(
        &a,
        &[
            C::CpuSnp,
            C::SvsmBinding,
            C::VtpmLogReplay,
            C::CpuMeasurement,
            C::GpuBinding,
        ],
    );
    assert!(matches!(
        reason(&a, C::SvsmBinding),
        F::BindingMismatch { .. }
    ));
    assert_eq!(
        reason(&a, C::CpuSnp),
        &F::SnpContraindicated(vec!["policy.measurement"])
    );
    assert_eq!(
        reason(&a, C::VtpmLogReplay),
        &F::Prerequisite(C::SvsmBinding)
    );
}

#[test]
fn certificates_swapped_with_another_chips() {
    let mut b = a();
    b.certificates = fixture().c.certificates.clone();
    let a = appraise(&b);
    expect(&a, &[C::CpuSnp, C::VtpmLogReplay, C::GpuBinding]);
    assert_eq!(
        reason(&a, C::CpuSnp),
        &F::SnpContraindicated(vec!["report.signature", "vek.identity"])
    );
    assert_eq!(reason(&a, C::VtpmLogReplay), &F::Prerequisite(C::CpuSnp));
}

#[test]
fn manifest_swapped_with_another_machines() {
    let mut b = a();
    b.manifest = fixture().b.manifest.clone();
    let a = appraise(&b);
    expect(
        &a,
        &[
            C::SvsmBinding,
            C::VtpmEkCertificates,
            C::VtpmQuoteSignature,
            C::VtpmQuoteNonce,
            C::VtpmPcrDigest,
            C::VtpmLogDigest,
            C::VtpmLogReplay,
            C::SvsmExtraEvidence,
            C::GpuBinding,
        ],
    );
    assert!(matches!(
        reason(&a, C::SvsmBinding),
        F::BindingMismatch { .. }
    ));
    assert_eq!(reason(&a, C::VtpmQuoteSignature), &F::SignatureInvalid);
    assert!(matches!(
        reason(&a, C::VtpmLogDigest),
        F::LogDigestMismatch { .. }
    ));
    assert!(matches!(
        reason(&a, C::SvsmExtraEvidence),
        F::ExtraMismatch { kind: 1, .. }
    ));
}

#[test]
fn quote_from_another_ak() {
    let mut b = a();
    b.quote_attest = fixture().b.quote_attest.clone();
    b.quote_signature = fixture().b.quote_signature.clone();
    let a = appraise(&b);
    let mut failed = vec![C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmQuoteSignature), &F::SignatureInvalid);
    // Signatures before the log: nothing was replayed.
    assert_eq!(
        reason(&a, C::VtpmLogReplay),
        &F::Prerequisite(C::VtpmQuoteSignature)
    );
    assert_eq!(a.event_log.events, None);
}

#[test]
fn quote_attest_swapped_alone() {
    let mut b = a();
    b.quote_attest = fixture().b.quote_attest.clone();
    let a = appraise(&b);
    let mut failed = vec![C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmQuoteSignature), &F::SignatureInvalid);
}

#[test]
fn quote_signature_swapped_alone() {
    let mut b = a();
    b.quote_signature = fixture().b.quote_signature.clone();
    let a = appraise(&b);
    let mut failed = vec![C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmQuoteSignature), &F::SignatureInvalid);
}

/// The manifest's AK replaced by a P-256 key the forger holds (the report re-signed over the
/// new manifest: an insider case), and the machine's own quote re-signed with that key: the
/// signature verifies with "the AK", but qualifiedSigner still names the machine's real AK.
#[test]
fn insider_quote_re_signed_by_another_key() {
    use p256::ecdsa::signature::Signer as _;
    let mut b = a();
    let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    let range = ak_range(&b.manifest);
    let ak = &mut b.manifest[range];
    // TPMT_PUBLIC (ECC P-256) ends with unique.x and unique.y, each a TPM2B of 32 bytes.
    let n = ak.len();
    assert_eq!(
        (&ak[n - 68..n - 66], &ak[n - 34..n - 32]),
        (&[0, 32][..], &[0, 32][..])
    );
    ak[n - 66..n - 34].copy_from_slice(point.x().unwrap());
    ak[n - 32..].copy_from_slice(point.y().unwrap());
    resign(&mut b);
    let sig: p256::ecdsa::Signature = key.sign(&b.quote_attest);
    let (r, s) = sig.split_bytes();
    b.quote_signature = [
        &[0x00, 0x18, 0x00, 0x0B, 0x00, 0x20][..],
        &r,
        &[0x00, 0x20],
        &s,
    ]
    .concat();
    let a = appraise(&b);
    expect(
        &a,
        &[
            C::VtpmQuoteSignature,
            C::VtpmQuoteNonce,
            C::VtpmPcrDigest,
            C::VtpmLogReplay,
        ],
    );
    assert!(matches!(
        reason(&a, C::VtpmQuoteSignature),
        F::QuoteSigner(host_verifier::bundle_verify::tpm::SignerError::Mismatch { .. })
    ));
}

#[test]
fn pcrs_swapped_with_another_machines() {
    let mut b = a();
    b.pcrs_sha256 = fixture().b.pcrs_sha256.clone();
    let a = appraise(&b);
    expect(&a, &[C::VtpmPcrDigest, C::VtpmLogReplay]);
    assert!(matches!(
        reason(&a, C::VtpmPcrDigest),
        F::PcrDigestMismatch { pcrs, .. } if pcrs == "0-23"
    ));
    assert_eq!(
        reason(&a, C::VtpmLogReplay),
        &F::Prerequisite(C::VtpmPcrDigest)
    );
}

#[test]
fn event_log_swapped_with_another_machines() {
    let mut b = a();
    b.event_log = fixture().b.event_log.clone();
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    assert!(matches!(
        reason(&a, C::VtpmLogDigest),
        F::LogDigestMismatch { .. }
    ));
    // Only the kernel differs: PCR 4.
    assert_eq!(replay_mismatch(&a), (4, vec![4]));
}

#[test]
fn extra_evidence_swapped_with_another_machines() {
    let mut b = a();
    b.extra_evidence = fixture().b.extra_evidence.clone();
    let a = appraise(&b);
    expect(&a, &[C::SvsmExtraEvidence, C::GpuBinding]);
    let gpu_b = hex::encode(Sha384::digest(&fixture().b.extra_evidence[0].1));
    assert!(matches!(
        reason(&a, C::SvsmExtraEvidence),
        F::ExtraMismatch { kind: 1, supplied, .. } if *supplied == gpu_b
    ));
    assert_eq!(
        reason(&a, C::GpuBinding),
        &F::Prerequisite(C::SvsmExtraEvidence)
    );
}

// ------------------------------------------------------------- freshness ----

#[test]
fn stale_nonce() {
    let a = appraise_with(&fixture().a, |c| c.nonce = &NONCE_FRESH);
    // The GPU report is bound to the stale nonce only.
    expect(&a, &[C::SvsmNonce, C::GpuNonce, C::GpuBinding]);
    assert_eq!(reason(&a, C::GpuBinding), &F::Prerequisite(C::SvsmNonce));
    assert!(matches!(reason(&a, C::SvsmNonce), F::NonceMismatch { .. }));
}

#[test]
fn nonce_field_rewritten_to_the_fresh_one() {
    let mut b = a();
    b.nonce = NONCE_FRESH.to_vec();
    let a = appraise_with(&b, |c| c.nonce = &NONCE_FRESH);
    expect(
        &a,
        &[
            C::SvsmBinding,
            C::VtpmQuoteNonce,
            C::VtpmLogReplay,
            C::GpuNonce,
            C::GpuBinding,
        ],
    );
    assert!(matches!(
        reason(&a, C::VtpmQuoteNonce),
        F::QuoteNonce { .. }
    ));
}

#[test]
fn quote_replayed_from_an_earlier_request() {
    // Same AK, same PCRs, but the quote answers NONCE_LATER: extraData mismatch.
    let mut b = a();
    b.quote_attest = fixture().a_later.quote_attest.clone();
    b.quote_signature = fixture().a_later.quote_signature.clone();
    let a = appraise(&b);
    expect(&a, &[C::VtpmQuoteNonce]);
    assert_eq!(
        reason(&a, C::VtpmQuoteNonce),
        &F::QuoteNonce {
            found: hex::encode(NONCE_LATER),
            expected: hex::encode(NONCE)
        }
    );
    passes(&a, C::VtpmQuoteSignature);
}

#[test]
fn an_empty_expected_nonce_is_refused() {
    let a = appraise_with(&fixture().a, |c| c.nonce = &[]);
    expect(&a, &[C::SvsmNonce, C::GpuNonce, C::GpuBinding]);
    assert_eq!(reason(&a, C::SvsmNonce), &F::NonceEmpty);
}

// --------------------------------------------------------- PCRs and log ----

#[test]
fn one_pcr_value_altered() {
    let mut b = a();
    b.pcrs_sha256[4][0] ^= 1;
    let a = appraise(&b);
    expect(&a, &[C::VtpmPcrDigest, C::VtpmLogReplay]);
    assert!(matches!(
        reason(&a, C::VtpmPcrDigest),
        F::PcrDigestMismatch { .. }
    ));
    // Only the vTPM part is contraindicated.
    let ear = a.to_ear_json(1).unwrap();
    assert_eq!(ear["submods"]["vtpm"]["ear_status"], "contraindicated");
    for s in ["cpu", "svsm", "gpu"] {
        assert_eq!(ear["submods"][s]["ear_status"], "affirming", "{s}");
    }
}

#[test]
fn event_log_digest_byte_altered() {
    let mut b = a();
    let (kernel, _) = events(&b.event_log)[1];
    b.event_log[kernel + 14] ^= 1; // first byte of the SHA-256 digest
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    assert_eq!(replay_mismatch(&a), (4, vec![4]));
}

#[test]
fn event_log_data_byte_altered() {
    // Event data is not extended: only the manifest's log digest sees it.
    let mut b = a();
    let (kernel, _) = events(&b.event_log)[1];
    b.event_log[kernel + 100] ^= 1;
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest]);
    passes(&a, C::VtpmLogReplay);
}

#[test]
fn event_log_pcr_index_altered() {
    let mut b = a();
    let (kernel, _) = events(&b.event_log)[1];
    b.event_log[kernel] = 5; // PCR 4 -> 5
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    // PCR 4 loses its only event (only the log digest sees that); PCR 5 gains one.
    assert_eq!(replay_mismatch(&a), (5, vec![5]));
    assert_eq!(a.event_log.pcrs_extended, vec![0, 5, 8, 9, 16]);
}

#[test]
fn event_log_entry_removed() {
    let mut b = a();
    let (last, _) = *events(&b.event_log).last().unwrap();
    b.event_log.truncate(last);
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    assert_eq!(replay_mismatch(&a), (16, vec![16]));
}

#[test]
fn event_log_sole_entry_of_a_pcr_removed() {
    // The command line is PCR 8's only event: the replay no longer touches PCR 8, so only the
    // manifest's digest of the log catches the removal.
    let mut b = a();
    let (cmdline, len) = events(&b.event_log)[3];
    assert_eq!(b.event_log[cmdline], 8);
    b.event_log.drain(cmdline..cmdline + len);
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest]);
    assert_eq!(a.event_log.pcrs_extended, vec![0, 4, 9, 16]);
}

#[test]
fn event_log_entry_appended() {
    let mut b = a();
    b.event_log.extend(event(16, b"app data v2"));
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    assert_eq!(replay_mismatch(&a), (16, vec![16]));
}

#[test]
fn event_log_entry_appended_for_an_unextended_pcr() {
    let mut b = a();
    b.event_log.extend(event(12, b"never measured"));
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    assert_eq!(replay_mismatch(&a), (12, vec![12]));
}

#[test]
fn insider_event_log_appended_and_bound() {
    // The manifest binds the longer log, but the quoted PCRs do not follow it.
    let mut b = a();
    b.event_log.extend(event(16, b"app data v2"));
    rebind_log(&mut b);
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogReplay]);
    assert_eq!(replay_mismatch(&a), (16, vec![16]));
}

#[test]
fn oversized_event_log() {
    let mut b = a();
    b.event_log.resize(svsm_abi::eventlog::MAX_LOG + 1, 0);
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogDigest, C::VtpmLogReplay]);
    assert!(matches!(
        reason(&a, C::VtpmLogDigest),
        F::TooLarge {
            field: "event_log",
            ..
        }
    ));
    assert_eq!(
        reason(&a, C::VtpmLogReplay),
        &F::EventLog(EventLogError::TooLarge("log size"))
    );
}

#[test]
fn insider_event_log_with_too_many_events() {
    let mut b = a();
    let one = event(16, b"");
    for _ in 0..svsm_abi::eventlog::MAX_EVENTS {
        b.event_log.extend_from_slice(&one);
    }
    rebind_log(&mut b);
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogReplay]);
    assert_eq!(
        reason(&a, C::VtpmLogReplay),
        &F::EventLog(EventLogError::TooLarge("events"))
    );
}

#[test]
fn insider_event_with_oversized_data() {
    let mut b = a();
    b.event_log.extend(event(
        16,
        &vec![0u8; svsm_abi::eventlog::MAX_EVENT_DATA + 1],
    ));
    rebind_log(&mut b);
    let a = appraise(&b);
    expect(&a, &[C::VtpmLogReplay]);
    assert_eq!(
        reason(&a, C::VtpmLogReplay),
        &F::EventLog(EventLogError::TooLarge("event data"))
    );
}

#[test]
fn expected_pcr_value_differs() {
    let f = fixture();
    let a = appraise_with(&f.a, |c| {
        c.expected_pcrs.insert(0, f.a.pcrs_sha256[0]);
        c.expected_pcrs.insert(4, f.b.pcrs_sha256[4]); // the tampered kernel's PCR 4
    });
    expect(&a, &[C::VtpmReferencePcrs]);
    assert!(matches!(
        reason(&a, C::VtpmReferencePcrs),
        F::ReferenceMismatch { pcr: 4, .. }
    ));
}

#[test]
fn expected_pcr_outside_the_quote() {
    let a = appraise_with(&fixture().a, |c| {
        c.expected_pcrs.insert(24, [0; 32]);
    });
    expect(&a, &[C::VtpmReferencePcrs]);
    assert_eq!(reason(&a, C::VtpmReferencePcrs), &F::ReferenceNotQuoted(24));
}

// ------------------------------------------------------------ the quote ----

#[track_caller]
fn expect_quote_malformed(b: &Bundle) -> BundleAppraisal {
    let a = appraise(b);
    let mut failed = vec![C::VtpmQuote, C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(
        reason(&a, C::VtpmQuoteSignature),
        &F::Prerequisite(C::VtpmQuote)
    );
    a
}

#[test]
fn truncated_tpms_attest() {
    let mut b = a();
    b.quote_attest.truncate(b.quote_attest.len() - 5);
    let a = expect_quote_malformed(&b);
    assert!(matches!(
        reason(&a, C::VtpmQuote),
        F::Quote(AttestError::Truncated {
            field: "pcrDigest",
            ..
        })
    ));
}

#[test]
fn tpms_attest_with_wrong_magic() {
    let mut b = a();
    b.quote_attest[0] = 0xFE;
    let a = expect_quote_malformed(&b);
    assert_eq!(
        reason(&a, C::VtpmQuote),
        &F::Quote(AttestError::Magic(0xFE54_4347))
    );
}

#[test]
fn tpms_attest_of_another_type() {
    let mut b = a();
    b.quote_attest[4..6].copy_from_slice(&0x8017u16.to_be_bytes()); // TPM_ST_ATTEST_CERTIFY
    let a = expect_quote_malformed(&b);
    assert_eq!(
        reason(&a, C::VtpmQuote),
        &F::Quote(AttestError::Type(0x8017))
    );
}

#[test]
fn tpms_attest_with_trailing_bytes() {
    let mut b = a();
    b.quote_attest.push(0);
    let a = expect_quote_malformed(&b);
    assert_eq!(
        reason(&a, C::VtpmQuote),
        &F::Quote(AttestError::TrailingBytes(1))
    );
}

#[test]
fn tpms_attest_clock_altered() {
    let mut b = a();
    let at = clock_offset(&b.quote_attest);
    b.quote_attest[at + 7] ^= 1;
    let a = appraise(&b);
    let mut failed = vec![C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmQuoteSignature), &F::SignatureInvalid);
}

#[track_caller]
fn expect_signature_malformed(b: &Bundle, why: SignatureError) {
    let a = appraise(b);
    let mut failed = vec![C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmQuoteSignature), &F::Signature(why));
}

#[test]
fn signature_r_longer_than_a_scalar() {
    let mut b = a();
    b.quote_signature[4..6].copy_from_slice(&33u16.to_be_bytes());
    expect_signature_malformed(
        &b,
        SignatureError::ScalarSize {
            which: "r",
            size: 33,
        },
    );
}

#[test]
fn signature_s_zero() {
    let mut b = a();
    let s_at = 4 + 2 + 32 + 2;
    b.quote_signature[s_at..s_at + 32].fill(0);
    expect_signature_malformed(&b, SignatureError::ScalarRange);
}

#[test]
fn signature_of_another_scheme() {
    let mut b = a();
    b.quote_signature[0..2].copy_from_slice(&0x0014u16.to_be_bytes()); // RSASSA
    expect_signature_malformed(&b, SignatureError::Scheme(0x0014));
}

#[test]
fn signature_with_another_hash() {
    let mut b = a();
    b.quote_signature[2..4].copy_from_slice(&0x000Cu16.to_be_bytes()); // SHA-384
    expect_signature_malformed(&b, SignatureError::Hash(0x000C));
}

#[test]
fn signature_truncated() {
    let mut b = a();
    b.quote_signature.truncate(50);
    expect_signature_malformed(
        &b,
        SignatureError::Truncated {
            field: "s",
            need: 32,
        },
    );
}

// ------------------------------------------------------------- manifest ----

#[test]
fn manifest_byte_flipped() {
    let mut b = a();
    b.manifest[20] ^= 1; // instance id
    let a = appraise(&b);
    expect(&a, &[C::SvsmBinding, C::VtpmLogReplay, C::GpuBinding]);
    assert!(matches!(
        reason(&a, C::SvsmBinding),
        F::BindingMismatch { .. }
    ));
}

#[test]
fn ak_public_malformed_in_the_manifest() {
    let mut b = a();
    let ak = ak_range(&b.manifest);
    b.manifest[ak.start + 16..ak.start + 18].copy_from_slice(&0x0004u16.to_be_bytes()); // P-384
    let a = appraise(&b);
    let mut failed = vec![C::SvsmBinding, C::VtpmAk, C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    failed.push(C::GpuBinding);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmAk), &F::Ak(PublicError::Curve(4)));
}

#[test]
fn insider_ak_that_is_not_restricted() {
    let mut b = a();
    let ak = ak_range(&b.manifest);
    b.manifest[ak.start + 5] &= !0x01; // objectAttributes bit 16: restricted
    resign(&mut b);
    let a = appraise(&b);
    let mut failed = vec![C::VtpmAk, C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert!(matches!(
        reason(&a, C::VtpmAk),
        F::Ak(PublicError::Attributes {
            missing: 0x0001_0000,
            ..
        })
    ));
}

#[test]
fn insider_ak_off_the_curve() {
    let mut b = a();
    let ak = ak_range(&b.manifest);
    let last = ak.end - 1;
    b.manifest[last] ^= 1; // y
    resign(&mut b);
    let a = appraise(&b);
    let mut failed = vec![C::VtpmAk, C::VtpmQuoteSignature];
    failed.extend(AFTER_SIGNATURE);
    expect(&a, &failed);
    assert_eq!(reason(&a, C::VtpmAk), &F::Ak(PublicError::NotOnCurve));
}

#[track_caller]
fn expect_manifest_unreadable(b: &Bundle) -> BundleAppraisal {
    let a = appraise(b);
    expect(
        &a,
        &[
            C::SvsmManifest,
            C::VtpmAk,
            C::VtpmEkCertificates,
            C::VtpmQuoteSignature,
            C::VtpmQuoteNonce,
            C::VtpmPcrDigest,
            C::VtpmLogDigest,
            C::VtpmLogReplay,
            C::SvsmState,
            C::SvsmPersisted,
            C::SvsmExtraEvidence,
            C::GpuBinding,
        ],
    );
    assert_eq!(reason(&a, C::VtpmAk), &F::Prerequisite(C::SvsmManifest));
    assert_eq!(
        reason(&a, C::VtpmEkCertificates),
        &F::Prerequisite(C::SvsmManifest)
    );
    a
}

#[test]
fn insider_manifest_truncated() {
    let mut b = a();
    b.manifest.truncate(b.manifest.len() - 1);
    resign(&mut b);
    let a = expect_manifest_unreadable(&b);
    assert!(matches!(
        reason(&a, C::SvsmManifest),
        F::Manifest(svsm_abi::attest::ManifestError::Truncated { .. })
    ));
}

#[test]
fn insider_manifest_of_another_version() {
    // Versions 1 and 2 (no per-boot transport key; no EK CA) are retired, 3 is unknown.
    for v in [1u32, 2, 3] {
        let mut b = a();
        b.manifest[..4].copy_from_slice(&v.to_le_bytes());
        resign(&mut b);
        let a = expect_manifest_unreadable(&b);
        assert_eq!(reason(&a, C::SvsmManifest), &F::ManifestVersion(v));
    }
}

#[test]
fn insider_manifest_with_unknown_flags() {
    let mut b = a();
    b.manifest[4] |= 0x80;
    resign(&mut b);
    let a = expect_manifest_unreadable(&b);
    assert_eq!(
        reason(&a, C::SvsmManifest),
        &F::Manifest(svsm_abi::attest::ManifestError::Reserved("flags"))
    );
}

#[test]
fn insider_manifest_claiming_persistent_state_while_ephemeral() {
    // The ephemeral bundle with its state byte turned to "restored": kind, reason and flag
    // must agree, so the lie does not parse.
    let mut b = fixture().e.clone();
    b.manifest[8] = 1;
    resign(&mut b);
    let a = appraise(&b);
    assert_eq!(
        reason(&a, C::SvsmManifest),
        &F::Manifest(svsm_abi::attest::ManifestError::InconsistentState)
    );
}

#[test]
fn epoch_rolled_back() {
    let f = fixture();
    let ok = appraise_with(&f.r, |c| c.min_epoch = Some(f.r_epoch));
    assert_eq!(ok.verdict(), Verdict::Affirming, "{}", ok.render_text());
    assert_eq!(ok.manifest.as_ref().unwrap().state, "restored");
    let a = appraise_with(&f.r, |c| c.min_epoch = Some(f.r_epoch + 1));
    expect(&a, &[C::SvsmEpoch]);
    assert_eq!(
        reason(&a, C::SvsmEpoch),
        &F::EpochRollback {
            found: f.r_epoch,
            min: f.r_epoch + 1
        }
    );
}

#[test]
fn fresh_state_fails_a_minimum_epoch() {
    // A relying party that saw epoch N: a fresh state (deleted store, first boot of a new
    // instance) is not that state.
    let f = fixture();
    let a = appraise(&f.a);
    assert_eq!(a.manifest.as_ref().unwrap().state, "fresh");
    assert!(matches!(
        a.check(C::SvsmEpoch).unwrap().outcome,
        Outcome::NotApplicable(_)
    ));
    let a = appraise_with(&f.a, |c| c.min_epoch = Some(1));
    expect(&a, &[C::SvsmEpoch]);
    assert_eq!(
        reason(&a, C::SvsmEpoch),
        &F::EpochNotRestored {
            state: "fresh",
            min: 1
        }
    );
    let a = appraise_with(&f.a, |c| c.min_epoch = Some(0));
    assert_eq!(a.verdict(), Verdict::Affirming);
}

#[test]
fn ephemeral_state_refused_unless_allowed() {
    let a = appraise(&fixture().e);
    expect(&a, &[C::SvsmState]);
    assert_eq!(
        reason(&a, C::SvsmState),
        &F::Ephemeral("the stored state is malformed or of an unknown format")
    );
    let m = a.manifest.as_ref().unwrap();
    assert_eq!(m.state, "ephemeral");
    assert!(m.ephemeral_reason.is_some());
    let a = appraise_with(&fixture().e, |c| c.min_epoch = Some(1));
    assert_eq!(
        reason(&a, C::SvsmEpoch),
        &F::EpochNotRestored {
            state: "ephemeral",
            min: 1
        }
    );
    let allowed = appraise_with(&fixture().e, |c| c.allow_ephemeral = true);
    assert_eq!(allowed.verdict(), Verdict::Affirming);
}

#[test]
fn requester_vmpl_is_reported_and_checked_when_expected() {
    let f = fixture();
    let reported = appraise(&f.a);
    assert_eq!(reported.manifest.as_ref().unwrap().requester_vmpl, 1);
    assert!(matches!(
        reported.check(C::SvsmRequester).unwrap().outcome,
        Outcome::NotApplicable(_)
    ));
    assert_eq!(
        appraise_with(&f.a, |c| c.requester_vmpl = Some(1)).verdict(),
        Verdict::Affirming
    );
    let wrong = appraise_with(&f.a, |c| c.requester_vmpl = Some(2));
    expect(&wrong, &[C::SvsmRequester]);
    assert_eq!(
        reason(&wrong, C::SvsmRequester),
        &F::RequesterMismatch {
            found: 1,
            expected: 2
        }
    );
    // The requester is inside the manifest REPORT_DATA binds: changing it breaks the binding.
    let mut b = a();
    b.manifest[MANIFEST_REQUESTER] = 2;
    let changed = appraise_with(&b, |c| c.requester_vmpl = Some(2));
    assert!(changed.failures().any(|c| c.id == C::SvsmBinding));
}

#[test]
fn unpersisted_state_refused_unless_allowed() {
    let mut b = a();
    b.manifest[4] |= svsm_abi::attest::MANIFEST_FLAG_NOT_PERSISTED as u8;
    resign(&mut b);
    let a = appraise(&b);
    expect(&a, &[C::SvsmPersisted]);
    assert_eq!(reason(&a, C::SvsmPersisted), &F::NotPersisted);
    assert!(a.manifest.as_ref().unwrap().not_persisted);
}

// -------------------------------------------------------- extra evidence ----

#[test]
fn extra_evidence_missing() {
    let mut b = a();
    b.extra_evidence.clear();
    let a = appraise(&b);
    expect(&a, &[C::SvsmExtraEvidence, C::GpuBinding]);
    assert!(matches!(
        reason(&a, C::SvsmExtraEvidence),
        F::ExtraMissing { kind: 1, .. }
    ));
}

#[test]
fn extra_evidence_altered() {
    let mut b = a();
    // A byte of the first measurement value (header 12 + request 37 + response header 8 +
    // block header 4 + DMTF header 3 = 64): the manifest's digest and the GPU's signature both
    // no longer match.
    b.extra_evidence[0].1[64] ^= 1;
    let a = appraise(&b);
    expect(&a, &[C::SvsmExtraEvidence, C::GpuSignature, C::GpuBinding]);
    assert!(matches!(
        reason(&a, C::SvsmExtraEvidence),
        F::ExtraMismatch { kind: 1, .. }
    ));
    assert_eq!(
        reason(&a, C::GpuSignature),
        &F::Gpu {
            index: 0,
            failure: GpuFailure::BadSignature
        }
    );
}

#[test]
fn extra_evidence_not_listed() {
    let mut b = a();
    b.extra_evidence.push((2, b"an unlisted report".to_vec()));
    let a = appraise(&b);
    expect(&a, &[C::SvsmExtraEvidence, C::GpuBinding]);
    assert!(matches!(
        reason(&a, C::SvsmExtraEvidence),
        F::ExtraUnlisted { kind: 2, .. }
    ));
}

#[test]
fn extra_evidence_required_but_absent() {
    let a = appraise_with(&fixture().c, |c| c.require_extra_evidence = true);
    expect(&a, &[C::SvsmExtraEvidence]);
    assert_eq!(reason(&a, C::SvsmExtraEvidence), &F::ExtraRequired);
    assert!(!a.has_gpu());
}

// ------------------------------------------------------------------ GPU ----

const GPU_CHECKS: [C; 8] = [
    C::GpuReport,
    C::GpuChainRoot,
    C::GpuChain,
    C::GpuCertValidity,
    C::GpuFwid,
    C::GpuSignature,
    C::GpuNonce,
    C::GpuMeasurements,
];

#[test]
fn gpu_evidence_is_appraised_bound_and_named_by_the_combined_digest() {
    let f = fixture();
    let a = appraise(&f.a);
    expect(&a, &[]);
    for id in GPU_CHECKS.into_iter().filter(|c| *c != C::GpuMeasurements) {
        passes(&a, id);
    }
    passes(&a, C::GpuBinding);
    assert!(a
        .check(C::GpuNonce)
        .unwrap()
        .detail
        .contains(&hex::encode(svsm_abi::gpu::gpu_nonce(&NONCE))));
    assert_eq!(a.gpus.len(), 1);
    let claims = a.gpus[0].claims.as_ref().unwrap();
    assert_eq!(claims.measurements.len(), 64);
    assert_eq!(claims.config["project"], "1010");
    // The EAR's gpu submodule carries the claims.
    let ear = a.to_ear_json(1).unwrap();
    let gpu = &ear["submods"]["gpu"];
    assert_eq!(gpu["ear_status"], "affirming");
    let claims_json = serde_json::to_string(&gpu).unwrap();
    assert!(claims_json.contains("\"driver_version\""), "{claims_json}");
    // The combined digest: Poseidon(cpu, gpu) of this very evidence.
    let container = svsm_abi::gpu::GpuEvidence::parse(&f.a.extra_evidence[0].1).unwrap();
    let expected =
        host_verifier::combined::combined_digest(Some(&f.a.snp_report), &[container.report]);
    assert_eq!(a.combined_digest.as_ref(), Some(&expected));
    assert_eq!(expected.parts, "cpu+gpu");
    assert!(a.render_text().contains(&expected.combined));
    assert_eq!(
        ear["submods"]["svsm"]["ear_attester_claims"]["combined_digest"]["combined"].as_str(),
        Some(expected.combined.as_str())
    );
    // Without GPU evidence the digest is Poseidon(0, cpu).
    let c = appraise_with(&f.c, |_| {});
    assert_eq!(c.combined_digest.unwrap().parts, "cpu");
}

#[test]
fn gpu_report_made_for_another_request_is_contraindicated() {
    // The guest registered (so the manifest lists) a genuine GPU report, but one made for
    // another request's nonce: replayed GPU evidence.
    let a = appraise(&fixture().a_gpu_other_request);
    expect(&a, &[C::GpuNonce, C::GpuBinding]);
    assert!(matches!(
        reason(&a, C::GpuNonce),
        F::Gpu { index: 0, failure: GpuFailure::NonceMismatch { expected, .. } }
            if *expected == hex::encode(svsm_abi::gpu::gpu_nonce(&NONCE))
    ));
    assert_eq!(reason(&a, C::GpuBinding), &F::Prerequisite(C::GpuNonce));
    passes(&a, C::SvsmExtraEvidence);
}

#[test]
fn real_h100_report_is_genuine_but_not_made_for_this_request() {
    // NVIDIA's real report under NVIDIA's pinned root: chain, FWID and signature pass; its
    // nonce is NVIDIA's test nonce, not one derived from ours.
    let f = fixture();
    let a = appraise_with(&f.a_real_gpu, |c| {
        c.gpu_verifier = GpuVerifier::shared_nvidia()
    });
    expect(&a, &[C::GpuNonce, C::GpuBinding]);
    for id in [C::GpuChainRoot, C::GpuChain, C::GpuFwid, C::GpuSignature] {
        passes(&a, id);
    }
    assert_eq!(a.gpus[0].claims.as_ref().unwrap().config["project"], "1010");
    // The same evidence under the simulated GPUs' TEST roots does not chain.
    let a = appraise(&f.a_real_gpu);
    assert!(matches!(
        reason(&a, C::GpuChainRoot),
        F::Gpu {
            failure: GpuFailure::NotPinnedRoot,
            ..
        }
    ));
    // And the simulated GPU's evidence does not chain to NVIDIA's root.
    let a = appraise_with(&f.a, |c| c.gpu_verifier = GpuVerifier::shared_nvidia());
    expect(
        &a,
        &[
            C::GpuChainRoot,
            C::GpuChain,
            C::GpuCertValidity,
            C::GpuFwid,
            C::GpuSignature,
            C::GpuBinding,
        ],
    );
}

#[test]
fn gpu_measurements_against_reference_values() {
    let f = fixture();
    let claims = appraise(&f.a).gpus[0].claims.clone().unwrap();
    let mut reference = GpuReferenceValues::default();
    for (index, value) in &claims.measurements {
        reference.measurements.insert(*index, vec![value.clone()]);
    }
    let a = appraise_with(&f.a, |c| {
        c.gpu_reference = Some(Box::leak(Box::new(reference.clone())))
    });
    expect(&a, &[]);
    passes(&a, C::GpuMeasurements);
    reference.measurements.insert(12, vec!["00".repeat(48)]);
    let a = appraise_with(&f.a, |c| {
        c.gpu_reference = Some(Box::leak(Box::new(reference)))
    });
    expect(&a, &[C::GpuMeasurements]);
    assert_eq!(
        reason(&a, C::GpuMeasurements),
        &F::Gpu {
            index: 0,
            failure: GpuFailure::NotReference(vec![12])
        }
    );
    // gpu.measurements is a reference-value check: it does not prevent the binding.
    passes(&a, C::GpuBinding);
}

#[test]
fn one_gpu_report_repeated_does_not_count_as_two() {
    let mut b = a();
    let again = b.extra_evidence[0].clone();
    b.extra_evidence.push(again);
    let a = appraise(&b);
    expect(&a, &[C::SvsmExtraEvidence, C::GpuBinding]);
    assert!(matches!(
        reason(&a, C::SvsmExtraEvidence),
        F::ExtraUnlisted { kind: 1, .. }
    ));
}

#[test]
fn gpu_container_that_does_not_parse() {
    let mut b = a();
    b.extra_evidence[0].1[0] ^= 1; // the magic
    let a = appraise(&b);
    let mut failed = vec![C::SvsmExtraEvidence];
    failed.extend(GPU_CHECKS);
    failed.push(C::GpuBinding);
    expect(&a, &failed);
    assert!(matches!(
        reason(&a, C::GpuReport),
        F::GpuEvidence {
            index: 0,
            error: svsm_abi::gpu::GpuEvidenceError::Magic(_)
        }
    ));
    assert_eq!(reason(&a, C::GpuNonce), &F::Prerequisite(C::GpuReport));
    assert_eq!(a.combined_digest, None);
}

// ---------------------------------------------------------- CPU and roots ----

#[test]
fn measurement_not_allowed_by_the_policy() {
    let f = fixture();
    let v = Verifier::with_trust_store(test_roots(&f.chain), policy(MEAS_B));
    let a = appraise_by(&f.a, &v);
    expect(&a, &[C::CpuSnp, C::CpuMeasurement]);
    assert_eq!(
        reason(&a, C::CpuMeasurement),
        &F::MeasurementNotAllowed(hex::encode(MEAS_A))
    );
    // Policy, not signatures: the log is still replayed.
    passes(&a, C::VtpmLogReplay);
}

#[test]
fn insider_report_requested_by_the_guest_at_vmpl1() {
    // A guest kernel at VMPL1 can have the PSP sign any REPORT_DATA, e.g. a manifest naming an
    // AK it holds itself. A policy without `vmpl` does not see it; the bundle check does.
    let f = fixture();
    let mut b = a();
    resign_at(&mut b, 1);
    let mut lax = policy(MEAS_A);
    lax.vmpl = None;
    let a = appraise_by(&b, &Verifier::with_trust_store(test_roots(&f.chain), lax));
    expect(&a, &[C::SvsmVmpl, C::VtpmLogReplay, C::GpuBinding]);
    assert_eq!(reason(&a, C::SvsmVmpl), &F::NotVmpl0(1));
    assert_eq!(reason(&a, C::VtpmLogReplay), &F::Prerequisite(C::SvsmVmpl));
    // With `vmpl = 0` in the policy the SNP appraisal says so too.
    let a = appraise(&b);
    expect(
        &a,
        &[C::CpuSnp, C::SvsmVmpl, C::VtpmLogReplay, C::GpuBinding],
    );
}

#[track_caller]
fn expect_no_vek(b: &Bundle) -> BundleAppraisal {
    let a = appraise(b);
    expect(&a, &[C::CpuVek, C::CpuSnp, C::VtpmLogReplay, C::GpuBinding]);
    assert_eq!(reason(&a, C::CpuSnp), &F::Prerequisite(C::CpuVek));
    assert!(a.snp.is_none());
    a
}

#[test]
fn certificate_table_without_the_vcek() {
    let chain = &fixture().chain;
    let mut b = a();
    b.certificates = cert_table(&[
        (CertKind::Ask, &chain.ask_der),
        (CertKind::Ark, &chain.ark_der),
    ]);
    let a = expect_no_vek(&b);
    assert_eq!(reason(&a, C::CpuVek), &F::NoVek(SigningKey::Vcek));
}

#[test]
fn certificate_table_with_the_vcek_listed_as_a_vlek() {
    let chain = &fixture().chain;
    let mut b = a();
    b.certificates = cert_table(&[(CertKind::Vlek, &chain.vcek_der)]);
    let a = expect_no_vek(&b);
    assert_eq!(reason(&a, C::CpuVek), &F::NoVek(SigningKey::Vcek));
}

#[test]
fn certificate_table_empty() {
    let mut b = a();
    b.certificates = vec![0; 24];
    let a = expect_no_vek(&b);
    assert_eq!(reason(&a, C::CpuVek), &F::NoVek(SigningKey::Vcek));
}

#[test]
fn certificate_table_malformed() {
    let mut b = a();
    b.certificates.truncate(30); // inside the second entry, no terminator
    let a = expect_no_vek(&b);
    assert_eq!(
        reason(&a, C::CpuVek),
        &F::CertTable(CertTableError::Unterminated(30))
    );
}

#[test]
fn report_byte_flipped() {
    let mut b = a();
    b.snp_report[0x04] ^= 1; // GUEST_SVN
    let a = appraise(&b);
    expect(&a, &[C::CpuSnp, C::VtpmLogReplay, C::GpuBinding]);
    assert_eq!(
        reason(&a, C::CpuSnp),
        &F::SnpContraindicated(vec!["report.signature"])
    );
}

#[test]
fn report_truncated() {
    let mut b = a();
    b.snp_report.truncate(1000);
    let a = appraise(&b);
    expect(
        &a,
        &[
            C::CpuVek,
            C::CpuSnp,
            C::SvsmBinding,
            C::SvsmVmpl,
            C::VtpmLogReplay,
            C::CpuMeasurement,
            C::GpuBinding,
        ],
    );
    assert!(matches!(reason(&a, C::SvsmBinding), F::Report(_)));
}

#[test]
fn amds_pinned_roots_reject_the_simulated_chain() {
    let v = Verifier::new(policy(MEAS_A)).unwrap();
    let a = appraise_by(&fixture().a, &v);
    expect(&a, &[C::CpuSnp, C::VtpmLogReplay, C::GpuBinding]);
    match reason(&a, C::CpuSnp) {
        F::SnpContraindicated(failed) => assert!(failed.contains(&"chain.vek"), "{failed:?}"),
        other => panic!("{other}"),
    }
    assert_eq!(reason(&a, C::VtpmLogReplay), &F::Prerequisite(C::CpuSnp));
}

// ---------------------------------------------------------------- seeds ----

/// Writes the fuzz seed and the CLI fixture (run with `--ignored` after a format change).
#[test]
#[ignore]
fn write_fuzz_seed_and_cli_fixture() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let f = fixture();
    let json = f.a.to_json().unwrap();
    let seeds = root.join("fuzz/seeds/bundle_json");
    std::fs::create_dir_all(&seeds).unwrap();
    std::fs::write(seeds.join("sim-genoa-gpu.json"), &json).unwrap();
    let data = root.join("host-verifier/tests/data/bundle-sim");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("bundle.json"), &json).unwrap();
    std::fs::write(data.join("ark.der"), &f.chain.ark_der).unwrap();
    std::fs::write(data.join("ask.der"), &f.chain.ask_der).unwrap();
    std::fs::write(
        data.join("policy.toml"),
        format!(
            "# The simulated launch of test-harness/tests/bundle.rs.\nvmpl = 0\nsigning_keys = [\"vcek\"]\nmeasurements = [\"{}\"]\n",
            hex::encode(MEAS_A)
        ),
    )
    .unwrap();
    std::fs::write(data.join("nonce.hex"), hex::encode(NONCE)).unwrap();
    std::fs::write(data.join("epoch.txt"), f.epoch.to_string()).unwrap();
    std::fs::write(data.join("gpu-root.pem"), sim_gpus()[0].root_pem()).unwrap();
}
