//! The CRL check end to end, with a synthetic ARK: the real Milan ARK's certificate with its key
//! replaced by a throwaway RSA key (`tests/data/crl-test-key.der`, test-only, not AMD's), so
//! CRLs can be signed here. The real ASK/ASVK stay, so revocation by serial is real.

mod common;
use common::*;
use der::asn1::{BitString, UtcTime};
use der::{Decode, Encode};
use host_verifier::check::CertRole;
use host_verifier::trust::{ProductAnchors, TrustStore, PINNED_PEMS};
use host_verifier::vek::pem_or_der;
use host_verifier::{CheckId, Evidence, Failure, Policy, Verifier};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use std::sync::Arc;
use std::time::Duration;
use svsm_abi::snp::Product;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Time;

fn key() -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::from_pkcs8_der(include_bytes!("data/crl-test-key.der")).unwrap()
}

fn milan() -> (&'static [u8], &'static [u8], &'static [u8]) {
    let (_, ark, ask, asvk) = PINNED_PEMS
        .iter()
        .find(|(p, ..)| *p == Product::Milan)
        .unwrap();
    (ark, ask, asvk)
}

/// The Milan ARK certificate carrying the test key.
fn fake_ark() -> (x509_cert::Certificate, Vec<u8>) {
    let (ark, ..) = milan();
    let mut cert = x509_cert::Certificate::from_der(&pem_or_der(ark).unwrap()).unwrap();
    let spki = key().to_public_key().to_public_key_der().unwrap();
    cert.tbs_certificate.subject_public_key_info =
        SubjectPublicKeyInfoOwned::from_der(spki.as_bytes()).unwrap();
    let der = cert.to_der().unwrap();
    (cert, der)
}

fn time(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

fn crl(this: u64, next: Option<u64>, revoke: &[&[u8]], salt: Option<usize>) -> Vec<u8> {
    let (ark, _) = fake_ark();
    let mut alg = ark.signature_algorithm.clone();
    if salt == Some(20) {
        // The same PSS parameters with saltLength 20 (A2 03 02 01 14).
        let mut p = alg.parameters.unwrap().to_der().unwrap();
        let i = p
            .windows(5)
            .position(|w| w == [0xA2, 0x03, 0x02, 0x01, 0x30])
            .unwrap();
        p[i + 4] = 0x14;
        alg.parameters = Some(der::asn1::Any::from_der(&p).unwrap());
    }
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer: ark.tbs_certificate.subject.clone(),
        this_update: time(this),
        next_update: next.map(time),
        revoked_certificates: if revoke.is_empty() {
            None
        } else {
            Some(
                revoke
                    .iter()
                    .map(|serial| RevokedCert {
                        serial_number: x509_cert::serial_number::SerialNumber::new(serial).unwrap(),
                        revocation_date: time(this),
                        crl_entry_extensions: None,
                    })
                    .collect(),
            )
        },
        crl_extensions: None,
    };
    let tbs_der = tbs.to_der().unwrap();
    let signer = rsa::pss::BlindedSigningKey::<sha2::Sha384>::new(key());
    let sig = signer
        .sign_with_rng(&mut rsa::rand_core::OsRng, &tbs_der)
        .to_vec();
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn appraise_crl(crl: &[u8]) -> host_verifier::CheckResult {
    let (_, ark_der) = fake_ark();
    let (_, ask, asvk) = milan();
    let anchors = ProductAnchors::load(Product::Milan, &ark_der, ask, asvk).unwrap();
    let v = Verifier::with_trust_store(Arc::new(TrustStore::new(vec![anchors])), Policy::default());
    let c = case("milan-v3");
    let a = v
        .verify(&Evidence {
            report: &c.report,
            vek: Some(&c.vek),
            crl: Some(crl),
            at: at(c.at),
        })
        .unwrap();
    // The fake ARK does not sign the real ASK: the chain fails, as it must.
    assert!(matches!(
        failure(&a, CheckId::ChainIntermediate),
        Failure::CertSignature {
            role: CertRole::Ask,
            ..
        }
    ));
    a.check(CheckId::Crl).unwrap().clone()
}

const DAY: u64 = 86_400;
/// The real Milan ASK's serial (0x10001) and ASVK's (0x10101).
const ASK_SERIAL: &[u8] = &[0x01, 0x00, 0x01];
const ASVK_SERIAL: &[u8] = &[0x01, 0x01, 0x01];

#[test]
fn current_crl_without_the_ask_passes() {
    let r = appraise_crl(&crl(
        JUNE_2026 - DAY,
        Some(JUNE_2026 + DAY),
        &[ASVK_SERIAL],
        None,
    ));
    assert!(r.failure().is_none(), "{r:?}");
    assert!(r.detail.contains("1 revoked entry"), "{}", r.detail);
}

#[test]
fn crl_revoking_the_ask_fails() {
    let r = appraise_crl(&crl(
        JUNE_2026 - DAY,
        Some(JUNE_2026 + DAY),
        &[ASVK_SERIAL, ASK_SERIAL],
        None,
    ));
    assert_eq!(
        r.failure(),
        Some(&Failure::Revoked {
            role: CertRole::Ask,
            serial: "010001".into()
        })
    );
}

#[test]
fn stale_or_future_crl_fails() {
    let r = appraise_crl(&crl(JUNE_2026 - 30 * DAY, Some(JUNE_2026 - DAY), &[], None));
    assert!(
        matches!(r.failure(), Some(Failure::CrlStale(m)) if m.contains("nextUpdate")),
        "{r:?}"
    );
    let r = appraise_crl(&crl(JUNE_2026 + DAY, None, &[], None));
    assert!(
        matches!(r.failure(), Some(Failure::CrlStale(m)) if m.contains("thisUpdate")),
        "{r:?}"
    );
}

#[test]
fn crl_with_wrong_pss_salt_fails() {
    let r = appraise_crl(&crl(JUNE_2026 - DAY, None, &[], Some(20)));
    assert!(
        matches!(
            r.failure(),
            Some(Failure::SignatureAlgorithm {
                role: CertRole::Crl,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn crl_without_next_update_fails() {
    // A CRL without nextUpdate would be current forever: a revocation could be withheld by
    // replaying an old list indefinitely.
    let r = appraise_crl(&crl(JUNE_2026 - DAY, None, &[], None));
    assert_eq!(r.failure(), Some(&Failure::CrlNoNextUpdate), "{r:?}");
}
