//! Unmodified `tpm2-tools` 5.4 drive the vTPM through the mssim endpoint (`mssim:` TCTI), one
//! tool process per step, exactly as a user would.

use sha2::{Digest, Sha256, Sha384};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use test_harness::mssim::MssimServer;
use test_harness::tpm_backend::start_endpoint;

fn server() -> &'static MssimServer {
    static SERVER: OnceLock<MssimServer> = OnceLock::new();
    SERVER.get_or_init(|| start_endpoint(0).expect("start the mssim endpoint"))
}

/// The TPM has three object slots, like hardware; tests take turns rather than race for them.
static TPM_TURN: Mutex<()> = Mutex::new(());

struct Tools {
    tcti: String,
    dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Tools {
    fn new(name: &str) -> Self {
        let turn = TPM_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let dir =
            std::env::temp_dir().join(format!("svsm-tpm2-tools-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tools {
            tcti: server().tcti(),
            dir,
            _turn: turn,
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
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

    /// Runs a tool that must succeed; returns its stdout.
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

    fn write(&self, file: &str, bytes: &[u8]) -> String {
        std::fs::write(self.dir.join(file), bytes).unwrap();
        self.path(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap()
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn parse_pcr(yaml: &[u8], bank: &str, index: u32) -> Vec<u8> {
    // tpm2_pcrread prints "  sha256:\n    16: 0xABCD...".
    let text = String::from_utf8_lossy(yaml);
    let mut in_bank = false;
    for line in text.lines() {
        let t = line.trim();
        if t.ends_with(':') && !t.starts_with(char::is_numeric) {
            in_bank = t.trim_end_matches(':') == bank;
        } else if in_bank {
            if let Some(v) = t.strip_prefix(&format!("{index}: 0x")) {
                return hex::decode(v).unwrap();
            }
        }
    }
    panic!("PCR {bank}:{index} not in output:\n{text}");
}

#[test]
fn startup_and_getrandom() {
    let t = Tools::new("random");
    // The endpoint already sent Startup(CLEAR) at power-on, like swtpm's startup-clear. The TPM
    // answers a second Startup with TPM_RC_INITIALIZE, which tpm2-tss's ESAPI reports as
    // success (the tss_esapi tests check the raw 0x100 on the wire).
    t.ok("tpm2_startup", &["-c"]);
    let a = t.ok("tpm2_getrandom", &["32"]);
    let b = t.ok("tpm2_getrandom", &["32"]);
    assert_eq!((a.len(), b.len()), (32, 32));
    assert_ne!(a, b);
}

#[test]
fn pcr_extend_and_read_sha256_and_sha384() {
    let t = Tools::new("pcr");
    let before = t.ok("tpm2_pcrread", &["sha256:16+sha384:16"]);
    let d256 = [0xABu8; 32];
    let d384 = [0xCDu8; 48];
    let spec = format!(
        "16:sha256={},sha384={}",
        hex::encode(d256),
        hex::encode(d384)
    );
    t.ok("tpm2_pcrextend", &[&spec]);
    let after = t.ok("tpm2_pcrread", &["sha256:16+sha384:16"]);
    let expect256: Vec<u8> = Sha256::new()
        .chain_update(parse_pcr(&before, "sha256", 16))
        .chain_update(d256)
        .finalize()
        .to_vec();
    let expect384: Vec<u8> = Sha384::new()
        .chain_update(parse_pcr(&before, "sha384", 16))
        .chain_update(d384)
        .finalize()
        .to_vec();
    assert_eq!(parse_pcr(&after, "sha256", 16), expect256);
    assert_eq!(parse_pcr(&after, "sha384", 16), expect384);
}

#[test]
fn createprimary_ecc256_ecc384_rsa2048() {
    let t = Tools::new("primary");
    for alg in ["ecc256", "ecc384", "rsa2048"] {
        let ctx = t.path(&format!("{alg}.ctx"));
        t.ok("tpm2_createprimary", &["-C", "o", "-G", alg, "-c", &ctx]);
        let public = t.ok("tpm2_readpublic", &["-c", &ctx]);
        let text = String::from_utf8_lossy(&public);
        let expect = if alg == "rsa2048" { "rsa" } else { "ecc" };
        assert!(text.contains(&format!("value: {expect}")), "{alg}: {text}");
    }
}

#[test]
fn create_load_sign_verifysignature() {
    let t = Tools::new("sign");
    let primary = t.path("primary.ctx");
    t.ok(
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256", "-c", &primary],
    );
    t.ok(
        "tpm2_create",
        &[
            "-C",
            &primary,
            "-G",
            "ecc256:ecdsa-sha256",
            "-u",
            "key.pub",
            "-r",
            "key.priv",
        ],
    );
    t.ok(
        "tpm2_load",
        &[
            "-C", &primary, "-u", "key.pub", "-r", "key.priv", "-c", "key.ctx",
        ],
    );
    let msg = t.write("msg.txt", b"sign me inside the vTPM");
    t.ok(
        "tpm2_sign",
        &["-c", "key.ctx", "-g", "sha256", "-o", "sig.bin", &msg],
    );
    t.ok(
        "tpm2_verifysignature",
        &["-c", "key.ctx", "-g", "sha256", "-m", &msg, "-s", "sig.bin"],
    );
    // A different message must not verify.
    let other = t.write("other.txt", b"not what was signed");
    let out = t.run(
        "tpm2_verifysignature",
        &[
            "-c", "key.ctx", "-g", "sha256", "-m", &other, "-s", "sig.bin",
        ],
    );
    assert!(!out.status.success());
    t.ok("tpm2_flushcontext", &["-t"]);
}

#[test]
fn quote_and_checkquote() {
    let t = Tools::new("quote");
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
    let nonce = "0123456789abcdef0123456789abcdef";
    t.ok(
        "tpm2_quote",
        &[
            "-c",
            "ak.ctx",
            "-l",
            "sha256:0,1,17",
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
    t.ok(
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
            nonce,
        ],
    );
    // The wrong nonce must fail.
    let out = t.run(
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
            "ffff",
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn nv_define_write_read() {
    let t = Tools::new("nv");
    let index = "0x1500016";
    let _ = t.run("tpm2_nvundefine", &[index, "-C", "o"]);
    t.ok(
        "tpm2_nvdefine",
        &[
            index,
            "-C",
            "o",
            "-s",
            "32",
            "-a",
            "ownerread|ownerwrite|authread|authwrite",
        ],
    );
    let data = t.write("nv.bin", &[0x42; 32]);
    t.ok("tpm2_nvwrite", &[index, "-C", "o", "-i", &data]);
    let out = t.ok("tpm2_nvread", &[index, "-C", "o", "-s", "32"]);
    assert_eq!(out, vec![0x42; 32]);
    t.ok("tpm2_nvundefine", &[index, "-C", "o"]);
}

#[test]
fn pcr_policy_seal_unseals_until_the_pcr_changes() {
    let t = Tools::new("seal");
    t.ok(
        "tpm2_createprimary",
        &["-C", "o", "-G", "ecc256", "-c", "primary.ctx"],
    );
    t.ok("tpm2_pcrread", &["sha256:23", "-o", "pcr23.bin"]);
    t.ok(
        "tpm2_createpolicy",
        &[
            "--policy-pcr",
            "-l",
            "sha256:23",
            "-f",
            "pcr23.bin",
            "-L",
            "policy.dat",
        ],
    );
    let secret = t.write("secret.txt", b"sealed to PCR 23");
    t.ok(
        "tpm2_create",
        &[
            "-C",
            "primary.ctx",
            "-L",
            "policy.dat",
            "-i",
            &secret,
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
        ],
    );
    t.ok(
        "tpm2_load",
        &[
            "-C",
            "primary.ctx",
            "-u",
            "seal.pub",
            "-r",
            "seal.priv",
            "-c",
            "seal.ctx",
        ],
    );
    let out = t.ok("tpm2_unseal", &["-c", "seal.ctx", "-p", "pcr:sha256:23"]);
    assert_eq!(out, b"sealed to PCR 23");
    t.ok(
        "tpm2_pcrextend",
        &[&format!("23:sha256={}", hex::encode([0x11u8; 32]))],
    );
    let out = t.run("tpm2_unseal", &["-c", "seal.ctx", "-p", "pcr:sha256:23"]);
    assert!(!out.status.success(), "unseal after extend must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0x99d") || stderr.contains("0x99D"),
        "expected TPM_RC_POLICY_FAIL: {stderr}"
    );
    t.ok("tpm2_flushcontext", &["-t"]);
}

#[test]
fn readpublic_of_the_persistent_eks() {
    let t = Tools::new("ek");
    let rsa = t.ok("tpm2_readpublic", &["-c", "0x81010001", "-o", "ek-rsa.pub"]);
    let rsa = String::from_utf8_lossy(&rsa);
    assert!(
        rsa.contains("value: rsa") && rsa.contains("bits: 2048"),
        "{rsa}"
    );
    let ecc = t.ok("tpm2_readpublic", &["-c", "0x81010016"]);
    let ecc = String::from_utf8_lossy(&ecc);
    assert!(
        ecc.contains("value: ecc") && ecc.contains("NIST p384"),
        "{ecc}"
    );
    // The persistent handles are listed by the TPM.
    let handles = t.ok("tpm2_getcap", &["handles-persistent"]);
    let handles = String::from_utf8_lossy(&handles);
    assert!(
        handles.contains("0x81010001") && handles.contains("0x81010016"),
        "{handles}"
    );
    assert!(Path::new(&t.path("ek-rsa.pub")).exists());
    let _ = t.read("ek-rsa.pub");
}
