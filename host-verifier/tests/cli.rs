//! The `host-verifier` command line: exit codes 0 / 2 / 1, the EAR on `--json`, the KDS URL when
//! the VEK is missing.

mod common;
use common::vectors_dir;
use std::process::Command;

fn hv(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_host-verifier"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn v(rel: &str) -> String {
    vectors_dir().join(rel).display().to_string()
}

#[test]
fn exit_codes() {
    let report = v("turin-v5/report.bin");
    let vek = v("turin-v5/vcek.pem");
    let (code, out, _) = hv(&[
        "snp",
        "verify",
        "--report",
        &report,
        "--vek",
        &vek,
        "--at",
        "2026-06-01T00:00:00Z",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: AFFIRMING"));
    // Not yet valid: contraindicated.
    let (code, out, _) = hv(&[
        "snp",
        "verify",
        "--report",
        &report,
        "--vek",
        &vek,
        "--at",
        "2025-06-01T00:00:00Z",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL  cert.validity"));
    // Wrong REPORT_DATA: contraindicated.
    let (code, out, _) = hv(&[
        "snp",
        "verify",
        "--report",
        &report,
        "--vek",
        &vek,
        "--at",
        "2026-06-01T00:00:00Z",
        "--report-data",
        &"11".repeat(64),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL  policy.report_data"));
    // No VEK: error, with the KDS URL.
    let (code, _, err) = hv(&["snp", "verify", "--report", &report]);
    assert_eq!(code, 1);
    assert!(err.contains("https://kdsintf.amd.com/vcek/v1/Turin/59790fb1c39f35c1?fmcSPL=01&blSPL=01&teeSPL=01&snpSPL=04&ucodeSPL=81"), "{err}");
    // Bad policy, bad time, not a report: errors.
    let (code, _, err) = hv(&[
        "snp", "verify", "--report", &report, "--vek", &vek, "--at", "soon",
    ]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = hv(&["snp", "verify", "--report", &vek, "--vek", &vek]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("expected 1184"), "{err}");
    let bad_policy = std::env::temp_dir().join("hv-bad-policy.toml");
    std::fs::write(&bad_policy, "allow_debug = true\nunknown_check = 1\n").unwrap();
    let (code, _, err) = hv(&[
        "snp",
        "verify",
        "--report",
        &report,
        "--vek",
        &vek,
        "--policy",
        bad_policy.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown_check"), "{err}");
}

#[test]
fn json_is_an_ear_and_bundles_must_be_pinned() {
    let (code, out, _) = hv(&[
        "snp",
        "verify",
        "--report",
        &v("azure-milan-v2/hcl-report.bin"),
        "--vek",
        &v("azure-milan-v2/vcek-ask-ark.pem"),
        "--at",
        "2026-06-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let ear: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ear["ear_status"], "affirming");
    assert_eq!(
        ear["submods"]["snp"]["ear_verifier_claims"]["product"],
        "Milan"
    );
    assert_eq!(ear["submods"]["snp"]["ear_attester_claims"]["version"], 2);
    // A bundle whose extra certificate is not pinned is refused.
    let bundle = std::env::temp_dir().join("hv-bundle.pem");
    let vcek = std::fs::read_to_string(v("milan-v3/vcek.pem")).unwrap();
    let other = std::fs::read_to_string(v("genoa-v3/vcek.pem")).unwrap();
    std::fs::write(&bundle, format!("{vcek}{other}")).unwrap();
    let (code, _, err) = hv(&[
        "snp",
        "verify",
        "--report",
        &v("milan-v3/report.bin"),
        "--vek",
        bundle.to_str().unwrap(),
        "--at",
        "2026-06-01T00:00:00Z",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("not a pinned"), "{err}");
}

#[test]
fn kds_url_subcommand() {
    let (code, out, _) = hv(&["snp", "kds-url", "--report", &v("milan-v2/report.bin")]);
    assert_eq!(code, 0);
    assert!(out.contains("/vcek/v1/Milan/d49554ec717f4e5b"));
    assert!(out.contains("/vcek/v1/Genoa/d49554ec717f4e5b"));
}
