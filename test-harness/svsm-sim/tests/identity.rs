//! The vTPM's standard identity with unmodified clients (docs/identity.md), each step a real tool
//! against `svsm-sim tpm-server` (the full SVSM vTPM protocol path):
//! - `tpm2_getekcertificate` and `tpm2_nvread` return the EK certificates; OpenSSL verifies
//!   each against the EK CA certificate; each holds the key `tpm2_readpublic` shows for its EK;
//!   `host-verifier ek verify` affirms them with the SNP report the CA certificate carries;
//!   a restart of the same launch serves identical bytes, another launch another CA;
//! - `tpm2_makecredential` (host side, no TPM) and `tpm2_activatecredential` through the vTPM
//!   succeed for the real EK and fail for a substituted one;
//! - the platform hierarchy is not the guest's: ChangeEPS, ChangePPS, platform Clear, and
//!   writing or deleting an EK certificate index fail, also after a power cycle; Clear through
//!   lockout still works and leaves the certificates and the EK unchanged.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use svsm_sim::server_process::TpmServerProcess;

const INDICES: [&str; 4] = ["0x01c00002", "0x01c0000a", "0x01c00016", "0x01c00100"];

struct Guest {
    server: TpmServerProcess,
    dir: PathBuf,
}

impl Guest {
    fn start(state: &Path, dir: &Path) -> Guest {
        let server = TpmServerProcess::start(
            Path::new(env!("CARGO_BIN_EXE_svsm-sim")),
            &["--state", &state.to_string_lossy()],
        )
        .expect("start svsm-sim tpm-server");
        std::fs::create_dir_all(dir).unwrap();
        Guest {
            server,
            dir: dir.to_path_buf(),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        Command::new(tool)
            .args(args)
            .env(
                "TPM2TOOLS_TCTI",
                format!("mssim:host=127.0.0.1,port={}", self.server.tpm_port),
            )
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e} (run scripts/bootstrap.sh)"))
    }

    fn ok(&self, tool: &str, args: &[&str]) -> Vec<u8> {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs a tool that must fail; returns its stderr.
    fn refused(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args);
        assert!(
            !out.status.success(),
            "{tool} {args:?} succeeded, it must be refused"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    /// The four certificates as `tpm2_nvread` reads them, in [`INDICES`] order.
    fn nv_certificates(&self) -> Vec<Vec<u8>> {
        INDICES
            .iter()
            .map(|index| {
                let file = format!("nv-{index}.der");
                self.ok("tpm2_nvread", &[index, "-C", index, "-o", &file]);
                self.read(&file)
            })
            .collect()
    }

    /// A platform signal (mssim platform port): 1 power on, 2 power off.
    fn signal(&self, code: u32) {
        let mut s = TcpStream::connect(("127.0.0.1", self.server.tpm_port + 1)).unwrap();
        s.write_all(&code.to_be_bytes()).unwrap();
        let mut ack = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut ack).unwrap();
        assert_eq!(ack, [0; 4], "platform signal {code}");
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl")
}

fn openssl_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs one tpm2-tools tool (name, arguments) against some vTPM.
type Run<'a> = &'a dyn Fn(&str, &[&str]) -> Output;

/// `tpm2_createak` arguments: a restricted ECDSA P-256 key under the RSA EK, its context in
/// `ak.ctx`, public area in `ak.pub` and name in `ak.name`.
const CREATE_AK: [&str; 14] = [
    "-C",
    "0x81010001",
    "-c",
    "ak.ctx",
    "-G",
    "ecc",
    "-g",
    "sha256",
    "-s",
    "ecdsa",
    "-u",
    "ak.pub",
    "-n",
    "ak.name",
];

/// TPM2_ActivateCredential of the tpm2-tools credential file `blob` for the AK in `ak.ctx`,
/// with the EK authorized by a PolicySecret(endorsement) session; the secret goes to `out`.
fn activate(run: Run<'_>, blob: &str, out: &str) -> Output {
    for (tool, args) in [
        (
            "tpm2_startauthsession",
            &["--policy-session", "-S", "session.ctx"][..],
        ),
        ("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]),
    ] {
        let o = run(tool, args);
        assert!(
            o.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let result = run(
        "tpm2_activatecredential",
        &[
            "-c",
            "ak.ctx",
            "-C",
            "0x81010001",
            "-i",
            blob,
            "-o",
            out,
            "-P",
            "session:session.ctx",
        ],
    );
    let _ = run("tpm2_flushcontext", &["session.ctx"]);
    result
}

/// Writes a broker's challenge as a tpm2-tools credential file in `dir`.
fn credential_file(challenge: &host_verifier::broker::api::AkChallenge, dir: &Path, file: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let credential = host_verifier::credential::Credential {
        id_object: b64.decode(&challenge.credential_blob).unwrap(),
        encrypted_secret: b64.decode(&challenge.encrypted_secret).unwrap(),
    };
    std::fs::write(dir.join(file), credential.tpm2_tools_file()).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("svsm-identity-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the scratch directory when the test ends, passed or failed.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn ek_certificates_chain_to_the_launch_ca_and_survive_restarts() {
    let root = scratch("certs");
    let _cleanup = Cleanup(root.clone());
    let state = root.join("state");
    let dir = root.join("work");
    let guest = Guest::start(&state, &dir);
    assert!(
        guest
            .server
            .status
            .contains("EK certificates issued by EK CA"),
        "{}",
        guest.server.status
    );

    // tpm2_getekcertificate reads the low-range RSA and ECC certificates.
    guest.ok("tpm2_getekcertificate", &["-o", "rsa.der", "-o", "ecc.der"]);
    let nv = guest.nv_certificates();
    assert_eq!(
        guest.read("rsa.der"),
        nv[0],
        "getekcertificate = nvread (RSA)"
    );
    assert_eq!(
        guest.read("ecc.der"),
        nv[1],
        "getekcertificate = nvread (ECC)"
    );

    // OpenSSL verifies each against the CA certificate, and each holds its EK's key.
    openssl_ok(
        &dir,
        &[
            "x509",
            "-inform",
            "der",
            "-in",
            "nv-0x01c00100.der",
            "-out",
            "ca.pem",
        ],
    );
    for (index, handle) in [
        ("0x01c00002", "0x81010001"),
        ("0x01c0000a", "0x81010002"),
        ("0x01c00016", "0x81010016"),
    ] {
        let cert = format!("nv-{index}.der");
        let verified = openssl_ok(&dir, &["verify", "-CAfile", "ca.pem", &cert]);
        assert!(
            String::from_utf8_lossy(&verified).contains(": OK"),
            "{index}: {}",
            String::from_utf8_lossy(&verified)
        );
        let cert_key = openssl_ok(
            &dir,
            &["x509", "-inform", "der", "-in", &cert, "-pubkey", "-noout"],
        );
        let pem = format!("ek-{handle}.pem");
        guest.ok("tpm2_readpublic", &["-c", handle, "-f", "pem", "-o", &pem]);
        assert_eq!(
            String::from_utf8_lossy(&cert_key).trim(),
            String::from_utf8_lossy(&guest.read(&pem)).trim(),
            "the certificate at {index} holds the key of the EK at {handle}"
        );
    }

    // A verifier holding only these certificates: the SNP report in the CA certificate binds
    // the CA key and is affirmed under the simulator's TEST roots.
    let psp = test_harness::sim::psp::SimPsp::new(
        test_harness::sim::psp::LaunchConfig::genoa([0x11; 48]),
        test_harness::sim::DEFAULT_CHIP_SEED,
        svsm_core::platform::Vmpl::ZERO,
    )
    .unwrap();
    std::fs::write(dir.join("ark.der"), &psp.chain().ark_der).unwrap();
    std::fs::write(dir.join("ask.der"), &psp.chain().ask_der).unwrap();
    std::fs::write(dir.join("vcek.der"), &psp.chain().vcek_der).unwrap();
    guest.ok("tpm2_readpublic", &["-c", "0x81010001", "-o", "ek-rsa.pub"]);
    let verifier = |extra: &[&str]| {
        Command::new(Path::new(env!("CARGO_BIN_EXE_svsm-sim")).with_file_name("host-verifier"))
            .args(["ek", "verify", "--ca", "nv-0x01c00100.der"])
            .args([
                "--ek",
                "rsa.der",
                "--ek",
                "ecc.der",
                "--ek",
                "nv-0x01c00016.der",
            ])
            .args([
                "--trust-ark",
                "ark.der",
                "--trust-ask",
                "ask.der",
                "--vek",
                "vcek.der",
            ])
            .args(extra)
            .current_dir(&dir)
            .output()
            .expect("host-verifier (built by `make unit`)")
    };
    let out = verifier(&["--ek-public", "ek-rsa.pub"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("verdict: affirming") && text.contains("3 EK certificate(s)"),
        "{text}"
    );
    // Another key as --ek-public: the RSA certificate does not hold it.
    guest.ok("tpm2_readpublic", &["-c", "0x81010002", "-o", "ek-ecc.pub"]);
    let out = verifier(&["--ek-public", "ek-ecc.pub"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Same launch, new process: the same bytes. Another launch (fresh state): another CA.
    drop(guest);
    let again = Guest::start(&state, &dir);
    assert!(
        again.server.status.contains("restored"),
        "{}",
        again.server.status
    );
    assert_eq!(again.nv_certificates(), nv, "identical after a restart");
    drop(again);
    let other = Guest::start(&root.join("other-state"), &root.join("other"));
    let other_nv = other.nv_certificates();
    assert_ne!(
        other_nv[3], nv[3],
        "another launch has another CA certificate"
    );
    std::fs::write(root.join("other/ca.der"), &other_nv[3]).unwrap();
    openssl_ok(
        &root.join("other"),
        &["x509", "-inform", "der", "-in", "ca.der", "-out", "ca.pem"],
    );
    std::fs::write(root.join("other/first-rsa.der"), &nv[0]).unwrap();
    let cross = openssl(
        &root.join("other"),
        &["verify", "-CAfile", "ca.pem", "first-rsa.der"],
    );
    assert!(
        !cross.status.success(),
        "the first launch's EK certificate must not chain to the other CA"
    );
}

#[test]
fn credential_activation_works_for_the_real_ek_only() {
    let root = scratch("credential");
    let _cleanup = Cleanup(root.clone());
    let guest = Guest::start(&root.join("state"), &root.join("work"));
    guest.ok("tpm2_readpublic", &["-c", "0x81010001", "-o", "ek.pub"]);
    guest.ok("tpm2_createak", &CREATE_AK);
    let name = hex::encode(guest.read("ak.name"));
    std::fs::write(
        root.join("work/secret.bin"),
        b"broker challenge 0123456789abcdef",
    )
    .unwrap();

    let run = |tool: &str, args: &[&str]| guest.run(tool, args);
    let activate = |blob: &str, out: &str| activate(&run, blob, out);

    // The host side needs no TPM (-T none) and sees only the EK's public area.
    guest.ok(
        "tpm2_makecredential",
        &[
            "-T",
            "none",
            "-u",
            "ek.pub",
            "-s",
            "secret.bin",
            "-n",
            &name,
            "-o",
            "cred.bin",
        ],
    );
    let out = activate("cred.bin", "recovered.bin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(guest.read("recovered.bin"), guest.read("secret.bin"));

    // A substituted EK (a key the vTPM does not hold): activation fails.
    openssl_ok(&root.join("work"), &["genrsa", "-out", "other.key", "2048"]);
    openssl_ok(
        &root.join("work"),
        &["rsa", "-in", "other.key", "-pubout", "-out", "other.pem"],
    );
    guest.ok(
        "tpm2_makecredential",
        &[
            "-T",
            "none",
            "-G",
            "rsa",
            "-u",
            "other.pem",
            "-s",
            "secret.bin",
            "-n",
            &name,
            "-o",
            "other-cred.bin",
        ],
    );
    let out = activate("other-cred.bin", "nothing.bin");
    assert!(
        !out.status.success(),
        "activation with a substituted EK must fail"
    );
}

#[test]
fn the_platform_hierarchy_is_not_the_guests() {
    let root = scratch("platform");
    let _cleanup = Cleanup(root.clone());
    let guest = Guest::start(&root.join("state"), &root.join("work"));
    let before = guest.nv_certificates();
    guest.ok(
        "tpm2_readpublic",
        &["-c", "0x81010001", "-o", "ek-before.pub"],
    );
    std::fs::write(root.join("work/junk.bin"), [0x55u8; 16]).unwrap();

    let attacks = |g: &Guest| {
        // TPM_RC_HIERARCHY (0x85) on the platform handle: phEnable is clear.
        for (tool, args) in [
            ("tpm2_changeeps", vec![]),
            ("tpm2_changepps", vec![]),
            ("tpm2_clear", vec!["-c", "p"]),
            (
                "tpm2_nvwrite",
                vec!["0x01c00002", "-C", "p", "-i", "junk.bin"],
            ),
            ("tpm2_nvundefine", vec!["0x01c00002", "-C", "p"]),
            (
                "tpm2_hierarchycontrol",
                vec!["-C", "p", "shEnable", "clear"],
            ),
        ] {
            let stderr = g.refused(tool, &args);
            assert!(
                stderr.contains("0x185") || stderr.contains("0x85"),
                "{tool}: {stderr}"
            );
        }
        // The owner cannot write or delete them either.
        g.refused("tpm2_nvwrite", &["0x01c00002", "-C", "o", "-i", "junk.bin"]);
        g.refused(
            "tpm2_nvwrite",
            &["0x01c00002", "-C", "0x01c00002", "-i", "junk.bin"],
        );
        g.refused("tpm2_nvundefine", &["0x01c00002", "-C", "o"]);
    };
    attacks(&guest);
    // After a power cycle and the guest's own Startup, the platform hierarchy is taken again.
    guest.signal(2);
    guest.signal(1);
    attacks(&guest);

    // The owner's and endorsement's hierarchies still work: Clear through lockout (which
    // evicts the persistent EK, as on any TPM), then the owner re-creates the EK: the
    // endorsement seed is unchanged, so it is the same key, and its certificate still holds.
    guest.ok("tpm2_clear", &["-c", "l"]);
    guest.ok(
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256", "-c", "srk.ctx"],
    );
    guest.ok(
        "tpm2_createek",
        &["-c", "0x81010001", "-G", "rsa", "-u", "ek-after.pub"],
    );
    assert_eq!(
        guest.read("ek-before.pub"),
        guest.read("ek-after.pub"),
        "Clear keeps the EPS"
    );
    assert_eq!(
        guest.nv_certificates(),
        before,
        "Clear keeps the EK certificates"
    );
}

#[test]
fn the_broker_certifies_an_ak_only_after_activation_by_the_attested_tpm() {
    use test_harness::broker::{bundle_json, runtime, sim_trust, DataDir, LocalBroker, SimNode};
    use test_harness::mssim::MssimServer;
    use test_harness::tpm_backend::SvsmBackend;

    let rt = runtime().unwrap();
    let data = DataDir::init("ak").unwrap();
    let broker = LocalBroker::start(
        &rt,
        &data.path,
        None,
        sim_trust().unwrap(),
        std::time::Duration::from_secs(300),
    )
    .unwrap();
    let client = broker.client(&data).unwrap();
    rt.block_on(client.put_policy("default", &SimNode::policy()))
        .unwrap();

    // The node, and its vTPM as a guest's tools see it (same machine, SVSM protocol path).
    let node = SimNode::launch(None).unwrap();
    let server = MssimServer::start(0, Box::new(SvsmBackend::new(&node.machine).unwrap())).unwrap();
    let root = scratch("broker-ak");
    let _cleanup = Cleanup(root.clone());
    let tools = |tool: &str, args: &[&str]| -> Output {
        Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", server.tcti())
            .current_dir(&root)
            .output()
            .unwrap()
    };
    // The guest makes an AK of its own under the EK (tpm2_createak: restricted ECDSA P-256).
    let out = tools("tpm2_createak", &CREATE_AK);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ak_tpm2b = std::fs::read(root.join("ak.pub")).unwrap();
    let ak_public = ak_tpm2b[2..].to_vec();

    let activate_here = |challenge: &host_verifier::broker::api::AkChallenge, tag: &str| {
        let (blob, out_file) = (format!("{tag}.cred"), format!("{tag}.secret"));
        credential_file(challenge, &root, &blob);
        activate(&tools, &blob, &out_file)
            .status
            .success()
            .then(|| std::fs::read(root.join(out_file)).unwrap())
    };
    let nonce = |c: &host_verifier::broker::client::BrokerClient| {
        hex::decode(rt.block_on(c.challenge()).unwrap().nonce).unwrap()
    };

    // The exchange: the credential is activated by the attested TPM, the certificate issued.
    let bundle = bundle_json(&node.bundle(&nonce(&client)).unwrap()).unwrap();
    let challenge = rt
        .block_on(client.ak_challenge(bundle, None, &ak_public))
        .unwrap();
    let secret =
        activate_here(&challenge, "good").expect("the attested TPM activates the credential");
    let issued = rt
        .block_on(client.ak_certificate(&challenge.challenge_id, &secret))
        .unwrap();
    std::fs::write(root.join("ak.pem"), &issued.certificate).unwrap();
    std::fs::write(root.join("ak-ca.pem"), &issued.ca).unwrap();
    let verified = openssl_ok(&root, &["verify", "-CAfile", "ak-ca.pem", "ak.pem"]);
    assert!(String::from_utf8_lossy(&verified).contains("ak.pem: OK"));
    // The certificate holds the AK's key and is bound to the attested instance.
    let text = String::from_utf8_lossy(&openssl_ok(
        &root,
        &["x509", "-in", "ak.pem", "-noout", "-text"],
    ))
    .into_owned();
    assert!(
        text.contains(&issued.instance_id) && text.contains("2.23.133.8.3"),
        "{text}"
    );
    let out = tools(
        "tpm2_readpublic",
        &["-c", "ak.ctx", "-f", "pem", "-o", "ak-key.pem"],
    );
    assert!(out.status.success());
    let cert_key = openssl_ok(&root, &["x509", "-in", "ak.pem", "-pubkey", "-noout"]);
    assert_eq!(
        String::from_utf8_lossy(&cert_key).trim(),
        std::fs::read_to_string(root.join("ak-key.pem"))
            .unwrap()
            .trim()
    );
    // host-verifier checks the chain to the broker.
    let out =
        Command::new(Path::new(env!("CARGO_BIN_EXE_svsm-sim")).with_file_name("host-verifier"))
            .args([
                "ek",
                "verify-ak",
                "--cert",
                "ak.pem",
                "--ca",
                "ak-ca.pem",
                "--ak-public",
                "ak.pub",
            ])
            .current_dir(&root)
            .output()
            .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Single use: the same secret again is unknown.
    let again = rt.block_on(client.ak_certificate(&challenge.challenge_id, &secret));
    assert_eq!(again.unwrap_err().status(), Some(404));
    // Another TPM (another launch's) cannot activate this node's credential: a guest that
    // forwards the challenge to a TPM it controls gets nothing, and a guessed secret is refused.
    let bundle = bundle_json(&node.bundle(&nonce(&client)).unwrap()).unwrap();
    let challenge = rt
        .block_on(client.ak_challenge(bundle, None, &ak_public))
        .unwrap();
    // (libtpms is one engine per process: the other TPM runs in its own svsm-sim process.)
    let other = Guest::start(&root.join("other-state"), &root.join("other"));
    let elsewhere = {
        credential_file(&challenge, &root.join("other"), "elsewhere.cred");
        other.ok("tpm2_createak", &CREATE_AK);
        let run = |tool: &str, args: &[&str]| other.run(tool, args);
        activate(&run, "elsewhere.cred", "elsewhere.secret")
    };
    assert!(
        !elsewhere.status.success(),
        "another TPM must not activate the credential"
    );
    drop(other);
    let refused = rt.block_on(client.ak_certificate(&challenge.challenge_id, &[0u8; 32]));
    let err = refused.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(
        err.failed_checks()
            .iter()
            .any(|c| c.check == "broker.credential"),
        "{err:?}"
    );

    // A key that is not a restricted signing key is never challenged.
    let mut unrestricted = ak_public.clone();
    unrestricted[5] &= !0x01; // clear `restricted` (TPMA_OBJECT bit 16, big-endian at 4..8)
    let bundle = bundle_json(&node.bundle(&nonce(&client)).unwrap()).unwrap();
    let err = rt
        .block_on(client.ak_challenge(bundle, None, &unrestricted))
        .unwrap_err();
    assert!(
        err.failed_checks().iter().any(|c| c.check == "broker.ak"),
        "{err:?}"
    );
    server.stop();
    broker.stop(&rt);
}
