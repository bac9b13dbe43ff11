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
use test_harness::guest::{build, default_guest_dir, run_guest, GuestImage, RunOptions, TpmDevice};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// guest-driver's `svsm-vault`, built next to this test (`make test` builds it first).
fn svsm_vault() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("svsm-vault");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p guest-driver --features std --bin svsm-vault \
         (make test does)",
        bin.display()
    );
    bin
}

fn image() -> &'static GuestImage {
    static IMAGE: OnceLock<GuestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let image = build(&default_guest_dir(), &[svsm_vault()])
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

/// Boots the guest on a fresh simulated machine and runs `task`; the task must succeed.
fn boot(
    task: &str,
    device: TpmDevice,
    append: &str,
    calls: bool,
) -> (test_harness::guest::GuestRun, SimMachine) {
    let machine = SimMachine::new(LaunchConfig::genoa([0x46; 48])).unwrap();
    let backend = Box::new(SvsmBackend::new(&machine).unwrap());
    let run = run_guest(
        image(),
        backend,
        calls.then_some(&machine),
        &RunOptions {
            task: task.into(),
            append: append.into(),
            device,
            timeout: Duration::from_secs(240),
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
    (run, machine)
}

/// SHA-256 replay of a TCG crypto-agile log with svsm-abi's parser (EV_NO_ACTION not extended).
fn replay_sha256(log: &[u8]) -> [[u8; 32]; 24] {
    use sha2::Digest;
    let parsed = svsm_abi::eventlog::EventLog::parse(log).expect("the real OVMF log parses");
    assert!(parsed.has_sha256);
    let mut pcrs = [[0u8; 32]; 24];
    for e in parsed.events() {
        if e.event_type == svsm_abi::eventlog::EV_NO_ACTION {
            continue;
        }
        let p = &mut pcrs[e.pcr as usize];
        *p = sha2::Sha256::new()
            .chain_update(*p)
            .chain_update(e.sha256.unwrap())
            .finalize()
            .into();
    }
    assert!(parsed.len() > 10, "{} events", parsed.len());
    pcrs
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

#[test]
fn linux_binds_tpm_crb_and_tpm_tis_to_our_vtpm_and_quotes_verify() {
    let _t = turn();
    for (device, driver) in [(TpmDevice::Crb, "tpm_crb"), (TpmDevice::Tis, "tpm_tis")] {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let (run, _) = boot("tpm", device, &format!("svsm.nonce={nonce}"), false);
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
        let dir: PathBuf = std::env::temp_dir().join(format!("svsm-guest-quote-{driver}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ak.pub", "quote.msg", "quote.sig", "quote.pcrs"] {
            let bytes = run
                .file(f)
                .unwrap_or_else(|| panic!("{f} missing:\n{}", run.output));
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        let ok = checkquote(&dir, &nonce);
        assert!(
            ok.status.success(),
            "tpm2_checkquote: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let wrong = checkquote(&dir, &hex::encode([0u8; 16]));
        assert!(!wrong.status.success(), "a wrong nonce must fail");
        // OVMF wrote a real TCG event log and Linux exposes it: svsm-abi's parser reads it, its
        // SHA-256 replay gives the PCR values the vTPM reported inside the guest, and
        // tpm2_eventlog (an independent parser) agrees.
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
}

#[test]
fn the_guest_build_is_reproducible() {
    let _t = turn();
    let first = image().clone();
    let again = build(&default_guest_dir(), &[svsm_vault()]).unwrap();
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
fn svsm_vault_inside_the_guest_reaches_the_vault_over_the_call_channel() {
    let _t = turn();
    let (run, machine) = boot("vault", TpmDevice::Crb, "", true);
    assert!(run.output.contains("signature verifies"), "{}", run.output);
    assert!(
        run.output.contains("vault round trips ok"),
        "{}",
        run.output
    );
    // The keys the guest made live in the machine's vault, owned by VMPL1; nothing of them
    // left VMPL0 (the guest saw only public keys, signatures and ciphertext).
    let mut v = guest_driver::vault::VaultClient::probe(
        machine.transport(svsm_core::platform::Vmpl::new(1).unwrap()),
    )
    .unwrap();
    assert_eq!(v.list().unwrap().len(), 2);
    eprintln!("vault task: {:.1} s", run.elapsed.as_secs_f64());
}
