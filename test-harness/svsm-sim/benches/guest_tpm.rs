//! TPM latency as a real Linux guest sees it, our vTPM against swtpm, same QEMU line: Debian's
//! kernel under OVMF + QEMU (TCG), `tpm-crb`, the TPM emulator backend either `svsm-sim`'s
//! (every command through the simulated machine's SVSM vTPM protocol path) or swtpm's. Inside
//! the guest, `svsm-attest tpm-bench` times GetRandom, PCR_Extend, Sign and Quote through
//! `/dev/tpmrm0`; a second boot per backend times boot to first quote (tpm2-tools: ECC EK, AK,
//! quote). One run, printed as ratios (ours / swtpm: below 1 is faster). No assertions: numbers.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use svsm_sim::guest::{
    build, default_guest_dir, guest_binaries, run_guest, GuestImage, GuestRun, GuestTpm,
    RunOptions, TpmDevice,
};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

const ITERATIONS: u32 = 50;
const QUOTE_ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// swtpm serving QEMU's control channel on a UNIX socket, fresh state in a temp dir.
struct Swtpm {
    _child: svsm_process::Child,
    dir: PathBuf,
}

impl Swtpm {
    fn start() -> Swtpm {
        let dir =
            std::env::temp_dir().join(format!("svsm-bench-guest-swtpm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("swtpm dir");
        let ctrl = dir.join("ctrl.sock");
        let child = svsm_process::spawn(
            Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", dir.display()))
                .arg("--ctrl")
                .arg(format!("type=unixio,path={}", ctrl.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("swtpm (apt-get install swtpm; scripts/bootstrap.sh does)");
        for _ in 0..200 {
            if ctrl.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Swtpm { _child: child, dir }
    }
    fn ctrl(&self) -> PathBuf {
        self.dir.join("ctrl.sock")
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn boot(image: &GuestImage, tpm: GuestTpm, task: &str) -> GuestRun {
    let run = run_guest(
        image,
        tpm,
        None,
        &RunOptions {
            task: task.into(),
            append: format!("svsm.iterations={ITERATIONS}"),
            device: TpmDevice::Crb,
            timeout: Duration::from_secs(600),
            broker_port: None,
            disk: None,
        },
    )
    .expect("guest run");
    assert_eq!(run.status, Some(0), "{}\n{}", run.output, run.console);
    run
}

fn ours() -> GuestTpm {
    let machine = SimMachine::new(LaunchConfig::genoa([0x42; 48])).expect("machine");
    GuestTpm::Backend(Box::new(SvsmBackend::new(&machine).expect("backend")))
}

/// (command, median µs) from `svsm-attest tpm-bench --json`.
fn medians(run: &GuestRun) -> Vec<(String, f64)> {
    let line = run
        .output
        .lines()
        .find(|l| l.trim_start().starts_with('['))
        .unwrap_or_else(|| panic!("no JSON in\n{}", run.output));
    let v: serde_json::Value = serde_json::from_str(line).expect("tpm-bench JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| {
            (
                e["command"].as_str().unwrap_or("?").to_owned(),
                e["median_us"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn uptime(run: &GuestRun) -> f64 {
    run.output
        .lines()
        .find_map(|l| l.strip_prefix("first-quote-uptime ")?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn main() {
    let exe = std::env::current_exe().expect("exe");
    let bins = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let image = build(
        &default_guest_dir(),
        &guest_binaries(bins).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("guest build: {e}"));

    let ours_bench = boot(&image, ours(), "tpm-bench");
    let swtpm = Swtpm::start();
    let swtpm_bench = boot(&image, GuestTpm::External(swtpm.ctrl()), "tpm-bench");
    drop(swtpm);
    // Boot to first quote varies by a second between TCG boots: three rounds, alternating
    // which backend goes first, medians.
    let mut ours_quote = Vec::new();
    let mut swtpm_quote = Vec::new();
    for round in 0..QUOTE_ROUNDS {
        let swtpm_boot = || {
            let swtpm = Swtpm::start();
            boot(&image, GuestTpm::External(swtpm.ctrl()), "first-quote")
        };
        if round % 2 == 0 {
            ours_quote.push(boot(&image, ours(), "first-quote"));
            swtpm_quote.push(swtpm_boot());
        } else {
            swtpm_quote.push(swtpm_boot());
            ours_quote.push(boot(&image, ours(), "first-quote"));
        }
    }

    println!(
        "TPM latency inside a real Linux guest (Debian {}; QEMU TCG, tpm-crb, /dev/tpmrm0; \
         median of {ITERATIONS} after 5 warm-ups)",
        image.kernel_package
    );
    println!(
        "{:<18} {:>14} {:>14} {:>12}",
        "command", "svsm-vhsm µs", "swtpm µs", "ours/swtpm"
    );
    let theirs = medians(&swtpm_bench);
    for (command, ours_us) in medians(&ours_bench) {
        let swtpm_us = theirs
            .iter()
            .find(|(c, _)| *c == command)
            .map(|(_, v)| *v)
            .unwrap_or(f64::NAN);
        println!(
            "{command:<18} {ours_us:>14.1} {swtpm_us:>14.1} {:>12.2}",
            ours_us / swtpm_us
        );
    }
    let wall = |runs: &[GuestRun]| median(runs.iter().map(|r| r.elapsed.as_secs_f64()).collect());
    let kernel = |runs: &[GuestRun]| median(runs.iter().map(uptime).collect());
    let (a, b) = (wall(&ours_quote), wall(&swtpm_quote));
    println!(
        "{:<18} {:>13.2}s {:>13.2}s {:>12.2}   (QEMU start to power-off after the first quote; median of {QUOTE_ROUNDS})",
        "boot→first quote",
        a,
        b,
        a / b
    );
    let (a, b) = (kernel(&ours_quote), kernel(&swtpm_quote));
    println!(
        "{:<18} {:>13.2}s {:>13.2}s {:>12.2}   (kernel uptime at the first quote; median of {QUOTE_ROUNDS})",
        "kernel→first quote",
        a,
        b,
        a / b
    );
}
