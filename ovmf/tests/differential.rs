//! Differential test against the peer, `sev-snp-measure` 0.0.13 (PyPI), run as a subprocess:
//! a grid of vCPU counts (1, 2, 4, 8) × vCPU types × guest features on Debian bookworm's
//! OVMF.fd, plus raw signatures, family/model/stepping, the ec2/gce reset states, OVMF_CODE.fd,
//! `snp:ovmf-hash` and `--snp-ovmf-hash`, and measured direct boot (kernel, initrd, cmdline) on
//! a synthetic image laid out like sid's OVMF.amdsev.fd. Every point must agree bit for bit.
//! The peer missing is a failure with the install command, never a skip.

mod common;
use common::*;
use ovmf::{ovmf_hash, snp_launch_digest, Firmware, LaunchParams, SevHashes, VcpuType, VmmType};
use std::path::{Path, PathBuf};
use std::process::Command;

const PEER_VERSION: &str = "0.0.13";

fn peer() -> String {
    let exe = std::env::var("SEV_SNP_MEASURE").unwrap_or_else(|_| "sev-snp-measure".into());
    let out = Command::new(&exe)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{exe}` ({e}): the differential test needs the peer. Install it with \
             `pip install sev-snp-measure=={PEER_VERSION}` (scripts/bootstrap.sh does), or set \
             SEV_SNP_MEASURE to its path"
            )
        });
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        v,
        format!("sev-snp-measure {PEER_VERSION}"),
        "the reference values were made with sev-snp-measure {PEER_VERSION}: \
         `pip install sev-snp-measure=={PEER_VERSION}`"
    );
    exe
}

fn run_peer(exe: &str, args: &[String]) -> String {
    let out = Command::new(exe).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "sev-snp-measure {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One grid point: peer arguments and our value.
struct Point {
    args: Vec<String>,
    ours: String,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Runs the peer for every point on two threads and compares.
fn check(points: Vec<Point>) {
    let exe = peer();
    let n = points.len();
    let (a, b) = points.split_at(n / 2);
    let mismatches: Vec<String> = std::thread::scope(|sc| {
        let ha = sc.spawn(|| compare(&exe, a));
        let hb = sc.spawn(|| compare(&exe, b));
        let mut m = ha.join().unwrap();
        m.extend(hb.join().unwrap());
        m
    });
    assert!(
        mismatches.is_empty(),
        "{} of {n} points differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("{n} points agree with sev-snp-measure {PEER_VERSION}");
}

fn compare(exe: &str, points: &[Point]) -> Vec<String> {
    points
        .iter()
        .filter_map(|p| {
            let theirs = run_peer(exe, &p.args);
            (theirs != p.ours).then(|| format!("{:?}: peer {theirs} ours {}", p.args, p.ours))
        })
        .collect()
}

fn ours(image: &[u8], p: &LaunchParams) -> String {
    snp_launch_digest(&Firmware::parse(image).unwrap(), p)
        .unwrap()
        .to_string()
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ovmf-differential-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn grid_on_bookworm_ovmf_fd() {
    let img = ovmf_fd();
    // Hash the firmware once; resuming from it is exactly equivalent (r10_style test).
    let seed = ovmf_hash(&img).unwrap();
    let types = [
        VcpuType::Epyc,
        VcpuType::EpycV4,
        VcpuType::EpycRome,
        VcpuType::EpycMilan,
        VcpuType::EpycGenoa,
        VcpuType::EpycTurin,
    ];
    let mut points = Vec::new();
    for vcpus in [1u32, 2, 4, 8] {
        for t in types {
            for features in [0x1u64, 0x21] {
                let mut p = LaunchParams::new(vcpus, t.signature(), features);
                p.ovmf_hash = Some(seed);
                points.push(Point {
                    args: s(&[
                        "--mode",
                        "snp",
                        "--ovmf",
                        OVMF_FD,
                        "--vcpus",
                        &vcpus.to_string(),
                        "--vcpu-type",
                        t.name(),
                        "--guest-features",
                        &format!("{features:#x}"),
                    ]),
                    ours: ours(&img, &p),
                });
            }
        }
    }
    check(points);
}

#[test]
fn raw_signatures_features_and_vmm_types() {
    let img = ovmf_fd();
    let seed = ovmf_hash(&img).unwrap();
    let mut points = Vec::new();
    // Raw --vcpu-sig, including a non-EPYC signature.
    for sig in [0xA00F11u32, 0x50657, 0xB10F00] {
        let mut p = LaunchParams::new(3, sig, 0x1);
        p.ovmf_hash = Some(seed);
        points.push(Point {
            args: s(&[
                "--mode",
                "snp",
                "--ovmf",
                OVMF_FD,
                "--vcpus",
                "3",
                "--vcpu-sig",
                &format!("{sig:#x}"),
            ]),
            ours: ours(&img, &p),
        });
    }
    // --vcpu-family/--vcpu-model/--vcpu-stepping.
    let sig = ovmf::cpu::cpu_sig(25, 17, 1);
    let mut p = LaunchParams::new(2, sig, 0x1);
    p.ovmf_hash = Some(seed);
    points.push(Point {
        args: s(&[
            "--mode",
            "snp",
            "--ovmf",
            OVMF_FD,
            "--vcpus",
            "2",
            "--vcpu-family",
            "25",
            "--vcpu-model",
            "17",
            "--vcpu-stepping",
            "1",
        ]),
        ours: ours(&img, &p),
    });
    // More SEV_FEATURES bits (RestrictedInjection, SecureTSC, vTOM, …).
    for features in [0x0u64, 0x3, 0x9, 0x229, 0xC021] {
        let mut p = LaunchParams::new(2, VcpuType::EpycGenoa.signature(), features);
        p.ovmf_hash = Some(seed);
        points.push(Point {
            args: s(&[
                "--mode",
                "snp",
                "--ovmf",
                OVMF_FD,
                "--vcpus",
                "2",
                "--vcpu-type",
                "EPYC-Genoa",
                "--guest-features",
                &format!("{features:#x}"),
            ]),
            ours: ours(&img, &p),
        });
    }
    // ec2 and gce reset states and section handling.
    for (vmm, name) in [(VmmType::Ec2, "ec2"), (VmmType::Gce, "gce")] {
        for vcpus in [1u32, 4] {
            let mut p = LaunchParams::new(vcpus, VcpuType::EpycMilan.signature(), 0x1);
            p.vmm = vmm;
            p.ovmf_hash = Some(seed);
            points.push(Point {
                args: s(&[
                    "--mode",
                    "snp",
                    "--ovmf",
                    OVMF_FD,
                    "--vcpus",
                    &vcpus.to_string(),
                    "--vcpu-type",
                    "EPYC-Milan",
                    "--vmm-type",
                    name,
                ]),
                ours: ours(&img, &p),
            });
        }
    }
    // Full computations (no seed), snp:ovmf-hash, and resuming from the peer's format.
    points.push(Point {
        args: s(&["--mode", "snp:ovmf-hash", "--ovmf", OVMF_FD]),
        ours: seed.to_string(),
    });
    points.push(Point {
        args: s(&[
            "--mode",
            "snp",
            "--ovmf",
            OVMF_FD,
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--snp-ovmf-hash",
            &seed.to_string(),
        ]),
        ours: ours(
            &img,
            &LaunchParams::new(4, VcpuType::EpycMilan.signature(), 1),
        ),
    });
    let code = ovmf_code_fd();
    for (vcpus, t) in [
        (1u32, VcpuType::EpycV4),
        (2, VcpuType::EpycGenoa),
        (8, VcpuType::EpycTurin),
    ] {
        points.push(Point {
            args: s(&[
                "--mode",
                "snp",
                "--ovmf",
                OVMF_CODE_FD,
                "--vcpus",
                &vcpus.to_string(),
                "--vcpu-type",
                t.name(),
                "--guest-features",
                "0x21",
            ]),
            ours: ours(&code, &LaunchParams::new(vcpus, t.signature(), 0x21)),
        });
    }
    points.push(Point {
        args: s(&["--mode", "snp:ovmf-hash", "--ovmf", OVMF_CODE_FD]),
        ours: ovmf_hash(&code).unwrap().to_string(),
    });
    check(points);
}

#[test]
fn measured_direct_boot_on_a_synthetic_sid_like_image() {
    // sid's OVMF.amdsev.fd is not installable on bookworm: a 4 MiB image with its footer
    // entries and section list (KERNEL_HASHES last, hash table at 0x810C00) stands in (R10–R13).
    let img = Synth::sid_like(0x40_0000).build();
    let fw_path = tmp("sid-like.fd", &img);
    let kernel = tmp("kernel.bin", b"test-kernel\n");
    let initrd = tmp("initrd.bin", b"test-initrd\n");
    let base = |vcpus: u32, t: VcpuType, f: u64| {
        s(&[
            "--mode",
            "snp",
            "--ovmf",
            &path(&fw_path),
            "--vcpus",
            &vcpus.to_string(),
            "--vcpu-type",
            t.name(),
            "--guest-features",
            &format!("{f:#x}"),
        ])
    };
    let mut points = Vec::new();
    let milan = VcpuType::EpycMilan;
    type Case = (u32, VcpuType, u64, Option<SevHashes>, Vec<String>);
    let cases: [Case; 6] = [
        (1, VcpuType::EpycV4, 1, None, vec![]),
        (4, milan, 1, None, vec![]),
        (
            4,
            milan,
            1,
            Some(SevHashes::new(b"test-kernel\n", None, None)),
            s(&["--kernel", &path(&kernel)]),
        ),
        (
            4,
            milan,
            1,
            Some(SevHashes::new(
                b"test-kernel\n",
                Some(b"test-initrd\n"),
                Some("console=ttyS0"),
            )),
            s(&[
                "--kernel",
                &path(&kernel),
                "--initrd",
                &path(&initrd),
                "--append",
                "console=ttyS0",
            ]),
        ),
        (
            4,
            milan,
            0x21,
            Some(SevHashes::new(
                b"test-kernel\n",
                Some(b"test-initrd\n"),
                Some("console=ttyS0"),
            )),
            s(&[
                "--kernel",
                &path(&kernel),
                "--initrd",
                &path(&initrd),
                "--append",
                "console=ttyS0",
            ]),
        ),
        (
            2,
            VcpuType::EpycGenoa,
            0x21,
            Some(SevHashes::new(
                b"test-kernel\n",
                None,
                Some("root=/dev/vda ro quiet"),
            )),
            s(&[
                "--kernel",
                &path(&kernel),
                "--append",
                "root=/dev/vda ro quiet",
            ]),
        ),
    ];
    for (vcpus, t, f, hashes, extra) in cases {
        let mut p = LaunchParams::new(vcpus, t.signature(), f);
        p.hashes = hashes;
        let mut args = base(vcpus, t, f);
        args.extend(extra);
        points.push(Point {
            args,
            ours: ours(&img, &p),
        });
    }
    let seed = ovmf_hash(&img).unwrap();
    points.push(Point {
        args: s(&["--mode", "snp:ovmf-hash", "--ovmf", &path(&fw_path)]),
        ours: seed.to_string(),
    });
    check(points);
    let _ = std::fs::remove_dir_all(fw_path.parent().unwrap());
}
