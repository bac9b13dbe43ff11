//! Nothing the project starts outlives it: `svsm-sim tpm-server` (with the image under QEMU, and
//! the simulated machine) stopped by SIGTERM, SIGINT or SIGKILL leaves no process of its tree
//! and no socket behind; a test that panics with QEMU running leaves no QEMU.
//!
//! Processes are found by the pids svsm-sim reports on stderr; sockets by their abstract names
//! in /proc/net/unix (they are abstract so that even SIGKILL leaves no file behind).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use svsm_process::alive;
use test_harness::image::{default_image_path, ImageMachine, ImageOptions};

/// QEMU under TCG on 2 cores: one image at a time.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every abstract UNIX socket name bound on the machine.
fn abstract_sockets() -> Vec<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix('@').map(str::to_owned))
        .collect()
}

fn gone_within(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

struct Server {
    child: svsm_process::Child,
    qemu: Option<u32>,
    /// What it said on stderr until it listened.
    said: Vec<String>,
    lines: mpsc::Receiver<String>,
}

/// Starts `svsm-sim tpm-server` and waits until it listens; collects the QEMU pid it reports.
fn start(extra: &[&str], state: &std::path::Path) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_svsm-sim"));
    cmd.args(["tpm-server", "--port", "0", "--state"])
        .arg(state)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = svsm_process::spawn(&mut cmd).unwrap();
    let stderr = child.inner_mut().stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut qemu = None;
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("svsm-sim did not come up");
        if let Some(rest) = line.strip_prefix("svsm-sim: QEMU pid ") {
            qemu = rest.split_whitespace().next().and_then(|p| p.parse().ok());
        }
        let listening = line.contains("listening on 127.0.0.1:");
        said.push(line);
        if listening {
            break;
        }
    }
    Server {
        child,
        qemu,
        said,
        lines,
    }
}

/// `svsm-sim tpm-server --image ... --virtio` on `state`.
fn start_image(state: &std::path::Path) -> Server {
    start(
        &[
            "--image",
            default_image_path().to_str().unwrap(),
            "--virtio",
        ],
        state,
    )
}

fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("svsm-lifetime-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn image_sockets(pid: u32) -> Vec<String> {
    let prefix = format!("svsm-image-{pid}-");
    abstract_sockets()
        .into_iter()
        .filter(|s| s.starts_with(&prefix))
        .collect()
}

#[test]
fn sigterm_stops_svsm_sim_and_its_qemu_and_persists_the_state() {
    let _t = turn();
    let state = state_dir("term");
    let mut s = start_image(&state);
    let (sim, qemu) = (s.child.pid(), s.qemu.expect("QEMU pid reported"));
    assert!(alive(qemu));
    assert_eq!(image_sockets(sim).len(), 2, "the two serial-line sockets");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sim as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = s
        .child
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("svsm-sim exits on SIGTERM");
    let said: Vec<String> = s.lines.try_iter().collect();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM; stderr: {said:#?}");
    assert!(
        said.iter().any(|l| l.contains("stopped by SIGTERM")),
        "{said:#?}"
    );
    assert!(!alive(qemu), "QEMU stopped with svsm-sim");
    assert!(image_sockets(sim).is_empty());
    assert!(
        !std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("svsm-image-{sim}-"))),
        "temporary directory removed"
    );
    // The state the clean shutdown stored opens on the next start.
    let mut again = start_image(&state);
    assert!(
        again
            .said
            .iter()
            .any(|l| l.contains("restored sealed state")),
        "{:#?}",
        again.said
    );
    again.child.stop(Duration::from_secs(60)).unwrap();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn sigkill_of_svsm_sim_takes_its_qemu_with_it() {
    let _t = turn();
    let state = state_dir("kill");
    let mut s = start_image(&state);
    let (sim, qemu) = (s.child.pid(), s.qemu.expect("QEMU pid reported"));
    let status = s.child.kill().unwrap();
    assert_eq!(status.signal(), Some(9));
    assert!(
        gone_within(qemu, Duration::from_secs(10)),
        "QEMU got the parent-death signal"
    );
    // Abstract sockets vanish with their last holder.
    assert!(image_sockets(sim).is_empty());
    // A killed process cannot remove its directory; the next machine sweeps it.
    let leftover = std::env::temp_dir().join(format!("svsm-image-{sim}-0"));
    assert!(leftover.exists());
    drop(ImageMachine::boot(&ImageOptions::new(default_image_path())).unwrap());
    assert!(!leftover.exists(), "swept by the next start");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn sigint_stops_the_simulated_machine_with_its_own_status() {
    let _t = turn();
    let state = state_dir("int");
    let mut s = start(&[], &state);
    assert!(s.qemu.is_none());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = s
        .child
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("svsm-sim exits on SIGINT");
    assert_eq!(status.code(), Some(130));
    let _ = std::fs::remove_dir_all(&state);
}

/// Pids of processes whose command line mentions `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

#[test]
fn a_test_that_panics_with_qemu_and_postgresql_running_leaves_neither() {
    let _t = turn();
    let dir = std::env::temp_dir().join(format!("svsm-lifetime-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = mpsc::channel();
    let pg_dir = dir.clone();
    let result = std::thread::spawn(move || {
        let machine = ImageMachine::boot(&ImageOptions::new(default_image_path())).unwrap();
        let pg = svsm_process::postgres::Cluster::start(&pg_dir).unwrap();
        tx.send((machine.qemu_pid().unwrap(), pg.server().pid()))
            .unwrap();
        panic!("a failing assertion while QEMU and PostgreSQL run");
    })
    .join();
    assert!(result.is_err());
    let (qemu, pg) = rx.recv().unwrap();
    assert!(gone_within(qemu, Duration::from_secs(10)), "QEMU");
    assert!(gone_within(pg, Duration::from_secs(10)), "postgres");
    // Its worker processes too (they carry the data directory in no argument, but the cluster
    // directory appears in the postmaster's only).
    let needle = dir.join("data").display().to_string();
    assert!(pids_with(&needle).is_empty(), "postgres processes left");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_test_that_panics_with_qemu_running_leaves_no_qemu() {
    let _t = turn();
    let (tx, rx) = mpsc::channel();
    let result = std::thread::spawn(move || {
        let machine = ImageMachine::boot(&ImageOptions::new(default_image_path())).unwrap();
        tx.send((machine.qemu_pid().unwrap(), machine.socket_names()))
            .unwrap();
        panic!("a failing assertion while QEMU runs");
    })
    .join();
    assert!(result.is_err());
    let (qemu, sockets) = rx.recv().unwrap();
    assert!(gone_within(qemu, Duration::from_secs(10)));
    let bound = abstract_sockets();
    assert!(sockets.iter().all(|s| !bound.contains(s)));
}
