//! The key hierarchy (design.md "Key hierarchy"): one root key from the PSP, everything else
//! derived from it with HKDF-SHA384 and fixed labels.
//!
//! root = MSG_KEY_REQ(root VCEK, VMPL 0, fields MEASUREMENT | POLICY | TCB_VERSION, TCB pinned
//! to a configured minimum): only VMPL0 of a launch with this measurement and policy can ask for
//! it, and pinning the TCB to a minimum (not the running TCB) keeps sealed state readable after
//! a firmware update raises the committed TCB.

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
    /// The transport key pair (P-384), for importing provisioned keys.
    pub const TRANSPORT: &[u8] = b"svsm-vhsm transport-p384 v1";
}

/// The keys of one launch. Everything is wiped on drop.
pub struct KeyHierarchy {
    state_sealing: Zeroizing<[u8; 32]>,
    vault_master: Zeroizing<[u8; 32]>,
    transport: p384::SecretKey,
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
        let transport = derive_p384_secret(&hk, label::TRANSPORT);
        KeyHierarchy {
            state_sealing,
            vault_master,
            transport,
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

    /// The transport secret key.
    pub fn transport_secret(&self) -> &p384::SecretKey {
        &self.transport
    }

    /// The transport public key, SEC1 uncompressed (97 bytes).
    pub fn transport_public(&self) -> [u8; 97] {
        let point = p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &self.transport.public_key(),
            false,
        );
        let mut out = [0u8; 97];
        if point.as_bytes().len() == out.len() {
            out.copy_from_slice(point.as_bytes());
        }
        out
    }
}

/// A P-384 secret scalar from HKDF output: expand 48 bytes with a counter until the value is a
/// valid non-zero scalar (the first try succeeds with overwhelming probability).
fn derive_p384_secret(hk: &Hkdf<Sha384>, label: &[u8]) -> p384::SecretKey {
    let mut counter: u8 = 0;
    loop {
        let mut bytes = Zeroizing::new([0u8; 48]);
        let _ = hk.expand_multi_info(&[label, &[counter]], bytes.as_mut());
        if let Ok(key) = p384::SecretKey::from_slice(bytes.as_ref()) {
            return key;
        }
        counter = counter.wrapping_add(1);
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
