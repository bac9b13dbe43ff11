//! The SNP appraisal: every check of [`CheckId::ALL`], in order, on one report.

use crate::appraisal::{Appraisal, VekSummary};
use crate::check::{CertRole, CheckId, CheckResult, Failure, Outcome, SplName, TcbField};
use crate::decoded::{signing_key_name, DecodedReport};
use crate::ecdsa::{self, EcdsaError, PreparedKey};
use crate::error::Error;
use crate::kds;
use crate::policy::{platform_info_names, Policy};
use crate::trust::{ProductAnchors, TrustStore};
use crate::vek::{VekCert, VekKind};
use crate::x509::{rfc3339, unix_secs};
use sha2::{Digest, Sha256, Sha384};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;
use svsm_abi::snp::policy::PolicyFlags;
use svsm_abi::snp::{
    AttestationReport, PlatformInfo, Product, ReportVersion, SigningKey, TcbLayout,
};

/// The evidence of one appraisal. Everything in it is untrusted.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// The 1184-byte ATTESTATION_REPORT.
    pub report: &'a [u8],
    /// The VCEK or VLEK, PEM or DER. `None` makes the appraisal fail with the KDS URL.
    pub vek: Option<&'a [u8]>,
    /// An optional DER CRL from AMD's KDS.
    pub crl: Option<&'a [u8]>,
    /// The time at which certificates and the CRL must be valid.
    pub at: SystemTime,
}

/// Most VEKs kept by one verifier (each up to about 1 MB with its key table); the cache is
/// emptied when full.
pub const VEK_CACHE_LIMIT: usize = 64;

struct VekEntry {
    vek: VekCert,
    /// Per trust-store product: [ASK link, ASVK link].
    links: Vec<[OnceLock<Result<(), Failure>>; 2]>,
    prepared: OnceLock<Option<PreparedKey>>,
    uses: AtomicU32,
}

/// Appraises SNP evidence against pinned AMD anchors and a policy. Verified VEK chains and the
/// VEK's precomputed key tables are cached per VEK (by SHA-256 of its bytes), so appraising many
/// reports of one VEK costs one ECDSA verification each.
pub struct Verifier {
    trust: Arc<TrustStore>,
    policy: Policy,
    cache: Mutex<HashMap<[u8; 32], Arc<VekEntry>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn pass(id: CheckId, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        id,
        outcome: Outcome::Pass,
        detail: detail.into(),
    }
}

fn fail(id: CheckId, f: Failure) -> CheckResult {
    CheckResult {
        id,
        outcome: Outcome::Fail(f),
        detail: String::new(),
    }
}

fn na(id: CheckId, why: impl Into<String>) -> CheckResult {
    CheckResult {
        id,
        outcome: Outcome::NotApplicable(why.into()),
        detail: String::new(),
    }
}

fn from_result(id: CheckId, r: Result<String, Failure>) -> CheckResult {
    match r {
        Ok(d) => pass(id, d),
        Err(f) => fail(id, f),
    }
}

fn role_index(role: CertRole) -> usize {
    usize::from(role == CertRole::Asvk)
}

impl Verifier {
    /// A verifier with the pinned AMD anchors.
    pub fn new(policy: Policy) -> Result<Self, Error> {
        Ok(Self::with_trust_store(TrustStore::pinned()?, policy))
    }

    /// A verifier with other anchors (tests, future AMD products).
    pub fn with_trust_store(trust: Arc<TrustStore>, policy: Policy) -> Self {
        Verifier {
            trust,
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn entry(&self, vek_bytes: &[u8]) -> Result<Arc<VekEntry>, Error> {
        let key: [u8; 32] = Sha256::digest(vek_bytes).into();
        if let Some(e) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(e);
        }
        let vek = VekCert::from_bytes(vek_bytes).map_err(Error::VekDecode)?;
        let entry = Arc::new(VekEntry {
            vek,
            links: self
                .trust
                .products()
                .map(|_| [OnceLock::new(), OnceLock::new()])
                .collect(),
            prepared: OnceLock::new(),
            uses: AtomicU32::new(0),
        });
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= VEK_CACHE_LIMIT {
                c.clear();
            }
            c.insert(key, entry.clone());
        }
        Ok(entry)
    }

    fn link<'e>(
        &self,
        entry: &'e VekEntry,
        index: usize,
        anchors: &ProductAnchors,
        role: CertRole,
    ) -> &'e Result<(), Failure> {
        static NONE: Result<(), Failure> = Err(Failure::ProductUnknown("no such anchor"));
        let Some(slot) = entry.links.get(index).and_then(|l| l.get(role_index(role))) else {
            return &NONE;
        };
        slot.get_or_init(|| {
            let ca = anchors.intermediate(role);
            let vek = &entry.vek.cert;
            if vek.issuer_der() != ca.subject_der {
                return Err(Failure::IssuerName {
                    role: CertRole::Vek,
                    expected: ca.cert.subject_cn.clone(),
                    found: vek.issuer_cn.clone(),
                });
            }
            ca.key.verify_cert(vek, CertRole::Vek, role)
        })
    }

    fn missing_vek(&self, report: &AttestationReport<'_>, product: Option<Product>) -> Error {
        let raw = report.raw();
        if report.key_info().signing_key() == SigningKey::Vlek {
            return Error::VekMissing {
                reason: "the report is VLEK-signed; the cloud provider supplies the VLEK \
                         (extended report certificate table), KDS does not serve it"
                    .into(),
                urls: Vec::new(),
            };
        }
        if raw.chip_id.iter().all(|&b| b == 0) {
            return Error::VekMissing {
                reason: "CHIP_ID is masked (all zero), so no VCEK URL can be built".into(),
                urls: Vec::new(),
            };
        }
        let products: Vec<Product> = match product {
            Some(p) => vec![p],
            None => vec![Product::Milan, Product::Genoa],
        };
        Error::VekMissing {
            reason: if product.is_some() {
                String::new()
            } else {
                "a version 2 report does not name its product; ".into()
            },
            urls: products
                .into_iter()
                .map(|p| kds::vcek_url(p, &raw.chip_id, raw.reported_tcb))
                .collect(),
        }
    }

    /// Appraises one report. `Err` only when the evidence cannot be appraised at all (report
    /// length or version, no VEK, VEK not a certificate); every other problem is a failed check.
    pub fn verify(&self, ev: &Evidence<'_>) -> Result<Appraisal, Error> {
        let report = AttestationReport::parse(ev.report)?;
        let signer = report.key_info().signing_key();
        let cpuid_product = report.cpuid().map(|(family, model, _)| {
            Product::from_cpuid(family, model).ok_or(Failure::UnknownCpuid { family, model })
        });
        let Some(vek_bytes) = ev.vek else {
            return Err(self.missing_vek(&report, cpuid_product.and_then(Result::ok)));
        };
        let entry = self.entry(vek_bytes)?;
        let vek = &entry.vek;
        let ext = vek.extensions();
        let int_role = match (signer, vek.kind()) {
            (SigningKey::Vlek, _) => CertRole::Asvk,
            (SigningKey::Vcek, _) => CertRole::Ask,
            (_, Some(VekKind::Vlek)) => CertRole::Asvk,
            _ => CertRole::Ask,
        };
        let name_product = ext.as_ref().ok().and_then(|e| e.product());

        // The pinned ARK self-signature and ARK->ASK/ASVK link are verified once per process;
        // the first time, on a second core while this thread checks the VEK and the report.
        let early = match &cpuid_product {
            Some(Ok(p)) => Some(*p),
            Some(Err(_)) => None,
            None => name_product,
        };
        let warm = early
            .and_then(|p| self.trust.product(p))
            .filter(|a| !a.links_ready(int_role));
        std::thread::scope(|scope| {
            if let Some(a) = warm {
                // If no thread can be started, the links are verified below on this thread.
                let _ = std::thread::Builder::new().spawn_scoped(scope, move || {
                    let _ = a.ark_status();
                    let _ = a.intermediate_status(int_role);
                });
            }
            self.appraise(ev, &report, &entry, cpuid_product, int_role, name_product)
        })
    }

    fn appraise(
        &self,
        ev: &Evidence<'_>,
        report: &AttestationReport<'_>,
        entry: &VekEntry,
        cpuid_product: Option<Result<Product, Failure>>,
        int_role: CertRole,
        name_product: Option<Product>,
    ) -> Result<Appraisal, Error> {
        let raw = report.raw();
        let key_info = report.key_info();
        let signer = key_info.signing_key();
        let vek = &entry.vek;
        let ext = vek.extensions();

        // Chain: with a CPUID product only that product's chain; for v2, every pinned chain
        // (productName's first), and the one that verifies names the product.
        let mut candidates: Vec<(usize, &ProductAnchors)> =
            self.trust.products().enumerate().collect();
        match &cpuid_product {
            Some(Ok(p)) => candidates.retain(|(_, a)| a.product() == *p),
            Some(Err(_)) => candidates.clear(),
            None => candidates.sort_by_key(|(_, a)| Some(a.product()) != name_product),
        }
        let mut chain: Option<(usize, &ProductAnchors)> = None;
        let mut link_failures: Vec<Failure> = Vec::new();
        for (i, a) in &candidates {
            match self.link(entry, *i, a, int_role) {
                Ok(()) => {
                    chain = Some((*i, a));
                    break;
                }
                Err(f) => link_failures.push(f.clone()),
            }
        }
        let product = match &cpuid_product {
            Some(Ok(p)) => Some(*p),
            Some(Err(_)) => None,
            None => chain.map(|(_, a)| a.product()).or(name_product),
        };
        let anchors: Option<(usize, &ProductAnchors)> = product.and_then(|p| {
            self.trust
                .products()
                .enumerate()
                .find(|(_, a)| a.product() == p)
        });
        let layout = product.map(Product::tcb_layout);
        let at = ev.at;
        let mut checks: Vec<CheckResult> = Vec::with_capacity(CheckId::ALL.len());

        // --- report structure ---
        let version = match report.version() {
            ReportVersion::V4 => "version 4, read with the version 3 layout".to_string(),
            v => format!("version {}", v.number()),
        };
        checks.push(match self.policy.min_report_version {
            None => na(
                CheckId::ReportVersion,
                format!("{version}; no min_report_version in the policy"),
            ),
            Some(min) if report.version().number() < min => fail(
                CheckId::ReportVersion,
                Failure::ReportVersionBelowMinimum {
                    found: report.version().number(),
                    min,
                },
            ),
            Some(min) => pass(CheckId::ReportVersion, format!("{version} ≥ minimum {min}")),
        });
        checks.push(match report.check_reserved() {
            Ok(()) => pass(CheckId::ReportReserved, "every reserved field is zero"),
            Err(e) => fail(CheckId::ReportReserved, Failure::Reserved(e)),
        });
        let algo = raw.signature_algo.get();
        checks.push(if algo == 1 {
            pass(CheckId::ReportSignatureAlgo, "1 (ECDSA P-384 with SHA-384)")
        } else {
            fail(CheckId::ReportSignatureAlgo, Failure::SignatureAlgo(algo))
        });
        checks.push(match signer {
            SigningKey::None => fail(CheckId::ReportKeyInfo, Failure::Unsigned),
            SigningKey::Reserved(v) => fail(CheckId::ReportKeyInfo, Failure::ReservedSigningKey(v)),
            _ if key_info.mask_chip_key() => fail(CheckId::ReportKeyInfo, Failure::ChipKeyMasked),
            k => pass(
                CheckId::ReportKeyInfo,
                format!("signed by the {}", signing_key_name(k)),
            ),
        });
        let gp = report.policy();
        checks.push(if !gp.flags().contains(PolicyFlags::RESERVED_MBO) {
            fail(CheckId::ReportGuestPolicy, Failure::PolicyMustBeOne)
        } else if gp.unknown_bits() != 0 {
            fail(
                CheckId::ReportGuestPolicy,
                Failure::PolicyReservedBits(gp.unknown_bits()),
            )
        } else {
            pass(CheckId::ReportGuestPolicy, format!("{:#x}", gp.0))
        });

        // --- product ---
        checks.push(self.product_check(
            &cpuid_product,
            product,
            ext.as_ref().ok().and_then(|e| e.product_name.clone()),
            chain.map(|(_, a)| a.product()),
            report.cpuid(),
        ));

        // --- chain ---
        let need_product = |id| fail(id, Failure::Prerequisite(CheckId::Product));
        checks.push(match anchors {
            None => need_product(CheckId::ChainArk),
            Some((_, a)) => from_result(
                CheckId::ChainArk,
                a.ark_status()
                    .clone()
                    .map(|()| format!("{} (pinned), self-signed, CA", a.ark.cert.subject_cn)),
            ),
        });
        checks.push(match anchors {
            None => need_product(CheckId::ChainIntermediate),
            Some((_, a)) => from_result(
                CheckId::ChainIntermediate,
                a.intermediate_status(int_role).clone().map(|()| {
                    format!(
                        "{} (pinned {}) signed by {}",
                        a.intermediate(int_role).cert.subject_cn,
                        int_role,
                        a.ark.cert.subject_cn
                    )
                }),
            ),
        });
        checks.push(match anchors {
            None => match (cpuid_product.is_none(), link_failures.as_slice()) {
                // v2: no pinned chain issued this VEK.
                (true, fails) => fail(
                    CheckId::ChainVek,
                    fails
                        .iter()
                        .find(|f| !matches!(f, Failure::IssuerName { .. }))
                        .cloned()
                        .unwrap_or(Failure::NoPinnedIssuer {
                            kind: int_role,
                            issuer: vek.issuer_cn().to_owned(),
                        }),
                ),
                _ => need_product(CheckId::ChainVek),
            },
            Some((i, a)) => from_result(
                CheckId::ChainVek,
                self.link(entry, i, a, int_role).clone().map(|()| {
                    format!(
                        "{} signed by {} (RSA-PSS SHA-384)",
                        vek.subject_cn(),
                        a.intermediate(int_role).cert.subject_cn
                    )
                }),
            ),
        });
        checks.push(match (signer, vek.kind()) {
            (SigningKey::Vcek, Some(VekKind::Vcek)) | (SigningKey::Vlek, Some(VekKind::Vlek)) => {
                pass(
                    CheckId::VekKind,
                    format!("{} matches KEY_INFO", vek.subject_cn()),
                )
            }
            (SigningKey::Vcek | SigningKey::Vlek, _) => fail(
                CheckId::VekKind,
                Failure::SignerMismatch {
                    report: signer,
                    cert: vek.subject_cn().to_owned(),
                },
            ),
            _ => fail(
                CheckId::VekKind,
                Failure::Prerequisite(CheckId::ReportKeyInfo),
            ),
        });
        checks.push(Self::validity_check(
            vek,
            anchors.map(|(_, a)| a),
            int_role,
            at,
        ));
        checks.push(match (ev.crl, anchors) {
            (None, _) => na(
                CheckId::Crl,
                match product {
                    Some(p) => format!(
                        "no CRL supplied (AMD publishes it at {})",
                        kds::crl_url(p, int_role == CertRole::Asvk)
                    ),
                    None => "no CRL supplied".to_string(),
                },
            ),
            (Some(_), None) => need_product(CheckId::Crl),
            (Some(crl), Some((_, a))) => {
                from_result(CheckId::Crl, crate::crl::check(crl, a, int_role, at))
            }
        });

        // --- signature and VEK binding ---
        checks.push(Self::signature_check(entry, report));
        checks.push(match ext {
            Ok(e) => pass(
                CheckId::VekExtensions,
                format!(
                    "structVersion {}, productName {}, SPLs are DER INTEGERs",
                    e.struct_version.map_or("-".into(), |v| v.to_string()),
                    e.product_name.as_deref().unwrap_or("-"),
                ),
            ),
            Err(f) => fail(CheckId::VekExtensions, f.clone()),
        });
        checks.push(match (ext, layout) {
            (Err(_), _) => fail(
                CheckId::VekTcb,
                Failure::Prerequisite(CheckId::VekExtensions),
            ),
            (_, None) => need_product(CheckId::VekTcb),
            (Ok(e), Some(l)) => from_result(
                CheckId::VekTcb,
                e.check_tcb(raw.reported_tcb, l).map(|()| {
                    let c = raw.reported_tcb.decode(l);
                    format!(
                        "REPORTED_TCB {:#018x} ({}) = VEK SPLs{}",
                        raw.reported_tcb.raw(),
                        if l == TcbLayout::Turin {
                            "Turin layout"
                        } else {
                            "Milan/Genoa layout"
                        },
                        match c.fmc {
                            Some(f) => format!(
                                " fmc {f} bl {} tee {} snp {} ucode {}",
                                c.bootloader, c.tee, c.snp, c.microcode
                            ),
                            None => format!(
                                " bl {} tee {} snp {} ucode {}",
                                c.bootloader, c.tee, c.snp, c.microcode
                            ),
                        }
                    )
                }),
            ),
        });
        checks.push(Self::identity_check(vek, report, layout));

        // --- policy ---
        self.policy_checks(report, product, vek, &mut checks);

        for id in CheckId::ALL {
            if !checks.iter().any(|c| c.id == id) {
                return Err(Error::NotImplemented(id.name()));
            }
        }
        let (nb, na_) = vek.validity();
        Ok(Appraisal {
            checks,
            report: DecodedReport::new(report, product),
            product,
            signer,
            vek: VekSummary {
                subject: vek.subject_cn().to_owned(),
                issuer: vek.issuer_cn().to_owned(),
                not_before: rfc3339(nb),
                not_after: rfc3339(na_),
                product_name: ext.as_ref().ok().and_then(|e| e.product_name.clone()),
                hw_id: ext
                    .as_ref()
                    .ok()
                    .and_then(|e| e.hw_id.as_ref().map(hex::encode)),
                csp_id: ext.as_ref().ok().and_then(|e| e.csp_id.clone()),
            },
            at: unix_secs(at),
            vcek_url: product
                .filter(|_| signer == SigningKey::Vcek && raw.chip_id.iter().any(|&b| b != 0))
                .map(|p| kds::vcek_url(p, &raw.chip_id, raw.reported_tcb)),
        })
    }

    fn product_check(
        &self,
        cpuid_product: &Option<Result<Product, Failure>>,
        product: Option<Product>,
        name: Option<String>,
        chain_product: Option<Product>,
        cpuid: Option<(u8, u8, u8)>,
    ) -> CheckResult {
        let id = CheckId::Product;
        if let Some(Err(f)) = cpuid_product {
            return fail(id, f.clone());
        }
        let Some(p) = product else {
            return fail(
                id,
                Failure::ProductUnknown(
                    "version 2 report: no pinned chain issued the VEK and its productName names no known product",
                ),
            );
        };
        let first_source = if cpuid.is_some() {
            "CPUID"
        } else {
            "pinned chain"
        };
        if let Some(name) = &name {
            if Product::from_kds_name(name) != Some(p) {
                return fail(
                    id,
                    Failure::ProductMismatch {
                        first_source,
                        first: p,
                        second_source: "VEK productName",
                        second: name.clone(),
                    },
                );
            }
        }
        if let Some(c) = chain_product {
            if c != p {
                return fail(
                    id,
                    Failure::ProductMismatch {
                        first_source,
                        first: p,
                        second_source: "pinned chain",
                        second: c.kds_name().to_owned(),
                    },
                );
            }
        }
        let how = match cpuid {
            Some((f, m, s)) => format!("CPUID {f:02x}/{m:02x}/{s:02x}"),
            None => match chain_product {
                Some(_) => "version 2: from the pinned chain that issued the VEK".to_string(),
                None => "version 2: from the VEK productName only".to_string(),
            },
        };
        pass(
            id,
            format!(
                "{} ({how}; VEK productName {})",
                p.kds_name(),
                name.as_deref().unwrap_or("absent")
            ),
        )
    }

    fn validity_check(
        vek: &VekCert,
        anchors: Option<&ProductAnchors>,
        int_role: CertRole,
        at: SystemTime,
    ) -> CheckResult {
        let id = CheckId::CertValidity;
        let mut certs = vec![(CertRole::Vek, &vek.cert)];
        if let Some(a) = anchors {
            certs.push((int_role, &a.intermediate(int_role).cert));
            certs.push((CertRole::Ark, &a.ark.cert));
        }
        let mut detail = Vec::new();
        for (role, c) in &certs {
            if let Err(f) = c.check_validity(*role, at) {
                return fail(id, f);
            }
            detail.push(format!(
                "{role} {}..{}",
                rfc3339(c.not_before),
                rfc3339(c.not_after)
            ));
        }
        let mut r = pass(
            id,
            format!("at {}: {}", rfc3339(unix_secs(at)), detail.join(", ")),
        );
        if anchors.is_none() {
            r = fail(id, Failure::Prerequisite(CheckId::Product));
        }
        r
    }

    fn signature_check(entry: &VekEntry, report: &AttestationReport<'_>) -> CheckResult {
        let id = CheckId::ReportSignature;
        let q = match entry.vek.public_key() {
            Ok(q) => q,
            Err(f) => return fail(id, f.clone()),
        };
        let (r, s) = match report.raw().signature.to_be_components() {
            Ok(rs) => rs,
            Err(e) => return fail(id, Failure::Reserved(e)),
        };
        let z: [u8; 48] = Sha384::digest(report.signed_bytes()).into();
        // First use of a VEK: one-shot evaluation. From the second on: a precomputed table.
        let uses = entry.uses.fetch_add(1, Ordering::Relaxed);
        let result = if uses == 0 {
            ecdsa::verify_prehash(q, &z, &r, &s)
        } else {
            match entry.prepared.get_or_init(|| Some(PreparedKey::new(q))) {
                Some(p) => p.verify_prehash(&z, &r, &s),
                None => ecdsa::verify_prehash(q, &z, &r, &s),
            }
        };
        match result {
            Ok(()) => pass(
                id,
                "ECDSA P-384 over SHA-384(report[0x000..0x2A0]) verifies with the VEK",
            ),
            Err(EcdsaError::ScalarRange) => fail(id, Failure::SignatureRange),
            Err(EcdsaError::Mismatch) => fail(id, Failure::SignatureInvalid),
        }
    }

    fn identity_check(
        vek: &VekCert,
        report: &AttestationReport<'_>,
        layout: Option<TcbLayout>,
    ) -> CheckResult {
        let id = CheckId::VekIdentity;
        let ext = match vek.extensions() {
            Ok(e) => e,
            Err(_) => return fail(id, Failure::Prerequisite(CheckId::VekExtensions)),
        };
        let chip = &report.raw().chip_id;
        match vek.kind() {
            Some(VekKind::Vlek) => {
                if ext.hw_id.is_some() {
                    return fail(id, Failure::ExtensionUnexpected("hwID (on a VLEK)"));
                }
                match &ext.csp_id {
                    Some(csp) => pass(id, format!("VLEK cspID {csp:?} (no hwID by design)")),
                    None => fail(id, Failure::ExtensionMissing("cspID")),
                }
            }
            _ => {
                let Some(hw) = &ext.hw_id else {
                    return fail(id, Failure::ExtensionMissing("hwID"));
                };
                let Some(layout) = layout else {
                    return fail(id, Failure::Prerequisite(CheckId::Product));
                };
                if chip.iter().all(|&b| b == 0) {
                    return na(
                        id,
                        "CHIP_ID is masked by the host (MASK_CHIP_ID); hwID cannot be compared",
                    );
                }
                let (expected_len, compared) = match layout {
                    TcbLayout::Turin => {
                        if chip.get(8..).is_some_and(|t| t.iter().any(|&b| b != 0)) {
                            return fail(id, Failure::ChipIdTail);
                        }
                        (8, chip.get(..8).unwrap_or(&[]))
                    }
                    TcbLayout::MilanGenoa => (64, &chip[..]),
                };
                if hw.len() != expected_len {
                    return fail(
                        id,
                        Failure::HwIdLength {
                            expected: expected_len,
                            found: hw.len(),
                        },
                    );
                }
                if hw.as_slice() != compared {
                    return fail(
                        id,
                        Failure::HwIdMismatch {
                            cert: hex::encode(hw),
                            report: hex::encode(compared),
                        },
                    );
                }
                pass(
                    id,
                    format!(
                        "hwID ({expected_len} bytes) = CHIP_ID {}…",
                        hex::encode(chip.get(..8).unwrap_or(&[]))
                    ),
                )
            }
        }
    }

    fn policy_checks(
        &self,
        report: &AttestationReport<'_>,
        product: Option<Product>,
        vek: &VekCert,
        checks: &mut Vec<CheckResult>,
    ) {
        let p = &self.policy;
        let raw = report.raw();
        let gp = report.policy();
        let flags = gp.flags();
        let pi = report.platform_info();
        let not_set = |what: &str| format!("no {what} in the policy");

        checks.push(if gp.debug_allowed() && !p.allow_debug {
            fail(CheckId::PolicyDebug, Failure::DebugAllowed)
        } else if gp.debug_allowed() {
            pass(CheckId::PolicyDebug, "DEBUG set; the policy allows it")
        } else {
            pass(CheckId::PolicyDebug, "DEBUG clear")
        });

        let ma_present = !(raw.report_id_ma.iter().all(|&b| b == 0xFF)
            || raw.report_id_ma.iter().all(|&b| b == 0));
        checks.push(
            if !p.allow_migration_agent && flags.contains(PolicyFlags::MIGRATE_MA) {
                fail(
                    CheckId::PolicyMigrationAgent,
                    Failure::MigrationAgentAllowed,
                )
            } else if !p.allow_migration_agent && ma_present {
                fail(
                    CheckId::PolicyMigrationAgent,
                    Failure::MigrationAgentPresent(hex::encode(raw.report_id_ma)),
                )
            } else {
                pass(
                    CheckId::PolicyMigrationAgent,
                    format!(
                        "MIGRATE_MA {}, migration agent {}",
                        if flags.contains(PolicyFlags::MIGRATE_MA) {
                            "set"
                        } else {
                            "clear"
                        },
                        if ma_present { "associated" } else { "none" }
                    ),
                )
            },
        );

        let smt_on = pi.contains(PlatformInfo::SMT_EN);
        checks.push(if !p.allow_smt && smt_on {
            fail(CheckId::PolicySmt, Failure::SmtEnabled)
        } else {
            pass(
                CheckId::PolicySmt,
                format!(
                    "host SMT {}, guest policy SMT {}, policy {}",
                    if smt_on { "enabled" } else { "disabled" },
                    if flags.contains(PolicyFlags::SMT) {
                        "allowed"
                    } else {
                        "forbidden"
                    },
                    if p.allow_smt {
                        "allows SMT"
                    } else {
                        "forbids SMT"
                    }
                ),
            )
        });

        checks.push(if p.min_abi.is_none() && p.min_guest_policy_abi.is_none() {
            na(
                CheckId::PolicyAbi,
                not_set("min_abi / min_guest_policy_abi"),
            )
        } else {
            let mut out = pass(
                CheckId::PolicyAbi,
                format!(
                    "firmware {}.{} (committed {}.{}), guest policy ABI {}.{}",
                    raw.current_major,
                    raw.current_minor,
                    raw.committed_major,
                    raw.committed_minor,
                    gp.abi_major(),
                    gp.abi_minor()
                ),
            );
            let candidates = [
                (
                    "current firmware ABI",
                    p.min_abi,
                    (raw.current_major, raw.current_minor),
                ),
                (
                    "committed firmware ABI",
                    p.min_abi,
                    (raw.committed_major, raw.committed_minor),
                ),
                (
                    "guest policy ABI",
                    p.min_guest_policy_abi,
                    (gp.abi_major(), gp.abi_minor()),
                ),
            ];
            for (what, min, found) in candidates {
                if let Some(min) = min {
                    if found < min {
                        out = fail(
                            CheckId::PolicyAbi,
                            Failure::AbiTooOld {
                                what,
                                found: format!("{}.{}", found.0, found.1),
                                min: format!("{}.{}", min.0, min.1),
                            },
                        );
                        break;
                    }
                }
            }
            out
        });

        checks.push(match p.vmpl {
            None => na(CheckId::PolicyVmpl, not_set("vmpl")),
            Some(v) if v == report.vmpl() => pass(CheckId::PolicyVmpl, format!("VMPL {v}")),
            Some(v) => fail(
                CheckId::PolicyVmpl,
                Failure::Vmpl {
                    expected: v,
                    found: report.vmpl(),
                },
            ),
        });

        checks.push(match &p.measurements {
            None => na(CheckId::PolicyMeasurement, not_set("measurement allowlist")),
            Some(list) if list.contains(&raw.measurement) => pass(
                CheckId::PolicyMeasurement,
                format!("{} is allowed", hex::encode(raw.measurement)),
            ),
            Some(_) => fail(
                CheckId::PolicyMeasurement,
                Failure::MeasurementNotAllowed(hex::encode(raw.measurement)),
            ),
        });

        checks.push(self.tcb_minimum(CheckId::PolicyTcbMinimum, report, product));
        checks.push(self.tcb_minimum(CheckId::PolicyLaunchTcbMinimum, report, product));
        let (reported, current) = (raw.reported_tcb.raw(), raw.current_tcb.raw());
        checks.push(if !self.policy.require_reported_equals_current {
            na(
                CheckId::PolicyTcbCurrent,
                format!(
                    "not required by the policy (REPORTED_TCB {reported:#018x}, CURRENT_TCB \
                     {current:#018x})"
                ),
            )
        } else if reported == current {
            pass(
                CheckId::PolicyTcbCurrent,
                format!("REPORTED_TCB = CURRENT_TCB = {current:#018x}"),
            )
        } else {
            fail(
                CheckId::PolicyTcbCurrent,
                Failure::TcbNotCurrent { reported, current },
            )
        });

        checks.push(match &p.chip_ids {
            None => na(CheckId::PolicyChipId, not_set("chip_ids allowlist")),
            Some(list) if list.contains(&raw.chip_id) && raw.chip_id.iter().any(|&b| b != 0) => {
                pass(CheckId::PolicyChipId, "CHIP_ID is allowed")
            }
            Some(_) => fail(
                CheckId::PolicyChipId,
                Failure::ChipIdNotAllowed(if raw.chip_id.iter().all(|&b| b == 0) {
                    "(masked, all zero)".into()
                } else {
                    hex::encode(raw.chip_id)
                }),
            ),
        });

        let signer = report.key_info().signing_key();
        let csp = vek
            .extensions()
            .as_ref()
            .ok()
            .and_then(|e| e.csp_id.clone());
        checks.push(if !p.signing_keys.contains(&signer) {
            fail(
                CheckId::PolicySigningKey,
                Failure::SigningKeyNotAllowed(signer),
            )
        } else {
            match (&p.vlek_csp_ids, signer, &csp) {
                (Some(list), SigningKey::Vlek, c)
                    if !c.as_ref().is_some_and(|c| list.contains(c)) =>
                {
                    fail(
                        CheckId::PolicySigningKey,
                        Failure::CspIdNotAllowed(c.clone().unwrap_or_default()),
                    )
                }
                _ => pass(
                    CheckId::PolicySigningKey,
                    format!("{} is allowed", signing_key_name(signer)),
                ),
            }
        });

        let eq = |id: CheckId, field: &'static str, expected: Option<&[u8]>, found: &[u8]| {
            match expected {
                None => na(id, format!("no {field} in the policy")),
                Some(e) if e == found => pass(id, format!("{field} = {}", hex::encode(found))),
                Some(e) => fail(
                    id,
                    Failure::FieldMismatch {
                        field,
                        found: hex::encode(found),
                        expected: hex::encode(e),
                    },
                ),
            }
        };
        checks.push(eq(
            CheckId::PolicyFamilyId,
            "FAMILY_ID",
            p.family_id.as_ref().map(|v| &v[..]),
            &raw.family_id,
        ));
        checks.push(eq(
            CheckId::PolicyImageId,
            "IMAGE_ID",
            p.image_id.as_ref().map(|v| &v[..]),
            &raw.image_id,
        ));
        checks.push(eq(
            CheckId::PolicyHostData,
            "HOST_DATA",
            p.host_data.as_ref().map(|v| &v[..]),
            &raw.host_data,
        ));
        checks.push(eq(
            CheckId::PolicyReportData,
            "REPORT_DATA",
            p.report_data.as_ref().map(|v| &v[..]),
            &raw.report_data,
        ));

        let missing = p.platform_info_required - pi;
        let forbidden = p.platform_info_forbidden & pi;
        checks.push(if !missing.is_empty() {
            fail(
                CheckId::PolicyPlatformInfo,
                Failure::PlatformInfoMissing(platform_info_names(missing).join(",")),
            )
        } else if !forbidden.is_empty() {
            fail(
                CheckId::PolicyPlatformInfo,
                Failure::PlatformInfoForbidden(platform_info_names(forbidden).join(",")),
            )
        } else {
            let unknown = PlatformInfo::from_bits_retain(pi.unknown_bits());
            pass(
                CheckId::PolicyPlatformInfo,
                format!(
                    "{:#x} [{}]{}",
                    pi.bits(),
                    platform_info_names(pi).join(","),
                    if unknown.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; unknown bits reported, not fatal: {}",
                            platform_info_names(unknown).join(",")
                        )
                    }
                ),
            )
        });

        checks.push(match p.min_guest_svn {
            None => na(CheckId::PolicyGuestSvn, not_set("min_guest_svn")),
            Some(min) if report.guest_svn() >= min => pass(
                CheckId::PolicyGuestSvn,
                format!("GUEST_SVN {} >= {min}", report.guest_svn()),
            ),
            Some(min) => fail(
                CheckId::PolicyGuestSvn,
                Failure::GuestSvn {
                    found: report.guest_svn(),
                    min,
                },
            ),
        });

        checks.push(
            if p.id_key_digests.is_none() && p.author_key_digests.is_none() {
                na(
                    CheckId::PolicyIdKey,
                    not_set("id_key_digests / author_key_digests"),
                )
            } else {
                let lists = [
                    ("ID_KEY_DIGEST", &p.id_key_digests, &raw.id_key_digest),
                    (
                        "AUTHOR_KEY_DIGEST",
                        &p.author_key_digests,
                        &raw.author_key_digest,
                    ),
                ];
                lists
                    .into_iter()
                    .find_map(|(field, list, found)| {
                        list.as_ref().filter(|l| !l.contains(found)).map(|_| {
                            fail(
                                CheckId::PolicyIdKey,
                                Failure::DigestNotAllowed {
                                    field,
                                    found: hex::encode(found),
                                },
                            )
                        })
                    })
                    .unwrap_or_else(|| {
                        pass(CheckId::PolicyIdKey, "ID and author key digests allowed")
                    })
            },
        );

        checks.push(match (&p.products, product) {
            (None, _) => na(CheckId::PolicyProduct, not_set("products allowlist")),
            (Some(_), None) => fail(
                CheckId::PolicyProduct,
                Failure::Prerequisite(CheckId::Product),
            ),
            (Some(list), Some(pr)) if list.contains(&pr) => pass(
                CheckId::PolicyProduct,
                format!("{} is allowed", pr.kds_name()),
            ),
            (Some(_), Some(pr)) => fail(CheckId::PolicyProduct, Failure::ProductNotAllowed(pr)),
        });
    }

    /// `policy.tcb_minimum` (REPORTED, COMMITTED, CURRENT against `min_tcb`) or
    /// `policy.launch_tcb_minimum` (LAUNCH against `min_launch_tcb`), each TCB decoded with the
    /// product's layout (Turin: `[fmc, bl, tee, snp, r, r, r, ucode]`).
    fn tcb_minimum(
        &self,
        id: CheckId,
        report: &AttestationReport<'_>,
        product: Option<Product>,
    ) -> CheckResult {
        let p = &self.policy;
        let raw = report.raw();
        let (key, any_min, min, fields) = if id == CheckId::PolicyLaunchTcbMinimum {
            (
                "min_launch_tcb",
                p.min_launch_tcb_default.is_some() || !p.min_launch_tcb_product.is_empty(),
                product.and_then(|pr| p.min_launch_tcb_for(pr)),
                vec![(TcbField::Launch, raw.launch_tcb)],
            )
        } else {
            (
                "min_tcb",
                p.min_tcb_default.is_some() || !p.min_tcb_product.is_empty(),
                product.and_then(|pr| p.min_tcb_for(pr)),
                vec![
                    (TcbField::Reported, raw.reported_tcb),
                    (TcbField::Committed, raw.committed_tcb),
                    (TcbField::Current, raw.current_tcb),
                ],
            )
        };
        let Some(product) = product else {
            return if any_min {
                fail(id, Failure::Prerequisite(CheckId::Product))
            } else {
                na(id, format!("no {key} in the policy"))
            };
        };
        let Some(min) = min else {
            return na(
                id,
                format!("no {key} in the policy for {}", product.kds_name()),
            );
        };
        let layout = product.tcb_layout();
        for (field, tcb) in &fields {
            let c = tcb.decode(layout);
            let comps = [
                (SplName::Fmc, min.fmc, c.fmc),
                (SplName::BootLoader, min.bootloader, Some(c.bootloader)),
                (SplName::Tee, min.tee, Some(c.tee)),
                (SplName::Snp, min.snp, Some(c.snp)),
                (SplName::Microcode, min.microcode, Some(c.microcode)),
            ];
            for (spl, min, found) in comps {
                match (min, found) {
                    (Some(min), Some(found)) if found < min => {
                        return fail(
                            id,
                            Failure::TcbBelowMinimum {
                                field: *field,
                                spl,
                                found,
                                min,
                            },
                        )
                    }
                    // An FMC minimum from `default` does not apply to Milan/Genoa.
                    _ => {}
                }
            }
        }
        pass(
            id,
            format!(
                "{} at least the {} {key}",
                if id == CheckId::PolicyLaunchTcbMinimum {
                    "LAUNCH_TCB"
                } else {
                    "REPORTED, COMMITTED and CURRENT TCB"
                },
                product.kds_name()
            ),
        )
    }
}
