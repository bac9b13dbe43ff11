//! TPM2_MakeCredential done in software, as a relying party does it: wrap a secret so that only
//! the TPM holding a given EK can recover it, and only through TPM2_ActivateCredential with an
//! object of a given name loaded on that same TPM (TPM 2.0 Library Part 1 §24 "Credential
//! Protection"; Part 3 §12.6; KDFa Part 1 §11.4.10.2). For the RSA 2048 EK of template L-1
//! (nameAlg SHA-256, AES-128-CFB): seed = 32 random bytes, encrypted with RSA-OAEP-SHA-256 and
//! the label "IDENTITY\0"; symKey = KDFa(SHA-256, seed, "STORAGE", name, "", 128);
//! encIdentity = AES-128-CFB(symKey, IV 0, TPM2B(secret)); hmacKey = KDFa(SHA-256, seed,
//! "INTEGRITY", "", "", 256); outerHMAC = HMAC-SHA-256(hmacKey, encIdentity ‖ name).
//!
//! Only the primitives are crates (RustCrypto rsa, aes, cfb-mode, hmac, sha2); the composition
//! is the TPM specification's, checked against the vTPM's own TPM2_ActivateCredential and
//! `tpm2_makecredential` in the tests.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use svsm_tpm2::templates::KeyTemplate;

/// Most secret bytes a credential carries (a TPM2B_DIGEST of the EK's nameAlg).
pub const MAX_SECRET: usize = 32;

/// Why a credential could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The EK is not an RSA 2048 EK of template L-1.
    #[error("the EK is not an RSA 2048 EK of template L-1")]
    EkTemplate,
    /// The RSA key does not decode.
    #[error("the EK's RSA key is unusable: {0}")]
    EkKey(String),
    /// The object name is not a SHA-256 name (0x000B ‖ 32 bytes).
    #[error("the object name is not a SHA-256 TPM name ({0} bytes)")]
    Name(usize),
    /// The secret is empty or longer than [`MAX_SECRET`].
    #[error("the secret is {0} bytes (1..=32)")]
    Secret(usize),
}

/// A credential for TPM2_ActivateCredential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// `TPM2B_ID_OBJECT` (with its size).
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` (with its size).
    pub encrypted_secret: Vec<u8>,
}

impl Credential {
    /// The file `tpm2_makecredential` writes and `tpm2_activatecredential -i` reads: magic
    /// 0xBADCC0DE, version 1 (big-endian u32 each), then the two TPM2B structures.
    pub fn tpm2_tools_file(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.id_object.len() + self.encrypted_secret.len());
        out.extend_from_slice(&0xBADC_C0DEu32.to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&self.id_object);
        out.extend_from_slice(&self.encrypted_secret);
        out
    }
}

/// KDFa with SHA-256 (Part 1 §11.4.10.2): HMAC(key, i ‖ label ‖ 0 ‖ contextU ‖ contextV ‖
/// bits) for i = 1, 2, ..., truncated to `bits` / 8 bytes.
pub fn kdfa_sha256(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        // HMAC takes keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            break;
        };
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// Makes a credential wrapping `secret` for the object named `name` (`0x000B ‖ SHA-256` of its
/// public area) on the TPM holding `ek_public` (a TPMT_PUBLIC of template L-1).
pub fn make_credential<R: rand_core::CryptoRngCore>(
    ek_public: &[u8],
    name: &[u8],
    secret: &[u8],
    rng: &mut R,
) -> Result<Credential, CredentialError> {
    if !KeyTemplate::ek_rsa_l1().matches(ek_public) {
        return Err(CredentialError::EkTemplate);
    }
    if name.len() != 34 || name.get(..2) != Some(&[0x00, 0x0B][..]) {
        return Err(CredentialError::Name(name.len()));
    }
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(CredentialError::Secret(secret.len()));
    }
    let modulus = ek_public
        .get(ek_public.len().saturating_sub(256)..)
        .ok_or(CredentialError::EkTemplate)?;
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(modulus),
        rsa::BigUint::from(65537u32),
    )
    .map_err(|e| CredentialError::EkKey(e.to_string()))?;

    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let padding = rsa::Oaep::new_with_label::<Sha256, _>("IDENTITY\0");
    let encrypted = key
        .encrypt(rng, padding, seed.as_ref())
        .map_err(|e| CredentialError::EkKey(e.to_string()))?;

    let sym_key = zeroize::Zeroizing::new(kdfa_sha256(seed.as_ref(), "STORAGE", name, &[], 128));
    let mut enc_identity = Vec::with_capacity(2 + secret.len());
    enc_identity.extend_from_slice(&(secret.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(secret);
    let cipher = cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|_| CredentialError::EkKey("AES-128 key length".into()))?;
    cipher.encrypt(&mut enc_identity);

    let hmac_key = zeroize::Zeroizing::new(kdfa_sha256(seed.as_ref(), "INTEGRITY", &[], &[], 256));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&hmac_key)
        .map_err(|_| CredentialError::EkKey("HMAC key".into()))?;
    mac.update(&enc_identity);
    mac.update(name);
    let outer_hmac = mac.finalize().into_bytes();

    // TPMS_ID_OBJECT: integrityHMAC (TPM2B_DIGEST), encIdentity (the rest).
    let inner_len = 2 + outer_hmac.len() + enc_identity.len();
    let mut id_object = Vec::with_capacity(2 + inner_len);
    id_object.extend_from_slice(&(inner_len as u16).to_be_bytes());
    id_object.extend_from_slice(&(outer_hmac.len() as u16).to_be_bytes());
    id_object.extend_from_slice(&outer_hmac);
    id_object.extend_from_slice(&enc_identity);
    let mut encrypted_secret = Vec::with_capacity(2 + encrypted.len());
    encrypted_secret.extend_from_slice(&(encrypted.len() as u16).to_be_bytes());
    encrypted_secret.extend_from_slice(&encrypted);
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

/// The TPM name of an object with a SHA-256 nameAlg: `0x000B ‖ SHA-256(TPMT_PUBLIC)`.
pub fn sha256_name(public: &[u8]) -> Vec<u8> {
    let mut name = vec![0x00, 0x0B];
    name.extend_from_slice(&Sha256::digest(public));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_lengths_and_determinism() {
        let a = kdfa_sha256(b"key", "STORAGE", b"name", &[], 128);
        assert_eq!(a.len(), 16);
        assert_eq!(a, kdfa_sha256(b"key", "STORAGE", b"name", &[], 128));
        assert_ne!(a, kdfa_sha256(b"key", "INTEGRITY", b"name", &[], 128));
        let long = kdfa_sha256(b"key", "X", &[], &[], 512);
        assert_eq!(long.len(), 64);
        // The first block of a longer output differs: the requested length is an input.
        assert_ne!(long[..16], kdfa_sha256(b"key", "X", &[], &[], 128)[..]);
    }

    #[test]
    fn bad_inputs_are_refused_by_name() {
        let mut rng = rand_core::OsRng;
        let ek = KeyTemplate::ek_rsa_l1().template();
        assert_eq!(
            make_credential(&ek[..10], &[0; 34], b"s", &mut rng),
            Err(CredentialError::EkTemplate)
        );
        assert_eq!(
            make_credential(&ek, &[0; 33], b"s", &mut rng),
            Err(CredentialError::Name(33))
        );
        let name = sha256_name(b"object");
        assert_eq!(
            make_credential(&ek, &name, &[1; 33], &mut rng),
            Err(CredentialError::Secret(33))
        );
    }
}
