//! The `snp-measure` binary: the peer-style common case prints R5, `--json`, `--policy-out`
//! (parsed back as TOML), `snp:ovmf-hash` and resuming from it, direct boot on a synthetic
//! image, IGVM input, and refusals with their exit status.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};

const R1: &str = "ba2c811512ef868474f239a21f7d7057d65a20de87a003c4f116e4fb1573183bfbcd75c3e99b2f558575a5d0094f73c6";
const R5: &str = "e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840";
const R6: &str = "eafba8950e110689149de8d5e9dff8ac866b3e93c030a1b421816a541a1ca7beb7a27081f4a99f8d85ab6ba2d4be0425";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snp-measure"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A scratch directory for one test, removed when dropped (also when the test fails).
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir() -> TmpDir {
    let d = std::env::temp_dir().join(format!(
        "snp-measure-cli-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

#[test]
fn common_case_prints_the_hex_digest() {
    ovmf_fd();
    let out = ok(&[
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--guest-features",
        "0x1",
    ]);
    assert_eq!(out, format!("{R5}\n"));
    // The peer's spelling of the mode is accepted too.
    let out = ok(&[
        "--mode",
        "snp",
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-sig",
        "0xA00F11",
    ]);
    assert_eq!(out.trim(), R5);
    let out = ok(&[
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-family",
        "25",
        "--vcpu-model",
        "1",
        "--vcpu-stepping",
        "1",
    ]);
    assert_eq!(out.trim(), R5);
    ovmf_code_fd();
    let out = ok(&[
        "--ovmf",
        OVMF_CODE_FD,
        "--vcpus",
        "2",
        "--vcpu-type",
        "epyc-genoa",
    ]);
    assert_eq!(out.trim(), R6);
}

#[test]
fn json_output() {
    ovmf_fd();
    let out = ok(&[
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["measurement"], R5);
    assert_eq!(v["mode"], "snp");
    assert_eq!(v["vcpus"], 4);
    assert_eq!(v["vcpu_type"], "EPYC-Milan");
    assert_eq!(v["vcpu_sig"], "0xa00f11");
    assert_eq!(v["guest_features"], "0x1");
    assert_eq!(v["vmm_type"], "QEMU");
    assert_eq!(v["ovmf"]["sha256"], OVMF_FD_SHA256);
    assert_eq!(v["ovmf"]["size"], 2097152);
}

#[test]
fn policy_out_writes_the_measurement_section() {
    ovmf_fd();
    let dir = tmpdir();
    let file = dir.join("policy.toml");
    let out = ok(&[
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--policy-out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), R5);
    let text = std::fs::read_to_string(&file).unwrap();
    let v: toml::Table = text.parse().unwrap();
    assert_eq!(v.len(), 1, "{text}");
    let allowed = v["measurements"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].as_str().unwrap(), R5);
    assert!(text.contains(OVMF_FD_SHA256), "provenance comment: {text}");
}

#[test]
fn ovmf_hash_mode_and_resume() {
    ovmf_fd();
    let seed = ok(&["--mode", "snp:ovmf-hash", "--ovmf", OVMF_FD]);
    assert_eq!(seed.trim(), R1);
    let out = ok(&[
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--snp-ovmf-hash",
        R1,
    ]);
    assert_eq!(out.trim(), R5);
    // Options that do nothing in that mode are refused, not ignored.
    let out = run(&["--mode", "snp:ovmf-hash", "--ovmf", OVMF_FD, "--vcpus", "4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vcpus has no effect"));
}

#[test]
fn direct_boot_on_a_synthetic_image() {
    let d = tmpdir();
    let fw = d.join("sid-like.fd");
    std::fs::write(&fw, Synth::sid_like(0x40_0000).build()).unwrap();
    let k = d.join("kernel.bin");
    std::fs::write(&k, b"test-kernel\n").unwrap();
    let i = d.join("initrd.bin");
    std::fs::write(&i, b"test-initrd\n").unwrap();
    let out = ok(&[
        "--ovmf",
        fw.to_str().unwrap(),
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--append",
        "console=ttyS0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let img = std::fs::read(&fw).unwrap();
    let mut p = ovmf::LaunchParams::new(4, 0xA00F11, 1);
    p.hashes = Some(ovmf::SevHashes::new(
        b"test-kernel\n",
        Some(b"test-initrd\n"),
        Some("console=ttyS0"),
    ));
    let want = ovmf::snp_launch_digest(&ovmf::Firmware::parse(&img).unwrap(), &p).unwrap();
    assert_eq!(v["measurement"], want.to_string());
    assert_eq!(
        v["kernel"]["sha256"],
        "45f6eaac5e2d708de8368589d19cbfc3474d07d61047db71e5a88e263946377a"
    );
    assert_eq!(v["append"], "console=ttyS0");
}

#[test]
fn refusals_and_exit_codes() {
    ovmf_fd();
    let d = tmpdir();
    let k = d.join("k");
    std::fs::write(&k, b"k").unwrap();
    // Kernel with bookworm's image: no SNP_KERNEL_HASHES section.
    let out = run(&[
        "--ovmf",
        OVMF_FD,
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
        "--kernel",
        k.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SNP_KERNEL_HASHES"));
    // Malformed firmware names the field.
    let bad = d.join("bad.fd");
    std::fs::write(&bad, vec![0u8; 8192]).unwrap();
    let out = run(&[
        "--ovmf",
        bad.to_str().unwrap(),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("footer table GUID"));
    // Usage errors are exit 2.
    for args in [
        &["--ovmf", OVMF_FD, "--vcpus", "0", "--vcpu-type", "EPYC"][..],
        &[
            "--ovmf",
            OVMF_FD,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC-Zen9",
        ],
        &[
            "--ovmf",
            OVMF_FD,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--vcpu-sig",
            "1",
        ],
        &[
            "--ovmf",
            OVMF_FD,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--initrd",
            "x",
        ],
        &["--igvm", "x.igvm"],
        &["--igvm", "x.igvm", "--igvm-flavor", "qemu", "--vcpus", "2"],
        &["--vcpus", "1"],
    ] {
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }
    // Missing vCPU count or model in snp mode.
    let out = run(&["--ovmf", OVMF_FD, "--vcpu-type", "EPYC"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["--ovmf", OVMF_FD, "--vcpus", "2"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn igvm_input() {
    // A tiny IGVM file: one page and the R2 BSP VMSA (built with the igvm crate).
    use igvm::snp_defs::SevVmsa;
    use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader, IgvmPlatformHeader};
    use igvm_defs::*;
    use zerocopy::FromBytes;
    let vmsa = ovmf::vmsa::reset_vmsa_page(0xFFFF_FFF0, 0x800F12, 1, ovmf::VmmType::Qemu);
    let vmsa = SevVmsa::read_from_bytes(&vmsa[..std::mem::size_of::<SevVmsa>()]).unwrap();
    let f = IgvmFile::new(
        igvm::IgvmRevision::V1,
        vec![IgvmPlatformHeader::SupportedPlatform(
            IGVM_VHS_SUPPORTED_PLATFORM {
                compatibility_mask: 1,
                highest_vtl: 0,
                platform_type: IgvmPlatformType::SEV_SNP,
                platform_version: IGVM_SEV_SNP_PLATFORM_VERSION,
                shared_gpa_boundary: 0,
            },
        )],
        vec![IgvmInitializationHeader::GuestPolicy {
            policy: 0x30000,
            compatibility_mask: 1,
        }],
        vec![
            IgvmDirectiveHeader::PageData {
                gpa: 0xFFFF_F000,
                compatibility_mask: 1,
                flags: IgvmPageDataFlags::new(),
                data_type: IgvmPageDataType::NORMAL,
                data: vec![0x90; 4096],
            },
            IgvmDirectiveHeader::SnpVpContext {
                gpa: 0xFFFF_FFFF_F000,
                compatibility_mask: 1,
                vp_index: 0,
                vmsa: Box::new(vmsa),
            },
        ],
    )
    .unwrap();
    let mut bin = Vec::new();
    f.serialize(&mut bin).unwrap();
    let d = tmpdir();
    let path = d.join("t.igvm");
    std::fs::write(&path, &bin).unwrap();
    let want = ovmf::igvm_launch_digest(&bin, ovmf::IgvmFlavor::Qemu).unwrap();
    let policy = d.join("igvm-policy.toml");
    let out = ok(&[
        "--igvm",
        path.to_str().unwrap(),
        "--igvm-flavor",
        "qemu",
        "--json",
        "--policy-out",
        policy.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["measurement"], want.to_string());
    assert_eq!(v["mode"], "igvm");
    assert_eq!(v["igvm_flavor"], "qemu");
    let t: toml::Table = std::fs::read_to_string(&policy).unwrap().parse().unwrap();
    assert_eq!(t["measurements"][0].as_str().unwrap(), want.to_string());
    // Not an IGVM file.
    let out = run(&["--igvm", OVMF_FD, "--igvm-flavor", "igvmmeasure"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IGVM"));
}

#[test]
fn help_mentions_the_essentials() {
    let h = ok(&["--help"]);
    for needle in [
        "--ovmf",
        "--vcpus",
        "--vcpu-type",
        "--vcpu-sig",
        "--guest-features",
        "--kernel",
        "--initrd",
        "--append",
        "--snp-ovmf-hash",
        "--igvm",
        "--igvm-flavor",
        "--json",
        "--policy-out",
        "EPYC-Milan",
        "DebugSwap",
    ] {
        assert!(h.contains(needle), "--help lacks {needle}");
    }
}
