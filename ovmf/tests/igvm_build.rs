//! The IGVM builder (`snp-measure build-igvm`): the file parses back with the igvm crate into
//! exactly the layout docs/launch.md describes (the SVSM's pages, its boot parameter page with
//! the memory map and vCPU count, secrets and CPUID pages, the firmware ending at 4 GiB, the
//! SVSM's boot VMSA last); its launch digest is the same in every flavour and equals the igvm
//! crate's own measurement; each bad input is refused by name; the command line writes the
//! verifier's line.

use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader};
use igvm_defs::IgvmPageDataType;
use ovmf::igvm_build::{build, SvsmIgvm, VP_COUNT_OFFSET};
use ovmf::{igvm_launch_digest, IgvmBuildError, IgvmFlavor};
use std::process::Command;
use zerocopy::IntoBytes;

const BASE: u64 = 0x8000_0000;

fn image() -> Vec<u8> {
    (0..0x5800u32).map(|i| (i * 7 + 3) as u8).collect() // 5.5 pages: the last one is padded
}

fn firmware() -> Vec<u8> {
    (0..0x4_0000u32).map(|i| (i >> 8) as u8 ^ 0xA5).collect()
}

fn input<'a>(image: &'a [u8], firmware: &'a [u8]) -> SvsmIgvm<'a> {
    SvsmIgvm {
        svsm_image: image,
        svsm_base: BASE,
        svsm_size: 16 << 20,
        svsm_entry: BASE + 0x1000,
        firmware,
        policy: 0x30000,
        sev_features: 1,
    }
}

#[test]
fn the_file_has_the_documented_layout() {
    let (image, firmware) = (image(), firmware());
    let (bytes, layout) = build(&input(&image, &firmware)).unwrap();
    assert_eq!(layout.parameters, BASE + 0x6000);
    assert_eq!(layout.secrets, BASE + 0x7000);
    assert_eq!(layout.cpuid, BASE + 0x8000);
    assert_eq!(layout.firmware, (1 << 32) - 0x4_0000);

    let f = IgvmFile::new_from_binary(&bytes, Some(igvm::IsolationType::Snp)).unwrap();
    assert!(matches!(
        f.initializations(),
        [IgvmInitializationHeader::GuestPolicy {
            policy: 0x30000,
            compatibility_mask: 1
        }]
    ));
    let d = f.directives();
    // The image, page by page (the last one padded with zeros by the loader).
    let mut image_pages = Vec::new();
    let mut firmware_bytes = Vec::new();
    let (mut secrets, mut cpuid, mut insert, mut map, mut vps) = (None, None, None, None, None);
    let mut vp = None;
    for h in d {
        match h {
            IgvmDirectiveHeader::PageData {
                gpa,
                data_type,
                data,
                ..
            } => match *data_type {
                IgvmPageDataType::SECRETS => secrets = Some(*gpa),
                IgvmPageDataType::CPUID_DATA => cpuid = Some(*gpa),
                _ if *gpa >= layout.firmware => {
                    let mut page = data.clone();
                    page.resize(4096, 0);
                    firmware_bytes.extend(page);
                }
                _ => image_pages.push((*gpa, data.clone())),
            },
            IgvmDirectiveHeader::ParameterInsert(p) => insert = Some(p.gpa),
            IgvmDirectiveHeader::MemoryMap(p) => map = Some(p.byte_offset),
            IgvmDirectiveHeader::VpCount(p) => vps = Some(p.byte_offset),
            IgvmDirectiveHeader::SnpVpContext {
                gpa,
                vp_index,
                vmsa,
                ..
            } => vp = Some((*gpa, *vp_index, vmsa.as_bytes().to_vec())),
            _ => {}
        }
    }
    assert_eq!(image_pages.len(), 6);
    let mut loaded = Vec::new();
    for (i, (gpa, data)) in image_pages.iter().enumerate() {
        assert_eq!(*gpa, BASE + i as u64 * 0x1000);
        loaded.extend_from_slice(data);
    }
    loaded.resize(image.len(), 0);
    assert_eq!(loaded, image);
    assert_eq!(firmware_bytes, firmware);
    assert_eq!(
        (secrets, cpuid, insert, map, vps),
        (
            Some(layout.secrets),
            Some(layout.cpuid),
            Some(layout.parameters),
            Some(0),
            Some(VP_COUNT_OFFSET)
        )
    );
    // The SVSM's boot VMSA, last, at 0xFFFFFFFFF000: VMPL 0 (0xCA), EFER.SVME (0xD0), CR0 PE|ET
    // (0x158), RIP = entry (0x178), RBX = the parameter page (0x318), SEV_FEATURES (0x3B0), CS
    // a flat 32-bit code segment (attrib 0xC9B, limit 4 GiB).
    let (gpa, index, vmsa) = vp.unwrap();
    assert!(matches!(
        d.last(),
        Some(IgvmDirectiveHeader::SnpVpContext { .. })
    ));
    assert_eq!((gpa, index), (0xFFFF_FFFF_F000, 0));
    let u64_at = |o: usize| u64::from_le_bytes(vmsa[o..o + 8].try_into().unwrap());
    assert_eq!(vmsa[0xCA], 0);
    assert_eq!(u64_at(0xD0), 0x1000);
    assert_eq!(u64_at(0x158), 0x11);
    assert_eq!(u64_at(0x178), BASE + 0x1000);
    assert_eq!(u64_at(0x318), layout.parameters);
    assert_eq!(u64_at(0x3B0), 1);
    assert_eq!(&vmsa[0x12..0x18], &[0x9B, 0x0C, 0xFF, 0xFF, 0xFF, 0xFF]);
}

#[test]
fn the_digest_is_the_same_in_every_flavour_and_equals_the_igvm_crates() {
    let (image, firmware) = (image(), firmware());
    let (bytes, _) = build(&input(&image, &firmware)).unwrap();
    let ours = igvm_launch_digest(&bytes, IgvmFlavor::Qemu).unwrap();
    for flavor in IgvmFlavor::ALL {
        assert_eq!(
            igvm_launch_digest(&bytes, flavor).unwrap(),
            ours,
            "{flavor:?}"
        );
    }
    let f = IgvmFile::new_from_binary(&bytes, Some(igvm::IsolationType::Snp)).unwrap();
    let oracle =
        igvm::measurement::generate_snp_measurement(f.initializations(), f.directives(), 1)
            .unwrap();
    assert_eq!(ours.to_string(), hex::encode(oracle));
    // Any change to what is measured changes it; the policy is not measured.
    let mut other = image.clone();
    other[0x1234] ^= 1;
    let (b2, _) = build(&input(&other, &firmware)).unwrap();
    assert_ne!(igvm_launch_digest(&b2, IgvmFlavor::Qemu).unwrap(), ours);
    let mut moved = input(&image, &firmware);
    moved.svsm_entry += 0x10;
    let (b3, _) = build(&moved).unwrap();
    assert_ne!(igvm_launch_digest(&b3, IgvmFlavor::Qemu).unwrap(), ours);
    let mut policy = input(&image, &firmware);
    policy.policy = 0x70000;
    let (b4, _) = build(&policy).unwrap();
    assert_eq!(igvm_launch_digest(&b4, IgvmFlavor::Qemu).unwrap(), ours);
}

#[test]
fn bad_inputs_are_refused_by_name() {
    let (image, firmware) = (image(), firmware());
    let ok = input(&image, &firmware);
    let refused = |f: &dyn for<'b> Fn(&mut SvsmIgvm<'b>)| {
        let mut i = ok.clone();
        f(&mut i);
        build(&i).map(|_| ()).unwrap_err()
    };
    assert!(matches!(
        refused(&|i| i.svsm_entry = BASE + 0x10_0000),
        IgvmBuildError::Entry(_)
    ));
    assert!(matches!(
        refused(&|i| i.svsm_size = 0x8000),
        IgvmBuildError::RegionTooSmall { .. }
    ));
    assert!(matches!(
        refused(&|i| i.svsm_base = 0xFFF0_0000),
        IgvmBuildError::Overlap | IgvmBuildError::Entry(_)
    ));
    // At the very top of the address space: refused, not an overflow.
    assert!(matches!(
        refused(&|i| i.svsm_base = 0xFFFF_FFFF_FFFF_F000),
        IgvmBuildError::Overlap
    ));
    assert!(matches!(
        refused(&|i| i.svsm_size = !0xFFFu64),
        IgvmBuildError::Overlap
    ));
    assert!(matches!(
        refused(&|i| i.sev_features = 0x20),
        IgvmBuildError::SevFeatures(0x20)
    ));
    assert!(matches!(
        refused(&|i| i.svsm_base = BASE + 8),
        IgvmBuildError::Misaligned
    ));
    assert!(matches!(
        refused(&|i| i.svsm_image = &[]),
        IgvmBuildError::ImageSize(0)
    ));
    let mut short = ok.clone();
    short.firmware = &firmware[..100];
    assert!(matches!(
        build(&short).map(|_| ()).unwrap_err(),
        IgvmBuildError::FirmwareSize(100)
    ));
}

#[test]
fn the_command_writes_the_file_and_the_verifier_line() {
    let dir = std::env::temp_dir().join(format!("igvm-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("svsm.bin"), image()).unwrap();
    std::fs::write(dir.join("fw.fd"), firmware()).unwrap();
    let run = |entry: &str| {
        Command::new(env!("CARGO_BIN_EXE_snp-measure"))
            .current_dir(&dir)
            .args([
                "build-igvm",
                "--svsm",
                "svsm.bin",
                "--svsm-base",
                "0x80000000",
                "--svsm-size",
                "16M",
                "--svsm-entry",
                entry,
                "--firmware",
                "fw.fd",
                "--out",
                "out.igvm",
                "--policy-out",
                "m.toml",
            ])
            .output()
            .unwrap()
    };
    let out = run("0x80001000");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (image, firmware) = (image(), firmware());
    let (expected, _) = build(&input(&image, &firmware)).unwrap();
    assert_eq!(std::fs::read(dir.join("out.igvm")).unwrap(), expected);
    assert_eq!(
        printed,
        igvm_launch_digest(&expected, IgvmFlavor::Qemu)
            .unwrap()
            .to_string()
    );
    let toml = std::fs::read_to_string(dir.join("m.toml")).unwrap();
    assert!(
        toml.contains(&format!("measurements = [\"{printed}\"]")),
        "{toml}"
    );
    // The measuring side agrees on the file it wrote.
    let measured = Command::new(env!("CARGO_BIN_EXE_snp-measure"))
        .current_dir(&dir)
        .args(["--igvm", "out.igvm", "--igvm-flavor", "qemu"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(measured.stdout).unwrap().trim(), printed);
    // An entry point outside the image: exit 1, named.
    let out = run("0x90000000");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry point"));
    std::fs::remove_dir_all(&dir).unwrap();
}
