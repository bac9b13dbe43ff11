//! QEMU's TPM emulator backend (`svsm-sim tpm-server --qemu-ctrl`): first a client that speaks
//! the control and data channels exactly as QEMU 7.2 does (order, sizes, the SCM_RIGHTS data
//! descriptor, the version probe before INIT), with hostile messages mixed in; then real QEMU
//! with Debian's OVMF measuring its boot into our vTPM, a `system_reset`, and a QEMU killed in
//! the middle of its work.

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::{IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use svsm_abi::swtpm::{cap, code, RESULT_BAD_ORDINAL, RESULT_BAD_PARAMETER, RESULT_SUCCESS};
use svsm_sim::qemu_tpm::QemuTpmServer;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

/// One engine per process, and QEMU under TCG on 2 cores: one test at a time.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("svsm-qemu-tpm-{tag}-{}.sock", std::process::id()))
}

/// A control-channel client playing QEMU.
struct FakeQemu {
    ctrl: UnixStream,
    data: Option<UnixStream>,
}

impl FakeQemu {
    fn connect(path: &std::path::Path) -> FakeQemu {
        let ctrl = UnixStream::connect(path).unwrap();
        ctrl.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        FakeQemu { ctrl, data: None }
    }

    fn send(&mut self, code: u32, payload: &[u8], answer_len: usize) -> Vec<u8> {
        let mut msg = code.to_be_bytes().to_vec();
        msg.extend_from_slice(payload);
        self.ctrl.write_all(&msg).unwrap();
        let mut answer = vec![0u8; answer_len];
        self.ctrl.read_exact(&mut answer).unwrap();
        answer
    }

    fn result(&mut self, code: u32, payload: &[u8]) -> u32 {
        u32::from_be_bytes(self.send(code, payload, 4).try_into().unwrap())
    }

    /// SET_DATAFD: the code with one end of a socketpair as SCM_RIGHTS, as QEMU sends it.
    fn set_datafd(&mut self) -> u32 {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fds = [theirs.as_raw_fd()];
        let code = code::SET_DATAFD.to_be_bytes();
        sendmsg::<()>(
            self.ctrl.as_raw_fd(),
            &[IoSlice::new(&code)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(theirs);
        ours.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        self.data = Some(ours);
        let mut r = [0u8; 4];
        self.ctrl.read_exact(&mut r).unwrap();
        u32::from_be_bytes(r)
    }

    /// One raw TPM command on the data channel; the whole response.
    fn tpm(&mut self, command: &[u8]) -> Vec<u8> {
        let data = self.data.as_mut().unwrap();
        data.write_all(command).unwrap();
        let mut header = [0u8; 10];
        data.read_exact(&mut header).unwrap();
        let size = u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; size - 10];
        data.read_exact(&mut rest).unwrap();
        [header.to_vec(), rest].concat()
    }
}

fn rc(response: &[u8]) -> u32 {
    u32::from_be_bytes(response[6..10].try_into().unwrap())
}

const STARTUP_CLEAR: [u8; 12] = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x44, 0, 0];
const GET_RANDOM_16: [u8; 12] = [0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7B, 0, 16];
const READ_CLOCK: [u8; 10] = [0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x81];

#[test]
fn the_control_and_data_channels_behave_as_qemu_expects() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x44; 48])).unwrap();
    let path = socket_path("proto");
    let server =
        QemuTpmServer::start(&path, Box::new(SvsmBackend::new(&machine).unwrap())).unwrap();
    let mut q = FakeQemu::connect(&path);

    // QEMU's start order: SET_DATAFD, the version probe, GET_CAPABILITY, STOP,
    // SET_BUFFERSIZE(0), STOP, SET_BUFFERSIZE(size), INIT.
    assert_eq!(q.set_datafd(), RESULT_SUCCESS);
    let probe = q.tpm(&READ_CLOCK);
    assert_eq!((&probe[..2], rc(&probe)), (&[0x80, 0x01][..], 0x100));
    let caps = u64::from_be_bytes(q.send(code::GET_CAPABILITY, &[], 8).try_into().unwrap());
    assert_eq!(caps, cap::QEMU_TPM2_REQUIRED, "exactly what is implemented");
    assert_eq!(q.result(code::STOP, &[]), RESULT_SUCCESS);
    let query = q.send(code::SET_BUFFERSIZE, &0u32.to_be_bytes(), 16);
    assert_eq!(&query[..4], &RESULT_SUCCESS.to_be_bytes());
    assert_eq!(&query[12..16], &4096u32.to_be_bytes(), "maximum");
    let set = q.send(code::SET_BUFFERSIZE, &0xF80u32.to_be_bytes(), 16);
    assert_eq!(&set[..8], &[0, 0, 0, 0, 0, 0, 0x0F, 0x80]);
    assert_eq!(q.result(code::INIT, &0u32.to_be_bytes()), RESULT_SUCCESS);
    assert!(server.running());
    // Not while running.
    let busy = q.send(code::SET_BUFFERSIZE, &0x1000u32.to_be_bytes(), 16);
    assert_ne!(&busy[..4], &RESULT_SUCCESS.to_be_bytes());
    let est = q.send(code::GET_TPMESTABLISHED, &[], 8);
    assert_eq!(est, [0, 0, 0, 0, 0, 0, 0, 0]);

    // The firmware sends Startup itself (INIT does not), then anything goes.
    assert_eq!(rc(&q.tpm(&STARTUP_CLEAR)), 0);
    let random = q.tpm(&GET_RANDOM_16);
    assert_eq!((rc(&random), random.len()), (0, 10 + 2 + 16));

    // Hostile control messages: typed refusals, the channel keeps working.
    assert_eq!(
        q.result(code::SET_LOCALITY, &[5, 0, 0, 0]),
        RESULT_BAD_PARAMETER
    );
    assert_eq!(
        q.result(code::INIT, &0x8000_0000u32.to_be_bytes()),
        RESULT_BAD_PARAMETER
    );
    assert_eq!(
        q.result(code::RESET_TPMESTABLISHED, &[0, 0, 0, 0]),
        svsm_abi::swtpm::RESULT_FAIL,
        "locality 0 may not reset the bit"
    );
    // SET_DATAFD without a descriptor.
    assert_eq!(q.result(code::SET_DATAFD, &[]), RESULT_BAD_PARAMETER);
    assert_eq!(rc(&q.tpm(&GET_RANDOM_16)), 0, "the data channel survived");
    // A TPM command whose header declares more than the buffer: answered, channel closed.
    let mut huge = GET_RANDOM_16;
    huge[2..6].copy_from_slice(&0x10000u32.to_be_bytes());
    assert_eq!(rc(&q.tpm(&huge)), 0x142);
    // STOP, then a command: not initialised.
    assert_eq!(q.set_datafd(), RESULT_SUCCESS);
    assert_eq!(q.result(code::STOP, &[]), RESULT_SUCCESS);
    assert_eq!(rc(&q.tpm(&GET_RANDOM_16)), 0x100);
    // An unknown command: refused, and the connection ends (its length is unknown).
    assert_eq!(q.result(0x0C, &[]), RESULT_BAD_ORDINAL);
    let mut b = [0u8; 1];
    assert_eq!(q.ctrl.read(&mut b).unwrap(), 0, "closed");

    // The server goes on: a new QEMU connects and initialises the TPM again.
    let mut again = FakeQemu::connect(&path);
    assert_eq!(again.set_datafd(), RESULT_SUCCESS);
    assert_eq!(
        again.result(code::INIT, &1u32.to_be_bytes()),
        RESULT_SUCCESS
    );
    assert_eq!(rc(&again.tpm(&STARTUP_CLEAR)), 0);
    assert_eq!(again.result(code::SHUTDOWN, &[]), RESULT_SUCCESS);
    assert!(server
        .control_log()
        .starts_with(&[code::SET_DATAFD, code::GET_CAPABILITY]));
    drop(server);
    assert!(!path.exists(), "socket removed");
}

/// QEMU with Debian's OVMF and a tpm-crb device backed by `svsm-sim`.
struct Guest {
    qemu: svsm_process::Child,
    serial: PathBuf,
    monitor: PathBuf,
}

fn boot_ovmf(ctrl: &std::path::Path, tag: &str) -> Guest {
    let dir = std::env::temp_dir();
    let serial = dir.join(format!("svsm-ovmf-{tag}-{}.serial", std::process::id()));
    let monitor = dir.join(format!("svsm-ovmf-{tag}-{}.mon", std::process::id()));
    let _ = std::fs::remove_file(&serial);
    let qemu = svsm_process::spawn(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-m", "256"])
            .args(["-display", "none", "-nodefaults"])
            .args(["-bios", "/usr/share/ovmf/OVMF.fd"])
            .arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", ctrl.display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args(["-device", "tpm-crb,tpmdev=tpm0"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("qemu-system-x86_64 (scripts/bootstrap.sh installs it)");
    Guest {
        qemu,
        serial,
        monitor,
    }
}

impl Guest {
    /// Waits until the serial console shows `marker`.
    fn wait_for(&mut self, marker: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.serial).unwrap_or_default();
            if text.contains(marker) {
                return;
            }
            assert!(
                self.qemu.try_wait().unwrap().is_none(),
                "QEMU exited; console:\n{text}"
            );
            assert!(
                Instant::now() < deadline,
                "no {marker:?} on the console:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn monitor(&self, command: &str) {
        let mut m = UnixStream::connect(&self.monitor).unwrap();
        m.write_all(format!("{command}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = std::fs::remove_file(&self.serial);
        let _ = std::fs::remove_file(&self.monitor);
    }
}

fn pcr(machine: &SimMachine, index: u32) -> [u8; 32] {
    use guest_driver::vtpm::VtpmClient;
    use svsm_core::tpm2::command::{parse_pcr_read, pcr_read_sha256};
    let mut tpm =
        VtpmClient::probe(machine.transport(svsm_core::platform::Vmpl::new(1).unwrap())).unwrap();
    let mut rsp = [0u8; 4096];
    let n = tpm
        .send_command(&pcr_read_sha256(1 << index).unwrap(), &mut rsp)
        .unwrap();
    parse_pcr_read(&rsp[..n]).unwrap().1[0]
}

fn extend16(machine: &SimMachine) {
    use guest_driver::vtpm::VtpmClient;
    let mut tpm =
        VtpmClient::probe(machine.transport(svsm_core::platform::Vmpl::new(1).unwrap())).unwrap();
    // TPM2_PCR_Extend(16, sha256 = 0x11..), password session with empty auth.
    let mut cmd = vec![0x80, 0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x82, 0, 0, 0, 16];
    cmd.extend_from_slice(&[0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0]);
    cmd.extend_from_slice(&[0, 0, 0, 1, 0, 0x0B]);
    cmd.extend_from_slice(&[0x11; 32]);
    let len = cmd.len() as u32;
    cmd[2..6].copy_from_slice(&len.to_be_bytes());
    let mut rsp = [0u8; 4096];
    let n = tpm.send_command(&cmd, &mut rsp).unwrap();
    assert_eq!(rc(&rsp[..n]), 0, "PCR_Extend");
}

#[test]
fn ovmf_measures_its_boot_into_our_vtpm_survives_a_reset_and_a_killed_qemu() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x45; 48])).unwrap();
    let path = socket_path("ovmf");
    let server =
        QemuTpmServer::start(&path, Box::new(SvsmBackend::new(&machine).unwrap())).unwrap();

    let start = Instant::now();
    let mut guest = boot_ovmf(&path, "a");
    guest.wait_for("Shell>", Duration::from_secs(120));
    let boot = start.elapsed();
    // OVMF's measured boot: PCR 0 (firmware), 7 (secure-boot policy) are no longer zero.
    let (pcr0, pcr7) = (pcr(&machine, 0), pcr(&machine, 7));
    assert_ne!(pcr0, [0; 32]);
    assert_ne!(pcr7, [0; 32]);
    let log = server.control_log();
    for c in [
        code::SET_DATAFD,
        code::GET_CAPABILITY,
        code::STOP,
        code::SET_BUFFERSIZE,
        code::INIT,
    ] {
        assert!(log.contains(&c), "{c:#x} in {log:x?}");
    }
    let commands = server.commands();
    assert!(commands > 20, "{commands} TPM commands");
    eprintln!(
        "OVMF to its shell in {:.1} s, {commands} TPM commands",
        boot.as_secs_f64()
    );

    // system_reset: INIT again, PCRs start from zero (PCR 16, which OVMF never touches, is
    // reset), NV is kept (the same firmware gives the same PCR 0).
    extend16(&machine);
    assert_ne!(pcr(&machine, 16), [0; 32]);
    std::fs::write(&guest.serial, b"").unwrap();
    let inits = log.iter().filter(|&&c| c == code::INIT).count();
    guest.monitor("system_reset");
    guest.wait_for("Shell>", Duration::from_secs(120));
    let log = server.control_log();
    assert_eq!(log.iter().filter(|&&c| c == code::INIT).count(), inits + 1);
    assert_eq!(pcr(&machine, 16), [0; 32], "PCRs reset");
    assert_eq!(pcr(&machine, 0), pcr0, "same firmware, same measurement");

    // QEMU killed in the middle of its work: the server goes on; the next QEMU boots.
    drop(guest);
    let mut guest = boot_ovmf(&path, "b");
    std::thread::sleep(Duration::from_secs(2));
    let _ = guest.qemu.kill();
    drop(guest);
    let mut guest = boot_ovmf(&path, "c");
    guest.wait_for("Shell>", Duration::from_secs(120));
    assert_eq!(pcr(&machine, 0), pcr0);
}
