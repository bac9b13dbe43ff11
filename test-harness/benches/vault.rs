//! `make bench` — the vault's cost, measured in one run: AES-256-GCM (4 KiB and 64 KiB) and
//! ECDSA P-384 sign through the full simulated call path (guest-driver -> svsm-core vault), the
//! same RustCrypto crates called directly, and `openssl speed` for the same primitive as the
//! hardware-limit reference. Printed as throughput and ratios; no assertions.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use guest_driver::vault::VaultClient;
use p384::ecdsa::signature::Signer;
use std::process::Command;
use std::time::Instant;
use svsm_abi::vault::{KeyKind, Usage};
use svsm_core::platform::Vmpl;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;

/// Median seconds per call of `f` over `n` calls (after a warm-up).
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n.min(10) {
        f();
    }
    let mut samples: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// `openssl speed` result: bytes/s for AES-256-GCM at `bytes`, or signs/s for ECDSA P-384.
fn openssl_aes(bytes: usize) -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            "1",
            "-bytes",
            &bytes.to_string(),
            "-evp",
            "aes-256-gcm",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("AES-256-GCM") || l.starts_with("aes-256-gcm"))?;
    let kb = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse::<f64>()
        .ok()?;
    Some(kb * 1000.0)
}

fn openssl_p384_signs() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "1", "ecdsap384"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("384 bits ecdsa (nistp384)"))?;
    // "... sign    verify    sign/s verify/s": the second-to-last column is sign/s.
    let cols: Vec<&str> = line.split_whitespace().collect();
    cols.get(cols.len().checked_sub(2)?)?.parse().ok()
}

fn main() {
    let machine = SimMachine::new(LaunchConfig::genoa([0x77; 48])).expect("machine");
    let mut vault = VaultClient::probe(machine.transport(Vmpl::new(1).unwrap())).expect("vault");
    let aes_key = vault
        .create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::DECRYPT)
        .unwrap()
        .id;
    let sign_key = vault
        .create_key(KeyKind::EcdsaP384, Usage::SIGN)
        .unwrap()
        .id;
    let direct_aes = aes_gcm::Aes256Gcm::new_from_slice(&[7u8; 32]).unwrap();
    let direct_p384 = p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).unwrap();

    println!("Vault throughput (median per call; higher is better)");
    println!(
        "{:<24} {:>16} {:>16} {:>16}   {:>12} {:>14}",
        "operation", "vault call", "crate direct", "openssl speed", "vault/direct", "vault/openssl"
    );
    for size in [4096usize, 65536] {
        let data = vec![0x5Au8; size];
        let n = if size > 10_000 { 300 } else { 2000 };
        let vault_s = per_call(n, || {
            vault.encrypt(aes_key, b"", &data).unwrap();
        });
        let direct_s = per_call(n, || {
            let iv = [1u8; 12];
            direct_aes
                .encrypt(
                    (&iv).into(),
                    Payload {
                        msg: &data,
                        aad: b"",
                    },
                )
                .unwrap();
        });
        let mbps = |s: f64| size as f64 / s / 1e6;
        let openssl = openssl_aes(size).map(|b| b / 1e6);
        println!(
            "{:<24} {:>11.1} MB/s {:>11.1} MB/s {:>16} {:>11.3}x {:>14}",
            format!("AES-256-GCM {} KiB", size / 1024),
            mbps(vault_s),
            mbps(direct_s),
            openssl
                .map(|m| format!("{m:.1} MB/s"))
                .unwrap_or_else(|| "n/a".into()),
            mbps(vault_s) / mbps(direct_s),
            openssl
                .map(|m| format!("{:.3}x", mbps(vault_s) / m))
                .unwrap_or_else(|| "n/a".into()),
        );
        println!(
            "{:<24} overhead of the call path: {:+.1}%",
            "",
            (vault_s / direct_s - 1.0) * 100.0
        );
    }
    let vault_s = per_call(300, || {
        vault.sign(sign_key, b"message to sign").unwrap();
    });
    let direct_s = per_call(300, || {
        let _: p384::ecdsa::Signature = direct_p384.sign(b"message to sign");
    });
    let openssl = openssl_p384_signs();
    println!(
        "{:<24} {:>11.0} op/s {:>11.0} op/s {:>16} {:>11.3}x {:>14}",
        "ECDSA P-384 sign",
        1.0 / vault_s,
        1.0 / direct_s,
        openssl
            .map(|o| format!("{o:.0} op/s"))
            .unwrap_or_else(|| "n/a".into()),
        direct_s / vault_s,
        openssl
            .map(|o| format!("{:.3}x", (1.0 / vault_s) / o))
            .unwrap_or_else(|| "n/a".into()),
    );
    println!(
        "{:<24} overhead of the call path: {:+.1}%",
        "",
        (vault_s / direct_s - 1.0) * 100.0
    );
}
