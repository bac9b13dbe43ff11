//! Differential test against the `sev` crate (virtee, 8.x, RustCrypto backend): on every vector
//! and on derived variants where both can decide, the signature-and-chain verdict is the same,
//! and the decoded fields agree. (`sev` checks the chain and the report signature only; the VEK
//! TCB/hwID binding and policy are host-verifier's alone and are not compared here.)

mod common;
use common::*;
use host_verifier::trust::PINNED_PEMS;
use host_verifier::vek::pem_or_der;
use host_verifier::{Appraisal, CheckId, Policy, Verifier};
use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use svsm_abi::snp::{Product, SigningKey};

fn ours_crypto_ok(a: &Appraisal) -> bool {
    [
        CheckId::ChainArk,
        CheckId::ChainIntermediate,
        CheckId::ChainVek,
        CheckId::ReportSignature,
    ]
    .iter()
    .all(|id| passed(a, *id))
}

/// `sev`'s verdict with the pinned ARK and ASK (or ASVK) of `product`; `None` when it cannot
/// decode the report.
fn sev_verdict(report: &[u8], vek: &[u8], product: Product, vlek: bool) -> Option<bool> {
    let parsed = AttestationReport::from_bytes(report).ok()?;
    let (_, ark, ask, asvk) = PINNED_PEMS.iter().find(|(p, ..)| *p == product)?;
    let chain = Chain {
        ca: ca::Chain {
            ark: Certificate::from_pem(ark).ok()?,
            ask: Certificate::from_pem(if vlek { asvk } else { ask }).ok()?,
        },
        vek: Certificate::from_der(&pem_or_der(vek).ok()?).ok()?,
    };
    Some((&chain, &parsed).verify().is_ok())
}

#[test]
fn same_verdicts_as_the_sev_crate() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    let cases = all_cases();
    let mut decided = 0;
    let mut rejected_by_both = 0;
    for (i, c) in cases.iter().enumerate() {
        let base = verify_with(&verifier, &c.report, &c.vek, c.at).unwrap();
        let product = base.product.unwrap();
        let vlek = base.signer == SigningKey::Vlek;
        let mut flip_measurement = c.report.clone();
        flip_measurement[0x90] ^= 1;
        let mut flip_r = c.report.clone();
        flip_r[0x2A0] ^= 1;
        let mut flip_tcb = c.report.clone();
        flip_tcb[0x187] ^= 1;
        let other = &cases[(i + 1) % cases.len()];
        let variants: [(&str, &[u8], &[u8]); 5] = [
            ("original", &c.report, &c.vek),
            ("flipped MEASUREMENT", &flip_measurement, &c.vek),
            ("flipped R", &flip_r, &c.vek),
            ("flipped REPORTED_TCB", &flip_tcb, &c.vek),
            ("VEK of the next case", &c.report, &other.vek),
        ];
        for (what, report, vek) in variants {
            let ours = ours_crypto_ok(&verify_with(&verifier, report, vek, JUNE_2026).unwrap());
            let Some(theirs) = sev_verdict(report, vek, product, vlek) else {
                continue;
            };
            decided += 1;
            assert_eq!(
                ours, theirs,
                "{} / {what}: ours {ours}, sev {theirs}",
                c.name
            );
            if what == "original" {
                assert!(ours, "{}", c.name);
            } else {
                assert!(!ours, "{} / {what}", c.name);
                rejected_by_both += 1;
            }
        }
    }
    assert!(decided >= 35, "sev decided only {decided} variants");
    println!("{decided} variants decided by both, {rejected_by_both} rejected by both");
}

#[test]
fn decoded_fields_agree_with_the_sev_crate() {
    let verifier = Verifier::new(Policy::default()).unwrap();
    for c in all_cases() {
        let ours = verify_with(&verifier, &c.report, &c.vek, c.at).unwrap();
        let theirs = AttestationReport::from_bytes(&c.report).unwrap();
        let r = &ours.report;
        assert_eq!(r.version, theirs.version, "{}", c.name);
        assert_eq!(r.vmpl, theirs.vmpl, "{}", c.name);
        assert_eq!(r.guest_svn, theirs.guest_svn, "{}", c.name);
        assert_eq!(r.measurement, hex::encode(theirs.measurement), "{}", c.name);
        assert_eq!(r.report_data, hex::encode(theirs.report_data), "{}", c.name);
        assert_eq!(r.chip_id, hex::encode(theirs.chip_id), "{}", c.name);
        let (t, s) = (&r.reported_tcb, &theirs.reported_tcb);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (s.fmc, s.bootloader, s.tee, s.snp, s.microcode),
            "{} reported TCB",
            c.name
        );
    }
}
