//! Reference launch digests (computed independently with sev-snp-measure 0.0.13 and the `sev`
//! crate 8.0.0, which agree) for the images that are installable here (Debian
//! bookworm OVMF.fd / OVMF_CODE.fd: R1–R6) and every intermediate value, exactly. R7–R13 need
//! trixie/sid images, which the tests do not download: the kernel-hashes path is covered by the
//! image-independent intermediates below and by synthetic sid-like images (differential.rs,
//! oracle.rs).

mod common;
use common::*;
use ovmf::digest::sha384;
use ovmf::snp::{measure_firmware, measure_sections};
use ovmf::vmsa::{reset_vmsa_page, BSP_EIP};
use ovmf::{
    ovmf_hash, snp_launch_digest, Firmware, LaunchDigest, LaunchParams, MeasureError, Measurement,
    SectionKind, SevHashes, VcpuType, VmmType,
};

const R1: &str = "ba2c811512ef868474f239a21f7d7057d65a20de87a003c4f116e4fb1573183bfbcd75c3e99b2f558575a5d0094f73c6";
const R2: &str = "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3";
const R3: &str = "32ac9d7a17d28f7cd4404a4516d2f00519668c40ada2062351c36767e908eb3f090d66c33ab10f80150e00a4385b6d0f";
const R4: &str = "80479ca85a2b182c026f6a3a2f2b180ab968d84b17540dd30de39039e70b8c0c33ead2cae6d34e37750035fcff60bfc8";
const R5: &str = "e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840";
const R6: &str = "eafba8950e110689149de8d5e9dff8ac866b3e93c030a1b421816a541a1ca7beb7a27081f4a99f8d85ab6ba2d4be0425";

fn digest(image: &[u8], vcpus: u32, t: VcpuType) -> String {
    let fw = Firmware::parse(image).unwrap();
    snp_launch_digest(&fw, &LaunchParams::new(vcpus, t.signature(), 0x1))
        .unwrap()
        .to_string()
}

#[test]
fn r1_ovmf_hash_bookworm() {
    assert_eq!(ovmf_hash(&ovmf_fd()).unwrap().to_string(), R1);
}

#[test]
fn r2_to_r5_bookworm_ovmf_fd() {
    let img = ovmf_fd();
    assert_eq!(digest(&img, 1, VcpuType::EpycV4), R2);
    assert_eq!(digest(&img, 4, VcpuType::EpycV4), R3);
    assert_eq!(digest(&img, 1, VcpuType::EpycMilan), R4);
    assert_eq!(digest(&img, 4, VcpuType::EpycMilan), R5);
}

#[test]
fn epyc_variants_share_one_signature() {
    let img = ovmf_fd();
    for t in [
        VcpuType::Epyc,
        VcpuType::EpycV1,
        VcpuType::EpycV2,
        VcpuType::EpycV3,
        VcpuType::EpycIbpb,
    ] {
        assert_eq!(digest(&img, 4, t), R3, "{t}");
    }
}

#[test]
fn r6_bookworm_ovmf_code_fd_genoa() {
    let img = ovmf_code_fd();
    let fw = Firmware::parse(&img).unwrap();
    assert_eq!(fw.gpa(), 0xFFE2_0000);
    assert_eq!(digest(&img, 2, VcpuType::EpycGenoa), R6);
}

#[test]
fn bookworm_tables_as_documented() {
    let img = ovmf_fd();
    let fw = Firmware::parse(&img).unwrap();
    assert_eq!(fw.gpa(), 0xFFE0_0000);
    assert_eq!(fw.sev_es_reset_address().unwrap(), 0x80B004);
    assert_eq!(fw.hash_table_area().unwrap(), (0, 0));
    let got: Vec<(u32, u32, u32)> = fw
        .sections()
        .unwrap()
        .iter()
        .map(|s| (s.gpa, s.size, s.kind as u32))
        .collect();
    assert_eq!(got, BOOKWORM_SECTIONS);
    assert!(!fw.has_section(SectionKind::SvsmCaa));
}

#[test]
fn r10_style_resume_from_ovmf_hash() {
    let img = ovmf_fd();
    let fw = Firmware::parse(&img).unwrap();
    let mut p = LaunchParams::new(4, VcpuType::EpycMilan.signature(), 1);
    p.ovmf_hash = Some(R1.parse::<Measurement>().unwrap());
    assert_eq!(snp_launch_digest(&fw, &p).unwrap().to_string(), R5);
    // A different seed changes the result: the seed really is used.
    p.ovmf_hash = Some(Measurement([0; 48]));
    assert_ne!(snp_launch_digest(&fw, &p).unwrap().to_string(), R5);
}

#[test]
fn kernel_with_bookworm_is_refused() {
    let img = ovmf_fd();
    let fw = Firmware::parse(&img).unwrap();
    let mut p = LaunchParams::new(1, VcpuType::EpycV4.signature(), 1);
    p.hashes = Some(SevHashes::new(b"test-kernel\n", None, None));
    assert_eq!(
        snp_launch_digest(&fw, &p),
        Err(MeasureError::NoKernelHashesSection)
    );
}

#[test]
fn intermediate_chain_after_firmware_and_sections() {
    let img = ovmf_fd();
    let fw = Firmware::parse(&img).unwrap();
    let mut ld = LaunchDigest::new();
    measure_firmware(&mut ld, &img).unwrap();
    assert_eq!(ld.value().to_string(), R1);
    measure_sections(&mut ld, &fw, VmmType::Qemu, None).unwrap();
    assert_eq!(
        ld.value().to_string(),
        "1c4a6703fc7248581d08c597e73812dbccc1df1e8a415d47f8553237bb2edfedceb18860550cfac653d2530cbcee0548"
    );
}

#[test]
fn intermediate_vmsa_pages() {
    let v4 = VcpuType::EpycV4.signature();
    let milan = VcpuType::EpycMilan.signature();
    let cases = [
        (BSP_EIP, v4, "77920c4c629ff47e90c0e174fc1ad0eb6fa664f88cd4739488058a8c6cb1a77b3856f55378e9518d0da99452d51c553a"),
        (0x80B004, v4, "8413b852790765a310d95867a8b00bfca3a802b5a80830044b45e253fe96222657e11e53fcf63eb0e0afd722385bf7b4"),
        (BSP_EIP, milan, "728af287318db5f3fc4d2357a969483c4225956dc555b514a78d64ee372112d13b3dca8afd02cdbd1c55697d8ce087f5"),
        (0x80B004, milan, "24d6d6fe1cc2fd76d9504a2e411e2a1e229a6723c94521c373c21dd97514c44895fc07fea07e04b4186d90160c8dad0b"),
    ];
    for (eip, sig, want) in cases {
        let page = reset_vmsa_page(eip, sig, 0x1, VmmType::Qemu);
        assert_eq!(
            hex::encode(sha384(&page)),
            want,
            "eip {eip:#x} sig {sig:#x}"
        );
    }
}

fn r12_hashes() -> SevHashes {
    SevHashes::new(
        b"test-kernel\n",
        Some(b"test-initrd\n"),
        Some("console=ttyS0"),
    )
}

#[test]
fn intermediate_hash_table_bytes() {
    let h = r12_hashes();
    assert_eq!(
        hex::encode(h.kernel),
        "45f6eaac5e2d708de8368589d19cbfc3474d07d61047db71e5a88e263946377a"
    );
    let want = concat!(
        "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36ab2a3200f18aae9b3c09e55bc3047ad361e2442d7c53372470b2958fb83293209a784f71",
        "31f7ba442f3ad74b9af141e29169781d32007cdb59cb7995d088b023c226c93ec4ae765795fe7d7f661c35f319ebf967026e3794e74dd2ab7f42b835d5b172d2045b3200",
        "45f6eaac5e2d708de8368589d19cbfc3474d07d61047db71e5a88e263946377a0000000000000000"
    );
    use zerocopy::IntoBytes;
    assert_eq!(hex::encode(h.table().as_bytes()), want);
}

#[test]
fn intermediate_hashes_pages() {
    let page = r12_hashes().page(0x810C00, 0x400).unwrap();
    assert_eq!(
        hex::encode(sha384(&page)),
        "68f51e74fe9660f68a8bdab2526b31ffc14e06a7e735e527e0c342282189e1429b2b70edb79e4e9f2ca12ba0b80d054e"
    );
    let page = SevHashes::new(b"test-kernel\n", None, None)
        .page(0x810C00, 0x400)
        .unwrap();
    assert_eq!(
        hex::encode(sha384(&page)),
        "902d253977952d182f1f4114403ad69bfd0109ac6fc1d1d5927573a4767bb34b30aa358b783acdd3914bb981093b28e8"
    );
}
