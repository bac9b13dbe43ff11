//! AK certificates (docs/identity.md, "AK certificates from the broker"): the broker's AK CA
//! (a P-256 key and self-signed certificate in the data directory) and the credential
//! challenges in flight. A challenge is made only for the EK of an affirmed appraisal and is
//! redeemed once, by the secret only that TPM can recover with TPM2_ActivateCredential for
//! that AK; then the AK certificate is issued.
//!
//! Challenges live in memory for the nonce lifetime: a restarted broker forgets them and the
//! guest starts over (one more appraisal), which costs less than another table every replica
//! would have to share. A replica that did not make a challenge answers `not_found`.

use super::config::{self, ConfigError};
use crate::bundle_verify::tpm::AkPublic;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The AK CA's private key in the data directory.
pub const AK_CA_KEY: &str = "ak-ca-key.pem";
/// The AK CA's certificate in the data directory.
pub const AK_CA_CERT: &str = "ak-ca.pem";
/// Most challenges in flight; more are answered `unavailable`.
pub const MAX_PENDING: usize = 4096;
/// How long an AK certificate is valid.
pub const AK_CERT_DAYS: i64 = 365;

const CA_NAME: &str = "svsm-vhsm broker AK CA";
const ORGANIZATION: &str = "svsm-vhsm";
/// tcg-kp-AIKCertificate.
const TCG_KP_AIK_CERTIFICATE: [u64; 5] = [2, 23, 133, 8, 3];

/// The AK CA.
pub struct AkCa {
    key: rcgen::KeyPair,
    /// The issuer as rcgen needs it: same name and key as the stored certificate.
    issuer: rcgen::Certificate,
    pem: String,
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> ConfigError {
    move |e| ConfigError::Generate {
        what,
        detail: e.to_string(),
    }
}

/// Parameters whose subject is `O=svsm-vhsm, CN=common_name`.
fn named(common_name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, ORGANIZATION);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = named(CA_NAME);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

impl AkCa {
    /// Loads the AK CA from `data_dir`, creating it on first use (mode 0600 key, 0644
    /// certificate): data directories made before AK certificates existed get one too.
    pub fn load_or_create(data_dir: &Path) -> Result<AkCa, ConfigError> {
        let key_path = data_dir.join(AK_CA_KEY);
        let cert_path = data_dir.join(AK_CA_CERT);
        if !key_path.exists() {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(generate("the AK CA key"))?;
            let cert = ca_params()
                .self_signed(&key)
                .map_err(generate("the AK CA certificate"))?;
            config::write_new(
                &key_path,
                Zeroizing::new(key.serialize_pem()).as_bytes(),
                0o600,
            )?;
            config::write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        }
        let pem = config::read_private(&key_path)?;
        let text = std::str::from_utf8(&pem).map_err(|_| ConfigError::Generate {
            what: "the AK CA key",
            detail: format!("{} is not PEM", key_path.display()),
        })?;
        let key = rcgen::KeyPair::from_pem(text).map_err(generate("the AK CA key"))?;
        let issuer = ca_params()
            .self_signed(&key)
            .map_err(generate("the AK CA certificate"))?;
        let pem = std::fs::read_to_string(&cert_path).map_err(|source| ConfigError::Io {
            path: cert_path.clone(),
            source,
        })?;
        Ok(AkCa { key, issuer, pem })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// An AK certificate for `ak` of the TPM of instance `instance`, valid from `now`.
    pub fn issue(
        &self,
        ak: &AkPublic,
        instance: &[u8; 16],
        now: i64,
    ) -> Result<String, IssueError> {
        let mut params = named("svsm-vhsm AK");
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            hex::encode(instance),
        );
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::Other(
            TCG_KP_AIK_CERTIFICATE.to_vec(),
        )];
        params.use_authority_key_identifier_extension = true;
        let start =
            time::OffsetDateTime::from_unix_timestamp(now).map_err(|_| IssueError::Time(now))?;
        params.not_before = start;
        params.not_after = start + time::Duration::days(AK_CERT_DAYS);
        let mut serial = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
        serial[0] &= 0x7F;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(&ak.x);
        point.extend_from_slice(&ak.y);
        let cert = params
            .signed_by(&AkKey(point), &self.issuer, &self.key)
            .map_err(|e| IssueError::Certificate(e.to_string()))?;
        Ok(cert.pem())
    }
}

/// Why an AK certificate could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The clock is out of the certificate's range.
    #[error("the time {0} cannot be a certificate's notBefore")]
    Time(i64),
    /// rcgen refused (its message).
    #[error("the AK certificate could not be made: {0}")]
    Certificate(String),
}

/// An AK's public point as rcgen takes a subject key it does not hold.
struct AkKey(Vec<u8>);

impl rcgen::PublicKeyData for AkKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// One challenge in flight.
pub struct PendingAk {
    /// The secret the credential wraps.
    pub secret: Zeroizing<[u8; 32]>,
    /// The AK's TPMT_PUBLIC.
    pub ak_public: Vec<u8>,
    /// The appraised instance.
    pub instance: [u8; 16],
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// Why a challenge could not be redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No such challenge (never made here, already redeemed, or forgotten by a restart).
    #[error("no such AK challenge (unknown, already used, or made by another broker process)")]
    Unknown,
    /// It expired.
    #[error("the AK challenge expired")]
    Expired,
    /// The secret is not the one the credential wrapped: the TPM that answered does not hold
    /// the attested EK, or not that AK.
    #[error("the secret is not the credential's: the AK is not on the attested TPM")]
    WrongSecret,
}

/// The challenges in flight.
#[derive(Default)]
pub struct PendingChallenges(Mutex<HashMap<[u8; 16], PendingAk>>);

impl PendingChallenges {
    /// Keeps a challenge; `false` when [`MAX_PENDING`] live ones are already kept.
    pub fn insert(&self, id: [u8; 16], pending: PendingAk, now: i64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.expires_at >= now);
        if map.len() >= MAX_PENDING {
            return false;
        }
        map.insert(id, pending);
        true
    }

    /// Takes the challenge `id` (single use, whatever the outcome) and checks `secret`.
    pub fn redeem(&self, id: &[u8; 16], secret: &[u8], now: i64) -> Result<PendingAk, RedeemError> {
        let pending = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .ok_or(RedeemError::Unknown)?;
        if pending.expires_at < now {
            return Err(RedeemError::Expired);
        }
        if !bool::from(pending.secret.as_slice().ct_eq(secret)) {
            return Err(RedeemError::WrongSecret);
        }
        Ok(pending)
    }
}
