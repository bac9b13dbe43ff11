//! NVIDIA Hopper evidence (vectors/nvidia, real H100 data): the report with its valid chain is
//! affirmed and its decoded claims equal the independent decoder's; chains 2, 3, 4, a flipped
//! byte in the signed transcript, a wrong nonce, a measurement outside the reference values and
//! an appraisal time outside the certificates' validity are each refused by name; malformed
//! reports are typed errors.

use host_verifier::combined::combined_digest;
use host_verifier::gpu::spdm::{GpuReport, SpdmError};
use host_verifier::gpu::{
    appraise, GpuCheckId as G, GpuExpectations, GpuFailure, GpuReferenceValues,
};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zerocopy::IntoBytes;

fn vector(file: &str) -> Vec<u8> {
    let dir = std::env::var_os("SVSM_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors"));
    let path = dir.join("nvidia").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn report() -> Vec<u8> {
    hex::decode(
        String::from_utf8(vector("hopperAttestationReport.txt"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

/// 2026-06-01: inside every certificate's validity.
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_272_000)
}

fn oracle() -> serde_json::Value {
    serde_json::from_slice(&vector("hopperAttestationReport-claims.txt")).unwrap()
}

fn expect_nonce() -> GpuExpectations {
    let r = report();
    let parsed = GpuReport::parse(&r).unwrap();
    GpuExpectations {
        nonce: Some(parsed.nonce),
        reference: None,
    }
}

#[test]
fn the_real_report_with_its_chain_is_affirmed_and_its_claims_match_the_oracle() {
    let a = appraise(
        &report(),
        &vector("hopper_cert_chain_case1.txt"),
        &expect_nonce(),
        at(),
    );
    assert!(a.affirming(), "{:#?}", a.checks);
    let claims = a.claims.unwrap();
    let oracle = oracle();
    let config = oracle["config"].as_object().unwrap();
    let mut compared = 0;
    for (key, value) in config {
        match key.as_str() {
            "measurement_count" => {
                for (index, count) in value.as_object().unwrap() {
                    let index: u32 = index.parse().unwrap();
                    assert_eq!(
                        claims.measurement_count.get(&index).copied(),
                        Some(count.as_u64().unwrap() as u32),
                        "measurement_count[{index}]"
                    );
                    compared += 1;
                }
            }
            _ => {
                assert_eq!(
                    claims.config.get(key).map(String::as_str),
                    value.as_str(),
                    "config.{key}"
                );
                compared += 1;
            }
        }
    }
    for (index, value) in oracle["measurements"].as_object().unwrap() {
        let index: u8 = index.parse().unwrap();
        assert_eq!(
            claims.measurements.get(&index).map(String::as_str),
            value.as_str(),
            "measurement {index}"
        );
        compared += 1;
    }
    // 13 opaque-data claims, 64 measurement counts, 64 measurement values.
    assert_eq!(compared, 13 + 64 + 64, "every oracle field compared");
}

#[test]
fn chains_2_3_4_are_refused_each_for_its_own_reason() {
    let r = report();
    let e = expect_nonce();
    let a = appraise(&r, &vector("hopper_cert_chain_case2.txt"), &e, at());
    assert_eq!(
        a.failure(G::ChainRoot),
        Some(&GpuFailure::NoDeviceCertificate)
    );
    let a = appraise(&r, &vector("hopper_cert_chain_case3.txt"), &e, at());
    assert!(
        matches!(a.failure(G::Chain), Some(GpuFailure::ChainBroken { .. })),
        "{:?}",
        a.checks
    );
    let a = appraise(&r, &vector("hopper_cert_chain_case4.txt"), &e, at());
    assert_eq!(
        a.failure(G::Fwid),
        Some(&GpuFailure::NoLeafFwid),
        "{:?}",
        a.checks
    );
    for a in [
        appraise(&r, &vector("hopper_cert_chain_case2.txt"), &e, at()),
        appraise(&r, &vector("hopper_cert_chain_case3.txt"), &e, at()),
        appraise(&r, &vector("hopper_cert_chain_case4.txt"), &e, at()),
    ] {
        assert!(!a.affirming());
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_transcript_breaks_the_signature() {
    let r = report();
    let chain = vector("hopper_cert_chain_case1.txt");
    let signed = GpuReport::parse(&r).unwrap().transcript.len();
    // Bytes of the request, the record, the responder nonce and the opaque data (each still
    // parses; the nonce flip is caught by the nonce check too).
    for at_byte in [6, 40, 200, 3000, signed - 300, signed - 1] {
        let mut m = r.clone();
        m[at_byte] ^= 0x01;
        let a = appraise(&m, &chain, &GpuExpectations::default(), at());
        let failed = a.failure(G::Signature).or(a.failure(G::Report));
        assert!(failed.is_some(), "byte {at_byte}: {:?}", a.checks);
    }
    let mut m = r.clone();
    let last = m.len() - 1;
    m[last] ^= 0x01;
    let a = appraise(&m, &chain, &GpuExpectations::default(), at());
    assert_eq!(a.failure(G::Signature), Some(&GpuFailure::BadSignature));
}

#[test]
fn a_wrong_nonce_a_foreign_measurement_and_a_time_outside_validity_are_named() {
    let r = report();
    let chain = vector("hopper_cert_chain_case1.txt");
    let wrong = GpuExpectations {
        nonce: Some([7; 32]),
        reference: None,
    };
    let a = appraise(&r, &chain, &wrong, at());
    assert!(matches!(
        a.failure(G::Nonce),
        Some(GpuFailure::NonceMismatch { .. })
    ));

    let claims = appraise(&r, &chain, &expect_nonce(), at()).claims.unwrap();
    let mut reference = GpuReferenceValues::default();
    for (index, value) in &claims.measurements {
        reference.measurements.insert(*index, vec![value.clone()]);
    }
    let good = GpuExpectations {
        reference: Some(reference.clone()),
        ..expect_nonce()
    };
    assert!(appraise(&r, &chain, &good, at()).affirming());
    reference.measurements.insert(12, vec!["00".repeat(48)]);
    let bad = GpuExpectations {
        reference: Some(reference),
        ..expect_nonce()
    };
    let a = appraise(&r, &chain, &bad, at());
    assert_eq!(
        a.failure(G::Measurements),
        Some(&GpuFailure::NotReference(vec![12]))
    );

    // 2019: before the leaf's notBefore (2020-10-17).
    let early = UNIX_EPOCH + Duration::from_secs(1_546_300_800);
    let a = appraise(&r, &chain, &expect_nonce(), early);
    assert!(matches!(
        a.failure(G::ChainValidity),
        Some(GpuFailure::Expired { .. })
    ));
}

#[test]
fn malformed_reports_are_typed_errors_never_panics() {
    let r = report();
    for len in 0..r.len() {
        assert!(
            GpuReport::parse(&r[..len]).is_err(),
            "prefix of {len} bytes"
        );
    }
    let mut longer = r.clone();
    longer.push(0);
    assert_eq!(GpuReport::parse(&longer), Err(SpdmError::Trailing(1)));
    let mut v = r.clone();
    v[0] = 0x12;
    assert!(matches!(
        GpuReport::parse(&v),
        Err(SpdmError::Version { .. })
    ));
    let mut unsigned = r.clone();
    unsigned[2] = 0;
    assert_eq!(GpuReport::parse(&unsigned), Err(SpdmError::Unsigned(0)));
    let mut count = r.clone();
    count[37 + 4] = 63;
    assert!(matches!(
        GpuReport::parse(&count),
        Err(SpdmError::Record(_))
    ));
    // A block's DMTF size that runs past the block.
    let mut block = r.clone();
    block[37 + 8 + 5] = 0xFF;
    assert!(GpuReport::parse(&block).is_err());
}

#[test]
fn combined_digest_of_real_evidence_equals_an_independent_computation() {
    // Expected values computed outside this crate: Python hashlib SHA-256, top 6 bits
    // cleared, and StarkWare's cairo-lang 0.14.0.1 `poseidon_hash` / `poseidon_hash_many`.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors/snp/genoa-v3/report.bin");
    let cpu = std::fs::read(dir).unwrap();
    let gpu = report();
    let both = combined_digest(Some(&cpu), &[&gpu]);
    assert_eq!(
        both.cpu.as_deref(),
        Some("0x02e0e73ab3a0e461bedf193795f0d90646a59d3617c0571cac0b0bfeb0ee908f")
    );
    assert_eq!(
        both.gpu.as_deref(),
        Some("0x0038e7e714c05a9b6734ac33d7024f4732ba23ca08894424e9e755853c0f8618")
    );
    assert_eq!(
        both.combined,
        "0x0506fd0442c76a37c9ddc835967ee9b1fd3e5bd2f644d58d389fa4541785a088"
    );
    assert_eq!(
        combined_digest(Some(&cpu), &[]).combined,
        "0x040a9d29ef07a9a191ae41b9504823ddc121581aba868018b087454cd3f55f59"
    );
    assert_eq!(
        combined_digest(None, &[&gpu]).combined,
        "0x0038e7e714c05a9b6734ac33d7024f4732ba23ca08894424e9e755853c0f8618"
    );
    assert_eq!(
        combined_digest(None, &[&gpu, &gpu]).combined,
        "0x0525caa09b50afe55bd7aa34bebf594d8fc2dff081787e4e0b15802bec0604e4"
    );
}

fn hv(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host-verifier"))
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
fn cli_verify_nonce_and_combined_digest() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors/nvidia");
    let report_path = dir.join("hopperAttestationReport.txt");
    let chain_path = dir.join("hopper_cert_chain_case1.txt");
    let (report_file, chain) = (report_path.to_str().unwrap(), chain_path.to_str().unwrap());
    let nonce = hex::encode(expect_nonce().nonce.unwrap());
    let base = [
        "gpu",
        "verify",
        "--report",
        report_file,
        "--chain",
        chain,
        "--at",
        "2026-06-01T00:00:00Z",
    ];
    let (code, out, err) = hv(&[&base[..], &["--nonce", &nonce]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS  gpu.nonce"), "{out}");
    assert!(
        out.contains("0x0038e7e714c05a9b6734ac33d7024f4732ba23ca08894424e9e755853c0f8618"),
        "{out}"
    );
    // The derivation, on the vector of svsm-abi's unit test.
    let (code, out, _) = hv(&[
        "gpu",
        "nonce",
        "--rp-nonce",
        "00112233445566778899aabbccddeeff",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "93a33ceb6b3cae6c640f1eaa9484a54dc396d8635eaeedebc308f3dca1980c94"
    );
    // A relying party's nonce: the real report was not made for it.
    let (code, out, _) = hv(&[&base[..], &["--rp-nonce", "00112233"]].concat());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL  gpu.nonce"), "{out}");
    // JSON, and the same report in a container.
    let tmp = std::env::temp_dir().join(format!("hv-gpu-{}.bin", std::process::id()));
    let chain_pem = vector("hopper_cert_chain_case1.txt");
    let r = report();
    let mut container = svsm_abi::gpu::GpuEvidence::header(&r, &chain_pem)
        .unwrap()
        .as_bytes()
        .to_vec();
    container.extend_from_slice(&r);
    container.extend_from_slice(&chain_pem);
    std::fs::write(&tmp, &container).unwrap();
    let (code, out, err) = hv(&[
        "gpu",
        "verify",
        "--evidence",
        tmp.to_str().unwrap(),
        "--nonce",
        &nonce,
        "--at",
        "2026-06-01T00:00:00Z",
        "--json",
    ]);
    std::fs::remove_file(&tmp).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["verdict"], "affirming");
    assert_eq!(doc["claims"]["config"]["project"], "1010");
    assert_eq!(doc["combined_digest"]["parts"], "gpu");
    // Errors (1): neither --evidence nor --report, a bad --rp-nonce.
    assert_eq!(hv(&["gpu", "verify", "--chain", chain]).0, 1);
    assert_eq!(hv(&["gpu", "nonce", "--rp-nonce", "zz"]).0, 1);
}
