//! Negative cases derived in code from the real vectors (never stored as "real" evidence). Each
//! case asserts the specific check that fails and its specific reason.

mod common;
use common::*;
use host_verifier::check::{CertRole, SplName, TcbField};
use host_verifier::trust::{ProductAnchors, TrustStore, PINNED_PEMS};
use host_verifier::vek::{pem_or_der, VekExtensions};
use host_verifier::{Appraisal, CheckId, Error, Evidence, Failure, Policy, Verdict, Verifier};
use std::sync::Arc;
use svsm_abi::snp::report::SignatureComponent;
use svsm_abi::snp::{Product, RawReport, ReportError, SigningKey, TcbLayout, TcbVersion};
use zerocopy::little_endian::{U32, U64};
use zerocopy::FromBytes;

fn edit(report: &[u8], f: impl FnOnce(&mut RawReport)) -> Vec<u8> {
    let mut bytes = report.to_vec();
    f(RawReport::mut_from_bytes(&mut bytes).unwrap());
    bytes
}

type Check = fn(&Failure) -> bool;
type Mutate = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A negative case: evidence, policy, and the check that must fail with the expected reason.
struct Neg {
    name: &'static str,
    case: &'static str,
    policy: &'static str,
    report: Mutate,
    vek_from: Option<&'static str>,
    at: Option<u64>,
    check: CheckId,
    reason: Check,
}

fn neg(
    name: &'static str,
    case: &'static str,
    report: impl Fn(&[u8]) -> Vec<u8> + 'static,
    check: CheckId,
    reason: Check,
) -> Neg {
    Neg {
        name,
        case,
        policy: "",
        report: Box::new(report),
        vek_from: None,
        at: None,
        check,
        reason,
    }
}

fn same(r: &[u8]) -> Vec<u8> {
    r.to_vec()
}

fn cases() -> Vec<Neg> {
    use CheckId as C;
    use Failure as F;
    let mut v = vec![
        // --- signed bytes ---
        neg(
            "flip MEASUREMENT",
            "milan-v3",
            |r| edit(r, |x| x.measurement[7] ^= 0x80),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip REPORT_DATA",
            "milan-v2",
            |r| edit(r, |x| x.report_data[0] ^= 1),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip HOST_DATA",
            "turin-v5",
            |r| edit(r, |x| x.host_data[31] ^= 1),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip GUEST_SVN",
            "genoa-v3",
            |r| edit(r, |x| x.guest_svn = U32::new(3)),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip FAMILY_ID",
            "genoa-v3",
            |r| edit(r, |x| x.family_id[0] ^= 1),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip LAUNCH_TCB",
            "turin-v5",
            |r| edit(r, |x| x.launch_tcb.0[7] ^= 1),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip CHIP_ID -> hwID mismatch",
            "milan-v3",
            |r| edit(r, |x| x.chip_id[5] ^= 1),
            C::VekIdentity,
            |f| matches!(f, F::HwIdMismatch { .. }),
        ),
        neg(
            "Turin CHIP_ID tail non-zero",
            "turin-v5",
            |r| edit(r, |x| x.chip_id[40] = 1),
            C::VekIdentity,
            |f| *f == F::ChipIdTail,
        ),
        neg(
            "REPORTED_TCB snp raised",
            "milan-v3",
            |r| edit(r, |x| x.reported_tcb.0[6] = 25),
            C::VekTcb,
            |f| {
                *f == F::SplMismatch {
                    spl: SplName::Snp,
                    cert: 24,
                    report: 25,
                }
            },
        ),
        neg(
            "REPORTED_TCB ucode := CURRENT (VLEK)",
            "milan-v3-vlek",
            |r| edit(r, |x| x.reported_tcb = x.current_tcb),
            C::VekTcb,
            |f| {
                *f == F::SplMismatch {
                    spl: SplName::Microcode,
                    cert: 217,
                    report: 220,
                }
            },
        ),
        neg(
            "REPORTED_TCB fmc changed (Turin)",
            "turin-v5",
            |r| edit(r, |x| x.reported_tcb.0[0] = 2),
            C::VekTcb,
            |f| {
                *f == F::SplMismatch {
                    spl: SplName::Fmc,
                    cert: 1,
                    report: 2,
                }
            },
        ),
        neg(
            "REPORTED_TCB reserved byte set",
            "genoa-v3",
            |r| edit(r, |x| x.reported_tcb.0[3] = 1),
            C::VekTcb,
            |f| {
                *f == F::SplMismatch {
                    spl: SplName::Reserved(5),
                    cert: 0,
                    report: 1,
                }
            },
        ),
        neg(
            "debug policy",
            "milan-v3",
            |r| edit(r, |x| x.policy = U64::new(x.policy.get() | 1 << 19)),
            C::PolicyDebug,
            |f| *f == F::DebugAllowed,
        ),
        neg(
            "MIGRATE_MA policy",
            "milan-v3",
            |r| edit(r, |x| x.policy = U64::new(x.policy.get() | 1 << 18)),
            C::PolicyMigrationAgent,
            |f| *f == F::MigrationAgentAllowed,
        ),
        neg(
            "migration agent associated",
            "genoa-v3",
            |r| edit(r, |x| x.report_id_ma[0] = 0x12),
            C::PolicyMigrationAgent,
            |f| matches!(f, F::MigrationAgentPresent(_)),
        ),
        neg(
            "policy bit 17 clear",
            "milan-v2",
            |r| edit(r, |x| x.policy = U64::new(x.policy.get() & !(1 << 17))),
            C::ReportGuestPolicy,
            |f| *f == F::PolicyMustBeOne,
        ),
        neg(
            "policy reserved bit 40",
            "milan-v2",
            |r| edit(r, |x| x.policy = U64::new(x.policy.get() | 1 << 40)),
            C::ReportGuestPolicy,
            |f| *f == F::PolicyReservedBits(1 << 40),
        ),
        neg(
            "SIGNATURE_ALGO 2",
            "milan-v3",
            |r| edit(r, |x| x.signature_algo = U32::new(2)),
            C::ReportSignatureAlgo,
            |f| *f == F::SignatureAlgo(2),
        ),
        neg(
            "KEY_INFO unsigned (7)",
            "milan-v3",
            |r| edit(r, |x| x.key_info = U32::new(7 << 2)),
            C::ReportKeyInfo,
            |f| *f == F::Unsigned,
        ),
        neg(
            "KEY_INFO reserved signer 3",
            "milan-v3",
            |r| edit(r, |x| x.key_info = U32::new(3 << 2)),
            C::ReportKeyInfo,
            |f| *f == F::ReservedSigningKey(3),
        ),
        neg(
            "KEY_INFO MASK_CHIP_KEY",
            "turin-v5",
            |r| edit(r, |x| x.key_info = U32::new(2)),
            C::ReportKeyInfo,
            |f| *f == F::ChipKeyMasked,
        ),
        neg(
            "KEY_INFO says VLEK, cert is VCEK",
            "milan-v3",
            |r| edit(r, |x| x.key_info = U32::new(1 << 2)),
            C::VekKind,
            |f| {
                matches!(
                    f,
                    F::SignerMismatch {
                        report: SigningKey::Vlek,
                        ..
                    }
                )
            },
        ),
        neg(
            "KEY_INFO says VCEK, cert is VLEK",
            "milan-v3-vlek",
            |r| edit(r, |x| x.key_info = U32::new(0)),
            C::VekKind,
            |f| {
                matches!(
                    f,
                    F::SignerMismatch {
                        report: SigningKey::Vcek,
                        ..
                    }
                )
            },
        ),
        neg(
            "reserved@0x04C",
            "milan-v3",
            |r| edit(r, |x| x.reserved0[1] = 1),
            C::ReportReserved,
            |f| {
                *f == F::Reserved(ReportError::ReservedNonZero {
                    field: "reserved@0x04C",
                    version: 3,
                })
            },
        ),
        neg(
            "CPUID bytes in a v2 report",
            "milan-v2",
            |r| edit(r, |x| x.cpuid_fam_id = 0x19),
            C::ReportReserved,
            |f| {
                *f == F::Reserved(ReportError::ReservedNonZero {
                    field: "cpuid@0x188 (reserved in v2)",
                    version: 2,
                })
            },
        ),
        neg(
            "mit vector in a v3 report",
            "genoa-v3",
            |r| edit(r, |x| x.launch_mit_vector = U64::new(1)),
            C::ReportReserved,
            |f| {
                matches!(
                    f,
                    F::Reserved(ReportError::ReservedNonZero {
                        field: "mit_vectors@0x1F8 (reserved before v5)",
                        ..
                    })
                )
            },
        ),
        neg(
            "reserved@0x208",
            "turin-v5",
            |r| edit(r, |x| x.reserved4[100] = 1),
            C::ReportReserved,
            |f| {
                matches!(
                    f,
                    F::Reserved(ReportError::ReservedNonZero {
                        field: "reserved@0x208",
                        ..
                    })
                )
            },
        ),
        neg(
            "unknown CPUID family",
            "milan-v3",
            |r| edit(r, |x| x.cpuid_fam_id = 0x17),
            C::Product,
            |f| {
                *f == F::UnknownCpuid {
                    family: 0x17,
                    model: 0x01,
                }
            },
        ),
        neg(
            "Genoa CPUID on a Milan report",
            "milan-v3",
            |r| edit(r, |x| x.cpuid_mod_id = 0x11),
            C::Product,
            |f| {
                matches!(
                    f,
                    F::ProductMismatch {
                        first: Product::Genoa,
                        ..
                    }
                )
            },
        ),
        neg(
            "Turin report read as Milan (CPUID)",
            "turin-v5",
            |r| {
                edit(r, |x| {
                    x.cpuid_fam_id = 0x19;
                    x.cpuid_mod_id = 0x01
                })
            },
            C::VekTcb,
            |f| {
                *f == F::SplMismatch {
                    spl: SplName::Snp,
                    cert: 4,
                    report: 0,
                }
            },
        ),
        // --- signature field ---
        neg(
            "flip R",
            "milan-v3",
            |r| edit(r, |x| x.signature.r[3] ^= 1),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "flip S",
            "turin-v5",
            |r| edit(r, |x| x.signature.s[47] ^= 0x40),
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        neg(
            "R padding non-zero",
            "genoa-v3",
            |r| edit(r, |x| x.signature.r[60] = 1),
            C::ReportSignature,
            |f| *f == F::Reserved(ReportError::SignaturePadding(SignatureComponent::R)),
        ),
        neg(
            "signature reserved non-zero",
            "milan-v2",
            |r| edit(r, |x| x.signature.reserved[0] = 1),
            C::ReportReserved,
            |f| {
                matches!(
                    f,
                    F::Reserved(ReportError::ReservedNonZero {
                        field: "signature.reserved@0x330",
                        ..
                    })
                )
            },
        ),
        neg(
            "R = 0",
            "milan-v3",
            |r| edit(r, |x| x.signature.r = [0; 72]),
            C::ReportSignature,
            |f| *f == F::SignatureRange,
        ),
        neg(
            "S >= n",
            "milan-v3",
            |r| edit(r, |x| x.signature.s[..48].fill(0xFF)),
            C::ReportSignature,
            |f| *f == F::SignatureRange,
        ),
        neg(
            "R and S swapped",
            "genoa-v3",
            |r| {
                edit(r, |x| {
                    std::mem::swap(&mut x.signature.r, &mut x.signature.s)
                })
            },
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
    ];
    // --- swapped VEKs ---
    let swaps: [(&str, &str, &str, CheckId, Check); 6] = [
        (
            "milan-v3 report, milan-v2 VCEK",
            "milan-v3",
            "milan-v2",
            C::ReportSignature,
            |f| *f == F::SignatureInvalid,
        ),
        (
            "milan-v3 report, genoa-v3 VCEK",
            "milan-v3",
            "genoa-v3",
            C::ChainVek,
            |f| {
                matches!(
                    f,
                    F::IssuerName {
                        role: CertRole::Vek,
                        ..
                    }
                )
            },
        ),
        (
            "genoa-v3 report, milan-v3 VCEK",
            "genoa-v3",
            "milan-v3",
            C::Product,
            |f| {
                matches!(
                    f,
                    F::ProductMismatch {
                        first: Product::Genoa,
                        ..
                    }
                )
            },
        ),
        (
            "turin-v5 report, milan-v3 VCEK",
            "turin-v5",
            "milan-v3",
            C::VekIdentity,
            |f| {
                *f == F::HwIdLength {
                    expected: 8,
                    found: 64,
                }
            },
        ),
        (
            "VLEK report, milan-v3 VCEK",
            "milan-v3-vlek",
            "milan-v3",
            C::VekKind,
            |f| matches!(f, F::SignerMismatch { .. }),
        ),
        (
            "milan-v3 report, VLEK",
            "milan-v3",
            "milan-v3-vlek",
            C::VekKind,
            |f| {
                matches!(
                    f,
                    F::SignerMismatch {
                        report: SigningKey::Vcek,
                        ..
                    }
                )
            },
        ),
    ];
    for (name, case, vek, check, reason) in swaps {
        v.push(Neg {
            name,
            case,
            policy: "",
            report: Box::new(same),
            vek_from: Some(vek),
            at: None,
            check,
            reason,
        });
    }
    // --- time ---
    v.push(Neg {
        name: "expired VLEK",
        case: "milan-v3-vlek",
        policy: "",
        report: Box::new(same),
        vek_from: None,
        at: Some(JUNE_2026),
        check: C::CertValidity,
        reason: |f| {
            matches!(
                f,
                F::Expired {
                    role: CertRole::Vek,
                    ..
                }
            )
        },
    });
    v.push(Neg {
        name: "VCEK not yet valid",
        case: "turin-v5",
        policy: "",
        report: Box::new(same),
        vek_from: None,
        at: Some(JUNE_2025),
        check: C::CertValidity,
        reason: |f| {
            matches!(
                f,
                F::NotYetValid {
                    role: CertRole::Vek,
                    ..
                }
            )
        },
    });
    v.push(Neg {
        name: "every certificate not yet valid (1999)",
        case: "milan-v2",
        policy: "",
        report: Box::new(same),
        vek_from: None,
        at: Some(946_684_800),
        check: C::CertValidity,
        reason: |f| {
            matches!(
                f,
                F::NotYetValid {
                    role: CertRole::Vek,
                    ..
                }
            )
        },
    });
    // --- policy ---
    let pol: [(&str, &str, &str, CheckId, Check); 19] = [
        ("TCB below minimum (snp)", "milan-v3", "[min_tcb.default]\nsnp = 25", C::PolicyTcbMinimum, |f| *f == F::TcbBelowMinimum { field: TcbField::Reported, spl: SplName::Snp, found: 24, min: 25 }),
        ("TCB below minimum (Turin fmc)", "turin-v5", "[min_tcb.Turin]\nfmc = 2", C::PolicyTcbMinimum, |f| *f == F::TcbBelowMinimum { field: TcbField::Reported, spl: SplName::Fmc, found: 1, min: 2 }),
        ("TCB below minimum (Genoa ucode)", "genoa-v3", "[min_tcb.Genoa]\nmicrocode = 85", C::PolicyTcbMinimum, |f| matches!(f, F::TcbBelowMinimum { spl: SplName::Microcode, found: 84, min: 85, .. })),
        ("measurement not allowlisted", "genoa-v3", "measurements = [\"6d6c354511d6f7c6d7504668903dc5bdc066a048b651840d8d03fb85299ebfa142fccf1d1b0baca496841bdf243619d4\"]", C::PolicyMeasurement, |f| matches!(f, F::MeasurementNotAllowed(_))),
        ("REPORT_DATA mismatch", "milan-v2", "report_data = \"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"", C::PolicyReportData, |f| matches!(f, F::FieldMismatch { field: "REPORT_DATA", .. })),
        ("HOST_DATA mismatch", "turin-v5", "host_data = \"4f4448c67f3c8dfc8de8a5e37125d807dadcc41f06cf23f615dbd52eec777d10\"", C::PolicyHostData, |f| matches!(f, F::FieldMismatch { field: "HOST_DATA", .. })),
        ("FAMILY_ID mismatch", "milan-v3", "family_id = \"02000000000000000000000000000000\"", C::PolicyFamilyId, |f| matches!(f, F::FieldMismatch { field: "FAMILY_ID", .. })),
        ("IMAGE_ID mismatch", "milan-v3", "image_id = \"01000000000000000000000000000000\"", C::PolicyImageId, |f| matches!(f, F::FieldMismatch { field: "IMAGE_ID", .. })),
        ("VMPL 1 but 0 required", "milan-v3-vlek", "vmpl = 0", C::PolicyVmpl, |f| *f == F::Vmpl { expected: 0, found: 1 }),
        ("chip id not allowlisted", "genoa-v3", "chip_ids = [\"59790fb1c39f35c1\"]", C::PolicyChipId, |f| matches!(f, F::ChipIdNotAllowed(_))),
        ("masked chip id vs allowlist", "milan-v3-vlek", "chip_ids = [\"59790fb1c39f35c1\"]", C::PolicyChipId, |f| *f == F::ChipIdNotAllowed("(masked, all zero)".into())),
        ("VLEK not allowed", "milan-v3-vlek", "signing_keys = [\"vcek\"]", C::PolicySigningKey, |f| *f == F::SigningKeyNotAllowed(SigningKey::Vlek)),
        ("VLEK cspID not allowed", "milan-v3-vlek", "vlek_csp_ids = [\"CN=example\"]", C::PolicySigningKey, |f| matches!(f, F::CspIdNotAllowed(_))),
        ("required PLATFORM_INFO bit clear", "milan-v3", "platform_info_required = [\"tsme\"]", C::PolicyPlatformInfo, |f| *f == F::PlatformInfoMissing("tsme".into())),
        ("forbidden PLATFORM_INFO bit set", "turin-v5", "platform_info_forbidden = [\"iommu_write_safe\"]", C::PolicyPlatformInfo, |f| *f == F::PlatformInfoForbidden("iommu_write_safe".into())),
        ("SMT forbidden", "genoa-v3", "allow_smt = false", C::PolicySmt, |f| *f == F::SmtEnabled),
        ("firmware ABI too old", "milan-v2", "min_abi = \"1.55\"", C::PolicyAbi, |f| matches!(f, F::AbiTooOld { what: "current firmware ABI", .. })),
        ("guest SVN too low", "turin-v5", "min_guest_svn = 3", C::PolicyGuestSvn, |f| *f == F::GuestSvn { found: 2, min: 3 }),
        ("product not allowed", "turin-v5", "products = [\"Milan\", \"Genoa\"]", C::PolicyProduct, |f| *f == F::ProductNotAllowed(Product::Turin)),
    ];
    for (name, case, policy, check, reason) in pol {
        v.push(Neg {
            name,
            case,
            policy,
            report: Box::new(same),
            vek_from: None,
            at: None,
            check,
            reason,
        });
    }
    v.push(Neg {
        name: "guest policy ABI too old",
        case: "milan-v2",
        policy: "min_guest_policy_abi = \"0.1\"",
        report: Box::new(same),
        vek_from: None,
        at: None,
        check: C::PolicyAbi,
        reason: |f| {
            matches!(
                f,
                F::AbiTooOld {
                    what: "guest policy ABI",
                    ..
                }
            )
        },
    });
    v.push(Neg { name: "ID key digest not allowlisted", case: "turin-v5", policy: "id_key_digests = [\"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\"]", report: Box::new(same), vek_from: None, at: None, check: C::PolicyIdKey, reason: |f| matches!(f, F::DigestNotAllowed { field: "ID_KEY_DIGEST", .. }) });
    v
}

#[test]
fn negative_cases_each_fail_with_their_own_reason() {
    let all = cases();
    let mut names: Vec<&str> = all.iter().map(|n| n.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "case names must be distinct");
    for n in &all {
        let c = case(n.case);
        let report = (n.report)(&c.report);
        let vek = match n.vek_from {
            Some(other) => case(other).vek,
            None => c.vek.clone(),
        };
        // Swaps are checked at a time when both certificates are valid where possible.
        let at_secs = match (n.vek_from, n.at) {
            (Some(_), _) => JUNE_2026,
            (None, Some(t)) => t,
            (None, None) => c.at,
        };
        let a = verify(policy(n.policy), &report, &vek, at_secs)
            .unwrap_or_else(|e| panic!("{}: {e}", n.name));
        assert_eq!(a.verdict(), Verdict::Contraindicated, "{}", n.name);
        let f = failure(&a, n.check);
        assert!(
            (n.reason)(&f),
            "{}: {} failed with {f:?}\n{}",
            n.name,
            n.check,
            a.render_text()
        );
    }
    println!("{} negative table cases", all.len());
}

#[test]
fn a_mutation_that_breaks_signed_bytes_also_fails_the_signature() {
    // The table's report mutations touch signed bytes; each also breaks the signature (or the
    // signature padding), so no check can be fooled by a forged field alone.
    for n in cases()
        .iter()
        .filter(|n| n.vek_from.is_none() && n.policy.is_empty())
    {
        let c = case(n.case);
        let report = (n.report)(&c.report);
        // Bytes 0x330.. are the unsigned MBZ tail of the signature field (report.reserved).
        if report[..0x330] == c.report[..0x330] {
            continue;
        }
        let a = verify(Policy::default(), &report, &c.vek, c.at).unwrap();
        assert!(!passed(&a, CheckId::ReportSignature), "{}", n.name);
    }
}

#[test]
fn flipping_any_single_signed_byte_is_rejected() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    for c in all_cases() {
        for i in 0..0x2A0 {
            let mut r = c.report.clone();
            r[i] ^= 0x01;
            match verify_with(&verifier, &r, &c.vek, c.at) {
                Err(Error::Report(ReportError::UnsupportedVersion(_))) => assert!(i < 4),
                Err(e) => panic!("{} byte {i:#x}: {e}", c.name),
                Ok(a) => {
                    assert_eq!(
                        a.verdict(),
                        Verdict::Contraindicated,
                        "{} byte {i:#x}",
                        c.name
                    );
                    assert_eq!(
                        failure(&a, CheckId::ReportSignature),
                        Failure::SignatureInvalid,
                        "{} byte {i:#x}",
                        c.name
                    );
                }
            }
        }
    }
}

#[test]
fn malformed_reports_and_veks_are_errors() {
    let c = case("milan-v3");
    let v = Verifier::new(Policy::default()).unwrap();
    assert_eq!(
        verify_with(&v, &c.report[..1000], &c.vek, c.at).unwrap_err(),
        Error::Report(ReportError::Length(1000))
    );
    for version in [0u32, 1, 6, 0xFFFF_FFFF] {
        let r = edit(&c.report, |x| x.version = U32::new(version));
        assert_eq!(
            verify_with(&v, &r, &c.vek, c.at).unwrap_err(),
            Error::Report(ReportError::UnsupportedVersion(version))
        );
    }
    assert!(matches!(
        verify_with(&v, &c.report, b"not a certificate", c.at),
        Err(Error::VekDecode(_))
    ));
    assert!(matches!(
        verify_with(
            &v,
            &c.report,
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            c.at
        ),
        Err(Error::VekDecode(_))
    ));
}

fn anchors(product: Product, ark: &[u8], ask: &[u8], asvk: &[u8]) -> Verifier {
    Verifier::with_trust_store(
        Arc::new(TrustStore::new(vec![ProductAnchors::load(
            product, ark, ask, asvk,
        )
        .unwrap()])),
        Policy::default(),
    )
}

fn pinned(p: Product) -> (&'static [u8], &'static [u8], &'static [u8]) {
    let (_, ark, ask, asvk) = PINNED_PEMS.iter().find(|(q, ..)| *q == p).unwrap();
    (ark, ask, asvk)
}

#[test]
fn another_products_ask_or_ark_is_rejected() {
    let c = case("milan-v3");
    let (m_ark, m_ask, m_asvk) = pinned(Product::Milan);
    let (g_ark, g_ask, _) = pinned(Product::Genoa);
    // Milan chain with Genoa's ASK: the ASK is not issued by ARK-Milan.
    let a = verify_with(
        &anchors(Product::Milan, m_ark, g_ask, m_asvk),
        &c.report,
        &c.vek,
        c.at,
    )
    .unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainIntermediate),
        Failure::IssuerName {
            role: CertRole::Ask,
            ..
        }
    ));
    assert!(matches!(
        failure(&a, CheckId::ChainVek),
        Failure::IssuerName {
            role: CertRole::Vek,
            ..
        }
    ));
    // Milan chain with Genoa's ARK: the Milan ASK does not chain to it.
    let a = verify_with(
        &anchors(Product::Milan, g_ark, m_ask, m_asvk),
        &c.report,
        &c.vek,
        c.at,
    )
    .unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainIntermediate),
        Failure::IssuerName {
            role: CertRole::Ask,
            ..
        }
    ));
    assert!(passed(&a, CheckId::ChainArk));
    // VCEK checked against the ASVK in the ASK slot.
    let a = verify_with(
        &anchors(Product::Milan, m_ark, m_asvk, m_asvk),
        &c.report,
        &c.vek,
        c.at,
    )
    .unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainVek),
        Failure::IssuerName { .. }
    ));
    // v2 report: only the Genoa anchors are present, so no pinned chain issued its VCEK.
    let c2 = case("milan-v2");
    let (g_ark, g_ask, g_asvk) = pinned(Product::Genoa);
    let a = verify_with(
        &anchors(Product::Genoa, g_ark, g_ask, g_asvk),
        &c2.report,
        &c2.vek,
        c2.at,
    )
    .unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainVek),
        Failure::NoPinnedIssuer { .. }
    ));
}

fn flip_last_signature_byte(pem: &[u8]) -> Vec<u8> {
    let mut der = pem_or_der(pem).unwrap();
    let n = der.len();
    der[n - 1] ^= 1;
    der
}

#[test]
fn forged_ask_ark_and_vek_signatures_are_rejected() {
    let c = case("milan-v3");
    let (ark, ask, asvk) = pinned(Product::Milan);
    let a = verify_with(
        &anchors(Product::Milan, ark, &flip_last_signature_byte(ask), asvk),
        &c.report,
        &c.vek,
        c.at,
    )
    .unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainIntermediate),
        Failure::CertSignature {
            role: CertRole::Ask,
            issuer: CertRole::Ark,
            ..
        }
    ));
    let a = verify_with(
        &anchors(Product::Milan, &flip_last_signature_byte(ark), ask, asvk),
        &c.report,
        &c.vek,
        c.at,
    )
    .unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainArk),
        Failure::CertSignature {
            role: CertRole::Ark,
            ..
        }
    ));
    // A VCEK whose signature was altered, and one whose TBS (hwID) was altered.
    let vek = flip_last_signature_byte(&c.vek);
    let a = verify(Policy::default(), &c.report, &vek, c.at).unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainVek),
        Failure::CertSignature {
            role: CertRole::Vek,
            issuer: CertRole::Ask,
            ..
        }
    ));
    let mut vek = pem_or_der(&c.vek).unwrap();
    let chip = hex::decode("4ffb5cb4fd594f3f").unwrap();
    let pos = vek.windows(8).position(|w| w == chip.as_slice()).unwrap();
    vek[pos + 20] ^= 1;
    let a = verify(Policy::default(), &c.report, &vek, c.at).unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainVek),
        Failure::CertSignature { .. }
    ));
    assert!(matches!(
        failure(&a, CheckId::VekIdentity),
        Failure::HwIdMismatch { .. }
    ));
    // Salt length 48 -> 32 in the outer signature algorithm (`A2 03 02 01 30`).
    let mut vek = pem_or_der(&c.vek).unwrap();
    let pos = vek
        .windows(5)
        .rposition(|w| w == [0xA2, 0x03, 0x02, 0x01, 0x30])
        .unwrap();
    vek[pos + 4] = 0x20;
    let a = verify(Policy::default(), &c.report, &vek, c.at).unwrap();
    assert!(matches!(
        failure(&a, CheckId::ChainVek),
        Failure::SignatureAlgorithm {
            role: CertRole::Vek,
            ..
        }
    ));
}

#[test]
fn turin_tcb_with_the_milan_layout_does_not_match() {
    let c = case("turin-v5");
    let a = verify(Policy::default(), &c.report, &c.vek, c.at).unwrap();
    assert!(passed(&a, CheckId::VekTcb));
    let vek = host_verifier::vek::VekCert::from_bytes(&c.vek).unwrap();
    let ext = vek.extensions().as_ref().unwrap();
    let tcb = TcbVersion::from_raw(0x5100_0000_0401_0101);
    assert_eq!(ext.check_tcb(tcb, TcbLayout::Turin), Ok(()));
    assert_eq!(
        ext.check_tcb(tcb, TcbLayout::MilanGenoa),
        Err(Failure::SplMismatch {
            spl: SplName::Snp,
            cert: 4,
            report: 0
        })
    );
    // And a Milan VCEK against the Turin layout: fmcSPL is missing.
    let m = host_verifier::vek::VekCert::from_bytes(&case("milan-v3").vek).unwrap();
    assert_eq!(
        m.extensions().as_ref().unwrap().check_tcb(
            TcbVersion::from_raw(0xDB18_0000_0000_0004),
            TcbLayout::Turin
        ),
        Err(Failure::SplMismatch {
            spl: SplName::BootLoader,
            cert: 4,
            report: 0
        })
    );
}

#[test]
fn vek_extension_values_are_strict_der() {
    use der::asn1::ObjectIdentifier;
    let oid = |s: &str| ObjectIdentifier::new_unwrap(Box::leak(s.to_owned().into_boxed_str()));
    let name = oid("1.3.6.1.4.1.3704.1.2");
    let snp = oid("1.3.6.1.4.1.3704.1.3.3");
    let hw = oid("1.3.6.1.4.1.3704.1.4");
    let pname: &[u8] = &[0x16, 0x05, b'M', b'i', b'l', b'a', b'n'];
    let parse = |extra: Vec<(&ObjectIdentifier, bool, &[u8])>| {
        let mut v: Vec<(&ObjectIdentifier, bool, &[u8])> = vec![(&name, false, pname)];
        v.extend(extra);
        VekExtensions::parse(v)
    };
    let ok = parse(vec![(&snp, false, &[0x02, 0x02, 0x00, 0xD9])]).unwrap();
    assert_eq!(ok.snp, Some(217));
    let malformed =
        |r: Result<VekExtensions, Failure>| matches!(r, Err(Failure::ExtensionMalformed { .. }));
    assert!(
        malformed(parse(vec![(&snp, false, &[0x04, 0x01, 0x05])])),
        "OCTET STRING SPL"
    );
    assert!(
        malformed(parse(vec![(&snp, false, &[0x02, 0x02, 0x00, 0x05])])),
        "non-minimal INTEGER"
    );
    assert!(
        malformed(parse(vec![(&snp, false, &[0x02, 0x01, 0xFF])])),
        "negative INTEGER"
    );
    assert!(
        malformed(parse(vec![(&snp, false, &[0x02, 0x02, 0x01, 0x00])])),
        "256"
    );
    assert!(
        malformed(parse(vec![(&snp, false, &[0x02, 0x01, 0x05, 0x00])])),
        "trailing byte"
    );
    assert!(malformed(parse(vec![(&snp, false, &[])])), "empty");
    assert!(
        malformed(parse(vec![(&hw, false, &[0u8; 63])])),
        "hwID length"
    );
    assert_eq!(
        parse(vec![(
            &hw,
            false,
            &[[0x04u8, 0x40].as_slice(), &[7u8; 64]].concat()
        )])
        .unwrap()
        .hw_id,
        Some(vec![7u8; 64]),
        "tagged OCTET STRING hwID accepted"
    );
    assert!(matches!(
        parse(vec![
            (&snp, false, &[0x02, 0x01, 0x05]),
            (&snp, false, &[0x02, 0x01, 0x05])
        ]),
        Err(Failure::ExtensionDuplicate(_))
    ));
    let unknown = oid("1.2.3.4");
    assert!(matches!(
        parse(vec![(&unknown, true, &[0x05, 0x00])]),
        Err(Failure::ExtensionCritical(_))
    ));
    assert!(parse(vec![(&unknown, false, &[0x05, 0x00])]).is_ok());
    assert_eq!(
        VekExtensions::parse(vec![]),
        Err(Failure::ExtensionMissing("productName"))
    );
    assert!(
        malformed(VekExtensions::parse(vec![(
            &name,
            false,
            &[0x0C, 0x01, b'M'][..]
        )])),
        "UTF8String productName"
    );
}

fn crl_der(issuer_from: &[u8], signature: &[u8]) -> Vec<u8> {
    use der::Encode;
    use x509_cert::crl::{CertificateList, TbsCertList};
    let issuer_cert = cert_of(issuer_from);
    let alg = issuer_cert.signature_algorithm.clone();
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer: issuer_cert.tbs_certificate.subject.clone(),
        this_update: issuer_cert.tbs_certificate.validity.not_before,
        next_update: None,
        revoked_certificates: None,
        crl_extensions: None,
    };
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: der::asn1::BitString::from_bytes(signature).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn cert_of(pem: &[u8]) -> x509_cert::Certificate {
    use der::Decode;
    x509_cert::Certificate::from_der(&pem_or_der(pem).unwrap()).unwrap()
}

fn with_crl(c: &Case, crl: &[u8]) -> Appraisal {
    Verifier::new(Policy::default())
        .unwrap()
        .verify(&Evidence {
            report: &c.report,
            vek: Some(&c.vek),
            crl: Some(crl),
            at: at(c.at),
        })
        .unwrap()
}

#[test]
fn crl_must_be_the_arks_and_verify() {
    let c = case("milan-v3");
    let (m_ark, ..) = pinned(Product::Milan);
    let (g_ark, ..) = pinned(Product::Genoa);
    assert!(matches!(
        failure(&with_crl(&c, b"garbage"), CheckId::Crl),
        Failure::CrlMalformed(_)
    ));
    let a = with_crl(&c, &crl_der(g_ark, &[0u8; 512]));
    assert!(matches!(
        failure(&a, CheckId::Crl),
        Failure::CrlIssuer { .. }
    ));
    let a = with_crl(&c, &crl_der(m_ark, &[0x55u8; 512]));
    assert!(matches!(
        failure(&a, CheckId::Crl),
        Failure::CertSignature {
            role: CertRole::Crl,
            issuer: CertRole::Ark,
            ..
        }
    ));
}
