//! Appraisal of an evidence bundle ([`crate::bundle`]): one verdict over the CPU (SNP report and
//! the VEK from the bundle's certificate table), the SVSM (the vTPM manifest version 2 that
//! REPORT_DATA binds to the nonce), the vTPM (a quote by the manifest's AK, the PCR values it
//! covers, the event log replayed to them) and, when present, the binding of extra evidence such
//! as a GPU report.
//!
//! Trust flows ARK → ASK → VCEK → SNP report → REPORT_DATA = SHA-512(nonce ‖ manifest) →
//! manifest → AK → quote → PCR values → event log. Every check of [`BundleCheckId::ALL`] is
//! reported by name as pass, fail or not-applicable, in this order:
//!
//! 1. `cpu.vek`, `cpu.snp`: the SNP appraisal ([`Verifier::verify`]) with the VEK taken from the
//!    bundle's certificate table must be affirming (chain to the verifier's trust anchors, report
//!    signature, the whole SNP policy);
//! 2. `svsm.report_data_binding`, `svsm.vmpl`, `svsm.manifest`, `svsm.nonce`: REPORT_DATA binds
//!    the nonce and the manifest, the report is from VMPL0 (a guest at VMPL1+ can have the PSP
//!    sign any REPORT_DATA), the manifest parses, the nonce is the one the relying party issued;
//! 3. `vtpm.attestation_key`, `vtpm.quote`, `vtpm.quote_signature`, `vtpm.quote_nonce`,
//!    `vtpm.pcr_digest`: the AK is an ECC P-256 restricted signing key, the quote is a bounded
//!    TPMS_ATTEST, its ECDSA signature verifies with the AK, its extraData is the nonce, its
//!    pcrDigest covers the bundle's PCR values;
//! 4. `vtpm.event_log_digest`, `vtpm.event_log_replay`, `vtpm.ima_replay`,
//!    `vtpm.ima_boot_aggregate`, `vtpm.ima_policy`: SHA-384 of the SVSM's log is the manifest's, and — only once
//!    every signature on the path from the trust anchors to the PCR values has verified — the
//!    SVSM's log and then the guest firmware's log (if the bundle has one), each parsed with
//!    hard bounds, replay (SHA-256 bank, from zero, linear: the SVSM measures before any
//!    firmware runs) to the quoted value of every PCR they extend ([`replay`]); the IMA log (if
//!    any) replays to the quoted PCR 10 up to the entries the quote covers (the log is read
//!    after the quote and may be longer), and its boot_aggregate is SHA-256 of the quoted PCRs
//!    0-9 ([`ima`]); `vtpm.ima_policy`: with a kept position or a runtime policy the IMA entries
//!    from the bundle's `ima_offset` must continue the kept position, and every entry the
//!    quote newly covers must be allowed by the policy ([`crate::measured::ima_rounds`]);
//! 5. `cpu.measurement`, `vtpm.reference_pcrs`: reference values (the policy's MEASUREMENT list,
//!    the caller's expected PCR values);
//! 6. `svsm.requester_vmpl`, `svsm.epoch`, `svsm.state`, `svsm.persisted`: the VMPL that asked
//!    for the attestation (a provisioned key will be owned there) is the one the caller expects;
//!    the state was restored at an epoch not older than the caller's minimum (a fresh or
//!    ephemeral state fails a minimum: the state the caller saw was lost, deleted or refused);
//!    the state kind is reported by name (fresh, restored, ephemeral with its reason) and
//!    ephemeral state is refused unless allowed; the newest state is stored;
//! 7. `svsm.extra_evidence`: every extra-evidence digest of the manifest matches a supplied
//!    item of its kind and every item is listed. The module lists in a manifest only what the
//!    requesting VMPL registered since its previous attestation and drops it after this one;
//! 8. `gpu.report` … `gpu.measurements`: every GPU item (kind 1, a
//!    [`svsm_abi::gpu::GpuEvidence`] container) is appraised by [`crate::gpu`] against the
//!    context's GPU roots and reference values, with the requester nonce the bundle's nonce
//!    derives ([`svsm_abi::gpu::gpu_nonce`]); each check fails with the first GPU that fails
//!    it. `gpu.binding`: the SVSM binding holds and `gpu.report`, `gpu.cert_validity`,
//!    `gpu.fwid`, `gpu.signature` (which needs the chain to a pinned root) and `gpu.nonce`
//!    passed, so every GPU report is genuine, made for this request, and presented by the
//!    attested guest for this attestation (`gpu.measurements` is a reference-value check and
//!    does not gate the binding).
//!
//! The appraisal also names the evidence with seed 004's combined digest ([`crate::combined`]).
//!
//! A check that needs another check's result fails with [`BundleFailure::Prerequisite`] when
//! that one did not pass. The verdict is affirming only when no check failed. Every size in the
//! bundle is bounded before it is hashed or parsed; nothing here panics on any input.

pub mod ima;
pub mod replay;
pub mod tpm;

use crate::appraisal::{self, Appraisal, Verdict};
use crate::bundle::Bundle;
use crate::check::{CheckId, CheckResult, NamedCheck, Outcome, TrustClaimName};
use crate::combined::{combined_digest, CombinedDigest};
use crate::error::Error;
use crate::gpu::spdm::GpuClaims;
use crate::gpu::{GpuCheckId, GpuExpectations, GpuFailure, GpuReferenceValues, GpuVerifier};
use crate::measured::ima_rounds::{
    admit_entries, replay_round, ImaPosition, PolicyFailures, Round, RoundFailure,
};
use crate::measured::runtime_policy::RuntimePolicy;
use crate::verifier::{Evidence, Verifier};
use crate::x509::{rfc3339, unix_secs};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::collections::BTreeMap;
use std::time::SystemTime;
use svsm_abi::attest::{
    EphemeralCause, ManifestError, ModuleState, StateKind, VtpmManifest, MAX_EXTRA_EVIDENCE,
    VTPM_MANIFEST_VERSION,
};
use svsm_abi::eventlog::{EventLogError, MAX_LOG};
use svsm_abi::gpu::{gpu_nonce, GpuEvidence, GpuEvidenceError};
use svsm_abi::snp::certs::{CertKind, CertTable, CertTableError};
use svsm_abi::snp::{AttestationReport, ReportError, SigningKey};
use tpm::{
    AkPublic, AttestError, EcdsaSignature, PublicError, QuoteAttest, SelectionError,
    SignatureError, SignerError, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_RH_ENDORSEMENT,
};

/// EAR submodule of the SNP report.
pub const EAR_SUBMOD_CPU: &str = "cpu";
/// EAR submodule of the quote, the PCR values and the event log.
pub const EAR_SUBMOD_VTPM: &str = "vtpm";
/// EAR submodule of the binding, the manifest and the sealed-state epoch.
pub const EAR_SUBMOD_SVSM: &str = "svsm";
/// EAR submodule of a GPU report's binding (present only with extra evidence of kind 1).
pub const EAR_SUBMOD_GPU: &str = "gpu";
/// Extra-evidence kind of a GPU attestation report (a [`svsm_abi::gpu::GpuEvidence`]
/// container).
pub const EXTRA_KIND_GPU: u16 = svsm_abi::gpu::EXTRA_KIND_GPU;

/// Largest certificate table accepted (AMD's ARK + ASK + VEK are about 4 KiB).
pub const MAX_CERTIFICATES: usize = 64 * 1024;
/// Largest manifest accepted (a version-1 manifest with an RSA-2048 EK is about 700 bytes).
pub const MAX_MANIFEST: usize = 64 * 1024;
/// Largest nonce: TPM2B_DATA, the quote's qualifying data, holds at most 64 bytes.
pub const MAX_NONCE: usize = 64;
/// Largest piece of extra evidence accepted.
pub const MAX_EXTRA_DATA: usize = 1024 * 1024;
/// Number of SHA-256 PCRs.
pub const PCR_COUNT: usize = 24;
/// Largest IMA log appraised (`svsm_abi::ima` has its own, larger parse bounds).
pub const MAX_IMA_LOG: usize = 4 * 1024 * 1024;

/// Every check of a bundle appraisal, in the order reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum BundleCheckId {
    /// The certificate table holds the VEK that KEY_INFO names (VCEK or VLEK).
    CpuVek,
    /// The SNP appraisal of the report with that VEK is affirming.
    CpuSnp,
    /// REPORT_DATA = SHA-512(nonce ‖ manifest).
    SvsmBinding,
    /// The report was requested at VMPL0: only the SVSM chose its REPORT_DATA.
    SvsmVmpl,
    /// The manifest is a vTPM manifest version 1.
    SvsmManifest,
    /// The bundle's nonce is the one the relying party issued.
    SvsmNonce,
    /// The manifest's AK is an ECC P-256 restricted signing key (ECDSA, SHA-256).
    VtpmAk,
    /// The EK certificates the bundle carries chain to the manifest's EK CA, and the RSA EK
    /// certificate holds the manifest's EK (not applicable when the bundle carries none).
    VtpmEkCertificates,
    /// The quote is a well-formed, bounded TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE.
    VtpmQuote,
    /// The quote's TPMT_SIGNATURE (ECDSA P-256, SHA-256) verifies with the AK.
    VtpmQuoteSignature,
    /// The quote's extraData is the bundle's nonce.
    VtpmQuoteNonce,
    /// pcrDigest = SHA-256 of the bundle's PCR values the quote selects (SHA-256 bank).
    VtpmPcrDigest,
    /// SHA-384 of the event log equals the manifest's event_log_digest.
    VtpmLogDigest,
    /// The SVSM's event log, then the guest firmware's log, replay to the quoted value of every
    /// PCR they extend.
    VtpmLogReplay,
    /// The IMA log's entries up to the quote replay (SHA-256 of each template, from zero) to the
    /// quoted PCR 10.
    VtpmImaReplay,
    /// IMA's boot_aggregate is SHA-256 of the quoted PCRs 0-9.
    VtpmImaBootAggregate,
    /// Every IMA entry the quote newly covers is allowed by the caller's runtime policy.
    VtpmImaPolicy,
    /// The SNP MEASUREMENT is in the policy's allowlist.
    CpuMeasurement,
    /// The quoted PCR values equal the caller's expected values.
    VtpmReferencePcrs,
    /// The VMPL that asked for the attestation is the one the caller expects.
    SvsmRequester,
    /// The state was restored at an epoch at least the caller's minimum.
    SvsmEpoch,
    /// The state is fresh or restored (or ephemeral and the caller allows it).
    SvsmState,
    /// The newest state is sealed and stored (or the caller allows unstored state).
    SvsmPersisted,
    /// Extra-evidence digests of the manifest and supplied items match one to one.
    SvsmExtraEvidence,
    /// Every GPU evidence container (kind 1) parses and its SPDM 1.1 report parses.
    GpuReport,
    /// Every GPU's chain ends in a pinned root (NVIDIA's Device Identity CA by default).
    GpuChainRoot,
    /// Every GPU chain's certificates are each signed by the next (ECDSA P-384/SHA-384).
    GpuChain,
    /// Every GPU chain is valid at the appraisal time.
    GpuCertValidity,
    /// Every GPU's leaf certificate carries the FWID its report carries.
    GpuFwid,
    /// Every GPU report's signature verifies with its leaf certificate's key.
    GpuSignature,
    /// Every GPU report's requester nonce is the one derived from this bundle's nonce
    /// ([`svsm_abi::gpu::gpu_nonce`]): it was made for this attestation request.
    GpuNonce,
    /// Every GPU measurement is in the caller's GPU reference values.
    GpuMeasurements,
    /// The GPU reports are appraised, listed in the manifest of this attestation (requested at
    /// VMPL0, bound to the nonce) and made for this request.
    GpuBinding,
}

impl BundleCheckId {
    /// Every check, in report order.
    pub const ALL: [BundleCheckId; 33] = [
        BundleCheckId::CpuVek,
        BundleCheckId::CpuSnp,
        BundleCheckId::SvsmBinding,
        BundleCheckId::SvsmVmpl,
        BundleCheckId::SvsmManifest,
        BundleCheckId::SvsmNonce,
        BundleCheckId::VtpmAk,
        BundleCheckId::VtpmEkCertificates,
        BundleCheckId::VtpmQuote,
        BundleCheckId::VtpmQuoteSignature,
        BundleCheckId::VtpmQuoteNonce,
        BundleCheckId::VtpmPcrDigest,
        BundleCheckId::VtpmLogDigest,
        BundleCheckId::VtpmLogReplay,
        BundleCheckId::VtpmImaReplay,
        BundleCheckId::VtpmImaBootAggregate,
        BundleCheckId::VtpmImaPolicy,
        BundleCheckId::CpuMeasurement,
        BundleCheckId::VtpmReferencePcrs,
        BundleCheckId::SvsmRequester,
        BundleCheckId::SvsmEpoch,
        BundleCheckId::SvsmState,
        BundleCheckId::SvsmPersisted,
        BundleCheckId::SvsmExtraEvidence,
        BundleCheckId::GpuReport,
        BundleCheckId::GpuChainRoot,
        BundleCheckId::GpuChain,
        BundleCheckId::GpuCertValidity,
        BundleCheckId::GpuFwid,
        BundleCheckId::GpuSignature,
        BundleCheckId::GpuNonce,
        BundleCheckId::GpuMeasurements,
        BundleCheckId::GpuBinding,
    ];

    /// The stable name used in output.
    pub const fn name(self) -> &'static str {
        match self {
            BundleCheckId::CpuVek => "cpu.vek",
            BundleCheckId::CpuSnp => "cpu.snp",
            BundleCheckId::SvsmBinding => "svsm.report_data_binding",
            BundleCheckId::SvsmVmpl => "svsm.vmpl",
            BundleCheckId::SvsmManifest => "svsm.manifest",
            BundleCheckId::SvsmNonce => "svsm.nonce",
            BundleCheckId::VtpmAk => "vtpm.attestation_key",
            BundleCheckId::VtpmEkCertificates => "vtpm.ek_certificates",
            BundleCheckId::VtpmQuote => "vtpm.quote",
            BundleCheckId::VtpmQuoteSignature => "vtpm.quote_signature",
            BundleCheckId::VtpmQuoteNonce => "vtpm.quote_nonce",
            BundleCheckId::VtpmPcrDigest => "vtpm.pcr_digest",
            BundleCheckId::VtpmLogDigest => "vtpm.event_log_digest",
            BundleCheckId::VtpmLogReplay => "vtpm.event_log_replay",
            BundleCheckId::VtpmImaReplay => "vtpm.ima_replay",
            BundleCheckId::VtpmImaBootAggregate => "vtpm.ima_boot_aggregate",
            BundleCheckId::VtpmImaPolicy => "vtpm.ima_policy",
            BundleCheckId::CpuMeasurement => "cpu.measurement",
            BundleCheckId::VtpmReferencePcrs => "vtpm.reference_pcrs",
            BundleCheckId::SvsmRequester => "svsm.requester_vmpl",
            BundleCheckId::SvsmEpoch => "svsm.epoch",
            BundleCheckId::SvsmState => "svsm.state",
            BundleCheckId::SvsmPersisted => "svsm.persisted",
            BundleCheckId::SvsmExtraEvidence => "svsm.extra_evidence",
            BundleCheckId::GpuReport => GpuCheckId::Report.name(),
            BundleCheckId::GpuChainRoot => GpuCheckId::ChainRoot.name(),
            BundleCheckId::GpuChain => GpuCheckId::Chain.name(),
            BundleCheckId::GpuCertValidity => GpuCheckId::ChainValidity.name(),
            BundleCheckId::GpuFwid => GpuCheckId::Fwid.name(),
            BundleCheckId::GpuSignature => GpuCheckId::Signature.name(),
            BundleCheckId::GpuNonce => GpuCheckId::Nonce.name(),
            BundleCheckId::GpuMeasurements => GpuCheckId::Measurements.name(),
            BundleCheckId::GpuBinding => "gpu.binding",
        }
    }

    /// The EAR submodule the check belongs to.
    pub const fn submod(self) -> &'static str {
        match self {
            BundleCheckId::CpuVek | BundleCheckId::CpuSnp | BundleCheckId::CpuMeasurement => {
                EAR_SUBMOD_CPU
            }
            BundleCheckId::SvsmBinding
            | BundleCheckId::SvsmVmpl
            | BundleCheckId::SvsmManifest
            | BundleCheckId::SvsmNonce
            | BundleCheckId::SvsmRequester
            | BundleCheckId::SvsmEpoch
            | BundleCheckId::SvsmState
            | BundleCheckId::SvsmPersisted
            | BundleCheckId::SvsmExtraEvidence => EAR_SUBMOD_SVSM,
            BundleCheckId::VtpmAk
            | BundleCheckId::VtpmEkCertificates
            | BundleCheckId::VtpmQuote
            | BundleCheckId::VtpmQuoteSignature
            | BundleCheckId::VtpmQuoteNonce
            | BundleCheckId::VtpmPcrDigest
            | BundleCheckId::VtpmLogDigest
            | BundleCheckId::VtpmLogReplay
            | BundleCheckId::VtpmImaReplay
            | BundleCheckId::VtpmImaBootAggregate
            | BundleCheckId::VtpmImaPolicy
            | BundleCheckId::VtpmReferencePcrs => EAR_SUBMOD_VTPM,
            BundleCheckId::GpuReport
            | BundleCheckId::GpuChainRoot
            | BundleCheckId::GpuChain
            | BundleCheckId::GpuCertValidity
            | BundleCheckId::GpuFwid
            | BundleCheckId::GpuSignature
            | BundleCheckId::GpuNonce
            | BundleCheckId::GpuMeasurements
            | BundleCheckId::GpuBinding => EAR_SUBMOD_GPU,
        }
    }

    /// The AR4SI claim the check feeds: the reference values feed `executables`, the sealed
    /// state `configuration`, everything else is about whether this is the attested instance.
    pub const fn trust_claim(self) -> TrustClaimName {
        match self {
            BundleCheckId::CpuMeasurement
            | BundleCheckId::VtpmReferencePcrs
            | BundleCheckId::VtpmImaPolicy
            | BundleCheckId::GpuMeasurements => TrustClaimName::Executables,
            BundleCheckId::SvsmEpoch | BundleCheckId::SvsmState | BundleCheckId::SvsmPersisted => {
                TrustClaimName::Configuration
            }
            _ => TrustClaimName::InstanceIdentity,
        }
    }
}

impl NamedCheck for BundleCheckId {
    fn check_name(self) -> &'static str {
        self.name()
    }
    fn claim(self) -> TrustClaimName {
        self.trust_claim()
    }
    fn cryptographic(self) -> bool {
        matches!(
            self,
            BundleCheckId::SvsmBinding
                | BundleCheckId::VtpmQuoteSignature
                | BundleCheckId::VtpmEkCertificates
                | BundleCheckId::VtpmPcrDigest
                | BundleCheckId::VtpmLogDigest
                | BundleCheckId::SvsmExtraEvidence
                | BundleCheckId::GpuChain
                | BundleCheckId::GpuSignature
        )
    }
}

impl std::fmt::Display for BundleCheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a bundle check failed: one variant per reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleFailure {
    /// A bundle field is larger than its hard bound.
    #[error("{field} is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// The SNP report cannot be read.
    #[error("SNP report unreadable: {0}")]
    Report(ReportError),
    /// The certificate table does not parse.
    #[error("certificate table: {0}")]
    CertTable(CertTableError),
    /// KEY_INFO names no VEK (unsigned or reserved signer).
    #[error("KEY_INFO names no VEK (signer {0:?})")]
    Signer(SigningKey),
    /// The certificate table lacks the VEK the report names.
    #[error("the certificate table has no {} entry; the report is signed by the {}", vek_name(*.0), vek_name(*.0))]
    NoVek(SigningKey),
    /// The SNP appraisal could not be made.
    #[error("SNP appraisal impossible: {0}")]
    Snp(Error),
    /// The SNP appraisal is contraindicated.
    #[error("the SNP appraisal is contraindicated: {} failed", .0.join(", "))]
    SnpContraindicated(Vec<&'static str>),
    /// MEASUREMENT is not in the policy's allowlist.
    #[error("MEASUREMENT {0} is not in the policy's allowlist")]
    MeasurementNotAllowed(String),
    /// REPORT_DATA is not SHA-512(nonce ‖ manifest).
    #[error("REPORT_DATA is {found}, but SHA-512(nonce ‖ manifest) is {expected}")]
    BindingMismatch {
        /// REPORT_DATA, hex.
        found: String,
        /// The digest, hex.
        expected: String,
    },
    /// The report was requested by a higher VMPL, which could choose any REPORT_DATA.
    #[error(
        "the report is from VMPL {0}, not VMPL0: a guest, not the SVSM, chose its REPORT_DATA"
    )]
    NotVmpl0(u32),
    /// The EK certificates do not check out.
    #[error("EK certificates: {0}")]
    EkCertificates(crate::ek_certs::EkCertError),
    /// The manifest is not version 2.
    #[error("manifest version is {0}, expected {VTPM_MANIFEST_VERSION}")]
    ManifestVersion(u32),
    /// The manifest does not parse.
    #[error("manifest: {0}")]
    Manifest(ManifestError),
    /// The relying party gave no nonce.
    #[error("the expected nonce is empty: freshness cannot be shown")]
    NonceEmpty,
    /// The bundle's nonce is not the expected one (a stale or replayed bundle).
    #[error("the bundle's nonce is {found}, expected {expected} (stale or replayed evidence)")]
    NonceMismatch {
        /// The bundle's nonce, hex.
        found: String,
        /// The expected nonce, hex.
        expected: String,
    },
    /// The AK is not acceptable.
    #[error("{0}")]
    Ak(PublicError),
    /// The quote is not a well-formed TPMS_ATTEST quote.
    #[error("{0}")]
    Quote(AttestError),
    /// The signature is not an ECDSA P-256 / SHA-256 TPMT_SIGNATURE.
    #[error("{0}")]
    Signature(SignatureError),
    /// The signature does not verify with the AK.
    #[error("quote signature (ECDSA P-256, SHA-256) does not verify with the manifest's AK")]
    SignatureInvalid,
    /// The quote's extraData is not the bundle's nonce.
    #[error("quote extraData is {found}, expected the nonce {expected}")]
    QuoteNonce {
        /// extraData, hex.
        found: String,
        /// The nonce, hex.
        expected: String,
    },
    /// The quote's PCR selection is not one SHA-256 selection (the rule the Azure appraisal
    /// applies too).
    #[error("{0}")]
    Selection(SelectionError),
    /// The quote's qualifiedSigner is not the manifest AK's Qualified Name.
    #[error("{0}")]
    QuoteSigner(SignerError),
    /// A selected PCR has no supplied value.
    #[error("quote selects PCR {pcr} but the bundle has {supplied} PCR values")]
    PcrMissing {
        /// The PCR.
        pcr: usize,
        /// Values supplied.
        supplied: usize,
    },
    /// pcrDigest is not 32 bytes.
    #[error("quote pcrDigest is {0} bytes, expected 32 (SHA-256)")]
    PcrDigestLength(usize),
    /// pcrDigest is not the digest of the bundle's values.
    #[error(
        "quote pcrDigest is {quoted}, but SHA-256 of the bundle's PCR{pcrs} values is {computed}"
    )]
    PcrDigestMismatch {
        /// From the quote, hex.
        quoted: String,
        /// Computed, hex.
        computed: String,
        /// The PCRs hashed, e.g. "0-23".
        pcrs: String,
    },
    /// SHA-384 of the log is not the manifest's.
    #[error("SHA-384 of the event log is {found}, but the manifest binds {expected}")]
    LogDigestMismatch {
        /// Computed, hex.
        found: String,
        /// The manifest's, hex.
        expected: String,
    },
    /// The log does not parse within its bounds.
    #[error("event log: {0}")]
    EventLog(EventLogError),
    /// The log has no SHA-256 bank.
    #[error("the event log records no SHA-256 digests")]
    LogNoSha256,
    /// The guest firmware's log cannot be replayed.
    #[error("{0}")]
    FirmwareLog(replay::ReplayError),
    /// The IMA log does not match the quote.
    #[error("{0}")]
    Ima(ima::ImaFailure),
    /// The IMA entries sent do not continue the kept position, or do not replay to the quote.
    #[error("{0}")]
    ImaRound(RoundFailure),
    /// IMA entries the runtime policy does not allow.
    #[error("{0}")]
    ImaPolicy(PolicyFailures),
    /// A runtime policy was given but the bundle carries no IMA log.
    #[error("a runtime policy applies, but the bundle carries no IMA log")]
    ImaLogMissing,
    /// The quote does not cover a PCR an IMA check needs.
    #[error("the quote does not cover PCR {0}, which the IMA log is checked against")]
    ImaPcrNotQuoted(usize),
    /// The log extends a PCR the quote does not cover.
    #[error("the event log extends PCR {0}, which the quote does not cover")]
    LogPcrNotQuoted(usize),
    /// Replaying the log does not give the quoted values.
    #[error("the event log replays PCR {pcr} to {replayed}, but the quoted value is {quoted} (mismatching PCRs: {})", list(.all))]
    ReplayMismatch {
        /// The first mismatching PCR.
        pcr: usize,
        /// Its replayed value, hex.
        replayed: String,
        /// Its quoted value, hex.
        quoted: String,
        /// Every mismatching PCR.
        all: Vec<usize>,
    },
    /// An expected PCR is not covered by the quote.
    #[error("expected PCR {0} is not covered by the quote")]
    ReferenceNotQuoted(usize),
    /// A quoted PCR differs from the expected value.
    #[error("PCR {pcr} is {found}, expected {expected}")]
    ReferenceMismatch {
        /// The PCR.
        pcr: usize,
        /// Quoted, hex.
        found: String,
        /// Expected, hex.
        expected: String,
    },
    /// The sealed-state epoch is older than the minimum (rollback).
    #[error("sealed-state epoch {found} is older than the minimum {min} (rolled back)")]
    EpochRollback {
        /// The manifest's epoch.
        found: u64,
        /// The caller's minimum.
        min: u64,
    },
    /// A minimum epoch was given but no sealed state was restored at boot.
    #[error(
        "the state is {state}: no sealed state was restored, so nothing of epoch ≥ {min} \
         survives (the stored state was lost, deleted or refused)"
    )]
    EpochNotRestored {
        /// "fresh" or "ephemeral".
        state: &'static str,
        /// The caller's minimum.
        min: u64,
    },
    /// The module runs on ephemeral state and the caller did not allow it.
    #[error("the module runs on ephemeral state ({0}); not allowed")]
    Ephemeral(&'static str),
    /// The newest state could not be sealed and stored, and the caller did not allow it.
    #[error("the newest state is not stored (manifest flag NOT_PERSISTED): a restart would roll it back")]
    NotPersisted,
    /// The attestation was requested by another VMPL than the caller expects.
    #[error("the attestation was requested by VMPL {found}, expected VMPL {expected}")]
    RequesterMismatch {
        /// The manifest's requester.
        found: u8,
        /// The caller's expectation.
        expected: u8,
    },
    /// More extra-evidence items than a manifest can list.
    #[error("{0} extra-evidence items; a manifest lists at most {MAX_EXTRA_EVIDENCE}")]
    ExtraTooMany(usize),
    /// The caller requires extra evidence and the manifest lists none.
    #[error("extra evidence is required but the manifest lists none")]
    ExtraRequired,
    /// A listed digest has no supplied item of its kind.
    #[error(
        "the manifest lists extra evidence of kind {kind} (SHA-384 {listed}) but none is supplied"
    )]
    ExtraMissing {
        /// The kind.
        kind: u16,
        /// The listed digest, hex.
        listed: String,
    },
    /// A listed digest matches no supplied item of its kind.
    #[error(
        "extra evidence of kind {kind} has SHA-384 {supplied}, but the manifest lists {listed}"
    )]
    ExtraMismatch {
        /// The kind.
        kind: u16,
        /// The listed digest, hex.
        listed: String,
        /// A supplied item's digest, hex.
        supplied: String,
    },
    /// A supplied item is not listed in the manifest.
    #[error(
        "supplied extra evidence of kind {kind} (SHA-384 {digest}) is not listed in the manifest (or is supplied more often than listed)"
    )]
    ExtraUnlisted {
        /// The kind.
        kind: u16,
        /// Its digest, hex.
        digest: String,
    },
    /// A prerequisite check failed, so this one cannot pass.
    #[error("cannot pass: prerequisite check {0} failed")]
    Prerequisite(BundleCheckId),
    /// A GPU evidence container (kind 1) does not parse.
    #[error("GPU {index}: {error}")]
    GpuEvidence {
        /// Its position among the bundle's GPU items.
        index: usize,
        /// Why.
        error: GpuEvidenceError,
    },
    /// A GPU check failed for one GPU.
    #[error("GPU {index}: {failure}")]
    Gpu {
        /// Its position among the bundle's GPU items.
        index: usize,
        /// The GPU appraisal's failure.
        failure: GpuFailure,
    },
}

/// The manifest's state kind, as reported.
pub fn state_name(state: StateKind) -> &'static str {
    match state {
        StateKind::Fresh => "fresh",
        StateKind::Restored => "restored",
        StateKind::Ephemeral => "ephemeral",
    }
}

/// Why the state is ephemeral, as reported.
pub fn cause_name(cause: EphemeralCause) -> &'static str {
    match cause {
        EphemeralCause::None => "no reason given",
        EphemeralCause::NoRootKey => "no root key from the secure processor",
        EphemeralCause::ForeignLaunch => "the stored state belongs to another launch",
        EphemeralCause::Tampered => "the stored state was modified",
        EphemeralCause::Rollback => "the stored state is older than the module expected",
        EphemeralCause::Malformed => "the stored state is malformed or of an unknown format",
        EphemeralCause::StoreUnavailable => "the state store failed",
        EphemeralCause::TpmRestore => "the TPM engine refused the stored state",
    }
}

fn vek_name(k: SigningKey) -> &'static str {
    match k {
        SigningKey::Vlek => "VLEK",
        _ => "VCEK",
    }
}

fn list(pcrs: &[usize]) -> String {
    pcrs.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// "0-23", "0, 4, 8-9".
fn ranges(pcrs: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = pcrs.get(i) {
        let mut end = start;
        while pcrs.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

/// One bundle check.
pub type BundleCheckResult = CheckResult<BundleCheckId, BundleFailure>;

/// What the relying party brings to an appraisal. Build with [`BundleContext::new`] and set the
/// optional fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BundleContext<'a> {
    /// The SNP verifier: its trust anchors and policy (MEASUREMENT allowlist, TCB, ...).
    pub verifier: &'a Verifier,
    /// The time at which certificates (and a CRL) must be valid.
    pub at: SystemTime,
    /// The nonce the relying party issued for this bundle.
    pub nonce: &'a [u8],
    /// Oldest acceptable sealed-state epoch (`None`: not checked).
    pub min_epoch: Option<u64>,
    /// Accept a module running on ephemeral state, or whose newest state is not stored
    /// (default false).
    pub allow_ephemeral: bool,
    /// The VMPL that must have asked for the attestation (`None`: reported, not checked). A
    /// key broker sets it to the owner VMPL it will wrap a key for.
    pub requester_vmpl: Option<u8>,
    /// Expected SHA-256 PCR values by index (empty: not checked).
    pub expected_pcrs: BTreeMap<usize, [u8; 32]>,
    /// Require the manifest to list extra evidence (default false).
    pub require_extra_evidence: bool,
    /// An optional DER CRL from AMD's KDS.
    pub crl: Option<&'a [u8]>,
    /// A runtime policy every newly covered IMA entry must satisfy (`vtpm.ima_policy`;
    /// `None`: not applicable).
    pub ima_policy: Option<&'a RuntimePolicy>,
    /// The IMA position kept from earlier rounds of this boot (`None`: nothing appraised yet).
    /// With a position or a policy the IMA log is appraised incrementally
    /// ([`crate::measured::ima_rounds`]).
    pub ima_position: Option<ImaPosition>,
    /// The roots GPU chains must end in (default: the pinned NVIDIA Device Identity CA, with
    /// a process-wide chain cache).
    pub gpu_verifier: &'a GpuVerifier,
    /// GPU reference values (`None`: `gpu.measurements` not applicable, claims reported).
    pub gpu_reference: Option<&'a GpuReferenceValues>,
}

impl<'a> BundleContext<'a> {
    /// A context with the defaults: no minimum epoch, ephemeral state refused, no expected PCRs,
    /// extra evidence optional, no CRL.
    pub fn new(verifier: &'a Verifier, nonce: &'a [u8], at: SystemTime) -> Self {
        BundleContext {
            verifier,
            at,
            nonce,
            min_epoch: None,
            allow_ephemeral: false,
            requester_vmpl: None,
            expected_pcrs: BTreeMap::new(),
            require_extra_evidence: false,
            crl: None,
            ima_policy: None,
            ima_position: None,
            gpu_verifier: GpuVerifier::shared_nvidia(),
            gpu_reference: None,
        }
    }
}

/// One extra-evidence digest of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtraDigest {
    /// Kind (1 = GPU attestation report).
    pub kind: u16,
    /// SHA-384, hex.
    pub sha384: String,
}

/// The manifest, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestSummary {
    /// Flags.
    pub flags: u32,
    /// "fresh", "restored" or "ephemeral".
    pub state: &'static str,
    /// Why the state is ephemeral (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_reason: Option<&'static str>,
    /// The newest state is not stored.
    pub not_persisted: bool,
    /// The VMPL that asked for the attestation.
    pub requester_vmpl: u8,
    /// Sealed-state epoch.
    pub epoch: u64,
    /// Instance id, hex.
    pub instance_id: String,
    /// This boot's vault transport public key (P-384 SEC1), hex.
    pub transport_public: String,
    /// SHA-384 of the event log, hex.
    pub event_log_digest: String,
    /// SHA-256 of the EK's TPMT_PUBLIC, hex.
    pub ek_public_sha256: String,
    /// SHA-256 of the AK's TPMT_PUBLIC, hex.
    pub ak_public_sha256: String,
    /// Extra-evidence digests.
    pub extra_evidence: Vec<ExtraDigest>,
}

/// The AK, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AkSummary {
    /// "ECC NIST P-256".
    pub key: &'static str,
    /// nameAlg.
    pub name_alg: String,
    /// objectAttributes, hex.
    pub attributes: String,
    /// The TPM Name (nameAlg ‖ H(TPMT_PUBLIC)), hex.
    pub name: String,
    /// x, hex.
    pub x: String,
    /// y, hex.
    pub y: String,
}

/// One PCR selection of the quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectionSummary {
    /// The bank.
    pub bank: String,
    /// The selected PCRs.
    pub pcrs: Vec<usize>,
}

/// The quote, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuoteSummary {
    /// qualifiedSigner, hex.
    pub qualified_signer: String,
    /// extraData, hex.
    pub extra_data: String,
    /// clockInfo.clock.
    pub clock: u64,
    /// clockInfo.resetCount.
    pub reset_count: u32,
    /// clockInfo.restartCount.
    pub restart_count: u32,
    /// clockInfo.safe.
    pub safe: bool,
    /// firmwareVersion, hex.
    pub firmware_version: String,
    /// pcrSelect.
    pub pcr_select: Vec<SelectionSummary>,
    /// pcrDigest, hex.
    pub pcr_digest: String,
}

impl QuoteSummary {
    /// The summary of a parsed quote (shared by the bundle and the Azure appraisals).
    pub fn of(q: &tpm::QuoteAttest<'_>) -> Self {
        QuoteSummary {
            qualified_signer: hex::encode(q.qualified_signer),
            extra_data: hex::encode(q.extra_data),
            clock: q.clock,
            reset_count: q.reset_count,
            restart_count: q.restart_count,
            safe: q.safe,
            firmware_version: format!("{:#018x}", q.firmware_version),
            pcr_select: q
                .pcr_select
                .iter()
                .map(|s| SelectionSummary {
                    bank: tpm::alg_name(s.hash),
                    pcrs: s.pcrs().collect(),
                })
                .collect(),
            pcr_digest: hex::encode(q.pcr_digest),
        }
    }
}

/// The event log, as far as it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogSummary {
    /// Size in bytes.
    pub bytes: usize,
    /// Entries after the header (when it was replayed).
    pub events: Option<usize>,
    /// The PCRs it extends (when it was replayed).
    pub pcrs_extended: Vec<usize>,
}

/// The IMA log, as far as it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImaSummary {
    /// Size in bytes.
    pub bytes: usize,
    /// Index of its first entry in the kernel's list.
    pub offset: u64,
    /// Entries (when it was replayed).
    pub entries: Option<usize>,
    /// Entries the quote covers (when it was replayed), counted from the start of the
    /// kernel's list.
    pub covered: Option<usize>,
    /// Where the replay reached, when it was incremental (a kept position or a runtime
    /// policy): the position a verifier keeps if it accepts the whole appraisal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<ImaPosition>,
}

/// One piece of extra evidence supplied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtraSummary {
    /// Kind.
    pub kind: u16,
    /// Size in bytes.
    pub bytes: usize,
    /// SHA-384, hex (empty when the item exceeds the size bound).
    pub sha384: String,
}

/// The appraisal of one evidence bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleAppraisal {
    /// Every check of [`BundleCheckId::ALL`], in order.
    pub checks: Vec<BundleCheckResult>,
    /// The SNP appraisal (`None` when it could not be made: see `cpu.vek` / `cpu.snp`).
    pub snp: Option<Appraisal>,
    /// The bundle's nonce, hex.
    pub nonce: String,
    /// The manifest (when it parses).
    pub manifest: Option<ManifestSummary>,
    /// The AK (when acceptable).
    pub ak: Option<AkSummary>,
    /// The quote (when it parses).
    pub quote: Option<QuoteSummary>,
    /// The quoted SHA-256 PCR values (only when `vtpm.pcr_digest` passed), hex by index.
    pub pcrs: BTreeMap<usize, String>,
    /// The SVSM's event log.
    pub event_log: LogSummary,
    /// The guest firmware's event log, when the bundle has one.
    pub firmware_log: Option<LogSummary>,
    /// The IMA log, when the bundle has one.
    pub ima_log: Option<ImaSummary>,
    /// The extra evidence supplied.
    pub extra_evidence: Vec<ExtraSummary>,
    /// The GPUs (extra evidence of kind 1), in bundle order.
    pub gpus: Vec<GpuSummary>,
    /// Seed 004's combined CPU+GPU digest of this evidence ([`crate::combined`]); `None` when
    /// the SNP report or a GPU container does not parse. It names the evidence; only the
    /// verdict says whether it is trustworthy.
    pub combined_digest: Option<CombinedDigest>,
    /// Appraisal time (Unix seconds).
    pub at: u64,
}

/// One GPU of a bundle, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpuSummary {
    /// Its position among the GPU items.
    pub index: usize,
    /// The report's requester nonce, hex (when it parses).
    pub nonce: Option<String>,
    /// The nonce this bundle's nonce derives, hex.
    pub expected_nonce: String,
    /// The decoded claims (when the report parses).
    pub claims: Option<GpuClaims>,
}

/// Appraises an evidence bundle. `Err` is reserved for what prevents any appraisal (today
/// nothing in the bundle does: every defect of the evidence is a failed check).
pub fn verify_bundle(bundle: &Bundle, ctx: &BundleContext<'_>) -> Result<BundleAppraisal, Error> {
    Run {
        b: bundle,
        ctx,
        checks: Vec::with_capacity(BundleCheckId::ALL.len()),
    }
    .run()
}

struct Run<'a> {
    b: &'a Bundle,
    ctx: &'a BundleContext<'a>,
    checks: Vec<BundleCheckResult>,
}

fn bounded(field: &'static str, size: usize, max: usize) -> Result<(), BundleFailure> {
    if size > max {
        return Err(BundleFailure::TooLarge { field, size, max });
    }
    Ok(())
}

/// True when every signature from the trust anchors to the report verified (policy aside).
fn snp_authentic(a: &Appraisal) -> bool {
    [
        CheckId::ChainArk,
        CheckId::ChainIntermediate,
        CheckId::ChainVek,
        CheckId::ReportSignature,
    ]
    .iter()
    .all(|id| a.check(*id).is_some_and(|c| c.outcome == Outcome::Pass))
}

fn name_digest(alg: u16, bytes: &[u8]) -> Vec<u8> {
    let mut name = alg.to_be_bytes().to_vec();
    match alg {
        TPM_ALG_SHA256 => name.extend_from_slice(&Sha256::digest(bytes)),
        TPM_ALG_SHA384 => name.extend_from_slice(&Sha384::digest(bytes)),
        _ => name.extend_from_slice(&Sha512::digest(bytes)),
    }
    name
}

impl<'a> Run<'a> {
    fn push(&mut self, id: BundleCheckId, r: Result<String, BundleFailure>) {
        let (outcome, detail) = match r {
            Ok(d) => (Outcome::Pass, d),
            Err(f) => (Outcome::Fail(f), String::new()),
        };
        self.checks.push(CheckResult {
            id,
            outcome,
            detail,
        });
    }

    fn push_na(&mut self, id: BundleCheckId, why: impl Into<String>) {
        self.checks.push(CheckResult {
            id,
            outcome: Outcome::NotApplicable(why.into()),
            detail: String::new(),
        });
    }

    fn passed(&self, id: BundleCheckId) -> bool {
        self.checks
            .iter()
            .any(|c| c.id == id && c.outcome == Outcome::Pass)
    }

    fn require(&self, ids: &[BundleCheckId]) -> Result<(), BundleFailure> {
        match ids.iter().find(|id| !self.passed(**id)) {
            Some(id) => Err(BundleFailure::Prerequisite(*id)),
            None => Ok(()),
        }
    }

    fn run(mut self) -> Result<BundleAppraisal, Error> {
        let b = self.b;
        let ctx = self.ctx;
        let report = AttestationReport::parse(&b.snp_report);

        // --- (a) the SNP report, with the VEK from the certificate table ---
        let vek = (|| {
            let report = report.as_ref().map_err(|e| BundleFailure::Report(*e))?;
            bounded("certificates", b.certificates.len(), MAX_CERTIFICATES)?;
            let table = CertTable::parse(&b.certificates).map_err(BundleFailure::CertTable)?;
            let signer = report.key_info().signing_key();
            let kind = match signer {
                SigningKey::Vcek => CertKind::Vcek,
                SigningKey::Vlek => CertKind::Vlek,
                other => return Err(BundleFailure::Signer(other)),
            };
            let der = table.find(kind).ok_or(BundleFailure::NoVek(signer))?;
            Ok((der, signer, table.len()))
        })();
        self.push(
            BundleCheckId::CpuVek,
            vek.as_ref()
                .map(|(der, signer, n)| {
                    format!(
                        "{} ({} bytes) from the certificate table ({n} entries); the chain is \
                     anchored in the verifier's trust store, not in the table",
                        vek_name(*signer),
                        der.len()
                    )
                })
                .map_err(Clone::clone),
        );
        let snp = match &vek {
            Err(_) => {
                self.push(
                    BundleCheckId::CpuSnp,
                    Err(BundleFailure::Prerequisite(BundleCheckId::CpuVek)),
                );
                None
            }
            Ok((der, _, _)) => {
                let ev = Evidence {
                    report: &b.snp_report,
                    vek: Some(der),
                    crl: ctx.crl,
                    at: ctx.at,
                };
                match ctx.verifier.verify(&ev) {
                    Err(e) => {
                        self.push(BundleCheckId::CpuSnp, Err(BundleFailure::Snp(e)));
                        None
                    }
                    Ok(a) => {
                        let failed: Vec<&'static str> = a.failures().map(|c| c.id.name()).collect();
                        self.push(
                            BundleCheckId::CpuSnp,
                            if failed.is_empty() {
                                Ok(format!(
                                    "affirming: {} SNP checks, product {}",
                                    a.checks.len(),
                                    a.product.map_or("unknown", |p| p.kds_name())
                                ))
                            } else {
                                Err(BundleFailure::SnpContraindicated(failed))
                            },
                        );
                        Some(a)
                    }
                }
            }
        };
        let authentic = snp.as_ref().is_some_and(snp_authentic);

        // --- (b) REPORT_DATA = SHA-512(nonce || manifest) ---
        let binding = (|| {
            let report = report.as_ref().map_err(|e| BundleFailure::Report(*e))?;
            bounded("nonce", b.nonce.len(), MAX_NONCE)?;
            bounded("manifest", b.manifest.len(), MAX_MANIFEST)?;
            let expected: [u8; 64] = Sha512::new()
                .chain_update(&b.nonce)
                .chain_update(&b.manifest)
                .finalize()
                .into();
            let found = report.raw().report_data;
            if found != expected {
                return Err(BundleFailure::BindingMismatch {
                    found: hex::encode(found),
                    expected: hex::encode(expected),
                });
            }
            Ok("REPORT_DATA = SHA-512(nonce ‖ manifest)".to_owned())
        })();
        self.push(BundleCheckId::SvsmBinding, binding);
        // A guest at VMPL1+ can ask the PSP for a report with any REPORT_DATA (a manifest with
        // its own "AK"): only a VMPL0 report speaks for the SVSM, whatever the policy says.
        let vmpl = match &report {
            Err(e) => Err(BundleFailure::Report(*e)),
            Ok(r) => match r.raw().vmpl.get() {
                0 => Ok("requested at VMPL0 (the SVSM)".to_owned()),
                v => Err(BundleFailure::NotVmpl0(v)),
            },
        };
        self.push(BundleCheckId::SvsmVmpl, vmpl);

        // --- (c) the manifest ---
        let manifest = (|| {
            bounded("manifest", b.manifest.len(), MAX_MANIFEST)?;
            let version = b
                .manifest
                .get(..4)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(u32::from_le_bytes);
            if let Some(v) = version.filter(|v| *v != VTPM_MANIFEST_VERSION) {
                return Err(BundleFailure::ManifestVersion(v));
            }
            VtpmManifest::parse(&b.manifest).map_err(BundleFailure::Manifest)
        })();
        self.push(
            BundleCheckId::SvsmManifest,
            manifest
                .as_ref()
                .map(|m| {
                    format!(
                        "vTPM manifest {:#x}: {} state, epoch {}, flags {:#x}, requested \
                         by VMPL {}, EK {} bytes, AK {} bytes, {} extra-evidence digest(s)",
                        VTPM_MANIFEST_VERSION,
                        state_name(m.module.state),
                        m.module.epoch,
                        m.module.flags,
                        m.module.requester_vmpl,
                        m.ek_public.len(),
                        m.ak_public.len(),
                        m.extra_evidence().count()
                    )
                })
                .map_err(Clone::clone),
        );
        let manifest = manifest.ok();

        // --- (d) freshness ---
        let nonce = if ctx.nonce.is_empty() {
            Err(BundleFailure::NonceEmpty)
        } else if b.nonce != ctx.nonce {
            Err(BundleFailure::NonceMismatch {
                found: hex::encode(&b.nonce),
                expected: hex::encode(ctx.nonce),
            })
        } else {
            Ok(format!(
                "the bundle's nonce is the one issued ({} bytes)",
                b.nonce.len()
            ))
        };
        self.push(BundleCheckId::SvsmNonce, nonce);

        // --- (e) the quote ---
        let ak = self.require(&[BundleCheckId::SvsmManifest]).and_then(|()| {
            let m = manifest
                .as_ref()
                .ok_or(BundleFailure::Prerequisite(BundleCheckId::SvsmManifest))?;
            AkPublic::parse(m.ak_public).map_err(BundleFailure::Ak)
        });
        self.push(
            BundleCheckId::VtpmAk,
            ak.as_ref()
                .map(|a| {
                    format!(
                        "ECC NIST P-256 restricted signing key (ECDSA, SHA-256), attributes \
                         {:#010x}",
                        a.attributes
                    )
                })
                .map_err(Clone::clone),
        );
        let ak = ak.ok();

        if b.ek_certificates.is_empty() {
            self.push_na(
                BundleCheckId::VtpmEkCertificates,
                "the bundle carries no EK certificates",
            );
        } else {
            let r = self.require(&[BundleCheckId::SvsmManifest]).and_then(|()| {
                let m = manifest
                    .as_ref()
                    .ok_or(BundleFailure::Prerequisite(BundleCheckId::SvsmManifest))?;
                let checked =
                    crate::ek_certs::verify_cached(
                        &b.ek_certificates,
                        m.ek_ca_public,
                        Some(m.ek_public),
                    )
                        .map_err(BundleFailure::EkCertificates)?;
                let list: Vec<String> = checked
                    .certificates
                    .iter()
                    .map(|c| format!("{:#010x} {}", c.index, c.key))
                    .collect();
                Ok(format!(
                    "{} EK certificate(s) ({}) issued by the manifest's EK CA {}…; the RSA EK certificate holds the manifest's EK",
                    checked.certificates.len(),
                    list.join(", "),
                    checked.ca_public.get(2..18).unwrap_or("")
                ))
            });
            self.push(BundleCheckId::VtpmEkCertificates, r);
        }
        let ak_summary = match (&ak, &manifest) {
            (Some(a), Some(m)) => Some(AkSummary {
                key: "ECC NIST P-256",
                name_alg: tpm::alg_name(a.name_alg),
                attributes: format!("{:#010x}", a.attributes),
                name: hex::encode(name_digest(a.name_alg, m.ak_public)),
                x: hex::encode(a.x),
                y: hex::encode(a.y),
            }),
            _ => None,
        };

        let quote = QuoteAttest::parse(&b.quote_attest).map_err(BundleFailure::Quote);
        self.push(
            BundleCheckId::VtpmQuote,
            quote
                .as_ref()
                .map(|q| {
                    format!(
                        "TPMS_ATTEST quote ({} bytes), extraData {} bytes, clock {}, resets {}, \
                         restarts {}",
                        b.quote_attest.len(),
                        q.extra_data.len(),
                        q.clock,
                        q.reset_count,
                        q.restart_count
                    )
                })
                .map_err(Clone::clone),
        );
        let quote = quote.ok();
        let quote_summary = quote.as_ref().map(QuoteSummary::of);

        let signature = self
            .require(&[BundleCheckId::VtpmAk, BundleCheckId::VtpmQuote])
            .and_then(|()| {
                let key = ak
                    .as_ref()
                    .ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmAk))?;
                let sig =
                    EcdsaSignature::parse(&b.quote_signature).map_err(BundleFailure::Signature)?;
                let sig = sig.to_p256().map_err(BundleFailure::Signature)?;
                use p256::ecdsa::signature::Verifier as _;
                key.key
                    .verify(&b.quote_attest, &sig)
                    .map_err(|_| BundleFailure::SignatureInvalid)?;
                // A restricted key signs only TPM-generated data, and the TPM writes the
                // signer's own Qualified Name into the quote: it must be the manifest's AK (a
                // primary of the endorsement hierarchy).
                let q = quote
                    .as_ref()
                    .ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmQuote))?;
                let ak_public = manifest
                    .as_ref()
                    .map(|m| m.ak_public)
                    .ok_or(BundleFailure::Prerequisite(BundleCheckId::SvsmManifest))?;
                let qn = q
                    .check_signer(TPM_RH_ENDORSEMENT, key.name_alg, ak_public)
                    .map_err(BundleFailure::QuoteSigner)?;
                Ok(format!(
                    "ECDSA P-256 over SHA-256(TPMS_ATTEST) verifies with the manifest's AK, and \
                     qualifiedSigner is that AK's Qualified Name {}",
                    hex::encode(qn)
                ))
            });
        self.push(BundleCheckId::VtpmQuoteSignature, signature);

        let quote_nonce = self
            .require(&[BundleCheckId::VtpmQuoteSignature])
            .and_then(|()| {
                let q = quote
                    .as_ref()
                    .ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmQuote))?;
                if q.extra_data != b.nonce.as_slice() {
                    return Err(BundleFailure::QuoteNonce {
                        found: hex::encode(q.extra_data),
                        expected: hex::encode(&b.nonce),
                    });
                }
                Ok("extraData is the nonce".to_owned())
            });
        self.push(BundleCheckId::VtpmQuoteNonce, quote_nonce);

        // --- (f) the PCR digest ---
        let quoted = self
            .require(&[BundleCheckId::VtpmQuoteSignature])
            .and_then(|()| {
                let q = quote
                    .as_ref()
                    .ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmQuote))?;
                self.pcr_digest(q)
            });
        self.push(
            BundleCheckId::VtpmPcrDigest,
            quoted
                .as_ref()
                .map(|p| {
                    format!(
                        "pcrDigest = SHA-256 of the bundle's SHA-256 PCR{} values",
                        ranges(p)
                    )
                })
                .map_err(Clone::clone),
        );
        let quoted = quoted.ok();

        // --- (g) the event log: bound to the manifest, replayed after every signature ---
        let log_digest = self.require(&[BundleCheckId::SvsmManifest]).and_then(|()| {
            let m = manifest
                .as_ref()
                .ok_or(BundleFailure::Prerequisite(BundleCheckId::SvsmManifest))?;
            bounded("event_log", b.event_log.len(), MAX_LOG)?;
            let found: [u8; 48] = Sha384::digest(&b.event_log).into();
            if &found != m.event_log_digest {
                return Err(BundleFailure::LogDigestMismatch {
                    found: hex::encode(found),
                    expected: hex::encode(m.event_log_digest),
                });
            }
            Ok(format!(
                "SHA-384 of the event log ({} bytes) is the manifest's event_log_digest",
                b.event_log.len()
            ))
        });
        self.push(BundleCheckId::VtpmLogDigest, log_digest);

        let mut event_log = LogSummary {
            bytes: b.event_log.len(),
            ..LogSummary::default()
        };
        let mut firmware_log = b.firmware_log.as_ref().map(|l| LogSummary {
            bytes: l.len(),
            ..LogSummary::default()
        });
        let replay = self.signatures_verified(authentic).and_then(|()| {
            let quoted = quoted
                .as_deref()
                .ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmPcrDigest))?;
            self.replay(quoted, &mut event_log, &mut firmware_log)
        });
        self.push(BundleCheckId::VtpmLogReplay, replay);
        let mut ima_log = None;
        self.ima_checks(authentic, quoted.as_deref(), &mut ima_log);

        // --- (h) reference values ---
        let measurement = match (&report, &ctx.verifier.policy().measurements) {
            (Err(e), _) => Some(Err(BundleFailure::Report(*e))),
            (Ok(_), None) => None,
            (Ok(r), Some(allowed)) => {
                let m = r.raw().measurement;
                Some(if allowed.contains(&m) {
                    Ok(format!(
                        "MEASUREMENT {} is allowed by the policy",
                        hex::encode(m)
                    ))
                } else {
                    Err(BundleFailure::MeasurementNotAllowed(hex::encode(m)))
                })
            }
        };
        match measurement {
            Some(r) => self.push(BundleCheckId::CpuMeasurement, r),
            None => self.push_na(
                BundleCheckId::CpuMeasurement,
                "the policy lists no allowed MEASUREMENT (`measurements`): the launched image is \
                 not appraised",
            ),
        }
        if ctx.expected_pcrs.is_empty() {
            self.push_na(
                BundleCheckId::VtpmReferencePcrs,
                "no expected PCR values given",
            );
        } else {
            let r = self
                .require(&[BundleCheckId::VtpmPcrDigest])
                .and_then(|()| {
                    let quoted = quoted
                        .as_deref()
                        .ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmPcrDigest))?;
                    self.reference_pcrs(quoted)
                });
            self.push(BundleCheckId::VtpmReferencePcrs, r);
        }

        // --- (i) requester, epoch and state ---
        self.state_checks(manifest.as_ref().map(|m| &m.module));

        // --- (j) extra evidence ---
        let mut extra_summary: Vec<ExtraSummary> = b
            .extra_evidence
            .iter()
            .map(|(kind, data)| ExtraSummary {
                kind: *kind,
                bytes: data.len(),
                sha384: String::new(),
            })
            .collect();
        match &manifest {
            None => self.push(
                BundleCheckId::SvsmExtraEvidence,
                Err(BundleFailure::Prerequisite(BundleCheckId::SvsmManifest)),
            ),
            Some(m) => match self.extra_evidence(m, &mut extra_summary) {
                Ok(Some(d)) => self.push(BundleCheckId::SvsmExtraEvidence, Ok(d)),
                Ok(None) => self.push_na(
                    BundleCheckId::SvsmExtraEvidence,
                    "the manifest lists no extra evidence and none is supplied",
                ),
                Err(f) => self.push(BundleCheckId::SvsmExtraEvidence, Err(f)),
            },
        }
        let gpu_listed = manifest
            .as_ref()
            .is_some_and(|m| m.extra_evidence().any(|(k, _)| k == EXTRA_KIND_GPU));
        let (gpus, gpu_reports) = self.gpu_checks(gpu_listed);
        if gpus.is_empty() && !gpu_listed {
            self.push_na(BundleCheckId::GpuBinding, "no GPU evidence (kind 1)");
        } else {
            let detail = format!(
                "{} GPU report(s) appraised, made for this request (nonce derived from the \
                 bundle's) and listed in the manifest that REPORT_DATA binds to the nonce, which \
                 lists only evidence the requester registered for this attestation",
                gpus.len()
            );
            let r = if authentic {
                self.require(&[
                    BundleCheckId::SvsmBinding,
                    BundleCheckId::SvsmVmpl,
                    BundleCheckId::SvsmNonce,
                    BundleCheckId::SvsmExtraEvidence,
                    BundleCheckId::GpuReport,
                    BundleCheckId::GpuSignature,
                    BundleCheckId::GpuCertValidity,
                    BundleCheckId::GpuFwid,
                    BundleCheckId::GpuNonce,
                ])
                .map(|()| detail)
            } else {
                Err(BundleFailure::Prerequisite(BundleCheckId::CpuSnp))
            };
            self.push(BundleCheckId::GpuBinding, r);
        }
        // Named only when every part it names is well-formed: the SNP report parses and every
        // GPU container does (all GPUs, in bundle order).
        let combined = match (&report, gpu_reports) {
            (Ok(_), Some(gpu)) => Some(combined_digest(Some(&b.snp_report), &gpu)),
            _ => None,
        };

        let manifest_summary = manifest.as_ref().map(|m| ManifestSummary {
            flags: m.module.flags,
            state: state_name(m.module.state),
            ephemeral_reason: (m.module.state == StateKind::Ephemeral)
                .then(|| cause_name(m.module.reason)),
            not_persisted: m.module.not_persisted(),
            requester_vmpl: m.module.requester_vmpl,
            epoch: m.module.epoch,
            instance_id: hex::encode(m.module.instance_id),
            transport_public: hex::encode(m.module.transport_public),
            event_log_digest: hex::encode(m.event_log_digest),
            ek_public_sha256: hex::encode(Sha256::digest(m.ek_public)),
            ak_public_sha256: hex::encode(Sha256::digest(m.ak_public)),
            extra_evidence: m
                .extra_evidence()
                .map(|(kind, d)| ExtraDigest {
                    kind,
                    sha384: hex::encode(d),
                })
                .collect(),
        });
        let pcrs = quoted
            .iter()
            .flatten()
            .filter_map(|i| b.pcrs_sha256.get(*i).map(|v| (*i, hex::encode(v))))
            .collect();
        Ok(BundleAppraisal {
            checks: self.checks,
            snp,
            nonce: hex::encode(&b.nonce),
            manifest: manifest_summary,
            ak: ak_summary,
            quote: quote_summary,
            pcrs,
            event_log,
            firmware_log,
            ima_log,
            extra_evidence: extra_summary,
            gpus,
            combined_digest: combined,
            at: unix_secs(ctx.at),
        })
    }

    /// The quote's SHA-256 selection (ascending) when pcrDigest is the digest of the bundle's
    /// values for it.
    fn pcr_digest(&self, q: &QuoteAttest<'_>) -> Result<Vec<usize>, BundleFailure> {
        let pcrs = q.sha256_selection().map_err(BundleFailure::Selection)?;
        if q.pcr_digest.len() != 32 {
            return Err(BundleFailure::PcrDigestLength(q.pcr_digest.len()));
        }
        let mut h = Sha256::new();
        for &pcr in &pcrs {
            let v = self
                .b
                .pcrs_sha256
                .get(pcr)
                .filter(|_| pcr < PCR_COUNT)
                .ok_or(BundleFailure::PcrMissing {
                    pcr,
                    supplied: self.b.pcrs_sha256.len(),
                })?;
            h.update(v);
        }
        let computed: [u8; 32] = h.finalize().into();
        if computed.as_slice() != q.pcr_digest {
            return Err(BundleFailure::PcrDigestMismatch {
                quoted: hex::encode(q.pcr_digest),
                computed: hex::encode(computed),
                pcrs: ranges(&pcrs),
            });
        }
        Ok(pcrs)
    }

    /// Replays the SVSM's log and then the firmware's (`replay`), each parsed within its
    /// bounds, and compares every PCR they extend with its quoted value.
    fn replay(
        &self,
        quoted: &[usize],
        summary: &mut LogSummary,
        firmware: &mut Option<LogSummary>,
    ) -> Result<String, BundleFailure> {
        use replay::{LogSource, ReplayError};
        if let Some(log) = &self.b.firmware_log {
            bounded("firmware_log", log.len(), MAX_LOG)?;
        }
        let r =
            replay::replay(&self.b.event_log, self.b.firmware_log.as_deref()).map_err(
                |e| match e {
                    ReplayError::Parse {
                        log: LogSource::Svsm,
                        error,
                    } => BundleFailure::EventLog(error),
                    ReplayError::NoSha256(LogSource::Svsm) => BundleFailure::LogNoSha256,
                    other => BundleFailure::FirmwareLog(other),
                },
            )?;
        summary.events = Some(r.svsm_events);
        summary.pcrs_extended.clone_from(&r.svsm_pcrs);
        if let Some(f) = firmware.as_mut() {
            f.events = r.firmware_events;
            f.pcrs_extended.clone_from(&r.firmware_pcrs);
        }
        let extended = r.extended();
        if let Some(&pcr) = extended.iter().find(|p| !quoted.contains(p)) {
            return Err(BundleFailure::LogPcrNotQuoted(pcr));
        }
        let mismatched: Vec<usize> = extended
            .iter()
            .copied()
            .filter(|&i| r.pcrs.get(i) != self.b.pcrs_sha256.get(i))
            .collect();
        if let Some(&pcr) = mismatched.first() {
            return Err(BundleFailure::ReplayMismatch {
                pcr,
                replayed: r.pcrs.get(pcr).map(hex::encode).unwrap_or_default(),
                quoted: self
                    .b
                    .pcrs_sha256
                    .get(pcr)
                    .map(hex::encode)
                    .unwrap_or_default(),
                all: mismatched,
            });
        }
        Ok(match r.firmware_events {
            None => format!(
                "{} events replayed (SHA-256 bank from zero) to the quoted PCR {}",
                r.svsm_events,
                ranges(&extended)
            ),
            Some(n) => format!(
                "{} SVSM events then {n} firmware events replayed (SHA-256 bank from zero) to \
                 the quoted PCR {}",
                r.svsm_events,
                ranges(&extended)
            ),
        })
    }

    /// Every signature from the trust anchors to the PCR values verified (the SNP chain and
    /// report when `authentic`, the binding, VMPL0, the AK, the quote signature, the PCR
    /// digest): logs are parsed and replayed only after this.
    fn signatures_verified(&self, authentic: bool) -> Result<(), BundleFailure> {
        if !authentic {
            return Err(BundleFailure::Prerequisite(BundleCheckId::CpuSnp));
        }
        self.require(&[
            BundleCheckId::SvsmBinding,
            BundleCheckId::SvsmVmpl,
            BundleCheckId::VtpmAk,
            BundleCheckId::VtpmQuoteSignature,
            BundleCheckId::VtpmPcrDigest,
        ])
    }

    /// `vtpm.ima_replay`, `vtpm.ima_boot_aggregate`, `vtpm.ima_policy`: not applicable without
    /// an IMA log (unless a runtime policy applies: then the policy check fails); run (like the
    /// firmware replay) only once every signature up to the PCR values verified. Incremental
    /// (from the kept position, with the bundle's `ima_offset`) when the caller kept a position
    /// or gave a runtime policy; otherwise the whole list is replayed from zero.
    fn ima_checks(
        &mut self,
        authentic: bool,
        quoted: Option<&[usize]>,
        summary: &mut Option<ImaSummary>,
    ) {
        let Some(log) = self.b.ima_log.as_deref() else {
            let why = "the bundle carries no IMA log";
            self.push_na(BundleCheckId::VtpmImaReplay, why);
            self.push_na(BundleCheckId::VtpmImaBootAggregate, why);
            if self.ctx.ima_policy.is_some() {
                self.push(
                    BundleCheckId::VtpmImaPolicy,
                    Err(BundleFailure::ImaLogMissing),
                );
            } else {
                self.push_na(BundleCheckId::VtpmImaPolicy, why);
            }
            return;
        };
        *summary = Some(ImaSummary {
            bytes: log.len(),
            offset: self.b.ima_offset,
            ..ImaSummary::default()
        });
        let ready = self.signatures_verified(authentic).and_then(|()| {
            let quoted = quoted.ok_or(BundleFailure::Prerequisite(BundleCheckId::VtpmPcrDigest))?;
            bounded("ima_log", log.len(), MAX_IMA_LOG)?;
            let parsed = svsm_abi::ima::ImaLog::parse(log)
                .map_err(|e| BundleFailure::Ima(ima::ImaFailure::Parse(e)))?;
            Ok((quoted, parsed))
        });
        let (quoted, parsed) = match ready {
            Ok(v) => v,
            Err(e) => {
                self.push(BundleCheckId::VtpmImaReplay, Err(e.clone()));
                self.push(BundleCheckId::VtpmImaBootAggregate, Err(e.clone()));
                self.push(BundleCheckId::VtpmImaPolicy, Err(e));
                return;
            }
        };
        let pcr10 = ima::IMA_PCR as usize;
        if !quoted.contains(&pcr10) {
            let e = BundleFailure::ImaPcrNotQuoted(pcr10);
            self.push(BundleCheckId::VtpmImaReplay, Err(e));
            let prereq = BundleFailure::Prerequisite(BundleCheckId::VtpmImaReplay);
            self.push(BundleCheckId::VtpmImaBootAggregate, Err(prereq.clone()));
            self.push(BundleCheckId::VtpmImaPolicy, Err(prereq));
            return;
        }
        let value = self.b.pcrs_sha256.get(pcr10).copied().unwrap_or([0; 32]);
        let aggregate_pcrs_missing = (0..ima::BOOT_AGGREGATE_PCRS).find(|p| !quoted.contains(p));
        let incremental = self.ctx.ima_policy.is_some()
            || self.ctx.ima_position.is_some()
            || self.b.ima_offset != 0;
        if !incremental {
            self.ima_whole_list(&parsed, &value, aggregate_pcrs_missing, summary);
            self.push_na(BundleCheckId::VtpmImaPolicy, "no runtime policy was given");
            return;
        }
        let position = self.ctx.ima_position.unwrap_or(ImaPosition::START);
        let round = Round {
            offset: self.b.ima_offset,
            log: &parsed,
            quoted_pcr10: value,
            pcrs_0_to_9: None,
        };
        let replayed = match replay_round(&position, &round) {
            Ok(r) => r,
            Err(e) => {
                self.push(
                    BundleCheckId::VtpmImaReplay,
                    Err(BundleFailure::ImaRound(e)),
                );
                let prereq = BundleFailure::Prerequisite(BundleCheckId::VtpmImaReplay);
                self.push(BundleCheckId::VtpmImaBootAggregate, Err(prereq.clone()));
                self.push(BundleCheckId::VtpmImaPolicy, Err(prereq));
                return;
            }
        };
        if let Some(s) = summary.as_mut() {
            s.entries = Some(parsed.len());
            s.covered = usize::try_from(replayed.covered).ok();
            s.position = Some(replayed.position());
        }
        self.push(
            BundleCheckId::VtpmImaReplay,
            Ok(format!(
                "IMA entries {}..{} replay from the kept PCR 10 to the quoted one (the {} after \
                 them were measured after the quote)",
                replayed.from,
                replayed.covered,
                replayed.end - replayed.covered
            )),
        );
        let aggregate_checked = replayed.covers_boot_aggregate();
        if !aggregate_checked {
            self.push_na(
                BundleCheckId::VtpmImaBootAggregate,
                "entry 0 was appraised in an earlier round",
            );
        } else if let Some(missing) = aggregate_pcrs_missing {
            self.push(
                BundleCheckId::VtpmImaBootAggregate,
                Err(BundleFailure::ImaPcrNotQuoted(missing)),
            );
        } else {
            let r = ima::check_boot_aggregate(&parsed, &self.b.pcrs_sha256)
                .map_err(BundleFailure::Ima)
                .map(|()| "boot_aggregate is SHA-256 of the quoted PCRs 0-9".to_owned());
            self.push(BundleCheckId::VtpmImaBootAggregate, r);
        }
        let Some(policy) = self.ctx.ima_policy else {
            self.push_na(BundleCheckId::VtpmImaPolicy, "no runtime policy was given");
            return;
        };
        let admitted = admit_entries(policy, &round, &replayed, aggregate_checked)
            .map_err(BundleFailure::ImaPolicy)
            .map(|a| {
                format!(
                    "{} newly covered IMA entries are allowed ({} excluded, {} by signature)",
                    a.checked, a.excluded, a.signed
                )
            });
        self.push(BundleCheckId::VtpmImaPolicy, admitted);
    }

    /// `vtpm.ima_replay` and `vtpm.ima_boot_aggregate` over the whole list, from zero.
    fn ima_whole_list(
        &mut self,
        parsed: &svsm_abi::ima::ImaLog<'_>,
        value: &[u8; 32],
        aggregate_pcrs_missing: Option<usize>,
        summary: &mut Option<ImaSummary>,
    ) {
        let replay = ima::replay_sha256(parsed, value)
            .map_err(BundleFailure::Ima)
            .map(|r| {
                if let Some(s) = summary.as_mut() {
                    s.entries = Some(r.total);
                    s.covered = Some(r.covered);
                }
                format!(
                    "{} of {} IMA entries replay to the quoted PCR 10 (the {} after them were \
                     measured after the quote)",
                    r.covered,
                    r.total,
                    r.total - r.covered
                )
            });
        let replayed = replay.is_ok();
        self.push(BundleCheckId::VtpmImaReplay, replay);
        let aggregate = if !replayed {
            Err(BundleFailure::Prerequisite(BundleCheckId::VtpmImaReplay))
        } else if let Some(missing) = aggregate_pcrs_missing {
            Err(BundleFailure::ImaPcrNotQuoted(missing))
        } else {
            ima::check_boot_aggregate(parsed, &self.b.pcrs_sha256)
                .map_err(BundleFailure::Ima)
                .map(|()| "boot_aggregate is SHA-256 of the quoted PCRs 0-9".to_owned())
        };
        self.push(BundleCheckId::VtpmImaBootAggregate, aggregate);
    }

    fn reference_pcrs(&self, quoted: &[usize]) -> Result<String, BundleFailure> {
        for (&pcr, expected) in &self.ctx.expected_pcrs {
            if !quoted.contains(&pcr) {
                return Err(BundleFailure::ReferenceNotQuoted(pcr));
            }
            let found = self
                .b
                .pcrs_sha256
                .get(pcr)
                .ok_or(BundleFailure::ReferenceNotQuoted(pcr))?;
            if found != expected {
                return Err(BundleFailure::ReferenceMismatch {
                    pcr,
                    found: hex::encode(found),
                    expected: hex::encode(expected),
                });
            }
        }
        let pcrs: Vec<usize> = self.ctx.expected_pcrs.keys().copied().collect();
        Ok(format!("PCR {} equal the expected values", ranges(&pcrs)))
    }

    /// `svsm.requester_vmpl`, `svsm.epoch`, `svsm.state`, `svsm.persisted`.
    fn state_checks(&mut self, m: Option<&ModuleState<'_>>) {
        let Some(m) = m else {
            let asked = [
                (
                    BundleCheckId::SvsmRequester,
                    self.ctx.requester_vmpl.is_some(),
                ),
                (BundleCheckId::SvsmEpoch, self.ctx.min_epoch.is_some()),
                (BundleCheckId::SvsmState, true),
                (BundleCheckId::SvsmPersisted, true),
            ];
            for (id, asked) in asked {
                if asked {
                    self.push(
                        id,
                        Err(BundleFailure::Prerequisite(BundleCheckId::SvsmManifest)),
                    );
                } else {
                    self.push_na(id, "not asked for (and the manifest is unreadable)");
                }
            }
            return;
        };
        match self.ctx.requester_vmpl {
            None => self.push_na(
                BundleCheckId::SvsmRequester,
                format!(
                    "requested by VMPL {} (no expected VMPL given)",
                    m.requester_vmpl
                ),
            ),
            Some(expected) => self.push(
                BundleCheckId::SvsmRequester,
                if m.requester_vmpl == expected {
                    Ok(format!("requested by VMPL {expected}, as expected"))
                } else {
                    Err(BundleFailure::RequesterMismatch {
                        found: m.requester_vmpl,
                        expected,
                    })
                },
            ),
        }
        let epoch = match (self.ctx.min_epoch, m.state) {
            (None, _) => None,
            (Some(min), StateKind::Restored) if m.epoch >= min => Some(Ok(format!(
                "restored sealed state of epoch {} ≥ minimum {min}",
                m.epoch
            ))),
            (Some(min), StateKind::Restored) => Some(Err(BundleFailure::EpochRollback {
                found: m.epoch,
                min,
            })),
            // A first boot with nothing to remember: only a caller that saw nothing before
            // (minimum 0) accepts it.
            (Some(0), StateKind::Fresh) => Some(Ok("fresh state; minimum epoch 0".to_owned())),
            (Some(min), state @ (StateKind::Fresh | StateKind::Ephemeral)) => {
                Some(Err(BundleFailure::EpochNotRestored {
                    state: state_name(state),
                    min,
                }))
            }
        };
        match epoch {
            None => self.push_na(
                BundleCheckId::SvsmEpoch,
                format!(
                    "no minimum epoch given ({} state, epoch {})",
                    state_name(m.state),
                    m.epoch
                ),
            ),
            Some(r) => self.push(BundleCheckId::SvsmEpoch, r),
        }
        let state = match m.state {
            StateKind::Fresh => Ok(format!(
                "fresh: no sealed state was found at boot (first boot, or the stored state was \
                 lost or deleted); instance {}",
                hex::encode(m.instance_id)
            )),
            StateKind::Restored => Ok(format!(
                "restored: sealed state of epoch {} opened; instance {}",
                m.epoch,
                hex::encode(m.instance_id)
            )),
            StateKind::Ephemeral if self.ctx.allow_ephemeral => Ok(format!(
                "ephemeral ({}), allowed by the caller",
                cause_name(m.reason)
            )),
            StateKind::Ephemeral => Err(BundleFailure::Ephemeral(cause_name(m.reason))),
        };
        self.push(BundleCheckId::SvsmState, state);
        let persisted = if !m.not_persisted() {
            Ok("the newest state is sealed and stored".to_owned())
        } else if self.ctx.allow_ephemeral {
            Ok("the newest state is NOT stored; allowed by the caller".to_owned())
        } else {
            Err(BundleFailure::NotPersisted)
        };
        if m.state == StateKind::Ephemeral {
            self.push_na(
                BundleCheckId::SvsmPersisted,
                "ephemeral state is never stored (see svsm.state)",
            );
        } else {
            self.push(BundleCheckId::SvsmPersisted, persisted);
        }
    }

    /// The `gpu.*` appraisal checks over every GPU item (kind 1) of the bundle, each check
    /// failing with the first GPU that fails it; returns the GPUs decoded and, when every
    /// container parses, their reports in order (for the combined digest).
    fn gpu_checks(&mut self, listed: bool) -> (Vec<GpuSummary>, Option<Vec<&'a [u8]>>) {
        const IDS: [(GpuCheckId, BundleCheckId); 8] = [
            (GpuCheckId::Report, BundleCheckId::GpuReport),
            (GpuCheckId::ChainRoot, BundleCheckId::GpuChainRoot),
            (GpuCheckId::Chain, BundleCheckId::GpuChain),
            (GpuCheckId::ChainValidity, BundleCheckId::GpuCertValidity),
            (GpuCheckId::Fwid, BundleCheckId::GpuFwid),
            (GpuCheckId::Signature, BundleCheckId::GpuSignature),
            (GpuCheckId::Nonce, BundleCheckId::GpuNonce),
            (GpuCheckId::Measurements, BundleCheckId::GpuMeasurements),
        ];
        let b: &'a Bundle = self.b;
        let items: Vec<&'a [u8]> = b
            .extra_evidence
            .iter()
            .filter(|(kind, _)| *kind == EXTRA_KIND_GPU)
            .map(|(_, data)| data.as_slice())
            .take(MAX_EXTRA_EVIDENCE + 1)
            .collect();
        if items.is_empty() {
            let why = if listed {
                "the manifest lists a GPU report but the bundle supplies none"
            } else {
                "no GPU evidence (kind 1)"
            };
            for (_, id) in IDS {
                self.push_na(id, why);
            }
            return (Vec::new(), Some(Vec::new()));
        }
        let expected = gpu_nonce(self.ctx.nonce);
        let expect = GpuExpectations {
            nonce: Some(expected),
            reference: self.ctx.gpu_reference.cloned(),
        };
        // Per GPU: Ok(appraisal) or the container's parse error.
        let mut summaries = Vec::with_capacity(items.len());
        let mut reports = Vec::with_capacity(items.len());
        let mut results = Vec::with_capacity(items.len());
        for (index, data) in items.iter().enumerate() {
            // The container's own bounds (64 KiB report, 64 KiB chain) cap what is parsed.
            match GpuEvidence::parse(data) {
                Ok(e) => {
                    let a =
                        self.ctx
                            .gpu_verifier
                            .appraise(e.report, e.chain_pem, &expect, self.ctx.at);
                    let report = crate::gpu::spdm::GpuReport::parse(e.report).ok();
                    reports.push(Some(e.report));
                    summaries.push(GpuSummary {
                        index,
                        nonce: report.map(|r| hex::encode(r.nonce)),
                        expected_nonce: hex::encode(expected),
                        claims: a.claims.clone(),
                    });
                    results.push(Ok(a));
                }
                Err(error) => {
                    reports.push(None);
                    summaries.push(GpuSummary {
                        index,
                        nonce: None,
                        expected_nonce: hex::encode(expected),
                        claims: None,
                    });
                    results.push(Err(error));
                }
            }
        }
        for (gid, id) in IDS {
            let mut passed = Vec::new();
            let mut failure = None;
            let mut not_applicable = 0;
            for (index, r) in results.iter().enumerate() {
                let outcome = match r {
                    Err(error) if gid == GpuCheckId::Report => Err(BundleFailure::GpuEvidence {
                        index,
                        error: *error,
                    }),
                    Err(_) => Err(BundleFailure::Prerequisite(BundleCheckId::GpuReport)),
                    Ok(a) => match a.checks.iter().find(|c| c.id == gid).map(|c| &c.result) {
                        Some(Ok(Some(d))) => Ok(Some(format!("GPU {index}: {d}"))),
                        Some(Ok(None)) => Ok(None),
                        Some(Err(f)) => Err(BundleFailure::Gpu {
                            index,
                            failure: f.clone(),
                        }),
                        None => Err(BundleFailure::Prerequisite(BundleCheckId::GpuReport)),
                    },
                };
                match outcome {
                    Ok(Some(d)) => passed.push(d),
                    Ok(None) => not_applicable += 1,
                    Err(f) => {
                        failure.get_or_insert(f);
                    }
                }
            }
            match failure {
                Some(f) => self.push(id, Err(f)),
                None if not_applicable == results.len() => self.push_na(
                    id,
                    match gid {
                        GpuCheckId::Measurements => "no GPU reference values given",
                        _ => "not checked",
                    },
                ),
                None => self.push(id, Ok(passed.join("; "))),
            }
        }
        (summaries, reports.into_iter().collect())
    }

    /// `Ok(None)`: nothing listed, nothing supplied, nothing required.
    fn extra_evidence(
        &self,
        m: &VtpmManifest<'_>,
        summary: &mut [ExtraSummary],
    ) -> Result<Option<String>, BundleFailure> {
        let items = &self.b.extra_evidence;
        if items.len() > MAX_EXTRA_EVIDENCE {
            return Err(BundleFailure::ExtraTooMany(items.len()));
        }
        let mut supplied: Vec<(u16, [u8; 48])> = Vec::with_capacity(items.len());
        for ((kind, data), s) in items.iter().zip(summary.iter_mut()) {
            bounded("extra_evidence.data", data.len(), MAX_EXTRA_DATA)?;
            let d: [u8; 48] = Sha384::digest(data).into();
            s.sha384 = hex::encode(d);
            supplied.push((*kind, d));
        }
        let listed: Vec<(u16, [u8; 48])> = m.extra_evidence().map(|(k, d)| (k, *d)).collect();
        if listed.is_empty() {
            if self.ctx.require_extra_evidence {
                return Err(BundleFailure::ExtraRequired);
            }
            if supplied.is_empty() {
                return Ok(None);
            }
        }
        // One to one: each listed digest consumes one supplied item, so an item repeated (or a
        // digest listed twice and supplied once) does not count twice.
        let mut unmatched = supplied.clone();
        for (kind, digest) in &listed {
            if let Some(at) = unmatched.iter().position(|s| *s == (*kind, *digest)) {
                unmatched.swap_remove(at);
                continue;
            }
            return Err(match unmatched.iter().find(|(k, _)| k == kind) {
                Some((_, other)) => BundleFailure::ExtraMismatch {
                    kind: *kind,
                    listed: hex::encode(digest),
                    supplied: hex::encode(other),
                },
                None => BundleFailure::ExtraMissing {
                    kind: *kind,
                    listed: hex::encode(digest),
                },
            });
        }
        if let Some((kind, digest)) = unmatched.first() {
            return Err(BundleFailure::ExtraUnlisted {
                kind: *kind,
                digest: hex::encode(digest),
            });
        }
        let kinds: Vec<String> = listed.iter().map(|(k, _)| k.to_string()).collect();
        Ok(Some(format!(
            "{} item(s) of kind {} match the manifest's SHA-384 digests one to one",
            supplied.len(),
            kinds.join(", ")
        )))
    }
}

impl BundleAppraisal {
    /// Affirming iff no check failed.
    pub fn verdict(&self) -> Verdict {
        if self.failures().next().is_some() {
            Verdict::Contraindicated
        } else {
            Verdict::Affirming
        }
    }

    /// "affirming" or "contraindicated".
    pub fn verdict_str(&self) -> &'static str {
        match self.verdict() {
            Verdict::Affirming => "affirming",
            Verdict::Contraindicated => "contraindicated",
        }
    }

    /// The result of one check.
    pub fn check(&self, id: BundleCheckId) -> Option<&BundleCheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The failure of one check, if it failed.
    pub fn failure(&self, id: BundleCheckId) -> Option<&BundleFailure> {
        self.check(id).and_then(CheckResult::failure)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &BundleCheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// True when the bundle carries GPU evidence (the `gpu` submodule is emitted).
    pub fn has_gpu(&self) -> bool {
        self.check(BundleCheckId::GpuBinding)
            .is_some_and(|c| !matches!(c.outcome, Outcome::NotApplicable(_)))
    }

    fn part(&self, submod: &str) -> Vec<BundleCheckResult> {
        self.checks
            .iter()
            .filter(|c| c.id.submod() == submod)
            .cloned()
            .collect()
    }

    fn submod(&self, submod: &'static str) -> Result<ear::Appraisal, Error> {
        let checks = self.part(submod);
        let failed = checks.iter().any(|c| matches!(c.outcome, Outcome::Fail(_)));
        let verdict = |failed: bool| {
            if failed {
                "contraindicated"
            } else {
                "affirming"
            }
        };
        let (tv, attester, verifier) = match submod {
            EAR_SUBMOD_CPU => {
                // The SNP checks feed the claims; `cpu.snp` only restates them, so it counts
                // only when the SNP appraisal could not be made.
                let own: Vec<BundleCheckResult> = checks
                    .iter()
                    .filter(|c| c.id != BundleCheckId::CpuSnp || self.snp.is_none())
                    .cloned()
                    .collect();
                let mut tv = appraisal::trust_vector(&own);
                let mut all = appraisal::checks_json(&checks);
                let mut verifier = json!({});
                let mut attester = json!({});
                if let Some(snp) = &self.snp {
                    for (claim, v) in snp.trust_vector() {
                        let slot = tv.entry(claim).or_insert(v);
                        if v > *slot {
                            *slot = v;
                        }
                    }
                    if let (Value::Array(a), Value::Array(more)) = (&mut all, snp.checks_json()) {
                        a.extend(more);
                    }
                    verifier = json!({
                        "product": snp.product.map(|p| p.kds_name()),
                        "signer": crate::decoded::signing_key_name(snp.signer),
                        "vek": snp.vek,
                        "vcek_url": snp.vcek_url,
                    });
                    attester =
                        serde_json::to_value(&snp.report).map_err(|e| Error::Ear(e.to_string()))?;
                }
                if let Value::Object(o) = &mut verifier {
                    o.insert("verdict".into(), json!(verdict(failed)));
                    o.insert("checks".into(), all);
                    o.insert("appraisal_time".into(), json!(rfc3339(self.at)));
                }
                (tv, attester, verifier)
            }
            _ => {
                let attester = match submod {
                    EAR_SUBMOD_VTPM => json!({
                        "attestation_key": self.ak,
                        "quote": self.quote,
                        "pcrs": self.pcrs,
                        "event_log": self.event_log,
                        "firmware_log": self.firmware_log,
                        "ima_log": self.ima_log,
                    }),
                    EAR_SUBMOD_SVSM => json!({
                        "nonce": self.nonce,
                        "manifest": self.manifest,
                        "combined_digest": self.combined_digest,
                    }),
                    _ => json!({
                        "extra_evidence": self
                            .extra_evidence
                            .iter()
                            .filter(|e| e.kind == EXTRA_KIND_GPU)
                            .collect::<Vec<_>>(),
                        "gpus": self.gpus,
                        "combined_digest": self.combined_digest,
                    }),
                };
                let verifier = json!({
                    "verdict": verdict(failed),
                    "checks": appraisal::checks_json(&checks),
                });
                (appraisal::trust_vector(&checks), attester, verifier)
            }
        };
        appraisal::ear_submod(
            &tv,
            failed,
            &format!("host-verifier/bundle-{submod}"),
            &attester,
            &verifier,
        )
    }

    /// The appraisal as an EAR with submodules `cpu`, `vtpm`, `svsm` and, with GPU evidence,
    /// `gpu`. `iat` is the issue time (Unix seconds).
    pub fn to_ear(&self, iat: i64) -> Result<ear::Ear, Error> {
        let mut submods = BTreeMap::new();
        let mut names = vec![EAR_SUBMOD_CPU, EAR_SUBMOD_VTPM, EAR_SUBMOD_SVSM];
        if self.has_gpu() {
            names.push(EAR_SUBMOD_GPU);
        }
        for name in names {
            submods.insert(name.to_owned(), self.submod(name)?);
        }
        appraisal::build_ear(submods, iat)
    }

    /// The EAR as JSON.
    pub fn to_ear_json(&self, iat: i64) -> Result<Value, Error> {
        serde_json::to_value(self.to_ear(iat)?).map_err(|e| Error::Ear(e.to_string()))
    }

    /// A human summary: the evidence, the SNP appraisal, then one line per bundle check and
    /// the verdict.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "svsm-vhsm evidence bundle | nonce {} ({} bytes)\n",
            self.nonce,
            self.nonce.len() / 2
        ));
        if let Some(m) = &self.manifest {
            s.push_str(&format!(
                "manifest     {:#x} | {} state{}{} | epoch {} | instance {} | requested by VMPL {} | {} extra-evidence digest(s)\n",
                VTPM_MANIFEST_VERSION,
                m.state,
                m.ephemeral_reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                if m.not_persisted { ", NOT STORED" } else { "" },
                m.epoch,
                m.instance_id,
                m.requester_vmpl,
                m.extra_evidence.len()
            ));
        }
        if let Some(ak) = &self.ak {
            s.push_str(&format!("AK           {} | name {}\n", ak.key, ak.name));
        }
        if let Some(q) = &self.quote {
            let sel: Vec<String> = q
                .pcr_select
                .iter()
                .filter(|s| !s.pcrs.is_empty())
                .map(|s| format!("{} PCR{}", s.bank, ranges(&s.pcrs)))
                .collect();
            s.push_str(&format!(
                "quote        extraData {} | {} | clock {} resets {} restarts {}\n",
                q.extra_data,
                sel.join(", "),
                q.clock,
                q.reset_count,
                q.restart_count
            ));
        }
        s.push_str(&format!(
            "event log    {} bytes{}\n",
            self.event_log.bytes,
            match self.event_log.events {
                Some(n) => format!(
                    ", {n} events, extends PCR {}",
                    ranges(&self.event_log.pcrs_extended)
                ),
                None => " (not replayed)".to_owned(),
            }
        ));
        if let Some(f) = &self.firmware_log {
            s.push_str(&format!(
                "firmware log {} bytes{}\n",
                f.bytes,
                match f.events {
                    Some(n) => format!(", {n} events, extends PCR {}", ranges(&f.pcrs_extended)),
                    None => " (not replayed)".to_owned(),
                }
            ));
        }
        if let Some(i) = &self.ima_log {
            s.push_str(&format!(
                "IMA log      {} bytes{}\n",
                i.bytes,
                match (i.covered, i.entries) {
                    (Some(c), Some(n)) if i.offset == 0 =>
                        format!(", {c} of {n} entries covered by the quote"),
                    (Some(c), Some(n)) => format!(
                        ", entries {}..{} sent, up to {c} covered by the quote",
                        i.offset,
                        i.offset + n as u64
                    ),
                    _ => " (not replayed)".to_owned(),
                }
            ));
        }
        for e in &self.extra_evidence {
            s.push_str(&format!(
                "extra        kind {}{} | {} bytes | SHA-384 {}\n",
                e.kind,
                if e.kind == EXTRA_KIND_GPU {
                    " (GPU)"
                } else {
                    ""
                },
                e.bytes,
                e.sha384
            ));
        }
        for g in &self.gpus {
            let c = g.claims.as_ref();
            let claim = |k: &str| {
                c.and_then(|c| c.config.get(k))
                    .map(String::as_str)
                    .unwrap_or("?")
                    .to_owned()
            };
            s.push_str(&format!(
                "GPU {}        {} | driver {} | VBIOS {} | {} measurements | nonce {}\n",
                g.index,
                claim("project"),
                claim("driver_version"),
                claim("vbios_version"),
                c.map_or(0, |c| c.measurements.len()),
                g.nonce.as_deref().unwrap_or("(report does not parse)")
            ));
        }
        match &self.combined_digest {
            Some(d) => s.push_str(&format!(
                "combined     {} ({}; seed 004 digest, docs/gpu.md: names this evidence, \
                 trustworthy only with an affirming verdict)\n",
                d.combined, d.parts
            )),
            None => s.push_str(
                "combined     not computed (the SNP report or a GPU container does not parse)\n",
            ),
        }
        s.push_str(&format!("checked at   {}\n", rfc3339(self.at)));
        match &self.snp {
            Some(snp) => {
                s.push_str("\n== SNP report (submodule cpu) ==\n");
                s.push_str(&snp.render_text());
            }
            None => s.push_str("\n== SNP report (submodule cpu): not appraised ==\n"),
        }
        s.push_str("\n== evidence bundle ==\n");
        appraisal::render_checks(&self.checks, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_grouped() {
        let mut names: Vec<_> = BundleCheckId::ALL.iter().map(|c| c.name()).collect();
        for c in BundleCheckId::ALL {
            assert!(c.name().starts_with(c.submod()), "{c}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BundleCheckId::ALL.len());
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(ranges(&[0, 1, 2, 4, 8, 9]), "0-2, 4, 8-9");
        assert_eq!(ranges(&(0..24).collect::<Vec<_>>()), "0-23");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn an_empty_bundle_is_contraindicated_not_a_panic() {
        let verifier = Verifier::new(crate::Policy::default()).unwrap();
        let bundle = Bundle {
            nonce: vec![1],
            snp_report: vec![],
            certificates: vec![],
            manifest: vec![],
            quote_attest: vec![],
            quote_signature: vec![],
            pcrs_sha256: vec![],
            event_log: vec![],
            firmware_log: None,
            ima_log: None,
            ima_offset: 0,
            extra_evidence: vec![],
            ek_certificates: vec![],
        };
        let ctx = BundleContext::new(&verifier, &[1], SystemTime::now());
        let a = verify_bundle(&bundle, &ctx).unwrap();
        assert_eq!(a.verdict(), Verdict::Contraindicated);
        assert_eq!(a.checks.len(), BundleCheckId::ALL.len());
        assert!(matches!(
            a.failure(BundleCheckId::CpuVek),
            Some(BundleFailure::Report(_))
        ));
        assert_eq!(
            a.failure(BundleCheckId::VtpmLogReplay),
            Some(&BundleFailure::Prerequisite(BundleCheckId::CpuSnp))
        );
        let _ = a.render_text();
        let _ = a.to_ear_json(1).unwrap();
    }
}
