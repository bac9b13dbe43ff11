//! A second, in-process oracle: virtee's `sev` crate 8.0.0 (`measurement::snp`), which agreed
//! with sev-snp-measure on every reference value. Cheap enough for a wide grid: every vCPU
//! model name, 1–8, 16 and 64 vCPUs, several SEV_FEATURES values, both bookworm images, and
//! measured direct boot on a synthetic sid-like image. QEMU reset state only: for EC2 the `sev`
//! crate 8.0.0 puts RDX = 0 where sev-snp-measure 0.0.13 (and the reference, §3.5) put 0x600,
//! so the two oracles disagree there; EC2 and GCE are checked against the peer in
//! differential.rs.

mod common;
use common::*;
use ovmf::{ovmf_hash, snp_launch_digest, Firmware, LaunchParams, SevHashes, VcpuType};
use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType};

use sev::parser::ByteParser;
use std::path::{Path, PathBuf};

fn features(v: u64) -> GuestFeatures {
    GuestFeatures::from_bytes_with(&v.to_le_bytes(), ()).unwrap()
}

/// The `sev` crate's digest for a QEMU launch.
fn theirs(
    fw: &Path,
    vcpus: u32,
    t: VcpuType,
    f: u64,
    seed: Option<&str>,
    kernel: Option<(PathBuf, Option<PathBuf>, Option<&str>)>,
) -> String {
    let (kernel_file, initrd_file, append) = match kernel {
        Some((k, i, a)) => (Some(k), i, a),
        None => (None, None, None),
    };
    let d = snp_calc_launch_digest(SnpMeasurementArgs {
        vcpus,
        vcpu_type: CpuType::try_from(t.name()).unwrap(),
        ovmf_file: fw.to_path_buf(),
        guest_features: features(f),
        kernel_file,
        initrd_file,
        append,
        ovmf_hash_str: seed,
        vmm_type: Some(VMMType::QEMU),
    })
    .unwrap();
    format!("{d:x}")
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ovmf-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn every_model_many_vcpu_counts_and_features() {
    for (path, img) in [
        (PathBuf::from(OVMF_FD), ovmf_fd()),
        (PathBuf::from(OVMF_CODE_FD), ovmf_code_fd()),
    ] {
        let fw = Firmware::parse(&img).unwrap();
        let seed = ovmf_hash(&img).unwrap();
        let seed_hex = seed.to_string();
        let mut n = 0;
        for t in VcpuType::ALL {
            for vcpus in [1u32, 2, 3, 5, 8, 16, 64] {
                for f in [0x1u64, 0x21, 0x29, 0x4021] {
                    let mut p = LaunchParams::new(vcpus, t.signature(), f);
                    p.ovmf_hash = Some(seed);
                    let ours = snp_launch_digest(&fw, &p).unwrap().to_string();
                    let want = theirs(&path, vcpus, t, f, Some(&seed_hex), None);
                    assert_eq!(ours, want, "{path:?} {t} vcpus {vcpus} features {f:#x}");
                    n += 1;
                }
            }
        }
        // And twice without the seed, hashing the whole image on both sides.
        for (vcpus, t) in [(1, VcpuType::EpycV4), (4, VcpuType::EpycTurin)] {
            let ours = snp_launch_digest(&fw, &LaunchParams::new(vcpus, t.signature(), 1))
                .unwrap()
                .to_string();
            assert_eq!(ours, theirs(&path, vcpus, t, 1, None, None));
        }
        eprintln!("{path:?}: {n} points agree with the sev crate");
    }
}

#[test]
fn measured_direct_boot_synthetic_sid_like() {
    let img = Synth::sid_like(0x40_0000).build();
    let fw_path = tmp("sid-like.fd", &img);
    let fw = Firmware::parse(&img).unwrap();
    let kernel = tmp("kernel.bin", b"test-kernel\n");
    let initrd = tmp("initrd.bin", b"test-initrd\n");
    let cases: [(Option<&[u8]>, Option<&str>); 4] = [
        (None, None),
        (Some(b"test-initrd\n"), None),
        (None, Some("console=ttyS0")),
        (Some(b"test-initrd\n"), Some("console=ttyS0")),
    ];
    for (i, a) in cases {
        for (vcpus, t, f) in [
            (4u32, VcpuType::EpycMilan, 1u64),
            (2, VcpuType::EpycGenoa, 0x21),
        ] {
            let mut p = LaunchParams::new(vcpus, t.signature(), f);
            p.hashes = Some(SevHashes::new(b"test-kernel\n", i, a));
            let ours = snp_launch_digest(&fw, &p).unwrap().to_string();
            let want = theirs(
                &fw_path,
                vcpus,
                t,
                f,
                None,
                Some((kernel.clone(), i.map(|_| initrd.clone()), a)),
            );
            assert_eq!(ours, want, "initrd {} append {a:?} {t}", i.is_some());
        }
    }
    let _ = std::fs::remove_dir_all(fw_path.parent().unwrap());
}
