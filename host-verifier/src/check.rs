//! The named checks of an appraisal, their outcomes and the typed reasons for failure.

use serde::Serialize;
use svsm_abi::snp::{Product, ReportError, SigningKey};

/// Every check the SNP appraisal runs, in the order it reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum CheckId {
    /// VERSION is one this verifier knows (2, 3, 5; 4 is read as 3).
    ReportVersion,
    /// Every field the version reserves is zero, signature padding included.
    ReportReserved,
    /// SIGNATURE_ALGO is 1 (ECDSA P-384 with SHA-384).
    ReportSignatureAlgo,
    /// KEY_INFO names a signing key (VCEK or VLEK) and the chip key is not masked.
    ReportKeyInfo,
    /// GUEST POLICY has bit 17 set and bits 63:26 clear.
    ReportGuestPolicy,
    /// The product is known and every source agrees (CPUID, VEK productName, chain).
    Product,
    /// The pinned ARK of the product is self-signed (RSA-PSS SHA-384) and a CA.
    ChainArk,
    /// The pinned ASK (VCEK) or ASVK (VLEK) is signed by the ARK.
    ChainIntermediate,
    /// The VEK is signed by that ASK/ASVK and holds a P-384 key.
    ChainVek,
    /// The VEK's subject (SEV-VCEK / SEV-VLEK) matches KEY_INFO's signer.
    VekKind,
    /// ARK, intermediate and VEK are valid at the appraisal time.
    CertValidity,
    /// The optional CRL is ARK-signed, current, and does not revoke the intermediate.
    Crl,
    /// The report signature (bytes 0..0x2A0) verifies with the VEK.
    ReportSignature,
    /// The VEK's AMD extensions are well formed (DER INTEGER SPLs, no duplicates).
    VekExtensions,
    /// The VEK's SPLs equal REPORTED_TCB decoded with the product's layout.
    VekTcb,
    /// VCEK hwID equals CHIP_ID (64 bytes, Turin 8); a VLEK carries a cspID.
    VekIdentity,
    /// DEBUG is not allowed by the guest policy (unless the policy permits it).
    PolicyDebug,
    /// MIGRATE_MA and an associated migration agent, as the policy permits.
    PolicyMigrationAgent,
    /// SMT, as the policy permits.
    PolicySmt,
    /// Firmware ABI (current and committed) and the guest policy's ABI at least the minimum.
    PolicyAbi,
    /// VMPL equals the required one.
    PolicyVmpl,
    /// MEASUREMENT is in the allowlist.
    PolicyMeasurement,
    /// Reported, committed and current TCB at least the per-component minimum.
    PolicyTcbMinimum,
    /// LAUNCH_TCB (the TCB the guest was launched on) at least the per-component minimum.
    PolicyLaunchTcbMinimum,
    /// REPORTED_TCB equals CURRENT_TCB (the firmware the guest runs on is the one it reports).
    PolicyTcbCurrent,
    /// CHIP_ID is in the allowlist.
    PolicyChipId,
    /// The signer kind (VCEK / VLEK) is allowed; a VLEK's cspID is allowed.
    PolicySigningKey,
    /// FAMILY_ID equals the expected value.
    PolicyFamilyId,
    /// IMAGE_ID equals the expected value.
    PolicyImageId,
    /// HOST_DATA equals the expected value.
    PolicyHostData,
    /// REPORT_DATA equals the expected value (the verifier's nonce or binding).
    PolicyReportData,
    /// Required PLATFORM_INFO bits set, forbidden ones clear; unknown bits reported.
    PolicyPlatformInfo,
    /// GUEST_SVN at least the minimum.
    PolicyGuestSvn,
    /// ID_KEY_DIGEST and AUTHOR_KEY_DIGEST in their allowlists.
    PolicyIdKey,
    /// The product is in the allowlist.
    PolicyProduct,
}

impl CheckId {
    /// Every check, in report order.
    pub const ALL: [CheckId; 35] = [
        CheckId::ReportVersion,
        CheckId::ReportReserved,
        CheckId::ReportSignatureAlgo,
        CheckId::ReportKeyInfo,
        CheckId::ReportGuestPolicy,
        CheckId::Product,
        CheckId::ChainArk,
        CheckId::ChainIntermediate,
        CheckId::ChainVek,
        CheckId::VekKind,
        CheckId::CertValidity,
        CheckId::Crl,
        CheckId::ReportSignature,
        CheckId::VekExtensions,
        CheckId::VekTcb,
        CheckId::VekIdentity,
        CheckId::PolicyDebug,
        CheckId::PolicyMigrationAgent,
        CheckId::PolicySmt,
        CheckId::PolicyAbi,
        CheckId::PolicyVmpl,
        CheckId::PolicyMeasurement,
        CheckId::PolicyTcbMinimum,
        CheckId::PolicyLaunchTcbMinimum,
        CheckId::PolicyTcbCurrent,
        CheckId::PolicyChipId,
        CheckId::PolicySigningKey,
        CheckId::PolicyFamilyId,
        CheckId::PolicyImageId,
        CheckId::PolicyHostData,
        CheckId::PolicyReportData,
        CheckId::PolicyPlatformInfo,
        CheckId::PolicyGuestSvn,
        CheckId::PolicyIdKey,
        CheckId::PolicyProduct,
    ];

    /// The stable name used in output (`report.signature`, `policy.debug`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            CheckId::ReportVersion => "report.version",
            CheckId::ReportReserved => "report.reserved",
            CheckId::ReportSignatureAlgo => "report.signature_algo",
            CheckId::ReportKeyInfo => "report.key_info",
            CheckId::ReportGuestPolicy => "report.guest_policy",
            CheckId::Product => "product",
            CheckId::ChainArk => "chain.ark",
            CheckId::ChainIntermediate => "chain.intermediate",
            CheckId::ChainVek => "chain.vek",
            CheckId::VekKind => "vek.kind",
            CheckId::CertValidity => "cert.validity",
            CheckId::Crl => "crl",
            CheckId::ReportSignature => "report.signature",
            CheckId::VekExtensions => "vek.extensions",
            CheckId::VekTcb => "vek.tcb",
            CheckId::VekIdentity => "vek.identity",
            CheckId::PolicyDebug => "policy.debug",
            CheckId::PolicyMigrationAgent => "policy.migration_agent",
            CheckId::PolicySmt => "policy.smt",
            CheckId::PolicyAbi => "policy.abi",
            CheckId::PolicyVmpl => "policy.vmpl",
            CheckId::PolicyMeasurement => "policy.measurement",
            CheckId::PolicyTcbMinimum => "policy.tcb_minimum",
            CheckId::PolicyLaunchTcbMinimum => "policy.launch_tcb_minimum",
            CheckId::PolicyTcbCurrent => "policy.tcb_current",
            CheckId::PolicyChipId => "policy.chip_id",
            CheckId::PolicySigningKey => "policy.signing_key",
            CheckId::PolicyFamilyId => "policy.family_id",
            CheckId::PolicyImageId => "policy.image_id",
            CheckId::PolicyHostData => "policy.host_data",
            CheckId::PolicyReportData => "policy.report_data",
            CheckId::PolicyPlatformInfo => "policy.platform_info",
            CheckId::PolicyGuestSvn => "policy.guest_svn",
            CheckId::PolicyIdKey => "policy.id_key",
            CheckId::PolicyProduct => "policy.product",
        }
    }

    /// The AR4SI trustworthiness claim this check contributes to.
    pub const fn trust_claim(self) -> TrustClaimName {
        match self {
            CheckId::ReportVersion
            | CheckId::ReportReserved
            | CheckId::ReportSignatureAlgo
            | CheckId::ReportKeyInfo
            | CheckId::ReportSignature
            | CheckId::VekKind
            | CheckId::VekIdentity
            | CheckId::PolicyChipId
            | CheckId::PolicySigningKey
            | CheckId::PolicyReportData => TrustClaimName::InstanceIdentity,
            CheckId::Product
            | CheckId::ChainArk
            | CheckId::ChainIntermediate
            | CheckId::ChainVek
            | CheckId::CertValidity
            | CheckId::Crl
            | CheckId::VekExtensions
            | CheckId::VekTcb
            | CheckId::PolicyTcbMinimum
            | CheckId::PolicyLaunchTcbMinimum
            | CheckId::PolicyTcbCurrent
            | CheckId::PolicyProduct => TrustClaimName::Hardware,
            CheckId::ReportGuestPolicy
            | CheckId::PolicyMigrationAgent
            | CheckId::PolicySmt
            | CheckId::PolicyAbi
            | CheckId::PolicyVmpl
            | CheckId::PolicyPlatformInfo
            | CheckId::PolicyHostData => TrustClaimName::Configuration,
            CheckId::PolicyDebug => TrustClaimName::RuntimeOpaque,
            CheckId::PolicyMeasurement
            | CheckId::PolicyFamilyId
            | CheckId::PolicyImageId
            | CheckId::PolicyGuestSvn
            | CheckId::PolicyIdKey => TrustClaimName::Executables,
        }
    }
}

/// What the output (text summary, EAR) needs to know about a family of named checks.
pub trait NamedCheck: Copy {
    /// The stable name used in output.
    fn check_name(self) -> &'static str;
    /// The AR4SI trustworthiness claim the check contributes to.
    fn claim(self) -> TrustClaimName;
    /// Whether a failure of this check is a failed cryptographic validation (EAR value 99).
    fn cryptographic(self) -> bool;
}

impl NamedCheck for CheckId {
    fn check_name(self) -> &'static str {
        self.name()
    }
    fn claim(self) -> TrustClaimName {
        self.trust_claim()
    }
    fn cryptographic(self) -> bool {
        matches!(
            self,
            CheckId::ReportSignature
                | CheckId::ChainArk
                | CheckId::ChainIntermediate
                | CheckId::ChainVek
                | CheckId::Crl
        )
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The AR4SI trustworthiness-vector claims the SNP checks feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub enum TrustClaimName {
    /// `instance-identity`: the report is genuinely from this VEK / chip.
    InstanceIdentity,
    /// `hardware`: genuine AMD part at an acceptable TCB.
    Hardware,
    /// `configuration`: platform and guest configuration acceptable.
    Configuration,
    /// `executables`: the launched image is the expected one.
    Executables,
    /// `runtime-opaque`: guest memory is not visible to the host.
    RuntimeOpaque,
}

impl TrustClaimName {
    /// The claim's name in an EAR trust vector.
    pub const fn ear_name(self) -> &'static str {
        match self {
            TrustClaimName::InstanceIdentity => "instance-identity",
            TrustClaimName::Hardware => "hardware",
            TrustClaimName::Configuration => "configuration",
            TrustClaimName::Executables => "executables",
            TrustClaimName::RuntimeOpaque => "runtime-opaque",
        }
    }
}

/// A certificate's role in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum CertRole {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (issues VCEKs).
    Ask,
    /// AMD SEV VLEK Key (issues VLEKs).
    Asvk,
    /// The VCEK or VLEK.
    Vek,
    /// The CRL.
    Crl,
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertRole::Ark => "ARK",
            CertRole::Ask => "ASK",
            CertRole::Asvk => "ASVK",
            CertRole::Vek => "VEK",
            CertRole::Crl => "CRL",
        })
    }
}

/// Which SPL of a TCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum SplName {
    /// FMC (Turin).
    Fmc,
    /// Boot loader.
    BootLoader,
    /// PSP OS (TEE).
    Tee,
    /// SNP firmware.
    Snp,
    /// Microcode.
    Microcode,
    /// Reserved SPL 4..7 (KDS spl_4..spl_7).
    Reserved(u8),
}

impl std::fmt::Display for SplName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplName::Fmc => f.write_str("fmcSPL"),
            SplName::BootLoader => f.write_str("blSPL"),
            SplName::Tee => f.write_str("teeSPL"),
            SplName::Snp => f.write_str("snpSPL"),
            SplName::Microcode => f.write_str("ucodeSPL"),
            SplName::Reserved(n) => write!(f, "spl_{n}"),
        }
    }
}

/// Which TCB field of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum TcbField {
    /// REPORTED_TCB.
    Reported,
    /// COMMITTED_TCB.
    Committed,
    /// CURRENT_TCB.
    Current,
    /// LAUNCH_TCB.
    Launch,
}

/// Why a check failed: one specific variant per reason, so tests and callers can match on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// A report field the version reserves is not zero, or the signature padding is not.
    #[error("{0}")]
    Reserved(ReportError),
    /// SIGNATURE_ALGO is not 1.
    #[error("SIGNATURE_ALGO is {0}, only 1 (ECDSA P-384 SHA-384) is defined")]
    SignatureAlgo(u32),
    /// KEY_INFO.SIGNING_KEY is 7: the report is unsigned.
    #[error("KEY_INFO.SIGNING_KEY is 7: the report is unsigned")]
    Unsigned,
    /// KEY_INFO.SIGNING_KEY is a reserved value.
    #[error("KEY_INFO.SIGNING_KEY is reserved value {0}")]
    ReservedSigningKey(u8),
    /// MASK_CHIP_KEY is set: the VCEK did not sign the report.
    #[error(
        "KEY_INFO.MASK_CHIP_KEY is set: the chip key is masked, the report is not VCEK-signed"
    )]
    ChipKeyMasked,
    /// GUEST POLICY bit 17 (must be one) is clear.
    #[error("guest policy bit 17 (reserved, must be 1) is clear")]
    PolicyMustBeOne,
    /// GUEST POLICY reserved bits set.
    #[error("guest policy reserved bits {0:#x} are set")]
    PolicyReservedBits(u64),
    /// CPUID family/model of a v3+ report names no known product.
    #[error("CPUID family {family:#04x} model {model:#04x} is not a known SEV-SNP product")]
    UnknownCpuid {
        /// CPUID_FAM_ID.
        family: u8,
        /// CPUID_MOD_ID.
        model: u8,
    },
    /// The product could not be determined (v2 report, no chain and no productName).
    #[error("the product cannot be determined: {0}")]
    ProductUnknown(&'static str),
    /// Two sources name different products.
    #[error("product mismatch: {first_source} says {first:?}, {second_source} says {second}")]
    ProductMismatch {
        /// Where the first came from.
        first_source: &'static str,
        /// The first product.
        first: Product,
        /// Where the second came from.
        second_source: &'static str,
        /// The second (a product or a name).
        second: String,
    },
    /// A certificate signature algorithm is not RSASSA-PSS with SHA-384/MGF1-SHA-384/salt 48.
    #[error("{role} signature algorithm is not RSASSA-PSS SHA-384 (MGF1 SHA-384, salt 48, trailer 1): {detail}")]
    SignatureAlgorithm {
        /// Certificate.
        role: CertRole,
        /// What differed.
        detail: String,
    },
    /// An RSA-PSS signature over a certificate does not verify.
    #[error("{role} is not signed by the {issuer} ({detail})")]
    CertSignature {
        /// The signed certificate.
        role: CertRole,
        /// The expected signer.
        issuer: CertRole,
        /// Library message.
        detail: String,
    },
    /// The issuer name of a certificate is not the subject of the expected issuer.
    #[error("{role} issuer is {found:?}, expected {expected:?}")]
    IssuerName {
        /// The certificate.
        role: CertRole,
        /// The expected issuer CN.
        expected: String,
        /// The found issuer CN.
        found: String,
    },
    /// No pinned intermediate of any product issued the VEK (v2 reports).
    #[error("no pinned {kind} of Milan, Genoa or Turin issued this VEK (issuer {issuer:?})")]
    NoPinnedIssuer {
        /// ASK or ASVK.
        kind: CertRole,
        /// The VEK's issuer CN.
        issuer: String,
    },
    /// A CA certificate lacks CA basic constraints / keyCertSign.
    #[error("{role} is not a CA certificate: {detail}")]
    NotCa {
        /// Certificate.
        role: CertRole,
        /// What is missing.
        detail: &'static str,
    },
    /// A certificate's public key is not what it must be.
    #[error("{role} public key: {detail}")]
    PublicKey {
        /// Certificate.
        role: CertRole,
        /// What is wrong.
        detail: String,
    },
    /// The VEK subject names a different signer than KEY_INFO.
    #[error("KEY_INFO says {report:?} but the certificate is a {cert}")]
    SignerMismatch {
        /// From KEY_INFO.
        report: SigningKey,
        /// From the certificate subject CN.
        cert: String,
    },
    /// A certificate is expired at the appraisal time.
    #[error("{role} expired at {not_after} (appraisal time {at})")]
    Expired {
        /// Certificate.
        role: CertRole,
        /// notAfter, RFC 3339.
        not_after: String,
        /// Appraisal time, RFC 3339.
        at: String,
    },
    /// A certificate is not yet valid at the appraisal time.
    #[error("{role} not valid before {not_before} (appraisal time {at})")]
    NotYetValid {
        /// Certificate.
        role: CertRole,
        /// notBefore, RFC 3339.
        not_before: String,
        /// Appraisal time, RFC 3339.
        at: String,
    },
    /// The CRL does not parse.
    #[error("CRL is malformed: {0}")]
    CrlMalformed(String),
    /// The CRL issuer is not the product's ARK.
    #[error("CRL issuer {found:?} is not the ARK {expected:?}")]
    CrlIssuer {
        /// ARK CN.
        expected: String,
        /// CRL issuer CN.
        found: String,
    },
    /// The CRL's thisUpdate is after the appraisal time, or nextUpdate before it.
    #[error("CRL is not current: {0}")]
    CrlStale(String),
    /// The CRL has no nextUpdate: it would be current forever, so whoever supplies it could
    /// keep replaying a list from before a revocation.
    #[error("CRL has no nextUpdate, so it never expires; refused")]
    CrlNoNextUpdate,
    /// The CRL revokes a certificate of the chain.
    #[error("{role} (serial {serial}) is revoked by the CRL")]
    Revoked {
        /// Certificate.
        role: CertRole,
        /// Its serial, hex.
        serial: String,
    },
    /// The report signature does not verify.
    #[error("report signature does not verify with the VEK")]
    SignatureInvalid,
    /// R or S out of range.
    #[error("report signature R or S is zero or not below the group order")]
    SignatureRange,
    /// An AMD extension is malformed.
    #[error("VEK extension {oid}: {detail}")]
    ExtensionMalformed {
        /// Dotted OID.
        oid: String,
        /// What is wrong.
        detail: String,
    },
    /// An extension appears twice.
    #[error("VEK extension {0} appears more than once")]
    ExtensionDuplicate(String),
    /// A critical extension this verifier does not understand.
    #[error("VEK has unknown critical extension {0}")]
    ExtensionCritical(String),
    /// A required extension is missing.
    #[error("VEK lacks extension {0}")]
    ExtensionMissing(&'static str),
    /// An extension that must be absent for this product / key kind is present.
    #[error("VEK carries {0}, which this product / key kind must not have")]
    ExtensionUnexpected(&'static str),
    /// An SPL of the VEK differs from REPORTED_TCB.
    #[error("VEK {spl} is {cert} but REPORTED_TCB has {report}")]
    SplMismatch {
        /// Which SPL.
        spl: SplName,
        /// In the certificate.
        cert: u8,
        /// In the report.
        report: u8,
    },
    /// hwID differs from CHIP_ID.
    #[error("VCEK hwID {cert} does not equal CHIP_ID {report}")]
    HwIdMismatch {
        /// Hex of hwID.
        cert: String,
        /// Hex of CHIP_ID.
        report: String,
    },
    /// hwID has the wrong length for the product.
    #[error("VCEK hwID is {found} bytes, {expected} expected for this product")]
    HwIdLength {
        /// Expected.
        expected: usize,
        /// Found.
        found: usize,
    },
    /// Turin CHIP_ID bytes 8..64 are not zero.
    #[error("CHIP_ID bytes 8..64 must be zero on Turin")]
    ChipIdTail,
    /// The guest policy allows debugging.
    #[error("guest policy allows DEBUG: the host can read guest memory")]
    DebugAllowed,
    /// The guest policy allows a migration agent.
    #[error("guest policy allows a migration agent (MIGRATE_MA)")]
    MigrationAgentAllowed,
    /// A migration agent is associated (REPORT_ID_MA is not all 0xFF).
    #[error("a migration agent is associated (REPORT_ID_MA {0})")]
    MigrationAgentPresent(String),
    /// SMT is enabled on the host but the policy forbids it.
    #[error("SMT is enabled on the host (PLATFORM_INFO.SMT_EN) and the policy forbids it")]
    SmtEnabled,
    /// Firmware or guest-policy ABI below the minimum.
    #[error("{what} {found} is below the minimum {min}")]
    AbiTooOld {
        /// Which version.
        what: &'static str,
        /// Found major.minor.
        found: String,
        /// Required major.minor.
        min: String,
    },
    /// VMPL differs.
    #[error("VMPL is {found}, policy requires {expected}")]
    Vmpl {
        /// Required.
        expected: u32,
        /// Found.
        found: u32,
    },
    /// MEASUREMENT not in the allowlist.
    #[error("MEASUREMENT {0} is not in the allowlist")]
    MeasurementNotAllowed(String),
    /// A TCB component below the minimum.
    #[error("{field:?}_TCB {spl} is {found}, minimum {min}")]
    TcbBelowMinimum {
        /// Which TCB of the report.
        field: TcbField,
        /// Which SPL.
        spl: SplName,
        /// Found.
        found: u8,
        /// Minimum.
        min: u8,
    },
    /// The report is older than the policy's minimum version.
    #[error("report version {found} is below the policy's minimum {min}")]
    ReportVersionBelowMinimum {
        /// The report's version.
        found: u32,
        /// The policy's minimum.
        min: u32,
    },
    /// REPORTED_TCB is not CURRENT_TCB and the policy requires them equal.
    #[error("REPORTED_TCB {reported:#018x} is not CURRENT_TCB {current:#018x}")]
    TcbNotCurrent {
        /// REPORTED_TCB, raw.
        reported: u64,
        /// CURRENT_TCB, raw.
        current: u64,
    },
    /// CHIP_ID not allowed (or masked while an allowlist is set).
    #[error("CHIP_ID {0} is not in the allowlist")]
    ChipIdNotAllowed(String),
    /// The signer kind is not allowed.
    #[error("signing key {0:?} is not allowed by the policy")]
    SigningKeyNotAllowed(SigningKey),
    /// The VLEK's cspID is not allowed.
    #[error("VLEK cspID {0:?} is not allowed by the policy")]
    CspIdNotAllowed(String),
    /// A report field differs from the expected value.
    #[error("{field} is {found}, expected {expected}")]
    FieldMismatch {
        /// Field name.
        field: &'static str,
        /// Hex found.
        found: String,
        /// Hex expected.
        expected: String,
    },
    /// A required PLATFORM_INFO bit is clear.
    #[error("PLATFORM_INFO {0} is required but clear")]
    PlatformInfoMissing(String),
    /// A forbidden PLATFORM_INFO bit is set.
    #[error("PLATFORM_INFO {0} is forbidden but set")]
    PlatformInfoForbidden(String),
    /// GUEST_SVN below the minimum.
    #[error("GUEST_SVN {found} is below the minimum {min}")]
    GuestSvn {
        /// Found.
        found: u32,
        /// Minimum.
        min: u32,
    },
    /// A digest not in its allowlist.
    #[error("{field} {found} is not in the allowlist")]
    DigestNotAllowed {
        /// Field name.
        field: &'static str,
        /// Hex found.
        found: String,
    },
    /// The product is not in the allowlist.
    #[error("product {0:?} is not allowed by the policy")]
    ProductNotAllowed(Product),
    /// A prerequisite check failed, so this one cannot pass.
    #[error("cannot pass: prerequisite check {0} failed")]
    Prerequisite(CheckId),
}

/// The outcome of one check. `F` is the failure type of the check family: [`Failure`] for the
/// SNP checks, [`crate::azure::VtpmFailure`] for the Azure vTPM checks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome<F = Failure> {
    /// The check ran and passed.
    Pass,
    /// The check ran and failed, for this reason.
    Fail(F),
    /// The check does not apply to this evidence or was not asked for; the string says why.
    NotApplicable(String),
}

impl<F> Outcome<F> {
    /// "pass", "fail" or "not-applicable".
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::NotApplicable(_) => "not-applicable",
        }
    }
}

/// One reported check: an SNP check by default, or (with [`crate::azure::VtpmCheckId`] and
/// [`crate::azure::VtpmFailure`]) an Azure vTPM check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult<I = CheckId, F = Failure> {
    /// Which check.
    pub id: I,
    /// What happened.
    pub outcome: Outcome<F>,
    /// What was compared (for a human; empty when there is nothing to add).
    pub detail: String,
}

impl<I, F> CheckResult<I, F> {
    /// The failure, if the check failed.
    pub fn failure(&self) -> Option<&F> {
        match &self.outcome {
            Outcome::Fail(f) => Some(f),
            _ => None,
        }
    }
}
