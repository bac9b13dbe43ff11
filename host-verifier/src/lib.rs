//! `host-verifier` appraises evidence from an svsm-vhsm guest on a machine the relying party
//! trusts. Today it owns the AMD SEV-SNP appraisal: the ATTESTATION_REPORT (read through
//! `svsm-abi`, which owns every wire format), the VCEK/VLEK certificate and its AMD extensions,
//! the AMD chain to a pinned ARK, an optional ARK-signed CRL, and a TOML policy; it reports every
//! check by name as pass, fail or not-applicable and renders the result as an EAR. It also
//! appraises Azure confidential-VM evidence ([`azure`]): the SNP report inside the vTPM's HCL
//! report, the runtime claims it binds, and a TPM2 quote by the attestation key they carry.
//! And it appraises svsm-vhsm evidence bundles ([`bundle_verify`]): SNP report, vTPM manifest,
//! quote, PCR values and the event log replayed to them, bound to one nonce. With the `broker`
//! feature it also owns the key broker ([`broker`]): its service, state and client; the
//! `broker-api` feature alone gives its wire types and policy documents.
//!
//! It trusts only AMD's ARK, ASK and ASVK for Milan, Genoa and Turin, pinned in this binary, the
//! caller's policy and the caller's clock (or the `at` time it is given). The report, the VEK,
//! the CRL and anything else in the evidence are untrusted input: they are parsed into typed
//! values or typed failures, never a panic, and nothing on the verify path touches the network.
//!
//! ```no_run
//! use host_verifier::{Evidence, Policy, Verifier, Verdict};
//! let verifier = Verifier::new(Policy::default())?;
//! let report = std::fs::read("report.bin").unwrap();
//! let vcek = std::fs::read("vcek.pem").unwrap();
//! let appraisal = verifier.verify(&Evidence {
//!     report: &report,
//!     vek: Some(&vcek),
//!     crl: None,
//!     at: std::time::SystemTime::now(),
//! })?;
//! assert_eq!(appraisal.verdict(), Verdict::Affirming);
//! # Ok::<(), host_verifier::Error>(())
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod appraisal;
pub mod azure;
/// The evidence bundle format (crate `svsm-evidence`, shared with the guest tools).
pub use svsm_evidence as bundle;
#[cfg(feature = "broker-api")]
pub mod broker;
pub mod bundle_verify;
pub mod check;
pub mod combined;
#[cfg(feature = "broker")]
pub mod credential;
mod crl;
pub mod decoded;
pub mod ecdsa;
pub mod ek_certs;
mod error;
pub mod gpu;
pub mod kds;
pub mod measured;
pub mod policy;
pub mod reference;
pub mod trust;
pub mod vek;
mod verifier;
pub mod x509;

pub use appraisal::{Appraisal, VekSummary, Verdict};
pub use azure::{AzureAppraisal, AzureEvidence, VtpmCheckId, VtpmFailure};
pub use bundle_verify::{
    verify_bundle, BundleAppraisal, BundleCheckId, BundleContext, BundleFailure,
};
pub use check::{CheckId, CheckResult, Failure, Outcome};
pub use error::Error;
pub use policy::Policy;
pub use trust::TrustStore;
pub use verifier::{Evidence, Verifier, VEK_CACHE_LIMIT};

/// The SNP report inside an Azure vTPM "HCL report" (NV index 0x01400001): the blob starts with
/// `HCLA` and carries the 1184-byte report at offset 0x20. Other input is returned unchanged.
///
/// This reads only the magic and the fixed offset; [`azure::hcl::HclReport::parse`] reads (and
/// checks) the whole HCL report.
pub fn unwrap_hcl_report(bytes: &[u8]) -> &[u8] {
    const HCL_REPORT_OFFSET: usize = 0x20;
    if bytes.starts_with(b"HCLA") {
        if let Some(r) =
            bytes.get(HCL_REPORT_OFFSET..HCL_REPORT_OFFSET + svsm_abi::snp::REPORT_SIZE)
        {
            return r;
        }
    }
    bytes
}
