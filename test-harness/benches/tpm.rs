//! `make bench` — TPM command latency, measured in one run, four ways:
//!
//! 1. `engine`: the vtpm engine called directly (libtpms in-process);
//! 2. `svsm-call`: guest-driver -> simulated transport -> svsm-core dispatcher -> engine, in
//!    process (the cost of the SVSM vTPM protocol path; issue goal <= 1.05x engine for
//!    PCR_Extend);
//! 3. `mssim`: the `svsm-sim tpm-server` endpoint over loopback TCP (the SVSM path behind the
//!    TCG simulator protocol), driven by a raw mssim client;
//! 4. `swtpm`: Debian's swtpm (the peer) over loopback TCP, driven by the same client.
//!
//! Each command's median and mean latency in microseconds, and the ratios. No assertions:
//! timing belongs here, not in tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use svsm_core::tpm::TpmEngine;
use svsm_core::tpm2::command::{self as cmd, TPM_RH_ENDORSEMENT, TPM_RH_OWNER};
use svsm_core::tpm2::templates::{AkCurve, KeyTemplate};
use test_harness::mssim::MssimServer;
use test_harness::mssim::TpmBackend;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

/// Something that runs raw TPM commands.
trait Tpm {
    fn run(&mut self, command: &[u8], response: &mut [u8]) -> usize;
}

struct Engine(vtpm::Vtpm);
impl Tpm for Engine {
    fn run(&mut self, command: &[u8], response: &mut [u8]) -> usize {
        self.0.execute(0, command, response).expect("engine")
    }
}

struct SvsmCall(SvsmBackend);
impl Tpm for SvsmCall {
    fn run(&mut self, command: &[u8], response: &mut [u8]) -> usize {
        self.0
            .send_command(0, command, response)
            .expect("svsm call")
    }
}

/// A raw mssim client: TPM_SEND_COMMAND framing (big-endian), as tcti-mssim sends it.
struct Mssim {
    stream: TcpStream,
    frame: Vec<u8>,
}
impl Mssim {
    fn connect(port: u16) -> Mssim {
        let mut last = None;
        for _ in 0..200 {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream.set_nodelay(true).expect("nodelay");
                    return Mssim {
                        stream,
                        frame: Vec::with_capacity(4200),
                    };
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        }
        panic!("cannot connect to 127.0.0.1:{port}: {last:?}");
    }
}
impl Tpm for Mssim {
    fn run(&mut self, command: &[u8], response: &mut [u8]) -> usize {
        self.frame.clear();
        self.frame.extend_from_slice(&8u32.to_be_bytes());
        self.frame.push(0);
        self.frame
            .extend_from_slice(&(command.len() as u32).to_be_bytes());
        self.frame.extend_from_slice(command);
        self.stream.write_all(&self.frame).expect("send");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("recv size");
        let n = u32::from_be_bytes(len) as usize;
        self.stream
            .read_exact(&mut response[..n])
            .expect("recv body");
        let mut ack = [0u8; 4];
        self.stream.read_exact(&mut ack).expect("recv ack");
        n
    }
}

/// swtpm in its own process on a free port pair, state in a temp dir.
struct Swtpm {
    child: svsm_process::Child,
    dir: std::path::PathBuf,
    port: u16,
}
impl Swtpm {
    fn start() -> Swtpm {
        let port = free_port_pair();
        let dir = std::env::temp_dir().join(format!("svsm-bench-swtpm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("swtpm dir");
        let child = svsm_process::spawn(
            Command::new("swtpm")
                .args(["socket", "--tpm2"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear", "--tpmstate"])
                .arg(format!("dir={}", dir.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("swtpm (apt-get install swtpm; scripts/bootstrap.sh does)");
        Swtpm { child, dir, port }
    }
}
impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port_pair() -> u16 {
    for _ in 0..64 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

fn rc(response: &[u8]) -> u32 {
    cmd::response_code(response).unwrap_or(u32::MAX)
}

/// Runs `command` and insists on success (resending once on TPM_RC_RETRY).
fn ok(tpm: &mut dyn Tpm, command: &[u8], response: &mut [u8]) -> usize {
    for _ in 0..3 {
        let n = tpm.run(command, response);
        match rc(&response[..n]) {
            0 => return n,
            0x922 => continue,
            other => panic!("TPM command failed: {other:#x}"),
        }
    }
    panic!("TPM kept answering TPM_RC_RETRY");
}

fn create_primary(tpm: &mut dyn Tpm, hierarchy: u32, template: &[u8]) -> u32 {
    let mut rsp = vec![0u8; 4096];
    let n = ok(
        tpm,
        &cmd::create_primary(hierarchy, template).expect("marshal"),
        &mut rsp,
    );
    cmd::parse_create_primary(&rsp[..n]).expect("CreatePrimary response")
}

struct Stats {
    median_us: f64,
    mean_us: f64,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations.min(20) {
        f(); // warm-up
    }
    let mut samples: Vec<f64> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    Stats {
        median_us: samples[samples.len() / 2],
        mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
    }
}

const COMMANDS: [&str; 5] = [
    "GetRandom(32)",
    "PCR_Extend",
    "Sign ECC P-256",
    "Quote ECC P-256",
    "CreatePrimary ECC P-256",
];

/// Runs the five commands against one TPM; returns their stats in `COMMANDS` order.
fn bench(tpm: &mut dyn Tpm, scale: usize) -> Vec<Stats> {
    let mut rsp = vec![0u8; 4096];
    let signing = svsm_core::tpm2::templates::ecc_p256_signing_template();
    let sign_key = create_primary(tpm, TPM_RH_OWNER, &signing);
    let ak = create_primary(
        tpm,
        TPM_RH_ENDORSEMENT,
        &KeyTemplate::ak(AkCurve::P256).template(),
    );
    let random = cmd::get_random(32).expect("marshal");
    let extend = cmd::pcr_extend_sha256(16, &[0xAB; 32]).expect("marshal");
    let sign = cmd::sign_sha256(sign_key, &[0x5A; 32]).expect("marshal");
    let quote = cmd::quote_sha256(ak, &[0x11; 32], 0x0001_0003).expect("marshal");
    let create = cmd::create_primary(TPM_RH_OWNER, &signing).expect("marshal");
    let mut results = vec![
        measure(2000 * scale, || {
            ok(tpm, &random, &mut rsp);
        }),
        measure(2000 * scale, || {
            ok(tpm, &extend, &mut rsp);
        }),
        measure(300 * scale, || {
            ok(tpm, &sign, &mut rsp);
        }),
        measure(300 * scale, || {
            ok(tpm, &quote, &mut rsp);
        }),
    ];
    // CreatePrimary is timed alone; the flush that frees its slot is not counted.
    let mut samples = Vec::new();
    for _ in 0..(100 * scale) {
        let t = Instant::now();
        let n = ok(tpm, &create, &mut rsp);
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        let handle = cmd::parse_create_primary(&rsp[..n]).expect("CreatePrimary response");
        ok(tpm, &cmd::flush_context(handle).expect("marshal"), &mut rsp);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    results.push(Stats {
        median_us: samples[samples.len() / 2],
        mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
    });
    for handle in [sign_key, ak] {
        ok(tpm, &cmd::flush_context(handle).expect("marshal"), &mut rsp);
    }
    results
}

fn main() {
    // `cargo bench` passes `--bench`; BENCH_SCALE shrinks or grows the iteration counts.
    let scale: usize = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    println!("TPM command latency (microseconds, median / mean; lower is better)");

    // libtpms is one engine per process: each in-process variant gets it in turn.
    let engine = {
        let mut tpm = Engine(vtpm::Vtpm::manufacture(Default::default()).expect("manufacture"));
        bench(&mut tpm, scale)
    };
    let svsm = {
        let machine = SimMachine::new(LaunchConfig::genoa([0x11; 48])).expect("simulated machine");
        let mut tpm = SvsmCall(SvsmBackend::new(&machine).expect("probe vTPM protocol"));
        bench(&mut tpm, scale)
    };
    let mssim = {
        let server = test_harness::tpm_backend::start_endpoint(0).expect("endpoint");
        let mut tpm = Mssim::connect(server.command_port());
        let r = bench(&mut tpm, scale);
        drop(tpm);
        MssimServer::stop(server);
        r
    };
    let swtpm = {
        let server = Swtpm::start();
        let mut tpm = Mssim::connect(server.port);
        bench(&mut tpm, scale)
    };

    println!(
        "{:<26} {:>17} {:>17} {:>17} {:>17}   {:>10} {:>10} {:>11}",
        "command", "engine", "svsm-call", "mssim", "swtpm", "svsm/eng", "mssim/eng", "mssim/swtpm"
    );
    for (i, name) in COMMANDS.iter().enumerate() {
        let cell = |s: &Stats| format!("{:8.1} / {:6.1}", s.median_us, s.mean_us);
        println!(
            "{:<26} {:>17} {:>17} {:>17} {:>17}   {:>9.3}x {:>9.3}x {:>10.3}x",
            name,
            cell(&engine[i]),
            cell(&svsm[i]),
            cell(&mssim[i]),
            cell(&swtpm[i]),
            svsm[i].median_us / engine[i].median_us,
            mssim[i].median_us / engine[i].median_us,
            mssim[i].median_us / swtpm[i].median_us,
        );
    }
    println!("ratios use medians; svsm/eng is the SVSM vTPM protocol path's cost, mssim adds loopback TCP.");
}
