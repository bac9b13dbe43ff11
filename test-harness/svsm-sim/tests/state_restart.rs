//! vTPM state survives into a fresh process: one `svsm-sim tpm-server --state DIR` process
//! manufactures the TPM, takes commands and seals its state into DIR; a second process with the
//! same launch unseals it and the EKs, the NV contents and a persistent object are identical.
//! Damaged sealed state is never used and never overwritten: the server runs an explicitly
//! flagged ephemeral vTPM instead.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use svsm_process::Child;

struct Server {
    child: Child,
    port: u16,
    status: String,
}

impl Server {
    fn start(state: &Path) -> Server {
        // Killed with its process group when the test ends, passes or panics.
        let mut child = svsm_process::spawn(
            Command::new(env!("CARGO_BIN_EXE_svsm-sim"))
                .args(["tpm-server", "--port", "0", "--state"])
                .arg(state)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        // First line: where the state came from; second: the ports actually bound.
        let mut stderr = BufReader::new(child.inner_mut().stderr.take().unwrap());
        let mut status = String::new();
        stderr.read_line(&mut status).unwrap();
        let mut listening = String::new();
        stderr.read_line(&mut listening).unwrap();
        let port = listening
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {listening:?} (status {status:?})"));
        Server {
            child,
            port,
            status,
        }
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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("svsm-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn ek_nv_and_persistent_objects_survive_a_fresh_process() {
    let dir = temp_dir("restart");
    let state = dir.join("sealed");

    let first = Server::start(&state);
    assert!(first.status.contains("fresh vTPM"), "{}", first.status);
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

    // What the untrusted host keeps is sealed: the NV contents are not in it in clear.
    for slot in ["slot0.sealed", "slot1.sealed"] {
        let blob = std::fs::read(state.join(slot)).unwrap(); // NV writes made both slots
        assert!(blob.starts_with(b"SVSMSEAL"));
        assert!(
            !blob.windows(16).any(|w| w == b"survives reboots"),
            "{slot} leaks NV data"
        );
    }

    let second = Server::start(&state);
    assert!(
        second.status.contains("restored sealed state"),
        "{}",
        second.status
    );
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

#[test]
fn damaged_sealed_state_runs_ephemeral_and_is_left_alone() {
    let dir = temp_dir("damaged");
    let state = dir.join("sealed");
    let first = Server::start(&state);
    first.tool(
        &dir,
        "tpm2_readpublic",
        &["-c", "0x81010001", "-o", "ek1.pub"],
    );
    first.stop();

    for (what, damage) in [
        (
            "flipped ciphertext byte",
            (|b: &mut Vec<u8>| {
                let last = b.len() - 20;
                b[last] ^= 1;
            }) as fn(&mut Vec<u8>),
        ),
        ("truncated", |b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ("garbage", |b: &mut Vec<u8>| *b = b"garbage".to_vec()),
    ] {
        let mut blobs = Vec::new();
        for slot in ["slot0.sealed", "slot1.sealed"] {
            let path = state.join(slot);
            let Ok(mut blob) = std::fs::read(&path) else {
                continue;
            };
            blobs.push((path.clone(), blob.clone()));
            damage(&mut blob);
            std::fs::write(&path, &blob).unwrap();
        }
        let server = Server::start(&state);
        assert!(
            server.status.contains("EPHEMERAL"),
            "{what}: {}",
            server.status
        );
        server.tool(
            &dir,
            "tpm2_readpublic",
            &["-c", "0x81010001", "-o", "ek-ephemeral.pub"],
        );
        let damaged: Vec<Vec<u8>> = blobs
            .iter()
            .map(|(p, _)| std::fs::read(p).unwrap())
            .collect();
        server.stop();
        assert_ne!(
            std::fs::read(dir.join("ek1.pub")).unwrap(),
            std::fs::read(dir.join("ek-ephemeral.pub")).unwrap(),
            "{what}: an ephemeral vTPM has its own EK"
        );
        for ((path, original), seen) in blobs.iter().zip(damaged) {
            assert_eq!(
                std::fs::read(path).unwrap(),
                seen,
                "{what}: the store was not overwritten"
            );
            std::fs::write(path, original).unwrap();
        }
    }
    // Undamaged again: the original state comes back.
    let server = Server::start(&state);
    assert!(server.status.contains("restored"), "{}", server.status);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
