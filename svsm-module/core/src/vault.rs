//! The vault (vHSM): keys generated or imported inside VMPL0, used on behalf of the VMPL that
//! owns them, never handed out. Each key records its owner VMPL and usage flags; a caller at
//! another VMPL sees no such key, and a disallowed usage is refused.
//!
//! Import (provisioning): a key provider that appraised an attestation of this module wraps key
//! material into an [`ImportPackage`] (format in `svsm_abi::vault`). The package's binding names
//! the owner VMPL, the instance id and this boot's transport public key T (all three from the
//! appraised manifest), the key's kind, usage and name, and the appraisal's nonce; the provider's
//! ephemeral P-384 key E and T give `k = HKDF-SHA384(salt = IMPORT_LABEL, ikm = ECDH(E, T).x,
//! info = binding)`, and AES-256-GCM under k with the binding as AAD carries the material.
//!
//! Why this binds a key to exactly what was appraised:
//! - T is made from entropy at boot and never leaves VMPL0 ([`crate::keys::BootTransportKey`]):
//!   only the appraised boot can compute k. Another instance of the same image, another kernel
//!   under the same firmware, or the next boot of this instance has another T.
//! - The binding is authenticated by the AEAD and also checked field by field first, so a
//!   refusal says why: another owner VMPL than the caller ([`VaultStatus::OwnerMismatch`]),
//!   another instance ([`VaultStatus::WrongInstance`]), another boot ([`VaultStatus::WrongBoot`]),
//!   a nonce the caller's VMPL never attested with in this boot ([`VaultStatus::UnknownContext`]).
//! - The importer becomes the key's owner only when it is the VMPL the provider named, and the
//!   provider names the requester VMPL the attested manifest reports.

use crate::keys::{subkey, BootTransportKey, KeyHierarchy};
use crate::platform::{Entropy, Vmpl};
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use p384::elliptic_curve::sec1::ToEncodedPoint;
use sha2::{Sha256, Sha384};
use svsm_abi::vault::{
    valid_key_name, ImportBinding, ImportPackage, KeyKind, Request, Usage, VaultStatus,
    IMPORT_LABEL, IV_LEN, MAX_KEY_NAME, P384_POINT_LEN, TAG_LEN,
};
use zeroize::Zeroizing;

/// Most keys the vault holds.
pub const MAX_KEYS: usize = 256;
/// HKDF label of ECDH derivation.
pub const DERIVE_LABEL: &[u8] = b"svsm-vhsm derive v1";
const SEAL_LABEL: &[u8] = b"svsm-vhsm seal v1";
const SEAL_VERSION: u8 = 1;

/// Why a vault operation failed (mapped to [`VaultStatus`] codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// See [`VaultStatus`].
    #[error("vault: {0:?}")]
    Status(VaultStatus),
    /// The vault has no keys: the root key could not be derived at boot.
    #[error("the vault is unavailable (no root key)")]
    Unavailable,
    /// The vTPM is needed (PCR binding) but not served.
    #[error("PCR binding needs the vTPM, which is not served")]
    NoTpm,
}

impl From<VaultStatus> for VaultError {
    fn from(s: VaultStatus) -> Self {
        VaultError::Status(s)
    }
}

/// Secret material, wiped on drop.
enum Secret {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Aes(Zeroizing<[u8; 32]>),
    Hmac(Zeroizing<[u8; 48]>),
    Hmac256(Zeroizing<[u8; 32]>),
    Ecdh(p384::SecretKey),
    EcdhP256(p256::SecretKey),
    Opaque(Zeroizing<[u8; 32]>),
}

impl Secret {
    fn from_bytes(kind: KeyKind, bytes: &[u8]) -> Option<Secret> {
        Some(match kind {
            KeyKind::EcdsaP256 => Secret::P256(p256::ecdsa::SigningKey::from_slice(bytes).ok()?),
            KeyKind::EcdsaP384 => Secret::P384(p384::ecdsa::SigningKey::from_slice(bytes).ok()?),
            KeyKind::Aes256Gcm => Secret::Aes(Zeroizing::new(bytes.try_into().ok()?)),
            KeyKind::HmacSha384 => Secret::Hmac(Zeroizing::new(bytes.try_into().ok()?)),
            KeyKind::EcdhP384 => Secret::Ecdh(p384::SecretKey::from_slice(bytes).ok()?),
            KeyKind::Secret256 => Secret::Opaque(Zeroizing::new(bytes.try_into().ok()?)),
            KeyKind::HmacSha256 => Secret::Hmac256(Zeroizing::new(bytes.try_into().ok()?)),
            KeyKind::EcdhP256 => Secret::EcdhP256(p256::SecretKey::from_slice(bytes).ok()?),
        })
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Secret::P256(k) => k.to_bytes().to_vec(),
            Secret::P384(k) => k.to_bytes().to_vec(),
            Secret::Aes(k) => k.to_vec(),
            Secret::Hmac(k) => k.to_vec(),
            Secret::Ecdh(k) => k.to_bytes().to_vec(),
            Secret::Opaque(k) => k.to_vec(),
            Secret::Hmac256(k) => k.to_vec(),
            Secret::EcdhP256(k) => k.to_bytes().to_vec(),
        })
    }

    fn public(&self) -> Option<Vec<u8>> {
        Some(match self {
            Secret::P256(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            Secret::P384(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            Secret::Ecdh(k) => k.public_key().to_encoded_point(false).as_bytes().to_vec(),
            Secret::EcdhP256(k) => k.public_key().to_encoded_point(false).as_bytes().to_vec(),
            Secret::Aes(_) | Secret::Hmac(_) | Secret::Hmac256(_) | Secret::Opaque(_) => {
                return None
            }
        })
    }

    /// The ECDH shared x-coordinate Z with `peer` (SEC1), for the two ECDH kinds.
    fn ecdh(&self, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        Ok(Zeroizing::new(match self {
            Secret::Ecdh(k) => {
                let peer = p384::PublicKey::from_sec1_bytes(peer)
                    .map_err(|_| VaultStatus::BadPublicKey)?;
                p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine())
                    .raw_secret_bytes()
                    .to_vec()
            }
            Secret::EcdhP256(k) => {
                let peer = p256::PublicKey::from_sec1_bytes(peer)
                    .map_err(|_| VaultStatus::BadPublicKey)?;
                p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine())
                    .raw_secret_bytes()
                    .to_vec()
            }
            _ => return Err(VaultStatus::WrongKeyKind.into()),
        }))
    }

    /// A new HMAC over `data` under an HMAC key, for the two HMAC kinds.
    fn hmac(&self, data: &[u8]) -> Result<HmacAny, VaultError> {
        Ok(match self {
            Secret::Hmac(k) => {
                let mut mac = <Hmac<Sha384> as KeyInit>::new_from_slice(k.as_ref())
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                mac.update(data);
                HmacAny::Sha384(mac)
            }
            Secret::Hmac256(k) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(k.as_ref())
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                mac.update(data);
                HmacAny::Sha256(mac)
            }
            _ => return Err(VaultStatus::WrongKeyKind.into()),
        })
    }
}

/// An HMAC computation of either hash.
enum HmacAny {
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
}

impl HmacAny {
    fn finish(self, out: &mut Vec<u8>) {
        match self {
            HmacAny::Sha256(m) => out.extend_from_slice(&m.finalize().into_bytes()),
            HmacAny::Sha384(m) => out.extend_from_slice(&m.finalize().into_bytes()),
        }
    }

    /// Constant-time comparison with `tag`.
    fn verify(self, tag: &[u8]) -> bool {
        match self {
            HmacAny::Sha256(m) => m.verify_slice(tag).is_ok(),
            HmacAny::Sha384(m) => m.verify_slice(tag).is_ok(),
        }
    }
}

/// The kinds a derivation may make (symmetric keys that stay in the vault).
const fn derivable(kind: KeyKind) -> bool {
    matches!(
        kind,
        KeyKind::Aes256Gcm | KeyKind::HmacSha384 | KeyKind::HmacSha256
    )
}

struct VaultKey {
    owner: Vmpl,
    /// Its name: the provider's for an imported key, the creator's otherwise (empty: none;
    /// names are unique per owner).
    name: Vec<u8>,
    kind: KeyKind,
    usage: Usage,
    secret: Secret,
}

/// What the vault needs from the module for one operation.
pub struct OpContext<'a, R: Entropy> {
    /// The keys of this launch.
    pub keys: &'a KeyHierarchy,
    /// Entropy for key generation and IVs.
    pub rng: &'a mut R,
    /// The sealed state's instance id.
    pub instance_id: &'a [u8; 16],
    /// This boot's transport key (`None`: no entropy at boot, imports unavailable).
    pub transport: Option<&'a BootTransportKey>,
    /// Nonces of this boot's recent attestations, with the VMPL that asked for each.
    pub attested_contexts: &'a [AttestedNonce],
    /// SHA-256 digest of the selected SHA-256 PCRs, read from the vTPM (for sealing).
    pub pcr_digest: Option<&'a mut dyn FnMut(u32) -> Result<[u8; 32], VaultError>>,
}

/// A nonce some VMPL attested with in this boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedNonce {
    /// The VMPL that asked for the attestation.
    pub requester: Vmpl,
    /// Its nonce.
    pub nonce: Vec<u8>,
}

/// The key store.
#[derive(Default)]
pub struct Vault {
    keys: BTreeMap<u32, VaultKey>,
    next_id: u32,
}

fn random<R: Entropy, const N: usize>(rng: &mut R) -> Result<Zeroizing<[u8; N]>, VaultError> {
    let mut b = Zeroizing::new([0u8; N]);
    rng.fill(b.as_mut())
        .map_err(|_| VaultStatus::EntropyFailed)?;
    Ok(b)
}

fn generate<R: Entropy>(kind: KeyKind, rng: &mut R) -> Result<Secret, VaultError> {
    // Rejection sampling for the curves: a random 32/48-byte string is a valid scalar with
    // overwhelming probability; retry a bounded number of times.
    for _ in 0..16 {
        let secret = match kind {
            KeyKind::EcdsaP256
            | KeyKind::Aes256Gcm
            | KeyKind::Secret256
            | KeyKind::HmacSha256
            | KeyKind::EcdhP256 => Secret::from_bytes(kind, random::<R, 32>(rng)?.as_ref()),
            KeyKind::EcdsaP384 | KeyKind::HmacSha384 | KeyKind::EcdhP384 => {
                Secret::from_bytes(kind, random::<R, 48>(rng)?.as_ref())
            }
        };
        if let Some(s) = secret {
            return Ok(s);
        }
    }
    Err(VaultStatus::EntropyFailed.into())
}

/// The AES-256-GCM key of an import package: HKDF-SHA384(salt = [`IMPORT_LABEL`], ikm = the
/// ECDH x-coordinate, info = the encoded binding).
fn import_key(shared: &[u8], binding: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha384>::new(Some(IMPORT_LABEL), shared);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA384's 255 * 48 limit: expand cannot fail.
    let _ = hk.expand(binding, key.as_mut());
    key
}

/// What a key provider wraps a key for: every field comes from the appraised manifest and the
/// provider's own decision (name, kind, usage).
#[derive(Clone, Copy, Debug)]
pub struct ImportTarget<'a> {
    /// Kind of the key.
    pub kind: KeyKind,
    /// Usage granted.
    pub usage: Usage,
    /// The VMPL that will own the key (the manifest's requester VMPL).
    pub owner: Vmpl,
    /// The manifest's instance id.
    pub instance_id: &'a [u8; 16],
    /// The manifest's transport public key (this boot's).
    pub recipient: &'a [u8; P384_POINT_LEN],
    /// The key's name (1..=64 printable ASCII bytes).
    pub name: &'a [u8],
    /// The nonce of the appraisal.
    pub nonce: &'a [u8],
}

/// Why a key could not be wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    /// The recipient is not a P-384 point.
    #[error("the transport key is not a P-384 public key")]
    BadRecipient,
    /// A binding field is out of range (name, nonce or owner VMPL).
    #[error(
        "the key name must be 1..={MAX_KEY_NAME} printable ASCII bytes and the nonce 1..=64 bytes"
    )]
    BadBinding,
    /// The material's length is not the kind's.
    #[error("key material is {actual} bytes; the kind takes {expected}")]
    MaterialLength {
        /// Given.
        actual: usize,
        /// The kind's secret length.
        expected: usize,
    },
    /// The cipher refused (cannot happen for sizes within the limits).
    #[error("AES-GCM encryption failed")]
    Encrypt,
}

/// The key provider's side of provisioning: wraps `material` for `target` into an import
/// package (`svsm_abi::vault::ImportPackage` bytes). `ephemeral_secret` and `iv` must be fresh
/// random values for every package.
pub fn wrap_for_import(
    target: &ImportTarget<'_>,
    ephemeral_secret: &p384::SecretKey,
    iv: &[u8; IV_LEN],
    material: &[u8],
) -> Result<Vec<u8>, WrapError> {
    if material.len() != target.kind.secret_len() {
        return Err(WrapError::MaterialLength {
            actual: material.len(),
            expected: target.kind.secret_len(),
        });
    }
    let recipient =
        p384::PublicKey::from_sec1_bytes(target.recipient).map_err(|_| WrapError::BadRecipient)?;
    let ephemeral: [u8; P384_POINT_LEN] = ephemeral_secret
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .try_into()
        .map_err(|_| WrapError::BadRecipient)?;
    let shared =
        p384::ecdh::diffie_hellman(ephemeral_secret.to_nonzero_scalar(), recipient.as_affine());
    let shared_x: Zeroizing<[u8; 48]> = Zeroizing::new(
        shared.raw_secret_bytes()[..]
            .try_into()
            .map_err(|_| WrapError::BadRecipient)?,
    );
    seal_import(target, &ephemeral, &shared_x, iv, material)
}

/// The rest of [`wrap_for_import`] for a provider that does the ECDH itself (for example with
/// a faster constant-time implementation): `ephemeral` is the SEC1 uncompressed public key of
/// a fresh ephemeral key `e`, `shared_x` the x-coordinate of e·T for the target's recipient T.
/// The package is byte-for-byte what [`wrap_for_import`] makes from the same inputs.
pub fn seal_import(
    target: &ImportTarget<'_>,
    ephemeral: &[u8; P384_POINT_LEN],
    shared_x: &[u8; 48],
    iv: &[u8; IV_LEN],
    material: &[u8],
) -> Result<Vec<u8>, WrapError> {
    if material.len() != target.kind.secret_len() {
        return Err(WrapError::MaterialLength {
            actual: material.len(),
            expected: target.kind.secret_len(),
        });
    }
    let binding = ImportBinding {
        kind: target.kind,
        usage: target.usage,
        owner_vmpl: target.owner.level(),
        instance_id: target.instance_id,
        recipient: target.recipient,
        ephemeral,
        name: target.name,
        nonce: target.nonce,
    };
    let mut package = alloc::vec![0u8; binding.len()];
    binding.write(&mut package).ok_or(WrapError::BadBinding)?;
    let key = import_key(shared_x, &package);
    let ct = Aes256Gcm::new_from_slice(key.as_ref())
        .map_err(|_| WrapError::Encrypt)?
        .encrypt(
            &gcm_nonce(iv).ok_or(WrapError::Encrypt)?,
            Payload {
                msg: material,
                aad: &package,
            },
        )
        .map_err(|_| WrapError::Encrypt)?;
    package.extend_from_slice(iv);
    package.extend_from_slice(&(ct.len() as u16).to_le_bytes());
    package.extend_from_slice(&ct);
    Ok(package)
}

/// Checks an import package against this boot and the caller, then unwraps its material.
fn unwrap_import<R: Entropy>(
    caller: Vmpl,
    package: &ImportPackage<'_>,
    ctx: &OpContext<'_, R>,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let b = &package.binding;
    if b.owner_vmpl != caller.level() {
        return Err(VaultStatus::OwnerMismatch.into());
    }
    if b.instance_id != ctx.instance_id {
        return Err(VaultStatus::WrongInstance.into());
    }
    let transport = ctx.transport.ok_or(VaultError::Unavailable)?;
    if b.recipient != transport.public() {
        return Err(VaultStatus::WrongBoot.into());
    }
    if !ctx
        .attested_contexts
        .iter()
        .any(|a| a.requester == caller && a.nonce.as_slice() == b.nonce)
    {
        return Err(VaultStatus::UnknownContext.into());
    }
    let e = p384::PublicKey::from_sec1_bytes(b.ephemeral).map_err(|_| VaultStatus::BadPublicKey)?;
    let shared = p384::ecdh::diffie_hellman(transport.secret().to_nonzero_scalar(), e.as_affine());
    let key = import_key(shared.raw_secret_bytes(), package.binding_bytes);
    let material = Aes256Gcm::new_from_slice(key.as_ref())
        .map_err(|_| VaultStatus::AuthenticationFailed)?
        .decrypt(
            &gcm_nonce(package.iv).ok_or(VaultStatus::AuthenticationFailed)?,
            Payload {
                msg: package.ciphertext,
                aad: package.binding_bytes,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultStatus::AuthenticationFailed)?;
    if material.len() != b.kind.secret_len() {
        return Err(VaultStatus::AuthenticationFailed.into());
    }
    Ok(material)
}

/// An AES-GCM nonce from a 12-byte IV.
pub(crate) fn gcm_nonce(iv: &[u8]) -> Option<Nonce<aes_gcm::aead::consts::U12>> {
    let iv: [u8; IV_LEN] = iv.try_into().ok()?;
    Some(iv.into())
}

/// AES-256-GCM of `plaintext` under `key` and `iv`, appended to `out` as ciphertext || tag:
/// encrypted in place in the response, no intermediate buffer.
fn gcm_seal(
    key: &[u8; 32],
    iv: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), VaultError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| VaultStatus::WrongKeyKind)?;
    let nonce = gcm_nonce(iv).ok_or(VaultStatus::WrongKeyKind)?;
    let start = out.len();
    out.extend_from_slice(plaintext);
    let body = out.get_mut(start..).ok_or(VaultStatus::WrongKeyKind)?;
    let tag = cipher
        .encrypt_in_place_detached(&nonce, aad, body)
        .map_err(|_| VaultStatus::WrongKeyKind)?;
    out.extend_from_slice(&tag);
    Ok(())
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn push_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

impl Vault {
    /// Number of keys held (all VMPLs).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn insert(
        &mut self,
        owner: Vmpl,
        name: &[u8],
        kind: KeyKind,
        usage: Usage,
        secret: Secret,
    ) -> Result<u32, VaultError> {
        if self.keys.len() >= MAX_KEYS {
            return Err(VaultStatus::VaultFull.into());
        }
        // Ids are never reused, so a destroyed key's id cannot come to mean another key.
        self.next_id = self.next_id.checked_add(1).ok_or(VaultStatus::VaultFull)?;
        let id = self.next_id;
        self.keys.insert(
            id,
            VaultKey {
                owner,
                name: name.to_vec(),
                kind,
                usage,
                secret,
            },
        );
        Ok(id)
    }

    /// Whether `caller` already holds a key named `name` (names are unique per owner).
    fn name_taken(&self, caller: Vmpl, name: &[u8]) -> bool {
        !name.is_empty()
            && self
                .keys
                .values()
                .any(|k| k.owner == caller && k.name == name)
    }

    /// The ECDH shared secret of `caller`'s key `key_id` with `peer`, for a new key of `kind`
    /// and `usage` (checked first: a derivable kind, a usage it can have).
    fn agree(
        &self,
        caller: Vmpl,
        key_id: u32,
        kind: KeyKind,
        usage: Usage,
        peer: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if !kind.allowed_usages().contains(usage) || usage.is_empty() {
            return Err(VaultStatus::UsageNotAllowed.into());
        }
        if !derivable(kind) {
            return Err(VaultStatus::WrongKeyKind.into());
        }
        self.key(caller, key_id, Usage::DERIVE)?.secret.ecdh(peer)
    }

    fn key(&self, caller: Vmpl, id: u32, need: Usage) -> Result<&VaultKey, VaultError> {
        // A key of another VMPL looks exactly like a missing one.
        let key = self
            .keys
            .get(&id)
            .filter(|k| k.owner == caller)
            .ok_or(VaultStatus::KeyNotFound)?;
        if !key.usage.contains(need) {
            return Err(VaultStatus::UsageNotAllowed.into());
        }
        Ok(key)
    }

    /// Runs one request for `caller`, appending the response to `out`. Returns whether the
    /// vault's persistent contents changed (the caller then re-seals the state).
    pub fn handle<R: Entropy>(
        &mut self,
        caller: Vmpl,
        request: &Request<'_>,
        ctx: &mut OpContext<'_, R>,
        out: &mut Vec<u8>,
    ) -> Result<bool, VaultError> {
        match *request {
            Request::CreateKey { kind, usage, name } => {
                if !kind.allowed_usages().contains(usage) || usage.is_empty() {
                    return Err(VaultStatus::UsageNotAllowed.into());
                }
                if self.name_taken(caller, name) {
                    return Err(VaultStatus::DuplicateName.into());
                }
                let secret = generate(kind, ctx.rng)?;
                let public = secret.public().unwrap_or_default();
                let id = self.insert(caller, name, kind, usage, secret)?;
                push_u32(out, id);
                push_u16(out, public.len() as u16);
                out.extend_from_slice(&public);
                Ok(true)
            }
            Request::ImportKey(ref package) => {
                let b = &package.binding;
                if !b.kind.allowed_usages().contains(b.usage) || b.usage.is_empty() {
                    return Err(VaultStatus::UsageNotAllowed.into());
                }
                let material = unwrap_import(caller, package, ctx)?;
                // Names are unique per owner, so a package cannot be imported twice.
                if self.name_taken(caller, b.name) {
                    return Err(VaultStatus::DuplicateName.into());
                }
                let secret =
                    Secret::from_bytes(b.kind, &material).ok_or(VaultStatus::BadPublicKey)?;
                let id = self.insert(caller, b.name, b.kind, b.usage, secret)?;
                push_u32(out, id);
                Ok(true)
            }
            Request::Sign { key_id, message } => {
                use p256::ecdsa::signature::Signer;
                let key = self.key(caller, key_id, Usage::SIGN)?;
                match &key.secret {
                    Secret::P256(k) => {
                        let sig: p256::ecdsa::Signature = k.sign(message);
                        out.extend_from_slice(&sig.to_bytes());
                    }
                    Secret::P384(k) => {
                        let sig: p384::ecdsa::Signature = k.sign(message);
                        out.extend_from_slice(&sig.to_bytes());
                    }
                    _ => return Err(VaultStatus::WrongKeyKind.into()),
                }
                Ok(false)
            }
            Request::Verify {
                key_id,
                signature,
                message,
            } => {
                use p256::ecdsa::signature::Verifier;
                let key = self.key(caller, key_id, Usage::VERIFY)?;
                let valid = match &key.secret {
                    Secret::P256(k) => p256::ecdsa::Signature::from_slice(signature)
                        .is_ok_and(|s| k.verifying_key().verify(message, &s).is_ok()),
                    Secret::P384(k) => p384::ecdsa::Signature::from_slice(signature)
                        .is_ok_and(|s| k.verifying_key().verify(message, &s).is_ok()),
                    Secret::Hmac(_) | Secret::Hmac256(_) => {
                        key.secret.hmac(message)?.verify(signature)
                    }
                    _ => return Err(VaultStatus::WrongKeyKind.into()),
                };
                push_u32(out, u32::from(valid));
                Ok(false)
            }
            Request::Encrypt {
                key_id,
                aad,
                plaintext,
            } => {
                let key = self.key(caller, key_id, Usage::ENCRYPT)?;
                let Secret::Aes(k) = &key.secret else {
                    return Err(VaultStatus::WrongKeyKind.into());
                };
                let iv = random::<R, IV_LEN>(ctx.rng)?;
                out.reserve(IV_LEN + plaintext.len() + TAG_LEN);
                out.extend_from_slice(iv.as_ref());
                gcm_seal(k, iv.as_ref(), aad, plaintext, out)?;
                Ok(false)
            }
            Request::Decrypt {
                key_id,
                aad,
                iv,
                ciphertext,
            } => {
                let key = self.key(caller, key_id, Usage::DECRYPT)?;
                let Secret::Aes(k) = &key.secret else {
                    return Err(VaultStatus::WrongKeyKind.into());
                };
                let (body, tag) = ciphertext
                    .split_at_checked(ciphertext.len().saturating_sub(TAG_LEN))
                    .ok_or(VaultStatus::AuthenticationFailed)?;
                let tag: [u8; TAG_LEN] = tag
                    .try_into()
                    .map_err(|_| VaultStatus::AuthenticationFailed)?;
                let cipher =
                    Aes256Gcm::new_from_slice(k.as_ref()).map_err(|_| VaultStatus::WrongKeyKind)?;
                let nonce = gcm_nonce(iv).ok_or(VaultStatus::AuthenticationFailed)?;
                // Decrypt in place in the response; on a bad tag the plaintext is wiped.
                let start = out.len();
                out.extend_from_slice(body);
                let buf = out
                    .get_mut(start..)
                    .ok_or(VaultStatus::AuthenticationFailed)?;
                if cipher
                    .decrypt_in_place_detached(&nonce, aad, buf, &tag.into())
                    .is_err()
                {
                    zeroize::Zeroize::zeroize(buf);
                    out.truncate(start);
                    return Err(VaultStatus::AuthenticationFailed.into());
                }
                Ok(false)
            }
            Request::Mac { key_id, data } => {
                let key = self.key(caller, key_id, Usage::MAC)?;
                key.secret.hmac(data)?.finish(out);
                Ok(false)
            }
            Request::Derive {
                key_id,
                kind,
                usage,
                peer_public,
                info,
            } => {
                let shared = self.agree(caller, key_id, kind, usage, peer_public)?;
                let hk = Hkdf::<Sha384>::new(Some(DERIVE_LABEL), &shared);
                let mut material = Zeroizing::new([0u8; 48]);
                let len = kind.secret_len();
                let dst = material.get_mut(..len).ok_or(VaultStatus::WrongKeyKind)?;
                hk.expand(info, dst)
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                let secret = Secret::from_bytes(kind, material.get(..len).unwrap_or(&[]))
                    .ok_or(VaultStatus::WrongKeyKind)?;
                let id = self.insert(caller, &[], kind, usage, secret)?;
                push_u32(out, id);
                Ok(true)
            }
            Request::Seal {
                bind_pcrs,
                pcr_mask,
                aad,
                data,
            } => {
                let digest = match (bind_pcrs, ctx.pcr_digest.as_mut()) {
                    (false, _) => [0u8; 32],
                    (true, Some(read)) => read(pcr_mask)?,
                    (true, None) => return Err(VaultError::NoTpm),
                };
                let mut header = Vec::with_capacity(48);
                header.push(SEAL_VERSION);
                header.push(u8::from(bind_pcrs));
                header.push(caller.level());
                header.push(0);
                push_u32(&mut header, if bind_pcrs { pcr_mask } else { 0 });
                header.extend_from_slice(&digest);
                let iv = random::<R, IV_LEN>(ctx.rng)?;
                header.extend_from_slice(iv.as_ref());
                let key = subkey(
                    ctx.keys.vault_master(),
                    SEAL_LABEL,
                    &[&[caller.level()], &digest],
                );
                let full_aad = [header.as_slice(), aad].concat();
                let ct = Aes256Gcm::new_from_slice(key.as_ref())
                    .map_err(|_| VaultStatus::WrongKeyKind)?
                    .encrypt(
                        &gcm_nonce(iv.as_ref()).ok_or(VaultStatus::EntropyFailed)?,
                        Payload {
                            msg: data,
                            aad: &full_aad,
                        },
                    )
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                out.extend_from_slice(&header);
                out.extend_from_slice(&ct);
                Ok(false)
            }
            Request::Unseal { aad, blob } => {
                const HEADER: usize = 4 + 4 + 32 + IV_LEN;
                let (header, ct) = blob
                    .split_at_checked(HEADER)
                    .ok_or(VaultStatus::ForeignBlob)?;
                let field = |a: usize, b: usize| header.get(a..b).ok_or(VaultStatus::ForeignBlob);
                let h = field(0, 4)?;
                if h.first() != Some(&SEAL_VERSION) || h.get(2) != Some(&caller.level()) {
                    return Err(VaultStatus::ForeignBlob.into());
                }
                let bound = h.get(1) == Some(&1);
                let mask = u32::from_le_bytes(
                    field(4, 8)?
                        .try_into()
                        .map_err(|_| VaultStatus::ForeignBlob)?,
                );
                let sealed_digest: [u8; 32] = field(8, 40)?
                    .try_into()
                    .map_err(|_| VaultStatus::ForeignBlob)?;
                if bound {
                    let read = ctx.pcr_digest.as_mut().ok_or(VaultError::NoTpm)?;
                    let now = read(mask)?;
                    // PCR values are not secret; a plain comparison only says why it fails.
                    if now != sealed_digest {
                        return Err(VaultStatus::PcrMismatch.into());
                    }
                }
                let key = subkey(
                    ctx.keys.vault_master(),
                    SEAL_LABEL,
                    &[&[caller.level()], &sealed_digest],
                );
                let iv = field(40, 40 + IV_LEN)?;
                let full_aad = [header, aad].concat();
                let pt = Aes256Gcm::new_from_slice(key.as_ref())
                    .map_err(|_| VaultStatus::WrongKeyKind)?
                    .decrypt(
                        &gcm_nonce(iv).ok_or(VaultStatus::ForeignBlob)?,
                        Payload {
                            msg: ct,
                            aad: &full_aad,
                        },
                    )
                    .map_err(|_| VaultStatus::AuthenticationFailed)?;
                out.extend_from_slice(&pt);
                Ok(false)
            }
            Request::ExportPublic { key_id } => {
                let key = self
                    .keys
                    .get(&key_id)
                    .filter(|k| k.owner == caller)
                    .ok_or(VaultStatus::KeyNotFound)?;
                let public = key.secret.public().ok_or(VaultStatus::WrongKeyKind)?;
                out.extend_from_slice(&public);
                Ok(false)
            }
            Request::RevealSecret { key_id } => {
                // The one response with secret bytes: only a Secret256, only to its owner,
                // only with the usage its provider granted, and only once. The secret leaves
                // the vault with the answer (and was never part of the sealed state), so each
                // use needs a fresh release, which the provider grants only to a node it
                // trusts now.
                let key = self.key(caller, key_id, Usage::REVEAL)?;
                if !matches!(key.secret, Secret::Opaque(_)) {
                    return Err(VaultStatus::WrongKeyKind.into());
                }
                if let Some(VaultKey {
                    secret: Secret::Opaque(k),
                    ..
                }) = self.keys.remove(&key_id)
                {
                    out.extend_from_slice(k.as_ref());
                }
                Ok(false)
            }
            Request::Destroy { key_id } => {
                if self.keys.get(&key_id).is_none_or(|k| k.owner != caller) {
                    return Err(VaultStatus::KeyNotFound.into());
                }
                self.keys.remove(&key_id);
                Ok(true)
            }
            Request::List => {
                let mine: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|(_, k)| k.owner == caller)
                    .collect();
                push_u32(out, mine.len() as u32);
                for (id, k) in mine {
                    push_u32(out, *id);
                    push_u16(out, k.kind as u16);
                    push_u16(out, k.usage.bits());
                    out.push(k.name.len() as u8);
                    out.extend_from_slice(&k.name);
                }
                Ok(false)
            }
            Request::TransportKey => {
                let t = ctx.transport.ok_or(VaultError::Unavailable)?;
                out.extend_from_slice(t.public());
                Ok(false)
            }
            Request::SignDigest { key_id, digest } => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let key = self.key(caller, key_id, Usage::SIGN)?;
                // The ecdsa crate truncates a long digest to the order length and refuses
                // one shorter than half of it (bits2field), which the parser already bounds.
                match &key.secret {
                    Secret::P256(k) => {
                        let sig: p256::ecdsa::Signature = k
                            .sign_prehash(digest)
                            .map_err(|_| VaultStatus::WrongKeyKind)?;
                        out.extend_from_slice(&sig.to_bytes());
                    }
                    Secret::P384(k) => {
                        let sig: p384::ecdsa::Signature = k
                            .sign_prehash(digest)
                            .map_err(|_| VaultStatus::WrongKeyKind)?;
                        out.extend_from_slice(&sig.to_bytes());
                    }
                    _ => return Err(VaultStatus::WrongKeyKind.into()),
                }
                Ok(false)
            }
            Request::Random { len } => {
                let start = out.len();
                out.resize(start + usize::from(len), 0);
                let dst = out.get_mut(start..).ok_or(VaultStatus::EntropyFailed)?;
                if ctx.rng.fill(dst).is_err() {
                    out.truncate(start);
                    return Err(VaultStatus::EntropyFailed.into());
                }
                Ok(false)
            }
            Request::DeriveRaw {
                key_id,
                kind,
                usage,
                peer_public,
                name,
            } => {
                let shared = self.agree(caller, key_id, kind, usage, peer_public)?;
                // PKCS#11 CKD_NULL: the key is Z's leading bytes; a key longer than Z would
                // need a KDF, which this request does not do.
                let material = shared
                    .get(..kind.secret_len())
                    .ok_or(VaultStatus::WrongKeyKind)?;
                let secret = Secret::from_bytes(kind, material).ok_or(VaultStatus::WrongKeyKind)?;
                if self.name_taken(caller, name) {
                    return Err(VaultStatus::DuplicateName.into());
                }
                let id = self.insert(caller, name, kind, usage, secret)?;
                push_u32(out, id);
                Ok(true)
            }
            Request::EncryptWithIv {
                key_id,
                iv,
                aad,
                plaintext,
            } => {
                let key = self.key(caller, key_id, Usage::ENCRYPT)?;
                let Secret::Aes(k) = &key.secret else {
                    return Err(VaultStatus::WrongKeyKind.into());
                };
                gcm_seal(k, iv, aad, plaintext, out)?;
                Ok(false)
            }
            // Handled by the module (they act on the vTPM and the event log, not on keys).
            Request::Measure { .. }
            | Request::ReadEventLog { .. }
            | Request::AddEvidence { .. } => Err(VaultStatus::WrongKeyKind.into()),
        }
    }

    /// An upper bound of [`Vault::serialize`]'s output for `keys` keys.
    pub const fn serialized_len_bound(keys: usize) -> usize {
        // next id, count; per key: id, owner, name, kind, usage, length, secret (48 at most).
        8 + keys * (4 + 1 + 1 + MAX_KEY_NAME + 2 + 2 + 2 + 48)
    }

    /// Serializes every key but the secrets a provider released for one use (secret; sealed
    /// before it leaves VMPL0). A `Secret256` lives only in this boot's memory: a later boot
    /// cannot reveal it without a new release.
    pub fn serialize(&self, out: &mut Vec<u8>) {
        let kept = || {
            self.keys
                .iter()
                .filter(|(_, k)| !matches!(k.secret, Secret::Opaque(_)))
        };
        push_u32(out, self.next_id);
        push_u32(out, kept().count() as u32);
        for (id, k) in kept() {
            push_u32(out, *id);
            out.push(k.owner.level());
            out.push(k.name.len() as u8);
            out.extend_from_slice(&k.name);
            push_u16(out, k.kind as u16);
            push_u16(out, k.usage.bits());
            let secret = k.secret.to_bytes();
            push_u16(out, secret.len() as u16);
            out.extend_from_slice(&secret);
        }
    }

    /// Restores keys from [`Vault::serialize`] output; `None` if malformed.
    pub fn deserialize(bytes: &[u8]) -> Option<(Vault, &[u8])> {
        let mut r = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (h, t) = r.split_at_checked(n)?;
            r = t;
            Some(h)
        };
        let u16_of = |b: &[u8]| Some(u16::from_le_bytes(b.try_into().ok()?));
        let u32_of = |b: &[u8]| Some(u32::from_le_bytes(b.try_into().ok()?));
        let next_id = u32_of(take(4)?)?;
        let count = u32_of(take(4)?)? as usize;
        if count > MAX_KEYS {
            return None;
        }
        let mut vault = Vault {
            keys: BTreeMap::new(),
            next_id,
        };
        for _ in 0..count {
            let id = u32_of(take(4)?)?;
            let owner = Vmpl::new(*take(1)?.first()?)?;
            let name_len = usize::from(*take(1)?.first()?);
            let name = take(name_len)?.to_vec();
            if !name.is_empty() && !valid_key_name(&name) {
                return None;
            }
            let kind = KeyKind::from_u16(u16_of(take(2)?)?)?;
            let usage = Usage::from_bits(u16_of(take(2)?)?)?;
            let len = usize::from(u16_of(take(2)?)?);
            let secret = Secret::from_bytes(kind, take(len)?)?;
            vault.keys.insert(
                id,
                VaultKey {
                    owner,
                    name,
                    kind,
                    usage,
                    secret,
                },
            );
        }
        Some((vault, r))
    }
}

/// SHA-256 of the concatenated PCR values (index order), as sealing binds them.
pub fn pcr_digest(values: &[[u8; 32]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}
