//! Sealed state: the module's persistent state (vTPM permanent state and vault keys) as an
//! AES-256-GCM blob under the state-sealing key, kept by an untrusted [`StateStore`].
//!
//! Blob: `"SVSMSEAL"`, format version u16, reserved u16, key check 8 bytes, instance id 16
//! bytes, epoch u64, IV 12 bytes, ciphertext length u32, then ciphertext with tag. Everything
//! before the ciphertext is the AAD, so the epoch and instance id are authenticated. The key
//! check (HMAC of a fixed label under the sealing key) lets the module say "sealed by another
//! launch" instead of only "authentication failed"; it is advisory, the tag decides.
//!
//! Crash safety: two slots, write-then-switch. Epoch n goes to slot n % 2, so a write that dies
//! at any byte leaves the other slot's epoch n-1 intact; boot takes the valid blob with the
//! highest epoch.

use crate::keys::subkey;
use crate::platform::{StateStore, StoreError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use alloc::vec::Vec;

const MAGIC: &[u8; 8] = b"SVSMSEAL";
/// Format version of the blob.
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 8 + 2 + 2 + 8 + 16 + 8 + 12 + 4;
/// The two store slots.
pub const SLOTS: [u8; 2] = [0, 1];

/// Why sealed state could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than its header or its declared ciphertext.
    #[error("sealed state is truncated")]
    Truncated,
    /// Not a sealed-state blob.
    #[error("sealed state has no SVSMSEAL magic")]
    BadMagic,
    /// A format this module does not read.
    #[error("sealed state format version {0} is not supported")]
    UnsupportedVersion(u16),
    /// Sealed under another key: another launch measurement, policy or minimum TCB.
    #[error("sealed state belongs to another launch (measurement, policy or pinned TCB differ)")]
    ForeignLaunch,
    /// The right key, but the tag does not verify: the blob was modified.
    #[error("sealed state was modified (authentication failed)")]
    Tampered,
    /// The epoch is older than the one the caller expects: a replayed blob.
    #[error("sealed state epoch {found} is older than the expected {expected} (rollback)")]
    Rollback {
        /// Epoch in the blob.
        found: u64,
        /// Minimum expected.
        expected: u64,
    },
    /// The decrypted payload does not parse.
    #[error("sealed state payload is malformed")]
    MalformedPayload,
    /// The store failed.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
}

/// An opened blob.
pub struct Opened {
    /// Its epoch.
    pub epoch: u64,
    /// The instance id.
    pub instance_id: [u8; 16],
    /// The plaintext payload (secret; the caller wipes it).
    pub payload: zeroize::Zeroizing<Vec<u8>>,
}

fn key_check(key: &[u8; 32]) -> [u8; 8] {
    let k = subkey(key, b"svsm-vhsm sealed-state key check v1", &[]);
    let mut out = [0u8; 8];
    out.copy_from_slice(k.get(..8).unwrap_or(&[0; 8]));
    out
}

/// Seals `payload`.
pub fn seal(
    key: &[u8; 32],
    instance_id: &[u8; 16],
    epoch: u64,
    iv: &[u8; 12],
    payload: &[u8],
) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let ct_len = u32::try_from(payload.len().checked_add(16)?).ok()?;
    let mut blob = Vec::with_capacity(HEADER_LEN + ct_len as usize);
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    blob.extend_from_slice(&[0, 0]);
    blob.extend_from_slice(&key_check(key));
    blob.extend_from_slice(instance_id);
    blob.extend_from_slice(&epoch.to_le_bytes());
    blob.extend_from_slice(iv);
    blob.extend_from_slice(&ct_len.to_le_bytes());
    let ct = cipher
        .encrypt(
            &crate::vault::gcm_nonce(iv)?,
            Payload {
                msg: payload,
                aad: &blob,
            },
        )
        .ok()?;
    blob.extend_from_slice(&ct);
    Some(blob)
}

/// Opens a blob.
pub fn open(key: &[u8; 32], blob: &[u8]) -> Result<Opened, SealError> {
    let (header, ct) = blob
        .split_at_checked(HEADER_LEN)
        .ok_or(SealError::Truncated)?;
    let field = |at: usize, len: usize| header.get(at..at + len).ok_or(SealError::Truncated);
    if field(0, 8)? != MAGIC {
        return Err(SealError::BadMagic);
    }
    let version = u16::from_le_bytes(field(8, 2)?.try_into().map_err(|_| SealError::Truncated)?);
    if version != FORMAT_VERSION {
        return Err(SealError::UnsupportedVersion(version));
    }
    let check = field(12, 8)?;
    let instance_id: [u8; 16] = field(20, 16)?
        .try_into()
        .map_err(|_| SealError::Truncated)?;
    let epoch = u64::from_le_bytes(field(36, 8)?.try_into().map_err(|_| SealError::Truncated)?);
    let iv = field(44, 12)?;
    let ct_len =
        u32::from_le_bytes(field(56, 4)?.try_into().map_err(|_| SealError::Truncated)?) as usize;
    if ct.len() != ct_len {
        return Err(SealError::Truncated);
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::Tampered)?;
    let payload = cipher
        .decrypt(
            &crate::vault::gcm_nonce(iv).ok_or(SealError::Truncated)?,
            Payload {
                msg: ct,
                aad: header,
            },
        )
        .map_err(|_| {
            if check != key_check(key) {
                SealError::ForeignLaunch
            } else {
                SealError::Tampered
            }
        })?;
    Ok(Opened {
        epoch,
        instance_id,
        payload: zeroize::Zeroizing::new(payload),
    })
}

/// What booting found in the store.
pub enum Loaded {
    /// Both slots empty: first boot.
    Empty,
    /// The newest valid blob.
    State(Opened),
}

/// Reads both slots and returns the valid blob with the highest epoch. When no slot is valid
/// but some slot holds data, the error of the newest-looking blob is returned.
pub fn load<S: StateStore>(
    store: &mut S,
    key: &[u8; 32],
    expected_epoch: Option<u64>,
) -> Result<Loaded, SealError> {
    let mut best: Option<Opened> = None;
    let mut failure: Option<SealError> = None;
    for slot in SLOTS {
        let blob = match store.read(slot) {
            Ok(b) => b,
            Err(StoreError::Empty(_)) => continue,
            Err(e) => return Err(SealError::Store(e)),
        };
        match open(key, &blob) {
            Ok(o) if best.as_ref().is_none_or(|b| o.epoch > b.epoch) => best = Some(o),
            Ok(_) => {}
            // A foreign or tampered blob is a stronger statement than a torn write.
            Err(e) => {
                if failure.is_none() || matches!(failure, Some(SealError::Truncated)) {
                    failure = Some(e);
                }
            }
        }
    }
    match (best, failure) {
        (Some(o), _) => match expected_epoch {
            Some(expected) if o.epoch < expected => Err(SealError::Rollback {
                found: o.epoch,
                expected,
            }),
            _ => Ok(Loaded::State(o)),
        },
        (None, Some(e)) => Err(e),
        (None, None) => Ok(Loaded::Empty),
    }
}
