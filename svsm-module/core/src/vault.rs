//! The vault (vHSM): keys generated or imported inside VMPL0, used on behalf of the VMPL that
//! owns them, never handed out. Each key records its owner VMPL and usage flags; a caller at
//! another VMPL sees no such key, and a disallowed usage is refused.
//!
//! Import: a host party wraps key material to the vault's transport public key T with an
//! ephemeral P-384 key E: `k = HKDF-SHA384(salt = context, ikm = ECDH(e, T), info = label ||
//! E || T || kind || usage)`, then AES-256-GCM under k with AAD = `kind || usage || context`.
//! The context must be the nonce of a recent attestation by this module, so a key is only
//! released to the instance the host appraised.

use crate::keys::{subkey, KeyHierarchy};
use crate::platform::{Entropy, Vmpl};
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use p384::elliptic_curve::sec1::ToEncodedPoint;
use sha2::{Sha256, Sha384};
use svsm_abi::vault::{KeyKind, Request, Usage, VaultStatus, IV_LEN, TAG_LEN};
use zeroize::Zeroizing;

/// Most keys the vault holds.
pub const MAX_KEYS: usize = 256;
/// HKDF label of import wrapping.
pub const IMPORT_LABEL: &[u8] = b"svsm-vhsm import v1";
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
    Ecdh(p384::SecretKey),
}

impl Secret {
    fn from_bytes(kind: KeyKind, bytes: &[u8]) -> Option<Secret> {
        Some(match kind {
            KeyKind::EcdsaP256 => Secret::P256(p256::ecdsa::SigningKey::from_slice(bytes).ok()?),
            KeyKind::EcdsaP384 => Secret::P384(p384::ecdsa::SigningKey::from_slice(bytes).ok()?),
            KeyKind::Aes256Gcm => Secret::Aes(Zeroizing::new(bytes.try_into().ok()?)),
            KeyKind::HmacSha384 => Secret::Hmac(Zeroizing::new(bytes.try_into().ok()?)),
            KeyKind::EcdhP384 => Secret::Ecdh(p384::SecretKey::from_slice(bytes).ok()?),
        })
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Secret::P256(k) => k.to_bytes().to_vec(),
            Secret::P384(k) => k.to_bytes().to_vec(),
            Secret::Aes(k) => k.to_vec(),
            Secret::Hmac(k) => k.to_vec(),
            Secret::Ecdh(k) => k.to_bytes().to_vec(),
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
            Secret::Aes(_) | Secret::Hmac(_) => return None,
        })
    }
}

struct VaultKey {
    owner: Vmpl,
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
    /// Contexts (attestation nonces) an import may bind to.
    pub attested_contexts: &'a [Vec<u8>],
    /// SHA-256 digest of the selected SHA-256 PCRs, read from the vTPM (for sealing).
    pub pcr_digest: Option<&'a mut dyn FnMut(u32) -> Result<[u8; 32], VaultError>>,
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
            KeyKind::EcdsaP256 | KeyKind::Aes256Gcm => {
                Secret::from_bytes(kind, random::<R, 32>(rng)?.as_ref())
            }
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

/// The usages a kind can have at all.
fn allowed_usages(kind: KeyKind) -> Usage {
    match kind {
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => Usage::SIGN | Usage::VERIFY,
        KeyKind::Aes256Gcm => Usage::ENCRYPT | Usage::DECRYPT,
        KeyKind::HmacSha384 => Usage::MAC | Usage::VERIFY,
        KeyKind::EcdhP384 => Usage::DERIVE,
    }
}

/// The AES-256-GCM key and AAD that unwrap an import.
fn import_key(
    shared: &[u8],
    context: &[u8],
    ephemeral: &[u8],
    transport: &[u8],
    kind: KeyKind,
    usage: Usage,
) -> (Zeroizing<[u8; 32]>, Vec<u8>) {
    let hk = Hkdf::<Sha384>::new(Some(context), shared);
    let mut key = Zeroizing::new([0u8; 32]);
    let kind_usage = [(kind as u16).to_le_bytes(), usage.bits().to_le_bytes()].concat();
    let _ = hk.expand_multi_info(
        &[IMPORT_LABEL, ephemeral, transport, &kind_usage],
        key.as_mut(),
    );
    let mut aad = kind_usage;
    aad.extend_from_slice(context);
    (key, aad)
}

/// The host side of provisioning: wraps `material` of `kind` to the vault transport key.
/// Returns (ephemeral public key, ciphertext with tag). `ephemeral_secret` and `iv` must be
/// fresh random values.
pub fn wrap_for_import(
    transport_public: &[u8],
    ephemeral_secret: &p384::SecretKey,
    iv: &[u8; IV_LEN],
    context: &[u8],
    kind: KeyKind,
    usage: Usage,
    material: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let t = p384::PublicKey::from_sec1_bytes(transport_public).ok()?;
    let shared = p384::ecdh::diffie_hellman(ephemeral_secret.to_nonzero_scalar(), t.as_affine());
    let e_pub = ephemeral_secret
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let (key, aad) = import_key(
        shared.raw_secret_bytes(),
        context,
        &e_pub,
        transport_public,
        kind,
        usage,
    );
    let ct = Aes256Gcm::new_from_slice(key.as_ref())
        .ok()?
        .encrypt(
            &gcm_nonce(iv)?,
            Payload {
                msg: material,
                aad: &aad,
            },
        )
        .ok()?;
    Some((e_pub, ct))
}

/// An AES-GCM nonce from a 12-byte IV.
pub(crate) fn gcm_nonce(iv: &[u8]) -> Option<Nonce<aes_gcm::aead::consts::U12>> {
    let iv: [u8; IV_LEN] = iv.try_into().ok()?;
    Some(iv.into())
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
                kind,
                usage,
                secret,
            },
        );
        Ok(id)
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
            Request::CreateKey { kind, usage } => {
                if !allowed_usages(kind).contains(usage) || usage.is_empty() {
                    return Err(VaultStatus::UsageNotAllowed.into());
                }
                let secret = generate(kind, ctx.rng)?;
                let public = secret.public().unwrap_or_default();
                let id = self.insert(caller, kind, usage, secret)?;
                push_u32(out, id);
                push_u16(out, public.len() as u16);
                out.extend_from_slice(&public);
                Ok(true)
            }
            Request::ImportKey {
                kind,
                usage,
                context,
                ephemeral_public,
                iv,
                ciphertext,
            } => {
                if !allowed_usages(kind).contains(usage) || usage.is_empty() {
                    return Err(VaultStatus::UsageNotAllowed.into());
                }
                if !ctx
                    .attested_contexts
                    .iter()
                    .any(|c| c.as_slice() == context)
                {
                    return Err(VaultStatus::UnknownContext.into());
                }
                let e = p384::PublicKey::from_sec1_bytes(ephemeral_public)
                    .map_err(|_| VaultStatus::BadPublicKey)?;
                let t = ctx.keys.transport_secret();
                let shared = p384::ecdh::diffie_hellman(t.to_nonzero_scalar(), e.as_affine());
                let transport_public = ctx.keys.transport_public();
                let (key, aad) = import_key(
                    shared.raw_secret_bytes(),
                    context,
                    ephemeral_public,
                    &transport_public,
                    kind,
                    usage,
                );
                let material = Aes256Gcm::new_from_slice(key.as_ref())
                    .map_err(|_| VaultStatus::AuthenticationFailed)?
                    .decrypt(
                        &gcm_nonce(iv).ok_or(VaultStatus::AuthenticationFailed)?,
                        Payload {
                            msg: ciphertext,
                            aad: &aad,
                        },
                    )
                    .map(Zeroizing::new)
                    .map_err(|_| VaultStatus::AuthenticationFailed)?;
                if material.len() != kind.secret_len() {
                    return Err(VaultStatus::AuthenticationFailed.into());
                }
                let secret =
                    Secret::from_bytes(kind, &material).ok_or(VaultStatus::BadPublicKey)?;
                let id = self.insert(caller, kind, usage, secret)?;
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
                    Secret::Hmac(k) => {
                        let mut mac = <Hmac<Sha384> as KeyInit>::new_from_slice(k.as_ref())
                            .map_err(|_| VaultStatus::WrongKeyKind)?;
                        mac.update(message);
                        // Constant-time comparison.
                        mac.verify_slice(signature).is_ok()
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
                let cipher =
                    Aes256Gcm::new_from_slice(k.as_ref()).map_err(|_| VaultStatus::WrongKeyKind)?;
                // Encrypt in place in the response: IV, then the plaintext turned ciphertext,
                // then the tag; no intermediate buffer.
                out.reserve(IV_LEN + plaintext.len() + TAG_LEN);
                out.extend_from_slice(iv.as_ref());
                let start = out.len();
                out.extend_from_slice(plaintext);
                let body = out.get_mut(start..).ok_or(VaultStatus::WrongKeyKind)?;
                let nonce = gcm_nonce(iv.as_ref()).ok_or(VaultStatus::EntropyFailed)?;
                let tag = cipher
                    .encrypt_in_place_detached(&nonce, aad, body)
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                out.extend_from_slice(&tag);
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
                let Secret::Hmac(k) = &key.secret else {
                    return Err(VaultStatus::WrongKeyKind.into());
                };
                let mut mac = <Hmac<Sha384> as KeyInit>::new_from_slice(k.as_ref())
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                mac.update(data);
                out.extend_from_slice(&mac.finalize().into_bytes());
                Ok(false)
            }
            Request::Derive {
                key_id,
                kind,
                usage,
                peer_public,
                info,
            } => {
                if !allowed_usages(kind).contains(usage) || usage.is_empty() {
                    return Err(VaultStatus::UsageNotAllowed.into());
                }
                if !matches!(kind, KeyKind::Aes256Gcm | KeyKind::HmacSha384) {
                    return Err(VaultStatus::WrongKeyKind.into());
                }
                let key = self.key(caller, key_id, Usage::DERIVE)?;
                let Secret::Ecdh(k) = &key.secret else {
                    return Err(VaultStatus::WrongKeyKind.into());
                };
                let peer = p384::PublicKey::from_sec1_bytes(peer_public)
                    .map_err(|_| VaultStatus::BadPublicKey)?;
                let shared = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                let hk = Hkdf::<Sha384>::new(Some(DERIVE_LABEL), shared.raw_secret_bytes());
                let mut material = Zeroizing::new([0u8; 48]);
                let len = kind.secret_len();
                let dst = material.get_mut(..len).ok_or(VaultStatus::WrongKeyKind)?;
                hk.expand(info, dst)
                    .map_err(|_| VaultStatus::WrongKeyKind)?;
                let secret = Secret::from_bytes(kind, material.get(..len).unwrap_or(&[]))
                    .ok_or(VaultStatus::WrongKeyKind)?;
                let id = self.insert(caller, kind, usage, secret)?;
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
                }
                Ok(false)
            }
            Request::TransportKey => {
                out.extend_from_slice(&ctx.keys.transport_public());
                Ok(false)
            }
            // Handled by the module (they act on the vTPM and the event log, not on keys).
            Request::Measure { .. }
            | Request::ReadEventLog { .. }
            | Request::AddEvidence { .. } => Err(VaultStatus::WrongKeyKind.into()),
        }
    }

    /// Serializes every key (secret; sealed before it leaves VMPL0).
    pub fn serialize(&self, out: &mut Vec<u8>) {
        push_u32(out, self.next_id);
        push_u32(out, self.keys.len() as u32);
        for (id, k) in &self.keys {
            push_u32(out, *id);
            out.push(k.owner.level());
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
            let kind = KeyKind::from_u16(u16_of(take(2)?)?)?;
            let usage = Usage::from_bits(u16_of(take(2)?)?)?;
            let len = usize::from(u16_of(take(2)?)?);
            let secret = Secret::from_bytes(kind, take(len)?)?;
            vault.keys.insert(
                id,
                VaultKey {
                    owner,
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
