//! IMA runtime policies in Keylime's format: the JSON document `keylime-policy create runtime`
//! writes (Keylime 7.x, `keylime/ima/ima.py` `RUNTIME_POLICY_SCHEMA`), compiled into a lookup
//! table, and made from a directory tree ([`RuntimePolicyDocument::from_tree`]).
//!
//! A measured file is allowed when any of these holds (Keylime's `_validate_ima_ng` and
//! `_validate_ima_sig` accept the same set):
//! - its path is in `digests` and its file digest is one of the path's digests (lowercase hex;
//!   one list for every algorithm, as in Keylime);
//! - its path matches `excludes`: the patterns joined as alternatives and matched at the start of
//!   the path (Python's `re.match`);
//! - it is an `ima-sig` entry whose version 2 signature verifies, over the file digest, with a
//!   key of `verification-keys` (RSA PKCS#1 v1.5 or ECDSA P-256/P-384, found by key id).
//!
//! `keyrings` and `ima-buf` are kept but not applied: an `ima-buf` entry (a measured key or
//! buffer) is refused by the appraisal rather than passed. The policy is input from the relying
//! party (trusted), but it is parsed with bounds and typed errors all the same.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use regex::bytes::{Regex, RegexBuilder};
use rsa::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use svsm_abi::ima::{FileDigest, FileSignature, HashAlgo, SignatureError};

/// The document version this module reads and writes (`meta.version`).
pub const POLICY_VERSION: u64 = 1;
/// Largest policy document accepted.
pub const MAX_POLICY: usize = 256 * 1024 * 1024;
/// Largest compiled `excludes` expression, in bytes of the regex engine's program.
pub const MAX_EXCLUDE_PROGRAM: usize = 16 * 1024 * 1024;

/// The runtime policy document, as Keylime writes and reads it. Unknown keys are refused;
/// keys Keylime requires but this appraisal does not need may be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimePolicyDocument {
    /// Format version and provenance.
    pub meta: PolicyMeta,
    /// A number the author increments on change.
    #[serde(default)]
    pub release: u64,
    /// Allowed digests (lowercase hex) by absolute path.
    pub digests: BTreeMap<String, Vec<String>>,
    /// Regular expressions of paths that are not appraised.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Allowed digests of measured keys by keyring (kept, not applied).
    #[serde(default)]
    pub keyrings: BTreeMap<String, Vec<String>>,
    /// IMA settings.
    #[serde(default)]
    pub ima: ImaSettings,
    /// Allowed digests of measured buffers by name (kept, not applied).
    #[serde(default, rename = "ima-buf")]
    pub ima_buf: BTreeMap<String, Vec<String>>,
    /// A JSON string `{"keyids": [..], "pubkeys": [base64 DER SubjectPublicKeyInfo, ..]}` of the
    /// keys `ima-sig` signatures may verify with, or empty.
    #[serde(default, rename = "verification-keys")]
    pub verification_keys: String,
}

/// `meta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyMeta {
    /// [`POLICY_VERSION`].
    pub version: u64,
    /// Keylime's generator enum; 0 (unknown) for policies made here.
    #[serde(default)]
    pub generator: u64,
    /// When it was made, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

impl Default for PolicyMeta {
    fn default() -> Self {
        PolicyMeta {
            version: POLICY_VERSION,
            generator: 0,
            timestamp: None,
        }
    }
}

/// `ima`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaSettings {
    /// Keyrings whose measurements are ignored (kept, not applied).
    #[serde(default)]
    pub ignored_keyrings: Vec<String>,
    /// The hash of the ASCII list's template-hash column; this appraisal replays the binary
    /// list, so it only has to be one of Keylime's values.
    #[serde(default = "default_log_hash_alg")]
    pub log_hash_alg: String,
    /// Device-mapper policy: must be null, as in Keylime 7.
    #[serde(default)]
    pub dm_policy: Option<serde_json::Value>,
}

fn default_log_hash_alg() -> String {
    "sha1".into()
}

impl Default for ImaSettings {
    fn default() -> Self {
        ImaSettings {
            ignored_keyrings: Vec::new(),
            log_hash_alg: default_log_hash_alg(),
            dm_policy: None,
        }
    }
}

/// Why a runtime policy document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimePolicyError {
    /// Larger than [`MAX_POLICY`].
    #[error("the runtime policy is {0} bytes, more than the {MAX_POLICY}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the document's shape.
    #[error("runtime policy: {0}")]
    Json(#[from] serde_json::Error),
    /// `meta.version` is not [`POLICY_VERSION`].
    #[error("meta.version: {0} is not a runtime policy version this appraisal reads (1)")]
    Version(u64),
    /// A digest is not 40-128 lowercase hex characters of whole bytes.
    #[error("digests.{path:?}: {digest:?} is not a lowercase hex digest of 20 to 64 bytes")]
    Digest {
        /// The path it is listed under.
        path: String,
        /// The string as given.
        digest: String,
    },
    /// A path has no digest.
    #[error("digests.{0:?}: the list is empty")]
    NoDigests(String),
    /// An exclude pattern does not compile.
    #[error(
        "excludes[{index}]: {pattern:?} is not a regular expression this appraisal reads: {detail}"
    )]
    Exclude {
        /// Its index.
        index: usize,
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        detail: String,
    },
    /// `ima.log_hash_alg` is not one of Keylime's.
    #[error("ima.log_hash_alg: {0:?} is not sha1, sha256, sha384 or sha512")]
    LogHashAlg(String),
    /// `ima.dm_policy` is set.
    #[error("ima.dm_policy: device-mapper policies are not supported; it must be null")]
    DmPolicy,
    /// `verification-keys` is not the JSON Keylime writes.
    #[error("verification-keys: {0}")]
    VerificationKeys(String),
    /// A verification key is not an RSA, P-256 or P-384 SubjectPublicKeyInfo.
    #[error("verification-keys: pubkeys[{index}]: {detail}")]
    Key {
        /// Its index.
        index: usize,
        /// What is wrong.
        detail: &'static str,
    },
}

/// A key `ima-sig` signatures verify with.
#[derive(Clone, Debug)]
enum VerificationKey {
    Rsa(Box<rsa::RsaPublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

/// Why an `ima-sig` signature did not admit a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFailure {
    /// The signature field does not decode.
    #[error("{0}")]
    Malformed(#[from] SignatureError),
    /// The signature's hash algorithm is not the file digest's.
    #[error("the signature is over a {signed} digest, the entry logs a {logged} digest")]
    AlgorithmMismatch {
        /// The signature's algorithm.
        signed: HashAlgo,
        /// The d-ng algorithm.
        logged: HashAlgo,
    },
    /// No verification key has the signature's key id.
    #[error("no verification key has key id {0:08x}")]
    UnknownKey(u32),
    /// The key cannot verify over this digest algorithm.
    #[error("a {0} digest is not verified with this key type")]
    UnsupportedAlgorithm(HashAlgo),
    /// The signature does not verify.
    #[error("the signature by key {0:08x} does not verify")]
    Invalid(u32),
}

/// Why a measured file is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileFailure {
    /// The path is not in the policy (and not excluded, and not validly signed).
    #[error("not in the runtime policy")]
    NotInPolicy,
    /// The path is in the policy with other digests.
    #[error("its {algo} digest {found} is not one the runtime policy allows")]
    DigestMismatch {
        /// The logged algorithm name.
        algo: String,
        /// The logged digest, hex.
        found: String,
    },
    /// Neither listed nor excluded, and its signature did not admit it.
    #[error("not in the runtime policy, and its signature does not admit it: {0}")]
    Signature(SignatureFailure),
}

/// Why a file was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Its digest is listed.
    Digest,
    /// Its path is excluded.
    Excluded,
    /// Its signature verifies with a policy key.
    Signature,
}

/// Allowed digests by path. foldhash: randomly seeded, and several times faster than SipHash
/// on paths.
type DigestTable = HashMap<Box<[u8]>, Box<[Box<[u8]>]>, foldhash::fast::RandomState>;

/// A compiled runtime policy.
#[derive(Clone, Debug)]
pub struct RuntimePolicy {
    digests: DigestTable,
    excludes: Option<Regex>,
    keys: HashMap<u32, VerificationKey>,
    release: u64,
}

impl RuntimePolicy {
    /// Parses and compiles a policy document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RuntimePolicyError> {
        if bytes.len() > MAX_POLICY {
            return Err(RuntimePolicyError::TooLarge(bytes.len()));
        }
        Self::compile(&serde_json::from_slice(bytes)?)
    }

    /// Compiles a document: digests decoded, excludes joined into one expression, keys loaded.
    pub fn compile(doc: &RuntimePolicyDocument) -> Result<Self, RuntimePolicyError> {
        if doc.meta.version != POLICY_VERSION {
            return Err(RuntimePolicyError::Version(doc.meta.version));
        }
        if !matches!(
            doc.ima.log_hash_alg.as_str(),
            "sha1" | "sha256" | "sha384" | "sha512"
        ) {
            return Err(RuntimePolicyError::LogHashAlg(doc.ima.log_hash_alg.clone()));
        }
        if doc.ima.dm_policy.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(RuntimePolicyError::DmPolicy);
        }
        let mut digests = HashMap::with_capacity_and_hasher(doc.digests.len(), Default::default());
        for (path, list) in &doc.digests {
            if list.is_empty() {
                return Err(RuntimePolicyError::NoDigests(path.clone()));
            }
            let decoded = list
                .iter()
                .map(|d| {
                    decode_digest(d).ok_or_else(|| RuntimePolicyError::Digest {
                        path: path.clone(),
                        digest: d.clone(),
                    })
                })
                .collect::<Result<Box<[_]>, _>>()?;
            digests.insert(path.as_bytes().into(), decoded);
        }
        Ok(RuntimePolicy {
            digests,
            excludes: compile_excludes(&doc.excludes)?,
            keys: load_keys(&doc.verification_keys)?,
            release: doc.release,
        })
    }

    /// The document's `release`.
    pub fn release(&self) -> u64 {
        self.release
    }

    /// Paths with digests.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// True when no path has a digest.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether the file at `path`, measured with `digest` and (for `ima-sig`) `signature`, is
    /// allowed. Cheapest test first; the accepted set does not depend on the order.
    pub fn admit(
        &self,
        path: &[u8],
        digest: &FileDigest<'_>,
        signature: Option<&[u8]>,
    ) -> Result<Admission, FileFailure> {
        let listed = self.digests.get(path);
        if listed.is_some_and(|l| l.iter().any(|d| **d == *digest.digest)) {
            return Ok(Admission::Digest);
        }
        if self.excludes.as_ref().is_some_and(|r| r.is_match(path)) {
            return Ok(Admission::Excluded);
        }
        let signature_failure = match signature {
            Some(sig) if !self.keys.is_empty() => match self.verify_signature(digest, sig) {
                Ok(()) => return Ok(Admission::Signature),
                Err(e) => Some(e),
            },
            _ => None,
        };
        Err(match (listed, signature_failure) {
            (Some(_), _) => FileFailure::DigestMismatch {
                algo: String::from_utf8_lossy(digest.algo_name).into_owned(),
                found: hex::encode(digest.digest),
            },
            (None, Some(e)) => FileFailure::Signature(e),
            (None, None) => FileFailure::NotInPolicy,
        })
    }

    /// Verifies a version 2 file signature over the logged file digest (the kernel's
    /// `asymmetric_verify`: the signature is over the digest as a pre-hashed message).
    fn verify_signature(
        &self,
        digest: &FileDigest<'_>,
        field: &[u8],
    ) -> Result<(), SignatureFailure> {
        let sig = FileSignature::parse(field)?;
        match digest.algo {
            Some(logged) if logged == sig.hash_algo => {}
            Some(logged) => {
                return Err(SignatureFailure::AlgorithmMismatch {
                    signed: sig.hash_algo,
                    logged,
                })
            }
            None => return Err(SignatureFailure::UnsupportedAlgorithm(sig.hash_algo)),
        }
        let key = self
            .keys
            .get(&sig.keyid)
            .ok_or(SignatureFailure::UnknownKey(sig.keyid))?;
        let invalid = SignatureFailure::Invalid(sig.keyid);
        match key {
            VerificationKey::Rsa(key) => {
                let scheme = match sig.hash_algo {
                    HashAlgo::Sha224 => rsa::Pkcs1v15Sign::new::<Sha224>(),
                    HashAlgo::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    HashAlgo::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    HashAlgo::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                    other => return Err(SignatureFailure::UnsupportedAlgorithm(other)),
                };
                key.verify(scheme, digest.digest, sig.signature)
                    .map_err(|_| invalid)
            }
            VerificationKey::P256(key) => {
                let s = p256::ecdsa::Signature::from_der(sig.signature).map_err(|_| invalid)?;
                key.verify_prehash(digest.digest, &s).map_err(|_| invalid)
            }
            VerificationKey::P384(key) => {
                let s = p384::ecdsa::Signature::from_der(sig.signature).map_err(|_| invalid)?;
                key.verify_prehash(digest.digest, &s).map_err(|_| invalid)
            }
        }
    }
}

/// A digest as Keylime's schema allows it (`^[0-9a-f]{40,128}$`), of whole bytes.
fn decode_digest(hex_digest: &str) -> Option<Box<[u8]>> {
    let ok = (40..=128).contains(&hex_digest.len())
        && hex_digest.len() % 2 == 0
        && hex_digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then(|| hex::decode(hex_digest).ok().map(Vec::into_boxed_slice))
        .flatten()
}

/// The patterns as one expression anchored at the start of the path: Keylime joins them as
/// `(a)|(b)|…` and applies `re.match`.
fn compile_excludes(patterns: &[String]) -> Result<Option<Regex>, RuntimePolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    // Each pattern on its own first, so that an error names the pattern, not the join.
    for (index, pattern) in patterns.iter().enumerate() {
        RegexBuilder::new(pattern)
            .size_limit(MAX_EXCLUDE_PROGRAM)
            .build()
            .map_err(|e| RuntimePolicyError::Exclude {
                index,
                pattern: pattern.clone(),
                detail: e.to_string(),
            })?;
    }
    let joined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    RegexBuilder::new(&format!("^(?:{joined})"))
        .size_limit(MAX_EXCLUDE_PROGRAM)
        .build()
        .map(Some)
        .map_err(|e| RuntimePolicyError::Exclude {
            index: patterns.len(),
            pattern: "(all patterns joined)".into(),
            detail: e.to_string(),
        })
}

/// Keylime's `verification-keys` string.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyList {
    #[serde(default)]
    keyids: Vec<u32>,
    #[serde(default)]
    pubkeys: Vec<String>,
}

fn load_keys(json: &str) -> Result<HashMap<u32, VerificationKey>, RuntimePolicyError> {
    if json.trim().is_empty() {
        return Ok(HashMap::new());
    }
    let list: KeyList = serde_json::from_str(json)
        .map_err(|e| RuntimePolicyError::VerificationKeys(e.to_string()))?;
    let mut keys = HashMap::new();
    for (index, b64) in list.pubkeys.iter().enumerate() {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| RuntimePolicyError::Key {
                index,
                detail: "not base64",
            })?;
        let (key, computed_id) =
            load_key(&der).map_err(|detail| RuntimePolicyError::Key { index, detail })?;
        // Keylime uses a given key id as it is and computes the rest.
        let id = list.keyids.get(index).copied().unwrap_or(computed_id);
        keys.insert(id, key);
    }
    Ok(keys)
}

/// A SubjectPublicKeyInfo and its IMA key id: the low 32 bits of SHA-1 over the public key
/// bits (PKCS#1 RSAPublicKey, or the uncompressed EC point), as `evmctl` and the kernel's
/// X.509 subject key identifier compute it.
fn load_key(der: &[u8]) -> Result<(VerificationKey, u32), &'static str> {
    let spki = spki::SubjectPublicKeyInfoRef::try_from(der)
        .map_err(|_| "not a DER SubjectPublicKeyInfo")?;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the public key is not whole bytes")?;
    let sha1: [u8; 20] = Sha1::digest(bits).into();
    let [.., a, b, c, d] = sha1;
    let id = u32::from_be_bytes([a, b, c, d]);
    let key = if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(der) {
        VerificationKey::Rsa(Box::new(k))
    } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        VerificationKey::P256(k)
    } else if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
        VerificationKey::P384(k)
    } else {
        return Err("not an RSA, P-256 or P-384 public key");
    };
    Ok((key, id))
}

/// Why a policy could not be made from a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A directory or file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file name is not UTF-8 (IMA logs bytes, the policy format holds strings).
    #[error("{0}: the name is not UTF-8, which a runtime policy cannot hold")]
    NotUtf8(PathBuf),
    /// An exclude pattern does not compile.
    #[error(transparent)]
    Policy(#[from] RuntimePolicyError),
}

/// How [`RuntimePolicyDocument::from_tree`] maps and filters the tree.
#[derive(Clone, Debug, Default)]
pub struct TreeOptions {
    /// Where the tree's root is mounted in the guest ("/" for an initramfs).
    pub mount_point: String,
    /// Patterns written to `excludes`; matching files are not hashed.
    pub excludes: Vec<String>,
    /// Free text for `meta.timestamp`.
    pub timestamp: Option<String>,
}

impl RuntimePolicyDocument {
    /// A policy allowing every regular file under `root` with its SHA-256 digest, at the path
    /// it has in the guest (`mount_point` + its path under `root`). Symbolic links are not
    /// followed: IMA logs the path of the file opened, after links are resolved. Directories
    /// are read in name order, so the same tree gives the same document.
    pub fn from_tree(root: &Path, options: &TreeOptions) -> Result<Self, TreeError> {
        let excludes = compile_excludes(&options.excludes)?;
        let mut doc = RuntimePolicyDocument {
            meta: PolicyMeta {
                timestamp: options.timestamp.clone(),
                ..PolicyMeta::default()
            },
            excludes: options.excludes.clone(),
            ..RuntimePolicyDocument::default()
        };
        let base = options.mount_point.trim_end_matches('/').to_owned();
        let mut stack = vec![(root.to_path_buf(), base)];
        while let Some((dir, guest_dir)) = stack.pop() {
            let io = |error| TreeError::Io {
                path: dir.clone(),
                error,
            };
            let mut entries = std::fs::read_dir(&dir)
                .map_err(io)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries.into_iter().rev() {
                let host = entry.path();
                let name = entry
                    .file_name()
                    .into_string()
                    .map_err(|_| TreeError::NotUtf8(host.clone()))?;
                let guest = format!("{guest_dir}/{name}");
                let kind = entry.file_type().map_err(|error| TreeError::Io {
                    path: host.clone(),
                    error,
                })?;
                if kind.is_dir() {
                    stack.push((host, guest));
                } else if kind.is_file()
                    && !excludes
                        .as_ref()
                        .is_some_and(|r| r.is_match(guest.as_bytes()))
                {
                    let digest = sha256_file(&host)?;
                    doc.digests.insert(guest, vec![digest]);
                }
            }
        }
        Ok(doc)
    }
}

fn sha256_file(path: &Path) -> Result<String, TreeError> {
    let io = |error| TreeError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;

    fn digest_of(algo: HashAlgo, d: &[u8]) -> FileDigest<'_> {
        FileDigest {
            algo_name: algo.name().as_bytes(),
            algo: Some(algo),
            digest: d,
        }
    }

    fn policy(json: serde_json::Value) -> Result<RuntimePolicy, RuntimePolicyError> {
        RuntimePolicy::from_json(json.to_string().as_bytes())
    }

    const D1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn digests_excludes_and_mismatches() {
        let p = policy(serde_json::json!({
            "meta": {"version": 1, "generator": 3, "timestamp": "x"},
            "release": 0,
            "digests": {"/bin/a": [D1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"]},
            "excludes": ["/tmp/", "/var/log/.*\\.log$"],
            "keyrings": {}, "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
            "ima-buf": {}, "verification-keys": ""
        }))
        .unwrap();
        let d1 = hex::decode(D1).unwrap();
        let d2 = hex::decode(D2).unwrap();
        let sha1 = hex::decode("da39a3ee5e6b4b0d3255bfef95601890afd80709").unwrap();
        assert_eq!(
            p.admit(b"/bin/a", &digest_of(HashAlgo::Sha256, &d1), None),
            Ok(Admission::Digest)
        );
        assert_eq!(
            p.admit(b"/bin/a", &digest_of(HashAlgo::Sha1, &sha1), None),
            Ok(Admission::Digest)
        );
        assert_eq!(
            p.admit(b"/bin/a", &digest_of(HashAlgo::Sha256, &d2), None),
            Err(FileFailure::DigestMismatch {
                algo: "sha256".into(),
                found: D2.into()
            })
        );
        assert_eq!(
            p.admit(b"/bin/b", &digest_of(HashAlgo::Sha256, &d1), None),
            Err(FileFailure::NotInPolicy)
        );
        // Anchored at the start only, as re.match.
        assert_eq!(
            p.admit(b"/tmp/x", &digest_of(HashAlgo::Sha256, &d2), None),
            Ok(Admission::Excluded)
        );
        assert_eq!(
            p.admit(b"/a/tmp/x", &digest_of(HashAlgo::Sha256, &d2), None),
            Err(FileFailure::NotInPolicy)
        );
        assert_eq!(
            p.admit(b"/var/log/x.log", &digest_of(HashAlgo::Sha256, &d2), None),
            Ok(Admission::Excluded)
        );
    }

    #[test]
    fn malformed_documents_are_refused_by_name() {
        let base = || serde_json::json!({"meta": {"version": 1}, "digests": {"/a": [D1]}});
        policy(base()).unwrap();
        let mut v = base();
        v["digests"]["/a"] = serde_json::json!(["AB".repeat(32)]);
        assert!(matches!(policy(v), Err(RuntimePolicyError::Digest { path, .. }) if path == "/a"));
        let mut v = base();
        v["digests"]["/a"] = serde_json::json!(["abc"]);
        assert!(matches!(policy(v), Err(RuntimePolicyError::Digest { .. })));
        let mut v = base();
        v["digests"]["/a"] = serde_json::json!([format!("{D1}1")]);
        assert!(matches!(policy(v), Err(RuntimePolicyError::Digest { .. })));
        let mut v = base();
        v["digests"]["/a"] = serde_json::json!([]);
        assert!(matches!(policy(v), Err(RuntimePolicyError::NoDigests(p)) if p == "/a"));
        let mut v = base();
        v["excludes"] = serde_json::json!(["ok", "(unclosed"]);
        let err = policy(v).unwrap_err();
        assert!(
            matches!(err, RuntimePolicyError::Exclude { index: 1, .. }),
            "{err}"
        );
        let mut v = base();
        v["meta"]["version"] = 2.into();
        assert!(matches!(policy(v), Err(RuntimePolicyError::Version(2))));
        let mut v = base();
        v["surprise"] = 1.into();
        let err = policy(v).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
        let mut v = base();
        v["ima"] = serde_json::json!({"log_hash_alg": "md5"});
        assert!(matches!(policy(v), Err(RuntimePolicyError::LogHashAlg(_))));
        let mut v = base();
        v["ima"] = serde_json::json!({"dm_policy": {"x": 1}});
        assert!(matches!(policy(v), Err(RuntimePolicyError::DmPolicy)));
        let mut v = base();
        v["verification-keys"] = "{\"pubkeys\": [\"AAAA\"]}".into();
        assert!(matches!(
            policy(v),
            Err(RuntimePolicyError::Key { index: 0, .. })
        ));
        let mut v = base();
        v["verification-keys"] = "not json".into();
        assert!(matches!(
            policy(v),
            Err(RuntimePolicyError::VerificationKeys(_))
        ));
        assert!(matches!(
            RuntimePolicy::from_json(b"[1,2]"),
            Err(RuntimePolicyError::Json(_))
        ));
    }

    /// An `ima-sig` signature field over `digest` (SHA-256) by `key`.
    fn sign_field(key: &p256::ecdsa::SigningKey, keyid: u32, digest: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = key.sign_prehash(digest).unwrap();
        let der = sig.to_der();
        let mut field = vec![3, 2, 4];
        field.extend_from_slice(&keyid.to_be_bytes());
        field.extend_from_slice(&(der.as_bytes().len() as u16).to_be_bytes());
        field.extend_from_slice(der.as_bytes());
        field
    }

    #[test]
    fn a_valid_signature_admits_an_unlisted_file_and_a_bad_one_is_named() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let (_, keyid) = load_key(spki.as_bytes()).unwrap();
        use base64::Engine;
        let keys = serde_json::json!({
            "pubkeys": [base64::engine::general_purpose::STANDARD.encode(spki.as_bytes())]
        })
        .to_string();
        let p = policy(serde_json::json!({
            "meta": {"version": 1}, "digests": {"/bin/a": [D1]}, "verification-keys": keys
        }))
        .unwrap();
        let d2 = hex::decode(D2).unwrap();
        let good = sign_field(&key, keyid, &d2);
        assert_eq!(
            p.admit(b"/bin/new", &digest_of(HashAlgo::Sha256, &d2), Some(&good)),
            Ok(Admission::Signature)
        );
        // The signature over another digest does not verify.
        let d1 = hex::decode(D1).unwrap();
        let err = p
            .admit(b"/bin/new", &digest_of(HashAlgo::Sha256, &d1), Some(&good))
            .unwrap_err();
        assert_eq!(
            err,
            FileFailure::Signature(SignatureFailure::Invalid(keyid))
        );
        let unknown = sign_field(&key, keyid ^ 1, &d2);
        // A listed path with another digest and a signature that does not admit it is named
        // as a digest mismatch.
        assert!(matches!(
            p.admit(b"/bin/a", &digest_of(HashAlgo::Sha256, &d2), Some(&unknown)),
            Err(FileFailure::DigestMismatch { .. })
        ));
        assert_eq!(
            p.admit(
                b"/bin/new",
                &digest_of(HashAlgo::Sha256, &d2),
                Some(&unknown)
            ),
            Err(FileFailure::Signature(SignatureFailure::UnknownKey(
                keyid ^ 1
            )))
        );
        let mut wrong_algo = good.clone();
        wrong_algo[2] = 5;
        assert!(matches!(
            p.admit(
                b"/bin/new",
                &digest_of(HashAlgo::Sha256, &d2),
                Some(&wrong_algo)
            ),
            Err(FileFailure::Signature(
                SignatureFailure::AlgorithmMismatch { .. }
            ))
        ));
        assert!(matches!(
            p.admit(
                b"/bin/new",
                &digest_of(HashAlgo::Sha256, &d2),
                Some(&good[..8])
            ),
            Err(FileFailure::Signature(SignatureFailure::Malformed(
                SignatureError::Truncated(8)
            )))
        ));
        // Without keys a signature is not considered.
        let nokeys = policy(serde_json::json!({"meta": {"version": 1}, "digests": {}})).unwrap();
        assert_eq!(
            nokeys.admit(b"/bin/new", &digest_of(HashAlgo::Sha256, &d2), Some(&good)),
            Err(FileFailure::NotInPolicy)
        );
    }

    #[test]
    fn a_tree_becomes_a_policy_that_admits_its_files() {
        let dir = std::env::temp_dir().join(format!("ima-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("bin/tool"), b"tool").unwrap();
        std::fs::write(dir.join("init"), b"#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("tmp/scratch"), b"x").unwrap();
        std::os::unix::fs::symlink("tool", dir.join("bin/alias")).unwrap();
        let doc = RuntimePolicyDocument::from_tree(
            &dir,
            &TreeOptions {
                mount_point: "/".into(),
                excludes: vec!["/tmp/".into()],
                timestamp: None,
            },
        )
        .unwrap();
        let paths: Vec<_> = doc.digests.keys().cloned().collect();
        assert_eq!(paths, ["/bin/tool", "/init"]);
        assert_eq!(
            doc.digests["/bin/tool"],
            [hex::encode(Sha256::digest(b"tool"))]
        );
        // It round-trips through JSON and compiles.
        let json = serde_json::to_vec(&doc).unwrap();
        let p = RuntimePolicy::from_json(&json).unwrap();
        assert_eq!(p.len(), 2);
        let d = Sha256::digest(b"tool");
        assert_eq!(
            p.admit(b"/bin/tool", &digest_of(HashAlgo::Sha256, &d), None),
            Ok(Admission::Digest)
        );
        assert_eq!(
            p.admit(b"/tmp/scratch", &digest_of(HashAlgo::Sha256, &d), None),
            Ok(Admission::Excluded)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
