//! The vTPM's standard identity as it appears on the wire (docs/identity.md): the TCG NV
//! indices that hold the EK certificates (TCG EK Credential Profile for TPM Family 2.0,
//! version 2.5, §2.2.1.5 "NV Indices"), the TCG object identifiers those certificates use
//! (same profile, §3.2 and Annex A; TCG "Glossary of OIDs"), and svsm-vhsm's own extension
//! that binds the EK certificate authority to the SNP attestation report. The module writes
//! these certificates and the verifier reads them; both take the numbers from here.

/// NV index of the RSA 2048 EK certificate (template L-1, low range).
pub const EK_CERT_RSA_2048_INDEX: u32 = 0x01C0_0002;
/// NV index of the ECC NIST P-256 EK certificate (template L-2, low range).
pub const EK_CERT_ECC_P256_INDEX: u32 = 0x01C0_000A;
/// NV index of the ECC NIST P-384 EK certificate (template H-3, high range).
pub const EK_CERT_ECC_P384_INDEX: u32 = 0x01C0_0016;
/// NV index of the first certificate of the EK certificate chain (the profile's range
/// 0x01C00100..=0x01C001FF): the EK CA's self-signed certificate.
pub const EK_CA_CERT_INDEX: u32 = 0x01C0_0100;
/// The EK certificate indices, in the order the module writes them (RSA last: its presence
/// means the set is complete) together with the CA index first.
pub const EK_IDENTITY_INDICES: [u32; 4] = [
    EK_CA_CERT_INDEX,
    EK_CERT_ECC_P256_INDEX,
    EK_CERT_ECC_P384_INDEX,
    EK_CERT_RSA_2048_INDEX,
];
/// Largest certificate the module writes to one index (libtpms's `MAX_NV_INDEX_SIZE`).
pub const MAX_EK_CERT_SIZE: usize = 2048;

/// Domain label of the EK CA's binding: the SNP report in the CA certificate was requested at
/// VMPL0 with REPORT_DATA = SHA-512(label || the CA's 97-byte SEC1 public key).
pub const EK_CA_REPORT_DATA_LABEL: &[u8] = b"svsm-vhsm ek-ca v1";

/// The REPORT_DATA that binds an EK CA key: SHA-512([`EK_CA_REPORT_DATA_LABEL`] ‖ the CA's
/// 97-byte SEC1 public key).
pub fn ek_ca_report_data(ca_public: &[u8; 97]) -> [u8; 64] {
    use sha2::{Digest, Sha512};
    Sha512::new()
        .chain_update(EK_CA_REPORT_DATA_LABEL)
        .chain_update(ca_public)
        .finalize()
        .into()
}

/// The X.509 extension that carries the SNP attestation report binding the EK CA: the RATS
/// Conceptual Messages Wrapper extension `id-pe-cmw` (IANA "SMI Security for PKIX Certificate
/// Extension" 35; the RATS CMW specification), non-critical, in its `cbor` choice: an OCTET
/// STRING holding the CBOR CMW record `[media type (text), report (bytes), indicator 4
/// (evidence)]`, the media type being [`SNP_REPORT_MEDIA_TYPE`]. (The JSON choice, base64, does
/// not fit libtpms's 2048-byte NV index with the report.)
pub const CMW_EXTENSION_OID: &str = "1.3.6.1.5.5.7.1.35";
/// The CMW type of the raw 1184-byte SNP ATTESTATION_REPORT (AMD 56860 Table 23) in
/// svsm-vhsm's EK CA certificate (a vendor-tree name of ours, not registered with IANA).
pub const SNP_REPORT_MEDIA_TYPE: &str = "application/vnd.svsm-vhsm.sev-snp-report";
/// The CMW indicator of evidence (bit 2).
pub const CMW_INDICATOR_EVIDENCE: u8 = 4;

/// The CBOR CMW record of a 1184-byte SNP report: array(3), text(media type), bytes(1184),
/// unsigned(4), each head in its shortest form (RFC 8949 §4.2.1 deterministic encoding).
pub fn snp_report_cmw(report: &[u8; 1184]) -> [u8; SNP_REPORT_CMW_LEN] {
    let mut out = [0u8; SNP_REPORT_CMW_LEN];
    let media = SNP_REPORT_MEDIA_TYPE.as_bytes();
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            if let Some(slot) = out.get_mut(at) {
                *slot = *b;
            }
            at += 1;
        }
    };
    put(&[0x83]); // array of 3
    put(&[0x78, media.len() as u8]); // text string, 1-byte length (the type is < 256 bytes)
    put(media);
    put(&[0x59, 0x04, 0xA0]); // byte string, 2-byte length 1184
    put(report);
    put(&[CMW_INDICATOR_EVIDENCE]); // unsigned 4
    out
}

/// Length of [`snp_report_cmw`]'s output.
pub const SNP_REPORT_CMW_LEN: usize = 1 + 2 + SNP_REPORT_MEDIA_TYPE.len() + 3 + 1184 + 1;
const _: () = assert!(SNP_REPORT_MEDIA_TYPE.len() >= 24 && SNP_REPORT_MEDIA_TYPE.len() < 256);

/// TCG OIDs used by EK certificates.
pub mod tcg_oid {
    /// tcg-at-tpmManufacturer: a UTF8String, "id:" and TPM_PT_MANUFACTURER as 8 uppercase hex digits.
    pub const TPM_MANUFACTURER: &str = "2.23.133.2.1";
    /// tcg-at-tpmModel: a UTF8String.
    pub const TPM_MODEL: &str = "2.23.133.2.2";
    /// tcg-at-tpmVersion: a UTF8String, "id:" and TPM_PT_FIRMWARE_VERSION_1 as 8 uppercase hex digits.
    pub const TPM_VERSION: &str = "2.23.133.2.3";
    /// tcg-at-tpmSpecification: SEQUENCE { family UTF8String, level INTEGER, revision INTEGER }.
    pub const TPM_SPECIFICATION: &str = "2.23.133.2.16";
    /// tcg-kp-EKCertificate: the extended key usage of an EK certificate.
    pub const EK_CERTIFICATE: &str = "2.23.133.8.1";
    /// tcg-kp-AIKCertificate: the extended key usage of an AK certificate.
    pub const AK_CERTIFICATE: &str = "2.23.133.8.3";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_in_the_tcg_ranges() {
        for index in EK_IDENTITY_INDICES {
            assert!((0x01C0_0000..=0x01C0_01FF).contains(&index), "{index:#x}");
        }
        assert_eq!(EK_IDENTITY_INDICES[3], EK_CERT_RSA_2048_INDEX);
    }
}
