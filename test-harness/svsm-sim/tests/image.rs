//! End-to-end tests of the freestanding SVSM image (`svsm-module/image`) under QEMU: real TPM
//! clients (tpm2-tools through `svsm-sim`'s mssim endpoint), the vault and attestation through
//! guest-driver's framed transport on COM1, sealed state across reboots (store on COM2),
//! malformed frames, and the entropy fail-closed path. Every test checks QEMU's exit status:
//! 33 is the image's clean shutdown; a triple fault exits with 0 and fails the test.
//!
//! Nothing is skipped: without QEMU or the image the tests fail and say how to get them
//! (`scripts/bootstrap.sh`, `make image`).
//!
//! `image_vs_hosted_latency` prints the numbers `make bench-image` reports (run with
//! `--nocapture` to see them).

use test_harness::image;

use guest_driver::attest::{attest, Scope};
use guest_driver::transport::SvsmTransport;
use guest_driver::vault::{VaultClient, VaultClientError};
use guest_driver::vtpm::VtpmClient;
use image::{
    default_image_path, test_vcek, CallLine, ImageBackend, ImageMachine, ImageOptions, ImageStats,
    StateBacking, EXIT_CLEAN,
};
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use svsm_abi::frame::{encode_call, CALL_HEADER_LEN};
use svsm_abi::snp::AttestationReport;
use svsm_abi::svsm::{core_call, CallId, CallRegisters, PROTOCOL_CORE};
use svsm_abi::vault::{KeyKind, Usage, VaultStatus};
use svsm_core::tpm2::command::{parse_read_public, read_public};
use test_harness::mssim::TpmBackend;
use test_harness::sim::store::SimStore;

/// QEMU under TCG on a 2-core machine: one image at a time keeps the timings sane.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn boot(options: &ImageOptions) -> Arc<ImageMachine> {
    ImageMachine::boot(options).unwrap_or_else(|e| panic!("booting the SVSM image: {e}"))
}

fn options() -> ImageOptions {
    ImageOptions::new(default_image_path())
}

/// Shuts the image down and requires the clean exit status.
fn shutdown(machine: &Arc<ImageMachine>) -> ImageStats {
    let stats = machine.stats().expect("statistics");
    let code = machine.shutdown().expect("shutdown");
    assert_eq!(
        code,
        EXIT_CLEAN,
        "QEMU exit status (33 = clean; 0 = triple fault); image log:\n{}",
        machine.log()
    );
    stats
}

fn vmpl1_vault(machine: &Arc<ImageMachine>) -> VaultClient<image::ImageTransport> {
    // 16 KiB: request in the first half, response in the second.
    VaultClient::probe(machine.transport(1, 16 * 1024).unwrap()).expect("vault protocol")
}

struct Tools {
    tcti: String,
    dir: PathBuf,
}

impl Tools {
    fn new(tcti: String, name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("svsm-image-tools-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tools { tcti, dir }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("{tool}: {e} (is tpm2-tools installed? run scripts/bootstrap.sh)")
            })
    }

    fn ok(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pcr_value(yaml: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(yaml);
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("16: 0x"))
        .unwrap_or_else(|| panic!("no PCR 16 in {text}"));
    hex::decode(v).unwrap()
}

/// `svsm-sim tpm-server --image` as a user runs it: the binary boots the image, serves the
/// mssim ports and relays guest processes' framed calls (`--guest-port`).
struct SimServer {
    child: svsm_process::Child,
    port: u16,
    guest_port: u16,
}

impl SimServer {
    fn start() -> Self {
        let image = default_image_path();
        assert!(
            image.is_file(),
            "the SVSM image {} does not exist: build it with `make image`",
            image.display()
        );
        // Killed with its process group (and so its QEMU) when the test ends or panics.
        let mut child = svsm_process::spawn(
            Command::new(env!("CARGO_BIN_EXE_svsm-sim"))
                .args(["tpm-server", "--port", "0", "--guest-port", "0", "--image"])
                .arg(&image)
                .stderr(std::process::Stdio::piped()),
        )
        .expect("spawn svsm-sim");
        let stderr = child.inner_mut().stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{line}");
                let _ = tx.send(line);
            }
        });
        let port_after = |line: &str, marker: &str| -> Option<u16> {
            let rest = &line[line.find(marker)? + marker.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let (mut port, mut guest_port) = (None, None);
        while port.is_none() || guest_port.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(240))
                .expect("svsm-sim did not start the image endpoint");
            if line.contains("listening on") {
                port = port_after(&line, "127.0.0.1:");
            }
            if line.contains("call channel") {
                guest_port = port_after(&line, "127.0.0.1:");
            }
        }
        SimServer {
            child,
            port: port.unwrap(),
            guest_port: guest_port.unwrap(),
        }
    }

    fn tcti(&self) -> String {
        format!("mssim:host=127.0.0.1,port={}", self.port)
    }

    /// TPM_STOP on the command port; svsm-sim then shuts the image down and exits 0 only if
    /// QEMU exited with the clean status (33).
    fn stop(mut self) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(&21u32.to_be_bytes()).unwrap();
        drop(s);
        let status = self
            .child
            .wait_timeout(Duration::from_secs(120))
            .unwrap()
            .expect("svsm-sim exits after TPM_STOP");
        assert!(status.success(), "svsm-sim exited with {status}");
    }
}

#[test]
fn tpm2_tools_and_vault_through_svsm_sim_tpm_server_image() {
    let _t = turn();
    let server = SimServer::start();
    let t = Tools::new(server.tcti(), "tools");

    t.ok("tpm2_startup", &["-c"]);
    let a = t.ok("tpm2_getrandom", &["32"]);
    let b = t.ok("tpm2_getrandom", &["32"]);
    assert_eq!((a.len(), b.len()), (32, 32));
    assert_ne!(a, b);

    let before = pcr_value(&t.ok("tpm2_pcrread", &["sha256:16"]));
    let digest = [0xABu8; 32];
    t.ok(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", hex::encode(digest))],
    );
    let after = pcr_value(&t.ok("tpm2_pcrread", &["sha256:16"]));
    let expected: Vec<u8> = Sha256::new()
        .chain_update(&before)
        .chain_update(digest)
        .finalize()
        .to_vec();
    assert_eq!(after, expected, "PCR 16 = SHA-256(old || digest)");

    t.ok(
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256", "-c", "primary.ctx"],
    );
    t.ok(
        "tpm2_createprimary",
        &[
            "-C",
            "e",
            "-G",
            "ecc256:ecdsa-sha256:null",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda",
            "-c",
            "ak.ctx",
        ],
    );
    t.ok(
        "tpm2_readpublic",
        &["-c", "ak.ctx", "-o", "ak.pem", "-f", "pem"],
    );
    let nonce = "00112233445566778899aabbccddeeff";
    t.ok(
        "tpm2_quote",
        &[
            "-c",
            "ak.ctx",
            "-l",
            "sha256:0,16",
            "-q",
            nonce,
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            "quote.pcrs",
            "-g",
            "sha256",
        ],
    );
    let check = |n: &str| {
        t.run(
            "tpm2_checkquote",
            &[
                "-u",
                "ak.pem",
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
                "-f",
                "quote.pcrs",
                "-g",
                "sha256",
                "-q",
                n,
            ],
        )
    };
    let good = check(nonce);
    assert!(
        good.status.success(),
        "tpm2_checkquote: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(!check("ffff").status.success(), "a wrong nonce must fail");

    // The vault through the relayed call channel: guest-driver's framed transport over TCP, as
    // `svsm-vault --port` uses it.
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.guest_port)).unwrap();
    let transport =
        guest_driver::framed::FramedTransport::new(stream, 1, image::DRIVER_BUFFER_GPA, 16 * 1024);
    let mut v = VaultClient::probe(transport).unwrap();
    let key = v
        .create_key(KeyKind::EcdsaP384, Usage::SIGN | Usage::VERIFY)
        .unwrap();
    let sig = v.sign(key.id, b"via svsm-sim").unwrap();
    assert!(v.verify(key.id, &sig, b"via svsm-sim").unwrap());
    drop(v);

    server.stop();
}

#[test]
fn vault_round_trips_and_attestation_through_the_framed_transport() {
    let _t = turn();
    let machine = boot(&options());
    let mut v = vmpl1_vault(&machine);

    let key = v
        .create_key(KeyKind::EcdsaP256, Usage::SIGN | Usage::VERIFY)
        .unwrap();
    let sig = v.sign(key.id, b"message from the host").unwrap();
    assert!(v.verify(key.id, &sig, b"message from the host").unwrap());
    assert!(!v.verify(key.id, &sig, b"another message").unwrap());
    {
        use p256::ecdsa::signature::Verifier;
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public).unwrap();
        vk.verify(
            b"message from the host",
            &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
        )
        .expect("the image's signature verifies outside");
    }

    let aes = v
        .create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::DECRYPT)
        .unwrap();
    let sealed = v.encrypt(aes.id, b"aad", b"attack at dawn").unwrap();
    assert_eq!(
        v.decrypt(aes.id, b"aad", &sealed).unwrap(),
        b"attack at dawn"
    );
    let mut bad = sealed.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        v.decrypt(aes.id, b"aad", &bad),
        Err(VaultClientError::Vault(VaultStatus::AuthenticationFailed))
    ));

    // Attestation: an EMULATED-PSP report bound to the nonce and the services manifest.
    let nonce: Vec<u8> = (0..64u8).collect();
    let mut t = machine.transport(1, 64 * 1024).unwrap();
    let evidence = attest(&mut t, Scope::AllServices, &nonce, true).unwrap();
    let report = AttestationReport::parse(&evidence.report).unwrap();
    assert_eq!(report.vmpl(), 0);
    let expected: [u8; 64] = Sha512::new()
        .chain_update(&nonce)
        .chain_update(&evidence.manifest)
        .finalize()
        .into();
    assert_eq!(report.raw().report_data, expected);
    assert!(report.raw().chip_id.starts_with(b"EMULATED PSP"));
    assert!(
        evidence.certs.iter().all(|&b| b == 0),
        "the emulated PSP has no certificate chain"
    );
    {
        use p384::ecdsa::signature::Verifier;
        let signed = &evidence.report[..svsm_abi::snp::report::SIGNED_LEN];
        let (r, s) = report.raw().signature.to_be_components().unwrap();
        let sig = p384::ecdsa::Signature::from_scalars(r, s).unwrap();
        test_vcek()
            .verify(signed, &sig)
            .expect("signed by the emulated PSP's test key");
    }

    shutdown(&machine);
}

fn ek_public(machine: &Arc<ImageMachine>) -> Vec<u8> {
    let mut client = VtpmClient::probe(
        machine
            .transport(1, svsm_abi::vtpm::VTPM_BUFFER_SIZE)
            .unwrap(),
    )
    .unwrap();
    let cmd = read_public(vtpm::EK_RSA_HANDLE).unwrap();
    let mut rsp = vec![0u8; 4096];
    let n = client.send_command(&cmd, &mut rsp).unwrap();
    parse_read_public(&rsp[..n]).unwrap()
}

#[test]
fn sealed_state_survives_a_reboot() {
    let _t = turn();
    let store = SimStore::new();
    let mut opts = options();
    opts.state = StateBacking::Memory(store.clone());

    let first = boot(&opts);
    let ek1 = ek_public(&first);
    let mut v = vmpl1_vault(&first);
    let key = v
        .create_key(KeyKind::EcdsaP384, Usage::SIGN | Usage::VERIFY)
        .unwrap();
    let s1 = shutdown(&first);
    assert_eq!(s1.state_status, 0, "first boot is fresh");
    assert!(store.writes() >= 2, "the image sealed its state on COM2");

    // The call line does not matter to the state: the second boot takes the virtio console.
    opts.line = CallLine::Virtio;
    let second = boot(&opts);
    let s2 = second.stats().unwrap();
    assert_eq!(s2.state_status, 1, "second boot restored the sealed state");
    assert!(s2.state_epoch >= s1.state_epoch);
    assert_eq!(ek_public(&second), ek1, "the EK public key is identical");
    let mut v = vmpl1_vault(&second);
    let sig = v.sign(key.id, b"after reboot").unwrap();
    {
        use p384::ecdsa::signature::Verifier;
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&key.public).unwrap();
        vk.verify(
            b"after reboot",
            &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
        )
        .expect("the vault key survived the reboot");
    }
    shutdown(&second);

    // A store the host tampered with does not unseal: the image runs ephemeral, never on it.
    let mut slot = store.slot(0).or_else(|| store.slot(1)).unwrap();
    let mid = slot.len() / 2;
    slot[mid] ^= 1;
    store.set_slot(0, Some(slot.clone()));
    store.set_slot(1, Some(slot));
    let third = boot(&opts);
    assert_eq!(
        third.stats().unwrap().state_status,
        2,
        "tampered state is refused"
    );
    assert_ne!(ek_public(&third), ek1);
    shutdown(&third);
}

/// Reads one reply frame from the raw line; returns its RAX.
fn read_reply(line: &mut std::os::unix::net::UnixStream) -> u64 {
    let mut head = [0u8; 8];
    line.read_exact(&mut head).unwrap();
    assert_eq!(&head[..4], b"SVFR");
    let total = u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize;
    let mut rest = vec![0u8; total - 8];
    line.read_exact(&mut rest).unwrap();
    u64::from_le_bytes(rest[..8].try_into().unwrap())
}

#[test]
fn malformed_frames_never_crash_the_image() {
    let _t = turn();
    for line in [CallLine::Com1, CallLine::Virtio] {
        let mut opts = options();
        opts.line = line;
        malformed_frames_on(&boot(&opts));
    }
}

fn malformed_frames_on(machine: &Arc<ImageMachine>) {
    let query = CallRegisters {
        rax: CallId {
            protocol: PROTOCOL_CORE,
            call: core_call::QUERY_PROTOCOL,
        }
        .to_rax(),
        rcx: u64::from(svsm_abi::svsm::PROTOCOL_VTPM) << 32 | 1,
        ..Default::default()
    };
    let invalid_parameter = 0x8000_0005u64;
    {
        let mut line = machine.lock_link();
        let mut frame = vec![0u8; CALL_HEADER_LEN + 64];
        let n = encode_call(&query, 1, 0x1000, &[0; 64], &mut frame).unwrap();
        let good = frame[..n].to_vec();

        // Junk without the magic is skipped silently; then a good call is answered.
        line.write_all(b"\x00\xffSVF SVFX garbage SVF").unwrap();
        line.write_all(&good).unwrap();
        assert_eq!(read_reply(&mut line), 0);

        let mut cases: Vec<Vec<u8>> = Vec::new();
        // declared length beyond the maximum (only the 8-byte head is sent)
        cases.push([b"SVFC".as_slice(), &u32::MAX.to_le_bytes()].concat());
        // declared length below the call header
        cases.push([b"SVFC".as_slice(), &52u32.to_le_bytes()].concat());
        // VMPL 7, non-zero reserved bytes, VMPL0, inconsistent buffer length
        let mut c = good.clone();
        c[48] = 7;
        cases.push(c);
        let mut c = good.clone();
        c[50] = 1;
        cases.push(c);
        let mut c = good.clone();
        c[48] = 0;
        cases.push(c);
        let mut c = good.clone();
        c[60] = 63;
        cases.push(c);
        for (i, case) in cases.iter().enumerate() {
            line.write_all(case).unwrap();
            assert_eq!(read_reply(&mut line), invalid_parameter, "case {i}");
        }
        // A buffer outside the guest's memory.
        let n = encode_call(&query, 1, u64::MAX - 16, &[0; 64], &mut frame).unwrap();
        line.write_all(&frame[..n]).unwrap();
        assert_eq!(
            read_reply(&mut line),
            0x8000_0003,
            "SVSM_ERR_INVALID_ADDRESS"
        );

        // Random frames with a consistent length: each gets some reply, none stops the image.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let len = (next() % 300) as usize;
            let mut f: Vec<u8> = (0..CALL_HEADER_LEN + len).map(|_| next() as u8).collect();
            f[..4].copy_from_slice(b"SVFC");
            f[4..8].copy_from_slice(&((CALL_HEADER_LEN + len) as u32).to_le_bytes());
            // Keep the control protocol out (a random shutdown would end the test early).
            f[12..16].copy_from_slice(&0u32.to_le_bytes());
            if next() % 2 == 0 {
                f[48] = 1 + (next() % 3) as u8;
                f[49..52].fill(0);
                f[60..64].copy_from_slice(&(len as u32).to_le_bytes());
                f[52..60].copy_from_slice(&(0x10_0000 + (next() % 0x1000)).to_le_bytes());
            }
            line.write_all(&f).unwrap();
            read_reply(&mut line);
        }
        line.write_all(&good).unwrap();
        assert_eq!(read_reply(&mut line), 0, "still serving");
    }
    let stats = shutdown(machine);
    assert!(stats.malformed_frames >= 6);
}

#[test]
fn entropy_failure_keeps_the_tpm_from_starting() {
    let _t = turn();
    let mut opts = options();
    opts.append = Some("fault=entropy".into());
    let machine = boot(&opts);
    assert!(
        ImageBackend::new(&machine).is_err(),
        "no vTPM is served when the entropy source failed"
    );
    let mut v = vmpl1_vault(&machine);
    assert!(matches!(
        v.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT),
        Err(VaultClientError::Vault(VaultStatus::EntropyFailed))
    ));
    let stats = shutdown(&machine);
    assert!(stats.entropy_failed);
    assert!(!stats.tpm_present);
}

#[test]
fn store_protocol_decoder_is_strict() {
    use image::store_codec::{encode_store_reply, parse_store_request, StoreOp, StoreRequest};
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(b"SVSQ");
    h[4..8].copy_from_slice(&26u32.to_le_bytes());
    h[8] = 2;
    h[9] = 1;
    h[12..16].copy_from_slice(&10u32.to_le_bytes());
    assert_eq!(
        parse_store_request(&h),
        Ok(StoreRequest {
            op: StoreOp::Write,
            slot: 1,
            len: 10
        })
    );
    for (at, v) in [(0, b'X'), (4, 27), (8, 3), (8, 1), (10, 1), (14, 0x10)] {
        let mut bad = h;
        bad[at] = v;
        assert!(parse_store_request(&bad).is_err(), "byte {at} = {v}");
    }
    assert!(parse_store_request(&h[..15]).is_err());
    let reply = encode_store_reply(0, b"abc");
    assert_eq!(&reply[..4], b"SVSA");
    assert_eq!(reply.len(), 19);
    assert_eq!(&reply[4..8], &19u32.to_le_bytes());
}

#[test]
fn panic_and_cpu_exception_wipe_and_exit_with_distinct_statuses() {
    let _t = turn();
    for (call, status, what) in [(2, 99, "PANIC"), (3, 101, "CPU EXCEPTION 14")] {
        let mut opts = options();
        opts.append = Some("fault=control".into());
        let machine = boot(&opts);
        machine.control_no_reply(call).unwrap();
        let code = machine.wait_exit(Duration::from_secs(60)).unwrap();
        let log = machine.log();
        assert_eq!(code, status, "exit status for {what}; log:\n{log}");
        assert!(
            log.contains(what) && log.contains("wiping secrets"),
            "{log}"
        );
    }
    // Without the switch the fault calls are refused and the image keeps serving.
    let machine = boot(&options());
    let mut t = machine.transport(1, 0).unwrap();
    let mut regs = CallRegisters {
        rax: CallId {
            protocol: image::CONTROL_PROTOCOL,
            call: 2,
        }
        .to_rax(),
        ..Default::default()
    };
    t.raw_call(&mut regs).unwrap();
    assert_eq!(regs.rax, 0x8000_0002, "SVSM_ERR_UNSUPPORTED_CALL");
    shutdown(&machine);
}

/// Per-command latency through the image vs the hosted simulator (the same svsm-core + libtpms
/// path, native), the image size and its heap/stack high-water marks. Printed, not asserted
/// beyond sanity: the numbers depend on the machine.
#[test]
fn image_vs_hosted_latency() {
    let _t = turn();
    let sim =
        test_harness::sim::SimMachine::new(test_harness::sim::psp::LaunchConfig::genoa([0x11; 48]))
            .unwrap();
    let mut hosted = test_harness::tpm_backend::SvsmBackend::new(&sim).unwrap();
    for line in [CallLine::Com1, CallLine::Virtio] {
        let mut opts = options();
        opts.line = line;
        let machine = boot(&opts);
        latency_report(&machine, line, &mut hosted);
    }
}

fn latency_report(
    machine: &Arc<ImageMachine>,
    line: CallLine,
    hosted: &mut test_harness::tpm_backend::SvsmBackend,
) {
    let before = machine.stats().unwrap();
    let mut image_backend = ImageBackend::new(machine).unwrap();
    let get_random = hex::decode("80010000000c0000017b0020").unwrap();
    let pcr_read = hex::decode("8001000000140000017e00000001000b03000001").unwrap();
    // PCR_Extend(16) with a password session (TPM_RS_PW, empty auth), one SHA-256 digest.
    let mut pcr_extend = Vec::new();
    pcr_extend.extend_from_slice(&0x8002u16.to_be_bytes());
    pcr_extend.extend_from_slice(&65u32.to_be_bytes());
    pcr_extend.extend_from_slice(&0x182u32.to_be_bytes());
    pcr_extend.extend_from_slice(&16u32.to_be_bytes());
    pcr_extend.extend_from_slice(&9u32.to_be_bytes());
    pcr_extend.extend_from_slice(&0x4000_0009u32.to_be_bytes());
    pcr_extend.extend_from_slice(&[0, 0, 0, 0, 0]);
    pcr_extend.extend_from_slice(&1u32.to_be_bytes());
    pcr_extend.extend_from_slice(&0x000bu16.to_be_bytes());
    pcr_extend.extend_from_slice(&[0xAB; 32]);
    assert_eq!(pcr_extend.len(), 65);
    let read_ek = read_public(vtpm::EK_RSA_HANDLE).unwrap();

    fn time(b: &mut dyn TpmBackend, cmd: &[u8], n: u32) -> Duration {
        let mut rsp = vec![0u8; 4096];
        let len = b.send_command(0, cmd, &mut rsp).unwrap();
        assert_eq!(
            &rsp[6..10],
            &[0, 0, 0, 0],
            "TPM rc for {}",
            hex::encode(cmd)
        );
        assert!(len >= 10);
        let start = Instant::now();
        for _ in 0..n {
            b.send_command(0, cmd, &mut rsp).unwrap();
        }
        start.elapsed() / n
    }

    println!(
        "\nper-command latency (mean of 20), image under QEMU/TCG (calls on {line:?}) vs hosted simulator:"
    );
    println!(
        "{:<26}{:>13}{:>13}{:>9}{:>18}",
        "command", "image", "hosted", "ratio", "in-image module"
    );
    for (name, cmd) in [
        ("GetRandom(32)", &get_random),
        ("PCR_Read(sha256:16)", &pcr_read),
        ("PCR_Extend(16, sha256)", &pcr_extend),
        ("ReadPublic(EK)", &read_ek),
    ] {
        let i = time(&mut image_backend, cmd, 20);
        let inside = machine.stats().unwrap();
        let h = time(hosted, cmd, 20);
        println!(
            "{name:<26}{:>10.1} us{:>10.1} us{:>8.0}x{:>15.1} us",
            i.as_secs_f64() * 1e6,
            h.as_secs_f64() * 1e6,
            i.as_secs_f64() / h.as_secs_f64(),
            inside.last_call_ticks as f64 * 1e6 / inside.tsc_hz as f64
        );
    }
    // The framing cost alone: a core-protocol query carrying a one-page buffer.
    let mut t = machine.transport(1, 4096).unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        let mut regs = CallRegisters {
            rax: CallId {
                protocol: PROTOCOL_CORE,
                call: 0,
            }
            .to_rax(),
            ..Default::default()
        };
        t.raw_call(&mut regs).unwrap();
    }
    println!(
        "{:<28}{:>11.1} us   (round trip of a 4 KiB frame each way)",
        "core QUERY_PROTOCOL",
        start.elapsed().as_secs_f64() * 1e6 / 20.0
    );
    let image_file = std::fs::metadata(default_image_path()).unwrap().len();
    let stats = shutdown(machine);
    println!(
        "image: ELF file {:.2} MiB (with debug info), loaded {:.2} MiB incl. .bss; boot {:.1} s",
        image_file as f64 / 1048576.0,
        stats.image_bytes as f64 / 1048576.0,
        machine.boot_time.as_secs_f64()
    );
    println!(
        "heap: peak {:.2} MiB of {} MiB (C heap peak {:.2} MiB, largest block {} KiB); \
         stack: peak {} KiB of {} KiB; TSC {} MHz",
        stats.heap_peak as f64 / 1048576.0,
        stats.heap_size >> 20,
        stats.c_heap_peak as f64 / 1048576.0,
        stats.c_heap_largest >> 10,
        stats.stack_peak >> 10,
        stats.stack_size >> 10,
        stats.tsc_hz / 1_000_000
    );
    println!(
        "store requests on COM2 during the run: {} (sealed state after NV changes)",
        stats.store_requests - before.store_requests
    );
    assert!(stats.stack_peak < stats.stack_size);
}
