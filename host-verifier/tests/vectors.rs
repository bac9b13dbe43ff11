//! Every real case in `vectors/snp` verifies, with the facts its README lists.

mod common;
use common::*;
use host_verifier::check::TrustClaimName;
use host_verifier::{CheckId, Failure, Outcome, Policy, Verdict, Verifier};
use svsm_abi::snp::{Product, SigningKey};

struct Facts {
    case: &'static str,
    version: u32,
    product: Product,
    signer: SigningKey,
    vmpl: u32,
    guest_svn: u32,
    policy: &'static str,
    platform_info: &'static str,
    measurement_prefix: &'static str,
    chip_id_prefix: &'static str,
    /// bl, tee, snp, ucode, fmc
    reported_tcb: (u8, u8, u8, u8, Option<u8>),
    product_name: &'static str,
    not_before: &'static str,
    not_after: &'static str,
}

const FACTS: [Facts; 8] = [
    Facts {
        case: "milan-v2",
        version: 2,
        product: Product::Milan,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 0,
        policy: "0x30000",
        platform_info: "0x1",
        measurement_prefix: "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
        chip_id_prefix: "d49554ec717f4e5b",
        reported_tcb: (3, 0, 8, 115, None),
        product_name: "Milan-B0",
        not_before: "2023-04-03",
        not_after: "2030-04-03",
    },
    Facts {
        case: "milan-v3",
        version: 3,
        product: Product::Milan,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 2,
        policy: "0x3001f",
        platform_info: "0x25",
        measurement_prefix: "5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1",
        chip_id_prefix: "4ffb5cb4fd594f3f",
        reported_tcb: (4, 0, 24, 219, None),
        product_name: "Milan-B0",
        not_before: "2026-02-05",
        not_after: "2033-02-05",
    },
    Facts {
        case: "milan-v3-vlek",
        version: 3,
        product: Product::Milan,
        signer: SigningKey::Vlek,
        vmpl: 1,
        guest_svn: 0,
        policy: "0x30000",
        platform_info: "0x27",
        measurement_prefix: "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
        chip_id_prefix: "0000000000000000",
        reported_tcb: (4, 0, 24, 217, None),
        product_name: "Milan",
        not_before: "2024-12-10",
        not_after: "2025-12-10",
    },
    Facts {
        case: "genoa-v3",
        version: 3,
        product: Product::Genoa,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 2,
        policy: "0x3001f",
        platform_info: "0x27",
        measurement_prefix: "5feee30d",
        chip_id_prefix: "b1e24a27bbc3a4d5",
        reported_tcb: (10, 0, 23, 84, None),
        product_name: "Genoa",
        not_before: "2026-02-05",
        not_after: "2033-02-05",
    },
    Facts {
        case: "turin-v5",
        version: 5,
        product: Product::Turin,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 2,
        policy: "0x3001f",
        platform_info: "0x65",
        measurement_prefix: "6d6c354511d6f7c6d7504668903dc5bdc066a048b651840d8d03fb85299ebfa142fccf1d1b0baca496841bdf243619d4",
        chip_id_prefix: "59790fb1c39f35c1",
        reported_tcb: (1, 1, 4, 81, Some(1)),
        product_name: "Turin",
        not_before: "2026-02-05",
        not_after: "2033-02-05",
    },
    Facts {
        case: "azure-milan-v2",
        version: 2,
        product: Product::Milan,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 5,
        policy: "0x3001f",
        platform_info: "0x1",
        measurement_prefix: "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315",
        chip_id_prefix: "19752a447db501a3",
        reported_tcb: (3, 0, 8, 115, None),
        product_name: "Milan-B0",
        not_before: "2023-05-02",
        not_after: "2030-05-02",
    },
    Facts {
        case: "azure-milan-v3",
        version: 3,
        product: Product::Milan,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 10,
        policy: "0x3001f",
        platform_info: "0x25",
        measurement_prefix: "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e",
        chip_id_prefix: "66a5a7b4403a3006",
        reported_tcb: (4, 0, 24, 219, None),
        product_name: "Milan-B0",
        not_before: "2025-01-28",
        not_after: "2032-01-28",
    },
    Facts {
        case: "azure-genoa-v3",
        version: 3,
        product: Product::Genoa,
        signer: SigningKey::Vcek,
        vmpl: 0,
        guest_svn: 65547,
        policy: "0x3001f",
        platform_info: "0x24",
        measurement_prefix: "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        chip_id_prefix: "0506ffba875e939c",
        reported_tcb: (10, 0, 23, 84, None),
        product_name: "Genoa",
        not_before: "2025-01-24",
        not_after: "2032-01-24",
    },
];

#[test]
fn every_vector_verifies_with_its_readme_facts() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    for f in &FACTS {
        let c = case(f.case);
        let a = verify_with(&verifier, &c.report, &c.vek, c.at).unwrap();
        let name = f.case;
        assert_eq!(
            a.verdict(),
            Verdict::Affirming,
            "{name}\n{}",
            a.render_text()
        );
        assert_eq!(a.checks.len(), CheckId::ALL.len());
        // Checks the default policy does not ask for say so, instead of passing.
        for id in [
            CheckId::ReportVersion,
            CheckId::PolicyLaunchTcbMinimum,
            CheckId::PolicyTcbCurrent,
        ] {
            assert!(
                matches!(a.check(id).unwrap().outcome, Outcome::NotApplicable(_)),
                "{name}: {id}"
            );
        }
        for id in [
            CheckId::ReportReserved,
            CheckId::ReportSignatureAlgo,
            CheckId::ReportKeyInfo,
            CheckId::ReportGuestPolicy,
            CheckId::Product,
            CheckId::ChainArk,
            CheckId::ChainIntermediate,
            CheckId::ChainVek,
            CheckId::VekKind,
            CheckId::CertValidity,
            CheckId::ReportSignature,
            CheckId::VekExtensions,
            CheckId::VekTcb,
            CheckId::VekIdentity,
            CheckId::PolicyDebug,
            CheckId::PolicyMigrationAgent,
            CheckId::PolicySmt,
        ] {
            assert!(
                passed(&a, id),
                "{name}: {id} did not pass\n{}",
                a.render_text()
            );
        }
        assert!(matches!(
            a.check(CheckId::Crl).unwrap().outcome,
            Outcome::NotApplicable(_)
        ));
        let r = &a.report;
        assert_eq!(r.version, f.version, "{name}");
        assert_eq!(a.product, Some(f.product), "{name}");
        assert_eq!(a.signer, f.signer, "{name}");
        assert_eq!(r.vmpl, f.vmpl, "{name}");
        assert_eq!(r.guest_svn, f.guest_svn, "{name}");
        assert_eq!(r.policy, f.policy, "{name}");
        assert_eq!(r.platform_info, f.platform_info, "{name}");
        assert!(r.measurement.starts_with(f.measurement_prefix), "{name}");
        assert!(r.chip_id.starts_with(f.chip_id_prefix), "{name}");
        let t = &r.reported_tcb;
        assert_eq!(
            (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
            f.reported_tcb,
            "{name}"
        );
        assert_eq!(
            a.vek.product_name.as_deref(),
            Some(f.product_name),
            "{name}"
        );
        assert!(a.vek.not_before.starts_with(f.not_before), "{name}");
        assert!(a.vek.not_after.starts_with(f.not_after), "{name}");
        // EAR: affirming, every claim the checks feed is set.
        let ear = a.to_ear_json(1_800_000_000).unwrap();
        assert_eq!(ear["ear_status"], "affirming", "{name}");
        let tv = &ear["submods"]["snp"]["ear_trustworthiness_vector"];
        for claim in [
            TrustClaimName::InstanceIdentity,
            TrustClaimName::Hardware,
            TrustClaimName::Configuration,
            TrustClaimName::RuntimeOpaque,
        ] {
            assert_eq!(tv[claim.ear_name()], 2, "{name} {}", claim.ear_name());
        }
        assert_eq!(
            ear["submods"]["snp"]["ear_verifier_claims"]["checks"]
                .as_array()
                .unwrap()
                .len(),
            CheckId::ALL.len()
        );
        assert_eq!(
            ear["submods"]["snp"]["ear_attester_claims"]["measurement"],
            r.measurement.as_str()
        );
    }
}

#[test]
fn vectors_specifics() {
    // milan-v2: the product comes from the chain (no CPUID in v2).
    let c = case("milan-v2");
    let a = verify(Policy::default(), &c.report, &c.vek, c.at).unwrap();
    assert!(a
        .check(CheckId::Product)
        .unwrap()
        .detail
        .contains("pinned chain"));
    assert_eq!(a.report.cpuid, None);
    // VLEK: CHIP_ID masked, VMPL 1, CURRENT TCB differs from REPORTED (ucode 220 vs 217), signed
    // by the ASVK, identity is the cspID.
    let c = case("milan-v3-vlek");
    let a = verify(Policy::default(), &c.report, &c.vek, c.at).unwrap();
    assert_eq!(
        a.vek.csp_id.as_deref(),
        Some("CN=cc-us-east-2.amazonaws.com")
    );
    assert_eq!(a.vek.hw_id, None);
    assert_eq!(a.report.current_tcb.microcode, 220);
    assert_eq!(a.report.reported_tcb.microcode, 217);
    assert!(a
        .check(CheckId::ChainIntermediate)
        .unwrap()
        .detail
        .contains("SEV-VLEK-Milan"));
    assert_eq!(a.vcek_url, None);
    // Turin: v5 mitigation vectors, Turin layout, 8-byte hwID, bit 6 of PLATFORM_INFO named,
    // and the KDS URL of the README.
    let c = case("turin-v5");
    let a = verify(Policy::default(), &c.report, &c.vek, c.at).unwrap();
    assert_eq!(a.report.launch_mit_vector.as_deref(), Some("0x3f"));
    assert_eq!(a.report.current_mit_vector.as_deref(), Some("0x3f"));
    assert_eq!(a.report.tcb_layout, "Turin");
    assert_eq!(a.vek.hw_id.as_deref(), Some("59790fb1c39f35c1"));
    assert!(a
        .report
        .platform_info_bits
        .contains(&"iommu_write_safe".to_string()));
    assert_eq!(
        a.vcek_url.as_deref(),
        Some("https://kdsintf.amd.com/vcek/v1/Turin/59790fb1c39f35c1?fmcSPL=01&blSPL=01&teeSPL=01&snpSPL=04&ucodeSPL=81")
    );
    // azure-milan-v2: CURRENT ucode 210 while REPORTED is 115; the binding uses REPORTED.
    let c = case("azure-milan-v2");
    let a = verify(Policy::default(), &c.report, &c.vek, c.at).unwrap();
    assert_eq!(a.report.current_tcb.microcode, 210);
    assert_eq!(a.report.reported_tcb.microcode, 115);
}

#[test]
fn example_policy_accepts_milan_v3_and_genoa_v3() {
    let p = Policy::from_toml(include_str!("../examples/policy.toml")).unwrap();
    for name in ["milan-v3", "genoa-v3"] {
        let c = case(name);
        let a = verify(p.clone(), &c.report, &c.vek, c.at).unwrap();
        assert_eq!(
            a.verdict(),
            Verdict::Affirming,
            "{name}\n{}",
            a.render_text()
        );
        for id in [
            CheckId::PolicyAbi,
            CheckId::PolicyVmpl,
            CheckId::PolicyMeasurement,
            CheckId::PolicyTcbMinimum,
            CheckId::PolicyLaunchTcbMinimum,
            CheckId::PolicySigningKey,
            CheckId::PolicyFamilyId,
            CheckId::PolicyImageId,
            CheckId::PolicyHostData,
            CheckId::PolicyPlatformInfo,
            CheckId::PolicyGuestSvn,
            CheckId::PolicyProduct,
        ] {
            assert!(passed(&a, id), "{name} {id}");
        }
    }
}

#[test]
fn cached_and_uncached_verifications_agree() {
    // The first verification of a VEK uses the one-shot path, later ones the precomputed table.
    let verifier = Verifier::new(Policy::default()).unwrap();
    for c in all_cases() {
        for _ in 0..3 {
            let a = verify_with(&verifier, &c.report, &c.vek, c.at).unwrap();
            assert_eq!(a.verdict(), Verdict::Affirming, "{}", c.name);
        }
        let mut bad = c.report.clone();
        bad[0x90] ^= 1;
        let a = verify_with(&verifier, &bad, &c.vek, c.at).unwrap();
        assert!(!passed(&a, CheckId::ReportSignature), "{}", c.name);
    }
}

#[test]
fn missing_vek_names_the_kds_url() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    let c = case("turin-v5");
    let err = verifier
        .verify(&host_verifier::Evidence {
            report: &c.report,
            vek: None,
            crl: None,
            at: at(c.at),
        })
        .unwrap_err();
    match err {
        host_verifier::Error::VekMissing { urls, .. } => assert_eq!(
            urls,
            ["https://kdsintf.amd.com/vcek/v1/Turin/59790fb1c39f35c1?fmcSPL=01&blSPL=01&teeSPL=01&snpSPL=04&ucodeSPL=81"]
        ),
        e => panic!("{e}"),
    }
    let c = case("milan-v3");
    match verifier
        .verify(&host_verifier::Evidence {
            report: &c.report,
            vek: None,
            crl: None,
            at: at(c.at),
        })
        .unwrap_err()
    {
        host_verifier::Error::VekMissing { urls, .. } => {
            assert_eq!(urls.len(), 1);
            assert!(urls[0].starts_with("https://kdsintf.amd.com/vcek/v1/Milan/4ffb5cb4fd594f3f"));
            assert_eq!(
                urls[0]
                    .split('/')
                    .nth(6)
                    .unwrap()
                    .split('?')
                    .next()
                    .unwrap()
                    .len(),
                128
            );
            assert!(urls[0].ends_with("?blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=219"));
        }
        e => panic!("{e}"),
    }
    let c = case("milan-v3-vlek");
    match verifier
        .verify(&host_verifier::Evidence {
            report: &c.report,
            vek: None,
            crl: None,
            at: at(c.at),
        })
        .unwrap_err()
    {
        host_verifier::Error::VekMissing { urls, reason } => {
            assert!(urls.is_empty());
            assert!(reason.contains("VLEK"));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn minimum_report_version_current_tcb_and_launch_tcb_are_real_checks() {
    use host_verifier::check::{SplName, TcbField};
    // A minimum report version: milan-v2 is a version-2 report.
    let p = policy("min_report_version = 3");
    let v2 = case("milan-v2");
    let a = verify(p.clone(), &v2.report, &v2.vek, v2.at).unwrap();
    assert_eq!(
        failure(&a, CheckId::ReportVersion),
        Failure::ReportVersionBelowMinimum { found: 2, min: 3 }
    );
    let v3 = case("milan-v3");
    assert!(passed(
        &verify(p, &v3.report, &v3.vek, v3.at).unwrap(),
        CheckId::ReportVersion
    ));
    assert!(Policy::from_toml("min_report_version = 9").is_err());

    // REPORTED == CURRENT: the VLEK vector reports an older TCB than it runs.
    let p = policy("require_reported_equals_current = true");
    let vlek = case("milan-v3-vlek");
    let a = verify(p.clone(), &vlek.report, &vlek.vek, vlek.at).unwrap();
    assert_eq!(
        failure(&a, CheckId::PolicyTcbCurrent),
        Failure::TcbNotCurrent {
            reported: 0xD918_0000_0000_0004,
            current: 0xDC18_0000_0000_0004
        }
    );
    let genoa = case("genoa-v3");
    assert!(passed(
        &verify(p, &genoa.report, &genoa.vek, genoa.at).unwrap(),
        CheckId::PolicyTcbCurrent
    ));

    // LAUNCH_TCB has its own minimum, min_launch_tcb: milan-v3 with its launch microcode
    // lowered (the signature then fails as well; the policy check still says which TCB is
    // low). min_tcb does not look at LAUNCH_TCB.
    let mut low = v3.report.clone();
    low[0x1F0 + 7] = 200;
    let a = verify(
        policy("[min_launch_tcb.default]\nmicrocode = 219\n[min_tcb.default]\nmicrocode = 219"),
        &low,
        &v3.vek,
        v3.at,
    )
    .unwrap();
    assert_eq!(
        failure(&a, CheckId::PolicyLaunchTcbMinimum),
        Failure::TcbBelowMinimum {
            field: TcbField::Launch,
            spl: SplName::Microcode,
            found: 200,
            min: 219,
        }
    );
    assert!(passed(&a, CheckId::PolicyTcbMinimum));
    // Turin's layout: LAUNCH_TCB 0x5100000004010101 is fmc 1, bl 1, tee 1, snp 4, ucode 81
    // (read with the Milan/Genoa layout, snp would be byte 6 = 0 and fmc would not exist).
    let turin = case("turin-v5");
    let at_least = |toml: &str| {
        verify(policy(toml), &turin.report, &turin.vek, turin.at)
            .unwrap()
            .check(CheckId::PolicyLaunchTcbMinimum)
            .unwrap()
            .clone()
    };
    let ok = at_least("[min_launch_tcb.Turin]\nfmc = 1\nsnp = 4\nmicrocode = 81");
    assert_eq!(ok.outcome, Outcome::Pass, "{ok:?}");
    assert_eq!(
        at_least("[min_launch_tcb.Turin]\nfmc = 2").failure(),
        Some(&Failure::TcbBelowMinimum {
            field: TcbField::Launch,
            spl: SplName::Fmc,
            found: 1,
            min: 2,
        })
    );
    // A per-product table for another product leaves Turin unconstrained: not applicable.
    assert!(matches!(
        at_least("[min_launch_tcb.Genoa]\nsnp = 99").outcome,
        Outcome::NotApplicable(_)
    ));
    // Every TCB is a claim of the EAR, decoded with the product's layout.
    let a = verify(Policy::default(), &turin.report, &turin.vek, turin.at).unwrap();
    let claims = &a.to_ear_json(1_800_000_000).unwrap()["submods"]["snp"]["ear_attester_claims"];
    for tcb in ["current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"] {
        assert_eq!(claims[tcb]["fmc"], 1, "{tcb}");
        assert_eq!(claims[tcb]["snp"], 4, "{tcb}");
        assert_eq!(claims[tcb]["microcode"], 81, "{tcb}");
    }
}
