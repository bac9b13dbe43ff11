//! Every ATTESTATION_REPORT in the repository's `vectors/snp/` parsed and checked against the facts its
//! README lists (real hardware evidence from Milan, Genoa and Turin parts).

use std::path::PathBuf;
use svsm_abi::snp::{
    AttestationReport, Product, ReportError, ReportVersion, SigningKey, TcbLayout, TcbVersion,
    REPORT_SIZE,
};

fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SVSM_VECTORS") {
        return PathBuf::from(dir).join("snp");
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vectors/snp");
    assert!(
        dir.join("README.md").exists(),
        "test vectors not found at {} (set SVSM_VECTORS to a vectors folder)",
        dir.display()
    );
    dir
}

fn read(rel: &str) -> Vec<u8> {
    let path = vectors_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The SNP report of a case: `report.bin`, or bytes 0x20..0x4C0 of an Azure HCL report.
fn report_bytes(case: &str) -> Vec<u8> {
    if case.starts_with("azure-") {
        let hcl = read(&format!("{case}/hcl-report.bin"));
        assert_eq!(&hcl[..4], b"HCLA");
        hcl[0x20..0x20 + REPORT_SIZE].to_vec()
    } else {
        read(&format!("{case}/report.bin"))
    }
}

struct Expected {
    case: &'static str,
    version: ReportVersion,
    product: Option<Product>,
    signer: SigningKey,
    vmpl: u32,
    guest_svn: u32,
    policy: u64,
    platform_info: u64,
    measurement: &'static str,
    chip_id_prefix: &'static str,
    reported_tcb_raw: u64,
    /// (fmc, bl, tee, snp, ucode) decoded with the product's layout.
    tcb: (Option<u8>, u8, u8, u8, u8),
    layout: TcbLayout,
}

const CASES: &[Expected] = &[
    Expected {
        case: "milan-v2",
        version: ReportVersion::V2,
        product: None,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 0,
        policy: 0x30000,
        platform_info: 0x1,
        measurement: "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
        chip_id_prefix: "d49554ec717f4e5b",
        reported_tcb_raw: 0x7308_0000_0000_0003,
        tcb: (None, 3, 0, 8, 115),
        layout: TcbLayout::MilanGenoa,
    },
    Expected {
        case: "milan-v3",
        version: ReportVersion::V3,
        product: Some(Product::Milan),
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 2,
        policy: 0x3001F,
        platform_info: 0x25,
        measurement: "5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1",
        chip_id_prefix: "4ffb5cb4fd594f3f",
        reported_tcb_raw: 0xDB18_0000_0000_0004,
        tcb: (None, 4, 0, 24, 219),
        layout: TcbLayout::MilanGenoa,
    },
    Expected {
        case: "milan-v3-vlek",
        version: ReportVersion::V3,
        product: Some(Product::Milan),
        signer: SigningKey::Vlek,
        vmpl: 1,
        guest_svn: 0,
        policy: 0x30000,
        platform_info: 0x27,
        measurement: "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
        chip_id_prefix: "0000000000000000",
        reported_tcb_raw: 0xD918_0000_0000_0004,
        tcb: (None, 4, 0, 24, 217),
        layout: TcbLayout::MilanGenoa,
    },
    Expected {
        case: "genoa-v3",
        version: ReportVersion::V3,
        product: Some(Product::Genoa),
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 2,
        policy: 0x3001F,
        platform_info: 0x27,
        measurement: "5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1",
        chip_id_prefix: "b1e24a27bbc3a4d5",
        reported_tcb_raw: 0x5417_0000_0000_000A,
        tcb: (None, 10, 0, 23, 84),
        layout: TcbLayout::MilanGenoa,
    },
    Expected {
        case: "turin-v5",
        version: ReportVersion::V5,
        product: Some(Product::Turin),
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 2,
        policy: 0x3001F,
        platform_info: 0x65,
        measurement: "6d6c354511d6f7c6d7504668903dc5bdc066a048b651840d8d03fb85299ebfa142fccf1d1b0baca496841bdf243619d4",
        chip_id_prefix: "59790fb1c39f35c1",
        reported_tcb_raw: 0x5100_0000_0401_0101,
        tcb: (Some(1), 1, 1, 4, 81),
        layout: TcbLayout::Turin,
    },
    Expected {
        case: "azure-milan-v2",
        version: ReportVersion::V2,
        product: None,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 5,
        policy: 0x3001F,
        platform_info: 0x1,
        measurement: "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315",
        chip_id_prefix: "19752a447db501a3",
        reported_tcb_raw: 0x7308_0000_0000_0003,
        tcb: (None, 3, 0, 8, 115),
        layout: TcbLayout::MilanGenoa,
    },
    Expected {
        case: "azure-milan-v3",
        version: ReportVersion::V3,
        product: Some(Product::Milan),
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 10,
        policy: 0x3001F,
        platform_info: 0x25,
        measurement: "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e",
        chip_id_prefix: "66a5a7b4403a3006",
        reported_tcb_raw: 0xDB18_0000_0000_0004,
        tcb: (None, 4, 0, 24, 219),
        layout: TcbLayout::MilanGenoa,
    },
    Expected {
        case: "azure-genoa-v3",
        version: ReportVersion::V3,
        product: Some(Product::Genoa),
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 65547,
        policy: 0x3001F,
        platform_info: 0x24,
        measurement: "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        chip_id_prefix: "0506ffba875e939c",
        reported_tcb_raw: 0x5417_0000_0000_000A,
        tcb: (None, 10, 0, 23, 84),
        layout: TcbLayout::MilanGenoa,
    },
];

#[test]
fn every_vector_report_matches_its_readme_facts() {
    for e in CASES {
        let bytes = report_bytes(e.case);
        let report =
            AttestationReport::parse(&bytes).unwrap_or_else(|err| panic!("{}: {err}", e.case));
        let raw = report.raw();
        assert_eq!(report.version(), e.version, "{}", e.case);
        assert_eq!(report.product(), e.product, "{}", e.case);
        assert_eq!(report.key_info().signing_key(), e.signer, "{}", e.case);
        assert_eq!(report.vmpl(), e.vmpl, "{}", e.case);
        assert_eq!(report.guest_svn(), e.guest_svn, "{}", e.case);
        assert_eq!(report.policy().0, e.policy, "{}", e.case);
        assert!(!report.policy().debug_allowed(), "{}", e.case);
        assert_eq!(report.platform_info().bits(), e.platform_info, "{}", e.case);
        assert_eq!(report.platform_info().unknown_bits(), 0, "{}", e.case);
        assert_eq!(hex::encode(raw.measurement), e.measurement, "{}", e.case);
        assert_eq!(
            hex::encode(&raw.chip_id[..8]),
            e.chip_id_prefix,
            "{}",
            e.case
        );
        assert_eq!(raw.reported_tcb.raw(), e.reported_tcb_raw, "{}", e.case);
        let tcb = raw.reported_tcb.decode(e.layout);
        assert_eq!(
            (tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode),
            e.tcb,
            "{}",
            e.case
        );
        if let Some(product) = e.product {
            assert_eq!(product.tcb_layout(), e.layout, "{}", e.case);
        }
        assert_eq!(raw.signature_algo.get(), 1, "{}", e.case);
        assert_eq!(raw.report_id_ma, [0xFF; 32], "{}", e.case);
        report
            .check_reserved()
            .unwrap_or_else(|err| panic!("{}: {err}", e.case));
        let (r, s) = raw.signature.to_be_components().unwrap();
        assert!(
            r.iter().any(|&b| b != 0) && s.iter().any(|&b| b != 0),
            "{}",
            e.case
        );
        assert_eq!(report.signed_bytes().len(), 0x2A0);
        assert_eq!(report.as_bytes(), &bytes[..]);
        // v3+ carry CPUID; v2 and v3 have no mitigation vectors; v5 does.
        assert_eq!(
            report.cpuid().is_some(),
            e.version >= ReportVersion::V3,
            "{}",
            e.case
        );
        assert_eq!(
            report.mit_vectors().is_some(),
            e.version >= ReportVersion::V5,
            "{}",
            e.case
        );
    }
}

#[test]
fn turin_vector_carries_mitigation_vectors_and_an_8_byte_chip_id() {
    let bytes = report_bytes("turin-v5");
    let report = AttestationReport::parse(&bytes).unwrap();
    assert_eq!(report.mit_vectors(), Some((0x3F, 0x3F)));
    assert!(report.raw().chip_id[8..].iter().all(|&b| b == 0));
    assert_eq!(report.cpuid(), Some((0x1A, 0x02, 0x01)));
    // Decoding Turin's TCB with the Milan/Genoa layout gives a different SNP SPL.
    assert_ne!(
        report.raw().reported_tcb.decode(TcbLayout::MilanGenoa).snp,
        4
    );
}

#[test]
fn vlek_vector_reports_differ_from_current_tcb() {
    let bytes = report_bytes("milan-v3-vlek");
    let raw = *AttestationReport::parse(&bytes).unwrap().raw();
    assert_eq!(raw.current_tcb, TcbVersion::from_raw(0xDC18_0000_0000_0004));
    assert_eq!(
        raw.committed_tcb,
        TcbVersion::from_raw(0xDB18_0000_0000_0004)
    );
    assert_eq!(raw.launch_tcb, TcbVersion::from_raw(0xDB18_0000_0000_0004));
    assert_ne!(raw.current_tcb, raw.reported_tcb);
    assert!(raw.chip_id.iter().all(|&b| b == 0));
}

#[test]
fn firmware_versions_decode() {
    let bytes = report_bytes("genoa-v3");
    let raw = *AttestationReport::parse(&bytes).unwrap().raw();
    assert_eq!(
        (raw.current_major, raw.current_minor, raw.current_build),
        (1, 55, 40)
    );
    assert_eq!(
        (
            raw.committed_major,
            raw.committed_minor,
            raw.committed_build
        ),
        (1, 55, 40)
    );
}

#[test]
fn every_length_other_than_1184_is_a_typed_error() {
    let bytes = report_bytes("milan-v3");
    for len in 0..bytes.len() {
        assert_eq!(
            AttestationReport::parse(&bytes[..len]).unwrap_err(),
            ReportError::Length(len)
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        AttestationReport::parse(&longer).unwrap_err(),
        ReportError::Length(1185)
    );
    let huge = vec![0u8; 1 << 16];
    assert_eq!(
        AttestationReport::parse(&huge).unwrap_err(),
        ReportError::Length(1 << 16)
    );
}

#[test]
fn every_unknown_version_is_a_typed_error() {
    let mut bytes = report_bytes("milan-v3");
    for v in [0u32, 1, 6, 7, 0xFF, 0x100, 0x8000_0000, u32::MAX] {
        bytes[..4].copy_from_slice(&v.to_le_bytes());
        assert_eq!(
            AttestationReport::parse(&bytes).unwrap_err(),
            ReportError::UnsupportedVersion(v)
        );
    }
}

#[test]
fn reserved_fields_are_named_when_set() {
    let base = report_bytes("milan-v3");
    let cases: &[(usize, &str)] = &[
        (0x04C, "reserved@0x04C"),
        (0x04B, "key_info[31:5]"),
        (0x18B, "reserved@0x18B"),
        (0x1EB, "reserved@0x1EB"),
        (0x1EF, "reserved@0x1EF"),
        (0x1F8, "mit_vectors@0x1F8 (reserved before v5)"),
        (0x208, "reserved@0x208"),
        (0x330, "signature.reserved@0x330"),
    ];
    for &(off, field) in cases {
        let mut b = base.clone();
        b[off] = 0x80;
        let r = AttestationReport::parse(&b).unwrap();
        assert_eq!(
            r.check_reserved(),
            Err(ReportError::ReservedNonZero { field, version: 3 }),
            "offset {off:#x}"
        );
    }
    // CPUID bytes are reserved in v2.
    let mut b = report_bytes("milan-v2");
    b[0x188] = 0x19;
    assert!(matches!(
        AttestationReport::parse(&b).unwrap().check_reserved(),
        Err(ReportError::ReservedNonZero {
            field: "cpuid@0x188 (reserved in v2)",
            ..
        })
    ));
    // Signature padding above byte 48 of R or S.
    for off in [0x2A0 + 48, 0x2E8 + 71] {
        let mut b = base.clone();
        b[off] = 1;
        assert!(matches!(
            AttestationReport::parse(&b).unwrap().check_reserved(),
            Err(ReportError::SignaturePadding(_))
        ));
    }
}
