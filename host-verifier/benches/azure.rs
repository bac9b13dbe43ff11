//! In-process throughput of a warm Azure CVM appraisal: host-verifier vs `az-snp-vtpm` 0.8.2
//! (kinvolk/azure-cvm-tooling, the crate trustee's Azure verifier uses) on the same three real
//! vectors of `vectors/snp` (azure-milan-v2, azure-milan-v3, azure-genoa-v3).
//!
//! Warm = the VEK chain is already known good, each appraisal is:
//! * ours: `Verifier::verify_azure` (one `Verifier` for the whole run, so its VEK cache is hot):
//!   HCL parse, every SNP check incl. the report's ECDSA signature, the HCL binding, the AK from
//!   the runtime claims, the quote's RSA signature, nonce and PCR digest; builds the appraisal.
//! * theirs: `hcl::HclReport::new`, `var_data_sha256` == REPORT_DATA[..32] (the HCL binding),
//!   `AttestationReport::try_from`, `report.validate(&vcek)` (TCB sanity + ECDSA), `ak_pub()` →
//!   openssl `PKey`, `vtpm::Quote::verify` (RSA signature, nonce, PCR digest). The AMD chain
//!   (`AmdChain::validate`) and `Vcek::validate(&chain)` run once up front, as their warm state.
//!   No network: the VCEK comes from the vector's PEM and the ARK/ASK from `snp/amd/`.
//!
//! Both sides alternate 40 ms slices so that other load on the machine hits them alike.
//! Run: `cargo bench -p host-verifier --bench azure` (no timing assertions anywhere).

use az_snp_vtpm::certs::{AmdChain, Vcek, X509};
use az_snp_vtpm::hcl::HclReport;
use az_snp_vtpm::report::{AttestationReport, Validateable};
use az_snp_vtpm::vtpm::Quote;
use host_verifier::azure::{parse_pcr_values, AzureEvidence, PCR_SIZE};
use host_verifier::{Policy, Verdict, Verifier};
use openssl::pkey::PKey;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 2026-06-01T00:00:00Z: after the MS VCEKs' notBefore (2026-02-05).
const JUNE_2026: u64 = 1_780_272_000;
/// The Genoa vector's 48-byte nonce (vectors README).
const GENOA_NONCE: &str = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";

struct Case {
    name: &'static str,
    hcl: Vec<u8>,
    vek: Vec<u8>,
    quote: Vec<u8>,
    sig: Vec<u8>,
    pcrs: Vec<[u8; PCR_SIZE]>,
    nonce: Vec<u8>,
    at: SystemTime,
    /// The peer's state: its quote container and the VCEK (chain validated once), or why not.
    peer: Result<(Quote, Vcek), String>,
}

fn vectors() -> PathBuf {
    std::env::var_os("SVSM_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors"))
        .join("snp")
}

fn load() -> Vec<Case> {
    let dir = vectors();
    let read = |f: &str| {
        std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e} (set SVSM_VECTORS)"))
    };
    let list: [(&str, &str, &str); 3] = [
        ("azure-milan-v2", "vcek-ask-ark.pem", "milan"),
        ("azure-milan-v3", "vcek.pem", "milan"),
        ("azure-genoa-v3", "vcek.pem", "genoa"),
    ];
    list.iter()
        .map(|&(name, vek, product)| {
            let nonce = match name {
                "azure-genoa-v3" => hex::decode(GENOA_NONCE).expect("hex"),
                _ => b"challenge".to_vec(),
            };
            let pcrs = String::from_utf8(read(&format!("{name}/tpm-pcrs.txt"))).expect("utf8");
            let pcrs = parse_pcr_values(&pcrs).expect("pcrs");
            let quote = read(&format!("{name}/tpm-quote.msg"));
            let sig = read(&format!("{name}/tpm-quote.sig"));
            let vek = read(&format!("{name}/{vek}"));
            let chain = format!(
                "{}{}",
                String::from_utf8(read(&format!("amd/ask-{product}.pem"))).expect("utf8"),
                String::from_utf8(read(&format!("amd/ark-{product}.pem"))).expect("utf8"),
            );
            let peer = peer_setup(&quote, &sig, &pcrs, &vek, &chain);
            Case {
                name,
                hcl: read(&format!("{name}/hcl-report.bin")),
                vek,
                quote,
                sig,
                pcrs,
                nonce,
                at: UNIX_EPOCH + Duration::from_secs(JUNE_2026),
                peer,
            }
        })
        .collect()
}

/// The peer's one-off work: its `Quote` (private fields: built through its serde form, as
/// trustee does from the evidence JSON), the VCEK, and the AMD chain + VCEK validated once.
fn peer_setup(
    quote: &[u8],
    sig: &[u8],
    pcrs: &[[u8; PCR_SIZE]],
    vek_pem: &[u8],
    chain_pem: &str,
) -> Result<(Quote, Vcek), String> {
    let quote: Quote = serde_json::from_value(serde_json::json!({
        "signature": sig,
        "message": quote,
        "pcrs": pcrs,
    }))
    .map_err(|e| format!("Quote: {e}"))?;
    let vcek = Vcek(X509::from_pem(vek_pem).map_err(|e| format!("VCEK: {e}"))?);
    let chain: AmdChain =
        az_snp_vtpm::certs::build_cert_chain(chain_pem).map_err(|e| format!("chain: {e}"))?;
    chain.validate().map_err(|e| format!("AMD chain: {e}"))?;
    vcek.validate(&chain)
        .map_err(|e| format!("VCEK validate: {e}"))?;
    Ok((quote, vcek))
}

fn ours(verifier: &Verifier, c: &Case) {
    let a = verifier
        .verify_azure(&AzureEvidence {
            hcl_report: &c.hcl,
            vek: Some(&c.vek),
            crl: None,
            quote: &c.quote,
            signature: &c.sig,
            pcrs: &c.pcrs,
            nonce: &c.nonce,
            user_data: None,
            at: c.at,
        })
        .expect("verify_azure");
    assert_eq!(a.verdict(), Verdict::Affirming, "{}", c.name);
    black_box(a);
}

/// The peer's warm appraisal of one case (report + HCL binding + quote).
fn theirs(c: &Case) -> Result<(), String> {
    let (quote, vcek) = c.peer.as_ref().map_err(Clone::clone)?;
    let hcl = HclReport::new(c.hcl.clone()).map_err(|e| format!("HclReport: {e}"))?;
    let var_data_hash = hcl.var_data_sha256();
    let ak = hcl.ak_pub().map_err(|e| format!("ak_pub: {e}"))?;
    let report: AttestationReport = (&hcl).try_into().map_err(|e| format!("SNP report: {e}"))?;
    report
        .validate(vcek)
        .map_err(|e| format!("report validate: {e}"))?;
    if var_data_hash[..] != report.report_data[..32] {
        return Err("var_data_hash mismatch".into());
    }
    let der = ak.key.try_to_der().map_err(|e| format!("AK DER: {e}"))?;
    let ak = PKey::public_key_from_der(&der).map_err(|e| format!("AK: {e}"))?;
    quote
        .verify(&ak, &c.nonce)
        .map_err(|e| format!("quote verify: {e}"))?;
    black_box(report);
    Ok(())
}

/// Alternates short slices of `a` and `b` on one case until each has had `budget`; returns
/// (appraisals/s of `a`, of `b`).
fn paired(budget: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    a();
    b();
    let slice = Duration::from_millis(40);
    let (mut ta, mut tb, mut na, mut nb) = (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    while ta + tb < budget * 2 || na < 4 || nb < 4 {
        for (f, t, n) in [
            (&mut a as &mut dyn FnMut(), &mut ta, &mut na),
            (&mut b as &mut dyn FnMut(), &mut tb, &mut nb),
        ] {
            let start = Instant::now();
            while start.elapsed() < slice {
                f();
                *n += 1;
            }
            *t += start.elapsed();
        }
    }
    (na as f64 / ta.as_secs_f64(), nb as f64 / tb.as_secs_f64())
}

/// Ours alone (the peer failed on this case).
fn alone(budget: Duration, mut a: impl FnMut()) -> f64 {
    a();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget || n < 4 {
        a();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run briefly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if quick { 50 } else { 2000 });
    let cases = load();
    let verifier = Verifier::new(Policy::default()).expect("pinned anchors");

    println!(
        "warm Azure CVM appraisal (SNP report + chain + HCL binding + quote signature + PCR digest), {} real vectors{}",
        cases.len(),
        if quick { " [quick run: pass --bench for real numbers]" } else { "" }
    );
    println!(
        "{:<16} {:>16} {:>20} {:>8}",
        "", "host-verifier/s", "az-snp-vtpm 0.8.2/s", "ratio"
    );
    // Totals: the harmonic combination (one appraisal of each vector per round).
    let (mut t_ours, mut t_theirs, mut all_peer) = (0.0, 0.0, true);
    for c in &cases {
        match theirs(c) {
            Ok(()) => {
                let (a, b) = paired(
                    budget,
                    || ours(&verifier, c),
                    || theirs(c).expect("az-snp-vtpm"),
                );
                println!("{:<16} {a:>16.0} {b:>20.0} {:>7.2}x", c.name, a / b);
                t_ours += 1.0 / a;
                t_theirs += 1.0 / b;
            }
            Err(why) => {
                let a = alone(budget, || ours(&verifier, c));
                println!("{:<16} {a:>16.0} {:>20} {:>8}", c.name, "-", "-");
                println!("  az-snp-vtpm could not appraise {}: {why}", c.name);
                t_ours += 1.0 / a;
                all_peer = false;
            }
        }
    }
    let n = cases.len() as f64;
    if all_peer {
        let (a, b) = (n / t_ours, n / t_theirs);
        println!("{:<16} {a:>16.0} {b:>20.0} {:>7.2}x", "total", a / b);
    } else {
        println!(
            "{:<16} {:>16.0} {:>20} {:>8}",
            "total",
            n / t_ours,
            "-",
            "-"
        );
    }
    println!(
        "(total: appraisals/s over one round of all vectors; ours runs {} SNP + {} vTPM checks and \
         builds the appraisal; az-snp-vtpm's AMD chain/VCEK validation is done once, outside the loop)",
        host_verifier::CheckId::ALL.len(),
        host_verifier::VtpmCheckId::ALL.len()
    );
}
