//! The token's objects: each vault key seen as PKCS#11 objects, and their attributes.
//!
//! An elliptic-curve key is two objects, its private key and its public key; an AES or HMAC key
//! is one secret-key object; a `Secret256` (a disk key the vault reveals once) is not an object.
//! A handle is `key id << 2 | class`, so a handle stays valid as long as its key exists (vault
//! key ids are never reused) and needs no table.

use crate::error::Error;
use cryptoki_sys as ck;
use svsm_abi::vault::{KeyKind, Usage};

/// Which of a key's objects a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// The private key of an EC key.
    Private = 1,
    /// The public key of an EC key.
    Public = 2,
    /// An AES or HMAC key.
    Secret = 3,
}

/// An object handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId {
    /// The vault key id.
    pub key: u32,
    /// Which object of it.
    pub class: Class,
}

impl ObjectId {
    /// The handle.
    pub fn handle(self) -> ck::CK_OBJECT_HANDLE {
        (u64::from(self.key) << 2) | self.class as u64
    }

    /// Decodes a handle (its key may no longer exist).
    pub fn from_handle(h: ck::CK_OBJECT_HANDLE) -> Result<ObjectId, Error> {
        let key = u32::try_from(h >> 2).map_err(|_| Error::ObjectHandleInvalid)?;
        let class = match h & 3 {
            1 => Class::Private,
            2 => Class::Public,
            3 => Class::Secret,
            _ => return Err(Error::ObjectHandleInvalid),
        };
        Ok(ObjectId { key, class })
    }
}

/// What the token knows of a vault key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its kind.
    pub kind: KeyKind,
    /// Its usage.
    pub usage: Usage,
    /// Its name (the object's CKA_LABEL); empty when it has none.
    pub name: String,
    /// Made by this process as a session object (`CKA_TOKEN` false): destroyed with its
    /// session.
    pub session_object: bool,
}

/// The curves this token has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

/// DER of the namedCurve OID 1.2.840.10045.3.1.7 (CKA_EC_PARAMS of P-256).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the namedCurve OID 1.3.132.0.34 (CKA_EC_PARAMS of P-384).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

impl Curve {
    /// The curve of an EC kind.
    pub fn of(kind: KeyKind) -> Option<Curve> {
        match kind {
            KeyKind::EcdsaP256 | KeyKind::EcdhP256 => Some(Curve::P256),
            KeyKind::EcdsaP384 | KeyKind::EcdhP384 => Some(Curve::P384),
            KeyKind::Aes256Gcm | KeyKind::HmacSha384 | KeyKind::HmacSha256 | KeyKind::Secret256 => {
                None
            }
        }
    }

    /// The curve CKA_EC_PARAMS names (a DER namedCurve OID).
    pub fn from_params(params: &[u8]) -> Result<Curve, Error> {
        match params {
            P256_PARAMS => Ok(Curve::P256),
            P384_PARAMS => Ok(Curve::P384),
            _ => Err(Error::CurveNotSupported),
        }
    }

    /// CKA_EC_PARAMS.
    pub fn params(self) -> &'static [u8] {
        match self {
            Curve::P256 => P256_PARAMS,
            Curve::P384 => P384_PARAMS,
        }
    }

    /// The group order's length in bytes (half an r || s signature).
    pub fn order_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// The kind of a key on this curve that signs or that agrees keys.
    pub fn kind(self, derive: bool) -> KeyKind {
        match (self, derive) {
            (Curve::P256, false) => KeyKind::EcdsaP256,
            (Curve::P384, false) => KeyKind::EcdsaP384,
            (Curve::P256, true) => KeyKind::EcdhP256,
            (Curve::P384, true) => KeyKind::EcdhP384,
        }
    }
}

/// The objects a key shows.
pub fn objects_of(kind: KeyKind) -> &'static [Class] {
    match kind {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdhP256 | KeyKind::EcdhP384 => {
            &[Class::Private, Class::Public]
        }
        KeyKind::Aes256Gcm | KeyKind::HmacSha256 | KeyKind::HmacSha384 => &[Class::Secret],
        KeyKind::Secret256 => &[],
    }
}

/// CK_ULONG as an attribute value.
pub fn ulong(v: ck::CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// CK_BBOOL as an attribute value.
pub fn bool_value(v: bool) -> Vec<u8> {
    vec![if v { ck::CK_TRUE } else { ck::CK_FALSE }]
}

/// A SEC1 point as CKA_EC_POINT: DER OCTET STRING around it (PKCS#11 2.40 §2.3.3).
pub fn ec_point_der(point: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    if point.len() < 0x80 {
        out.push(point.len() as u8);
    } else {
        out.push(0x81);
        out.push(point.len() as u8);
    }
    out.extend_from_slice(point);
    out
}

/// The SEC1 point inside CKA_EC_POINT or an ECDH peer value: a DER OCTET STRING around it, or
/// the raw point (PKCS#11 lets applications pass either to CKM_ECDH1_DERIVE).
pub fn ec_point_raw(value: &[u8]) -> &[u8] {
    match value {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => value,
    }
}

/// The key type of a vault kind.
pub fn key_type(kind: KeyKind) -> ck::CK_KEY_TYPE {
    match kind {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdhP256 | KeyKind::EcdhP384 => {
            ck::CKK_EC
        }
        KeyKind::Aes256Gcm => ck::CKK_AES,
        // HMAC keys are generic secrets (PKCS#11 2.40 §2.20: CKM_SHA256_HMAC takes them); the
        // vault fixes the hash by the key's length: 32 bytes SHA-256, 48 bytes SHA-384.
        KeyKind::HmacSha256 | KeyKind::HmacSha384 | KeyKind::Secret256 => ck::CKK_GENERIC_SECRET,
    }
}

/// An attribute's value, or why it has none. `point` fetches the public point (only asked for
/// CKA_EC_POINT).
pub fn attribute(
    id: ObjectId,
    info: &KeyInfo,
    kind: ck::CK_ATTRIBUTE_TYPE,
    point: &mut dyn FnMut() -> Result<Vec<u8>, Error>,
) -> Result<Vec<u8>, Error> {
    let class = id.class;
    let usage = info.usage;
    let private_or_secret = class != Class::Public;
    let value = match kind {
        ck::CKA_CLASS => ulong(match class {
            Class::Private => ck::CKO_PRIVATE_KEY,
            Class::Public => ck::CKO_PUBLIC_KEY,
            Class::Secret => ck::CKO_SECRET_KEY,
        }),
        ck::CKA_KEY_TYPE => ulong(key_type(info.kind)),
        ck::CKA_TOKEN => bool_value(!info.session_object),
        // No object needs a login: the token has none (its access boundary is the VMPL,
        // docs/pkcs11.md), so every session sees and uses every object.
        ck::CKA_PRIVATE => bool_value(false),
        ck::CKA_MODIFIABLE | ck::CKA_COPYABLE => bool_value(false),
        ck::CKA_DESTROYABLE => bool_value(true),
        ck::CKA_LABEL => info.name.as_bytes().to_vec(),
        ck::CKA_ID => id.key.to_be_bytes().to_vec(),
        // An ECDH key pair's public half says DERIVE too: it is the half a peer derives with.
        ck::CKA_DERIVE => bool_value(usage.contains(Usage::DERIVE)),
        ck::CKA_SIGN => bool_value(
            private_or_secret && (usage.contains(Usage::SIGN) || usage.contains(Usage::MAC)),
        ),
        ck::CKA_VERIFY => bool_value(match class {
            Class::Public => usage.contains(Usage::SIGN),
            Class::Secret => usage.contains(Usage::VERIFY),
            Class::Private => false,
        }),
        ck::CKA_ENCRYPT => bool_value(class == Class::Secret && usage.contains(Usage::ENCRYPT)),
        ck::CKA_DECRYPT => bool_value(class == Class::Secret && usage.contains(Usage::DECRYPT)),
        ck::CKA_WRAP | ck::CKA_UNWRAP | ck::CKA_SIGN_RECOVER | ck::CKA_VERIFY_RECOVER => {
            bool_value(false)
        }
        ck::CKA_SENSITIVE | ck::CKA_ALWAYS_SENSITIVE | ck::CKA_NEVER_EXTRACTABLE
            if private_or_secret =>
        {
            bool_value(true)
        }
        ck::CKA_EXTRACTABLE | ck::CKA_ALWAYS_AUTHENTICATE | ck::CKA_WRAP_WITH_TRUSTED
            if private_or_secret =>
        {
            bool_value(false)
        }
        ck::CKA_TRUSTED if class == Class::Public => bool_value(false),
        ck::CKA_SUBJECT | ck::CKA_START_DATE | ck::CKA_END_DATE if class != Class::Secret => {
            Vec::new()
        }
        ck::CKA_VALUE if private_or_secret => return Err(Error::AttributeSensitive),
        ck::CKA_VALUE_LEN if class == Class::Secret => ulong(info.kind.secret_len() as u64),
        ck::CKA_EC_PARAMS if class != Class::Secret => Curve::of(info.kind)
            .ok_or(Error::AttributeTypeInvalid)?
            .params()
            .to_vec(),
        ck::CKA_EC_POINT if class != Class::Secret => ec_point_der(&point()?),
        _ => return Err(Error::AttributeTypeInvalid),
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_junk_handles_are_invalid() {
        for class in [Class::Private, Class::Public, Class::Secret] {
            let id = ObjectId { key: 77, class };
            assert_eq!(ObjectId::from_handle(id.handle()), Ok(id));
        }
        assert_eq!(ObjectId::from_handle(0), Err(Error::ObjectHandleInvalid));
        assert_eq!(ObjectId::from_handle(8), Err(Error::ObjectHandleInvalid));
        assert_eq!(
            ObjectId::from_handle(u64::MAX),
            Err(Error::ObjectHandleInvalid)
        );
    }

    #[test]
    fn ec_points_wrap_and_unwrap() {
        for len in [65usize, 97] {
            let point = vec![4u8; len];
            let der = ec_point_der(&point);
            assert_eq!(ec_point_raw(&der), &point[..]);
            assert_eq!(ec_point_raw(&point), &point[..]);
        }
        assert_eq!(Curve::from_params(P384_PARAMS), Ok(Curve::P384));
        assert_eq!(
            Curve::from_params(&[6, 1, 0]),
            Err(Error::CurveNotSupported)
        );
    }

    #[test]
    fn secret_values_are_sensitive_and_public_ones_are_not_secrets() {
        let info = KeyInfo {
            kind: KeyKind::EcdsaP256,
            usage: Usage::SIGN | Usage::VERIFY,
            name: "k".into(),
            session_object: false,
        };
        let mut point = || Ok(vec![4u8; 65]);
        let private = ObjectId {
            key: 1,
            class: Class::Private,
        };
        let public = ObjectId {
            key: 1,
            class: Class::Public,
        };
        assert_eq!(
            attribute(private, &info, ck::CKA_VALUE, &mut point),
            Err(Error::AttributeSensitive)
        );
        assert_eq!(
            attribute(private, &info, ck::CKA_EXTRACTABLE, &mut point),
            Ok(vec![ck::CK_FALSE])
        );
        assert_eq!(
            attribute(public, &info, ck::CKA_VALUE, &mut point),
            Err(Error::AttributeTypeInvalid)
        );
        assert_eq!(
            attribute(public, &info, ck::CKA_EC_POINT, &mut point).map(|v| v.len()),
            Ok(67)
        );
        assert_eq!(
            attribute(public, &info, ck::CKA_VERIFY, &mut point),
            Ok(vec![ck::CK_TRUE])
        );
    }
}
