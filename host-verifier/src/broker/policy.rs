//! Release and attestation policies: what an appraised node must show before the broker answers
//! "affirming" or releases a resource. A policy is JSON, stored by name in the database so that
//! every replica applies the same one, and compiled on use (parse, don't validate) into the
//! inputs of [`crate::bundle_verify`]: the SNP part is exactly `host-verifier`'s policy language
//! ([`crate::Policy::from_json`], the keys of `examples/policy.toml`), the rest sets the
//! bundle context (reference PCRs, requester VMPL, minimum epoch). No check is re-implemented
//! here.

use crate::bundle_verify::PCR_COUNT;
use crate::policy::PolicyError;
use crate::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a policy document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleasePolicyError {
    /// Not a JSON object of the known keys, or a wrong type.
    #[error("{0}")]
    Shape(String),
    /// The SNP part is not a valid `host-verifier` policy.
    #[error("snp: {0}")]
    Snp(#[from] PolicyError),
    /// A reference PCR is malformed.
    #[error("reference_pcrs.{index}: {detail}")]
    Pcr {
        /// The key as given.
        index: String,
        /// What is wrong.
        detail: &'static str,
    },
    /// A release needs a MEASUREMENT allowlist: without one any image on genuine hardware
    /// would get the secret.
    #[error(
        "snp.measurements: a policy that releases secrets must list the accepted MEASUREMENTs"
    )]
    NoMeasurements,
    /// A release needs the VMPL the key will be owned by.
    #[error(
        "requester_vmpl: a policy that releases secrets must name the VMPL that owns them (0..3)"
    )]
    NoRequesterVmpl,
    /// A VMPL above 3.
    #[error("requester_vmpl: {0} is not a VMPL (0..3)")]
    BadVmpl(u8),
    /// A round interval outside 1 s .. 1 day.
    #[error("round_interval_s: {0} is not between 1 and 86400 seconds")]
    BadInterval(u64),
    /// A minimum reputation above 100.
    #[error("min_reputation: {0} is above the highest reputation (100)")]
    BadReputation(u32),
    /// A round interval without a runtime policy to make rounds of.
    #[error("round_interval_s: only a policy with an ima_policy makes rounds")]
    IntervalWithoutRounds,
    /// A minimum reputation without a runtime policy: the node would pick the (loosest)
    /// policy its rounds are appraised under.
    #[error(
        "min_reputation: needs an ima_policy (trust counts only from rounds under the runtime \
         policy the release names)"
    )]
    ReputationWithoutRounds,
    /// The runtime policy's name is empty or too long.
    #[error("ima_policy: a runtime policy's name is 1..=64 characters of [A-Za-z0-9._-]")]
    BadImaPolicyName,
}

/// Seconds between rounds at full reputation when a policy does not say.
pub const DEFAULT_ROUND_INTERVAL: u64 = 300;

/// A policy document as stored and as the admin API takes it (`docs/broker.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The SNP policy: the keys of `host-verifier`'s policy TOML, as a JSON object.
    #[serde(default)]
    pub snp: serde_json::Map<String, serde_json::Value>,
    /// Expected SHA-256 PCR values, hex, by index ("0".."23").
    #[serde(default)]
    pub reference_pcrs: BTreeMap<String, String>,
    /// The VMPL that must have asked for the attestation; a released key is owned there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_vmpl: Option<u8>,
    /// The oldest sealed-state epoch accepted (the broker also enforces the highest it saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_epoch: Option<u64>,
    /// A stored runtime policy (`/v1/admin/ima-policies/{name}`) every IMA entry must satisfy.
    /// Attestations under a policy that names one are rounds of continuous attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_policy: Option<String>,
    /// Seconds between rounds at full reputation (default 300); shorter as the reputation
    /// falls (`docs/agent.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_interval_s: Option<u64>,
    /// For a release: the node's last round was good, its next is not overdue, and its
    /// reputation is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reputation: Option<u32>,
}

/// A policy ready to apply.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// The SNP appraisal policy.
    pub snp: Policy,
    /// Expected PCR values.
    pub reference_pcrs: BTreeMap<usize, [u8; 32]>,
    /// The VMPL that must have asked.
    pub requester_vmpl: Option<u8>,
    /// The oldest epoch accepted.
    pub min_epoch: Option<u64>,
    /// The runtime policy every IMA entry must satisfy.
    pub ima_policy: Option<String>,
    /// Seconds between rounds at full reputation.
    pub round_interval_s: u64,
    /// The lowest reputation a release accepts (and a trusted node).
    pub min_reputation: Option<u32>,
}

impl PolicyDocument {
    /// Parses a document from JSON text, naming the offending key on error.
    pub fn from_json(text: &str) -> Result<Self, ReleasePolicyError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ReleasePolicyError::Shape(format!("{path}: {}", e.into_inner()))
        })
    }

    /// Compiles the document; `for_release` adds what a release needs (a MEASUREMENT
    /// allowlist and an owner VMPL).
    pub fn compile(&self, for_release: bool) -> Result<CompiledPolicy, ReleasePolicyError> {
        let snp = Policy::from_json(&serde_json::Value::Object(self.snp.clone()))?;
        let mut reference_pcrs = BTreeMap::new();
        for (key, value) in &self.reference_pcrs {
            let index: usize = key.parse().map_err(|_| ReleasePolicyError::Pcr {
                index: key.clone(),
                detail: "the index is not a number",
            })?;
            if index >= PCR_COUNT {
                return Err(ReleasePolicyError::Pcr {
                    index: key.clone(),
                    detail: "no such PCR (0..23)",
                });
            }
            let bytes = hex::decode(value.trim()).map_err(|_| ReleasePolicyError::Pcr {
                index: key.clone(),
                detail: "not hex",
            })?;
            let digest =
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ReleasePolicyError::Pcr {
                    index: key.clone(),
                    detail: "a SHA-256 value is 32 bytes",
                })?;
            reference_pcrs.insert(index, digest);
        }
        if let Some(v) = self.requester_vmpl.filter(|v| *v > 3) {
            return Err(ReleasePolicyError::BadVmpl(v));
        }
        if for_release {
            if snp.measurements.as_ref().is_none_or(Vec::is_empty) {
                return Err(ReleasePolicyError::NoMeasurements);
            }
            if self.requester_vmpl.is_none() {
                return Err(ReleasePolicyError::NoRequesterVmpl);
            }
        }
        if let Some(i) = self.round_interval_s {
            if !(1..=86_400).contains(&i) {
                return Err(ReleasePolicyError::BadInterval(i));
            }
            if self.ima_policy.is_none() {
                return Err(ReleasePolicyError::IntervalWithoutRounds);
            }
        }
        if let Some(r) = self.min_reputation.filter(|r| *r > super::reputation::MAX) {
            return Err(ReleasePolicyError::BadReputation(r));
        }
        if self.min_reputation.is_some() && self.ima_policy.is_none() {
            return Err(ReleasePolicyError::ReputationWithoutRounds);
        }
        if let Some(name) = &self.ima_policy {
            let ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(ReleasePolicyError::BadImaPolicyName);
            }
        }
        Ok(CompiledPolicy {
            snp,
            reference_pcrs,
            requester_vmpl: self.requester_vmpl,
            min_epoch: self.min_epoch,
            ima_policy: self.ima_policy.clone(),
            round_interval_s: self.round_interval_s.unwrap_or(DEFAULT_ROUND_INTERVAL),
            min_reputation: self.min_reputation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "\"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001\"";

    #[test]
    fn a_release_policy_compiles() {
        let doc = PolicyDocument::from_json(&format!(
            r#"{{"snp": {{"measurements": [{M}]}}, "reference_pcrs": {{"4": "{}"}}, "requester_vmpl": 1, "min_epoch": 2}}"#,
            "ab".repeat(32)
        ))
        .unwrap();
        let c = doc.compile(true).unwrap();
        assert_eq!(c.reference_pcrs.get(&4), Some(&[0xab; 32]));
        assert_eq!(c.requester_vmpl, Some(1));
        assert_eq!(c.snp.measurements.map(|m| m.len()), Some(1));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = PolicyDocument::from_json(r#"{"snp": {}, "pcrs": {}}"#).unwrap_err();
        assert!(e.to_string().contains("pcrs"), "{e}");
        let e = PolicyDocument::from_json(r#"{"snp": {"measurement": []}}"#)
            .unwrap()
            .compile(false)
            .unwrap_err();
        assert!(e.to_string().contains("measurement"), "{e}");
    }

    #[test]
    fn a_release_needs_measurements_and_an_owner() {
        let no_m = PolicyDocument::from_json(r#"{"requester_vmpl": 1}"#).unwrap();
        assert!(matches!(
            no_m.compile(true),
            Err(ReleasePolicyError::NoMeasurements)
        ));
        assert!(no_m.compile(false).is_ok());
        let no_v =
            PolicyDocument::from_json(&format!(r#"{{"snp": {{"measurements": [{M}]}}}}"#)).unwrap();
        assert!(matches!(
            no_v.compile(true),
            Err(ReleasePolicyError::NoRequesterVmpl)
        ));
        let bad_v = PolicyDocument::from_json(r#"{"requester_vmpl": 4}"#).unwrap();
        assert!(matches!(
            bad_v.compile(false),
            Err(ReleasePolicyError::BadVmpl(4))
        ));
    }

    #[test]
    fn round_settings_are_checked() {
        let ok = PolicyDocument::from_json(
            r#"{"ima_policy": "guest-v1", "round_interval_s": 30, "min_reputation": 60}"#,
        )
        .unwrap()
        .compile(false)
        .unwrap();
        assert_eq!(
            (
                ok.ima_policy.as_deref(),
                ok.round_interval_s,
                ok.min_reputation
            ),
            (Some("guest-v1"), 30, Some(60))
        );
        for (doc, expected) in [
            (
                r#"{"ima_policy": "a", "round_interval_s": 0}"#,
                "round_interval_s: 0",
            ),
            (r#"{"ima_policy": "a", "round_interval_s": 90000}"#, "90000"),
            (
                r#"{"round_interval_s": 30}"#,
                "only a policy with an ima_policy",
            ),
            (r#"{"min_reputation": 101}"#, "min_reputation: 101"),
            (r#"{"ima_policy": "a/b"}"#, "ima_policy:"),
            (r#"{"ima_policy": ""}"#, "ima_policy:"),
        ] {
            let e = PolicyDocument::from_json(doc)
                .unwrap()
                .compile(false)
                .unwrap_err();
            assert!(e.to_string().contains(expected), "{doc}: {e}");
        }
    }

    #[test]
    fn malformed_pcrs_are_refused() {
        for (k, v) in [("24", "00"), ("x", "00"), ("4", "zz"), ("4", "0011")] {
            let doc =
                PolicyDocument::from_json(&format!(r#"{{"reference_pcrs": {{"{k}": "{v}"}}}}"#))
                    .unwrap();
            assert!(
                matches!(doc.compile(false), Err(ReleasePolicyError::Pcr { .. })),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn rounds_settings_need_a_runtime_policy() {
        let doc = PolicyDocument::from_json(r#"{"min_reputation": 50}"#).unwrap();
        assert!(matches!(
            doc.compile(false),
            Err(ReleasePolicyError::ReputationWithoutRounds)
        ));
        let doc = PolicyDocument::from_json(r#"{"round_interval_s": 60}"#).unwrap();
        assert!(matches!(
            doc.compile(false),
            Err(ReleasePolicyError::IntervalWithoutRounds)
        ));
        let doc =
            PolicyDocument::from_json(r#"{"min_reputation": 50, "ima_policy": "image"}"#).unwrap();
        assert!(doc.compile(false).is_ok());
    }
}
