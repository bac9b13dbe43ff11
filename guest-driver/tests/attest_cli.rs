//! `svsm-attest`'s GPU inputs, before any device is opened: the nonce derivation it prints and
//! its refusal of a GPU report made for another request (NVIDIA's real H100 report, whose
//! nonce no relying party's nonce of ours derives).
#![cfg(feature = "std")]

use std::path::PathBuf;
use std::process::Command;

fn attest(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_svsm-attest"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn gpu_nonce_and_a_report_made_for_another_request() {
    let (code, out, _) = attest(&["gpu-nonce", "--nonce", "00112233445566778899aabbccddeeff"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "93a33ceb6b3cae6c640f1eaa9484a54dc396d8635eaeedebc308f3dca1980c94"
    );
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors/nvidia");
    let report = vectors.join("hopperAttestationReport.txt");
    let chain = vectors.join("hopper_cert_chain_case1.txt");
    let (code, _, err) = attest(&[
        "--device",
        "/nonexistent/svsm-channel",
        "bundle",
        "--nonce",
        "00112233445566778899aabbccddeeff",
        "--tpm",
        "/nonexistent/tpm",
        "--gpu-report",
        report.to_str().unwrap(),
        "--gpu-chain",
        chain.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("carries nonce 931d8dd0add203ac")
            && err.contains("93a33ceb6b3cae6c640f1eaa9484a54d"),
        "{err}"
    );
    // A report without its chain is a usage error.
    let (code, _, err) = attest(&[
        "bundle",
        "--nonce",
        "00",
        "--gpu-report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
}
