//! A real Linux guest on our vTPM: Debian's cloud kernel, booted by Debian's OVMF under QEMU
//! (TCG), binds its standard TPM driver (tpm_crb, then tpm_tis) to a TPM device whose every
//! command goes through the simulated machine's SVSM vTPM protocol path. Inside, tpm2-tools over
//! `/dev/tpmrm0` make an EK, an AK and a quote; the host checks the quote with the nonce it
//! gave, and a wrong nonce fails.
//!
//! The guest is built once (`target/guest`, Debian packages cached there) and each boot costs
//! 10-20 s under TCG, so the test count is kept small.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use svsm_sim::guest::{build, default_guest_dir, run_guest, GuestImage, RunOptions, TpmDevice};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// guest-driver's `svsm-vault` and `svsm-attest`, built next to this test (`make test` builds
/// them first).
fn guest_binaries() -> Vec<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    svsm_sim::guest::guest_binaries(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn image() -> &'static GuestImage {
    static IMAGE: OnceLock<GuestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let image = build(&default_guest_dir(), &guest_binaries())
            .unwrap_or_else(|e| panic!("guest build: {e}"));
        eprintln!(
            "guest: {} + initramfs sha256 {}",
            image.kernel_package, image.initrd_sha256
        );
        image
    })
}

fn checkquote(dir: &std::path::Path, nonce: &str) -> std::process::Output {
    Command::new("tpm2_checkquote")
        .args([
            "-u",
            "ak.pub",
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-f",
            "quote.pcrs",
        ])
        .args(["-g", "sha256", "-q", nonce])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The simulated machine's launch MEASUREMENT in these tests.
const MEASUREMENT: [u8; 48] = [0x46; 48];

/// Boots the guest on a fresh simulated machine and runs `task`; the task must succeed.
/// Returns the run, the machine and the exact kernel command line the guest got.
fn boot(
    task: &str,
    device: TpmDevice,
    append: &str,
    calls: bool,
) -> (svsm_sim::guest::GuestRun, SimMachine, String) {
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let backend = Box::new(SvsmBackend::new(&machine).unwrap());
    let options = RunOptions {
        task: task.into(),
        append: append.into(),
        device,
        timeout: Duration::from_secs(240),
        broker_port: None,
        disk: None,
    };
    let run = run_guest(
        image(),
        svsm_sim::guest::GuestTpm::Backend(backend),
        calls.then_some(svsm_sim::guest::CallTarget::Sim(&machine)),
        &options,
    )
    .unwrap();
    assert_eq!(
        run.status,
        Some(0),
        "task output:\n{}\nconsole:\n{}",
        run.output,
        run.console
    );
    (run, machine, svsm_sim::guest::kernel_cmdline(&options))
}

/// SHA-256 replay of a real firmware log with host-verifier's replay (after an empty SVSM
/// log: the simulated machine measured nothing before the firmware ran).
fn replay_sha256(log: &[u8]) -> [[u8; 32]; 24] {
    let mut header = vec![0u8; 256];
    let n = svsm_abi::eventlog::write_spec_id_event(&mut header).unwrap();
    header.truncate(n);
    let r = host_verifier::bundle_verify::replay::replay(&header, Some(log))
        .expect("the real OVMF log replays");
    assert!(r.firmware_events.unwrap() > 10, "{:?}", r.firmware_events);
    r.pcrs
}

/// `N : 0xHEX` lines of `tpm2 pcrread` output (the sha256 bank).
fn pcrread_values(out: &str) -> std::collections::BTreeMap<usize, [u8; 32]> {
    out.lines()
        .filter_map(|l| {
            let (i, v) = l.trim().split_once(" : 0x")?;
            Some((
                i.trim().parse().ok()?,
                hex::decode(v.trim()).ok()?.try_into().ok()?,
            ))
        })
        .collect()
}

/// The sha256 PCR values at the end of `tpm2_eventlog` output.
fn eventlog_pcrs(yaml: &str) -> std::collections::BTreeMap<usize, [u8; 32]> {
    let bank = yaml.split("sha256:").last().unwrap_or_default();
    pcrread_values(&bank.replace(": 0x", " : 0x"))
        .into_iter()
        .chain(bank.lines().filter_map(|l| {
            let (i, v) = l.trim().split_once(": 0x")?;
            Some((
                i.trim().parse().ok()?,
                hex::decode(v.trim()).ok()?.try_into().ok()?,
            ))
        }))
        .collect()
}

/// The `tpm` task's checks on the host: the driver bound, the tpm2-tools quote verifies with
/// the nonce (a wrong one fails), OVMF's real log replays to the PCRs the guest read, and
/// tpm2_eventlog (an independent parser) agrees.
fn check_tpm_task(run: &svsm_sim::guest::GuestRun, driver: &str, nonce: &str) {
    eprintln!(
        "{driver}: boot to power-off {:.1} s",
        run.elapsed.as_secs_f64()
    );
    assert!(
        run.output.contains(&format!("driver {driver}")),
        "{}",
        run.output
    );
    assert!(run.output.contains("tpm2 version 2"), "{}", run.output);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("svsm-guest-quote-{driver}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ak.pub", "quote.msg", "quote.sig", "quote.pcrs"] {
        let bytes = run
            .file(f)
            .unwrap_or_else(|| panic!("{f} missing:\n{}", run.output));
        std::fs::write(dir.join(f), bytes).unwrap();
    }
    let ok = checkquote(&dir, nonce);
    assert!(
        ok.status.success(),
        "tpm2_checkquote: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = checkquote(&dir, &hex::encode([0u8; 16]));
    assert!(!wrong.status.success(), "a wrong nonce must fail");
    let log = run.file("eventlog").unwrap();
    let replayed = replay_sha256(&log);
    let reported = pcrread_values(&run.output);
    for pcr in [0usize, 1, 2, 3, 4, 5, 6, 7, 9] {
        assert_eq!(
            replayed[pcr], reported[&pcr],
            "PCR {pcr}: replay of the real OVMF log vs the vTPM"
        );
    }
    std::fs::write(dir.join("eventlog.bin"), &log).unwrap();
    let oracle = Command::new("tpm2_eventlog")
        .arg(dir.join("eventlog.bin"))
        .output()
        .unwrap();
    assert!(
        oracle.status.success(),
        "{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let theirs = eventlog_pcrs(&String::from_utf8_lossy(&oracle.stdout));
    for (pcr, value) in &theirs {
        assert_eq!(&replayed[*pcr], value, "PCR {pcr}: tpm2_eventlog disagrees");
    }
    assert!(
        theirs.len() >= 8,
        "tpm2_eventlog listed {} PCRs",
        theirs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `vault` task's round trips succeeded inside the guest, over the call channel and over
/// `/dev/tpm0` (the vTPM's vendor command through the unmodified Linux driver): the signature
/// made that way verifies here with the public key the vault gave. (Debian 12's 6.1 resource
/// manager, `/dev/tpmrm0`, refuses vendor command codes: docs/tpm-vendor-command.md.)
fn check_vault_task(run: &svsm_sim::guest::GuestRun) {
    assert!(
        run.output.contains("vault round trips ok"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("vault over /dev/tpm0 ok"),
        "{}",
        run.output
    );
    use p256::ecdsa::signature::Verifier;
    let public = run.file("tpm-vault.public").expect("the key's public part");
    let sig = run.file("tpm-vault.sig").expect("the signature");
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    key.verify(b"a message signed inside VMPL0\n", &sig)
        .expect("the signature made through /dev/tpm0 verifies");
    // pkcs11-tool in the guest, through the module and the vendor command: the host verifies
    // with the public key the token reported (CKA_EC_POINT: DER OCTET STRING around it).
    assert!(
        run.output.contains("SVSM vault via /dev/tpm0"),
        "the module fell back to /dev/tpm0: {}",
        run.output
    );
    let point = run.file("p11.point").expect("the key's CKA_EC_POINT");
    let sig = run.file("p11.sig").expect("the pkcs11-tool signature");
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point[2..]).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    key.verify(b"a message signed inside VMPL0\n", &sig)
        .expect("the PKCS#11 signature made in the guest verifies");
}

/// A verifier that trusts `machine`'s TEST chain and allows its MEASUREMENT.
fn verifier_for(machine: &SimMachine) -> host_verifier::Verifier {
    use host_verifier::trust::ProductAnchors;
    use svsm_abi::snp::Product;
    let chain = machine.module().psp_mut().chain().clone();
    let roots = std::sync::Arc::new(host_verifier::TrustStore::new(vec![ProductAnchors::load(
        Product::Genoa,
        &chain.ark_der,
        &chain.ask_der,
        &chain.ask_der,
    )
    .unwrap()]));
    host_verifier::Verifier::with_trust_store(
        roots,
        host_verifier::Policy {
            measurements: Some(vec![MEASUREMENT]),
            vmpl: Some(0),
            signing_keys: vec![svsm_abi::snp::SigningKey::Vcek],
            ..host_verifier::Policy::default()
        },
    )
}

/// The reference PCRs a relying party computes for a guest booted with these files and this
/// command line (OVMF + the Linux EFI stub under QEMU's direct kernel boot).
fn reference_pcrs(
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> std::collections::BTreeMap<usize, [u8; 32]> {
    ovmf::direct_boot::expected_pcrs(&ovmf::direct_boot::DirectBoot {
        kernel,
        initrd: Some(initrd),
        cmdline,
        memory_bytes: svsm_sim::guest::GUEST_MEMORY_MIB << 20,
    })
    .unwrap()
}

/// Appraises the guest's evidence bundle with `expected` reference PCRs.
fn appraise(
    run: &svsm_sim::guest::GuestRun,
    machine: &SimMachine,
    nonce: &[u8],
    expected: std::collections::BTreeMap<usize, [u8; 32]>,
) -> host_verifier::bundle_verify::BundleAppraisal {
    use host_verifier::bundle_verify::{verify_bundle, BundleContext};
    let json = run
        .file("bundle.json")
        .unwrap_or_else(|| panic!("no bundle:\n{}", run.output));
    let bundle = host_verifier::bundle::Bundle::from_json(&json).unwrap();
    assert!(bundle.firmware_log.is_some() && bundle.ima_log.is_some());
    let verifier = verifier_for(machine);
    let mut ctx = BundleContext::new(&verifier, nonce, std::time::SystemTime::now());
    ctx.expected_pcrs = expected;
    verify_bundle(&bundle, &ctx).unwrap()
}

#[test]
fn a_real_guest_on_tpm_crb_quotes_and_its_evidence_bundle_is_affirmed() {
    let _t = turn();
    let nonce = rand::random::<[u8; 16]>();
    let hex_nonce = hex::encode(nonce);
    let (run, machine, cmdline) = boot(
        "tpm,attest",
        TpmDevice::Crb,
        &format!("svsm.nonce={hex_nonce} ima_policy=tcb"),
        true,
    );
    check_tpm_task(&run, "tpm_crb", &hex_nonce);
    let kernel = std::fs::read(&image().kernel).unwrap();
    let initrd = std::fs::read(&image().initrd).unwrap();
    let expected = reference_pcrs(&kernel, &initrd, &cmdline);
    for pcr in [4usize, 9] {
        assert!(expected.contains_key(&pcr), "PCR {pcr} is computed");
    }
    let a = appraise(&run, &machine, &nonce, expected);
    use host_verifier::bundle_verify::BundleCheckId as C;
    assert_eq!(
        a.verdict(),
        host_verifier::Verdict::Affirming,
        "\n{}",
        a.render_text()
    );
    for id in [
        C::VtpmLogReplay,
        C::VtpmImaReplay,
        C::VtpmImaBootAggregate,
        C::VtpmReferencePcrs,
    ] {
        assert_eq!(
            a.check(id)
                .map(|c| matches!(c.outcome, host_verifier::Outcome::Pass)),
            Some(true),
            "{id}\n{}",
            a.render_text()
        );
    }
    let ima = a.ima_log.clone().unwrap();
    assert!(ima.covered.unwrap() > 10, "{ima:?}");
    eprintln!("{}", a.render_text());

    // The same through the command lines a relying party runs: snp-measure computes the
    // reference PCRs from the files, host-verifier appraises the bundle with them.
    let dir = std::env::temp_dir().join(format!("svsm-guest-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bundle.json"), run.file("bundle.json").unwrap()).unwrap();
    let chain = machine.module().psp_mut().chain().clone();
    std::fs::write(dir.join("ark.der"), &chain.ark_der).unwrap();
    std::fs::write(dir.join("ask.der"), &chain.ask_der).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "vmpl = 0\nsigning_keys = [\"vcek\"]\nmeasurements = [\"{}\"]\n",
            hex::encode(MEASUREMENT)
        ),
    )
    .unwrap();
    let pcr_lines = |cmdline: &str| -> Vec<String> {
        let out = Command::new(workspace_bin("snp-measure"))
            .args(["guest-pcrs", "--kernel"])
            .arg(&image().kernel)
            .arg("--initrd")
            .arg(&image().initrd)
            .args([
                "--memory",
                &format!("{}M", svsm_sim::guest::GUEST_MEMORY_MIB),
            ])
            .arg("--cmdline")
            .arg(cmdline)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("--pcr "))
            .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    let verify = |pcrs: &[String]| {
        Command::new(workspace_bin("host-verifier"))
            .args(["bundle", "verify", "--bundle"])
            .arg(dir.join("bundle.json"))
            .args(["--nonce", &hex_nonce, "--policy"])
            .arg(dir.join("policy.toml"))
            .arg("--trust-ark")
            .arg(dir.join("ark.der"))
            .arg("--trust-ask")
            .arg(dir.join("ask.der"))
            .args(["--min-epoch", "0", "--requester-vmpl", "1"])
            .args(pcrs)
            .output()
            .unwrap()
    };
    let honest = pcr_lines(&cmdline);
    assert!(honest.len() >= 14, "{honest:?}");
    let out = verify(&honest);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("vtpm.ima_replay") && text.contains("IMA log"),
        "{text}"
    );
    let other = pcr_lines(&format!("{cmdline} svsm.other=1"));
    let out = verify(&other);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("PCR 9 is"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A binary of another workspace crate, built next to this test (`make test` builds them all).
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join(name);
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --workspace --bins (make test does)",
        bin.display()
    );
    bin
}

#[test]
fn a_guest_with_another_command_line_or_initramfs_is_contraindicated_naming_pcr_9() {
    let _t = turn();
    let nonce = rand::random::<[u8; 16]>();
    let hex_nonce = hex::encode(nonce);
    // The relying party expects the plain command line; this guest got one more argument.
    let expected_append = format!("svsm.nonce={hex_nonce} ima_policy=tcb");
    let (run, machine, cmdline) = boot(
        "tpm,attest,vault",
        TpmDevice::Tis,
        &format!("{expected_append} svsm.changed=1"),
        true,
    );
    check_tpm_task(&run, "tpm_tis", &hex_nonce);
    check_vault_task(&run);
    let kernel = std::fs::read(&image().kernel).unwrap();
    let initrd = std::fs::read(&image().initrd).unwrap();
    use host_verifier::bundle_verify::{BundleCheckId as C, BundleFailure};
    // What the guest really ran: affirmed (the same evidence, honest references).
    let honest = appraise(
        &run,
        &machine,
        &nonce,
        reference_pcrs(&kernel, &initrd, &cmdline),
    );
    assert_eq!(
        honest.verdict(),
        host_verifier::Verdict::Affirming,
        "\n{}",
        honest.render_text()
    );
    // The command line the relying party expects: PCR 9 differs, nothing else.
    let expected_cmdline = cmdline.replace(" svsm.changed=1", "");
    assert_ne!(expected_cmdline, cmdline);
    let a = appraise(
        &run,
        &machine,
        &nonce,
        reference_pcrs(&kernel, &initrd, &expected_cmdline),
    );
    assert_eq!(a.verdict(), host_verifier::Verdict::Contraindicated);
    let failed: Vec<C> = a.failures().map(|c| c.id).collect();
    assert_eq!(failed, vec![C::VtpmReferencePcrs], "\n{}", a.render_text());
    assert!(
        matches!(
            a.failure(C::VtpmReferencePcrs),
            Some(BundleFailure::ReferenceMismatch { pcr: 9, .. })
        ),
        "\n{}",
        a.render_text()
    );
    assert!(a.render_text().contains("PCR 9"), "{}", a.render_text());
    // An initramfs other than the one booted: PCR 4 (QEMU writes the initrd's size and address
    // into the measured kernel header) and PCR 9 (the EFI stub measures the initrd) differ.
    let mut other_initrd = initrd.clone();
    other_initrd.extend_from_slice(&[0u8; 4096]);
    let a = appraise(
        &run,
        &machine,
        &nonce,
        reference_pcrs(&kernel, &other_initrd, &cmdline),
    );
    assert!(
        matches!(
            a.failure(C::VtpmReferencePcrs),
            Some(BundleFailure::ReferenceMismatch { pcr: 4 | 9, .. })
        ),
        "\n{}",
        a.render_text()
    );
    let mut v = guest_driver::vault::VaultClient::probe(
        machine.transport(svsm_core::platform::Vmpl::new(1).unwrap()),
    )
    .unwrap();
    // Two keys made over the call channel, one by svsm-vault over /dev/tpm0 and one by
    // pkcs11-tool through the module: the vendor command reaches the same vault, as the VMPL
    // that sent the vTPM command; the PKCS#11 key carries its label as its vault name.
    let keys = v.list().unwrap();
    assert_eq!(keys.len(), 4, "the guest's four vault keys: {keys:?}");
    assert!(keys.iter().any(|k| k.name == "guest-p11"), "{keys:?}");
}

#[test]
fn the_guest_build_is_reproducible() {
    let _t = turn();
    let first = image().clone();
    let again = build(&default_guest_dir(), &guest_binaries()).unwrap();
    assert_eq!(again.initrd_sha256, first.initrd_sha256);
    assert_eq!(again.kernel_package, first.kernel_package);
    let bytes = std::fs::read(&again.initrd).unwrap();
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        first.initrd_sha256
    );
}

#[test]
fn the_freestanding_images_vtpm_serves_the_real_guest() {
    let _t = turn();
    use test_harness::image::{
        default_image_path, CallLine, ImageBackend, ImageMachine, ImageOptions,
    };
    let path = default_image_path();
    assert!(
        path.is_file(),
        "{} is missing: make image (make test does)",
        path.display()
    );
    let mut options = ImageOptions::new(path);
    options.line = CallLine::Virtio;
    let machine = ImageMachine::boot(&options).unwrap();
    let backend = Box::new(ImageBackend::new(&machine).unwrap());
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let run = run_guest(
        image(),
        svsm_sim::guest::GuestTpm::Backend(backend),
        Some(svsm_sim::guest::CallTarget::Image(&machine)),
        &RunOptions {
            task: "tpm,vault".into(),
            append: format!("svsm.nonce={nonce}"),
            device: TpmDevice::Crb,
            timeout: Duration::from_secs(240),
            broker_port: None,
            disk: None,
        },
    )
    .unwrap();
    assert_eq!(
        run.status,
        Some(0),
        "task output:\n{}\nconsole:\n{}",
        run.output,
        run.console
    );
    check_tpm_task(&run, "tpm_crb", &nonce);
    check_vault_task(&run);
    // Every TPM command of the boot went through the image's module: its call counter says so.
    let stats = machine.stats().unwrap();
    assert!(stats.calls > 300, "{stats:?}");
    assert_eq!(machine.shutdown().unwrap(), test_harness::image::EXIT_CLEAN);
}
