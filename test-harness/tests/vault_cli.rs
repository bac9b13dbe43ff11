//! `svsm-vault` (guest-driver's CLI) against the simulated machine through the framed SVSM
//! call channel over loopback TCP: the same path the binary takes.

use clap::Parser;
use guest_driver::cli::{run, Cli};
use guest_driver::framed::FramedTransport;
use std::net::TcpStream;
use test_harness::guest_channel::GuestChannel;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;

fn svsm_vault(port: u16, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["svsm-vault"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    run(
        &cli,
        FramedTransport::new(stream, cli.channel.vmpl, 0x20_0000, 40 * 4096),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn create_sign_verify_encrypt_seal_attest_from_a_guest_process() {
    let machine = SimMachine::new(LaunchConfig::genoa([0x44; 48])).unwrap();
    let channel = GuestChannel::start(0, machine.clone()).unwrap();
    let port = channel.port();
    let dir = std::env::temp_dir().join(format!("svsm-vault-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    std::fs::write(dir.join("doc.txt"), b"pay 10 to alice").unwrap();

    let out = svsm_vault(port, &["create", "--kind", "p384", "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = v["key"].as_u64().unwrap().to_string();
    assert_eq!(v["public"].as_str().unwrap().len(), 2 * 97);
    svsm_vault(
        port,
        &[
            "sign",
            "--key",
            &key,
            "--in",
            &p("doc.txt"),
            "--out",
            &p("doc.sig"),
        ],
    )
    .unwrap();
    assert_eq!(
        svsm_vault(
            port,
            &[
                "verify",
                "--key",
                &key,
                "--in",
                &p("doc.txt"),
                "--sig",
                &p("doc.sig")
            ]
        )
        .unwrap(),
        "signature verifies"
    );
    std::fs::write(dir.join("forged.txt"), b"pay 99 to mallory").unwrap();
    assert!(svsm_vault(
        port,
        &[
            "verify",
            "--key",
            &key,
            "--in",
            &p("forged.txt"),
            "--sig",
            &p("doc.sig")
        ]
    )
    .is_err());

    let aes = svsm_vault(port, &["create", "--kind", "aes"]).unwrap();
    let aes = aes.split_whitespace().nth(1).unwrap().to_string();
    svsm_vault(
        port,
        &[
            "encrypt",
            "--key",
            &aes,
            "--in",
            &p("doc.txt"),
            "--out",
            &p("doc.enc"),
            "--aad",
            "v1",
        ],
    )
    .unwrap();
    svsm_vault(
        port,
        &[
            "decrypt",
            "--key",
            &aes,
            "--in",
            &p("doc.enc"),
            "--out",
            &p("doc.dec"),
            "--aad",
            "v1",
        ],
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.join("doc.dec")).unwrap(),
        b"pay 10 to alice"
    );
    let wrong_aad = svsm_vault(
        port,
        &[
            "decrypt",
            "--key",
            &aes,
            "--in",
            &p("doc.enc"),
            "--out",
            &p("x"),
            "--aad",
            "v2",
        ],
    );
    assert!(wrong_aad.unwrap_err().contains("AuthenticationFailed"));

    svsm_vault(
        port,
        &[
            "seal",
            "--in",
            &p("doc.txt"),
            "--out",
            &p("doc.sealed"),
            "--pcrs",
            "16,23",
        ],
    )
    .unwrap();
    svsm_vault(
        port,
        &[
            "unseal",
            "--in",
            &p("doc.sealed"),
            "--out",
            &p("doc.unsealed"),
        ],
    )
    .unwrap();
    assert_eq!(
        std::fs::read(dir.join("doc.unsealed")).unwrap(),
        b"pay 10 to alice"
    );
    assert!(svsm_vault(
        port,
        &[
            "seal",
            "--in",
            &p("doc.txt"),
            "--out",
            &p("y"),
            "--pcrs",
            "24"
        ]
    )
    .is_err());

    // Another VMPL does not see VMPL1's keys.
    assert!(svsm_vault(
        port,
        &["--vmpl", "2", "sign", "--key", &key, "--in", &p("doc.txt")]
    )
    .unwrap_err()
    .contains("KeyNotFound"));
    let list = svsm_vault(port, &["list", "--json"]).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    svsm_vault(
        port,
        &["attest", "--nonce", "00112233", "--out-dir", &p("evidence")],
    )
    .unwrap();
    let report = std::fs::read(dir.join("evidence/report.bin")).unwrap();
    assert_eq!(
        svsm_abi::snp::AttestationReport::parse(&report)
            .unwrap()
            .vmpl(),
        0
    );
    assert!(!std::fs::read(dir.join("evidence/certs.bin"))
        .unwrap()
        .is_empty());
    drop(channel);
    let _ = std::fs::remove_dir_all(&dir);
}
