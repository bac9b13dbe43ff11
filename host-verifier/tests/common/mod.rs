//! Shared helpers: the real vectors of the repository's `vectors/snp` and a verify shortcut.
#![allow(dead_code)]

use host_verifier::{Appraisal, CheckId, Error, Evidence, Failure, Outcome, Policy, Verifier};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SVSM_VECTORS") {
        return PathBuf::from(dir).join("snp");
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors/snp");
    assert!(
        dir.join("README.md").exists(),
        "test vectors not found at {} (set SVSM_VECTORS to a vectors folder)",
        dir.display()
    );
    dir
}

pub fn read(rel: &str) -> Vec<u8> {
    let path = vectors_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 2025-06-01T00:00:00Z: inside the VLEK's validity window.
pub const JUNE_2025: u64 = 1_748_736_000;
/// 2026-06-01T00:00:00Z: after the MS VCEKs' notBefore (2026-02-05).
pub const JUNE_2026: u64 = 1_780_272_000;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// One real case: report bytes, VEK bytes and a time inside every certificate's validity.
#[derive(Clone)]
pub struct Case {
    pub name: &'static str,
    pub report: Vec<u8>,
    pub vek: Vec<u8>,
    pub at: u64,
}

pub fn case(name: &'static str) -> Case {
    let (report, vek, at) = match name {
        "milan-v2" => ("milan-v2/report.bin", "milan-v2/vcek.der", JUNE_2026),
        "milan-v3" => ("milan-v3/report.bin", "milan-v3/vcek.pem", JUNE_2026),
        "milan-v3-vlek" => (
            "milan-v3-vlek/report.bin",
            "milan-v3-vlek/vlek.der",
            JUNE_2025,
        ),
        "genoa-v3" => ("genoa-v3/report.bin", "genoa-v3/vcek.pem", JUNE_2026),
        "turin-v5" => ("turin-v5/report.bin", "turin-v5/vcek.pem", JUNE_2026),
        "azure-milan-v2" => (
            "azure-milan-v2/hcl-report.bin",
            "azure-milan-v2/vcek-ask-ark.pem",
            JUNE_2026,
        ),
        "azure-milan-v3" => (
            "azure-milan-v3/hcl-report.bin",
            "azure-milan-v3/vcek.pem",
            JUNE_2026,
        ),
        "azure-genoa-v3" => (
            "azure-genoa-v3/hcl-report.bin",
            "azure-genoa-v3/vcek.pem",
            JUNE_2026,
        ),
        other => panic!("unknown case {other}"),
    };
    let report = host_verifier::unwrap_hcl_report(&read(report)).to_vec();
    Case {
        name,
        report,
        vek: read(vek),
        at,
    }
}

pub const BARE: [&str; 5] = [
    "milan-v2",
    "milan-v3",
    "milan-v3-vlek",
    "genoa-v3",
    "turin-v5",
];
pub const AZURE: [&str; 3] = ["azure-milan-v2", "azure-milan-v3", "azure-genoa-v3"];

pub fn all_cases() -> Vec<Case> {
    BARE.iter().chain(AZURE.iter()).map(|n| case(n)).collect()
}

pub fn verify_with(
    verifier: &Verifier,
    report: &[u8],
    vek: &[u8],
    at_secs: u64,
) -> Result<Appraisal, Error> {
    verifier.verify(&Evidence {
        report,
        vek: Some(vek),
        crl: None,
        at: at(at_secs),
    })
}

pub fn verify(policy: Policy, report: &[u8], vek: &[u8], at_secs: u64) -> Result<Appraisal, Error> {
    verify_with(&Verifier::new(policy).unwrap(), report, vek, at_secs)
}

/// The failure of `id`, panicking with the whole appraisal when it did not fail.
pub fn failure(a: &Appraisal, id: CheckId) -> Failure {
    match &a.check(id).unwrap().outcome {
        Outcome::Fail(f) => f.clone(),
        _ => panic!("{id} did not fail:\n{}", a.render_text()),
    }
}

pub fn passed(a: &Appraisal, id: CheckId) -> bool {
    matches!(a.check(id).unwrap().outcome, Outcome::Pass)
}

pub fn policy(toml: &str) -> Policy {
    Policy::from_toml(toml).unwrap()
}
