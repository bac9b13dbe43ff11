//! In-process throughput: host-verifier vs the `sev` crate (8.x, RustCrypto backend) verifying
//! the same real reports (the 5 bare and 3 Azure cases of `vectors/snp`).
//!
//! * chain cached: the VEK chain is already verified; each report costs parsing and one ECDSA
//!   verification (ours: the whole appraisal of 33 checks; `sev`: `(&vek, &report).verify()`).
//! * cold: nothing about the VEK is known; ours: a new `Verifier` per report (VEK parse, RSA-PSS
//!   ASK→VEK, ECDSA, every check; the pinned ARK/ASK links are verified once per process);
//!   `sev`: parse ARK, ASK, VEK, then `(&chain, &report).verify()` (ARK self, ARK→ASK, ASK→VEK,
//!   ECDSA).
//! * cold + anchors: ours also re-parses the pinned anchors and re-verifies ARK self and ARK→ASK,
//!   i.e. exactly the work `sev` does cold.
//!
//! Run: `cargo bench -p host-verifier --bench verify` (no timing assertions anywhere).

use host_verifier::trust::{TrustStore, PINNED_PEMS};
use host_verifier::vek::pem_or_der;
use host_verifier::{Evidence, Policy, Verdict, Verifier};
use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use svsm_abi::snp::SigningKey;

struct Case {
    name: &'static str,
    report: Vec<u8>,
    vek: Vec<u8>,
    vek_der: Vec<u8>,
    ark_pem: &'static [u8],
    ask_pem: &'static [u8],
    at: SystemTime,
}

fn vectors() -> PathBuf {
    std::env::var_os("SVSM_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors"))
        .join("snp")
}

fn load() -> Vec<Case> {
    let dir = vectors();
    let list: [(&str, &str, &str, u64); 8] = [
        ("milan-v2", "report.bin", "vcek.der", 1_780_272_000),
        ("milan-v3", "report.bin", "vcek.pem", 1_780_272_000),
        ("milan-v3-vlek", "report.bin", "vlek.der", 1_748_736_000),
        ("genoa-v3", "report.bin", "vcek.pem", 1_780_272_000),
        ("turin-v5", "report.bin", "vcek.pem", 1_780_272_000),
        (
            "azure-milan-v2",
            "hcl-report.bin",
            "vcek-ask-ark.pem",
            1_780_272_000,
        ),
        (
            "azure-milan-v3",
            "hcl-report.bin",
            "vcek.pem",
            1_780_272_000,
        ),
        (
            "azure-genoa-v3",
            "hcl-report.bin",
            "vcek.pem",
            1_780_272_000,
        ),
    ];
    let verifier = Verifier::new(Policy::default()).expect("pinned anchors");
    list.iter()
        .map(|(name, r, v, at)| {
            let read = |f: &str| {
                std::fs::read(dir.join(name).join(f))
                    .unwrap_or_else(|e| panic!("{name}/{f}: {e} (set SVSM_VECTORS)"))
            };
            let report = host_verifier::unwrap_hcl_report(&read(r)).to_vec();
            let vek = read(v);
            let at = UNIX_EPOCH + Duration::from_secs(*at);
            let a = verifier
                .verify(&Evidence {
                    report: &report,
                    vek: Some(&vek),
                    crl: None,
                    at,
                })
                .expect("vector verifies");
            assert_eq!(a.verdict(), Verdict::Affirming, "{name}");
            let (_, ark, ask, asvk) = *PINNED_PEMS
                .iter()
                .find(|(p, ..)| Some(*p) == a.product)
                .expect("product");
            Case {
                name,
                vek_der: pem_or_der(&vek).expect("vek"),
                report,
                vek,
                ark_pem: ark,
                ask_pem: if a.signer == SigningKey::Vlek {
                    asvk
                } else {
                    ask
                },
                at,
            }
        })
        .collect()
}

/// Runs `f` over every case until `budget` has passed; returns reports per second.
fn rate(cases: &[Case], budget: Duration, mut f: impl FnMut(&Case)) -> f64 {
    for c in cases {
        f(c); // warm-up
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget || n < 4 * cases.len() as u64 {
        for c in cases {
            f(c);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Like [`rate`] for two contenders, alternating short slices of each so that load from other
/// processes on the machine hits both alike; returns (reports/s of `a`, of `b`).
fn paired(
    cases: &[Case],
    budget: Duration,
    mut a: impl FnMut(&Case),
    mut b: impl FnMut(&Case),
) -> (f64, f64) {
    for c in cases {
        a(c);
        b(c);
    }
    let slice = Duration::from_millis(40);
    let (mut ta, mut tb, mut na, mut nb) = (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    while ta + tb < budget * 2 || na < 4 * cases.len() as u64 {
        for (f, t, n) in [
            (&mut a as &mut dyn FnMut(&Case), &mut ta, &mut na),
            (&mut b as &mut dyn FnMut(&Case), &mut tb, &mut nb),
        ] {
            let start = Instant::now();
            while start.elapsed() < slice {
                for c in cases {
                    f(c);
                    *n += 1;
                }
            }
            *t += start.elapsed();
        }
    }
    (na as f64 / ta.as_secs_f64(), nb as f64 / tb.as_secs_f64())
}

fn ours(verifier: &Verifier, c: &Case) {
    let a = verifier
        .verify(&Evidence {
            report: &c.report,
            vek: Some(&c.vek),
            crl: None,
            at: c.at,
        })
        .expect("verify");
    assert_eq!(a.verdict(), Verdict::Affirming, "{}", c.name);
    black_box(a);
}

fn sev_chain(c: &Case) -> Chain {
    Chain {
        ca: ca::Chain {
            ark: Certificate::from_pem(c.ark_pem).expect("ark"),
            ask: Certificate::from_pem(c.ask_pem).expect("ask"),
        },
        vek: Certificate::from_der(&c.vek_der).expect("vek"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run briefly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if quick { 50 } else { 2000 });
    let cases = load();

    let verifier = Verifier::new(Policy::default()).expect("pinned");
    let sev_veks: Vec<Certificate> = cases
        .iter()
        .map(|c| {
            let chain = sev_chain(c);
            (&chain).verify().expect("sev chain");
            chain.vek
        })
        .collect();
    let mut i = 0;
    let (ours_cached, sev_cached) = paired(
        &cases,
        budget,
        |c| ours(&verifier, c),
        |c| {
            let vek = &sev_veks[i % sev_veks.len()];
            i += 1;
            let report = AttestationReport::from_bytes(&c.report).expect("sev parse");
            (vek, &report).verify().expect("sev verify");
            black_box(report);
        },
    );
    let sev_cold_fn = |c: &Case| {
        let chain = sev_chain(c);
        let report = AttestationReport::from_bytes(&c.report).expect("sev parse");
        (&chain, &report).verify().expect("sev verify");
        black_box(report);
    };
    let (ours_cold, sev_cold) = paired(
        &cases,
        budget,
        |c| ours(&Verifier::new(Policy::default()).expect("pinned"), c),
        sev_cold_fn,
    );
    let (ours_cold_anchors, sev_cold2) = paired(
        &cases,
        budget,
        |c| {
            let trust = Arc::new(TrustStore::load_pinned().expect("pinned"));
            ours(&Verifier::with_trust_store(trust, Policy::default()), c)
        },
        sev_cold_fn,
    );

    println!(
        "in-process SNP report verification, {} real reports (Milan v2/v3, VLEK, Genoa, Turin v5, 3 Azure){}",
        cases.len(),
        if quick { " [quick run: pass --bench for real numbers]" } else { "" }
    );
    println!(
        "{:<34} {:>16} {:>16} {:>8}",
        "", "host-verifier/s", "sev 8.0.0/s", "ratio"
    );
    let row = |label: &str, a: f64, b: f64| {
        println!("{label:<34} {a:>16.0} {b:>16.0} {:>7.2}x", a / b);
    };
    row("chain cached", ours_cached, sev_cached);
    row("cold (new verifier per report)", ours_cold, sev_cold);
    row(
        "cold + re-verify pinned anchors",
        ours_cold_anchors,
        sev_cold2,
    );
    micro(&cases, budget);
    println!(
        "(ours runs all {} checks and builds the appraisal; sev checks chain + signature only)",
        host_verifier::CheckId::ALL.len()
    );
}

/// ECDSA alone on the first case: where the in-process time goes.
fn micro(cases: &[Case], budget: Duration) {
    use host_verifier::ecdsa::{verify_prehash, PreparedKey};
    use p384::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let Some(c) = cases.get(1) else { return };
    let vek = host_verifier::vek::VekCert::from_bytes(&c.vek).expect("vek");
    let q = *vek.public_key().as_ref().expect("key");
    let raw = svsm_abi::snp::AttestationReport::parse(&c.report).expect("report");
    let (r, s) = raw.raw().signature.to_be_components().expect("sig");
    let z: [u8; 48] = sha2::Sha384::digest(raw.signed_bytes()).into();
    let prepared = PreparedKey::new(&q);
    let one = &cases[..1];
    let t_prep = rate(one, budget / 4, |_| {
        prepared.verify_prehash(&z, &r, &s).expect("ok")
    });
    let t_once = rate(one, budget / 4, |_| {
        verify_prehash(&q, &z, &r, &s).expect("ok")
    });
    let vk = p384::ecdsa::VerifyingKey::from_affine(q).expect("vk");
    let sig = p384::ecdsa::Signature::from_scalars(r, s).expect("sig");
    let t_p384 = rate(one, budget / 4, |_| {
        vk.verify_prehash(&z, &sig).expect("ok")
    });
    let t_load = rate(one, budget / 4, |_| {
        black_box(TrustStore::load_pinned().expect("pinned"));
    });
    println!("pinned trust store loads/s (9 certificates parsed): {t_load:.0}");
    println!(
        "ECDSA P-384 verify alone/s: comb table {t_prep:.0}, one-shot {t_once:.0}, p384::ecdsa {t_p384:.0}"
    );
}
