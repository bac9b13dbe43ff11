//! The key hierarchy (docs/design.md, "Keys"): one root key from the PSP, everything else
//! derived from it with HKDF-SHA384 and fixed labels.
//!
//! root = MSG_KEY_REQ(root VCEK, VMPL 0, fields MEASUREMENT | POLICY | TCB_VERSION, TCB pinned
//! to a configured minimum): only VMPL0 of a launch with this measurement and policy can ask for
//! it, and pinning the TCB to a minimum (not the running TCB) keeps sealed state readable after
//! a firmware update raises the committed TCB.
//!
//! The vault's transport key is deliberately NOT here: anything derived from the root is the
//! same for every launch of the image on the chip, whatever kernel it boots. The transport key
//! is made from entropy at each boot ([`BootTransportKey`]) so a wrapped key reaches only the
//! boot that was appraised.

use crate::platform::{DerivedKey, PspError, SecureProcessor};
use hkdf::Hkdf;
use sha2::Sha384;
use svsm_abi::snp::msg::{GuestFieldSelect, KeyRequest, KeySelect, RootKey};
use svsm_abi::snp::TcbVersion;
use zeroize::Zeroizing;

/// HKDF labels, fixed forever: changing one changes every derived key.
pub mod label {
    /// Salt of every derivation from the root.
    pub const SALT: &[u8] = b"svsm-vhsm key hierarchy v1";
    /// The state-sealing key (AES-256-GCM).
    pub const STATE_SEALING: &[u8] = b"svsm-vhsm state-sealing v1";
    /// The vault master key (seals data, derives per-purpose keys).
    pub const VAULT_MASTER: &[u8] = b"svsm-vhsm vault-master v1";
}

/// The keys of one launch. Everything is wiped on drop.
pub struct KeyHierarchy {
    state_sealing: Zeroizing<[u8; 32]>,
    vault_master: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for KeyHierarchy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyHierarchy(..)")
    }
}

/// The MSG_KEY_REQ of the root key.
pub fn root_key_request(min_tcb: TcbVersion) -> KeyRequest {
    KeyRequest::new(
        RootKey::Vcek,
        KeySelect::Default,
        GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY | GuestFieldSelect::TCB_VERSION,
        0,
        0,
        min_tcb,
    )
}

impl KeyHierarchy {
    /// Asks the PSP for the root key and derives the hierarchy.
    pub fn derive<P: SecureProcessor>(psp: &mut P, min_tcb: TcbVersion) -> Result<Self, PspError> {
        let root = psp.derived_key(&root_key_request(min_tcb))?;
        Ok(Self::from_root(&root))
    }

    /// Derives the hierarchy from a root key.
    pub fn from_root(root: &DerivedKey) -> Self {
        let hk = Hkdf::<Sha384>::new(Some(label::SALT), &root.0);
        let mut state_sealing = Zeroizing::new([0u8; 32]);
        let mut vault_master = Zeroizing::new([0u8; 32]);
        // HKDF-SHA384 expands up to 255 * 48 bytes; these lengths cannot fail.
        let _ = hk.expand(label::STATE_SEALING, state_sealing.as_mut());
        let _ = hk.expand(label::VAULT_MASTER, vault_master.as_mut());
        KeyHierarchy {
            state_sealing,
            vault_master,
        }
    }

    /// The state-sealing key.
    pub fn state_sealing(&self) -> &[u8; 32] {
        &self.state_sealing
    }

    /// The vault master key.
    pub fn vault_master(&self) -> &[u8; 32] {
        &self.vault_master
    }
}

/// This boot's vault transport key pair (P-384): made from entropy when the module boots, never
/// sealed, never derived from the launch, dropped (and wiped, by `p384::SecretKey`) with the
/// module. Its public key is in every attested manifest of this boot; a key provider wraps to it
/// (see `crate::vault`), so a package captured by the host cannot be unwrapped by another
/// instance, another launch of the same image, or a later boot of this instance.
pub struct BootTransportKey {
    secret: p384::SecretKey,
    public: [u8; 97],
}

impl core::fmt::Debug for BootTransportKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BootTransportKey(..)")
    }
}

impl BootTransportKey {
    /// A fresh key pair; `None` when entropy fails (imports are then unavailable).
    pub fn generate<R: crate::platform::Entropy>(rng: &mut R) -> Option<Self> {
        // A random 48-byte string is a valid scalar with overwhelming probability; retry a
        // bounded number of times.
        for _ in 0..16 {
            let mut bytes = Zeroizing::new([0u8; 48]);
            rng.fill(bytes.as_mut()).ok()?;
            if let Ok(secret) = p384::SecretKey::from_slice(bytes.as_ref()) {
                let point = p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &secret.public_key(),
                    false,
                );
                let public: [u8; 97] = point.as_bytes().try_into().ok()?;
                return Some(BootTransportKey { secret, public });
            }
        }
        None
    }

    /// The secret key.
    pub fn secret(&self) -> &p384::SecretKey {
        &self.secret
    }

    /// The public key, SEC1 uncompressed.
    pub fn public(&self) -> &[u8; 97] {
        &self.public
    }
}

/// Expands `label` (plus `context`) from a 32-byte key into a fresh 32-byte key.
pub fn subkey(key: &[u8; 32], label: &[u8], context: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    use hmac::{Hmac, Mac};
    // HKDF-Expand with a single block is HMAC(key, info || 0x01); built here to take the info
    // in pieces without allocating.
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(mut mac) = <Hmac<Sha384> as hmac::digest::KeyInit>::new_from_slice(key) {
        mac.update(label);
        for part in context {
            mac.update(&(part.len() as u32).to_le_bytes());
            mac.update(part);
        }
        mac.update(&[1]);
        let block = mac.finalize().into_bytes();
        out.copy_from_slice(block.get(..32).unwrap_or(&[0; 32]));
    }
    out
}
