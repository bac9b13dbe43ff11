//! Errors: evidence or configuration that cannot be appraised at all. A failed check is not an
//! error; it is an [`crate::Outcome::Fail`] in a contraindicated [`crate::Appraisal`].

use crate::azure::hcl::HclError;
use crate::policy::PolicyError;
use crate::trust::TrustError;
use crate::x509::CertDecodeError;
use svsm_abi::snp::ReportError;

/// Why an appraisal could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The report bytes are not an ATTESTATION_REPORT this verifier reads (length, version).
    #[error("attestation report rejected: {0}")]
    Report(#[from] ReportError),
    /// The bytes are not an Azure HCL report this verifier reads (header, sizes, types).
    #[error("HCL report rejected: {0}")]
    Hcl(#[from] HclError),
    /// No VEK was supplied. `urls` holds the AMD KDS URL(s) that would fetch the VCEK.
    #[error("no VCEK/VLEK supplied; {reason}{}", fmt_urls(.urls))]
    VekMissing {
        /// Why no single URL (or empty).
        reason: String,
        /// Candidate KDS URLs.
        urls: Vec<String>,
    },
    /// The VEK bytes are not an X.509 certificate.
    #[error("VEK certificate: {0}")]
    VekDecode(#[source] CertDecodeError),
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The trust anchors could not be loaded.
    #[error("trust anchors: {0}")]
    Trust(#[from] TrustError),
    /// The EAR could not be built or serialized.
    #[error("EAR: {0}")]
    Ear(String),
    /// A check that the appraisal must report is not implemented: never reported as success.
    #[error("check {0} is not implemented; refusing to appraise")]
    NotImplemented(&'static str),
}

fn fmt_urls(urls: &[String]) -> String {
    match urls {
        [] => String::new(),
        [one] => format!("fetch it from {one}"),
        many => format!("fetch it from one of:\n  {}", many.join("\n  ")),
    }
}
