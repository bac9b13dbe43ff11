//! vTPM state survives into a fresh process: one `svsm-sim tpm-server --state F` process
//! manufactures the TPM and takes commands, stops; a second process restores from F and the EK,
//! the NV contents and a persistent object are identical. Corrupt or truncated state makes the
//! server refuse to start with a clear error, never crash.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port_pair() -> u16 {
    for _ in 0..64 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(state: &Path) -> Server {
        let port = free_port_pair();
        let child = Command::new(env!("CARGO_BIN_EXE_svsm-sim"))
            .args(["tpm-server", "--port", &port.to_string(), "--state"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port + 1)).is_err() {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    fn tool(&self, dir: &Path, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new(tool)
            .args(args)
            .env(
                "TPM2TOOLS_TCTI",
                format!("mssim:host=127.0.0.1,port={}", self.port),
            )
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// TPM_STOP on the command port, then wait for a clean exit.
    fn stop(mut self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(&21u32.to_be_bytes()).unwrap();
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("svsm-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn ek_nv_and_persistent_objects_survive_a_fresh_process() {
    let dir = temp_dir("restart");
    let state = dir.join("vtpm.state");

    let first = Server::start(&state);
    first.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81010001", "-o", "ek1.pub"],
    );
    first.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81010016", "-o", "ekecc1.pub"],
    );
    first.tool(
        &dir,
        "tpm2_nvdefine",
        &[
            "0x1500020",
            "-C",
            "o",
            "-s",
            "16",
            "-a",
            "ownerread|ownerwrite",
        ],
    );
    std::fs::write(dir.join("nv.bin"), b"survives reboots").unwrap();
    first.tool(
        &dir,
        "tpm2_nvwrite",
        &["0x1500020", "-C", "o", "-i", "nv.bin"],
    );
    first.tool(
        &dir,
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256", "-c", "p.ctx"],
    );
    first.tool(
        &dir,
        "tpm2_evictcontrol",
        &["-C", "o", "-c", "p.ctx", "0x81000020"],
    );
    first.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81000020", "-o", "obj1.pub"],
    );
    first.stop();
    assert!(state.exists(), "the server wrote its state");

    let second = Server::start(&state);
    second.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81010001", "-o", "ek2.pub"],
    );
    second.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81010016", "-o", "ekecc2.pub"],
    );
    let nv = second.tool(&dir, "tpm2_nvread", &["0x1500020", "-C", "o", "-s", "16"]);
    second.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81000020", "-o", "obj2.pub"],
    );
    second.stop();

    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    assert_eq!(read("ek1.pub"), read("ek2.pub"), "RSA EK public key");
    assert_eq!(read("ekecc1.pub"), read("ekecc2.pub"), "ECC EK public key");
    assert_eq!(nv, b"survives reboots");
    assert_eq!(read("obj1.pub"), read("obj2.pub"), "persistent object");
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_fails(state: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_svsm-sim"))
        .args([
            "tpm-server",
            "--port",
            &free_port_pair().to_string(),
            "--state",
        ])
        .arg(state)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean error exit, not a crash: {out:?}"
    );
    out
}

#[test]
fn corrupt_or_truncated_state_is_refused_with_a_clear_error() {
    let dir = temp_dir("corrupt");
    let state = dir.join("vtpm.state");
    // A real state file to damage.
    Server::start(&state).stop();
    let good = std::fs::read(&state).unwrap();

    std::fs::write(&state, b"garbage").unwrap();
    let out = start_fails(&state);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an svsm-sim state file"));

    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    let out = start_fails(&state);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an svsm-sim state file"));

    // Well-framed file, damaged engine blob: the engine's integrity check refuses it.
    let mut flipped = good.clone();
    flipped[100] ^= 0xFF;
    std::fs::write(&state, &flipped).unwrap();
    let out = start_fails(&state);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
