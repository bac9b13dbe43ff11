//! `host-verifier ima` as an operator runs it: a policy made from a directory tree admits a
//! list of exactly those files; an unknown and a changed binary are refused by index and path
//! (exit 2, also as JSON); a list that does not replay to the given PCR 10 is refused; a
//! malformed policy or list is an error (exit 1).

use host_verifier::bundle_verify::ima::extend;
use host_verifier::measured::encode::EntrySpec;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-verifier"))
        .args(args)
        .output()
        .unwrap()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("svsm-ima-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root/usr/bin")).unwrap();
    std::fs::create_dir_all(dir.join("root/tmp")).unwrap();
    dir
}

/// A binary list measuring `files` (path, content) and its PCR 10.
fn list(files: &[(&str, &[u8])]) -> (Vec<u8>, [u8; 32]) {
    let mut out = Vec::new();
    let mut pcr = [0; 32];
    for (path, content) in files {
        let spec = EntrySpec {
            path,
            file_digest: Some(Sha256::digest(content).into()),
            signature: None,
        };
        spec.write_binary(&mut out);
        pcr = extend(&pcr, &spec.sha256_template_digest());
    }
    (out, pcr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn policy_from_a_tree_then_appraisals_that_pass_and_fail_by_path() {
    let dir = scratch();
    let root = dir.join("root");
    std::fs::write(root.join("init"), b"#!/bin/sh\n").unwrap();
    std::fs::write(root.join("usr/bin/tool"), b"tool v1").unwrap();
    std::fs::write(root.join("tmp/junk"), b"junk").unwrap();
    let policy = dir.join("policy.json");
    let out = hv(&[
        "ima",
        "policy",
        "create",
        "--root",
        s(&root),
        "--exclude",
        "/tmp/",
        "--output",
        s(&policy),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&policy).unwrap()).unwrap();
    assert_eq!(doc["meta"]["version"], 1);
    assert_eq!(doc["excludes"], serde_json::json!(["/tmp/"]));
    let paths: Vec<&String> = doc["digests"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/init", "/usr/bin/tool"]);
    // The same tree gives the same bytes.
    let again = hv(&[
        "ima",
        "policy",
        "create",
        "--root",
        s(&root),
        "--exclude",
        "/tmp/",
    ]);
    assert_eq!(again.stdout, std::fs::read(&policy).unwrap());
    let check = hv(&["ima", "policy", "check", "--policy", s(&policy)]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("2 paths"));

    // The files it was made from, and an excluded one: allowed.
    let (good, good_pcr) = list(&[
        ("/init", b"#!/bin/sh\n"),
        ("/usr/bin/tool", b"tool v1"),
        ("/tmp/other", b"anything"),
    ]);
    let log = dir.join("good.bin");
    std::fs::write(&log, &good).unwrap();
    let pcr10 = hex::encode(good_pcr);
    let out = hv(&[
        "ima",
        "appraise",
        "--policy",
        s(&policy),
        "--log",
        s(&log),
        "--pcr10",
        &pcr10,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("allowed: 3 entries appraised (1 excluded"),
        "{text}"
    );

    // An unknown binary and a changed one: exit 2, each by index and path.
    let (bad, bad_pcr) = list(&[
        ("/init", b"#!/bin/sh\n"),
        ("/usr/bin/evil", b"evil"),
        ("/usr/bin/tool", b"tool v2"),
    ]);
    let log = dir.join("bad.bin");
    std::fs::write(&log, &bad).unwrap();
    let pcr10 = hex::encode(bad_pcr);
    let out = hv(&[
        "ima",
        "appraise",
        "--policy",
        s(&policy),
        "--log",
        s(&log),
        "--pcr10",
        &pcr10,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("IMA entry 1 /usr/bin/evil: not in the runtime policy"),
        "{text}"
    );
    assert!(
        text.contains("IMA entry 2 /usr/bin/tool: its sha256 digest"),
        "{text}"
    );
    let out = hv(&[
        "ima",
        "appraise",
        "--policy",
        s(&policy),
        "--log",
        s(&log),
        "--pcr10",
        &pcr10,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["bound_to_quote"], true);
    assert_eq!(v["entries"][0]["index"], 1);
    assert_eq!(v["entries"][0]["path"], "/usr/bin/evil");

    // The good list against another PCR 10: no prefix replays to it.
    let log = dir.join("good.bin");
    let out = hv(&[
        "ima",
        "appraise",
        "--policy",
        s(&policy),
        "--log",
        s(&log),
        "--pcr10",
        &"ab".repeat(32),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no prefix of the IMA list"), "{text}");

    // Errors: a malformed policy, a list that does not parse, a bad --pcr10.
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        br#"{"meta": {"version": 1}, "digests": {"/a": ["XYZ"]}}"#,
    )
    .unwrap();
    let out = hv(&["ima", "appraise", "--policy", s(&broken), "--log", s(&log)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("digests.\"/a\""));
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, [10, 0, 0]).unwrap();
    let out = hv(&["ima", "appraise", "--policy", s(&policy), "--log", s(&junk)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMA list"));
    let out = hv(&[
        "ima",
        "appraise",
        "--policy",
        s(&policy),
        "--log",
        s(&log),
        "--pcr10",
        "12",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = hv(&["ima", "policy", "create", "--root", s(&dir.join("missing"))]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A policy Keylime 7.14.3 wrote itself (`keylime-policy create runtime --rootfs
/// target/guest/rootfs --algo sha256`, on the guest's initramfs of 2026-12-05): read as it is,
/// every file it lists is admitted with its digest, and `ima policy create` on that tree gave
/// the same 63 paths and digests.
#[test]
fn a_policy_keylime_wrote_is_read_as_it_is() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keylime-7.14.3-runtime-policy.json"
    );
    let out = hv(&["ima", "policy", "check", "--policy", path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("63 paths"));
    let bytes = std::fs::read(path).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["meta"]["generator"], 3, "written by keylime-policy");
    let policy = host_verifier::measured::runtime_policy::RuntimePolicy::from_json(&bytes).unwrap();
    for (file, digests) in doc["digests"].as_object().unwrap() {
        let digest = hex::decode(digests[0].as_str().unwrap()).unwrap();
        let d = svsm_abi::ima::FileDigest {
            algo_name: b"sha256",
            algo: Some(svsm_abi::ima::HashAlgo::Sha256),
            digest: &digest,
        };
        assert!(policy.admit(file.as_bytes(), &d, None).is_ok(), "{file}");
    }
}
