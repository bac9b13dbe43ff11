//! Unmodified PKCS#11 clients from Debian against `libsvsm_vault_pkcs11.so` on the host, over a
//! simulated SNP machine (`svsm-sim tpm-server`): OpenSC's `pkcs11-tool` (list, key generation,
//! signing, its `--test` self-test), OpenSSL's pkcs11 engine (a signature verified by plain
//! OpenSSL), GnuTLS's `p11tool` and OpenSSH's `ssh-keygen -D`. Both of the module's ways to the
//! vault are used: the TPM vendor command (the mssim port, as `/dev/tpmrm0` would carry it) and
//! the SVSM call channel; keys made on one are seen on the other (both are VMPL1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use svsm_sim::server_process::TpmServerProcess;

/// The module, built next to this test's binaries (`make unit` builds it first).
fn module() -> PathBuf {
    let sim = PathBuf::from(env!("CARGO_BIN_EXE_svsm-sim"));
    let so = sim.with_file_name("libsvsm_vault_pkcs11.so");
    assert!(
        so.exists(),
        "{} is missing: `cargo build -p svsm-vault-pkcs11` (make unit does)",
        so.display()
    );
    so
}

struct Server {
    process: TpmServerProcess,
}

impl Server {
    fn start() -> Server {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_svsm-sim"));
        Server {
            process: TpmServerProcess::start(&exe, &[]).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Runs a client with the module pointed at the vault: through the TPM vendor command, or
    /// through the call channel.
    fn client(&self, dir: &Path, via_tpm: bool, program: &str, args: &[&str]) -> Output {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(dir)
            .env("PKCS11_MODULE_PATH", module())
            .env_remove("SVSM_VAULT_TPM")
            .env_remove("SVSM_VAULT_CONNECT");
        if via_tpm {
            c.env(
                "SVSM_VAULT_TPM",
                format!("mssim:host=127.0.0.1,port={}", self.process.tpm_port),
            );
        } else {
            c.env(
                "SVSM_VAULT_CONNECT",
                format!("127.0.0.1:{}", self.process.channel_port),
            );
        }
        c.output().unwrap()
    }

    fn ok(&self, dir: &Path, via_tpm: bool, program: &str, args: &[&str]) -> String {
        let out = self.client(dir, via_tpm, program, args);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn debian_pkcs11_clients_use_vault_keys() {
    let server = Server::start();
    let dir = std::env::temp_dir().join(format!("svsm-pkcs11-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let m = module();
    let m = m.to_str().unwrap();
    let tool = |via_tpm, args: &[&str]| {
        let mut all = vec!["--module", m];
        all.extend_from_slice(args);
        server.ok(&dir, via_tpm, "pkcs11-tool", &all)
    };

    // The token and its mechanisms, through the vendor command.
    let slots = tool(true, &["--list-slots"]);
    assert!(slots.contains("token label        : SVSM Vault"), "{slots}");
    let mechanisms = tool(true, &["--list-mechanisms"]);
    for m in ["ECDSA-SHA256", "ECDH1-DERIVE", "AES-GCM", "SHA256-HMAC"] {
        assert!(mechanisms.contains(m), "{m} missing: {mechanisms}");
    }

    // Keys made in the vault; the private halves are sensitive and never extractable. Their
    // CKA_ID is the vault's key id (pkcs11-tool selects signing keys by id only).
    let mut ids = Vec::new();
    for (curve, label) in [("EC:prime256v1", "web"), ("EC:secp384r1", "code-signing")] {
        let made = tool(
            true,
            &[
                "--keypairgen",
                "--key-type",
                curve,
                "--label",
                label,
                "--usage-sign",
            ],
        );
        assert!(
            made.contains("Access:     sensitive, always sensitive, never extractable"),
            "{made}"
        );
        let id = made
            .lines()
            .find_map(|l| l.trim().strip_prefix("ID:"))
            .map(|id| id.trim().to_string())
            .unwrap_or_else(|| panic!("no ID in {made}"));
        ids.push(id);
    }
    // pkcs11-tool's default asks for a key that signs and derives: the vault keeps those apart.
    let both = server.client(
        &dir,
        true,
        "pkcs11-tool",
        &[
            "--module",
            m,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "both",
        ],
    );
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("CKR_TEMPLATE_INCONSISTENT"));
    // A secret key made in the vault: its value cannot be read (pkcs11-tool asks for it),
    // and pkcs11-tool's default, a non-sensitive key, is refused rather than pretended.
    let made = tool(
        false,
        &[
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "disk",
            "--sensitive",
        ],
    );
    assert!(made.contains("Secret Key Object; AES"), "{made}");
    let read = server.client(
        &dir,
        true,
        "pkcs11-tool",
        &[
            "--module",
            m,
            "--read-object",
            "--type",
            "secrkey",
            "--label",
            "disk",
            "-o",
            "disk.key",
        ],
    );
    assert!(!read.status.success() && !dir.join("disk.key").exists());
    assert!(
        String::from_utf8_lossy(&read.stderr).contains("CKR_ATTRIBUTE_SENSITIVE"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let plain = server.client(
        &dir,
        true,
        "pkcs11-tool",
        &[
            "--module",
            m,
            "--keygen",
            "--key-type",
            "AES:32",
            "--label",
            "plain",
        ],
    );
    assert!(String::from_utf8_lossy(&plain.stderr).contains("CKR_TEMPLATE_INCONSISTENT"));

    // pkcs11-tool signs a digest (CKM_ECDSA) and a message (CKM_ECDSA-SHA384); plain OpenSSL
    // verifies both with the public keys read from the token.
    std::fs::write(dir.join("msg"), b"release v1.2.3").unwrap();
    let digest = openssl(
        &dir,
        &["dgst", "-sha256", "-binary", "-out", "msg.sha256", "msg"],
    );
    assert!(digest.status.success());
    // The public keys, read by pkcs11-tool (P-256; its 0.23 cannot build a P-384 EVP_PKEY) and
    // exported by GnuTLS's p11tool.
    tool(
        false,
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            "web",
            "-o",
            "web.der",
        ],
    );
    assert!(openssl(
        &dir,
        &["pkey", "-pubin", "-inform", "DER", "-in", "web.der", "-out", "web.pem"]
    )
    .status
    .success());
    server.ok(
        &dir,
        true,
        "p11tool",
        &[
            "--provider",
            m,
            "--export-pubkey",
            "pkcs11:object=code-signing;type=public",
            "--outfile",
            "code.pem",
        ],
    );
    tool(
        true,
        &[
            "--sign",
            "-m",
            "ECDSA",
            "--id",
            &ids[0],
            "-i",
            "msg.sha256",
            "-o",
            "tool.sig",
            "--signature-format",
            "openssl",
        ],
    );
    tool(
        false,
        &[
            "--sign",
            "-m",
            "ECDSA-SHA384",
            "--id",
            &ids[1],
            "-i",
            "msg",
            "-o",
            "tool384.sig",
            "--signature-format",
            "openssl",
        ],
    );
    for (pem, hash, sig) in [
        ("web.pem", "-sha256", "tool.sig"),
        ("code.pem", "-sha384", "tool384.sig"),
    ] {
        let v = openssl(
            &dir,
            &["dgst", hash, "-verify", pem, "-signature", sig, "msg"],
        );
        assert!(
            String::from_utf8_lossy(&v.stdout).contains("Verified OK"),
            "{sig}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }

    // pkcs11-tool's self-test: its exit status is 0 even when a test fails, so read its verdict.
    let out = server.client(&dir, true, "pkcs11-tool", &["--module", m, "--test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("No errors"), "{text}");

    // OpenSSL through its pkcs11 engine (libp11) finds the key by URI and signs; plain OpenSSL
    // verifies.
    server.ok(
        &dir,
        false,
        "openssl",
        &[
            "dgst",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-sign",
            "pkcs11:token=SVSM%20Vault;object=web;type=private",
            "-sha256",
            "-out",
            "engine.sig",
            "msg",
        ],
    );
    let v = openssl(
        &dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "web.pem",
            "-signature",
            "engine.sig",
            "msg",
        ],
    );
    assert!(String::from_utf8_lossy(&v.stdout).contains("Verified OK"));
    // A tampered message does not verify.
    std::fs::write(dir.join("msg"), b"release v6.6.6").unwrap();
    let v = openssl(
        &dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "web.pem",
            "-signature",
            "engine.sig",
            "msg",
        ],
    );
    assert!(!v.status.success());

    // GnuTLS lists the objects with their URIs and flags.
    let listed = server.ok(&dir, true, "p11tool", &["--provider", m, "--list-all"]);
    assert!(listed.contains("object=web;type=private"), "{listed}");
    assert!(
        listed.contains("Type: Private key (EC/ECDSA-SECP384R1)"),
        "{listed}"
    );
    assert!(
        listed.contains("CKA_NEVER_EXTRACTABLE; CKA_SENSITIVE"),
        "{listed}"
    );

    // OpenSSH lists both keys as public keys it can authenticate with.
    let keys = server.ok(&dir, false, "ssh-keygen", &["-D", m]);
    assert!(
        keys.lines()
            .any(|l| l.starts_with("ecdsa-sha2-nistp256 ") && l.ends_with(" web")),
        "{keys}"
    );
    assert!(
        keys.lines().any(|l| l.starts_with("ecdsa-sha2-nistp384 ")),
        "{keys}"
    );

    // And signs with one through ssh-agent (its PKCS#11 helper loads the module): an SSH
    // signature that OpenSSH itself verifies.
    let sock = dir.join("agent.sock");
    let module_dir = PathBuf::from(m).parent().unwrap().display().to_string();
    let _agent = svsm_process::spawn(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            // ssh-agent loads modules only from an allow-list (default /usr/lib*/*).
            .args(["-P", &format!("{module_dir}/*")])
            .env(
                "SVSM_VAULT_CONNECT",
                format!("127.0.0.1:{}", server.process.channel_port),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ssh = |args: &[&str], program: &str| {
        let out = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ssh(&["-s", m], "ssh-add");
    let public = ssh(&["-L"], "ssh-add");
    let web = public
        .lines()
        .find(|l| l.ends_with(" web"))
        .unwrap_or_else(|| panic!("{public}"));
    std::fs::write(dir.join("web.pub"), format!("{web}\n")).unwrap();
    std::fs::write(dir.join("doc"), b"deploy 42").unwrap();
    ssh(
        &["-Y", "sign", "-f", "web.pub", "-n", "file", "doc"],
        "ssh-keygen",
    );
    let key = web.split(' ').take(2).collect::<Vec<_>>().join(" ");
    std::fs::write(dir.join("allowed"), format!("web {key}\n")).unwrap();
    let verify = |doc: &[u8]| {
        std::fs::write(dir.join("check"), doc).unwrap();
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f", "allowed", "-I", "web", "-n", "file"])
            .args(["-s", "doc.sig"])
            .current_dir(&dir)
            .stdin(std::fs::File::open(dir.join("check")).unwrap())
            .output()
            .unwrap()
    };
    assert!(verify(b"deploy 42").status.success());
    assert!(!verify(b"deploy 43").status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
