//! Evidence bundles on a fixed fixture (`tests/data/bundle-sim`, written by
//! `test-harness/tests/bundle.rs`: a real bundle of the simulated SNP machine, its TEST ARK/ASK,
//! the policy of its launch, its nonce and epoch): the library and `host-verifier bundle verify`
//! with its exit codes. The mutation cases live in `test-harness/tests/bundle.rs`, next to the
//! machine that produces the bundles.

use host_verifier::bundle::Bundle;
use host_verifier::bundle_verify::{verify_bundle, BundleCheckId, BundleContext, BundleFailure};
use host_verifier::gpu::{GpuFailure, GpuVerifier};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Policy, TrustStore, Verdict, Verifier};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use svsm_abi::snp::Product;

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bundle-sim")
        .join(file)
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(data(file)).unwrap()
}

fn nonce() -> Vec<u8> {
    hex::decode(std::fs::read_to_string(data("nonce.hex")).unwrap().trim()).unwrap()
}

fn verifier() -> Verifier {
    let anchors = ProductAnchors::load(
        Product::Genoa,
        &read("ark.der"),
        &read("ask.der"),
        &read("ask.der"),
    )
    .unwrap();
    let policy = Policy::from_toml(&std::fs::read_to_string(data("policy.toml")).unwrap()).unwrap();
    Verifier::with_trust_store(Arc::new(TrustStore::new(vec![anchors])), policy)
}

#[test]
fn the_fixture_bundle_is_affirming_with_its_roots_only() {
    let bundle = Bundle::from_json(&read("bundle.json")).unwrap();
    let nonce = nonce();
    let at = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
    let v = verifier();
    let gpu = GpuVerifier::with_roots_pem(&read("gpu-root.pem")).unwrap();
    let mut ctx = BundleContext::new(&v, &nonce, at);
    ctx.gpu_verifier = &gpu;
    // The fixture is a first boot: fresh state meets a minimum epoch of 0 only.
    ctx.min_epoch = Some(0);
    ctx.require_extra_evidence = true;
    ctx.requester_vmpl = Some(1);
    let a = verify_bundle(&bundle, &ctx).unwrap();
    assert_eq!(a.verdict(), Verdict::Affirming, "{}", a.render_text());
    assert!(a.has_gpu());
    ctx.min_epoch = Some(1);
    let a = verify_bundle(&bundle, &ctx).unwrap();
    assert!(matches!(
        a.failure(BundleCheckId::SvsmEpoch),
        Some(BundleFailure::EpochNotRestored {
            state: "fresh",
            min: 1
        })
    ));

    // NVIDIA's pinned root does not know the simulated GPU's TEST root.
    ctx.gpu_verifier = GpuVerifier::shared_nvidia();
    ctx.min_epoch = Some(0);
    let a = verify_bundle(&bundle, &ctx).unwrap();
    assert_eq!(
        a.failure(BundleCheckId::GpuChainRoot),
        Some(&BundleFailure::Gpu {
            index: 0,
            failure: GpuFailure::NotPinnedRoot
        })
    );

    // AMD's pinned roots do not know the TEST chain.
    let pinned = Verifier::new(Policy::from_toml("").unwrap()).unwrap();
    let a = verify_bundle(&bundle, &BundleContext::new(&pinned, &nonce, at)).unwrap();
    assert_eq!(a.verdict(), Verdict::Contraindicated);
    assert!(matches!(
        a.failure(BundleCheckId::CpuSnp),
        Some(BundleFailure::SnpContraindicated(f)) if f.contains(&"chain.vek")
    ));
}

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

#[test]
fn cli_exit_codes_and_the_custom_roots_warning() {
    let p = |f: &str| data(f).display().to_string();
    let (bundle, ark, ask, policy, gpu_root) = (
        p("bundle.json"),
        p("ark.der"),
        p("ask.der"),
        p("policy.toml"),
        p("gpu-root.pem"),
    );
    let nonce = hex::encode(nonce());
    let base = |nonce: &str| {
        vec![
            "bundle".to_owned(),
            "verify".into(),
            "--bundle".into(),
            bundle.clone(),
            "--nonce".into(),
            nonce.to_owned(),
            "--policy".into(),
            policy.clone(),
            "--at".into(),
            "2026-06-01T00:00:00Z".into(),
        ]
    };
    let with_roots = |nonce: &str, more: &[&str]| {
        let mut a = base(nonce);
        a.extend(
            [
                "--trust-ark",
                &ark,
                "--trust-ask",
                &ask,
                "--gpu-root",
                &gpu_root,
            ]
            .map(String::from),
        );
        a.extend(more.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| hv(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // A kernel file the fixture's launch did not boot.
    let dir = std::env::temp_dir().join(format!("hv-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other_kernel = dir.join("vmlinuz").display().to_string();
    let gpu_reference = dir.join("gpu-reference.json").display().to_string();
    std::fs::write(
        &gpu_reference,
        format!(r#"{{"measurements": {{"2": ["{}"]}}}}"#, "00".repeat(48)),
    )
    .unwrap();
    std::fs::write(&other_kernel, b"not the kernel the fixture measured").unwrap();

    let (code, out, err) = run(with_roots(
        &nonce,
        &["--min-epoch", "0", "--requester-vmpl", "1"],
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verdict: AFFIRMING"), "{out}");
    assert!(err.contains("WARNING: custom trust roots"), "{err}");
    assert!(err.contains("WARNING: custom GPU roots"), "{err}");
    assert!(out.contains("PASS  gpu.binding"), "{out}");
    assert!(out.contains("combined     0x"), "{out}");
    assert!(out.starts_with("WARNING: custom trust roots"), "{out}");

    // JSON: the EAR with its four submodules.
    let (code, out, _) = run(with_roots(&nonce, &["--json"]));
    assert_eq!(code, 0);
    let ear: serde_json::Value = serde_json::from_str(&out).unwrap();
    let submods: Vec<&String> = ear["submods"].as_object().unwrap().keys().collect();
    assert_eq!(submods, ["cpu", "gpu", "svsm", "vtpm"]);

    // Contraindicated (2): a stale nonce, a rolled-back epoch, an unexpected PCR value, and
    // AMD's pinned roots.
    for (args, failing) in [
        (with_roots("00ff", &[]), "svsm.nonce"),
        (with_roots(&nonce, &["--min-epoch", "1"]), "svsm.epoch"),
        (
            with_roots(&nonce, &["--requester-vmpl", "2"]),
            "svsm.requester_vmpl",
        ),
        (
            with_roots(&nonce, &["--pcr", &format!("4={}", "00".repeat(32))]),
            "vtpm.reference_pcrs",
        ),
        (
            with_roots(&nonce, &["--kernel", &other_kernel]),
            "vtpm.reference_pcrs",
        ),
        (base(&nonce), "cpu.snp"),
        (
            with_roots(&nonce, &["--gpu-reference", &gpu_reference]),
            "gpu.measurements",
        ),
    ] {
        let (code, out, _) = run(args);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!("FAIL  {failing}")),
            "{failing}: {out}"
        );
    }

    // Errors (1): not hex, an empty nonce, half a custom root, a bad --pcr, not a bundle.
    for args in [
        base("zz"),
        base(""),
        {
            let mut a = base(&nonce);
            a.extend(["--trust-ark".to_owned(), ark.clone()]);
            a
        },
        with_roots(&nonce, &["--pcr", "24=00"]),
        {
            let mut a = base(&nonce);
            a[3] = policy.clone();
            a
        },
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 1, "{out}{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reference_pcrs_are_computed_from_the_files() {
    use sha2::{Digest, Sha256};
    let dir = std::env::temp_dir().join(format!("hv-refpcr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("vmlinuz");
    let cmdline = dir.join("cmdline");
    std::fs::write(&kernel, b"kernel bytes").unwrap();
    std::fs::write(&cmdline, b"console=ttyS0\0").unwrap();
    let extend = |data: &[u8]| {
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(Sha256::digest(data));
        hex::encode(h.finalize())
    };
    let (k, c) = (kernel.display().to_string(), cmdline.display().to_string());
    let (code, out, err) = hv(&["bundle", "reference-pcrs", "--kernel", &k, "--cmdline", &c]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "--pcr 4={}\n--pcr 8={}\n",
            extend(b"kernel bytes"),
            extend(b"console=ttyS0\0")
        )
    );
    let (code, out, _) = hv(&["bundle", "reference-pcrs", "--kernel", &k, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pcrs"]["4"], extend(b"kernel bytes"));
    // Nothing to compute, and a missing file: errors.
    assert_eq!(hv(&["bundle", "reference-pcrs"]).0, 1);
    let missing = dir.join("absent").display().to_string();
    assert_eq!(hv(&["bundle", "reference-pcrs", "--initrd", &missing]).0, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
