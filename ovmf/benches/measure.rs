//! `make bench` for the launch-measurement calculator: time to compute the expected
//! MEASUREMENT of Debian bookworm's 2 MiB OVMF.fd with 4 vCPUs (EPYC-Milan, guest features 0x1)
//! against the peer, sev-snp-measure 0.0.13, in one run, printed as ratios.
//!
//! Two rows: the command line as a user runs it (process start, read, parse, hash, print;
//! interleaved runs of both tools), and the computation alone in-process (our library vs the
//! peer's Python `snp_calc_launch_digest` timed inside one interpreter). The goal (at
//! least 20× faster) is about the first row; the second shows where the time goes: both hash
//! 2 MiB with SHA-384, and the peer's hashlib is OpenSSL. Median and best are printed because
//! the machine is shared. No assertions on time: numbers only.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const OVMF_FD: &str = "/usr/share/ovmf/OVMF.fd";
const R5: &str = "e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840";
const CLI_RUNS: usize = 31;
const LIB_RUNS: usize = 101;

/// (median, best) of the samples.
fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn timed(cmd: &mut Command) -> (Duration, String) {
    let t = Instant::now();
    let out = cmd.output().expect("spawn");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The peer's in-process (median, best), timed by Python itself.
fn peer_in_process() -> Option<(Duration, Duration)> {
    let script = format!(
        "import time,statistics\n\
         from sevsnpmeasure import guest\n\
         from sevsnpmeasure.vmm_types import VMMType\n\
         ts=[]\n\
         for _ in range({LIB_RUNS}):\n\
         \x20   t=time.perf_counter(); d=guest.snp_calc_launch_digest(4, 0xA00F11, '{OVMF_FD}', None, None, None, 1, '', VMMType.QEMU); ts.append(time.perf_counter()-t)\n\
         \x20   assert d.hex()=='{R5}'\n\
         print(statistics.median(ts), min(ts))\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some((
        Duration::from_secs_f64(it.next()??),
        Duration::from_secs_f64(it.next()??),
    ))
}

fn main() -> ExitCode {
    if std::fs::metadata(OVMF_FD).is_err() {
        eprintln!("bench: {OVMF_FD} missing: run `apt-get install ovmf` (scripts/bootstrap.sh)");
        return ExitCode::FAILURE;
    }
    let peer = std::env::var("SEV_SNP_MEASURE").unwrap_or_else(|_| "sev-snp-measure".into());
    let version = match Command::new(&peer).arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!(
                "bench: `{peer}` missing: `pip install sev-snp-measure==0.0.13` (scripts/bootstrap.sh)"
            );
            return ExitCode::FAILURE;
        }
    };
    let ours = env!("CARGO_BIN_EXE_snp-measure");
    let common = [
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--guest-features",
        "0x1",
    ];

    // Command line, interleaved so both see the same machine load; two warm-up rounds (page
    // cache, Python bytecode cache).
    let (mut t_ours, mut t_peer) = (Vec::new(), Vec::new());
    for i in 0..CLI_RUNS + 2 {
        let (a, out_a) = timed(Command::new(ours).args(common));
        let (b, out_b) = timed(Command::new(&peer).arg("--mode").arg("snp").args(common));
        assert_eq!(out_a, R5, "snp-measure printed a wrong digest");
        assert_eq!(out_b, R5, "sev-snp-measure printed a wrong digest");
        if i >= 2 {
            t_ours.push(a);
            t_peer.push(b);
        }
    }
    let (cli_ours, cli_peer) = (stats(t_ours), stats(t_peer));

    // In-process computation: parse + digest from the bytes in memory.
    let image = std::fs::read(OVMF_FD).expect("read");
    let mut lib = Vec::new();
    for _ in 0..LIB_RUNS {
        let t = Instant::now();
        let fw = ovmf::Firmware::parse(&image).expect("parse");
        let m =
            ovmf::snp_launch_digest(&fw, &ovmf::LaunchParams::new(4, 0xA00F11, 1)).expect("digest");
        lib.push(t.elapsed());
        assert_eq!(m.to_string(), R5);
    }
    let lib_ours = stats(lib);
    let lib_peer = peer_in_process();

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    let row = |name: String, ours: (Duration, Duration), peer: (Duration, Duration)| {
        println!(
            "{:<26} {:>22} {:>22} {:>14}",
            name,
            format!("{} / {}", ms(ours.0), ms(ours.1)),
            format!("{} / {}", ms(peer.0), ms(peer.1)),
            format!(
                "{:.1}x / {:.1}x",
                ratio(ours.0, peer.0),
                ratio(ours.1, peer.1)
            ),
        );
    };
    println!();
    println!(
        "launch measurement: bookworm OVMF.fd (2 MiB), 4 vCPUs EPYC-Milan, guest features 0x1"
    );
    println!(
        "peer: {version}; {cpus} CPUs; load average {}",
        load.join(" ")
    );
    println!(
        "{:<26} {:>22} {:>22} {:>14}",
        "median / best", "snp-measure", "sev-snp-measure", "ratio"
    );
    row(
        format!("command line ({CLI_RUNS} runs)"),
        cli_ours,
        cli_peer,
    );
    match lib_peer {
        Some(p) => row(format!("in-process ({LIB_RUNS} runs)"), lib_ours, p),
        None => println!(
            "in-process ({LIB_RUNS} runs): snp-measure {} / {}; the peer's python3 -c failed",
            ms(lib_ours.0),
            ms(lib_ours.1)
        ),
    }
    let r = ratio(cli_ours.0, cli_peer.0);
    println!(
        "goal, command line at least 20x faster (median): {} ({r:.1}x)",
        if r >= 20.0 {
            "met"
        } else {
            "NOT met on this run"
        }
    );
    ExitCode::SUCCESS
}
