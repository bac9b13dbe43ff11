//! The EK certificate checks on real certificates of the simulated machine's vTPM (the CA's and
//! the RSA and ECC EKs', as `tpm2_nvread` read them: `fuzz/seeds/ek_certificates`), each
//! mutated on purpose to fail with its own reason.

use der::{Decode, Encode};
use host_verifier::ek_certs::{ca_report, index_for, verify, EkCertError};
use svsm_abi::identity::{
    EK_CA_CERT_INDEX, EK_CERT_ECC_P256_INDEX, EK_CERT_RSA_2048_INDEX, MAX_EK_CERT_SIZE,
};

const RSA_SEED: &[u8] = include_bytes!("../../fuzz/seeds/ek_certificates/sim-ca-rsa.bin");
const ECC_SEED: &[u8] = include_bytes!("../../fuzz/seeds/ek_certificates/sim-ca-ecc.bin");

/// (CA certificate, EK certificate) of a seed: u16 LE length, CA, EK.
fn split(seed: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let len = u16::from_le_bytes([seed[0], seed[1]]) as usize;
    (seed[2..2 + len].to_vec(), seed[2 + len..].to_vec())
}

/// The RSA EK's TPMT_PUBLIC, rebuilt from template L-1 and the certificate's modulus.
fn rsa_ek_public(cert: &[u8]) -> Vec<u8> {
    let c = x509_cert::Certificate::from_der(cert).unwrap();
    let spki = c.tbs_certificate.subject_public_key_info.to_der().unwrap();
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
    let mut public = svsm_tpm2::templates::KeyTemplate::ek_rsa_l1().template();
    let at = public.len() - 256;
    public[at..].copy_from_slice(&key.n().to_bytes_be());
    public
}

/// (NV index, DER) pairs.
type Certs = Vec<(u32, Vec<u8>)>;

fn all() -> (Certs, [u8; 97], Vec<u8>) {
    let (ca, rsa) = split(RSA_SEED);
    let (_, ecc) = split(ECC_SEED);
    let (_, ca_key) = ca_report(&ca).unwrap();
    let ek = rsa_ek_public(&rsa);
    let certs = vec![
        (EK_CA_CERT_INDEX, ca),
        (EK_CERT_RSA_2048_INDEX, rsa),
        (EK_CERT_ECC_P256_INDEX, ecc),
    ];
    (certs, ca_key, ek)
}

#[test]
fn the_real_certificates_verify_and_their_report_binds_the_ca() {
    let (certs, ca_key, ek) = all();
    let checked = verify(&certs, Some(&ca_key), Some(&ek)).unwrap();
    assert_eq!(checked.certificates.len(), 2);
    assert_eq!(checked.ca_public, hex::encode(ca_key));
    assert_eq!(index_for(&certs[0].1), Ok(EK_CA_CERT_INDEX));
    assert_eq!(index_for(&certs[1].1), Ok(EK_CERT_RSA_2048_INDEX));
    assert_eq!(index_for(&certs[2].1), Ok(EK_CERT_ECC_P256_INDEX));
    let (report, _) = ca_report(&certs[0].1).unwrap();
    assert_eq!(report.len(), 1184);
}

#[test]
fn each_mutation_fails_with_its_reason() {
    let (certs, ca_key, ek) = all();
    let with = |index: u32, der: Vec<u8>| -> Certs {
        certs
            .iter()
            .map(|(i, d)| (*i, if *i == index { der.clone() } else { d.clone() }))
            .collect()
    };
    // Another CA key in the manifest.
    let mut other_key = ca_key;
    other_key[50] ^= 1;
    assert!(matches!(
        verify(&certs, Some(&other_key), Some(&ek)),
        Err(EkCertError::CaKeyMismatch { .. })
    ));
    // No CA key in the manifest, or no CA certificate.
    assert_eq!(
        verify(&certs, None, Some(&ek)),
        Err(EkCertError::NoManifestCa)
    );
    assert_eq!(
        verify(&certs[1..], Some(&ca_key), Some(&ek)),
        Err(EkCertError::NoCaCertificate)
    );
    // A flipped byte in the RSA EK certificate's signature.
    let mut bad_sig = certs[1].1.clone();
    let last = bad_sig.len() - 3;
    bad_sig[last] ^= 0x01;
    assert_eq!(
        verify(
            &with(EK_CERT_RSA_2048_INDEX, bad_sig),
            Some(&ca_key),
            Some(&ek)
        ),
        Err(EkCertError::Signature(EK_CERT_RSA_2048_INDEX))
    );
    // A certificate at another key type's index.
    assert!(matches!(
        verify(
            &with(EK_CERT_RSA_2048_INDEX, certs[2].1.clone()),
            Some(&ca_key),
            None
        ),
        Err(EkCertError::KeyType { .. })
    ));
    // Another EK in the manifest.
    let mut other_ek = ek.clone();
    let n = other_ek.len() - 1;
    other_ek[n] ^= 2;
    assert_eq!(
        verify(&certs, Some(&ca_key), Some(&other_ek)),
        Err(EkCertError::EkMismatch)
    );
    assert_eq!(
        verify(&certs, Some(&ca_key), Some(&ek[..100])),
        Err(EkCertError::ManifestEk)
    );
    // The CA certificate with a changed byte inside its report: no longer self-signed.
    let mut ca = certs[0].1.clone();
    let mid = ca.len() / 2;
    ca[mid] ^= 0x01;
    assert!(matches!(
        ca_report(&ca),
        Err(EkCertError::NotCa(_)) | Err(EkCertError::Decode { .. })
    ));
    // An EK certificate where the CA's belongs, truncated, oversized, unknown index.
    assert!(matches!(
        verify(
            &with(EK_CA_CERT_INDEX, certs[1].1.clone()),
            Some(&ca_key),
            None
        ),
        Err(EkCertError::NotCa(_))
    ));
    let cut = certs[1].1[..certs[1].1.len() - 10].to_vec();
    assert!(matches!(
        verify(&with(EK_CERT_RSA_2048_INDEX, cut), Some(&ca_key), None),
        Err(EkCertError::Decode { .. })
    ));
    assert!(matches!(
        verify(
            &with(EK_CERT_RSA_2048_INDEX, vec![0x30; MAX_EK_CERT_SIZE + 1]),
            Some(&ca_key),
            None
        ),
        Err(EkCertError::TooLarge { .. })
    ));
    let mut unknown = certs.clone();
    unknown.push((0x01C0_0004, certs[1].1.clone()));
    assert_eq!(
        verify(&unknown, Some(&ca_key), None),
        Err(EkCertError::UnknownIndex(0x01C0_0004))
    );
    // The EK certificate offered as the CA's report carrier: it has no report.
    assert!(ca_report(&certs[1].1).is_err());
}
