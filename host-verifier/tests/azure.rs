//! Azure CVM evidence (HCL report + vTPM quote): the three real vectors appraise with their README
//! facts, and mutations derived in code (never stored as evidence) are each rejected with their own
//! check and reason.

mod common;
use common::*;
use host_verifier::azure::claims::AkError;
use host_verifier::azure::hcl::{HclError, HclHashType, DATA_OFFSET, HEADER_SIZE};
use host_verifier::azure::quote::{AttestError, SignatureFormatError, TPM_ALG_SHA1};
use host_verifier::azure::{parse_pcr_values, AzureAppraisal, AzureEvidence, PCR_SIZE};
use host_verifier::{
    CheckId, Error, Failure, Outcome, Policy, Verdict, Verifier, VtpmCheckId, VtpmFailure,
};
use std::collections::BTreeSet;
use std::process::Command;
use svsm_abi::snp::Product;

/// Offset of REPORT_DATA inside the HCL blob (report at 0x20, REPORT_DATA at 0x50 of it).
const REPORT_DATA_AT: usize = HEADER_SIZE + 0x50;
/// The Genoa vector's 48-byte nonce (README).
const GENOA_NONCE: &str = "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";

/// One Azure case, owned so tests can mutate any part.
#[derive(Clone)]
struct Az {
    hcl: Vec<u8>,
    vek: Vec<u8>,
    quote: Vec<u8>,
    sig: Vec<u8>,
    pcrs: Vec<[u8; PCR_SIZE]>,
    nonce: Vec<u8>,
    user_data: Option<Vec<u8>>,
    at: u64,
}

fn az(name: &str) -> Az {
    let vek = match name {
        "azure-milan-v2" => "vcek-ask-ark.pem",
        _ => "vcek.pem",
    };
    let nonce = match name {
        "azure-genoa-v3" => hex::decode(GENOA_NONCE).unwrap(),
        _ => b"challenge".to_vec(),
    };
    let pcrs = String::from_utf8(read(&format!("{name}/tpm-pcrs.txt"))).unwrap();
    Az {
        hcl: read(&format!("{name}/hcl-report.bin")),
        vek: read(&format!("{name}/{vek}")),
        quote: read(&format!("{name}/tpm-quote.msg")),
        sig: read(&format!("{name}/tpm-quote.sig")),
        pcrs: parse_pcr_values(&pcrs).unwrap(),
        nonce,
        user_data: None,
        at: JUNE_2026,
    }
}

fn run_with(v: &Verifier, a: &Az) -> Result<AzureAppraisal, Error> {
    v.verify_azure(&AzureEvidence {
        hcl_report: &a.hcl,
        vek: Some(&a.vek),
        crl: None,
        quote: &a.quote,
        signature: &a.sig,
        pcrs: &a.pcrs,
        nonce: &a.nonce,
        user_data: a.user_data.as_deref(),
        at: at(a.at),
    })
}

fn run(a: &Az) -> Result<AzureAppraisal, Error> {
    run_with(&Verifier::new(Policy::default()).unwrap(), a)
}

fn set_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn var_data(hcl: &[u8]) -> &[u8] {
    let size = u32::from_le_bytes(hcl[DATA_OFFSET + 16..DATA_OFFSET + 20].try_into().unwrap());
    &hcl[DATA_OFFSET + 20..DATA_OFFSET + 20 + size as usize]
}

/// Offset of `needle` in the HCL blob (inside the runtime claims).
fn find(hcl: &[u8], needle: &[u8]) -> usize {
    hcl.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

fn be16(b: &[u8], off: usize) -> usize {
    usize::from(u16::from_be_bytes([b[off], b[off + 1]]))
}

/// Offsets in a quote: (extraData, clockInfo, first selection's hash).
fn quote_offsets(q: &[u8]) -> (usize, usize, usize) {
    let extra = 8 + be16(q, 6);
    let clock = extra + 2 + be16(q, extra);
    (extra + 2, clock, clock + 17 + 8 + 4)
}

fn vtpm_failure(a: &AzureAppraisal, id: VtpmCheckId) -> VtpmFailure {
    match &a.vtpm.check(id).unwrap().outcome {
        Outcome::Fail(f) => f.clone(),
        _ => panic!("{id} did not fail:\n{}", a.render_text()),
    }
}

fn failed_vtpm(a: &AzureAppraisal) -> BTreeSet<VtpmCheckId> {
    a.vtpm.failures().map(|c| c.id).collect()
}

fn failed_cpu(a: &AzureAppraisal) -> BTreeSet<CheckId> {
    a.cpu.failures().map(|c| c.id).collect()
}

// ---------------------------------------------------------------------------------------------
// Positive: the README facts.

struct Facts {
    case: &'static str,
    header_version: u32,
    report_size: u32,
    data_size: u32,
    var_size: usize,
    version: u32,
    product: Product,
    vmpl: u32,
    guest_svn: u32,
    platform_info: &'static str,
    measurement: &'static str,
    binding: &'static str,
    chip_id_prefix: &'static str,
    extra_data: &'static str,
}

const FACTS: [Facts; 3] = [
    Facts {
        case: "azure-milan-v2",
        header_version: 1,
        report_size: 2346,
        data_size: 1130,
        var_size: 1110,
        version: 2,
        product: Product::Milan,
        vmpl: 0,
        guest_svn: 5,
        platform_info: "0x1",
        measurement: "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315",
        binding: "b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac",
        chip_id_prefix: "19752a447db501a3",
        extra_data: "6368616c6c656e6765",
    },
    Facts {
        case: "azure-milan-v3",
        header_version: 1,
        report_size: 2346,
        data_size: 1130,
        var_size: 1110,
        version: 3,
        product: Product::Milan,
        vmpl: 0,
        guest_svn: 10,
        platform_info: "0x25",
        measurement: "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e",
        binding: "af2910341dd8108360e485f1b72494255190b9cdd5ccb44b73b883037cf99f21",
        chip_id_prefix: "66a5a7b4403a3006",
        extra_data: "6368616c6c656e6765",
    },
    Facts {
        case: "azure-genoa-v3",
        header_version: 2,
        report_size: 2436,
        data_size: 1220,
        var_size: 1200,
        version: 3,
        product: Product::Genoa,
        vmpl: 0,
        guest_svn: 65547,
        platform_info: "0x24",
        measurement: "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        binding: "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f",
        chip_id_prefix: "0506ffba875e939c",
        extra_data: GENOA_NONCE,
    },
];

#[test]
fn every_azure_vector_appraises_with_its_readme_facts() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    for f in &FACTS {
        let name = f.case;
        let a = run_with(&verifier, &az(name)).unwrap();
        assert_eq!(
            a.verdict(),
            Verdict::Affirming,
            "{name}\n{}",
            a.render_text()
        );
        assert_eq!(a.cpu.checks.len(), CheckId::ALL.len());
        assert_eq!(a.vtpm.checks.len(), VtpmCheckId::ALL.len());
        for id in VtpmCheckId::ALL {
            let c = a.vtpm.check(id).unwrap();
            match id {
                VtpmCheckId::UserData => {
                    assert!(matches!(c.outcome, Outcome::NotApplicable(_)), "{name}")
                }
                _ => assert_eq!(c.outcome, Outcome::Pass, "{name} {id}"),
            }
        }
        // cpu: the embedded SNP report.
        let r = &a.cpu.report;
        assert_eq!(r.version, f.version, "{name}");
        assert_eq!(a.cpu.product, Some(f.product), "{name}");
        assert_eq!(r.vmpl, f.vmpl, "{name}");
        assert_eq!(r.guest_svn, f.guest_svn, "{name}");
        assert_eq!(r.policy, "0x3001f", "{name}");
        assert_eq!(r.platform_info, f.platform_info, "{name}");
        assert_eq!(r.measurement, f.measurement, "{name}");
        assert_eq!(
            r.report_data,
            format!("{}{}", f.binding, "0".repeat(64)),
            "{name}"
        );
        assert!(r.chip_id.starts_with(f.chip_id_prefix), "{name}");
        // vtpm: HCL header, runtime claims, AK, quote.
        let h = &a.vtpm.hcl;
        assert_eq!(h.header_version, f.header_version, "{name}");
        assert_eq!(h.report_size, f.report_size, "{name}");
        assert_eq!(h.request_type, 2, "{name}");
        assert_eq!(h.data_size, f.data_size, "{name}");
        assert_eq!(h.data_version, 1, "{name}");
        assert_eq!(h.report_type, 2, "{name}");
        assert_eq!(h.hash_type, "SHA-256", "{name}");
        assert_eq!(h.runtime_claims_size, f.var_size, "{name}");
        assert_eq!(h.runtime_claims_sha256, f.binding, "{name}");
        let claims = a.vtpm.runtime_claims.as_ref().unwrap();
        let kids: Vec<&str> = claims.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["HCLAkPub", "HCLEkPub"], "{name}");
        assert_eq!(
            claims.user_data_bytes().unwrap(),
            Some(vec![0u8; 64]),
            "{name}"
        );
        let cfg = claims.vm_configuration.as_ref().unwrap();
        assert_eq!(cfg["secure-boot"], true, "{name}");
        assert_eq!(cfg["tpm-enabled"], true, "{name}");
        assert_eq!(
            cfg.contains_key("tpm-persisted"),
            name == "azure-genoa-v3",
            "{name}"
        );
        let ak = a.vtpm.ak.as_ref().unwrap();
        assert_eq!((ak.bits, ak.exponent), (2048, 65537), "{name}");
        let q = a.vtpm.quote.as_ref().unwrap();
        assert_eq!(q.extra_data, f.extra_data, "{name}");
        assert_eq!(q.pcr_select.len(), 1, "{name}");
        assert_eq!(q.pcr_select[0].bank, "SHA-256", "{name}");
        assert_eq!(q.pcr_select[0].pcrs, (0..24).collect::<Vec<_>>(), "{name}");
        assert_eq!(a.vtpm.pcrs.len(), 24, "{name}");
        // EAR: two submodules, both affirming.
        let ear = a.to_ear_json(1_800_000_000).unwrap();
        assert_eq!(ear["ear_status"], "affirming", "{name}");
        let submods: Vec<&String> = ear["submods"].as_object().unwrap().keys().collect();
        assert_eq!(submods, ["cpu", "vtpm"], "{name}");
        for s in ["cpu", "vtpm"] {
            assert_eq!(ear["submods"][s]["ear_status"], "affirming", "{name} {s}");
        }
        assert_eq!(
            ear["submods"]["vtpm"]["ear_trustworthiness_vector"]["instance-identity"],
            2
        );
        assert_eq!(
            ear["submods"]["vtpm"]["ear_verifier_claims"]["checks"]
                .as_array()
                .unwrap()
                .len(),
            VtpmCheckId::ALL.len()
        );
        assert_eq!(
            ear["submods"]["vtpm"]["ear_attester_claims"]["quote"]["extra_data"],
            f.extra_data
        );
        assert_eq!(
            ear["submods"]["cpu"]["ear_attester_claims"]["measurement"],
            f.measurement
        );
    }
}

#[test]
fn accepted_variants() {
    // The HCL report cut to report_size (no NV padding).
    let mut a = az("azure-milan-v3");
    a.hcl.truncate(2346);
    assert_eq!(run(&a).unwrap().verdict(), Verdict::Affirming);
    // The signature as a marshalled TPMT_SIGNATURE (RSASSA, SHA-256, TPM2B).
    let mut a = az("azure-genoa-v3");
    let mut t = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
    t.extend_from_slice(&a.sig);
    a.sig = t;
    assert_eq!(run(&a).unwrap().verdict(), Verdict::Affirming);
    // user-data: the 64 zero bytes, or a prefix of them.
    for len in [64, 32, 1] {
        let mut a = az("azure-milan-v2");
        a.user_data = Some(vec![0; len]);
        let r = run(&a).unwrap();
        assert_eq!(r.verdict(), Verdict::Affirming, "{len}");
        assert_eq!(
            r.vtpm.check(VtpmCheckId::UserData).unwrap().outcome,
            Outcome::Pass
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Negative: appraisals that fail specific checks.

type Reason = fn(&VtpmFailure) -> bool;

struct Neg {
    name: &'static str,
    case: &'static str,
    mutate: fn(&mut Az),
    /// Every vTPM check that must fail, each with its reason; no other may fail.
    vtpm: Vec<(VtpmCheckId, Reason)>,
    /// The SNP checks that must fail (usually none).
    cpu: Vec<CheckId>,
}

fn ck(id: VtpmCheckId, reason: Reason) -> (VtpmCheckId, Reason) {
    (id, reason)
}

fn negatives() -> Vec<Neg> {
    use VtpmCheckId as V;
    use VtpmFailure as F;
    vec![
        Neg {
            name: "one byte of the runtime-claims JSON changed",
            case: "azure-milan-v2",
            mutate: |a| {
                let at = find(&a.hcl, b"\"vmUniqueId\":\"") + 14;
                a.hcl[at] = if a.hcl[at] == b'0' { b'1' } else { b'0' };
            },
            vtpm: vec![ck(
                V::ReportDataBinding,
                |f| matches!(f, F::BindingMismatch { found, .. } if found.starts_with("b3fbad65")),
            )],
            cpu: vec![],
        },
        Neg {
            name: "REPORT_DATA[0] flipped (binding broken, report signature broken)",
            case: "azure-milan-v3",
            mutate: |a| a.hcl[REPORT_DATA_AT] ^= 1,
            vtpm: vec![
                ck(
                    V::SnpReport,
                    |f| matches!(f, F::SnpContraindicated(c) if c == &["report.signature"]),
                ),
                ck(
                    V::ReportDataBinding,
                    |f| matches!(f, F::BindingMismatch { expected, .. } if expected.starts_with("af291034")),
                ),
            ],
            cpu: vec![CheckId::ReportSignature],
        },
        Neg {
            // Accepted (as far as the vTPM checks go) before VMPL0 was required.
            name: "report requested at VMPL1",
            case: "azure-milan-v3",
            mutate: |a| a.hcl[0x20 + 0x30] = 1,
            vtpm: vec![
                ck(V::SnpReport, |f| matches!(f, F::SnpContraindicated(_))),
                ck(V::ReportVmpl, |f| matches!(f, F::NotVmpl0(1))),
            ],
            cpu: vec![CheckId::ReportSignature],
        },
        Neg {
            name: "REPORT_DATA[40] non-zero",
            case: "azure-genoa-v3",
            mutate: |a| a.hcl[REPORT_DATA_AT + 40] = 0x5A,
            vtpm: vec![
                ck(V::SnpReport, |f| matches!(f, F::SnpContraindicated(_))),
                ck(
                    V::ReportDataBinding,
                    |f| matches!(f, F::BindingTail(t) if t.starts_with("00000000000000005a")),
                ),
            ],
            cpu: vec![CheckId::ReportSignature],
        },
        Neg {
            name: "wrong nonce",
            case: "azure-milan-v2",
            mutate: |a| a.nonce = b"challengf".to_vec(),
            vtpm: vec![ck(V::Nonce, |f| {
                matches!(f, F::NonceMismatch { found, expected }
                    if found == "6368616c6c656e6765" && expected == "6368616c6c656e6766")
            })],
            cpu: vec![],
        },
        Neg {
            name: "wrong 48-byte nonce (last byte)",
            case: "azure-genoa-v3",
            mutate: |a| *a.nonce.last_mut().unwrap() ^= 0x80,
            vtpm: vec![ck(V::Nonce, |f| matches!(f, F::NonceMismatch { .. }))],
            cpu: vec![],
        },
        Neg {
            name: "empty nonce",
            case: "azure-milan-v3",
            mutate: |a| a.nonce.clear(),
            vtpm: vec![ck(V::Nonce, |f| matches!(f, F::NonceEmpty))],
            cpu: vec![],
        },
        Neg {
            name: "quote byte flipped (clockInfo)",
            case: "azure-milan-v3",
            mutate: |a| {
                let (_, clock, _) = quote_offsets(&a.quote);
                a.quote[clock + 3] ^= 0x10;
            },
            vtpm: vec![ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid))],
            cpu: vec![],
        },
        Neg {
            // The signature breaks first; a_quote_signed_by_the_ak_must_name_the_ak re-signs.
            name: "quote qualifiedSigner byte flipped",
            case: "azure-genoa-v3",
            mutate: |a| a.quote[8 + 33] ^= 1,
            vtpm: vec![ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid))],
            cpu: vec![],
        },
        Neg {
            name: "quote extraData byte flipped",
            case: "azure-genoa-v3",
            mutate: |a| {
                let (extra, _, _) = quote_offsets(&a.quote);
                a.quote[extra] ^= 1;
            },
            vtpm: vec![
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::Nonce, |f| matches!(f, F::NonceMismatch { .. })),
            ],
            cpu: vec![],
        },
        Neg {
            name: "signature byte flipped",
            case: "azure-milan-v2",
            mutate: |a| a.sig[100] ^= 0x01,
            vtpm: vec![ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid))],
            cpu: vec![],
        },
        Neg {
            name: "signature truncated",
            case: "azure-milan-v2",
            mutate: |a| a.sig.truncate(255),
            vtpm: vec![ck(V::QuoteSignature, |f| {
                matches!(
                    f,
                    F::SignatureFormat(SignatureFormatError::Length {
                        found: 255,
                        expected: 256
                    })
                )
            })],
            cpu: vec![],
        },
        Neg {
            name: "PCR10 value altered",
            case: "azure-genoa-v3",
            mutate: |a| a.pcrs[10][0] ^= 1,
            vtpm: vec![ck(V::PcrDigest, |f| {
                matches!(f, F::PcrDigestMismatch { quoted, pcrs, .. }
                    if quoted.starts_with("2b30a66d") && pcrs == "0-23")
            })],
            cpu: vec![],
        },
        Neg {
            name: "PCR23 value not supplied",
            case: "azure-milan-v3",
            mutate: |a| {
                a.pcrs.pop();
            },
            vtpm: vec![ck(V::PcrDigest, |f| {
                matches!(
                    f,
                    F::PcrMissing {
                        pcr: 23,
                        supplied: 23
                    }
                )
            })],
            cpu: vec![],
        },
        Neg {
            name: "quote, signature and PCRs from another vector's AK (milan-v3 into milan-v2)",
            case: "azure-milan-v2",
            mutate: |a| {
                let other = az("azure-milan-v3");
                a.quote = other.quote;
                a.sig = other.sig;
                a.pcrs = other.pcrs;
            },
            vtpm: vec![ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid))],
            cpu: vec![],
        },
        Neg {
            name: "quote magic wrong",
            case: "azure-milan-v3",
            mutate: |a| a.quote[0] = 0xFE,
            vtpm: vec![
                ck(V::Quote, |f| {
                    matches!(f, F::Quote(AttestError::Magic(0xFE54_4347)))
                }),
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::Nonce, |f| {
                    matches!(f, F::Prerequisite(VtpmCheckId::Quote))
                }),
                ck(V::PcrDigest, |f| {
                    matches!(f, F::Prerequisite(VtpmCheckId::Quote))
                }),
            ],
            cpu: vec![],
        },
        Neg {
            name: "attestation type is not a quote (0x8014)",
            case: "azure-genoa-v3",
            mutate: |a| a.quote[5] = 0x14,
            vtpm: vec![
                ck(V::Quote, |f| {
                    matches!(f, F::Quote(AttestError::Type(0x8014)))
                }),
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::Nonce, |f| matches!(f, F::Prerequisite(_))),
                ck(V::PcrDigest, |f| matches!(f, F::Prerequisite(_))),
            ],
            cpu: vec![],
        },
        Neg {
            name: "quote truncated",
            case: "azure-milan-v2",
            mutate: |a| a.quote.truncate(a.quote.len() - 1),
            vtpm: vec![
                ck(V::Quote, |f| {
                    matches!(
                        f,
                        F::Quote(AttestError::Truncated {
                            field: "pcrDigest",
                            need: 32,
                            ..
                        })
                    )
                }),
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::Nonce, |f| matches!(f, F::Prerequisite(_))),
                ck(V::PcrDigest, |f| matches!(f, F::Prerequisite(_))),
            ],
            cpu: vec![],
        },
        Neg {
            name: "bytes after the quote",
            case: "azure-milan-v2",
            mutate: |a| a.quote.push(0),
            vtpm: vec![
                ck(V::Quote, |f| {
                    matches!(f, F::Quote(AttestError::TrailingBytes(1)))
                }),
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::Nonce, |f| matches!(f, F::Prerequisite(_))),
                ck(V::PcrDigest, |f| matches!(f, F::Prerequisite(_))),
            ],
            cpu: vec![],
        },
        Neg {
            name: "PCR selection of the SHA-1 bank",
            case: "azure-milan-v3",
            mutate: |a| {
                let (_, _, hash) = quote_offsets(&a.quote);
                a.quote[hash + 1] = 0x04;
            },
            vtpm: vec![
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::PcrDigest, |f| {
                    matches!(
                        f,
                        F::Selection(host_verifier::bundle_verify::tpm::SelectionError::Bank(
                            TPM_ALG_SHA1
                        ))
                    )
                }),
            ],
            cpu: vec![],
        },
        Neg {
            // The bundle appraisal's rule, shared: one SHA-256 selection. (Accepted before.)
            name: "PCR selection of the SHA-256 bank twice",
            case: "azure-milan-v3",
            mutate: |a| {
                let (_, _, hash) = quote_offsets(&a.quote);
                let count = hash - 4;
                a.quote[count + 3] = 2;
                let len = 3 + a.quote[hash + 2] as usize;
                let sel = a.quote[hash..hash + len].to_vec();
                let at = hash + len;
                a.quote.splice(at..at, sel);
            },
            vtpm: vec![
                ck(V::QuoteSignature, |f| matches!(f, F::SignatureInvalid)),
                ck(V::PcrDigest, |f| {
                    matches!(
                        f,
                        F::Selection(host_verifier::bundle_verify::tpm::SelectionError::BankTwice)
                    )
                }),
            ],
            cpu: vec![],
        },
        Neg {
            name: "AK kid renamed in the JSON",
            case: "azure-genoa-v3",
            mutate: |a| {
                let at = find(&a.hcl, b"HCLAkPub");
                a.hcl[at + 7] = b'c';
            },
            vtpm: vec![
                ck(V::ReportDataBinding, |f| {
                    matches!(f, F::BindingMismatch { .. })
                }),
                ck(V::AttestationKey, |f| matches!(f, F::Ak(AkError::Missing))),
                ck(V::QuoteSignature, |f| {
                    matches!(f, F::Prerequisite(VtpmCheckId::AttestationKey))
                }),
            ],
            cpu: vec![],
        },
        Neg {
            name: "runtime claims no longer JSON",
            case: "azure-milan-v2",
            mutate: |a| {
                let at = find(&a.hcl, b"{\"keys\"");
                a.hcl[at] = b'[';
                a.user_data = Some(vec![0; 64]);
            },
            vtpm: vec![
                ck(V::ReportDataBinding, |f| {
                    matches!(f, F::BindingMismatch { .. })
                }),
                ck(V::AttestationKey, |f| matches!(f, F::RuntimeClaims(_))),
                ck(V::QuoteSignature, |f| matches!(f, F::Prerequisite(_))),
                ck(V::UserData, |f| {
                    matches!(f, F::Prerequisite(VtpmCheckId::AttestationKey))
                }),
            ],
            cpu: vec![],
        },
        Neg {
            name: "user-data does not start with the expected bytes",
            case: "azure-milan-v3",
            mutate: |a| a.user_data = Some(b"challenge".to_vec()),
            vtpm: vec![ck(V::UserData, |f| {
                matches!(f, F::UserDataMismatch { expected, found }
                    if expected == "6368616c6c656e6765" && found == &"00".repeat(64))
            })],
            cpu: vec![],
        },
        Neg {
            name: "report_data_hash_type SHA-384 (defined, not checked)",
            case: "azure-milan-v2",
            mutate: |a| set_u32(&mut a.hcl, DATA_OFFSET + 12, 2),
            vtpm: vec![ck(V::ReportDataBinding, |f| {
                matches!(f, F::HashTypeUnsupported(HclHashType::Sha384))
            })],
            cpu: vec![],
        },
        Neg {
            name: "VCEK not yet valid: cpu contraindicated, so is vtpm.snp_report",
            case: "azure-milan-v3",
            // 2024-06-01, before the VCEK's notBefore (2025-01-28).
            mutate: |a| a.at = 1_717_200_000,
            vtpm: vec![ck(
                V::SnpReport,
                |f| matches!(f, F::SnpContraindicated(c) if c == &["cert.validity"]),
            )],
            cpu: vec![CheckId::CertValidity],
        },
    ]
}

#[test]
fn mutations_fail_their_own_checks() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    let cases = negatives();
    assert!(cases.len() >= 12);
    for n in cases {
        let mut a = az(n.case);
        (n.mutate)(&mut a);
        let r =
            run_with(&verifier, &a).unwrap_or_else(|e| panic!("{}: appraisal error {e}", n.name));
        let name = n.name;
        assert_eq!(r.verdict(), Verdict::Contraindicated, "{name}");
        let expected: BTreeSet<VtpmCheckId> = n.vtpm.iter().map(|(id, _)| *id).collect();
        assert_eq!(failed_vtpm(&r), expected, "{name}\n{}", r.render_text());
        for (id, reason) in &n.vtpm {
            let f = vtpm_failure(&r, *id);
            assert!(reason(&f), "{name}: {id} failed for another reason: {f}");
        }
        let cpu: BTreeSet<CheckId> = n.cpu.iter().copied().collect();
        assert_eq!(failed_cpu(&r), cpu, "{name}\n{}", r.render_text());
        // The EAR says so too.
        let ear = r.to_ear_json(1_800_000_000).unwrap();
        assert_eq!(ear["ear_status"], "contraindicated", "{name}");
        assert_eq!(
            ear["submods"]["vtpm"]["ear_status"], "contraindicated",
            "{name}"
        );
        assert_eq!(
            ear["submods"]["cpu"]["ear_status"],
            if cpu.is_empty() {
                "affirming"
            } else {
                "contraindicated"
            },
            "{name}"
        );
    }
}

/// HCLAkPub's modulus in the runtime claims replaced by `key`'s (same length), and the quote
/// re-signed with `key`: the quote verifies with "HCLAkPub", which is now `key`.
fn with_own_ak(a: &mut Az, key: &rsa::RsaPrivateKey) {
    use rsa::traits::PublicKeyParts;
    use sha2::{Digest, Sha256};
    let ak = find(&a.hcl, b"\"kid\":\"HCLAkPub\"");
    let n_at = ak + find(&a.hcl[ak..], b"\"n\":\"") + 5;
    let n = base64::engine::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        key.n().to_bytes_be(),
    );
    assert_eq!(a.hcl[n_at + n.len()], b'"', "same modulus length");
    a.hcl[n_at..n_at + n.len()].copy_from_slice(n.as_bytes());
    let digest = Sha256::digest(&a.quote);
    a.sig = key
        .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
        .unwrap();
}

#[test]
fn a_quote_signed_by_the_ak_must_name_the_ak() {
    use host_verifier::azure::claims::RuntimeClaims;
    use host_verifier::bundle_verify::tpm::{
        primary_qualified_name, SignerError, TPM_ALG_SHA256, TPM_RH_ENDORSEMENT,
    };
    // Every real quote names its HCLAkPub as the paravisor's template makes it.
    for f in &FACTS {
        let r = run(&az(f.case)).unwrap();
        let detail = &r.vtpm.check(VtpmCheckId::QuoteSignature).unwrap().detail;
        assert!(
            detail.contains("qualifiedSigner is its Qualified Name"),
            "{detail}"
        );
    }
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    // The real quote (naming the real HCLAkPub) signed by another key that the claims call
    // HCLAkPub. (The binding breaks too: the claims changed under REPORT_DATA.)
    let mut a = az("azure-milan-v3");
    with_own_ak(&mut a, &key);
    let r = run(&a).unwrap();
    assert_eq!(
        failed_vtpm(&r),
        BTreeSet::from([VtpmCheckId::ReportDataBinding, VtpmCheckId::QuoteSignature]),
        "{}",
        r.render_text()
    );
    assert!(matches!(
        vtpm_failure(&r, VtpmCheckId::QuoteSignature),
        VtpmFailure::QuoteSigner(SignerError::Mismatch { found, .. })
            if found == r.vtpm.quote.as_ref().unwrap().qualified_signer
    ));
    // The same with qualifiedSigner naming that key: the signature check passes.
    let mut a = az("azure-milan-v3");
    with_own_ak(&mut a, &key);
    let ak = RuntimeClaims::parse(var_data(&a.hcl))
        .unwrap()
        .attestation_key()
        .unwrap();
    let qn = primary_qualified_name(TPM_RH_ENDORSEMENT, TPM_ALG_SHA256, &ak.tpmt_public()).unwrap();
    assert_eq!(be16(&a.quote, 6), qn.len());
    a.quote[8..8 + qn.len()].copy_from_slice(&qn);
    with_own_ak(&mut a, &key);
    let r = run(&a).unwrap();
    assert_eq!(
        failed_vtpm(&r),
        BTreeSet::from([VtpmCheckId::ReportDataBinding]),
        "{}",
        r.render_text()
    );
}

#[test]
fn failed_pcr_digest_attests_no_pcr() {
    let mut a = az("azure-milan-v2");
    a.pcrs[0][31] ^= 0xFF;
    let r = run(&a).unwrap();
    assert!(r.vtpm.pcrs.is_empty());
    assert_eq!(r.vtpm.attester_claims()["pcrs"], serde_json::json!({}));
}

#[test]
fn crypto_failures_are_claim_99() {
    let mut a = az("azure-milan-v2");
    a.sig[0] ^= 1;
    let ear = run(&a).unwrap().to_ear_json(1_800_000_000).unwrap();
    assert_eq!(
        ear["submods"]["vtpm"]["ear_trustworthiness_vector"]["instance-identity"],
        99
    );
    let mut a = az("azure-milan-v2");
    a.nonce = b"other".to_vec();
    let ear = run(&a).unwrap().to_ear_json(1_800_000_000).unwrap();
    assert_eq!(
        ear["submods"]["vtpm"]["ear_trustworthiness_vector"]["instance-identity"],
        96
    );
}

// ---------------------------------------------------------------------------------------------
// Negative: HCL reports that cannot be appraised at all (typed errors).

fn hcl_error(mutate: impl FnOnce(&mut Vec<u8>)) -> HclError {
    let mut a = az("azure-milan-v2");
    mutate(&mut a.hcl);
    match run(&a) {
        Err(Error::Hcl(e)) => e,
        Err(e) => panic!("another error: {e}"),
        Ok(r) => panic!("appraised:\n{}", r.render_text()),
    }
}

#[test]
fn malformed_hcl_reports_are_typed_errors() {
    assert_eq!(
        hcl_error(|h| h.truncate(2000)),
        HclError::Truncated {
            what: "the variable data (report_size)",
            need: 2346,
            have: 2000
        }
    );
    assert!(matches!(
        hcl_error(|h| h.truncate(1000)),
        HclError::Truncated {
            need: 0x4D4,
            have: 1000,
            ..
        }
    ));
    assert!(matches!(
        hcl_error(|h| h.truncate(3)),
        HclError::Truncated { need: 0x20, .. }
    ));
    assert_eq!(hcl_error(|h| h[3] = b'B'), HclError::Magic(*b"HCLB"));
    assert_eq!(
        hcl_error(|h| set_u32(h, 8, 2347)),
        HclError::ReportSize {
            report_size: 2347,
            expected: 2346
        }
    );
    assert_eq!(
        hcl_error(|h| set_u32(h, DATA_OFFSET + 16, 1111)),
        HclError::DataSize {
            data_size: 1130,
            var_size: 1111
        }
    );
    // data_size and var size agree with each other but not with report_size.
    assert_eq!(
        hcl_error(|h| {
            set_u32(h, DATA_OFFSET, 1129);
            set_u32(h, DATA_OFFSET + 16, 1109);
        }),
        HclError::ReportSize {
            report_size: 2346,
            expected: 2345
        }
    );
    assert_eq!(
        hcl_error(|h| set_u32(h, DATA_OFFSET + 12, 7)),
        HclError::UnknownHashType(7)
    );
    assert_eq!(
        hcl_error(|h| set_u32(h, DATA_OFFSET + 12, 0)),
        HclError::UnknownHashType(0)
    );
    assert_eq!(
        hcl_error(|h| set_u32(h, DATA_OFFSET + 8, 4)),
        HclError::TdxReport
    );
    assert_eq!(
        hcl_error(|h| set_u32(h, DATA_OFFSET + 8, 9)),
        HclError::ReportType(9)
    );
    assert_eq!(
        hcl_error(|h| set_u32(h, DATA_OFFSET + 4, 2)),
        HclError::DataVersion(2)
    );
    assert_eq!(hcl_error(|h| set_u32(h, 4, 3)), HclError::HeaderVersion(3));
    assert_eq!(hcl_error(|h| set_u32(h, 0x10, 1)), HclError::Status(1));
    assert!(matches!(hcl_error(|h| h[0x1F] = 1), HclError::Reserved(_)));
    // A bare SNP report is not an HCL report.
    assert!(matches!(
        hcl_error(|h| *h = read("milan-v3/report.bin")),
        HclError::Magic(_)
    ));
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let a = az("azure-genoa-v3");
    let end = 2436;
    for n in (0..end).step_by(7).chain(end - 8..end) {
        let h = &a.hcl[..n];
        assert!(
            matches!(
                host_verifier::azure::hcl::HclReport::parse(h),
                Err(HclError::Truncated { .. })
            ),
            "{n}"
        );
    }
    assert_eq!(
        var_data(&a.hcl).len(),
        host_verifier::azure::hcl::HclReport::parse(&a.hcl)
            .unwrap()
            .var_data
            .len()
    );
    for n in 0..a.quote.len() {
        assert!(host_verifier::azure::quote::QuoteAttest::parse(&a.quote[..n]).is_err());
    }
}

#[test]
fn missing_vek_names_the_kds_url() {
    let a = az("azure-genoa-v3");
    let err = Verifier::new(Policy::default())
        .unwrap()
        .verify_azure(&AzureEvidence {
            hcl_report: &a.hcl,
            vek: None,
            crl: None,
            quote: &a.quote,
            signature: &a.sig,
            pcrs: &a.pcrs,
            nonce: &a.nonce,
            user_data: None,
            at: at(a.at),
        })
        .unwrap_err();
    match err {
        Error::VekMissing { urls, .. } => {
            assert_eq!(urls.len(), 1);
            assert!(urls[0].starts_with("https://kdsintf.amd.com/vcek/v1/Genoa/0506ffba875e939c"));
        }
        e => panic!("{e}"),
    }
}

#[test]
fn snp_policy_applies_to_the_embedded_report() {
    // A measurement allowlist that does not hold the Azure image: cpu fails policy.measurement.
    let p = policy(
        r#"measurements = ["5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1"]"#,
    );
    let r = run_with(&Verifier::new(p).unwrap(), &az("azure-milan-v3")).unwrap();
    assert!(matches!(
        failure(&r.cpu, CheckId::PolicyMeasurement),
        Failure::MeasurementNotAllowed(_)
    ));
    assert_eq!(
        vtpm_failure(&r, VtpmCheckId::SnpReport),
        VtpmFailure::SnpContraindicated(vec!["policy.measurement".into()])
    );
}

// ---------------------------------------------------------------------------------------------
// The command line.

fn hv(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_host-verifier"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn v(rel: &str) -> String {
    vectors_dir().join(rel).display().to_string()
}

fn azure_args(case: &str, vek: &str) -> Vec<String> {
    [
        "azure",
        "verify",
        "--hcl-report",
        &v(&format!("{case}/hcl-report.bin")),
        "--vek",
        &v(&format!("{case}/{vek}")),
        "--quote",
        &v(&format!("{case}/tpm-quote.msg")),
        "--signature",
        &v(&format!("{case}/tpm-quote.sig")),
        "--pcrs",
        &v(&format!("{case}/tpm-pcrs.txt")),
        "--at",
        "2026-06-01T00:00:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn hv_owned(args: &[String]) -> (i32, String, String) {
    hv(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn cli_azure_verify_exit_codes() {
    let mut args = azure_args("azure-milan-v2", "vcek-ask-ark.pem");
    args.extend(["--nonce-text".into(), "challenge".into()]);
    let (code, out, err) = hv_owned(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("overall verdict: AFFIRMING"), "{out}");
    assert!(out.contains("PASS  vtpm.quote_signature"), "{out}");

    // Hex nonce (the Genoa 48-byte one) and --json: an EAR with submodules cpu and vtpm.
    let mut args = azure_args("azure-genoa-v3", "vcek.pem");
    args.extend(["--nonce".into(), GENOA_NONCE.into(), "--json".into()]);
    let (code, out, err) = hv_owned(&args);
    assert_eq!(code, 0, "{out}{err}");
    let ear: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ear["ear_status"], "affirming");
    assert_eq!(
        ear["submods"]["cpu"]["ear_verifier_claims"]["product"],
        "Genoa"
    );
    assert_eq!(ear["submods"]["vtpm"]["ear_status"], "affirming");

    // Wrong nonce: contraindicated (2).
    let mut args = azure_args("azure-milan-v3", "vcek.pem");
    args.extend(["--nonce".into(), "00".into()]);
    let (code, out, _) = hv_owned(&args);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL  vtpm.nonce"), "{out}");

    // user-data that is not there: contraindicated.
    let mut args = azure_args("azure-milan-v3", "vcek.pem");
    args.extend([
        "--nonce-text".into(),
        "challenge".into(),
        "--user-data".into(),
        "ff".into(),
    ]);
    let (code, out, _) = hv_owned(&args);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("FAIL  vtpm.user_data"), "{out}");

    // Errors (1): no nonce, both nonces, bad hex, a bare report as HCL report, a bad PCR file.
    let args = azure_args("azure-milan-v3", "vcek.pem");
    let (code, _, err) = hv_owned(&args);
    assert_eq!(code, 1, "{err}");
    let mut both = args.clone();
    both.extend([
        "--nonce".into(),
        "00".into(),
        "--nonce-text".into(),
        "x".into(),
    ]);
    assert_eq!(hv_owned(&both).0, 1);
    let mut bad = args.clone();
    bad.extend(["--nonce".into(), "zz".into()]);
    let (code, _, err) = hv_owned(&bad);
    assert_eq!(code, 1);
    assert!(err.contains("--nonce is not hex"), "{err}");
    let mut bare = args.clone();
    bare[3] = v("milan-v3/report.bin");
    bare.extend(["--nonce-text".into(), "challenge".into()]);
    let (code, _, err) = hv_owned(&bare);
    assert_eq!(code, 1);
    assert!(err.contains("HCL report rejected"), "{err}");
    let mut pcrs = args.clone();
    pcrs[11] = v("azure-milan-v3/tpm-quote.msg");
    pcrs.extend(["--nonce-text".into(), "challenge".into()]);
    let (code, _, err) = hv_owned(&pcrs);
    assert_eq!(code, 1);
    assert!(err.contains("--pcrs"), "{err}");
    // No VEK: the KDS URL.
    let mut no_vek = args.clone();
    no_vek.drain(4..6);
    no_vek.extend(["--nonce-text".into(), "challenge".into()]);
    let (code, _, err) = hv_owned(&no_vek);
    assert_eq!(code, 1);
    assert!(
        err.contains("https://kdsintf.amd.com/vcek/v1/Milan/66a5a7b4403a3006"),
        "{err}"
    );
    // --help is not an error.
    assert_eq!(hv(&["azure", "verify", "--help"]).0, 0);
}
