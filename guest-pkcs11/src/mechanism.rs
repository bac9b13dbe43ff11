//! The mechanisms this token has, and a mechanism with its parameters once decoded from the
//! application's `CK_MECHANISM`.

use crate::error::Error;
use cryptoki_sys as ck;

/// A mechanism the token runs, with its decoded parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// CKM_EC_KEY_PAIR_GEN (P-256, P-384).
    EcKeyPairGen,
    /// CKM_ECDSA: the data is the digest.
    Ecdsa,
    /// CKM_ECDSA_SHA256.
    EcdsaSha256,
    /// CKM_ECDSA_SHA384.
    EcdsaSha384,
    /// CKM_ECDH1_DERIVE with CKD_NULL.
    Ecdh1Derive {
        /// The peer's public point (raw SEC1, or DER OCTET STRING around it).
        public: Vec<u8>,
    },
    /// CKM_AES_KEY_GEN (256-bit keys).
    AesKeyGen,
    /// CKM_AES_GCM with a 96-bit IV and a 128-bit tag.
    AesGcm {
        /// The IV.
        iv: [u8; svsm_abi::vault::IV_LEN],
        /// Additional authenticated data.
        aad: Vec<u8>,
    },
    /// CKM_GENERIC_SECRET_KEY_GEN (HMAC keys of 32 or 48 bytes).
    GenericSecretKeyGen,
    /// CKM_SHA256_HMAC.
    Sha256Hmac,
    /// CKM_SHA384_HMAC.
    Sha384Hmac,
}

/// What the token lists for each mechanism: type, minimum and maximum key size (bits for EC,
/// bytes for AES and HMAC, as PKCS#11 counts them), flags.
pub const MECHANISMS: &[(ck::CK_MECHANISM_TYPE, u64, u64, ck::CK_FLAGS)] = &[
    (
        ck::CKM_EC_KEY_PAIR_GEN,
        256,
        384,
        ck::CKF_GENERATE_KEY_PAIR | EC_FLAGS,
    ),
    (
        ck::CKM_ECDSA,
        256,
        384,
        ck::CKF_SIGN | ck::CKF_VERIFY | EC_FLAGS,
    ),
    (
        ck::CKM_ECDSA_SHA256,
        256,
        384,
        ck::CKF_SIGN | ck::CKF_VERIFY | EC_FLAGS,
    ),
    (
        ck::CKM_ECDSA_SHA384,
        256,
        384,
        ck::CKF_SIGN | ck::CKF_VERIFY | EC_FLAGS,
    ),
    (ck::CKM_ECDH1_DERIVE, 256, 384, ck::CKF_DERIVE | EC_FLAGS),
    (ck::CKM_AES_KEY_GEN, 32, 32, ck::CKF_GENERATE),
    (ck::CKM_AES_GCM, 32, 32, ck::CKF_ENCRYPT | ck::CKF_DECRYPT),
    (ck::CKM_GENERIC_SECRET_KEY_GEN, 32, 48, ck::CKF_GENERATE),
    (ck::CKM_SHA256_HMAC, 32, 32, ck::CKF_SIGN | ck::CKF_VERIFY),
    (ck::CKM_SHA384_HMAC, 48, 48, ck::CKF_SIGN | ck::CKF_VERIFY),
];

/// Named prime curves, uncompressed points.
const EC_FLAGS: ck::CK_FLAGS = ck::CKF_EC_F_P | ck::CKF_EC_NAMEDCURVE | ck::CKF_EC_UNCOMPRESS;

/// The listing of one mechanism.
pub fn info(kind: ck::CK_MECHANISM_TYPE) -> Result<(u64, u64, ck::CK_FLAGS), Error> {
    MECHANISMS
        .iter()
        .find(|m| m.0 == kind)
        .map(|m| (m.1, m.2, m.3))
        .ok_or(Error::MechanismInvalid)
}

/// The parameters of CKM_ECDH1_DERIVE as the application gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ecdh1Params {
    /// The KDF (only CKD_NULL).
    pub kdf: ck::CK_EC_KDF_TYPE,
    /// Shared data (must be empty with CKD_NULL).
    pub shared_data: Vec<u8>,
    /// The peer's public point.
    pub public: Vec<u8>,
}

/// The parameters of CKM_AES_GCM as the application gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcmParams {
    /// The IV.
    pub iv: Vec<u8>,
    /// Additional authenticated data.
    pub aad: Vec<u8>,
    /// Tag length in bits.
    pub tag_bits: u64,
}

/// A mechanism's parameters, decoded by the FFI layer from the structure its type names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Params {
    /// No parameter (NULL, length 0).
    None,
    /// CK_ECDH1_DERIVE_PARAMS.
    Ecdh1(Ecdh1Params),
    /// CK_GCM_PARAMS.
    Gcm(GcmParams),
    /// A parameter of a mechanism that takes none, or of the wrong size.
    Malformed,
}

impl Mechanism {
    /// The mechanism of `kind` with `params`.
    pub fn decode(kind: ck::CK_MECHANISM_TYPE, params: Params) -> Result<Mechanism, Error> {
        let none = |m: Mechanism| match params {
            Params::None => Ok(m),
            _ => Err(Error::MechanismParamInvalid),
        };
        match kind {
            ck::CKM_EC_KEY_PAIR_GEN => none(Mechanism::EcKeyPairGen),
            ck::CKM_ECDSA => none(Mechanism::Ecdsa),
            ck::CKM_ECDSA_SHA256 => none(Mechanism::EcdsaSha256),
            ck::CKM_ECDSA_SHA384 => none(Mechanism::EcdsaSha384),
            ck::CKM_AES_KEY_GEN => none(Mechanism::AesKeyGen),
            ck::CKM_GENERIC_SECRET_KEY_GEN => none(Mechanism::GenericSecretKeyGen),
            ck::CKM_SHA256_HMAC => none(Mechanism::Sha256Hmac),
            ck::CKM_SHA384_HMAC => none(Mechanism::Sha384Hmac),
            ck::CKM_ECDH1_DERIVE => match params {
                // Only the raw shared secret: the X9.63 KDFs are not in the vault.
                Params::Ecdh1(p) if p.kdf == ck::CKD_NULL && p.shared_data.is_empty() => {
                    Ok(Mechanism::Ecdh1Derive { public: p.public })
                }
                _ => Err(Error::MechanismParamInvalid),
            },
            ck::CKM_AES_GCM => match params {
                Params::Gcm(p) if p.tag_bits == 128 => Ok(Mechanism::AesGcm {
                    iv: p
                        .iv
                        .as_slice()
                        .try_into()
                        .map_err(|_| Error::MechanismParamInvalid)?,
                    aad: p.aad,
                }),
                _ => Err(Error::MechanismParamInvalid),
            },
            _ => Err(Error::MechanismInvalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_per_mechanism() {
        assert_eq!(
            Mechanism::decode(ck::CKM_ECDSA, Params::None),
            Ok(Mechanism::Ecdsa)
        );
        assert_eq!(
            Mechanism::decode(ck::CKM_ECDSA, Params::Malformed),
            Err(Error::MechanismParamInvalid)
        );
        assert_eq!(
            Mechanism::decode(ck::CKM_RSA_PKCS, Params::None),
            Err(Error::MechanismInvalid)
        );
        let gcm = |iv: usize, tag_bits| {
            Params::Gcm(GcmParams {
                iv: vec![1; iv],
                aad: vec![],
                tag_bits,
            })
        };
        assert!(Mechanism::decode(ck::CKM_AES_GCM, gcm(12, 128)).is_ok());
        assert_eq!(
            Mechanism::decode(ck::CKM_AES_GCM, gcm(16, 128)),
            Err(Error::MechanismParamInvalid)
        );
        assert_eq!(
            Mechanism::decode(ck::CKM_AES_GCM, gcm(12, 96)),
            Err(Error::MechanismParamInvalid)
        );
        let ecdh = |kdf, shared: &[u8]| {
            Params::Ecdh1(Ecdh1Params {
                kdf,
                shared_data: shared.to_vec(),
                public: vec![4; 65],
            })
        };
        assert!(Mechanism::decode(ck::CKM_ECDH1_DERIVE, ecdh(ck::CKD_NULL, b"")).is_ok());
        assert_eq!(
            Mechanism::decode(ck::CKM_ECDH1_DERIVE, ecdh(ck::CKD_SHA256_KDF, b"")),
            Err(Error::MechanismParamInvalid)
        );
        assert_eq!(
            Mechanism::decode(ck::CKM_ECDH1_DERIVE, ecdh(ck::CKD_NULL, b"x")),
            Err(Error::MechanismParamInvalid)
        );
        for m in MECHANISMS {
            assert!(info(m.0).is_ok());
        }
    }
}
