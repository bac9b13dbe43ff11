//! The IGVM path: three synthetic cases A, B, C whose digests the igvm 0.5 crate and coconut-svsm's
//! igvmmeasure both give (bookworm
//! OVMF.fd as 512 NORMAL pages from 0xFFE00000, then extra directives, then the R2 BSP VMSA as
//! an SNP VP context at 0xFFFFFFFFF000) in every flavour; the igvm 0.5 crate's own measurement
//! as an oracle for the `igvm-crate` flavour; each documented difference between the flavours
//! on a file built to show it (checked against an equivalent file, not against our own code);
//! and the refusals.

mod common;
use common::*;
use igvm::snp_defs::SevVmsa;
use igvm::{
    IgvmDirectiveHeader, IgvmFile, IgvmInitializationHeader, IgvmPlatformHeader, IgvmRevision,
};
use igvm_defs::{
    IgvmPageDataFlags, IgvmPageDataType, IgvmPlatformType, IGVM_SEV_SNP_PLATFORM_VERSION,
    IGVM_VHS_PARAMETER, IGVM_VHS_PARAMETER_INSERT, IGVM_VHS_SUPPORTED_PLATFORM,
};
use ovmf::igvm::measure_igvm;
use ovmf::vmsa::{reset_vmsa_page, VmmType, BSP_EIP};
use ovmf::{igvm_launch_digest, IgvmError, IgvmFlavor, VcpuType};
use zerocopy::FromBytes;

const A: &str = "97433290dc78c003e310614c3f5823db4283610149b3292adb1f96030ecb017f876de3d94b7c927122f55f928996d321";
const B: &str = "452085ba208daeb9c3e63ba501f856c0c59f065eeae4a8e3a6d4ee60fd9fd6f7927878a97a8d3e785704934801355d0e";
const C: &str = "c5d2fa9a87a79da69bf84f3fe7f92f990e3aad1782854b6007a8a90d9a3a2b076f02cdfeea346f7f55472d8e8343a56b";
const R2: &str = "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3";
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

fn platform() -> Vec<IgvmPlatformHeader> {
    vec![IgvmPlatformHeader::SupportedPlatform(
        IGVM_VHS_SUPPORTED_PLATFORM {
            compatibility_mask: 1,
            highest_vtl: 0,
            platform_type: IgvmPlatformType::SEV_SNP,
            platform_version: IGVM_SEV_SNP_PLATFORM_VERSION,
            shared_gpa_boundary: 0,
        },
    )]
}

fn policy() -> Vec<IgvmInitializationHeader> {
    vec![IgvmInitializationHeader::GuestPolicy {
        policy: 0x30000,
        compatibility_mask: 1,
    }]
}

fn page(gpa: u64, data: Vec<u8>) -> IgvmDirectiveHeader {
    typed(
        gpa,
        IgvmPageDataType::NORMAL,
        IgvmPageDataFlags::new(),
        data,
    )
}

fn typed(
    gpa: u64,
    data_type: IgvmPageDataType,
    flags: IgvmPageDataFlags,
    data: Vec<u8>,
) -> IgvmDirectiveHeader {
    IgvmDirectiveHeader::PageData {
        gpa,
        compatibility_mask: 1,
        flags,
        data_type,
        data,
    }
}

fn zero_pages(gpa: u64, bytes: u64) -> Vec<IgvmDirectiveHeader> {
    (0..bytes / 4096)
        .map(|i| page(gpa + i * 4096, vec![]))
        .collect()
}

fn bsp_vmsa() -> Box<SevVmsa> {
    let p = reset_vmsa_page(BSP_EIP, VcpuType::EpycV4.signature(), 0x1, VmmType::Qemu);
    Box::new(SevVmsa::read_from_bytes(&p[..std::mem::size_of::<SevVmsa>()]).unwrap())
}

fn vp(gpa: u64, vp_index: u16) -> IgvmDirectiveHeader {
    IgvmDirectiveHeader::SnpVpContext {
        gpa,
        compatibility_mask: 1,
        vp_index,
        vmsa: bsp_vmsa(),
    }
}

fn ovmf_pages() -> Vec<IgvmDirectiveHeader> {
    ovmf_fd()
        .chunks(4096)
        .enumerate()
        .map(|(i, c)| page(0xFFE0_0000 + i as u64 * 4096, c.to_vec()))
        .collect()
}

fn secrets_cpuid() -> Vec<IgvmDirectiveHeader> {
    vec![
        typed(
            0x80D000,
            IgvmPageDataType::SECRETS,
            IgvmPageDataFlags::new(),
            vec![],
        ),
        typed(
            0x80E000,
            IgvmPageDataType::CPUID_DATA,
            IgvmPageDataFlags::new(),
            vec![],
        ),
    ]
}

/// Builds, serializes and returns the binary (everything below measures the parsed binary).
fn file(init: Vec<IgvmInitializationHeader>, directives: Vec<IgvmDirectiveHeader>) -> Vec<u8> {
    let f = IgvmFile::new(IgvmRevision::V1, platform(), init, directives).unwrap();
    let mut out = Vec::new();
    f.serialize(&mut out).unwrap();
    out
}

fn set_a() -> Vec<u8> {
    let mut d = ovmf_pages();
    d.push(vp(VMSA_GPA, 0));
    file(policy(), d)
}

fn set_b() -> Vec<u8> {
    let mut d = ovmf_pages();
    d.extend(zero_pages(0x800000, 0x9000));
    d.extend(zero_pages(0x80A000, 0x3000));
    d.extend(secrets_cpuid());
    d.extend(zero_pages(0x80F000, 0x11000));
    d.push(vp(VMSA_GPA, 0));
    file(policy(), d)
}

fn param_area(bytes: u64) -> Vec<IgvmDirectiveHeader> {
    vec![
        IgvmDirectiveHeader::ParameterArea {
            number_of_bytes: bytes,
            parameter_area_index: 0,
            initial_data: vec![],
        },
        IgvmDirectiveHeader::VpCount(IGVM_VHS_PARAMETER {
            parameter_area_index: 0,
            byte_offset: 0,
        }),
        IgvmDirectiveHeader::ParameterInsert(IGVM_VHS_PARAMETER_INSERT {
            gpa: 0x7000,
            compatibility_mask: 1,
            parameter_area_index: 0,
        }),
    ]
}

fn set_c_with_area(bytes: u64) -> Vec<u8> {
    let mut d = ovmf_pages();
    d.extend(param_area(bytes));
    d.extend(secrets_cpuid());
    d.push(vp(VMSA_GPA, 0));
    file(policy(), d)
}

fn digest(bin: &[u8], flavor: IgvmFlavor) -> String {
    igvm_launch_digest(bin, flavor).unwrap().to_string()
}

/// igvm 0.5's `measurement::generate_snp_measurement` on the parsed binary.
fn oracle(bin: &[u8]) -> String {
    let f = IgvmFile::new_from_binary(bin, Some(igvm::IsolationType::Snp)).unwrap();
    let d = igvm::measurement::generate_snp_measurement(f.initializations(), f.directives(), 1)
        .unwrap();
    hex::encode(d)
}

#[test]
fn set_a_all_flavours() {
    let bin = set_a();
    for f in IgvmFlavor::ALL {
        assert_eq!(digest(&bin, f), A, "{f}");
    }
    assert_eq!(oracle(&bin), A);
}

#[test]
fn set_b_all_flavours_and_native_zero_is_r2() {
    let bin = set_b();
    for f in [
        IgvmFlavor::Qemu,
        IgvmFlavor::Igvmmeasure,
        IgvmFlavor::IgvmCrate,
    ] {
        assert_eq!(digest(&bin, f), B, "{f}");
    }
    assert_eq!(oracle(&bin), B);
    // Data-less pages as ZERO: the IGVM mirror of the -bios flow gives exactly R2.
    assert_eq!(digest(&bin, IgvmFlavor::IgvmmeasureNativeZero), R2);
}

#[test]
fn set_c_all_flavours() {
    let bin = set_c_with_area(4096);
    for f in IgvmFlavor::ALL {
        assert_eq!(digest(&bin, f), C, "{f}");
    }
    assert_eq!(oracle(&bin), C);
}

/// Small files for the difference cases: a few pages, then whatever the case adds.
fn small(extra: Vec<IgvmDirectiveHeader>, vmsa_last: bool) -> Vec<u8> {
    let mut d: Vec<IgvmDirectiveHeader> = (0..4u64)
        .map(|i| page(0xFFFF_C000 + i * 4096, vec![i as u8 + 1; 4096]))
        .collect();
    if !vmsa_last {
        d.push(vp(VMSA_GPA, 0));
    }
    d.extend(extra);
    if vmsa_last {
        d.push(vp(VMSA_GPA, 0));
    }
    file(policy(), d)
}

#[test]
fn difference_parameter_area_of_two_pages() {
    let two = set_c_with_area(8192);
    // qemu and igvm-crate insert the whole area (2 pages); igvmmeasure one page.
    assert_eq!(
        digest(&two, IgvmFlavor::Qemu),
        digest(&two, IgvmFlavor::IgvmCrate)
    );
    assert_eq!(digest(&two, IgvmFlavor::IgvmCrate), oracle(&two));
    assert_ne!(
        digest(&two, IgvmFlavor::Qemu),
        digest(&two, IgvmFlavor::Igvmmeasure)
    );
    assert_eq!(digest(&two, IgvmFlavor::Igvmmeasure), C);
    // The two-page value equals a one-page insert followed by one more unmeasured page.
    let mut d = ovmf_pages();
    d.extend(param_area(4096));
    d.push(typed(
        0x8000,
        IgvmPageDataType::NORMAL,
        IgvmPageDataFlags::new().with_unmeasured(true),
        vec![],
    ));
    d.extend(secrets_cpuid());
    d.push(vp(VMSA_GPA, 0));
    let equivalent = file(policy(), d);
    assert_eq!(
        digest(&two, IgvmFlavor::Qemu),
        digest(&equivalent, IgvmFlavor::Igvmmeasure)
    );
}

#[test]
fn difference_shared_pages() {
    let shared = typed(
        0x100000,
        IgvmPageDataType::NORMAL,
        IgvmPageDataFlags::new().with_shared(true),
        vec![0xAA; 4096],
    );
    let with = small(vec![shared], true);
    let without = small(vec![], true);
    assert_eq!(
        digest(&with, IgvmFlavor::IgvmCrate),
        digest(&without, IgvmFlavor::IgvmCrate)
    );
    assert_eq!(digest(&with, IgvmFlavor::IgvmCrate), oracle(&with));
    // QEMU's loader and igvmmeasure measure the page like any other.
    let plain = small(vec![page(0x100000, vec![0xAA; 4096])], true);
    for f in [IgvmFlavor::Qemu, IgvmFlavor::Igvmmeasure] {
        assert_eq!(digest(&with, f), digest(&plain, f), "{f}");
        assert_ne!(digest(&with, f), digest(&without, f), "{f}");
    }
}

#[test]
fn difference_vmsa_not_last() {
    let extra = || zero_pages(0x800000, 0x2000);
    let early = small(extra(), false);
    let last = small(extra(), true);
    // KVM measures the VMSA at LAUNCH_FINISH, after every page: position in the file is moot.
    assert_eq!(
        digest(&early, IgvmFlavor::Qemu),
        digest(&last, IgvmFlavor::Qemu)
    );
    assert_eq!(
        digest(&last, IgvmFlavor::Qemu),
        digest(&last, IgvmFlavor::Igvmmeasure)
    );
    // The measuring tools keep file order.
    assert_ne!(
        digest(&early, IgvmFlavor::Igvmmeasure),
        digest(&last, IgvmFlavor::Igvmmeasure)
    );
    assert_eq!(
        digest(&early, IgvmFlavor::Igvmmeasure),
        digest(&early, IgvmFlavor::IgvmCrate)
    );
    assert_eq!(digest(&early, IgvmFlavor::IgvmCrate), oracle(&early));
}

#[test]
fn difference_2mib_pages() {
    let big = typed(
        0x20_0000,
        IgvmPageDataType::NORMAL,
        IgvmPageDataFlags::new().with_is_2mb_page(true),
        vec![],
    );
    let with = small(vec![big], true);
    let as_4k = small(zero_pages(0x20_0000, 0x20_0000), true);
    for f in [IgvmFlavor::Qemu, IgvmFlavor::Igvmmeasure] {
        assert_eq!(digest(&with, f), digest(&as_4k, f), "{f}");
    }
    let one = small(zero_pages(0x20_0000, 0x1000), true);
    assert_eq!(
        digest(&with, IgvmFlavor::IgvmCrate),
        digest(&one, IgvmFlavor::IgvmCrate)
    );
    assert_eq!(digest(&with, IgvmFlavor::IgvmCrate), oracle(&with));
    // With native zero, the 2 MiB page is 512 ZERO pages.
    assert_eq!(
        digest(&with, IgvmFlavor::IgvmmeasureNativeZero),
        digest(&as_4k, IgvmFlavor::IgvmmeasureNativeZero)
    );
}

#[test]
fn unmeasured_and_cpuid_xf_pages() {
    let d = vec![
        typed(
            0x100000,
            IgvmPageDataType::NORMAL,
            IgvmPageDataFlags::new().with_unmeasured(true),
            vec![1; 4096],
        ),
        typed(
            0x101000,
            IgvmPageDataType::CPUID_XF,
            IgvmPageDataFlags::new(),
            vec![],
        ),
        page(0x102000, vec![7; 100]),
    ];
    let bin = small(d, true);
    let want = oracle(&bin);
    for f in IgvmFlavor::ALL {
        assert_eq!(digest(&bin, f), want, "{f}");
    }
}

#[test]
fn qemu_refuses_what_kvm_cannot_do() {
    let mut d: Vec<IgvmDirectiveHeader> = vec![page(0xFFFF_F000, vec![1; 4096])];
    d.push(vp(0xFFFF_E000, 0));
    let elsewhere = file(policy(), d);
    assert!(matches!(
        igvm_launch_digest(&elsewhere, IgvmFlavor::Qemu),
        Err(IgvmError::VmsaGpa { gpa: 0xFFFF_E000 })
    ));
    // The tools measure it where the file says.
    assert_eq!(
        digest(&elsewhere, IgvmFlavor::Igvmmeasure),
        oracle(&elsewhere)
    );

    let none = file(policy(), vec![page(0xFFFF_F000, vec![1; 4096])]);
    assert!(matches!(
        igvm_launch_digest(&none, IgvmFlavor::Qemu),
        Err(IgvmError::NoVmsa)
    ));
    assert_eq!(digest(&none, IgvmFlavor::IgvmCrate), oracle(&none));

    let two = file(
        policy(),
        vec![
            page(0xFFFF_F000, vec![1; 4096]),
            vp(VMSA_GPA, 0),
            vp(VMSA_GPA, 1),
        ],
    );
    assert!(matches!(
        igvm_launch_digest(&two, IgvmFlavor::Qemu),
        Err(IgvmError::VmsaCount { count: 2 })
    ));
}

#[test]
fn igvm_crate_flavour_needs_a_guest_policy() {
    let bin = file(
        vec![],
        vec![page(0xFFFF_F000, vec![1; 4096]), vp(VMSA_GPA, 0)],
    );
    assert!(matches!(
        igvm_launch_digest(&bin, IgvmFlavor::IgvmCrate),
        Err(IgvmError::MissingGuestPolicy { mask: 1 })
    ));
    assert!(igvm_launch_digest(&bin, IgvmFlavor::Qemu).is_ok());
}

#[test]
fn malformed_igvm_files() {
    for bad in [&b""[..], b"IGVM", &[0u8; 4096][..], &ovmf_fd()[..8192]] {
        for f in IgvmFlavor::ALL {
            assert!(matches!(
                igvm_launch_digest(bad, f),
                Err(IgvmError::FixedHeader { .. } | IgvmError::Parse(_))
            ));
        }
    }
    // Header sizes that overflow 32 bits (igvm 0.5.0 itself would panic on these).
    let mut hostile = small(vec![], true);
    let len = hostile.len() as u32;
    hostile[12..16].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    assert!(matches!(
        igvm_launch_digest(&hostile, IgvmFlavor::Qemu),
        Err(IgvmError::FixedHeader {
            field: "variable_header_size",
            value: 0xFFFF_FFF0
        })
    ));
    hostile[16..20].copy_from_slice(&(len + 1).to_le_bytes());
    assert!(matches!(
        igvm_launch_digest(&hostile, IgvmFlavor::Qemu),
        Err(IgvmError::FixedHeader {
            field: "total_file_size",
            ..
        })
    ));
    // Every truncation of a valid file is refused, never a panic.
    let bin = small(vec![], true);
    for cut in (0..bin.len()).step_by(97) {
        assert!(
            igvm_launch_digest(&bin[..cut], IgvmFlavor::Qemu).is_err(),
            "{cut}"
        );
    }
    // A native-only file has no SNP platform.
    let native = IgvmFile::new(
        IgvmRevision::V1,
        vec![IgvmPlatformHeader::SupportedPlatform(
            IGVM_VHS_SUPPORTED_PLATFORM {
                compatibility_mask: 1,
                highest_vtl: 0,
                platform_type: IgvmPlatformType::NATIVE,
                platform_version: igvm_defs::IGVM_NATIVE_PLATFORM_VERSION,
                shared_gpa_boundary: 0,
            },
        )],
        vec![],
        vec![page(0x1000, vec![1; 4096])],
    )
    .unwrap();
    assert!(matches!(
        measure_igvm(&native, IgvmFlavor::Qemu),
        Err(IgvmError::NoSnpPlatform)
    ));
}

#[test]
fn parameter_insert_out_of_range() {
    let mut d = vec![page(0xFFFF_F000, vec![1; 4096])];
    d.push(IgvmDirectiveHeader::ParameterArea {
        number_of_bytes: 0x3000,
        parameter_area_index: 0,
        initial_data: vec![],
    });
    d.push(IgvmDirectiveHeader::ParameterInsert(
        IGVM_VHS_PARAMETER_INSERT {
            gpa: 0xFFFF_FFFF_FFFF_E000,
            compatibility_mask: 1,
            parameter_area_index: 0,
        },
    ));
    d.push(vp(VMSA_GPA, 0));
    let f = IgvmFile::new(IgvmRevision::V1, platform(), policy(), d).unwrap();
    assert!(matches!(
        measure_igvm(&f, IgvmFlavor::Qemu),
        Err(IgvmError::Range {
            what: "PARAMETER_INSERT",
            ..
        })
    ));
    // One page still fits for igvmmeasure.
    assert!(measure_igvm(&f, IgvmFlavor::Igvmmeasure).is_ok());
}
