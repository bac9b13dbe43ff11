//! The result of an appraisal: every check with its outcome, the decoded report, and its
//! rendering as an EAR (IETF RATS "EAT Attestation Results", via the `ear` crate) or as text.

use crate::check::{CheckId, CheckResult, NamedCheck, Outcome, TrustClaimName};
use crate::decoded::{signing_key_name, DecodedReport};
use crate::error::Error;
use crate::x509::rfc3339;
use ear::claim;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use svsm_abi::snp::{Product, SigningKey};

/// The EAR submodule name of the SNP appraisal.
pub const EAR_SUBMOD: &str = "snp";

/// What the VEK said about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VekSummary {
    /// Subject CN.
    pub subject: String,
    /// Issuer CN.
    pub issuer: String,
    /// notBefore.
    pub not_before: String,
    /// notAfter.
    pub not_after: String,
    /// productName extension.
    pub product_name: Option<String>,
    /// hwID, hex.
    pub hw_id: Option<String>,
    /// cspID.
    pub csp_id: Option<String>,
}

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Verdict {
    /// Every check passed or does not apply.
    Affirming,
    /// At least one check failed.
    Contraindicated,
}

/// An appraisal of one SNP report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appraisal {
    /// Every check of [`CheckId::ALL`], in order.
    pub checks: Vec<CheckResult>,
    /// The report, decoded.
    pub report: DecodedReport,
    /// The product, when determined.
    pub product: Option<Product>,
    /// KEY_INFO's signer.
    pub signer: SigningKey,
    /// The VEK.
    pub vek: VekSummary,
    /// Appraisal time (Unix seconds).
    pub at: u64,
    /// The KDS URL of this report's VCEK (VCEK-signed reports with a CHIP_ID).
    pub vcek_url: Option<String>,
}

impl Appraisal {
    /// Affirming iff no check failed.
    pub fn verdict(&self) -> Verdict {
        if self.failures().next().is_some() {
            Verdict::Contraindicated
        } else {
            Verdict::Affirming
        }
    }

    /// The result of one check.
    pub fn check(&self, id: CheckId) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// The trust-vector value a check contributes (`None`: no claim).
    pub fn claim_value(c: &CheckResult) -> Option<i8> {
        claim_value(c)
    }

    /// Per trust-vector claim: the worst value its checks contribute.
    pub fn trust_vector(&self) -> BTreeMap<TrustClaimName, i8> {
        trust_vector(&self.checks)
    }

    /// The checks as JSON, each with its claim.
    pub fn checks_json(&self) -> Value {
        checks_json(&self.checks)
    }

    /// This appraisal as one EAR submodule: the trust vector, every check
    /// (`ear_verifier_claims.checks`) and the decoded report (`ear_attester_claims`).
    pub fn ear_submod(&self) -> Result<ear::Appraisal, Error> {
        let report = serde_json::to_value(&self.report).map_err(|e| Error::Ear(e.to_string()))?;
        let verifier = json!({
            "verdict": self.verdict_str(),
            "checks": self.checks_json(),
            "product": self.product.map(|p| p.kds_name()),
            "signer": signing_key_name(self.signer),
            "vek": self.vek,
            "appraisal_time": rfc3339(self.at),
            "vcek_url": self.vcek_url,
        });
        ear_submod(
            &self.trust_vector(),
            self.verdict() == Verdict::Contraindicated,
            "host-verifier/snp",
            &report,
            &verifier,
        )
    }

    /// The appraisal as an EAR with one submodule, `snp` (see [`Appraisal::ear_submod`]).
    /// `iat` is the EAR issue time (Unix seconds).
    pub fn to_ear(&self, iat: i64) -> Result<ear::Ear, Error> {
        let mut submods = BTreeMap::new();
        submods.insert(EAR_SUBMOD.to_owned(), self.ear_submod()?);
        build_ear(submods, iat)
    }

    /// The EAR as JSON.
    pub fn to_ear_json(&self, iat: i64) -> Result<Value, Error> {
        serde_json::to_value(self.to_ear(iat)?).map_err(|e| Error::Ear(e.to_string()))
    }

    /// "affirming" or "contraindicated".
    pub fn verdict_str(&self) -> &'static str {
        match self.verdict() {
            Verdict::Affirming => "affirming",
            Verdict::Contraindicated => "contraindicated",
        }
    }

    /// A human summary: one line per check, then the verdict.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let r = &self.report;
        s.push_str(&format!(
            "SNP report v{} | product {} | signer {} | VMPL {} | policy {} | TCB layout {}\n",
            r.version,
            self.product.map_or("unknown", |p| p.kds_name()),
            signing_key_name(self.signer),
            r.vmpl,
            r.policy,
            r.tcb_layout
        ));
        s.push_str(&format!("measurement  {}\n", r.measurement));
        s.push_str(&format!("report_data  {}\n", r.report_data));
        s.push_str(&format!(
            "VEK          {} issued by {}, valid {} .. {}\n",
            self.vek.subject, self.vek.issuer, self.vek.not_before, self.vek.not_after
        ));
        s.push_str(&format!("checked at   {}\n\n", rfc3339(self.at)));
        render_checks(&self.checks, &mut s);
        s
    }
}

/// The trust-vector value a check contributes (`None`: no claim).
pub(crate) fn claim_value<I: NamedCheck, F>(c: &CheckResult<I, F>) -> Option<i8> {
    match (&c.outcome, c.id.claim()) {
        (Outcome::NotApplicable(_), _) => None,
        (Outcome::Fail(_), _) if c.id.cryptographic() => Some(claim::CRYPTO_VALIDATION_FAILED),
        (Outcome::Pass, TrustClaimName::InstanceIdentity) => Some(claim::TRUSTWORTHY_INSTANCE),
        (Outcome::Fail(_), TrustClaimName::InstanceIdentity) => Some(claim::UNTRUSTWORTHY_INSTANCE),
        (Outcome::Pass, TrustClaimName::Hardware) => Some(claim::GENUINE_HARDWARE),
        (Outcome::Fail(_), TrustClaimName::Hardware) => Some(claim::CONTRAINDICATED_HARDWARE),
        (Outcome::Pass, TrustClaimName::Configuration) => Some(claim::APPROVED_CONFIG),
        (Outcome::Fail(_), TrustClaimName::Configuration) => Some(claim::UNSUPPORTABLE_CONFIG),
        (Outcome::Pass, TrustClaimName::Executables) => Some(claim::APPROVED_RUNTIME),
        (Outcome::Fail(_), TrustClaimName::Executables) => Some(claim::CONTRAINDICATED_RUNTIME),
        (Outcome::Pass, TrustClaimName::RuntimeOpaque) => Some(claim::ENCRYPTED_MEMORY_RUNTIME),
        (Outcome::Fail(_), TrustClaimName::RuntimeOpaque) => Some(claim::VISIBLE_MEMORY_RUNTIME),
    }
}

/// Per trust-vector claim: the worst value its checks contribute.
pub(crate) fn trust_vector<I: NamedCheck, F>(
    checks: &[CheckResult<I, F>],
) -> BTreeMap<TrustClaimName, i8> {
    let mut out: BTreeMap<TrustClaimName, i8> = BTreeMap::new();
    for c in checks {
        if let Some(v) = claim_value(c) {
            let slot = out.entry(c.id.claim()).or_insert(v);
            // Affirming values are 2..=31; larger is worse.
            if v > *slot {
                *slot = v;
            }
        }
    }
    out
}

/// The checks as JSON, each with its claim.
pub(crate) fn checks_json<I: NamedCheck, F: std::fmt::Display>(
    checks: &[CheckResult<I, F>],
) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|c| {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), json!(c.id.check_name()));
                o.insert("result".into(), json!(c.outcome.as_str()));
                o.insert("claim".into(), json!(c.id.claim().ear_name()));
                if let Some(v) = claim_value(c) {
                    o.insert("claim_value".into(), json!(v));
                }
                match &c.outcome {
                    Outcome::Fail(f) => {
                        o.insert("reason".into(), json!(f.to_string()));
                    }
                    Outcome::NotApplicable(why) => {
                        o.insert("reason".into(), json!(why));
                    }
                    Outcome::Pass => {}
                }
                if !c.detail.is_empty() {
                    o.insert("detail".into(), json!(c.detail));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// One line per check, then the verdict line.
pub(crate) fn render_checks<I: NamedCheck, F: std::fmt::Display>(
    checks: &[CheckResult<I, F>],
    s: &mut String,
) {
    let width = checks
        .iter()
        .map(|c| c.id.check_name().len())
        .max()
        .unwrap_or(0);
    for c in checks {
        let (tag, text) = match &c.outcome {
            Outcome::Pass => ("PASS", c.detail.clone()),
            Outcome::Fail(f) => ("FAIL", f.to_string()),
            Outcome::NotApplicable(why) => ("n/a ", why.clone()),
        };
        s.push_str(&format!("  {tag}  {:width$}  {text}\n", c.id.check_name()));
    }
    let count = |k: &str| checks.iter().filter(|c| c.outcome.as_str() == k).count();
    let verdict = if count("fail") > 0 {
        "contraindicated"
    } else {
        "affirming"
    };
    s.push_str(&format!(
        "\nverdict: {} ({} checks: {} pass, {} fail, {} not applicable)\n",
        verdict.to_uppercase(),
        checks.len(),
        count("pass"),
        count("fail"),
        count("not-applicable")
    ));
}

/// One EAR submodule from a trust vector, the verdict, a policy id and the attester and verifier
/// claims (JSON objects).
pub(crate) fn ear_submod(
    trust_vector: &BTreeMap<TrustClaimName, i8>,
    contraindicated: bool,
    policy_id: &str,
    attester: &Value,
    verifier: &Value,
) -> Result<ear::Appraisal, Error> {
    let mut appraisal = ear::Appraisal::new();
    for (name, value) in trust_vector {
        appraisal
            .trust_vector
            .mut_by_name(name.ear_name())
            .map_err(|e| Error::Ear(e.to_string()))?
            .set(*value);
    }
    appraisal.update_status_from_trust_vector();
    if contraindicated {
        appraisal.status = ear::TrustTier::Contraindicated;
    }
    appraisal.policy_ids = vec![policy_id.to_owned()];
    appraisal.attester_claims = match to_raw(attester) {
        ear::RawValue::Map(entries) => entries
            .into_iter()
            .filter_map(|(k, v)| match k {
                ear::RawValue::String(k) => Some((k, v)),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    if let ear::RawValue::Map(entries) = to_raw(verifier) {
        for (k, v) in entries {
            if let ear::RawValue::String(k) = k {
                appraisal.verifier_claims.insert(k, v);
            }
        }
    }
    Ok(appraisal)
}

/// An EAR with these submodules; `iat` is the issue time (Unix seconds).
pub(crate) fn build_ear(
    submods: BTreeMap<String, ear::Appraisal>,
    iat: i64,
) -> Result<ear::Ear, Error> {
    let mut e = ear::Ear {
        profile: ear::EAR_PROFILE.to_owned(),
        iat: iat.max(1),
        exp: None,
        vid: ear::VerifierID {
            build: format!("host-verifier {}", env!("CARGO_PKG_VERSION")),
            developer: "svsm-vhsm".to_owned(),
        },
        submods,
        nonce: None,
        status: None,
        raw_evidence: None,
        topology: None,
        extensions: ear::Extensions::new(),
    };
    e.update_status_from_trust_vector();
    e.validate().map_err(|err| Error::Ear(err.to_string()))?;
    Ok(e)
}

/// JSON to the EAR crate's raw claim value.
pub fn to_raw(v: &Value) -> ear::RawValue {
    match v {
        Value::Null => ear::RawValue::Null,
        Value::Bool(b) => ear::RawValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(ear::RawValue::Integer)
            .unwrap_or_else(|| ear::RawValue::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => ear::RawValue::String(s.clone()),
        Value::Array(a) => ear::RawValue::Array(a.iter().map(to_raw).collect()),
        Value::Object(o) => ear::RawValue::Map(
            o.iter()
                .map(|(k, v)| (ear::RawValue::String(k.clone()), to_raw(v)))
                .collect(),
        ),
    }
}
