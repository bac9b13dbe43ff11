//! The optional revocation list: AMD's KDS serves `/vcek/v1/<Product>/crl` and
//! `/vlek/v1/<Product>/crl`, DER, signed by the ARK (only the ARK has cRLSign). An ARK-issued CRL
//! can revoke what the ARK issued: the ASK and the ASVK (RFC 5280 §5, no indirect CRLs).

use crate::check::{CertRole, Failure};
use crate::trust::ProductAnchors;
use crate::x509::{check_pss_params, rfc3339, tbs_range, time_secs, unix_secs};
use der::{Decode, Encode};
use std::time::SystemTime;
use x509_cert::crl::CertificateList;

/// Checks a DER CRL against the product's ARK; returns a summary on success.
pub(crate) fn check(
    crl_der: &[u8],
    anchors: &ProductAnchors,
    intermediate: CertRole,
    at: SystemTime,
) -> Result<String, Failure> {
    let list =
        CertificateList::from_der(crl_der).map_err(|e| Failure::CrlMalformed(e.to_string()))?;
    let tbs = tbs_range(crl_der)
        .ok()
        .and_then(|r| crl_der.get(r))
        .ok_or_else(|| Failure::CrlMalformed("TBSCertList not found".into()))?;
    let t = &list.tbs_cert_list;
    let ark = &anchors.ark;
    if t.issuer.to_der().ok().as_deref() != Some(ark.subject_der.as_slice()) {
        return Err(Failure::CrlIssuer {
            expected: ark.cert.subject_cn.clone(),
            found: crate::x509::common_name(&t.issuer),
        });
    }
    check_pss_params(&list.signature_algorithm, CertRole::Crl)?;
    if t.signature != list.signature_algorithm {
        return Err(Failure::SignatureAlgorithm {
            role: CertRole::Crl,
            detail: "TBS signature algorithm differs from the outer one".into(),
        });
    }
    ark.key
        .verify_raw(tbs, list.signature.as_bytes(), CertRole::Crl, CertRole::Ark)?;
    let now = unix_secs(at);
    let this_update = time_secs(&t.this_update);
    if this_update > now {
        return Err(Failure::CrlStale(format!(
            "thisUpdate {} is after the appraisal time {}",
            rfc3339(this_update),
            rfc3339(now)
        )));
    }
    // Without nextUpdate a list would be current forever: whoever supplies the CRL could keep
    // replaying one from before a revocation.
    let next = t
        .next_update
        .as_ref()
        .map(time_secs)
        .ok_or(Failure::CrlNoNextUpdate)?;
    if next < now {
        return Err(Failure::CrlStale(format!(
            "nextUpdate {} is before the appraisal time {}",
            rfc3339(next),
            rfc3339(now)
        )));
    }
    let ca = anchors.intermediate(intermediate);
    let serial = &ca.cert.cert.tbs_certificate.serial_number;
    let revoked = t.revoked_certificates.as_deref().unwrap_or(&[]);
    if revoked.iter().any(|r| &r.serial_number == serial) {
        return Err(Failure::Revoked {
            role: intermediate,
            serial: ca.cert.serial_hex(),
        });
    }
    Ok(format!(
        "signed by {}, {} revoked entr{}, thisUpdate {}; {} serial {} not revoked",
        ark.cert.subject_cn,
        revoked.len(),
        if revoked.len() == 1 { "y" } else { "ies" },
        rfc3339(this_update),
        intermediate,
        ca.cert.serial_hex()
    ))
}
