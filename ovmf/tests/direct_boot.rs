//! PCR values of a non-SEV QEMU + OVMF + Linux EFI-stub direct boot (`ovmf::direct_boot`):
//! the modelled events against a real boot's event log and quoted PCRs (captured with Debian
//! bookworm's QEMU 7.2 and OVMF.fd, Linux 6.1), the LoadOptions digest against a logged one,
//! and QEMU's setup-header patches and every refusal on synthetic images.

use ovmf::direct_boot::{
    boot_events, expected_pcrs, kernel_digest, load_options_digest, patched_kernel,
    pe_image_digest, replay, BootEvent, DirectBoot, DirectBootError, COMPUTED, NOT_COMPUTED,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use svsm_abi::eventlog::{EventLog, EV_NO_ACTION};

/// The firmware event log (binary_bios_measurements) and the quoted SHA-256 PCRs of one real
/// boot of the modelled stack (provenance: svsm-module/abi/tests/data/qemu-ovmf-linux6.1).
const LOG: &[u8] = include_bytes!(
    "../../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/ovmf-binary_bios_measurements.bin"
);
const QUOTED: &str =
    include_str!("../../svsm-module/abi/tests/data/qemu-ovmf-linux6.1/quoted-pcrs-sha256.txt");

const MIB: u64 = 1 << 20;

fn quoted() -> BTreeMap<usize, [u8; 32]> {
    QUOTED
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(i, v)| {
            let v = v.trim().trim_start_matches("0x");
            (
                i.trim().parse().unwrap(),
                hex::decode(v).unwrap().try_into().unwrap(),
            )
        })
        .collect()
}

/// The logged SHA-256 digests, per PCR, in order.
fn logged() -> BTreeMap<usize, Vec<[u8; 32]>> {
    let log = EventLog::parse(LOG).unwrap();
    let mut out: BTreeMap<usize, Vec<[u8; 32]>> = BTreeMap::new();
    for e in log.events().filter(|e| e.event_type != EV_NO_ACTION) {
        out.entry(e.pcr as usize)
            .or_default()
            .push(*e.sha256.unwrap());
    }
    out
}

fn per_pcr(events: &[ovmf::direct_boot::PcrEvent]) -> BTreeMap<usize, Vec<[u8; 32]>> {
    let mut out: BTreeMap<usize, Vec<[u8; 32]>> = BTreeMap::new();
    for e in events {
        out.entry(e.pcr).or_default().push(e.digest);
    }
    out
}

#[test]
fn modelled_events_equal_the_logged_boot_and_its_quote() {
    let logged = logged();
    // The three inputs that depend on the user's files, as the log recorded them.
    let kernel = logged[&4][0];
    assert_eq!(
        hex::encode(kernel),
        "5e348e328947613d835f6623cb33fde8cc9cecb889e65d04441e59169419ba23"
    );
    let (options, initrd) = (logged[&9][0], logged[&9][1]);
    let events = boot_events(kernel, Some(options), Some(initrd));
    // Every event of every computed PCR, digest for digest and in order.
    let modelled = per_pcr(&events);
    for pcr in COMPUTED {
        assert_eq!(modelled[&pcr], logged[&pcr], "PCR {pcr} events");
    }
    // And the replay equals what the TPM quoted.
    let quoted = quoted();
    let pcrs = replay(&events);
    assert_eq!(pcrs.keys().copied().collect::<Vec<_>>(), COMPUTED);
    for (pcr, value) in &pcrs {
        assert_eq!(
            hex::encode(value),
            hex::encode(quoted[pcr]),
            "PCR {pcr} against the quote"
        );
    }
    // PCRs 0 and 1 are the ones left out, and the log does extend them.
    assert_eq!(NOT_COMPUTED, [0, 1]);
    assert!(NOT_COMPUTED.iter().all(|p| logged.contains_key(p)));
    assert!(logged
        .keys()
        .all(|p| COMPUTED.contains(p) || NOT_COMPUTED.contains(p)));
}

#[test]
fn firmware_constants_are_the_logged_ones() {
    // PCRs 2, 3, 5, 6 and 7 do not depend on the files: any inputs give the quoted values.
    let quoted = quoted();
    let pcrs = replay(&boot_events([7; 32], None, None));
    for pcr in [2, 3, 5, 6, 7] {
        assert_eq!(pcrs[&pcr], quoted[&pcr], "PCR {pcr}");
    }
    let labels: Vec<String> = boot_events([0; 32], None, None)
        .iter()
        .filter(|e| e.pcr == 7)
        .map(|e| e.event.label())
        .collect();
    assert_eq!(
        labels,
        [
            "EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot",
            "EV_EFI_VARIABLE_DRIVER_CONFIG PK",
            "EV_EFI_VARIABLE_DRIVER_CONFIG KEK",
            "EV_EFI_VARIABLE_DRIVER_CONFIG db",
            "EV_EFI_VARIABLE_DRIVER_CONFIG dbx",
            "EV_SEPARATOR",
        ]
    );
    // Without an initrd or a command line, PCR 9 is never extended.
    assert_eq!(pcrs[&9], [0; 32]);
}

/// The LOADED_IMAGE::LoadOptions digest logged by a real boot of the modelled stack (QEMU 7.2,
/// OVMF.fd, Debian's Linux 6.1, 512 MiB, with an initrd), run by `svsm-sim guest run --append
/// "svsm.nonce=00112233"`: its PCR 9 EV_EVENT_TAG event. The kernel printed its command line as
/// "console=ttyS0 rootfstype=ramfs panic=-1 svsm.task=tpm svsm.nonce=00112233 initrd=initrd",
/// i.e. the -append string plus OVMF's " initrd=initrd".
const LOGGED_LOAD_OPTIONS: &str =
    "f1fc7ef3e360250184f0f3e94e92da56c1a1d8f54b96ac5f20946f75520a809f";

#[test]
fn load_options_digest_equals_a_logged_boot() {
    let cmdline = "console=ttyS0 rootfstype=ramfs panic=-1 svsm.task=tpm svsm.nonce=00112233";
    let d = load_options_digest(cmdline, true).unwrap().unwrap();
    assert_eq!(hex::encode(d), LOGGED_LOAD_OPTIONS);
    // Without the initrd there is no suffix; nothing is trimmed.
    assert_ne!(load_options_digest(cmdline, false).unwrap(), Some(d));
    assert_ne!(
        load_options_digest(&format!("{cmdline} "), true).unwrap(),
        Some(d)
    );
}

#[test]
fn load_options_edge_cases() {
    // No command line and no initrd: OVMF passes no LoadOptions, nothing is measured.
    assert_eq!(load_options_digest("", false).unwrap(), None);
    // An initrd alone: " initrd=initrd" and a UTF-16 NUL.
    let mut want = Vec::new();
    for b in b" initrd=initrd" {
        want.extend_from_slice(&[*b, 0]);
    }
    want.extend_from_slice(&[0, 0]);
    assert_eq!(
        load_options_digest("", true).unwrap(),
        Some(Sha256::digest(&want).into())
    );
    assert_eq!(
        load_options_digest("a", false).unwrap(),
        Some(Sha256::digest([b'a', 0, 0, 0]).into())
    );
    assert_eq!(
        load_options_digest("caf\u{e9}", false),
        Err(DirectBootError::CmdlineByte {
            offset: 3,
            byte: 0xC3
        })
    );
}

// A synthetic EFI-stub bzImage: a PE32+ image with no sections whose setup header says
// protocol 2.15, setup_sects 7, LOADED_HIGH, XLF_CAN_BE_LOADED_ABOVE_4G.
const NT: usize = 0x40;
const OPT: usize = NT + 24;
const CHECKSUM: usize = OPT + 64;
const SECURITY_DIR: usize = OPT + 112 + 4 * 8;
const SIZE_OF_HEADERS: usize = 0x400;
const LEN: usize = 0x3000;

fn le(k: &mut [u8], at: usize, bytes: &[u8]) {
    k[at..at + bytes.len()].copy_from_slice(bytes);
}

fn synthetic() -> Vec<u8> {
    let mut k: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    k[..0x1F1].fill(0);
    le(&mut k, 0, b"MZ");
    le(&mut k, 0x3C, &(NT as u32).to_le_bytes());
    le(&mut k, NT, b"PE\0\0");
    le(&mut k, NT + 4, &0x8664u16.to_le_bytes()); // Machine
    le(&mut k, NT + 6, &0u16.to_le_bytes()); // NumberOfSections
    le(&mut k, NT + 20, &240u16.to_le_bytes()); // SizeOfOptionalHeader
    le(&mut k, OPT, &0x20Bu16.to_le_bytes()); // PE32+
    le(&mut k, OPT + 60, &(SIZE_OF_HEADERS as u32).to_le_bytes());
    le(&mut k, CHECKSUM, &0x1234_5678u32.to_le_bytes());
    le(&mut k, OPT + 108, &16u32.to_le_bytes()); // NumberOfRvaAndSizes
    k[0x1F1..0x240].fill(0);
    k[0x1F1] = 7; // setup_sects
    le(&mut k, 0x202, b"HdrS");
    le(&mut k, 0x206, &0x20Fu16.to_le_bytes());
    k[0x211] = 0x01; // LOADED_HIGH
    le(&mut k, 0x22C, &0x7FFF_FFFFu32.to_le_bytes()); // initrd_addr_max
    le(&mut k, 0x236, &0x0003u16.to_le_bytes()); // XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    k
}

/// Authenticode of a section-less PE without certificates, spelled out: everything but the
/// checksum and the certificate-table directory entry.
fn authenticode_by_hand(k: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&k[..CHECKSUM]);
    h.update(&k[CHECKSUM + 4..SECURITY_DIR]);
    h.update(&k[SECURITY_DIR + 8..]);
    h.finalize().into()
}

fn boot<'a>(kernel: &'a [u8], initrd: Option<&'a [u8]>, cmdline: &'a str) -> DirectBoot<'a> {
    DirectBoot {
        kernel,
        initrd,
        cmdline,
        memory_bytes: 512 * MIB,
    }
}

fn u32_at(k: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(k[at..at + 4].try_into().unwrap())
}

#[test]
fn qemu_header_patches() {
    let k = synthetic();
    let initrd = vec![0x5Au8; 0x12345];
    let p = patched_kernel(&boot(&k, Some(&initrd), "console=ttyS0")).unwrap();
    assert_eq!(p.len(), k.len());
    assert_eq!(u32_at(&p, 0x228), 0x0002_0000, "cmd_line_ptr");
    assert_eq!(p[0x210], 0xB0, "type_of_loader");
    assert_eq!(p[0x211], 0x81, "loadflags | CAN_USE_HEAP");
    assert_eq!(&p[0x224..0x226], &0xFE00u16.to_le_bytes(), "heap_end_ptr");
    // 512 MiB: initrd_max = 0x2000_0000 - 0x28000 - 1; the initrd ends below it, page-aligned.
    assert_eq!(u32_at(&p, 0x218), (0x1FFD_7FFF - 0x12345) & !0xFFF);
    assert_eq!(u32_at(&p, 0x21C), 0x12345, "ramdisk_size");
    assert_eq!(&p[0x1FA..0x1FC], &k[0x1FA..0x1FC], "vid_mode untouched");
    // Nothing else changes.
    let changed: Vec<usize> = (0..k.len()).filter(|&i| k[i] != p[i]).collect();
    assert!(changed
        .iter()
        .all(|i| [0x210, 0x211].contains(i) || (0x218..0x22C).contains(i)));

    // Without an initrd the ramdisk fields stay as they are.
    let p = patched_kernel(&boot(&k, None, "")).unwrap();
    assert_eq!(&p[0x218..0x220], &k[0x218..0x220]);

    // The initrd address follows the memory: below 2816 MiB all RAM is low, above it 2 GiB.
    let at = |mib: u64| {
        let b = DirectBoot {
            memory_bytes: mib * MIB,
            ..boot(&k, Some(&initrd), "")
        };
        u32_at(&patched_kernel(&b).unwrap(), 0x218)
    };
    assert_eq!(at(2048), (0x7FFD_7FFF - 0x12345) & !0xFFF);
    assert_eq!(at(2560), (0x9FFD_7FFF - 0x12345) & !0xFFF);
    assert_eq!(at(2816), (0x7FFD_7FFF - 0x12345) & !0xFFF);
    assert_eq!(at(16384), at(2816));
    // Protocol 2.11 ignores xloadflags: initrd_addr_max (2 GiB - 1) is the limit.
    let mut old = k.clone();
    le(&mut old, 0x206, &0x20Bu16.to_le_bytes());
    let b = DirectBoot {
        memory_bytes: 2560 * MIB,
        ..boot(&old, Some(&initrd), "")
    };
    assert_eq!(
        u32_at(&patched_kernel(&b).unwrap(), 0x218),
        (0x7FFF_FFFF - 0x12345) & !0xFFF
    );
}

#[test]
fn kernel_digest_is_the_authenticode_of_the_patched_image() {
    let k = synthetic();
    let initrd = vec![1u8; 4096];
    let b = boot(&k, Some(&initrd), "console=ttyS0");
    let d = kernel_digest(&b).unwrap();
    assert_eq!(d, authenticode_by_hand(&patched_kernel(&b).unwrap()));
    assert_ne!(d, pe_image_digest(&k).unwrap());
    assert_eq!(pe_image_digest(&k).unwrap(), authenticode_by_hand(&k));
    // The digest depends on the initrd size and memory, not on the initrd's bytes.
    let same_size = vec![2u8; 4096];
    assert_eq!(kernel_digest(&boot(&k, Some(&same_size), "x")).unwrap(), d);
    let bigger = vec![1u8; 8192];
    assert_ne!(kernel_digest(&boot(&k, Some(&bigger), "")).unwrap(), d);
    let more_memory = DirectBoot {
        memory_bytes: 1024 * MIB,
        ..b
    };
    assert_ne!(kernel_digest(&more_memory).unwrap(), d);

    // The whole set: PCR 4 from the kernel digest, PCR 9 from the options and the initrd.
    let pcrs = expected_pcrs(&b).unwrap();
    let events = boot_events(
        d,
        load_options_digest("console=ttyS0", true).unwrap(),
        Some(Sha256::digest(&initrd).into()),
    );
    assert_eq!(pcrs, replay(&events));
    assert_eq!(pcrs.keys().copied().collect::<Vec<_>>(), COMPUTED);
    assert!(events
        .iter()
        .any(|e| e.pcr == 4 && e.event == BootEvent::Kernel && e.digest == d));
}

#[test]
fn refusals() {
    let k = synthetic();
    let initrd = [1u8; 16];
    let err = |b: DirectBoot<'_>| expected_pcrs(&b).unwrap_err();

    assert_eq!(
        err(boot(&k[..0x237], None, "")),
        DirectBootError::KernelTooShort {
            len: 0x237,
            need: 0x238
        }
    );
    let mut bad = k.clone();
    le(&mut bad, 0x202, b"HdrT");
    assert_eq!(
        err(boot(&bad, None, "")),
        DirectBootError::NoSetupHeader { found: *b"HdrT" }
    );
    let mut bad = k.clone();
    le(&mut bad, 0x206, &0x201u16.to_le_bytes());
    assert_eq!(
        err(boot(&bad, None, "")),
        DirectBootError::BootProtocol { version: 0x201 }
    );
    let mut bad = k.clone();
    bad[0x211] = 0;
    assert_eq!(
        err(boot(&bad, None, "")),
        DirectBootError::NotLoadedHigh { loadflags: 0 }
    );
    assert_eq!(
        err(boot(&k[..0xFFF], None, "")),
        DirectBootError::SetupSize {
            setup_bytes: 0x1000,
            len: 0xFFF
        }
    );
    assert_eq!(
        err(boot(&k, None, "console=ttyS0 vga=791")),
        DirectBootError::VgaParameter { offset: 14 }
    );
    assert_eq!(
        err(boot(&k, None, "a\nb")),
        DirectBootError::CmdlineByte {
            offset: 1,
            byte: b'\n'
        }
    );
    assert_eq!(err(boot(&k, Some(&[]), "")), DirectBootError::EmptyInitrd);
    for bytes in [0, 512 * MIB + 4096] {
        assert_eq!(
            err(DirectBoot {
                memory_bytes: bytes,
                ..boot(&k, None, "")
            }),
            DirectBootError::Memory { bytes }
        );
    }
    // An initrd as large as the room below the limit: QEMU refuses to start.
    let huge = vec![0u8; 0x3FD_7FFF];
    assert_eq!(
        err(DirectBoot {
            memory_bytes: 64 * MIB,
            ..boot(&k, Some(&huge), "")
        }),
        DirectBootError::InitrdTooLarge {
            size: 0x3FD_7FFF,
            max: 0x3FD_7FFF
        }
    );
    // PE refusals.
    let mut bad = k.clone();
    le(&mut bad, 0, b"XX");
    assert_eq!(err(boot(&bad, Some(&initrd), "")), DirectBootError::NotPe);
    let mut bad = k.clone();
    le(&mut bad, 0x3C, &0xFFFF_FFF0u32.to_le_bytes());
    assert_eq!(err(boot(&bad, None, "")), DirectBootError::NotPe);
    let mut bad = k.clone();
    le(&mut bad, OPT, &0x10Bu16.to_le_bytes());
    assert_eq!(
        err(boot(&bad, None, "")),
        DirectBootError::NotPe32Plus { magic: 0x10B }
    );
    let mut bad = k.clone();
    le(&mut bad, OPT + 108, &4u32.to_le_bytes());
    assert_eq!(
        err(boot(&bad, None, "")),
        DirectBootError::PeDataDirectories { count: 4 }
    );
    let mut bad = k.clone();
    le(&mut bad, OPT + 108, &17u32.to_le_bytes());
    assert_eq!(err(boot(&bad, None, "")), DirectBootError::PeHeaders);
    let mut bad = k.clone();
    le(&mut bad, SECURITY_DIR + 4, &0x100u32.to_le_bytes());
    assert_eq!(
        err(boot(&bad, None, "")),
        DirectBootError::PeCertificateTable { size: 0x100 }
    );
    let mut bad = k.clone();
    le(&mut bad, SECURITY_DIR, &0x2000u32.to_le_bytes());
    le(&mut bad, SECURITY_DIR + 4, &0x3000u32.to_le_bytes());
    assert_eq!(err(boot(&bad, None, "")), DirectBootError::PeLayout);
    // Every refusal names the field in its message.
    assert!(DirectBootError::VgaParameter { offset: 3 }
        .to_string()
        .contains("vga="));
}

/// The `snp-measure guest-pcrs` subcommand on the synthetic image.
#[cfg(feature = "cli")]
mod cli {
    use super::*;
    use std::process::{Command, Output};

    fn run(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_snp-measure"))
            .args(args)
            .output()
            .unwrap()
    }

    #[test]
    fn guest_pcrs_prints_host_verifier_arguments_and_json() {
        let dir =
            std::env::temp_dir().join(format!("snp-measure-guest-pcrs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (kernel, initrd, cmdline) = (dir.join("k"), dir.join("i"), dir.join("c"));
        let k = synthetic();
        let i = vec![9u8; 5000];
        std::fs::write(&kernel, &k).unwrap();
        std::fs::write(&initrd, &i).unwrap();
        // The file is the command line byte for byte.
        std::fs::write(&cmdline, "console=ttyS0 quiet").unwrap();
        let want = expected_pcrs(&DirectBoot {
            kernel: &k,
            initrd: Some(&i),
            cmdline: "console=ttyS0 quiet",
            memory_bytes: 1024 * MIB,
        })
        .unwrap();
        let lines: Vec<String> = want
            .iter()
            .map(|(p, v)| format!("--pcr {p}={}", hex::encode(v)))
            .collect();

        let (k_arg, i_arg, c_arg) = (
            kernel.to_str().unwrap(),
            initrd.to_str().unwrap(),
            cmdline.to_str().unwrap(),
        );
        for args in [
            &["--cmdline", "console=ttyS0 quiet", "--memory", "1G"][..],
            &["--cmdline-file", c_arg, "--memory", "1024"][..],
        ] {
            let mut all = vec!["guest-pcrs", "--kernel", k_arg, "--initrd", i_arg];
            all.extend_from_slice(args);
            let out = run(&all);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                lines.join("\n") + "\n"
            );
            let note = String::from_utf8(out.stderr).unwrap();
            assert!(note.starts_with('#') && note.contains("PCR 0") && note.contains("PCR 1"));
        }

        let out = run(&[
            "guest-pcrs",
            "--kernel",
            k_arg,
            "--initrd",
            i_arg,
            "--cmdline-file",
            c_arg,
            "--memory",
            "1G",
            "--json",
        ]);
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (p, value) in &want {
            assert_eq!(v["pcrs"][p.to_string()], hex::encode(value));
        }
        assert_eq!(v["pcrs"].as_object().unwrap().len(), COMPUTED.len());
        assert_eq!(v["not_computed"], serde_json::json!([0, 1]));
        assert!(v["model"].as_str().unwrap().contains("QEMU 7.2"));
        assert_eq!(v["events"].as_array().unwrap().len(), 17);
        assert_eq!(v["cmdline"], "console=ttyS0 quiet");

        // Refused input: exit 1 naming the field; usage errors: exit 2.
        let out = run(&[
            "guest-pcrs",
            "--kernel",
            k_arg,
            "--cmdline",
            "vga=791",
            "--memory",
            "512M",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("vga="));
        for args in [
            &["guest-pcrs", "--kernel", k_arg, "--memory", "512M"][..],
            &[
                "guest-pcrs",
                "--kernel",
                k_arg,
                "--cmdline",
                "",
                "--memory",
                "512X",
            ][..],
            &[
                "--ovmf",
                k_arg,
                "guest-pcrs",
                "--kernel",
                k_arg,
                "--cmdline",
                "",
                "--memory",
                "1G",
            ][..],
        ] {
            assert_eq!(run(args).status.code(), Some(2), "{args:?}");
        }
        // An empty command line is a valid one.
        let out = run(&[
            "guest-pcrs",
            "--kernel",
            k_arg,
            "--cmdline",
            "",
            "--memory",
            "512M",
        ]);
        assert!(out.status.success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
