//! The key templates the vTPM provisions at manufacture (and the module re-derives for the
//! attestation manifest), their persistent handles, and the check that an object found at such
//! a handle really was made from the template.
//!
//! Sources:
//! - TCG EK Credential Profile for TPM Family 2.0, Level 0 (version 2.x): Annex B "EK Templates",
//!   template L-1 (RSA 2048, low range) and template H-3 (ECC NIST P384, high range, added in
//!   version 2.1 rev 13). Handles: the L-1 EK at 0x81010001 (also the EK handle of the TCG TPM
//!   v2.0 Provisioning Guidance), the H-3 EK at 0x81010016, the handle matching its high-range
//!   certificate index 0x01C00016 (§2.2.1.5; swtpm_setup uses the same pair). Checked against
//!   several independent public implementations of the profile, not copied from them.
//!   Policy digests from the profile's "PolicyA"/"PolicyB"
//!   computations (PolicyA_SHA256 = PolicySecret(TPM_RH_ENDORSEMENT); PolicyB_SHA384 =
//!   PolicyOR(PolicySecret_SHA384(TPM_RH_ENDORSEMENT), PolicyAuthorizeNV_SHA384(0x01C07F02))).
//! - TPM 2.0 Library Part 2 for every structure and constant (TPMT_PUBLIC §12.2.4,
//!   TPMA_OBJECT §8.3, TPM_ALG_ID §6.3, TPM_ECC_CURVE §6.4).

use alloc::vec::Vec;

/// `TPM_ALG_RSA`.
const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_AES`.
const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_SHA256`.
const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_SHA384`.
const TPM_ALG_SHA384: u16 = 0x000C;
/// `TPM_ALG_NULL`.
const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECDSA`.
const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECC`.
const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_CFB`.
const TPM_ALG_CFB: u16 = 0x0043;
/// `TPM_ECC_NIST_P256`.
const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`.
const TPM_ECC_NIST_P384: u16 = 0x0004;

// TPMA_OBJECT bits (Part 2 §8.3).
const FIXED_TPM: u32 = 1 << 1;
const FIXED_PARENT: u32 = 1 << 4;
const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const USER_WITH_AUTH: u32 = 1 << 6;
const ADMIN_WITH_POLICY: u32 = 1 << 7;
const NO_DA: u32 = 1 << 10;
const RESTRICTED: u32 = 1 << 16;
const DECRYPT: u32 = 1 << 17;
const SIGN: u32 = 1 << 18;

/// Persistent handle of the RSA 2048 EK (template L-1).
pub const EK_RSA_HANDLE: u32 = 0x8101_0001;
/// Persistent handle of the ECC NIST P-256 EK (template L-2): the ECC EK handle of the TCG TPM
/// v2.0 Provisioning Guidance, where go-attestation and Keylime look for it.
pub const EK_ECC_P256_HANDLE: u32 = 0x8101_0002;
/// Persistent handle of the ECC NIST P-384 EK (template H-3).
pub const EK_ECC_P384_HANDLE: u32 = 0x8101_0016;
/// Persistent handle of the attestation key. Chosen by this crate, not assigned by a TCG
/// document: an owner-range handle (0x81000000..=0x8100FFFF) next to the SRK's 0x81000001
/// of the TCG provisioning guidance, and outside the endorsement range 0x8101xxxx the EK
/// Credential Profile allocates from. Verifiers learn the AK from the attestation manifest,
/// not from this handle.
pub const AK_HANDLE: u32 = 0x8100_0003;

/// EK template L-1 attributes: fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy
/// | restricted | decrypt = 0x000300B2 (userWithAuth clear: use needs PolicyA).
pub const EK_L1_ATTRIBUTES: u32 =
    FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | ADMIN_WITH_POLICY | RESTRICTED | DECRYPT;
/// EK template H-3 attributes: as L-1 plus userWithAuth = 0x000300F2.
pub const EK_H3_ATTRIBUTES: u32 = EK_L1_ATTRIBUTES | USER_WITH_AUTH;
/// AK attributes: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA |
/// restricted | sign = 0x00050472. noDA: its (empty) authValue is not dictionary-attack
/// protected, so using it never trips libtpms's DA_USED `TPM_RC_RETRY` path or a lockout.
pub const AK_ATTRIBUTES: u32 =
    FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH | NO_DA | RESTRICTED | SIGN;

/// PolicyA_SHA256 = PolicySecret(TPM_RH_ENDORSEMENT), the authPolicy of template L-1.
pub const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// PolicyB_SHA384, the authPolicy of template H-3.
pub const POLICY_B_SHA384: [u8; 48] = [
    0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc, 0xf5, 0xfd, 0x3a, 0x1a,
    0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4, 0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca,
    0xcb, 0x47, 0xba, 0x09, 0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
];

/// Curve (and matching hash) of the attestation key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AkCurve {
    /// NIST P-256, ECDSA with SHA-256, nameAlg SHA-256.
    #[default]
    P256,
    /// NIST P-384, ECDSA with SHA-384, nameAlg SHA-384.
    P384,
}

/// `TPMT_PUBLIC` of an unrestricted ECDSA P-256 / SHA-256 signing key with an empty password
/// (fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, sign), for benchmarks and
/// tools that need an ordinary signing key: `TPM2_Sign` without a ticket works with it.
pub fn ecc_p256_signing_template() -> Vec<u8> {
    let mut t = Vec::with_capacity(24);
    be16(&mut t, TPM_ALG_ECC); // type
    be16(&mut t, TPM_ALG_SHA256); // nameAlg
    be32(&mut t, 0x0004_0472); // objectAttributes
    be16(&mut t, 0); // authPolicy: empty
    be16(&mut t, TPM_ALG_NULL); // symmetric: none
    be16(&mut t, TPM_ALG_ECDSA); // scheme
    be16(&mut t, TPM_ALG_SHA256); // scheme.details.hashAlg
    be16(&mut t, TPM_ECC_NIST_P256); // curveID
    be16(&mut t, TPM_ALG_NULL); // kdf
    be16(&mut t, 0); // unique.x: empty
    be16(&mut t, 0); // unique.y: empty
    t
}

/// The shape of the `unique` field of a created key's public area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unique {
    /// `TPM2B_PUBLIC_KEY_RSA` of `modulus` bytes; the template carries that many zero bytes
    /// (EK Credential Profile L-1).
    Rsa { modulus: usize },
    /// `TPMS_ECC_POINT` with coordinates of `coordinate` bytes; the template carries two empty
    /// coordinates (EK Credential Profile H templates; also used for the AK).
    Ecc { coordinate: usize },
    /// `TPMS_ECC_POINT` whose template carries two coordinates of `coordinate` zero bytes
    /// (EK Credential Profile L-2).
    EccZeroed { coordinate: usize },
}

/// One provisioned key: which template, in which hierarchy, at which persistent handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    /// Short name for errors.
    pub name: &'static str,
    /// Persistent handle.
    pub handle: u32,
    /// The `TPMT_PUBLIC` up to, not including, `unique`.
    prefix: Vec<u8>,
    unique: Unique,
}

fn be16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn be32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

impl KeyTemplate {
    /// EK template L-1: RSA 2048, nameAlg SHA-256, PolicyA, AES-128-CFB, scheme NULL, exponent 0
    /// (= 2^16 + 1), unique = 256 zero bytes. TPMT_PUBLIC of the created key: 314 bytes.
    pub fn ek_rsa_l1() -> Self {
        let mut p = Vec::with_capacity(64);
        be16(&mut p, TPM_ALG_RSA); // type
        be16(&mut p, TPM_ALG_SHA256); // nameAlg
        be32(&mut p, EK_L1_ATTRIBUTES); // objectAttributes
        be16(&mut p, 32); // authPolicy size
        p.extend_from_slice(&POLICY_A_SHA256);
        be16(&mut p, TPM_ALG_AES); // symmetric.algorithm
        be16(&mut p, 128); // symmetric.keyBits
        be16(&mut p, TPM_ALG_CFB); // symmetric.mode
        be16(&mut p, TPM_ALG_NULL); // scheme
        be16(&mut p, 2048); // keyBits
        be32(&mut p, 0); // exponent
        Self {
            name: "EK RSA 2048 (L-1)",
            handle: EK_RSA_HANDLE,
            prefix: p,
            unique: Unique::Rsa { modulus: 256 },
        }
    }

    /// EK template L-2: ECC NIST P-256, nameAlg SHA-256, PolicyA, AES-128-CFB, scheme NULL, kdf
    /// NULL, unique X and Y = 32 zero bytes each. TPMT_PUBLIC of the created key: 122 bytes.
    pub fn ek_ecc_l2() -> Self {
        let mut p = Vec::with_capacity(64);
        be16(&mut p, TPM_ALG_ECC); // type
        be16(&mut p, TPM_ALG_SHA256); // nameAlg
        be32(&mut p, EK_L1_ATTRIBUTES); // objectAttributes (L-1 and L-2 share them)
        be16(&mut p, 32); // authPolicy size
        p.extend_from_slice(&POLICY_A_SHA256);
        be16(&mut p, TPM_ALG_AES); // symmetric.algorithm
        be16(&mut p, 128); // symmetric.keyBits
        be16(&mut p, TPM_ALG_CFB); // symmetric.mode
        be16(&mut p, TPM_ALG_NULL); // scheme
        be16(&mut p, TPM_ECC_NIST_P256); // curveID
        be16(&mut p, TPM_ALG_NULL); // kdf
        Self {
            name: "EK ECC P-256 (L-2)",
            handle: EK_ECC_P256_HANDLE,
            prefix: p,
            unique: Unique::EccZeroed { coordinate: 32 },
        }
    }

    /// EK template H-3: ECC NIST P-384, nameAlg SHA-384, PolicyB_SHA384, AES-256-CFB, scheme
    /// NULL, kdf NULL, unique X and Y empty. TPMT_PUBLIC of the created key: 170 bytes.
    pub fn ek_ecc_h3() -> Self {
        let mut p = Vec::with_capacity(80);
        be16(&mut p, TPM_ALG_ECC); // type
        be16(&mut p, TPM_ALG_SHA384); // nameAlg
        be32(&mut p, EK_H3_ATTRIBUTES); // objectAttributes
        be16(&mut p, 48); // authPolicy size
        p.extend_from_slice(&POLICY_B_SHA384);
        be16(&mut p, TPM_ALG_AES); // symmetric.algorithm
        be16(&mut p, 256); // symmetric.keyBits
        be16(&mut p, TPM_ALG_CFB); // symmetric.mode
        be16(&mut p, TPM_ALG_NULL); // scheme
        be16(&mut p, TPM_ECC_NIST_P384); // curveID
        be16(&mut p, TPM_ALG_NULL); // kdf
        Self {
            name: "EK ECC P-384 (H-3)",
            handle: EK_ECC_P384_HANDLE,
            prefix: p,
            unique: Unique::Ecc { coordinate: 48 },
        }
    }

    /// The attestation key: a restricted ECDSA signing key, empty authValue (userWithAuth),
    /// noDA, no policy, symmetric NULL, kdf NULL, unique X and Y empty. TPMT_PUBLIC of the
    /// created key: 88 bytes (P-256) or 120 bytes (P-384).
    pub fn ak(curve: AkCurve) -> Self {
        let (hash, curve_id, coordinate, name) = match curve {
            AkCurve::P256 => (TPM_ALG_SHA256, TPM_ECC_NIST_P256, 32, "AK ECC P-256"),
            AkCurve::P384 => (TPM_ALG_SHA384, TPM_ECC_NIST_P384, 48, "AK ECC P-384"),
        };
        let mut p = Vec::with_capacity(32);
        be16(&mut p, TPM_ALG_ECC); // type
        be16(&mut p, hash); // nameAlg
        be32(&mut p, AK_ATTRIBUTES); // objectAttributes
        be16(&mut p, 0); // authPolicy: empty
        be16(&mut p, TPM_ALG_NULL); // symmetric: none (signing key)
        be16(&mut p, TPM_ALG_ECDSA); // scheme
        be16(&mut p, hash); // scheme.details.hashAlg
        be16(&mut p, curve_id); // curveID
        be16(&mut p, TPM_ALG_NULL); // kdf
        Self {
            name,
            handle: AK_HANDLE,
            prefix: p,
            unique: Unique::Ecc { coordinate },
        }
    }

    /// The `TPMT_PUBLIC` template to hand to `TPM2_CreatePrimary`.
    pub fn template(&self) -> Vec<u8> {
        let mut t = self.prefix.clone();
        match self.unique {
            Unique::Rsa { modulus } => {
                // The cast cannot truncate: the only modulus size used is 256.
                be16(&mut t, modulus as u16);
                t.resize(t.len() + modulus, 0);
            }
            Unique::Ecc { .. } => {
                be16(&mut t, 0);
                be16(&mut t, 0);
            }
            Unique::EccZeroed { coordinate } => {
                for _ in 0..2 {
                    // The cast cannot truncate: the only coordinate size used is 32.
                    be16(&mut t, coordinate as u16);
                    t.resize(t.len() + coordinate, 0);
                }
            }
        }
        t
    }

    /// Length of the created key's `TPMT_PUBLIC`.
    pub fn public_len(&self) -> usize {
        self.prefix.len()
            + match self.unique {
                Unique::Rsa { modulus } => 2 + modulus,
                Unique::Ecc { coordinate } | Unique::EccZeroed { coordinate } => {
                    2 * (2 + coordinate)
                }
            }
    }

    /// True when `public` (a `TPMT_PUBLIC`) was created from this template: every field but
    /// `unique` is identical, and `unique` holds a key of the template's size.
    pub fn matches(&self, public: &[u8]) -> bool {
        let Some(rest) = public.strip_prefix(self.prefix.as_slice()) else {
            return false;
        };
        let mut r = super::command::Reader::new(rest);
        let ok = match self.unique {
            Unique::Rsa { modulus } => r.tpm2b("n").is_ok_and(|n| n.len() == modulus),
            Unique::Ecc { coordinate } | Unique::EccZeroed { coordinate } => {
                r.tpm2b("x").is_ok_and(|x| x.len() == coordinate)
                    && r.tpm2b("y").is_ok_and(|y| y.len() == coordinate)
            }
        };
        ok && r.remaining() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values() {
        assert_eq!(EK_L1_ATTRIBUTES, 0x0003_00B2);
        assert_eq!(EK_H3_ATTRIBUTES, 0x0003_00F2);
        assert_eq!(AK_ATTRIBUTES, 0x0005_0472);
    }

    #[test]
    fn template_sizes() {
        let l1 = KeyTemplate::ek_rsa_l1();
        assert_eq!(l1.template().len(), 314);
        assert_eq!(l1.public_len(), 314);
        let h3 = KeyTemplate::ek_ecc_h3();
        assert_eq!(h3.template().len(), 74);
        assert_eq!(h3.public_len(), 170);
        let l2 = KeyTemplate::ek_ecc_l2();
        assert_eq!(l2.template().len(), 122);
        assert_eq!(l2.public_len(), 122);
        assert_eq!(KeyTemplate::ak(AkCurve::P256).public_len(), 88);
        assert_eq!(KeyTemplate::ak(AkCurve::P384).public_len(), 120);
    }

    #[test]
    fn matches_checks_everything_but_unique() {
        let l1 = KeyTemplate::ek_rsa_l1();
        let mut public = l1.template();
        assert!(l1.matches(&public));
        let last = public.len() - 1;
        public[last] = 0x55; // a different key: still the template
        assert!(l1.matches(&public));
        public[7] ^= 0x40; // flip userWithAuth
        assert!(!l1.matches(&public));
        let ak = KeyTemplate::ak(AkCurve::P256);
        assert!(
            !ak.matches(&ak.template()),
            "empty coordinates are not a key"
        );
        assert!(!ak.matches(&KeyTemplate::ak(AkCurve::P384).template()));
    }
}
