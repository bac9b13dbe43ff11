//! IMA runtime appraisal, ours vs Keylime 7.14.3's own code (issue 17), on one list and one
//! policy: a 50,000-path runtime policy (one path in ten with two allowed digests, three
//! exclude patterns) and a 101,000-entry `ima-ng` list (nine entries in ten measure a policy
//! path, one in ten an excluded one). Two phases, as a verifier meets them:
//! * first pass: the first 100,000 entries from nothing (replay to PCR 10 + policy);
//! * round: the next 1,000 entries from the position the first pass kept.
//!
//! Ours reads the binary list (`binary_runtime_measurements`), Keylime the text list
//! (`ascii_runtime_measurements`, what its agent sends); both replay the SHA-256 bank and
//! must accept every entry. Ours is timed in-process (parse + appraisal); Keylime in its own
//! Python process (`scripts/keylime-ima-peer.py`, `process_measurement_list`), policy loaded
//! before timing. Medians of `IMA_BENCH_RUNS` (default 5; Keylime 3). Keylime is installed
//! from PyPI into `target/keylime-venv` on first use (`scripts/keylime-venv.sh`); without it
//! (offline) only our numbers are printed, saying so.
//!
//! Run: `cargo bench -p host-verifier --bench ima` (no timing assertions anywhere).

use host_verifier::bundle_verify::ima::extend;
use host_verifier::measured::encode::EntrySpec;
use host_verifier::measured::ima_rounds::{appraise_round, ImaPosition, Round};
use host_verifier::measured::runtime_policy::{RuntimePolicy, RuntimePolicyDocument};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use svsm_abi::ima::ImaLog;

const POLICY_PATHS: usize = 50_000;
const FIRST: usize = 100_000;
const ROUND: usize = 1_000;

fn policy_path(i: usize) -> String {
    format!("/usr/lib/pkg{:04}/lib{i}.so.1", i / 50)
}

fn content_digest(i: usize, version: u32) -> [u8; 32] {
    Sha256::digest(format!("file {i} version {version}")).into()
}

struct Workload {
    policy_json: Vec<u8>,
    binary: Vec<u8>,
    /// Byte offset of entry FIRST in `binary`.
    split: usize,
    ascii_first: String,
    ascii_round: String,
    pcr_first: [u8; 32],
    pcr_round: [u8; 32],
}

fn workload() -> Workload {
    let mut doc = RuntimePolicyDocument::default();
    for i in 0..POLICY_PATHS {
        let mut digests = vec![hex::encode(content_digest(i, 1))];
        if i % 10 == 0 {
            digests.push(hex::encode(content_digest(i, 2)));
        }
        doc.digests.insert(policy_path(i), digests);
    }
    doc.excludes = vec![
        "/tmp/".into(),
        "/var/cache/.*".into(),
        "/run/user/[0-9]+/".into(),
    ];
    let policy_json = serde_json::to_vec(&doc).expect("policy serialises");
    let mut w = Workload {
        policy_json,
        binary: Vec::new(),
        split: 0,
        ascii_first: String::new(),
        ascii_round: String::new(),
        pcr_first: [0; 32],
        pcr_round: [0; 32],
    };
    let mut pcr = [0u8; 32];
    for j in 0..FIRST + ROUND {
        if j == FIRST {
            w.split = w.binary.len();
            w.pcr_first = pcr;
        }
        let (path, digest) = if j % 10 == 9 {
            (
                format!("/tmp/job{j}/out"),
                Sha256::digest(j.to_le_bytes()).into(),
            )
        } else {
            let i = j.wrapping_mul(7919) % POLICY_PATHS;
            (
                policy_path(i),
                content_digest(i, if i % 20 == 0 { 2 } else { 1 }),
            )
        };
        let spec = EntrySpec {
            path: &path,
            file_digest: Some(digest),
            signature: None,
        };
        spec.write_binary(&mut w.binary);
        spec.write_ascii(if j < FIRST {
            &mut w.ascii_first
        } else {
            &mut w.ascii_round
        });
        pcr = extend(&pcr, &spec.sha256_template_digest());
    }
    w.pcr_round = pcr;
    w
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ours(w: &Workload, runs: usize) -> (Duration, Duration, Duration) {
    let compile = Instant::now();
    let policy = RuntimePolicy::from_json(&w.policy_json).expect("policy compiles");
    let compile = compile.elapsed();
    let (mut first, mut round) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let log = ImaLog::parse(&w.binary[..w.split]).expect("list parses");
        let one = appraise_round(
            &policy,
            &ImaPosition::START,
            &Round {
                offset: 0,
                log: &log,
                quoted_pcr10: w.pcr_first,
                pcrs_0_to_9: None,
            },
        )
        .expect("first pass accepted");
        let t1 = Instant::now();
        let log = ImaLog::parse(&w.binary[w.split..]).expect("round parses");
        let two = appraise_round(
            &policy,
            &one.position,
            &Round {
                offset: FIRST as u64,
                log: &log,
                quoted_pcr10: w.pcr_round,
                pcrs_0_to_9: None,
            },
        )
        .expect("round accepted");
        let t2 = Instant::now();
        assert_eq!(one.appraised as usize, FIRST);
        assert_eq!(two.position.entries as usize, FIRST + ROUND);
        first.push(t1 - t0);
        round.push(t2 - t1);
    }
    (median(first), median(round), compile)
}

struct Peer {
    version: String,
    first: Duration,
    round: Duration,
}

fn keylime(w: &Workload, dir: &Path, runs: usize) -> Result<Peer, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = Command::new(root.join("scripts/keylime-venv.sh"))
        .output()
        .map_err(|e| format!("scripts/keylime-venv.sh: {e}"))?;
    if !venv.status.success() {
        return Err(format!(
            "installing Keylime failed: {}",
            String::from_utf8_lossy(&venv.stderr)
        ));
    }
    let python = String::from_utf8_lossy(&venv.stdout).trim().to_owned();
    let file = |name: &str, bytes: &[u8]| -> Result<String, String> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p.display().to_string())
    };
    let out = Command::new(&python)
        .arg(root.join("scripts/keylime-ima-peer.py"))
        .args(["--policy", &file("policy.json", &w.policy_json)?])
        .args(["--first", &file("first.txt", w.ascii_first.as_bytes())?])
        .args(["--more", &file("round.txt", w.ascii_round.as_bytes())?])
        .args(["--pcr-first", &hex::encode(w.pcr_first)])
        .args(["--pcr-more", &hex::encode(w.pcr_round)])
        .args(["--runs", &runs.to_string()])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "Keylime's appraisal failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))?;
    let secs = |k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap_or(f64::NAN));
    Ok(Peer {
        version: format!(
            "Keylime {} (Python {})",
            v["keylime"].as_str().unwrap_or("?"),
            v["python"].as_str().unwrap_or("?")
        ),
        first: secs("first_pass_s"),
        round: secs("round_s"),
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("IMA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let build = Instant::now();
    let w = workload();
    println!(
        "IMA appraisal: {POLICY_PATHS}-path policy ({} KiB JSON), {FIRST}-entry first pass \
         ({} KiB binary, {} KiB text), {ROUND}-entry round; workload built in {}",
        w.policy_json.len() / 1024,
        w.split / 1024,
        w.ascii_first.len() / 1024,
        ms(build.elapsed())
    );
    let (first, round, compile) = ours(&w, runs);
    println!("ours: policy compiled once in {}", ms(compile));
    let dir = std::env::temp_dir().join(format!("ima-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let peer = keylime(&w, &dir, runs.min(3));
    let _ = std::fs::remove_dir_all(&dir);
    println!();
    println!("| phase | svsm-vhsm | Keylime | Keylime/ours |");
    println!("|---|---|---|---|");
    match &peer {
        Ok(p) => {
            for (name, o, k) in [
                ("first pass, 100,000 entries", first, p.first),
                ("round, 1,000 new entries", round, p.round),
            ] {
                println!(
                    "| {name} | {} | {} | {:.1}x |",
                    ms(o),
                    ms(k),
                    k.as_secs_f64() / o.as_secs_f64()
                );
            }
            println!("\npeer: {}", p.version);
        }
        Err(e) => {
            println!(
                "| first pass, 100,000 entries | {} | not run | - |",
                ms(first)
            );
            println!("| round, 1,000 new entries | {} | not run | - |", ms(round));
            println!("\npeer not run: {e}");
        }
    }
}
