//! PKCS#11 throughput, side by side in one run: ECDSA P-256 `C_Sign` and AES-256-GCM 4 KiB
//! `C_Encrypt` per second through
//! - our module, over the SVSM call channel and over the TPM vendor command, into the vault of
//!   a simulated SNP machine (`svsm-sim tpm-server`, release build);
//! - SoftHSM2 (Debian's softhsm2: keys in the process, no isolation);
//! - tpm2-pkcs11 (Debian's libtpm2-pkcs11-1, what users would put on a vTPM) over the same
//!   vTPM through the mssim TCTI. It has no AES-GCM; its AES-CBC is shown, labelled.
//!
//! Each module is loaded, initialized, measured for a fixed time per operation and finalized in
//! turn, all through the `cryptoki` crate. Printed as ops/s and ratios; no assertions.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3);
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TPM2_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";

/// Operations per second of `op` over [`WINDOW`], or why it could not run.
fn rate(mut op: impl FnMut() -> cryptoki::error::Result<()>) -> Result<f64, String> {
    op().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < WINDOW {
        op().map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

struct Row {
    name: String,
    sign: Result<f64, String>,
    encrypt: Result<f64, String>,
    encrypt_note: &'static str,
}

/// Loads `module`, opens its first token (initializing it with PINs when `init` says so),
/// makes a P-256 key and an AES-256 key, and measures.
fn measure(name: &str, module: &str, init: bool, gcm: bool) -> Row {
    let row = |sign, encrypt| Row {
        name: name.into(),
        sign,
        encrypt,
        encrypt_note: if gcm {
            ""
        } else {
            " (AES-256-CBC: it has no GCM)"
        },
    };
    let run = || -> Result<Row, String> {
        let p = Pkcs11::new(module).map_err(|e| format!("load {module}: {e}"))?;
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| e.to_string())?;
        let slot = *p
            .get_slots_with_token()
            .map_err(|e| e.to_string())?
            .first()
            .ok_or("no slot")?;
        let (so, user) = (AuthPin::from("so-1234"), AuthPin::from("user-5678"));
        if init {
            p.init_token(slot, &so, "bench")
                .map_err(|e| e.to_string())?;
        }
        let session: Session = p.open_rw_session(slot).map_err(|e| e.to_string())?;
        if init {
            session
                .login(UserType::So, Some(&so))
                .map_err(|e| e.to_string())?;
            session.init_pin(&user).map_err(|e| e.to_string())?;
            session.logout().map_err(|e| e.to_string())?;
            session
                .login(UserType::User, Some(&user))
                .map_err(|e| e.to_string())?;
        }
        let label = format!("bench-{}", name.split(' ').next_back().unwrap_or("key"));
        let ec = session.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Verify(true),
                // tpm2-pkcs11 makes token objects only.
                Attribute::Token(true),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Sensitive(true),
                Attribute::Token(true),
                Attribute::Label(label.clone().into_bytes()),
            ],
        );
        let digest = [0x42u8; 32];
        let sign = match ec {
            Ok((_, ec)) => rate(|| session.sign(&Mechanism::Ecdsa, ec, &digest).map(|_| ())),
            Err(e) => Err(format!("EC key: {e}")),
        };
        let aes = session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Sensitive(true),
                Attribute::Token(true),
                Attribute::Label(format!("{label}-aes").into_bytes()),
            ],
        );
        let data = vec![0x5au8; 4096];
        let mut counter = 0u64;
        let encrypt = match aes {
            Err(e) => Err(format!("AES key: {e}")),
            Ok(aes) => rate(|| {
                counter += 1;
                if gcm {
                    // A fresh IV per message, as GCM requires.
                    let mut iv = [0u8; 12];
                    iv[..8].copy_from_slice(&counter.to_be_bytes());
                    let params = GcmParams::new(&mut iv, b"", 128.into())?;
                    session
                        .encrypt(&Mechanism::AesGcm(params), aes, &data)
                        .map(|_| ())
                } else {
                    let mut iv = [0u8; 16];
                    iv[..8].copy_from_slice(&counter.to_be_bytes());
                    session
                        .encrypt(&Mechanism::AesCbc(iv), aes, &data)
                        .map(|_| ())
                }
            }),
        };
        drop(session);
        p.finalize().map_err(|e| e.to_string())?;
        Ok(row(sign, encrypt))
    };
    run().unwrap_or_else(|e| row(Err(e.clone()), Err(e)))
}

/// The vault's own primitives (RustCrypto p256 and aes-gcm, as svsm-core links them), called
/// directly: what the vault rows would be with a free transport.
fn in_process() -> Row {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let key = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).expect("a scalar");
    let digest = [0x42u8; 32];
    let sign = rate(|| {
        let _: p256::ecdsa::Signature = key.sign_prehash(&digest).expect("signs");
        Ok(())
    });
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&[0x22; 32]).expect("a key");
    let mut counter = 0u64;
    let mut data = vec![0x5au8; 4096];
    let encrypt = rate(|| {
        counter += 1;
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&counter.to_be_bytes());
        cipher
            .encrypt_in_place_detached(&iv.into(), b"", &mut data)
            .expect("encrypts");
        Ok(())
    });
    Row {
        name: "(the vault's RustCrypto code, in process)".into(),
        sign,
        encrypt,
        encrypt_note: "",
    }
}

fn cell(r: &Result<f64, String>) -> String {
    match r {
        Ok(v) => format!("{v:>10.0}"),
        Err(e) => format!("  n/a: {}", e.split(". ").next().unwrap_or(e)),
    }
}

fn ratio(a: &Result<f64, String>, b: &Result<f64, String>) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) if *b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

fn main() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_svsm-sim"));
    let ours = exe.with_file_name("libsvsm_vault_pkcs11.so");
    assert!(
        ours.exists(),
        "{} is missing: cargo build --release -p svsm-vault-pkcs11 (make bench does)",
        ours.display()
    );
    let ours = ours.to_string_lossy().into_owned();
    for peer in [SOFTHSM, TPM2_PKCS11] {
        assert!(
            Path::new(peer).exists(),
            "{peer} is missing (scripts/bootstrap.sh installs softhsm2 and libtpm2-pkcs11-1)"
        );
    }
    let server = svsm_sim::server_process::TpmServerProcess::start(&exe, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let (tpm_port, channel_port) = (server.tpm_port, server.channel_port);
    let dir = std::env::temp_dir().join(format!("svsm-bench-pkcs11-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("softhsm")).expect("temp dir");
    std::fs::create_dir_all(dir.join("tpm2")).expect("temp dir");
    let softhsm_conf = dir.join("softhsm2.conf");
    std::fs::write(
        &softhsm_conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("softhsm").display()
        ),
    )
    .expect("softhsm2.conf");
    // Each module reads its environment when it is initialized.
    std::env::set_var("SOFTHSM2_CONF", &softhsm_conf);
    std::env::set_var("TPM2_PKCS11_STORE", dir.join("tpm2"));
    std::env::set_var(
        "TPM2_PKCS11_TCTI",
        format!("mssim:host=127.0.0.1,port={tpm_port}"),
    );
    std::env::set_var("TPM2_PKCS11_LOG_LEVEL", "0");

    let mut rows = Vec::new();
    std::env::set_var("SVSM_VAULT_CONNECT", format!("127.0.0.1:{channel_port}"));
    rows.push(measure(
        "svsm-vault module, call channel",
        &ours,
        false,
        true,
    ));
    std::env::remove_var("SVSM_VAULT_CONNECT");
    std::env::set_var(
        "SVSM_VAULT_TPM",
        format!("mssim:host=127.0.0.1,port={tpm_port}"),
    );
    rows.push(measure(
        "svsm-vault module, TPM vendor command",
        &ours,
        false,
        true,
    ));
    std::env::remove_var("SVSM_VAULT_TPM");
    rows.push(measure("SoftHSM2 (no isolation)", SOFTHSM, true, true));
    rows.push(measure("tpm2-pkcs11 (same vTPM)", TPM2_PKCS11, true, false));
    // The floor under the vault's rows: the same RustCrypto code the vault runs, in this
    // process, with no transport at all.
    rows.push(in_process());

    println!(
        "\nPKCS#11 over the vault vs SoftHSM2 and tpm2-pkcs11 (ops/s, one run, {WINDOW:?} each)"
    );
    println!(
        "{:<40} {:>22} {:>28}",
        "", "ECDSA P-256 C_Sign/s", "AES-256-GCM 4 KiB C_Encrypt/s"
    );
    for r in &rows {
        println!(
            "{:<40} {:>22} {:>28}{}",
            r.name,
            cell(&r.sign),
            cell(&r.encrypt),
            r.encrypt_note
        );
    }
    let (ch, tpm, soft, t2, floor) = (&rows[0], &rows[1], &rows[2], &rows[3], &rows[4]);
    println!("\nratios (ours / peer; goal: >= 5x tpm2-pkcs11, within 2x of SoftHSM2)");
    println!(
        "  sign:    / tpm2-pkcs11: call channel {}, TPM path {};  / SoftHSM2: call channel {}, TPM path {}",
        ratio(&ch.sign, &t2.sign),
        ratio(&tpm.sign, &t2.sign),
        ratio(&ch.sign, &soft.sign),
        ratio(&tpm.sign, &soft.sign)
    );
    println!(
        "  encrypt: / tpm2-pkcs11 (its CBC): call channel {}, TPM path {};  / SoftHSM2: call channel {}, TPM path {}",
        ratio(&ch.encrypt, &t2.encrypt),
        ratio(&tpm.encrypt, &t2.encrypt),
        ratio(&ch.encrypt, &soft.encrypt),
        ratio(&tpm.encrypt, &soft.encrypt)
    );
    println!(
        "  floor:   SoftHSM2 / the vault's code in process: sign {}, encrypt {} (what no transport can beat)",
        ratio(&soft.sign, &floor.sign),
        ratio(&soft.encrypt, &floor.encrypt)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
