//! The broker's HTTP API, version 1: every request and response body, as JSON. Requests refuse
//! unknown fields; binary values are lowercase hex (nonces, ids) or standard base64 (packages,
//! key material), as in the evidence bundle. `docs/broker.md` shows each with an example.

use serde::{Deserialize, Serialize};
use svsm_abi::vault::{KeyKind, Usage};
use svsm_evidence::BundleJson;

/// Why a request body was refused: the offending field's path (when there is one) and what is
/// wrong, both for the `malformed` answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// `bundle.quote.attest`, or `None` for the body as a whole.
    pub field: Option<String>,
    /// serde's message (`unknown field `x``, `missing field `y``, `invalid type ...`).
    pub message: String,
}

/// Decodes a request body strictly: JSON of `T`'s shape, unknown fields refused, the offending
/// field named. Every API handler decodes its body with this.
pub fn decode_request<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        RequestError {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })?;
    // Anything but whitespace after the JSON value is malformed too.
    de.end().map_err(|e| RequestError {
        field: None,
        message: format!("trailing data after the JSON body: {e}"),
    })?;
    Ok(value)
}

/// Path prefix of every versioned endpoint.
pub const PREFIX: &str = "/v1";

/// `POST /v1/challenge` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// The nonce (32 bytes, hex): the guest passes it to `svsm-attest bundle --nonce`.
    pub nonce: String,
    /// Unix seconds after which the nonce is refused.
    pub expires_at: i64,
}

/// `POST /v1/attest` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The evidence bundle, made for a nonce this broker issued.
    pub bundle: BundleJson,
    /// The policy to appraise against (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// One failed check, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedCheck {
    /// The check (`cpu.measurement`, `vtpm.reference_pcrs`, `broker.nonce`, `broker.epoch`, ...).
    pub check: String,
    /// Why it failed.
    pub reason: String,
}

/// `POST /v1/attest` answer (200 whatever the verdict; the EAR says which).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestResponse {
    /// `affirming` or `contraindicated`.
    pub verdict: String,
    /// The appraisal as an EAR (IETF RATS), a JWT signed ES256 by the broker
    /// (`GET /v1/ear-key`).
    pub ear: String,
    /// The checks that failed (empty when affirming).
    pub failed_checks: Vec<FailedCheck>,
    /// The instance, hex (when the manifest parsed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// When the attestation was a round of continuous attestation (the policy names a runtime
    /// policy) of a node the broker records: what its agent needs for the next round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<RoundInfo>,
}

/// The state of a node's continuous attestation after a round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundInfo {
    /// IMA entries appraised this boot: send the list from this entry next round.
    pub ima_offset: u64,
    /// Seconds until the next round is due.
    pub next_round_in_s: u64,
    /// The node's reputation, 0..=100.
    pub reputation: u32,
    /// Whether its last round was good.
    pub trusted: bool,
}

/// A runtime policy as the admin API lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaPolicyInfo {
    /// Name.
    pub name: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
    /// SHA-256 of the stored body, hex: kept IMA positions and node trust are bound to it.
    pub sha256: String,
}

/// `POST /v1/ak/challenge` body: certify an attestation key of the attested TPM.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkChallengeRequest {
    /// The evidence bundle, made for a nonce this broker issued: its manifest's EK is the one
    /// the credential is made for.
    pub bundle: BundleJson,
    /// The policy to appraise against (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The AK's TPMT_PUBLIC, base64 (ECC P-256 restricted signing key, nameAlg SHA-256).
    pub ak_public: String,
}

/// `POST /v1/ak/challenge` answer: the credential for TPM2_ActivateCredential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkChallenge {
    /// Names this exchange in `POST /v1/ak/certificate` (16 bytes, hex).
    pub challenge_id: String,
    /// `TPM2B_ID_OBJECT`, base64 (credentialBlob).
    pub credential_blob: String,
    /// `TPM2B_ENCRYPTED_SECRET`, base64 (secret).
    pub encrypted_secret: String,
    /// Unix seconds after which the challenge is refused.
    pub expires_at: i64,
}

/// `POST /v1/ak/certificate` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkCertificateRequest {
    /// From the challenge.
    pub challenge_id: String,
    /// What TPM2_ActivateCredential recovered, base64.
    pub secret: String,
}

/// `POST /v1/ak/certificate` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AkCertificate {
    /// The AK certificate, PEM.
    pub certificate: String,
    /// The broker's AK CA certificate, PEM (also `GET /v1/ak-ca`).
    pub ca: String,
    /// The instance the AK's TPM belongs to, hex.
    pub instance_id: String,
}

/// `POST /v1/release` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The resource asked for.
    pub resource: String,
    /// The evidence bundle, made for a nonce this broker issued.
    pub bundle: BundleJson,
}

/// `POST /v1/release` answer when released.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Released {
    /// The resource (also the vault key's name).
    pub resource: String,
    /// The key kind (`ecdsa-p384`, ...).
    pub kind: String,
    /// The vault import package (`docs/provisioning.md`), base64: pass it to
    /// `svsm-vault import`.
    pub package: String,
    /// The VMPL that owns the key (the manifest's requester VMPL).
    pub owner_vmpl: u8,
    /// The instance it is bound to, hex.
    pub instance_id: String,
    /// The public key of an asymmetric key, SEC1 hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Every error and refusal answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// `refused` (403), `malformed` (400), `unauthorized` (401), `not_found` (404),
    /// `conflict` (409), `too_large` (413), `unavailable` (503), `internal` (500).
    pub error: String,
    /// In words.
    pub message: String,
    /// For `malformed`: the offending field's path (`bundle.quote.attest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `refused`: every failed check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<FailedCheck>,
}

/// `GET /v1/ear-key` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarKey {
    /// `ES256`.
    pub alg: String,
    /// The public key as a JWK (RFC 7517) object.
    pub jwk: serde_json::Value,
}

/// `PUT /v1/admin/resources/{name}` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewResource {
    /// `ecdsa-p256`, `ecdsa-p384`, `aes-256-gcm`, `hmac-sha384`, `ecdh-p384`.
    pub kind: String,
    /// Usages: `sign`, `verify`, `encrypt`, `decrypt`, `mac`, `derive` (must suit the kind).
    pub usage: Vec<String>,
    /// The policy a release must satisfy (must exist and pin MEASUREMENT and the owner VMPL).
    pub policy: String,
    /// The key material, base64 (32 or 48 bytes by kind); absent: the broker generates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
}

/// `PATCH /v1/admin/resources/{name}` body: point a resource at another policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicyChange {
    /// The new policy.
    pub policy: String,
}

/// A resource as the admin API shows it (never its material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceInfo {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Usages.
    pub usage: Vec<String>,
    /// Policy.
    pub policy: String,
    /// The public key of an asymmetric key, SEC1 hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// The API name of a key kind.
pub const fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::EcdsaP256 => "ecdsa-p256",
        KeyKind::EcdsaP384 => "ecdsa-p384",
        KeyKind::Aes256Gcm => "aes-256-gcm",
        KeyKind::HmacSha384 => "hmac-sha384",
        KeyKind::EcdhP384 => "ecdh-p384",
        KeyKind::Secret256 => "secret-256",
        KeyKind::HmacSha256 => "hmac-sha256",
        KeyKind::EcdhP256 => "ecdh-p256",
    }
}

/// The key kind an API name means.
pub fn kind_from_name(name: &str) -> Option<KeyKind> {
    [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP384,
        KeyKind::Aes256Gcm,
        KeyKind::HmacSha384,
        KeyKind::EcdhP384,
        KeyKind::Secret256,
        KeyKind::HmacSha256,
        KeyKind::EcdhP256,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == name)
}

const USAGE_NAMES: [(Usage, &str); 7] = [
    (Usage::SIGN, "sign"),
    (Usage::VERIFY, "verify"),
    (Usage::ENCRYPT, "encrypt"),
    (Usage::DECRYPT, "decrypt"),
    (Usage::MAC, "mac"),
    (Usage::DERIVE, "derive"),
    (Usage::REVEAL, "reveal"),
];

/// The usage bits the API names mean; `Err` names the first unknown one.
pub fn usage_from_names(names: &[String]) -> Result<Usage, String> {
    names.iter().try_fold(Usage::empty(), |acc, n| {
        USAGE_NAMES
            .iter()
            .find(|(_, name)| name == n)
            .map(|(u, _)| acc | *u)
            .ok_or_else(|| n.clone())
    })
}

/// The API names of usage bits.
pub fn usage_names(usage: Usage) -> Vec<String> {
    USAGE_NAMES
        .iter()
        .filter(|(u, _)| usage.contains(*u))
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

/// One audit row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub at: i64,
    /// `challenge`, `attest`, `release`, `admin`.
    pub action: String,
    /// What it was about (instance, resource, node).
    pub subject: String,
    /// `allowed`, `refused`, `error`.
    pub decision: String,
    /// Why, in words (failed checks by name).
    pub reasons: Vec<String>,
}

/// One instance the broker has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Instance id, hex.
    pub instance_id: String,
    /// The highest sealed-state epoch seen.
    pub max_epoch: u64,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    /// `attest` or `release`.
    pub last_action: Option<String>,
    /// `allowed` or `refused`.
    pub last_decision: Option<String>,
    /// Continuous attestation, once the node had a round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<NodeRounds>,
}

/// A node's continuous attestation, as the nodes list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRounds {
    /// Reputation, 0..=100 (`docs/agent.md`).
    pub reputation: u32,
    /// Its last round was good and the next is not overdue.
    pub trusted: bool,
    /// IMA entries appraised this boot.
    pub ima_entries: Option<u64>,
    /// Unix seconds of the last round.
    pub last_round_at: i64,
    /// Unix seconds after which the next round counts as missed.
    pub overdue_at: Option<i64>,
    /// Good rounds.
    pub good: u64,
    /// Failed rounds.
    pub failed: u64,
    /// Missed rounds.
    pub missed: u64,
    /// Why the last failed or missed round counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in 1..=6 {
            let kind = KeyKind::from_u16(k).unwrap();
            assert_eq!(kind_from_name(kind_name(kind)), Some(kind));
        }
        assert_eq!(kind_from_name("rsa"), None);
        let u = usage_from_names(&["sign".into(), "verify".into()]).unwrap();
        assert_eq!(u, Usage::SIGN | Usage::VERIFY);
        assert_eq!(usage_names(u), ["sign", "verify"]);
        assert_eq!(usage_from_names(&["fly".into()]), Err("fly".into()));
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let e = decode_request::<ResourcePolicyChange>(br#"{"policy": 7}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("policy"));
        let e = decode_request::<ResourcePolicyChange>(br#"{}"#).unwrap_err();
        assert!(e.message.contains("missing field `policy`"), "{e}");
        let e = decode_request::<ResourcePolicyChange>(br#"{"policy": "a"} {}"#).unwrap_err();
        assert!(e.message.contains("trailing"), "{e}");
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"\xff",
            &[b'['; 100_000][..],
        ] {
            assert!(decode_request::<ReleaseRequest>(bad).is_err());
        }
        assert_eq!(
            decode_request::<ResourcePolicyChange>(b" {\"policy\": \"a\"}\n")
                .unwrap()
                .policy,
            "a"
        );
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let e =
            serde_json::from_str::<ResourcePolicyChange>(r#"{"policy":"a","x":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `x`"), "{e}");
    }
}
