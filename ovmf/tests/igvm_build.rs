//! The IGVM builder (`snp-measure build-igvm`): the file parses back with the igvm crate into
//! exactly the layout docs/launch.md describes (the SVSM's pages, its boot parameter page with
//! the memory map and vCPU count, secrets and CPUID pages, the firmware ending at 4 GiB, the
//! SVSM's boot VMSA last); its launch digest is the same in every flavour and equals the igvm
//! crate's own measurement; each bad input is refused by name; the command line writes the
//! verifier's line.

mod common;

use igvm::{IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader};
use igvm_defs::IgvmPageDataType;
use ovmf::igvm_build::{build, guest_firmware, svsm_elf, GuestFirmware, SvsmIgvm, VP_COUNT_OFFSET};
use ovmf::{igvm_launch_digest, IgvmBuildError, IgvmFlavor};
use std::process::Command;
use svsm_abi::igvm_boot::{GpaRange, SvsmBootInfo};
use zerocopy::IntoBytes;

const BASE: u64 = 0x8000_0000;

fn image() -> Vec<u8> {
    (0..0x5800u32).map(|i| (i * 7 + 3) as u8).collect() // 5.5 pages: the last one is padded
}

/// An OVMF-like image with sid's SEV metadata (SNP_SECRETS, CPUID and SVSM_CAA sections).
fn firmware() -> Vec<u8> {
    common::Synth::sid_like(0x4_0000).build()
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
        guest: guest_firmware(firmware).unwrap(),
    }
}

#[test]
fn the_file_has_the_documented_layout() {
    let (image, firmware) = (image(), firmware());
    let (bytes, layout) = build(&input(&image, &firmware)).unwrap();
    assert_eq!(layout.boot_info, BASE + 0x6000);
    assert_eq!(layout.parameters, BASE + 0x7000);
    assert_eq!(layout.secrets, BASE + 0x8000);
    assert_eq!(layout.cpuid, BASE + 0x9000);
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
    let mut info = None;
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
                _ if *gpa == layout.boot_info => info = Some(data.clone()),
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
    // The boot information page, measured, as the SVSM will parse it.
    let info = SvsmBootInfo::parse(&info.unwrap()).unwrap();
    assert_eq!(info.svsm, GpaRange::new(BASE, 16 << 20));
    assert_eq!(
        (info.parameters.get(), info.secrets.get(), info.cpuid.get()),
        (layout.parameters, layout.secrets, layout.cpuid)
    );
    assert_eq!(info.firmware, GpaRange::new(layout.firmware, 0x4_0000));
    assert_eq!(
        (
            info.guest_vmpl.get(),
            info.guest_secrets.get(),
            info.guest_cpuid.get(),
            info.guest_caa.get()
        ),
        (1, 0x80_D000, 0x80_E000, 0x80_F000)
    );
    assert_eq!(info.prevalidated_ranges().len(), 4);
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
    // The boot information is measured: moving the guest's calling area changes the digest.
    let mut caa = input(&image, &firmware);
    caa.guest.caa = 0x9_F000;
    let (b5, _) = build(&caa).unwrap();
    assert_ne!(igvm_launch_digest(&b5, IgvmFlavor::Qemu).unwrap(), ours);
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
    // An ELF file: base and entry from the file, the same file as the library builds.
    let text: Vec<u8> = (0..0x2000u32).map(|i| i as u8).collect();
    let file = elf(0x400_0100, &[(0x400_0000, text, 0x3000)]);
    std::fs::write(dir.join("svsm.elf"), &file).unwrap();
    let run_elf = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_snp-measure"))
            .current_dir(&dir)
            .args(["build-igvm", "--svsm", "svsm.elf", "--svsm-size", "16M"])
            .args(["--firmware", "fw.fd", "--out", "elf.igvm", "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run_elf(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["layout"]["svsm_base"], "0x4000000");
    assert_eq!(doc["layout"]["svsm_entry"], "0x4000100");
    assert_eq!(doc["layout"]["boot_info"], "0x4003000");
    let flat = svsm_elf(&file).unwrap();
    let mut i = input(&flat.image, &firmware);
    (i.svsm_base, i.svsm_entry) = (flat.base, flat.entry);
    assert_eq!(
        std::fs::read(dir.join("elf.igvm")).unwrap(),
        build(&i).unwrap().0
    );
    // A base that contradicts the file, a flat binary without one: usage errors (exit 2).
    let out = run_elf(&["--svsm-base", "0x8000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the ELF file"));
    let out = Command::new(env!("CARGO_BIN_EXE_snp-measure"))
        .current_dir(&dir)
        .args(["build-igvm", "--svsm", "svsm.bin", "--svsm-size", "16M"])
        .args(["--firmware", "fw.fd", "--out", "x.igvm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--svsm-base and --svsm-entry"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_guest_layout_comes_from_the_firmware_metadata() {
    let g = guest_firmware(&firmware()).unwrap();
    assert_eq!(
        g,
        GuestFirmware {
            vmpl: 1,
            secrets: 0x80_D000,
            cpuid: 0x80_E000,
            caa: 0x80_F000,
            prevalidated: vec![
                (0x80_0000, 0x9000),
                (0x80_A000, 0x3000),
                (0x81_1000, 0x1_F000),
                (0x81_0000, 0x1000)
            ],
        }
    );
    // bookworm's OVMF has no SVSM_CAA section: it cannot run under an SVSM.
    let mut bookworm = common::Synth::sid_like(0x4_0000);
    bookworm.sections = common::BOOKWORM_SECTIONS.to_vec();
    assert!(matches!(
        guest_firmware(&bookworm.build()),
        Err(IgvmBuildError::FirmwareSection("SVSM_CAA"))
    ));
    // No SEV metadata at all.
    let mut plain = common::Synth::sid_like(0x4_0000);
    plain.entries.retain(|(g, _)| g != common::METADATA);
    assert!(matches!(
        guest_firmware(&plain.build()),
        Err(IgvmBuildError::FirmwareSection("SEV metadata"))
    ));
    // A guest page inside the SVSM's memory is refused before a file is written.
    let (image, firmware) = (image(), firmware());
    let mut inside = input(&image, &firmware);
    inside.guest.secrets = BASE + 0x10_0000;
    assert!(matches!(
        build(&inside).map(|_| ()).unwrap_err(),
        IgvmBuildError::BootInfo(_)
    ));
}

/// A minimal x86-64 ELF executable: the header, then one PT_LOAD per (vaddr, file bytes,
/// memory size), file data after the program headers.
fn elf(entry: u64, segments: &[(u64, Vec<u8>, u64)]) -> Vec<u8> {
    let phoff = 64u64;
    let mut data_off = phoff + 56 * segments.len() as u64;
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // 64-bit
    out[5] = 1; // little endian
    out[6] = 1; // version
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&phoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    out[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    for (vaddr, bytes, memsz) in segments {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&7u32.to_le_bytes());
        ph[8..16].copy_from_slice(&data_off.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&4096u64.to_le_bytes());
        out.extend(ph);
        data_off += bytes.len() as u64;
    }
    for (_, bytes, _) in segments {
        out.extend(bytes);
    }
    out
}

#[test]
fn an_elf_file_is_flattened_with_its_bss() {
    let text = vec![0xC3u8; 0x1800];
    let data = vec![0x5Au8; 0x10];
    let file = elf(
        0x400_0010,
        &[
            (0x400_0000, text.clone(), 0x1800),
            (0x400_2000, data.clone(), 0x3000),
        ],
    );
    let flat = svsm_elf(&file).unwrap();
    assert_eq!((flat.base, flat.entry), (0x400_0000, 0x400_0010));
    assert_eq!(flat.image.len(), 0x5000);
    assert_eq!(&flat.image[..0x1800], &text[..]);
    assert!(flat.image[0x1800..0x2000].iter().all(|&b| b == 0));
    assert_eq!(&flat.image[0x2000..0x2010], &data[..]);
    assert!(
        flat.image[0x2010..].iter().all(|&b| b == 0),
        ".bss is zeros"
    );

    let refused = |bytes: &[u8]| svsm_elf(bytes).unwrap_err();
    assert!(matches!(refused(b"not an elf"), IgvmBuildError::Elf(_)));
    assert!(matches!(refused(&file[..70]), IgvmBuildError::Elf(_)));
    // Entry outside the segments; a segment above 4 GiB; file bytes beyond memory size.
    assert!(matches!(
        refused(&elf(0x10, &[(0x400_0000, text.clone(), 0x1800)])),
        IgvmBuildError::Entry(0x10)
    ));
    assert!(matches!(
        refused(&elf(0xFFFF_F000, &[(0xFFFF_F000, text.clone(), 0x1800)])),
        IgvmBuildError::Elf(_)
    ));
    assert!(matches!(
        refused(&elf(0x400_0000, &[(0x400_0000, text.clone(), 0x100)])),
        IgvmBuildError::Elf(_)
    ));
    // Not x86-64.
    let mut arm = file.clone();
    arm[18] = 183;
    assert!(matches!(refused(&arm), IgvmBuildError::Elf(_)));
}

/// The SNP build of the image (`make image-snp`, part of `make test` before the tests run).
fn snp_image() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/image/x86_64-unknown-none/release-snp/svsm-image"
    );
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (run `make image-snp` first)"))
}

#[test]
fn the_snp_image_becomes_an_igvm_file_whose_digest_snp_measure_predicts() {
    use object::{Object, ObjectSymbol};
    let elf_bytes = snp_image();
    let elf = svsm_elf(&elf_bytes).unwrap();
    // Linked at the default SVSM_BASE, entered at its 32-bit trampoline (cli; cld; mov esi, ebx).
    assert_eq!((elf.base, elf.entry), (0x400_0000, 0x400_0000));
    assert_eq!(&elf.image[..6], &[0xFA, 0xFC, 0x89, 0xDE, 0x8D, 0xBE]);
    let file = object::File::parse(&*elf_bytes).unwrap();
    let sym = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{name} not in the image"))
            .address()
    };
    assert_eq!(sym("snp_start32"), elf.entry);
    assert!(sym("rust_start_snp") > elf.base && sym("snp_vc_entry") > elf.base);

    let firmware = common::Synth::sid_like(0x20_0000).build();
    let mut input = input(&elf.image, &firmware);
    (input.svsm_base, input.svsm_entry, input.svsm_size) = (elf.base, elf.entry, 128 << 20);
    let (bytes, layout) = build(&input).unwrap();
    // The image checks at entry that its boot information page follows its `_end` directly.
    assert_eq!(sym("_end"), layout.boot_info);
    assert_eq!(layout.parameters, layout.boot_info + 0x1000);

    // It parses back; the boot information is what the image will accept.
    let f = IgvmFile::new_from_binary(&bytes, Some(igvm::IsolationType::Snp)).unwrap();
    let info = f
        .directives()
        .iter()
        .find_map(|d| match d {
            IgvmDirectiveHeader::PageData { gpa, data, .. } if *gpa == layout.boot_info => {
                Some(data.clone())
            }
            _ => None,
        })
        .unwrap();
    let info = SvsmBootInfo::parse(&info).unwrap();
    assert_eq!(info.svsm, GpaRange::new(0x400_0000, 128 << 20));
    assert_eq!(info.parameters.get(), layout.parameters);

    // Its digest: every flavour of ours, the igvm crate's, and the command line (on the ELF).
    let ours = igvm_launch_digest(&bytes, IgvmFlavor::Qemu).unwrap();
    for flavor in IgvmFlavor::ALL {
        assert_eq!(
            igvm_launch_digest(&bytes, flavor).unwrap(),
            ours,
            "{flavor:?}"
        );
    }
    let oracle =
        igvm::measurement::generate_snp_measurement(f.initializations(), f.directives(), 1)
            .unwrap();
    assert_eq!(ours.to_string(), hex::encode(oracle));
    let dir = std::env::temp_dir().join(format!("igvm-snp-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fw.fd"), &firmware).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snp-measure"))
        .current_dir(&dir)
        .args(["build-igvm", "--svsm"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/image/x86_64-unknown-none/release-snp/svsm-image"
        ))
        .args([
            "--svsm-size",
            "128M",
            "--firmware",
            "fw.fd",
            "--out",
            "svsm.igvm",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        ours.to_string()
    );
    assert_eq!(std::fs::read(dir.join("svsm.igvm")).unwrap(), bytes);
    std::fs::remove_dir_all(&dir).unwrap();
}
