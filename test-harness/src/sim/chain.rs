//! A test certificate chain shaped like AMD's: ARK (RSA-4096, self-signed) -> ASK (RSA-4096) ->
//! VCEK (EC P-384), all signed RSASSA-PSS with SHA-384 / MGF1-SHA-384 / salt 48, the VCEK
//! carrying AMD's extensions (structVersion, productName, SPLs as DER INTEGERs, hwID as raw
//! bytes). Generated once and cached on disk, because RSA-4096 key generation is slow.
//!
//! Every name says "TEST": no verifier that pins AMD's real roots accepts this chain.

use der::asn1::{BitString, Ia5String, OctetString, UtcTime};
use der::{Decode, Encode};
use p384::ecdsa::SigningKey as EcSigningKey;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::pkcs8::EncodePublicKey;
use rsa::pss::BlindedSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::RsaPrivateKey;
use sha2::Sha384;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

/// Bump when the chain's shape changes, so stale caches are regenerated.
const CACHE_VERSION: &str = "v1";

/// AMD's VCEK extension arc 1.3.6.1.4.1.3704.1.
const AMD_OID_PREFIX: &str = "1.3.6.1.4.1.3704.1";

/// What the VCEK certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcekIdentity {
    /// KDS product name ("Milan-B0", "Genoa", "Turin").
    pub product_name: String,
    /// Chip id (64 bytes; Turin certificates carry the first 8).
    pub chip_id: [u8; 64],
    /// Reported TCB decoded: (fmc, bl, tee, snp, ucode); fmc is `Some` on Turin.
    pub tcb: (Option<u8>, u8, u8, u8, u8),
}

/// The test chain and the VCEK's private key.
#[derive(Clone)]
pub struct TestChain {
    /// ARK certificate (DER).
    pub ark_der: Vec<u8>,
    /// ASK certificate (DER).
    pub ask_der: Vec<u8>,
    /// VCEK certificate (DER).
    pub vcek_der: Vec<u8>,
    /// The VCEK's signing key.
    pub vcek_key: EcSigningKey,
}

/// Why the chain could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// RSA key generation or signing failed.
    #[error("rsa: {0}")]
    Rsa(#[from] rsa::Error),
    /// DER encoding failed.
    #[error("der: {0}")]
    Der(#[from] der::Error),
    /// Key encoding failed.
    #[error("pkcs8: {0}")]
    Pkcs8(String),
    /// Cache I/O failed.
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
}

fn name(cn: &str) -> Result<Name, ChainError> {
    Ok(Name::from_str(&format!(
        "CN={cn},O=svsm-vhsm TEST (not AMD),OU=Engineering,C=US"
    ))?)
}

fn validity() -> Result<Validity, ChainError> {
    // A fixed, wide window: tests inject their own "now" when they check time.
    let from = UtcTime::from_unix_duration(Duration::from_secs(1_577_836_800))?; // 2020-01-01
    let to = UtcTime::from_unix_duration(Duration::from_secs(2_524_521_600))?; // 2049-12-31, UTCTime's limit
    Ok(Validity {
        not_before: Time::UtcTime(from),
        not_after: Time::UtcTime(to),
    })
}

fn ext(oid: &str, critical: bool, value: Vec<u8>) -> Result<Extension, ChainError> {
    Ok(Extension {
        extn_id: der::oid::ObjectIdentifier::new(oid)
            .map_err(|e| ChainError::Pkcs8(e.to_string()))?,
        critical,
        extn_value: OctetString::new(value)?,
    })
}

fn ca_extensions(path_len: Option<u8>) -> Result<Vec<Extension>, ChainError> {
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: path_len,
    };
    let ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    Ok(vec![
        ext("2.5.29.19", true, bc.to_der()?)?,
        ext("2.5.29.15", true, ku.to_der()?)?,
    ])
}

fn vcek_extensions(id: &VcekIdentity) -> Result<Vec<Extension>, ChainError> {
    let int = |v: u8| der::asn1::Uint::new(&[v]).and_then(|u| u.to_der());
    let amd = |suffix: &str| format!("{AMD_OID_PREFIX}.{suffix}");
    let turin = id.tcb.0.is_some();
    let mut exts = vec![
        ext(&amd("1"), false, int(u8::from(turin))?)?,
        ext(
            &amd("2"),
            false,
            Ia5String::new(&id.product_name)?.to_der()?,
        )?,
        ext(&amd("3.1"), false, int(id.tcb.1)?)?,
        ext(&amd("3.2"), false, int(id.tcb.2)?)?,
        ext(&amd("3.3"), false, int(id.tcb.3)?)?,
    ];
    if !turin {
        exts.push(ext(&amd("3.4"), false, int(0)?)?);
    }
    for spl in ["3.5", "3.6", "3.7"] {
        exts.push(ext(&amd(spl), false, int(0)?)?);
    }
    exts.push(ext(&amd("3.8"), false, int(id.tcb.4)?)?);
    if let Some(fmc) = id.tcb.0 {
        exts.push(ext(&amd("3.9"), false, int(fmc)?)?);
    }
    // hwID: the bare chip-id bytes, no OCTET STRING tag inside extnValue (as AMD issues it).
    let hwid = if turin {
        id.chip_id[..8].to_vec()
    } else {
        id.chip_id.to_vec()
    };
    exts.push(ext(&amd("4"), false, hwid)?);
    Ok(exts)
}

fn sign_cert(
    issuer_key: &RsaPrivateKey,
    issuer: Name,
    subject: Name,
    serial: u32,
    spki: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
) -> Result<Vec<u8>, ChainError> {
    let algorithm = rsa::pss::get_default_pss_signature_algo_id::<Sha384>()
        .map_err(|e| ChainError::Pkcs8(e.to_string()))?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::from(serial),
        signature: algorithm.clone(),
        issuer,
        validity: validity()?,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let signer = BlindedSigningKey::<Sha384>::new(issuer_key.clone());
    let signature = signer.sign_with_rng(&mut rand::thread_rng(), &tbs.to_der()?);
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature.to_bytes())?,
    };
    Ok(cert.to_der()?)
}

fn rsa_spki(key: &RsaPrivateKey) -> Result<SubjectPublicKeyInfoOwned, ChainError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| ChainError::Pkcs8(e.to_string()))?;
    Ok(SubjectPublicKeyInfoOwned::from_der(der.as_bytes())?)
}

/// The two RSA-4096 CA keys, generated once per machine and cached as PKCS#8.
fn ca_keys() -> Result<(RsaPrivateKey, RsaPrivateKey), ChainError> {
    use rsa::pkcs8::DecodePrivateKey as _;
    let dir = cache_dir();
    let load = |file: &str| -> Option<RsaPrivateKey> {
        let der = std::fs::read(dir.join(file)).ok()?;
        RsaPrivateKey::from_pkcs8_der(&der).ok()
    };
    if let (Some(ark), Some(ask)) = (load("ark.pk8"), load("ask.pk8")) {
        return Ok((ark, ask));
    }
    let mut rng = rand::thread_rng();
    let ark = RsaPrivateKey::new(&mut rng, 4096)?;
    let ask = RsaPrivateKey::new(&mut rng, 4096)?;
    std::fs::create_dir_all(&dir)?;
    for (file, key) in [("ark.pk8", &ark), ("ask.pk8", &ask)] {
        let der = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(key)
            .map_err(|e| ChainError::Pkcs8(e.to_string()))?;
        // Write-then-rename so a concurrent test process never reads half a key.
        let tmp = dir.join(format!("{file}.{}", std::process::id()));
        std::fs::write(&tmp, der.as_bytes())?;
        std::fs::rename(&tmp, dir.join(file))?;
    }
    Ok((ark, ask))
}

fn cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("svsm-vhsm-test-chain-{CACHE_VERSION}"))
}

impl TestChain {
    /// Builds a chain whose VCEK certifies `id`, with a VCEK key derived from `vcek_seed` (so a
    /// machine's key is stable across runs).
    pub fn new(id: &VcekIdentity, vcek_seed: &[u8; 48]) -> Result<TestChain, ChainError> {
        let (ark_key, ask_key) = ca_keys()?;
        let ark_name = name("ARK-TEST")?;
        let ask_name = name("SEV-TEST")?;
        let ark_der = sign_cert(
            &ark_key,
            ark_name.clone(),
            ark_name.clone(),
            0x10000,
            rsa_spki(&ark_key)?,
            ca_extensions(None)?,
        )?;
        let ask_der = sign_cert(
            &ark_key,
            ark_name,
            ask_name.clone(),
            0x10001,
            rsa_spki(&ask_key)?,
            ca_extensions(Some(0))?,
        )?;
        let vcek_key = EcSigningKey::from_slice(&derive_scalar(vcek_seed))
            .map_err(|e| ChainError::Pkcs8(e.to_string()))?;
        let vcek_spki_der = vcek_key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| ChainError::Pkcs8(e.to_string()))?;
        let vcek_spki = SubjectPublicKeyInfoOwned::from_der(vcek_spki_der.as_bytes())?;
        // AMD issues VEKs with serial 0.
        let vcek_der = sign_cert(
            &ask_key,
            ask_name,
            name("SEV-VCEK")?,
            0,
            vcek_spki,
            vcek_extensions(id)?,
        )?;
        Ok(TestChain {
            ark_der,
            ask_der,
            vcek_der,
            vcek_key,
        })
    }

    /// The VCEK key as PKCS#8 (for tests that sign with it elsewhere).
    pub fn vcek_pkcs8(&self) -> Result<Vec<u8>, ChainError> {
        Ok(self
            .vcek_key
            .to_pkcs8_der()
            .map_err(|e| ChainError::Pkcs8(e.to_string()))?
            .as_bytes()
            .to_vec())
    }

    /// Reloads a VCEK key from PKCS#8.
    pub fn vcek_from_pkcs8(der: &[u8]) -> Result<EcSigningKey, ChainError> {
        EcSigningKey::from_pkcs8_der(der).map_err(|e| ChainError::Pkcs8(e.to_string()))
    }
}

/// A valid P-384 scalar from a seed: SHA-384 of the seed, retried with a counter until it is
/// in range (it nearly always is the first time).
fn derive_scalar(seed: &[u8; 48]) -> [u8; 48] {
    use sha2::Digest;
    let mut counter = 0u32;
    loop {
        let d: [u8; 48] = Sha384::new()
            .chain_update(b"svsm-vhsm test VCEK")
            .chain_update(seed)
            .chain_update(counter.to_be_bytes())
            .finalize()
            .into();
        if EcSigningKey::from_slice(&d).is_ok() {
            return d;
        }
        counter += 1;
    }
}
