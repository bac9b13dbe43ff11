//! Secrets at rest: every secret the broker keeps (a key it will release, a resource's value) is
//! stored in the database only as AES-256-GCM ciphertext under the broker's master key, which
//! lives outside the database (a file or the environment). The associated data binds each
//! ciphertext to its resource name and format version, so a database writer who swaps two rows
//! gets an authentication failure, not the other secret.
//!
//! Format of a sealed secret: version (1 byte, 1) ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag
//! (16 bytes). AAD: "svsm-vhsm broker secret v1" ‖ 0x00 ‖ name.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::{Zeroize, Zeroizing};

/// The sealed format version.
pub const SEALED_VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"svsm-vhsm broker secret v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Largest secret the broker keeps.
pub const MAX_SECRET: usize = 64 * 1024;
/// Bytes of the master key.
pub const MASTER_KEY_LEN: usize = 32;

/// Why a master key could not be loaded or a secret sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The master key file could not be read.
    #[error("cannot read the master key {path}: {source}")]
    Read {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The master key file is readable by group or others.
    #[error("the master key {path} is readable by others (mode {mode:o}); chmod 600 it")]
    Permissions {
        /// Its path.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// The master key is not 32 bytes (raw) or 64 hex digits.
    #[error("the master key must be 32 raw bytes or 64 hex digits")]
    KeyFormat,
    /// The secret is larger than [`MAX_SECRET`].
    #[error("secret of {0} bytes exceeds the {MAX_SECRET}-byte limit")]
    TooLarge(usize),
    /// The sealed blob is not of this format.
    #[error("sealed secret is malformed")]
    Malformed,
    /// The tag does not verify: another key, another name, or altered bytes.
    #[error(
        "sealed secret does not authenticate (another master key, another resource, or altered)"
    )]
    Authentication,
    /// No randomness for the nonce.
    #[error("no randomness for the nonce")]
    Entropy,
}

/// The broker's master key (zeroized on drop).
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    /// A key from raw bytes or 64 hex digits (surrounding whitespace ignored).
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, SecretError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        if bytes.len() == MASTER_KEY_LEN {
            key.copy_from_slice(bytes);
            return Ok(MasterKey(key));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SecretError::KeyFormat)?;
        let mut decoded =
            Zeroizing::new(hex::decode(text.trim()).map_err(|_| SecretError::KeyFormat)?);
        if decoded.len() != MASTER_KEY_LEN {
            return Err(SecretError::KeyFormat);
        }
        key.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(MasterKey(key))
    }

    /// Reads the key from `path`, which must not be readable by group or others.
    pub fn from_file(path: &std::path::Path) -> Result<MasterKey, SecretError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Permissions { path: shown, mode });
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| SecretError::Read {
            path: shown,
            source,
        })?);
        MasterKey::from_bytes(&bytes)
    }

    /// A new random key.
    pub fn generate() -> Result<MasterKey, SecretError> {
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        getrandom(key.as_mut_slice())?;
        Ok(MasterKey(key))
    }

    /// The key as 64 hex digits (to write a new key file).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_slice()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_slice().into())
    }

    /// Seals `secret` for the resource `name`.
    pub fn seal(&self, name: &str, secret: &[u8]) -> Result<Vec<u8>, SecretError> {
        if secret.len() > MAX_SECRET {
            return Err(SecretError::TooLarge(secret.len()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        getrandom(&mut nonce)?;
        let aad = aad(name);
        let ct = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::TooLarge(secret.len()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a secret sealed for `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let (version, rest) = sealed.split_first().ok_or(SecretError::Malformed)?;
        if *version != SEALED_VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        let aad = aad(name);
        self.cipher()
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Authentication)
    }
}

fn aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + name.len());
    aad.extend_from_slice(AAD_LABEL);
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn getrandom(buf: &mut [u8]) -> Result<(), SecretError> {
    use rand_core::RngCore;
    rand_core::OsRng
        .try_fill_bytes(buf)
        .map_err(|_| SecretError::Entropy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_every_binding_holds() {
        let k = MasterKey::generate().unwrap();
        let sealed = k.seal("payments", b"the key").unwrap();
        assert_eq!(k.open("payments", &sealed).unwrap().as_slice(), b"the key");
        // Another resource's row, another key, a flipped byte: all refused.
        assert!(matches!(
            k.open("billing", &sealed),
            Err(SecretError::Authentication)
        ));
        let other = MasterKey::generate().unwrap();
        assert!(matches!(
            other.open("payments", &sealed),
            Err(SecretError::Authentication)
        ));
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(k.open("payments", &bad).is_err(), "byte {i}");
        }
        // Two seals of one secret differ (fresh nonce).
        assert_ne!(k.seal("payments", b"the key").unwrap(), sealed);
    }

    #[test]
    fn malformed_blobs_and_keys_are_typed_errors() {
        let k = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        for blob in [&b""[..], &[1u8; 10][..], &[2u8; 64][..]] {
            assert!(matches!(k.open("x", blob), Err(SecretError::Malformed)));
        }
        assert!(matches!(
            k.seal("x", &vec![0u8; MAX_SECRET + 1]),
            Err(SecretError::TooLarge(_))
        ));
        assert!(matches!(
            MasterKey::from_bytes(b"short"),
            Err(SecretError::KeyFormat)
        ));
        let hexed = k.to_hex();
        let again = MasterKey::from_bytes(format!("{}\n", hexed.as_str()).as_bytes()).unwrap();
        let sealed = k.seal("n", b"v").unwrap();
        assert_eq!(again.open("n", &sealed).unwrap().as_slice(), b"v");
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("svsm-broker-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        std::fs::write(&path, MasterKey::generate().unwrap().to_hex().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::from_file(&path),
            Err(SecretError::Permissions { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(MasterKey::from_file(&path).is_ok());
        assert!(matches!(
            MasterKey::from_file(&dir.join("missing")),
            Err(SecretError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
