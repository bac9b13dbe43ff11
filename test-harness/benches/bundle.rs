//! `make bench` — the warm appraisal of a full evidence bundle: a real bundle from the simulated
//! SNP machine (measured launch, guest measurements, GPU report) appraised again and again by one
//! `Verifier` (its VEK chain cached, as a relying party's long-lived verifier has it): the SNP
//! appraisal (33 checks, ECDSA P-384), the REPORT_DATA binding, the manifest, the AK's ECDSA
//! P-256 quote signature, the PCR digest, the event log's SHA-384 and its replay, extra
//! evidence. Also, for scale: the same with the JSON decoding, the SNP appraisal alone, and the
//! cold case (a new `Verifier` per bundle: VEK parse and RSA-PSS ASK→VEK each time).
//!
//! The appraisal runs on the calling thread only (the one-time ARK/ASK link check may use a
//! second thread on the first call; the warm-up takes it). Goal: under 2 ms per bundle on one
//! core. Printed, not asserted.

use host_verifier::bundle::Bundle;
use host_verifier::bundle_verify::{verify_bundle, BundleContext};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Evidence, Policy, TrustStore, Verdict, Verifier};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use svsm_abi::snp::certs::{CertKind, CertTable};
use svsm_abi::snp::{Product, SigningKey};
use svsm_core::measure::{Component, ComponentKind};
use svsm_core::platform::Vmpl;
use test_harness::evidence::collect;
use test_harness::sim::chain::TestChain;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;

const MEASUREMENT: [u8; 48] = [0x5A; 48];
const NONCE: [u8; 32] = [0x4E; 32];

/// Median seconds per call of `f` over `n` calls (after a warm-up).
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n.min(20) {
        f();
    }
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn bundle() -> (Bundle, Arc<TestChain>) {
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).expect("machine");
    let firmware = vec![0xF0u8; 2 * 1024 * 1024];
    machine
        .module()
        .measure_launch(&[
            Component {
                kind: ComponentKind::Firmware,
                bytes: &firmware,
            },
            Component {
                kind: ComponentKind::Kernel,
                bytes: b"vmlinuz",
            },
            Component {
                kind: ComponentKind::Initrd,
                bytes: b"initrd",
            },
            Component {
                kind: ComponentKind::CommandLine,
                bytes: b"console=ttyS0\0",
            },
        ])
        .expect("measure");
    let vmpl1 = Vmpl::new(1).expect("vmpl");
    let mut vault =
        guest_driver::vault::VaultClient::probe(machine.transport(vmpl1)).expect("vault");
    for i in 0..32u32 {
        vault
            .measure(16, 0x0D, format!("application event {i}").as_bytes())
            .expect("measure");
    }
    let gpu = vec![0x6Eu8; 8 * 1024];
    let b = collect(
        machine.transport(vmpl1),
        machine.transport(vmpl1),
        &NONCE,
        &[(1, gpu)],
    )
    .expect("collect");
    let chain = machine.module().psp_mut().chain().clone();
    (b, chain)
}

fn main() {
    let (bundle, chain) = bundle();
    let json = bundle.to_json().expect("json");
    let roots = || {
        Arc::new(TrustStore::new(vec![ProductAnchors::load(
            Product::Genoa,
            &chain.ark_der,
            &chain.ask_der,
            &chain.ask_der,
        )
        .expect("roots")]))
    };
    let store = roots();
    let policy = Policy {
        measurements: Some(vec![MEASUREMENT]),
        signing_keys: vec![SigningKey::Vcek],
        ..Policy::default()
    };
    let at = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
    let verifier = Verifier::with_trust_store(store.clone(), policy.clone());
    let mut ctx = BundleContext::new(&verifier, &NONCE, at);
    ctx.min_epoch = Some(1);
    ctx.require_extra_evidence = true;
    let first = verify_bundle(&bundle, &ctx).expect("appraisal");
    assert_eq!(
        first.verdict(),
        Verdict::Affirming,
        "{}",
        first.render_text()
    );

    let n = 500;
    let warm = per_call(n, || {
        let a = verify_bundle(black_box(&bundle), &ctx).expect("appraisal");
        black_box(a.verdict());
    });
    let warm_json = per_call(n, || {
        let b = Bundle::from_json(black_box(json.as_bytes())).expect("decode");
        black_box(verify_bundle(&b, &ctx).expect("appraisal").verdict());
    });
    let vek = CertTable::parse(&bundle.certificates)
        .ok()
        .and_then(|t| t.find(CertKind::Vcek))
        .expect("VCEK")
        .to_vec();
    let snp_only = per_call(n, || {
        let a = verifier
            .verify(&Evidence {
                report: black_box(&bundle.snp_report),
                vek: Some(&vek),
                crl: None,
                at,
            })
            .expect("snp");
        black_box(a.verdict());
    });
    let cold = per_call(50, || {
        let v = Verifier::with_trust_store(store.clone(), policy.clone());
        let mut c = BundleContext::new(&v, &NONCE, at);
        c.min_epoch = Some(1);
        black_box(verify_bundle(&bundle, &c).expect("appraisal").verdict());
    });

    let log_events = first.event_log.events.unwrap_or(0);
    println!(
        "evidence bundle: {} bytes JSON, event log {} bytes / {log_events} events, 8 KiB GPU report",
        json.len(),
        bundle.event_log.len()
    );
    let row = |name: &str, s: f64| {
        println!(
            "  {name:<44} {:>8.3} ms/bundle {:>9.0} bundles/s",
            s * 1e3,
            1.0 / s
        );
    };
    row("warm appraisal (SNP + chain + quote + log)", warm);
    row("warm appraisal incl. JSON decoding", warm_json);
    row("  of which the SNP report alone", snp_only);
    row("cold (new Verifier: VEK parse + RSA-PSS)", cold);
    println!(
        "goal: warm appraisal under 2 ms per bundle on one core: {} ({:.3} ms)",
        if warm < 2e-3 { "MET" } else { "MISSED" },
        warm * 1e3
    );
}
