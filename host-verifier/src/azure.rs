//! Azure confidential-VM evidence: an SEV-SNP report wrapped in the paravisor's "HCL report"
//! (vTPM NV index 0x01400001), whose REPORT_DATA binds the runtime-claims JSON, whose JWK
//! `HCLAkPub` is the vTPM attestation key (AK), which signs a TPM2 quote over the PCRs and the
//! verifier's nonce. The layout and binding follow Azure's public tooling (kinvolk
//! azure-cvm-tooling `az-cvm-vtpm/src/hcl`, `vtpm`) and confidential-containers trustee's
//! `az_snp_vtpm` verifier; checks A1..A7 below.
//!
//! Trust flows ARK → VCEK → SNP report → REPORT_DATA → runtime claims → AK → quote → PCRs. The
//! SNP report is appraised by the crate's [`Verifier`] exactly as a bare report (EAR submodule
//! `cpu`); the binding and the quote are the named checks of [`VtpmCheckId`] (submodule `vtpm`).
//! The PCR values are reported, not appraised against a policy (A8 is not implemented).
//!
//! ```no_run
//! use host_verifier::azure::{parse_pcr_values, AzureEvidence};
//! use host_verifier::{Policy, Verdict, Verifier};
//! let read = |p: &str| std::fs::read(p).unwrap();
//! let (hcl, vcek, quote, sig) = (read("hcl-report.bin"), read("vcek.pem"),
//!     read("tpm-quote.msg"), read("tpm-quote.sig"));
//! let pcrs = parse_pcr_values(&std::fs::read_to_string("tpm-pcrs.txt").unwrap())?;
//! let appraisal = Verifier::new(Policy::default())?.verify_azure(&AzureEvidence {
//!     hcl_report: &hcl,
//!     vek: Some(&vcek),
//!     crl: None,
//!     quote: &quote,
//!     signature: &sig,
//!     pcrs: &pcrs,
//!     nonce: b"challenge",
//!     user_data: None,
//!     at: std::time::SystemTime::now(),
//! })?;
//! assert_eq!(appraisal.verdict(), Verdict::Affirming);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod claims;
pub mod hcl;
pub mod quote;

use crate::appraisal::{self, Appraisal, Verdict};
use crate::check::{CheckResult, NamedCheck, Outcome, TrustClaimName};
use crate::error::Error;
use crate::verifier::{Evidence, Verifier};
use claims::{AkError, AttestationKey, ClaimsError, RuntimeClaims, AK_KID};
use hcl::{HclHashType, HclReport};
use quote::{rsassa_block, AttestError, QuoteAttest, SignatureFormatError};
use rsa::traits::PublicKeyParts;
use rsa::Pkcs1v15Sign;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::SystemTime;
use svsm_abi::snp::AttestationReport;

/// The EAR submodule of the SNP report inside the HCL report.
pub const EAR_SUBMOD_CPU: &str = "cpu";
/// The EAR submodule of the binding and the vTPM quote.
pub const EAR_SUBMOD_VTPM: &str = "vtpm";
/// Size of a SHA-256 PCR value.
pub const PCR_SIZE: usize = 32;

/// The evidence of one Azure appraisal. Everything but `nonce`, `user_data` and `at` is
/// untrusted.
#[derive(Clone, Copy, Debug)]
pub struct AzureEvidence<'a> {
    /// The HCL report (NV index 0x01400001 content, padding allowed).
    pub hcl_report: &'a [u8],
    /// The VCEK (PEM or DER; a PEM bundle's first certificate). `None`: an error naming the KDS URL.
    pub vek: Option<&'a [u8]>,
    /// An optional DER CRL from AMD's KDS.
    pub crl: Option<&'a [u8]>,
    /// The quote: `TPMS_ATTEST` bytes exactly as the TPM signed them.
    pub quote: &'a [u8],
    /// The AK's signature over `quote`: the raw RSASSA-PKCS1-v1_5 block (modulus size), or a
    /// marshalled `TPMT_SIGNATURE` (RSASSA, SHA-256) around it.
    pub signature: &'a [u8],
    /// SHA-256 bank PCR values; index = PCR number.
    pub pcrs: &'a [[u8; PCR_SIZE]],
    /// The verifier's nonce: the quote's extraData must equal it.
    pub nonce: &'a [u8],
    /// Optional: the runtime claims' `user-data` must start with these bytes (A7).
    pub user_data: Option<&'a [u8]>,
    /// The time at which certificates and the CRL must be valid.
    pub at: SystemTime,
}

/// Every check of the vTPM part, in the order reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum VtpmCheckId {
    /// A1: the embedded SNP report's appraisal (submodule `cpu`) is affirming.
    SnpReport,
    /// A1: the embedded report was requested at VMPL0 (the paravisor, which binds the runtime
    /// claims): a guest at VMPL1+ can have the PSP sign any REPORT_DATA, e.g. claims naming an
    /// AK it holds itself. Required whatever the policy says, as for evidence bundles.
    ReportVmpl,
    /// A2: REPORT_DATA[0..32] = SHA-256(runtime claims as stored), REPORT_DATA[32..64] zero.
    ReportDataBinding,
    /// A3: the runtime claims are JSON with exactly one JWK "HCLAkPub", an RSA key ≥ 2048 bits.
    AttestationKey,
    /// A4: the quote is a well-formed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE.
    Quote,
    /// A4: the quote's RSASSA-PKCS1-v1_5 / SHA-256 signature verifies with the AK, and its
    /// qualifiedSigner is the AK's Qualified Name (the paravisor's AK template).
    QuoteSignature,
    /// A5: the quote's extraData equals the verifier's nonce.
    Nonce,
    /// A6: the selection is of the SHA-256 bank and pcrDigest = SHA-256 of the supplied values.
    PcrDigest,
    /// A7 (optional): the runtime claims' user-data starts with the expected bytes.
    UserData,
}

impl VtpmCheckId {
    /// Every check, in report order.
    pub const ALL: [VtpmCheckId; 9] = [
        VtpmCheckId::SnpReport,
        VtpmCheckId::ReportVmpl,
        VtpmCheckId::ReportDataBinding,
        VtpmCheckId::AttestationKey,
        VtpmCheckId::Quote,
        VtpmCheckId::QuoteSignature,
        VtpmCheckId::Nonce,
        VtpmCheckId::PcrDigest,
        VtpmCheckId::UserData,
    ];

    /// The stable name used in output.
    pub const fn name(self) -> &'static str {
        match self {
            VtpmCheckId::SnpReport => "vtpm.snp_report",
            VtpmCheckId::ReportVmpl => "vtpm.report_vmpl",
            VtpmCheckId::ReportDataBinding => "vtpm.report_data_binding",
            VtpmCheckId::AttestationKey => "vtpm.attestation_key",
            VtpmCheckId::Quote => "vtpm.quote",
            VtpmCheckId::QuoteSignature => "vtpm.quote_signature",
            VtpmCheckId::Nonce => "vtpm.nonce",
            VtpmCheckId::PcrDigest => "vtpm.pcr_digest",
            VtpmCheckId::UserData => "vtpm.user_data",
        }
    }

    /// The AR4SI claim: every vTPM check is about whether this is the attested instance. The
    /// PCR values are not appraised (no `executables` claim).
    pub const fn trust_claim(self) -> TrustClaimName {
        TrustClaimName::InstanceIdentity
    }
}

impl NamedCheck for VtpmCheckId {
    fn check_name(self) -> &'static str {
        self.name()
    }
    fn claim(self) -> TrustClaimName {
        self.trust_claim()
    }
    fn cryptographic(self) -> bool {
        matches!(
            self,
            VtpmCheckId::ReportDataBinding | VtpmCheckId::QuoteSignature | VtpmCheckId::PcrDigest
        )
    }
}

impl std::fmt::Display for VtpmCheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a vTPM check failed: one variant per reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VtpmFailure {
    /// The SNP appraisal (submodule `cpu`) is contraindicated.
    #[error("the SNP report appraisal (submodule cpu) is contraindicated: {} failed", .0.join(", "))]
    SnpContraindicated(Vec<String>),
    /// The embedded report was requested by a guest at a VMPL above 0.
    #[error("the SNP report is from VMPL {0}, not VMPL0: a guest, not the paravisor, chose its REPORT_DATA")]
    NotVmpl0(u32),
    /// REPORT_DATA binds with a hash this verifier does not check.
    #[error("report_data_hash_type {} is not supported; only SHA-256 bindings are checked", .0.name())]
    HashTypeUnsupported(HclHashType),
    /// The embedded report cannot be read (never after a successful SNP appraisal).
    #[error("embedded SNP report unreadable: {0}")]
    ReportUnreadable(String),
    /// REPORT_DATA[0..32] is not SHA-256 of the runtime claims.
    #[error("REPORT_DATA[0..32] is {found}, but SHA-256 of the runtime claims is {expected}")]
    BindingMismatch {
        /// REPORT_DATA[0..32], hex.
        found: String,
        /// SHA-256(variable data), hex.
        expected: String,
    },
    /// REPORT_DATA[32..64] is not zero.
    #[error("REPORT_DATA[32..64] must be zero, found {0}")]
    BindingTail(String),
    /// The runtime claims are not the expected JSON.
    #[error("{0}")]
    RuntimeClaims(ClaimsError),
    /// No usable AK in the runtime claims.
    #[error("{0}")]
    Ak(AkError),
    /// The quote is not a well-formed TPMS_ATTEST quote.
    #[error("{0}")]
    Quote(AttestError),
    /// The signature is not an RSASSA block for the AK.
    #[error("{0}")]
    SignatureFormat(SignatureFormatError),
    /// The signature does not verify with the AK.
    #[error("quote signature (RSASSA-PKCS1-v1_5, SHA-256) does not verify with HCLAkPub")]
    SignatureInvalid,
    /// The quote verifies with the AK but its qualifiedSigner names another key: the TPM did
    /// not make it for this AK (the same rule as for evidence bundles).
    #[error("{0}")]
    QuoteSigner(crate::bundle_verify::tpm::SignerError),
    /// The verifier supplied an empty nonce: the quote could be a replay.
    #[error("the expected nonce is empty; a quote cannot be shown fresh without one")]
    NonceEmpty,
    /// extraData differs from the nonce.
    #[error("quote extraData is {found}, expected nonce {expected}")]
    NonceMismatch {
        /// extraData, hex.
        found: String,
        /// The nonce, hex.
        expected: String,
    },
    /// The quote's PCR selection is not one SHA-256 selection (the rule the bundle appraisal
    /// applies too: one non-empty SHA-256 selection, no other bank).
    #[error("{0}")]
    Selection(crate::bundle_verify::tpm::SelectionError),
    /// A selected PCR has no supplied value.
    #[error("quote selects PCR {pcr} but only PCR0..PCR{} were supplied", .supplied.saturating_sub(1))]
    PcrMissing {
        /// The PCR.
        pcr: usize,
        /// How many values were supplied.
        supplied: usize,
    },
    /// pcrDigest is not a SHA-256 digest.
    #[error("quote pcrDigest is {0} bytes, expected 32 (SHA-256)")]
    PcrDigestLength(usize),
    /// pcrDigest differs from the supplied values' digest.
    #[error(
        "quote pcrDigest is {quoted}, but SHA-256 of the supplied PCR{pcrs} values is {computed}"
    )]
    PcrDigestMismatch {
        /// From the quote, hex.
        quoted: String,
        /// Computed, hex.
        computed: String,
        /// The PCRs hashed, e.g. "0-23".
        pcrs: String,
    },
    /// The runtime claims have no user-data.
    #[error("runtime claims have no user-data")]
    UserDataMissing,
    /// user-data is not hex.
    #[error("runtime claims user-data is not hex: {0}")]
    UserDataMalformed(String),
    /// user-data does not start with the expected bytes.
    #[error("runtime claims user-data is {found}, expected it to start with {expected}")]
    UserDataMismatch {
        /// user-data, hex.
        found: String,
        /// Expected prefix, hex.
        expected: String,
    },
    /// A prerequisite check failed, so this one cannot pass.
    #[error("cannot pass: prerequisite check {0} failed")]
    Prerequisite(VtpmCheckId),
}

/// One vTPM check.
pub type VtpmCheckResult = CheckResult<VtpmCheckId, VtpmFailure>;

/// The HCL report's header fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HclSummary {
    /// Header version.
    pub header_version: u32,
    /// report_size.
    pub report_size: u32,
    /// request_type.
    pub request_type: u32,
    /// data_size.
    pub data_size: u32,
    /// Request-data version.
    pub data_version: u32,
    /// report_type (2, SEV-SNP).
    pub report_type: u32,
    /// report_data_hash_type.
    pub hash_type: &'static str,
    /// variable_data_size.
    pub runtime_claims_size: usize,
    /// SHA-256 of the variable data, hex.
    pub runtime_claims_sha256: String,
}

/// The attestation key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AkSummary {
    /// "HCLAkPub".
    pub kid: &'static str,
    /// Modulus bits.
    pub bits: usize,
    /// Public exponent.
    pub exponent: u64,
    /// SHA-256 of the big-endian modulus, hex (a short fingerprint).
    pub modulus_sha256: String,
}

pub use crate::bundle_verify::{QuoteSummary, SelectionSummary};

/// The appraisal of the binding and the vTPM quote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VtpmAppraisal {
    /// Every check of [`VtpmCheckId::ALL`], in order.
    pub checks: Vec<VtpmCheckResult>,
    /// The HCL header.
    pub hcl: HclSummary,
    /// The runtime claims as parsed (when they parse).
    pub runtime_claims: Option<RuntimeClaims>,
    /// The AK (when usable).
    pub ak: Option<AkSummary>,
    /// The quote (when it parses).
    pub quote: Option<QuoteSummary>,
    /// The SHA-256 PCR values the quote attests (only when `vtpm.pcr_digest` passed), hex.
    pub pcrs: BTreeMap<usize, String>,
}

impl VtpmAppraisal {
    /// Affirming iff no check failed.
    pub fn verdict(&self) -> Verdict {
        if self.failures().next().is_some() {
            Verdict::Contraindicated
        } else {
            Verdict::Affirming
        }
    }

    /// The result of one check.
    pub fn check(&self, id: VtpmCheckId) -> Option<&VtpmCheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &VtpmCheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// "affirming" or "contraindicated".
    pub fn verdict_str(&self) -> &'static str {
        match self.verdict() {
            Verdict::Affirming => "affirming",
            Verdict::Contraindicated => "contraindicated",
        }
    }

    /// The decoded evidence (EAR attester claims of submodule `vtpm`).
    pub fn attester_claims(&self) -> Value {
        json!({
            "hcl": self.hcl,
            "runtime_claims": self.runtime_claims,
            "ak": self.ak,
            "quote": self.quote,
            "pcrs": self.pcrs,
        })
    }

    /// This part as an EAR submodule.
    pub fn ear_submod(&self) -> Result<ear::Appraisal, Error> {
        let verifier = json!({
            "verdict": self.verdict_str(),
            "checks": appraisal::checks_json(&self.checks),
        });
        appraisal::ear_submod(
            &appraisal::trust_vector(&self.checks),
            self.verdict() == Verdict::Contraindicated,
            "host-verifier/azure-vtpm",
            &self.attester_claims(),
            &verifier,
        )
    }

    /// A human summary of this part.
    pub fn render_text(&self) -> String {
        let h = &self.hcl;
        let mut s = format!(
            "HCL report v{} | report_size {} | SEV-SNP | REPORT_DATA hash {} | runtime claims {} bytes\n",
            h.header_version, h.report_size, h.hash_type, h.runtime_claims_size
        );
        if let Some(ak) = &self.ak {
            s.push_str(&format!(
                "AK           {} RSA-{} e={} (modulus SHA-256 {})\n",
                ak.kid, ak.bits, ak.exponent, ak.modulus_sha256
            ));
        }
        if let Some(q) = &self.quote {
            let sel: Vec<String> = q
                .pcr_select
                .iter()
                .map(|sel| format!("{} PCR{}", sel.bank, pcr_ranges(&sel.pcrs)))
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
        s.push('\n');
        appraisal::render_checks(&self.checks, &mut s);
        s
    }
}

/// The appraisal of Azure evidence: the SNP report (`cpu`) and the vTPM part (`vtpm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureAppraisal {
    /// The embedded SNP report, appraised by [`Verifier::verify`].
    pub cpu: Appraisal,
    /// The binding and the quote.
    pub vtpm: VtpmAppraisal,
}

impl AzureAppraisal {
    /// Affirming iff both parts are.
    pub fn verdict(&self) -> Verdict {
        if self.cpu.verdict() == Verdict::Affirming && self.vtpm.verdict() == Verdict::Affirming {
            Verdict::Affirming
        } else {
            Verdict::Contraindicated
        }
    }

    /// "affirming" or "contraindicated".
    pub fn verdict_str(&self) -> &'static str {
        match self.verdict() {
            Verdict::Affirming => "affirming",
            Verdict::Contraindicated => "contraindicated",
        }
    }

    /// The appraisal as an EAR with two submodules, `cpu` (as `snp verify` renders its `snp`
    /// submodule) and `vtpm`. `iat` is the issue time (Unix seconds).
    pub fn to_ear(&self, iat: i64) -> Result<ear::Ear, Error> {
        let mut submods = BTreeMap::new();
        submods.insert(EAR_SUBMOD_CPU.to_owned(), self.cpu.ear_submod()?);
        submods.insert(EAR_SUBMOD_VTPM.to_owned(), self.vtpm.ear_submod()?);
        appraisal::build_ear(submods, iat)
    }

    /// The EAR as JSON.
    pub fn to_ear_json(&self, iat: i64) -> Result<Value, Error> {
        serde_json::to_value(self.to_ear(iat)?).map_err(|e| Error::Ear(e.to_string()))
    }

    /// A human summary: both parts, then the overall verdict.
    pub fn render_text(&self) -> String {
        format!(
            "== cpu: the SEV-SNP report inside the HCL report ==\n{}\n\
             == vtpm: runtime claims binding and TPM quote ==\n{}\n\
             overall verdict: {} (cpu {}, vtpm {})\n",
            self.cpu.render_text(),
            self.vtpm.render_text(),
            self.verdict_str().to_uppercase(),
            self.cpu.verdict_str(),
            self.vtpm.verdict_str()
        )
    }
}

/// Why a PCR list is not one this verifier reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PcrListError {
    /// A line is not 64 hex characters.
    #[error(
        "PCR list line {line}: expected 64 hex characters (a SHA-256 PCR value), found {found:?}"
    )]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line (truncated to 80 characters).
        found: String,
    },
    /// No values.
    #[error("PCR list is empty")]
    Empty,
}

/// Parses SHA-256 PCR values, one hex value per line in PCR order (PCR0 first); blank lines and
/// surrounding whitespace are ignored.
pub fn parse_pcr_values(text: &str) -> Result<Vec<[u8; PCR_SIZE]>, PcrListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let mut v = [0u8; PCR_SIZE];
        hex::decode_to_slice(t, &mut v).map_err(|_| PcrListError::Line {
            line: i + 1,
            found: t.chars().take(80).collect(),
        })?;
        out.push(v);
    }
    if out.is_empty() {
        return Err(PcrListError::Empty);
    }
    Ok(out)
}

/// "0-23", "0,2,4-7".
fn pcr_ranges(pcrs: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = pcrs.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn pass(id: VtpmCheckId, detail: impl Into<String>) -> VtpmCheckResult {
    CheckResult {
        id,
        outcome: Outcome::Pass,
        detail: detail.into(),
    }
}

fn fail(id: VtpmCheckId, f: VtpmFailure) -> VtpmCheckResult {
    CheckResult {
        id,
        outcome: Outcome::Fail(f),
        detail: String::new(),
    }
}

fn na(id: VtpmCheckId, why: impl Into<String>) -> VtpmCheckResult {
    CheckResult {
        id,
        outcome: Outcome::NotApplicable(why.into()),
        detail: String::new(),
    }
}

impl Verifier {
    /// Appraises Azure CVM evidence: parses the HCL report, appraises its SNP report with
    /// [`Verifier::verify`] (every SNP check and this verifier's policy), then runs the vTPM
    /// checks. `Err` only when the evidence cannot be appraised at all (HCL report malformed,
    /// SNP report unreadable, no VEK, VEK not a certificate); every other problem is a failed
    /// check.
    pub fn verify_azure(&self, ev: &AzureEvidence<'_>) -> Result<AzureAppraisal, Error> {
        let hcl = HclReport::parse(ev.hcl_report)?;
        let cpu = self.verify(&Evidence {
            report: hcl.hw_report,
            vek: ev.vek,
            crl: ev.crl,
            at: ev.at,
        })?;
        let vtpm = appraise_vtpm(&hcl, &cpu, ev);
        for id in VtpmCheckId::ALL {
            if !vtpm.checks.iter().any(|c| c.id == id) {
                return Err(Error::NotImplemented(id.name()));
            }
        }
        Ok(AzureAppraisal { cpu, vtpm })
    }
}

/// The vTPM checks (A1..A7) on a parsed HCL report, given the SNP appraisal of its report.
pub fn appraise_vtpm(
    hcl: &HclReport<'_>,
    cpu: &Appraisal,
    ev: &AzureEvidence<'_>,
) -> VtpmAppraisal {
    let mut checks: Vec<VtpmCheckResult> = Vec::with_capacity(VtpmCheckId::ALL.len());

    // A1
    checks.push(if cpu.verdict() == Verdict::Affirming {
        pass(
            VtpmCheckId::SnpReport,
            format!(
                "submodule cpu is affirming (SNP report v{}, {}, VMPL {})",
                cpu.report.version,
                cpu.product.map_or("unknown product", |p| p.kds_name()),
                cpu.report.vmpl
            ),
        )
    } else {
        fail(
            VtpmCheckId::SnpReport,
            VtpmFailure::SnpContraindicated(
                cpu.failures().map(|c| c.id.name().to_owned()).collect(),
            ),
        )
    });

    checks.push(match cpu.report.vmpl {
        0 => pass(
            VtpmCheckId::ReportVmpl,
            "requested at VMPL0 (the paravisor)".to_owned(),
        ),
        v => fail(VtpmCheckId::ReportVmpl, VtpmFailure::NotVmpl0(v)),
    });

    // A2
    let var_digest = hcl.var_data_sha256();
    checks.push(binding_check(hcl, &var_digest));

    // A3
    let claims = RuntimeClaims::parse(hcl.var_data);
    let ak: Option<Result<AttestationKey, AkError>> =
        claims.as_ref().ok().map(RuntimeClaims::attestation_key);
    checks.push(match (&claims, &ak) {
        (Err(e), _) => fail(
            VtpmCheckId::AttestationKey,
            VtpmFailure::RuntimeClaims(e.clone()),
        ),
        (Ok(_), Some(Err(e))) => fail(VtpmCheckId::AttestationKey, VtpmFailure::Ak(e.clone())),
        (Ok(_), Some(Ok(k))) => pass(
            VtpmCheckId::AttestationKey,
            format!(
                "JWK kid {AK_KID:?}: RSA-{} e={} from the runtime claims REPORT_DATA binds",
                k.bits, k.exponent
            ),
        ),
        (Ok(_), None) => fail(
            VtpmCheckId::AttestationKey,
            VtpmFailure::Ak(AkError::Missing),
        ),
    });
    let ak = ak.and_then(Result::ok);

    // A4: structure
    let parsed = QuoteAttest::parse(ev.quote);
    checks.push(match &parsed {
        Ok(q) => pass(
            VtpmCheckId::Quote,
            format!(
                "TPMS_ATTEST (magic 0xff544347, TPM_ST_ATTEST_QUOTE), {} bytes, {} PCR selection(s)",
                ev.quote.len(),
                q.pcr_select.len()
            ),
        ),
        Err(e) => fail(VtpmCheckId::Quote, VtpmFailure::Quote(e.clone())),
    });

    // A4: signature over the bytes as received.
    checks.push(match &ak {
        None => fail(
            VtpmCheckId::QuoteSignature,
            VtpmFailure::Prerequisite(VtpmCheckId::AttestationKey),
        ),
        Some(k) => signature_check(k, ev.quote, parsed.as_ref().ok(), ev.signature),
    });

    // A5
    checks.push(match &parsed {
        Err(_) => fail(
            VtpmCheckId::Nonce,
            VtpmFailure::Prerequisite(VtpmCheckId::Quote),
        ),
        Ok(_) if ev.nonce.is_empty() => fail(VtpmCheckId::Nonce, VtpmFailure::NonceEmpty),
        Ok(q) if q.extra_data == ev.nonce => pass(
            VtpmCheckId::Nonce,
            format!(
                "extraData = nonce {} ({} bytes)",
                hex::encode(ev.nonce),
                ev.nonce.len()
            ),
        ),
        Ok(q) => fail(
            VtpmCheckId::Nonce,
            VtpmFailure::NonceMismatch {
                found: hex::encode(q.extra_data),
                expected: hex::encode(ev.nonce),
            },
        ),
    });

    // A6
    let mut attested = BTreeMap::new();
    checks.push(match &parsed {
        Err(_) => fail(
            VtpmCheckId::PcrDigest,
            VtpmFailure::Prerequisite(VtpmCheckId::Quote),
        ),
        Ok(q) => match check_pcr_digest(q, ev.pcrs) {
            Ok((selected, detail)) => {
                for i in selected {
                    if let Some(v) = ev.pcrs.get(i) {
                        attested.insert(i, hex::encode(v));
                    }
                }
                pass(VtpmCheckId::PcrDigest, detail)
            }
            Err(f) => fail(VtpmCheckId::PcrDigest, f),
        },
    });

    // A7
    checks.push(match (ev.user_data, &claims) {
        (None, _) => na(
            VtpmCheckId::UserData,
            "no expected user data (the guest's NV 0x01400002 write) was given",
        ),
        (Some(_), Err(_)) => fail(
            VtpmCheckId::UserData,
            VtpmFailure::Prerequisite(VtpmCheckId::AttestationKey),
        ),
        (Some(expected), Ok(c)) => match c.user_data_bytes() {
            Err(e) => fail(VtpmCheckId::UserData, VtpmFailure::UserDataMalformed(e)),
            Ok(None) => fail(VtpmCheckId::UserData, VtpmFailure::UserDataMissing),
            Ok(Some(found)) if found.starts_with(expected) => pass(
                VtpmCheckId::UserData,
                format!(
                    "user-data starts with the expected {} bytes {}",
                    expected.len(),
                    hex::encode(expected)
                ),
            ),
            Ok(Some(found)) => fail(
                VtpmCheckId::UserData,
                VtpmFailure::UserDataMismatch {
                    found: hex::encode(found),
                    expected: hex::encode(expected),
                },
            ),
        },
    });

    VtpmAppraisal {
        checks,
        hcl: HclSummary {
            header_version: hcl.header_version,
            report_size: hcl.report_size,
            request_type: hcl.request_type,
            data_size: hcl.data_size,
            data_version: hcl.data_version,
            report_type: hcl.report_type,
            hash_type: hcl.hash_type.name(),
            runtime_claims_size: hcl.var_data.len(),
            runtime_claims_sha256: hex::encode(var_digest),
        },
        runtime_claims: claims.ok(),
        ak: ak.map(|k| AkSummary {
            kid: AK_KID,
            bits: k.bits,
            exponent: k.exponent,
            modulus_sha256: hex::encode(Sha256::digest(k.key.n().to_bytes_be())),
        }),
        quote: parsed.ok().as_ref().map(QuoteSummary::of),
        pcrs: attested,
    }
}

fn binding_check(hcl: &HclReport<'_>, var_digest: &[u8; 32]) -> VtpmCheckResult {
    let id = VtpmCheckId::ReportDataBinding;
    if hcl.hash_type != HclHashType::Sha256 {
        return fail(id, VtpmFailure::HashTypeUnsupported(hcl.hash_type));
    }
    let report_data = match AttestationReport::parse(hcl.hw_report) {
        Ok(r) => r.raw().report_data,
        Err(e) => return fail(id, VtpmFailure::ReportUnreadable(e.to_string())),
    };
    let (head, tail) = report_data.split_at(32);
    if head != var_digest {
        return fail(
            id,
            VtpmFailure::BindingMismatch {
                found: hex::encode(head),
                expected: hex::encode(var_digest),
            },
        );
    }
    if tail.iter().any(|&b| b != 0) {
        return fail(id, VtpmFailure::BindingTail(hex::encode(tail)));
    }
    pass(
        id,
        format!(
            "REPORT_DATA[0..32] = SHA-256(runtime claims, {} bytes) = {}; REPORT_DATA[32..64] zero",
            hcl.var_data.len(),
            hex::encode(var_digest)
        ),
    )
}

fn signature_check(
    ak: &AttestationKey,
    quote: &[u8],
    parsed: Option<&QuoteAttest<'_>>,
    sig: &[u8],
) -> VtpmCheckResult {
    use crate::bundle_verify::tpm::{TPM_ALG_SHA256, TPM_RH_ENDORSEMENT};
    let id = VtpmCheckId::QuoteSignature;
    let block = match rsassa_block(sig, ak.key.size()) {
        Ok(b) => b,
        Err(e) => return fail(id, VtpmFailure::SignatureFormat(e)),
    };
    let digest = Sha256::digest(quote);
    if ak
        .key
        .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, block)
        .is_err()
    {
        return fail(id, VtpmFailure::SignatureInvalid);
    }
    // A restricted key signs only what the TPM generated, and the TPM writes the signer's own
    // Qualified Name into the quote: it must be HCLAkPub's, as the paravisor's template makes it.
    let Some(q) = parsed else {
        return fail(id, VtpmFailure::Prerequisite(VtpmCheckId::Quote));
    };
    match q.check_signer(TPM_RH_ENDORSEMENT, TPM_ALG_SHA256, &ak.tpmt_public()) {
        Ok(qn) => pass(
            id,
            format!(
                "RSASSA-PKCS1-v1_5 over SHA-256(quote, {} bytes) verifies with HCLAkPub, and \
                 qualifiedSigner is its Qualified Name {} (paravisor AK template, endorsement \
                 hierarchy)",
                quote.len(),
                hex::encode(qn)
            ),
        ),
        Err(e) => fail(id, VtpmFailure::QuoteSigner(e)),
    }
}

/// Check A6 on a parsed quote: every non-empty selection is of the SHA-256 bank and pcrDigest is
/// SHA-256 of `pcrs` (index = PCR number) for the selected PCRs in order. Returns the selected
/// PCRs (in digest order) and a detail line, or the failure.
pub fn check_pcr_digest(
    q: &QuoteAttest<'_>,
    pcrs: &[[u8; PCR_SIZE]],
) -> Result<(Vec<usize>, String), VtpmFailure> {
    let selected = q.sha256_selection().map_err(VtpmFailure::Selection)?;
    let mut h = Sha256::new();
    for &i in &selected {
        let v = pcrs.get(i).ok_or(VtpmFailure::PcrMissing {
            pcr: i,
            supplied: pcrs.len(),
        })?;
        h.update(v);
    }
    let computed: [u8; 32] = h.finalize().into();
    if q.pcr_digest.len() != 32 {
        return Err(VtpmFailure::PcrDigestLength(q.pcr_digest.len()));
    }
    let ranges = pcr_ranges(&selected);
    if q.pcr_digest != computed {
        return Err(VtpmFailure::PcrDigestMismatch {
            quoted: hex::encode(q.pcr_digest),
            computed: hex::encode(computed),
            pcrs: ranges,
        });
    }
    Ok((
        selected,
        format!(
            "SHA-256 bank, PCR{ranges}: pcrDigest = SHA-256 of the supplied values = {}",
            hex::encode(computed)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(pcr_ranges(&(0..24).collect::<Vec<_>>()), "0-23");
        assert_eq!(pcr_ranges(&[0, 2, 4, 5, 6, 7, 9]), "0,2,4-7,9");
        assert_eq!(pcr_ranges(&[]), "");
    }

    #[test]
    fn pcr_lists() {
        let one = "aa".repeat(32);
        assert_eq!(
            parse_pcr_values(&format!("{one}\n\n{one}\r\n"))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(parse_pcr_values(" \n"), Err(PcrListError::Empty));
        assert!(matches!(
            parse_pcr_values(&format!("{one}\nzz")),
            Err(PcrListError::Line { line: 2, .. })
        ));
        assert!(matches!(
            parse_pcr_values(&one[..62]),
            Err(PcrListError::Line { line: 1, .. })
        ));
    }
}
