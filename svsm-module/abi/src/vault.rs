//! The svsm-vhsm vault protocol (our own; protocol number [`crate::svsm::PROTOCOL_VAULT`]).
//!
//! One call, [`VAULT_CALL_REQUEST`]: RCX = GPA of the request, RDX = its length, R8 = GPA of the
//! response buffer, R9 = its capacity. On return RCX = the response length (also when the
//! buffer was too small: then RAX = [`VaultStatus::ResponseTooSmall`] and RCX = bytes needed).
//! [`VAULT_CALL_QUERY`] returns RCX = protocol message version, RDX = [`MAX_MESSAGE`].
//!
//! A request is a 12-byte [`RequestHeader`] (version, operation, key id, body length) followed
//! by the operation's body. All integers little-endian; every length is checked against the
//! buffer before use. [`Request::parse`] turns bytes into a typed request or a typed error.
//! No response ever carries private or secret key bytes, with one deliberate exception: a
//! [`KeyKind::Secret256`] (a disk key, a passphrase) exists to be handed to the VMPL that owns
//! it, and only [`Op::RevealSecret`] with [`Usage::REVEAL`] does that.

use crate::assert_layout;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Message format version.
pub const VAULT_VERSION: u16 = 1;
/// Vault call: QUERY.
pub const VAULT_CALL_QUERY: u32 = 0;
/// Vault call: REQUEST.
pub const VAULT_CALL_REQUEST: u32 = 1;
/// Largest request or response (64 KiB of data plus room for headers).
pub const MAX_MESSAGE: usize = 64 * 1024 + 1024;
/// Largest data item (plaintext, message, sealed data) in one request.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest additional authenticated data, context or info field.
pub const MAX_FIELD: usize = 1024;
/// AES-GCM IV length.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Shortest digest [`Op::SignDigest`] takes (half the smallest curve's order length, as
/// ECDSA's bits2field allows).
pub const MIN_DIGEST: usize = 16;
/// Longest digest [`Op::SignDigest`] takes (SHA-512).
pub const MAX_DIGEST: usize = 64;
/// Most bytes one [`Op::Random`] returns.
pub const MAX_RANDOM: usize = 1024;

/// Vault-specific result codes: 0x8000_1000 + n (SVSM spec §5 protocol-defined errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum VaultStatus {
    /// No key with this id belongs to the caller's VMPL.
    KeyNotFound = 1,
    /// The key's usage flags do not allow the operation.
    UsageNotAllowed = 2,
    /// The key's kind cannot do the operation.
    WrongKeyKind = 3,
    /// Authenticated decryption (decrypt, unseal, import) failed.
    AuthenticationFailed = 4,
    /// The response buffer is too small; RCX holds the size needed.
    ResponseTooSmall = 5,
    /// The vault holds as many keys as it can.
    VaultFull = 6,
    /// An import names a nonce that no recent attestation by the caller's VMPL carried.
    UnknownContext = 7,
    /// Unsealing data bound to PCRs whose values changed.
    PcrMismatch = 8,
    /// The entropy source failed; nothing was created.
    EntropyFailed = 9,
    /// A public key or signature given by the caller is malformed.
    BadPublicKey = 10,
    /// Data sealed by another VMPL, another launch or another format.
    ForeignBlob = 11,
    /// An import is wrapped for another owner VMPL than the caller's.
    OwnerMismatch = 12,
    /// An import is wrapped for another instance (another sealed state).
    WrongInstance = 13,
    /// An import is wrapped to another boot's transport key.
    WrongBoot = 14,
    /// The operation took effect but the new state could not be sealed and stored: a restart
    /// would come back without it. The response is still written (e.g. the new key id).
    NotPersisted = 15,
    /// The caller already holds a key of that name.
    DuplicateName = 16,
}

impl VaultStatus {
    /// Decodes a status number (the result code minus 0x8000_1000).
    pub const fn from_u32(n: u32) -> Option<VaultStatus> {
        Some(match n {
            1 => VaultStatus::KeyNotFound,
            2 => VaultStatus::UsageNotAllowed,
            3 => VaultStatus::WrongKeyKind,
            4 => VaultStatus::AuthenticationFailed,
            5 => VaultStatus::ResponseTooSmall,
            6 => VaultStatus::VaultFull,
            7 => VaultStatus::UnknownContext,
            8 => VaultStatus::PcrMismatch,
            9 => VaultStatus::EntropyFailed,
            10 => VaultStatus::BadPublicKey,
            11 => VaultStatus::ForeignBlob,
            12 => VaultStatus::OwnerMismatch,
            13 => VaultStatus::WrongInstance,
            14 => VaultStatus::WrongBoot,
            15 => VaultStatus::NotPersisted,
            16 => VaultStatus::DuplicateName,
            _ => return None,
        })
    }

    /// The SVSM result code (0x8000_1000 + n).
    pub const fn result_code(self) -> u32 {
        0x8000_1000 + self as u32
    }
}

/// Operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Op {
    /// Create a key inside the vault.
    CreateKey = 1,
    /// Import a key wrapped to the vault's transport key.
    ImportKey = 2,
    /// Sign a message (ECDSA; the curve's hash).
    Sign = 3,
    /// Verify a signature.
    Verify = 4,
    /// AES-256-GCM encrypt (the vault picks the IV).
    Encrypt = 5,
    /// AES-256-GCM decrypt.
    Decrypt = 6,
    /// HMAC-SHA-384.
    Mac = 7,
    /// ECDH P-384 with a peer key, then HKDF-SHA384 into a new vault key.
    Derive = 8,
    /// Seal data to this launch (and optionally to vTPM PCRs).
    Seal = 9,
    /// Unseal data.
    Unseal = 10,
    /// A key's public part.
    ExportPublic = 11,
    /// Destroy a key.
    Destroy = 12,
    /// List the caller's keys.
    List = 13,
    /// The vault's transport public key (P-384, SEC1 uncompressed).
    TransportKey = 14,
    /// Measure data into a vTPM PCR (SHA-256 and SHA-384 banks) and append it to the event log.
    Measure = 15,
    /// Read the event log from an offset (as much as fits the response buffer).
    ReadEventLog = 16,
    /// Register the SHA-384 digest of extra evidence (e.g. a GPU report) for the manifest.
    AddEvidence = 17,
    /// Hand a [`KeyKind::Secret256`]'s bytes to its owner VMPL (needs [`Usage::REVEAL`]); the
    /// secret leaves the vault with the answer.
    RevealSecret = 18,
    /// ECDSA over a digest the caller computed (PKCS#11 `CKM_ECDSA`): the digest is used as
    /// ECDSA's `e` (truncated to the curve's order length when longer).
    SignDigest = 19,
    /// Bytes from the vault's entropy source (PKCS#11 `C_GenerateRandom`).
    Random = 20,
    /// ECDH with a peer key; the new vault key is the shared x-coordinate Z itself, truncated
    /// to the new kind's length (PKCS#11 `CKM_ECDH1_DERIVE` with `CKD_NULL`).
    DeriveRaw = 21,
    /// AES-256-GCM encrypt under an IV the caller chose (PKCS#11 `CKM_AES_GCM`; the caller
    /// answers for never reusing an IV under one key, [`Op::Encrypt`] picks one itself).
    EncryptWithIv = 22,
}

impl Op {
    /// Decodes an operation number.
    pub const fn from_u16(v: u16) -> Option<Op> {
        Some(match v {
            1 => Op::CreateKey,
            2 => Op::ImportKey,
            3 => Op::Sign,
            4 => Op::Verify,
            5 => Op::Encrypt,
            6 => Op::Decrypt,
            7 => Op::Mac,
            8 => Op::Derive,
            9 => Op::Seal,
            10 => Op::Unseal,
            11 => Op::ExportPublic,
            12 => Op::Destroy,
            13 => Op::List,
            14 => Op::TransportKey,
            15 => Op::Measure,
            16 => Op::ReadEventLog,
            17 => Op::AddEvidence,
            18 => Op::RevealSecret,
            19 => Op::SignDigest,
            20 => Op::Random,
            21 => Op::DeriveRaw,
            22 => Op::EncryptWithIv,
            _ => return None,
        })
    }
}

/// Key kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum KeyKind {
    /// ECDSA NIST P-256 with SHA-256.
    EcdsaP256 = 1,
    /// ECDSA NIST P-384 with SHA-384.
    EcdsaP384 = 2,
    /// AES-256-GCM.
    Aes256Gcm = 3,
    /// HMAC-SHA-384 (48-byte key).
    HmacSha384 = 4,
    /// ECDH NIST P-384.
    EcdhP384 = 5,
    /// An opaque 32-byte secret (a disk key) the vault hands to its owner VMPL once, on
    /// request: the one kind whose bytes leave VMPL0, and only to its owner. It is kept in
    /// this boot's memory only (never in the sealed state), so every use needs a new release.
    Secret256 = 6,
    /// HMAC-SHA-256 (32-byte key).
    HmacSha256 = 7,
    /// ECDH NIST P-256.
    EcdhP256 = 8,
}

impl KeyKind {
    /// Decodes a kind.
    pub const fn from_u16(v: u16) -> Option<KeyKind> {
        Some(match v {
            1 => KeyKind::EcdsaP256,
            2 => KeyKind::EcdsaP384,
            3 => KeyKind::Aes256Gcm,
            4 => KeyKind::HmacSha384,
            5 => KeyKind::EcdhP384,
            6 => KeyKind::Secret256,
            7 => KeyKind::HmacSha256,
            8 => KeyKind::EcdhP256,
            _ => return None,
        })
    }

    /// Length of the secret material.
    pub const fn secret_len(self) -> usize {
        match self {
            KeyKind::EcdsaP256
            | KeyKind::Aes256Gcm
            | KeyKind::Secret256
            | KeyKind::HmacSha256
            | KeyKind::EcdhP256 => 32,
            KeyKind::EcdsaP384 | KeyKind::HmacSha384 | KeyKind::EcdhP384 => 48,
        }
    }

    /// The usages a key of this kind can have at all (the vault refuses others with
    /// `UsageNotAllowed`; a broker checks the same before it wraps a key).
    pub const fn allowed_usages(self) -> Usage {
        match self {
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => Usage::SIGN.union(Usage::VERIFY),
            KeyKind::Aes256Gcm => Usage::ENCRYPT.union(Usage::DECRYPT),
            KeyKind::HmacSha384 | KeyKind::HmacSha256 => Usage::MAC.union(Usage::VERIFY),
            KeyKind::EcdhP384 | KeyKind::EcdhP256 => Usage::DERIVE,
            KeyKind::Secret256 => Usage::REVEAL,
        }
    }

    /// Whether the kind has a public part.
    pub const fn is_asymmetric(self) -> bool {
        matches!(
            self,
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdhP384 | KeyKind::EcdhP256
        )
    }
}

bitflags::bitflags! {
    /// What a key may be used for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Usage: u16 {
        /// Sign.
        const SIGN = 1 << 0;
        /// Verify.
        const VERIFY = 1 << 1;
        /// Encrypt.
        const ENCRYPT = 1 << 2;
        /// Decrypt.
        const DECRYPT = 1 << 3;
        /// MAC.
        const MAC = 1 << 4;
        /// Key agreement / derivation.
        const DERIVE = 1 << 5;
        /// Handed to the owner VMPL ([`Op::RevealSecret`]; [`KeyKind::Secret256`] only).
        const REVEAL = 1 << 6;
    }
}

/// The request header, 12 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RequestHeader {
    /// [`VAULT_VERSION`].
    pub version: U16,
    /// [`Op`].
    pub op: U16,
    /// The key operated on (0 when the operation takes none).
    pub key_id: U32,
    /// Length of the body that follows.
    pub body_len: U32,
}
assert_layout!(
    RequestHeader,
    size = 12,
    version = 0,
    op = 2,
    key_id = 4,
    body_len = 8
);
/// Length of [`RequestHeader`].
pub const HEADER_LEN: usize = 12;

/// Why a request could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultRequestError {
    /// Shorter than the header or than the body it declares.
    #[error("vault request truncated at {0}")]
    Truncated(&'static str),
    /// Longer than [`MAX_MESSAGE`], or bytes after the body.
    #[error("vault request has {0} bytes beyond its body or the maximum")]
    TrailingBytes(usize),
    /// Unsupported message version.
    #[error("vault message version {0} is not supported")]
    Version(u16),
    /// Unknown operation.
    #[error("unknown vault operation {0}")]
    UnknownOp(u16),
    /// Unknown key kind.
    #[error("unknown key kind {0}")]
    UnknownKind(u16),
    /// Unknown usage bits.
    #[error("unknown usage bits {0:#x}")]
    UnknownUsage(u16),
    /// A field is longer than allowed.
    #[error("vault request field {0} is too long")]
    FieldTooLong(&'static str),
    /// A reserved field is not zero.
    #[error("vault request field {0} is reserved")]
    Reserved(&'static str),
    /// A key name is empty, too long, or has a byte outside printable ASCII.
    #[error("key name must be 1..={MAX_KEY_NAME} printable ASCII bytes")]
    BadName,
}

/// A decoded request; slices borrow the (copied-in) request buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Create a key.
    CreateKey {
        /// Kind.
        kind: KeyKind,
        /// Usage.
        usage: Usage,
        /// The caller's name for it (empty: none); unique among the caller's keys.
        name: &'a [u8],
    },
    /// Import a key wrapped to this boot's transport key.
    ImportKey(ImportPackage<'a>),
    /// Sign `message` with `key_id`.
    Sign {
        /// Key.
        key_id: u32,
        /// Message.
        message: &'a [u8],
    },
    /// Verify `signature` over `message`.
    Verify {
        /// Key.
        key_id: u32,
        /// Signature (r || s).
        signature: &'a [u8],
        /// Message.
        message: &'a [u8],
    },
    /// Encrypt.
    Encrypt {
        /// Key.
        key_id: u32,
        /// Additional authenticated data.
        aad: &'a [u8],
        /// Plaintext.
        plaintext: &'a [u8],
    },
    /// Decrypt.
    Decrypt {
        /// Key.
        key_id: u32,
        /// Additional authenticated data.
        aad: &'a [u8],
        /// IV.
        iv: &'a [u8; IV_LEN],
        /// Ciphertext with tag.
        ciphertext: &'a [u8],
    },
    /// HMAC.
    Mac {
        /// Key.
        key_id: u32,
        /// Data.
        data: &'a [u8],
    },
    /// ECDH + HKDF into a new key.
    Derive {
        /// The ECDH key.
        key_id: u32,
        /// Kind of the new key.
        kind: KeyKind,
        /// Usage of the new key.
        usage: Usage,
        /// Peer public key (SEC1).
        peer_public: &'a [u8],
        /// HKDF info.
        info: &'a [u8],
    },
    /// Seal.
    Seal {
        /// Bind to the SHA-256 PCRs in `pcr_mask` as well.
        bind_pcrs: bool,
        /// PCR bitmap (bits 0..23).
        pcr_mask: u32,
        /// Additional authenticated data.
        aad: &'a [u8],
        /// Data to seal.
        data: &'a [u8],
    },
    /// Unseal.
    Unseal {
        /// Additional authenticated data (must match the seal's).
        aad: &'a [u8],
        /// The sealed blob.
        blob: &'a [u8],
    },
    /// Export a public key.
    ExportPublic {
        /// Key.
        key_id: u32,
    },
    /// Destroy a key.
    Destroy {
        /// Key.
        key_id: u32,
    },
    /// Hand a secret to its owner.
    RevealSecret {
        /// Key.
        key_id: u32,
    },
    /// List keys.
    List,
    /// ECDSA over a caller-computed digest.
    SignDigest {
        /// Key.
        key_id: u32,
        /// The digest ([`MIN_DIGEST`]..=[`MAX_DIGEST`] bytes).
        digest: &'a [u8],
    },
    /// Random bytes.
    Random {
        /// How many (1..=[`MAX_RANDOM`]).
        len: u16,
    },
    /// ECDH; the shared secret Z itself becomes a new key.
    DeriveRaw {
        /// The ECDH key.
        key_id: u32,
        /// Kind of the new key (its length must not exceed Z's).
        kind: KeyKind,
        /// Usage of the new key.
        usage: Usage,
        /// Peer public key (SEC1).
        peer_public: &'a [u8],
        /// The caller's name for the new key (empty: none).
        name: &'a [u8],
    },
    /// AES-256-GCM encrypt under the caller's IV.
    EncryptWithIv {
        /// Key.
        key_id: u32,
        /// IV.
        iv: &'a [u8; IV_LEN],
        /// Additional authenticated data.
        aad: &'a [u8],
        /// Plaintext.
        plaintext: &'a [u8],
    },
    /// The transport public key.
    TransportKey,
    /// Measure `data` into `pcr` and log it.
    Measure {
        /// PCR index (0..=23).
        pcr: u32,
        /// TCG event type.
        event_type: u32,
        /// The data measured (its digests are extended; the data is the event).
        data: &'a [u8],
    },
    /// Read the event log from `offset`.
    ReadEventLog {
        /// Byte offset.
        offset: u32,
    },
    /// Register extra evidence.
    AddEvidence {
        /// Caller-defined kind (e.g. 1 = GPU attestation report).
        kind: u16,
        /// SHA-384 of the evidence.
        digest: &'a [u8; 48],
    },
}

/// Import package format version.
pub const IMPORT_VERSION: u16 = 2;
/// Longest key name.
pub const MAX_KEY_NAME: usize = 64;
/// Longest appraisal nonce an import binds.
pub const MAX_IMPORT_NONCE: usize = 64;
/// SEC1 uncompressed P-384 point length.
pub const P384_POINT_LEN: usize = 97;
/// HKDF salt of the import key derivation.
pub const IMPORT_LABEL: &[u8] = b"svsm-vhsm import v2";

/// What a key provider binds a wrapped key to: the fields of an [`ImportPackage`] before its IV.
/// Their encoding (see [`ImportBinding::write`]) is both the HKDF info and the AES-GCM AAD, so
/// a package unwraps only in the boot, instance and VMPL it names, as the key it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportBinding<'a> {
    /// Kind of the wrapped key.
    pub kind: KeyKind,
    /// Usage granted.
    pub usage: Usage,
    /// The VMPL that will own the key (the requester VMPL of the appraised attestation).
    pub owner_vmpl: u8,
    /// Instance id from the appraised manifest.
    pub instance_id: &'a [u8; 16],
    /// The boot's transport public key from the appraised manifest (SEC1, 97 bytes).
    pub recipient: &'a [u8; P384_POINT_LEN],
    /// The wrapper's ephemeral P-384 public key (SEC1, 97 bytes).
    pub ephemeral: &'a [u8; P384_POINT_LEN],
    /// The key's name (1..=64 printable ASCII bytes).
    pub name: &'a [u8],
    /// The nonce of the appraisal that admitted the release (1..=64 bytes).
    pub nonce: &'a [u8],
}

/// Whether `name` is a valid key name.
pub fn valid_key_name(name: &[u8]) -> bool {
    (1..=MAX_KEY_NAME).contains(&name.len()) && name.iter().all(|b| (0x21..=0x7e).contains(b))
}

impl ImportBinding<'_> {
    /// Encoded length: u16 version, u16 kind, u16 usage, u8 owner VMPL, u8 zero, 16-byte
    /// instance id, 97-byte recipient, 97-byte ephemeral key, u8 + name, u8 + nonce.
    pub const fn len(&self) -> usize {
        8 + 16 + 2 * P384_POINT_LEN + 1 + self.name.len() + 1 + self.nonce.len()
    }

    /// Never empty (kept for the `len` convention).
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Writes the encoding into `out`; `None` when `out` is too small or a field is invalid.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        if !valid_key_name(self.name)
            || !(1..=MAX_IMPORT_NONCE).contains(&self.nonce.len())
            || self.owner_vmpl > 3
        {
            return None;
        }
        let n = self.len();
        let mut w = out.get_mut(..n)?;
        let mut put = |bytes: &[u8]| -> Option<()> {
            let (head, tail) = core::mem::take(&mut w).split_at_mut_checked(bytes.len())?;
            head.copy_from_slice(bytes);
            w = tail;
            Some(())
        };
        put(&IMPORT_VERSION.to_le_bytes())?;
        put(&(self.kind as u16).to_le_bytes())?;
        put(&self.usage.bits().to_le_bytes())?;
        put(&[self.owner_vmpl, 0])?;
        put(self.instance_id)?;
        put(self.recipient)?;
        put(self.ephemeral)?;
        put(&[self.name.len() as u8])?;
        put(self.name)?;
        put(&[self.nonce.len() as u8])?;
        put(self.nonce)?;
        Some(n)
    }
}

/// A wrapped key as a key provider sends it and the guest passes it on unchanged: the
/// [`ImportBinding`] encoding, then a 12-byte AES-GCM IV, u16 ciphertext length, ciphertext
/// with tag. The key is AES-256-GCM under `HKDF-SHA384(salt = IMPORT_LABEL, ikm = ECDH(E,
/// recipient).x, info = binding)`, with the binding as AAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportPackage<'a> {
    /// The binding fields.
    pub binding: ImportBinding<'a>,
    /// The encoded binding (the AAD), as received.
    pub binding_bytes: &'a [u8],
    /// AES-GCM IV.
    pub iv: &'a [u8; IV_LEN],
    /// Ciphertext with tag.
    pub ciphertext: &'a [u8],
}

impl<'a> ImportPackage<'a> {
    /// Decodes a package of exactly `bytes.len()` bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, VaultRequestError> {
        let mut r = Reader { data: bytes };
        let version = r.u16("import version")?;
        if version != IMPORT_VERSION {
            return Err(VaultRequestError::Version(version));
        }
        let kind = r.kind()?;
        let usage = r.usage()?;
        let owner = r.take(2, "owner_vmpl")?;
        let owner_vmpl = owner.first().copied().unwrap_or(u8::MAX);
        if owner_vmpl > 3 {
            return Err(VaultRequestError::Reserved("owner_vmpl above 3"));
        }
        if owner.get(1) != Some(&0) {
            return Err(VaultRequestError::Reserved("import reserved"));
        }
        let instance_id = r.array::<16>("instance_id")?;
        let recipient = r.array::<P384_POINT_LEN>("recipient")?;
        let ephemeral = r.array::<P384_POINT_LEN>("ephemeral")?;
        let name_len = usize::from(r.u8("name_len")?);
        let name = r.field(name_len, MAX_KEY_NAME, "name")?;
        if !valid_key_name(name) {
            return Err(VaultRequestError::BadName);
        }
        let nonce_len = usize::from(r.u8("nonce_len")?);
        if nonce_len == 0 {
            return Err(VaultRequestError::Truncated("nonce"));
        }
        let nonce = r.field(nonce_len, MAX_IMPORT_NONCE, "nonce")?;
        let binding_len = bytes.len() - r.data.len();
        let binding_bytes = bytes
            .get(..binding_len)
            .ok_or(VaultRequestError::Truncated("binding"))?;
        let iv = r.iv()?;
        let ct_len = usize::from(r.u16("ciphertext_len")?);
        let ciphertext = r.field(ct_len, MAX_FIELD, "ciphertext")?;
        if !r.data.is_empty() {
            return Err(VaultRequestError::TrailingBytes(r.data.len()));
        }
        Ok(ImportPackage {
            binding: ImportBinding {
                kind,
                usage,
                owner_vmpl,
                instance_id,
                recipient,
                ephemeral,
                name,
                nonce,
            },
            binding_bytes,
            iv,
            ciphertext,
        })
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], VaultRequestError> {
        let (head, tail) = self
            .data
            .split_at_checked(n)
            .ok_or(VaultRequestError::Truncated(what))?;
        self.data = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, VaultRequestError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }
    fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<&'a [u8; N], VaultRequestError> {
        self.take(N, what)?
            .try_into()
            .map_err(|_| VaultRequestError::Truncated(what))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, VaultRequestError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, VaultRequestError> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }
    fn field(
        &mut self,
        len: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], VaultRequestError> {
        if len > max {
            return Err(VaultRequestError::FieldTooLong(what));
        }
        self.take(len, what)
    }
    fn iv(&mut self) -> Result<&'a [u8; IV_LEN], VaultRequestError> {
        self.take(IV_LEN, "iv")?
            .try_into()
            .map_err(|_| VaultRequestError::Truncated("iv"))
    }
    fn rest(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], VaultRequestError> {
        let n = self.data.len();
        self.field(n, max, what)
    }
    fn kind(&mut self) -> Result<KeyKind, VaultRequestError> {
        let k = self.u16("kind")?;
        KeyKind::from_u16(k).ok_or(VaultRequestError::UnknownKind(k))
    }
    fn usage(&mut self) -> Result<Usage, VaultRequestError> {
        let u = self.u16("usage")?;
        Usage::from_bits(u).ok_or(VaultRequestError::UnknownUsage(u))
    }
    /// A u8 length and a key name ([`valid_key_name`]).
    fn name(&mut self) -> Result<&'a [u8], VaultRequestError> {
        let len = usize::from(self.u8("name_len")?);
        let name = self.field(len, MAX_KEY_NAME, "name")?;
        if !valid_key_name(name) {
            return Err(VaultRequestError::BadName);
        }
        Ok(name)
    }
}

impl<'a> Request<'a> {
    /// Decodes a request of exactly `bytes.len()` bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Request<'a>, VaultRequestError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(VaultRequestError::TrailingBytes(bytes.len() - MAX_MESSAGE));
        }
        let (header, body) = RequestHeader::ref_from_prefix(bytes)
            .map_err(|_| VaultRequestError::Truncated("header"))?;
        if header.version.get() != VAULT_VERSION {
            return Err(VaultRequestError::Version(header.version.get()));
        }
        let body_len = header.body_len.get() as usize;
        let body = match body.len().checked_sub(body_len) {
            Some(0) => body,
            Some(extra) => return Err(VaultRequestError::TrailingBytes(extra)),
            None => return Err(VaultRequestError::Truncated("body")),
        };
        let op =
            Op::from_u16(header.op.get()).ok_or(VaultRequestError::UnknownOp(header.op.get()))?;
        let key_id = header.key_id.get();
        let mut r = Reader { data: body };
        let request = match op {
            Op::CreateKey => {
                let kind = r.kind()?;
                let usage = r.usage()?;
                // The name is optional: a body of kind and usage alone is a nameless key.
                let name = if r.data.is_empty() {
                    &[][..]
                } else {
                    r.name()?
                };
                Request::CreateKey { kind, usage, name }
            }
            Op::ImportKey => {
                Request::ImportKey(ImportPackage::parse(r.rest(MAX_FIELD * 2, "import")?)?)
            }
            Op::Sign => Request::Sign {
                key_id,
                message: r.rest(MAX_DATA, "message")?,
            },
            Op::Verify => {
                let sig_len = usize::from(r.u16("signature_len")?);
                Request::Verify {
                    key_id,
                    signature: r.field(sig_len, MAX_FIELD, "signature")?,
                    message: r.rest(MAX_DATA, "message")?,
                }
            }
            Op::Encrypt => {
                let aad_len = usize::from(r.u16("aad_len")?);
                Request::Encrypt {
                    key_id,
                    aad: r.field(aad_len, MAX_FIELD, "aad")?,
                    plaintext: r.rest(MAX_DATA, "plaintext")?,
                }
            }
            Op::Decrypt => {
                let aad_len = usize::from(r.u16("aad_len")?);
                let aad = r.field(aad_len, MAX_FIELD, "aad")?;
                let iv = r.iv()?;
                Request::Decrypt {
                    key_id,
                    aad,
                    iv,
                    ciphertext: r.rest(MAX_DATA + TAG_LEN, "ciphertext")?,
                }
            }
            Op::Mac => Request::Mac {
                key_id,
                data: r.rest(MAX_DATA, "data")?,
            },
            Op::Derive => {
                let kind = r.kind()?;
                let usage = r.usage()?;
                let peer_len = usize::from(r.u16("peer_len")?);
                let info_len = usize::from(r.u16("info_len")?);
                Request::Derive {
                    key_id,
                    kind,
                    usage,
                    peer_public: r.field(peer_len, MAX_FIELD, "peer_public")?,
                    info: r.field(info_len, MAX_FIELD, "info")?,
                }
            }
            Op::Seal => {
                let flags = r.u16("flags")?;
                if flags & !1 != 0 {
                    return Err(VaultRequestError::Reserved("seal flags"));
                }
                if r.u16("reserved")? != 0 {
                    return Err(VaultRequestError::Reserved("seal reserved"));
                }
                let pcr_mask = r.u32("pcr_mask")?;
                if pcr_mask >> 24 != 0 {
                    return Err(VaultRequestError::Reserved("pcr_mask[31:24]"));
                }
                let aad_len = usize::from(r.u16("aad_len")?);
                Request::Seal {
                    bind_pcrs: flags & 1 == 1,
                    pcr_mask,
                    aad: r.field(aad_len, MAX_FIELD, "aad")?,
                    data: r.rest(MAX_DATA, "data")?,
                }
            }
            Op::Unseal => {
                let aad_len = usize::from(r.u16("aad_len")?);
                Request::Unseal {
                    aad: r.field(aad_len, MAX_FIELD, "aad")?,
                    blob: r.rest(MAX_DATA + 256, "blob")?,
                }
            }
            Op::ExportPublic => Request::ExportPublic { key_id },
            Op::Destroy => Request::Destroy { key_id },
            Op::RevealSecret => Request::RevealSecret { key_id },
            Op::List => Request::List,
            Op::SignDigest => {
                let digest = r.rest(MAX_DIGEST, "digest")?;
                if digest.len() < MIN_DIGEST {
                    return Err(VaultRequestError::Truncated("digest"));
                }
                Request::SignDigest { key_id, digest }
            }
            Op::Random => {
                let len = r.u16("len")?;
                if len == 0 || usize::from(len) > MAX_RANDOM {
                    return Err(VaultRequestError::FieldTooLong("len"));
                }
                Request::Random { len }
            }
            Op::DeriveRaw => {
                let kind = r.kind()?;
                let usage = r.usage()?;
                let peer_len = usize::from(r.u16("peer_len")?);
                let peer_public = r.field(peer_len, MAX_FIELD, "peer_public")?;
                let name = if r.data.is_empty() {
                    &[][..]
                } else {
                    r.name()?
                };
                Request::DeriveRaw {
                    key_id,
                    kind,
                    usage,
                    peer_public,
                    name,
                }
            }
            Op::EncryptWithIv => {
                let aad_len = usize::from(r.u16("aad_len")?);
                let iv = r.iv()?;
                Request::EncryptWithIv {
                    key_id,
                    iv,
                    aad: r.field(aad_len, MAX_FIELD, "aad")?,
                    plaintext: r.rest(MAX_DATA, "plaintext")?,
                }
            }
            Op::TransportKey => Request::TransportKey,
            Op::Measure => {
                let pcr = r.u32("pcr")?;
                if pcr > 23 {
                    return Err(VaultRequestError::Reserved("pcr above 23"));
                }
                let event_type = r.u32("event_type")?;
                // TCG: EV_NO_ACTION events are logged but never extended; this call extends.
                if event_type == crate::eventlog::EV_NO_ACTION {
                    return Err(VaultRequestError::Reserved(
                        "EV_NO_ACTION is never extended",
                    ));
                }
                Request::Measure {
                    pcr,
                    event_type,
                    data: r.rest(MAX_DATA, "data")?,
                }
            }
            Op::ReadEventLog => Request::ReadEventLog {
                offset: r.u32("offset")?,
            },
            Op::AddEvidence => {
                let kind = r.u16("kind")?;
                let digest = r
                    .take(48, "digest")?
                    .try_into()
                    .map_err(|_| VaultRequestError::Truncated("digest"))?;
                Request::AddEvidence { kind, digest }
            }
        };
        if !r.data.is_empty() {
            return Err(VaultRequestError::TrailingBytes(r.data.len()));
        }
        Ok(request)
    }
}

/// Builds a request into `out` (the guest side); returns its length.
pub struct RequestWriter<'b> {
    out: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl<'b> RequestWriter<'b> {
    /// Starts a request for `op` on `key_id`.
    pub fn new(out: &'b mut [u8], op: Op, key_id: u32) -> Self {
        let mut w = RequestWriter {
            out,
            len: 0,
            overflow: false,
        };
        w.bytes(&VAULT_VERSION.to_le_bytes());
        w.bytes(&(op as u16).to_le_bytes());
        w.bytes(&key_id.to_le_bytes());
        w.bytes(&[0; 4]);
        w
    }
    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let end = self.len.saturating_add(b.len());
        match self.out.get_mut(self.len..end) {
            Some(slot) => {
                slot.copy_from_slice(b);
                self.len += b.len();
            }
            None => self.overflow = true,
        }
        self
    }
    /// Appends a u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Appends a u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Patches the body length; returns the total length, or `None` if `out` was too small.
    pub fn finish(self) -> Option<usize> {
        if self.overflow {
            return None;
        }
        let body = u32::try_from(self.len.checked_sub(HEADER_LEN)?).ok()?;
        self.out
            .get_mut(8..12)?
            .copy_from_slice(&body.to_le_bytes());
        Some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(op: Op, key: u32, f: impl FnOnce(&mut RequestWriter<'_>)) -> std::vec::Vec<u8> {
        let mut buf = std::vec![0u8; 2048];
        let mut w = RequestWriter::new(&mut buf, op, key);
        f(&mut w);
        let n = w.finish().unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn requests_round_trip() {
        let b = build(Op::CreateKey, 0, |w| {
            w.u16(KeyKind::EcdsaP384 as u16).u16(Usage::SIGN.bits());
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::CreateKey {
                kind: KeyKind::EcdsaP384,
                usage: Usage::SIGN,
                name: b""
            }
        );
        let b = build(Op::CreateKey, 0, |w| {
            w.u16(KeyKind::HmacSha256 as u16)
                .u16(Usage::MAC.bits())
                .bytes(&[4])
                .bytes(b"hmac");
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::CreateKey {
                kind: KeyKind::HmacSha256,
                usage: Usage::MAC,
                name: b"hmac"
            }
        );
        let b = build(Op::SignDigest, 3, |w| {
            w.bytes(&[0xd1; 32]);
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::SignDigest {
                key_id: 3,
                digest: &[0xd1; 32]
            }
        );
        let b = build(Op::Random, 0, |w| {
            w.u16(100);
        });
        assert_eq!(Request::parse(&b).unwrap(), Request::Random { len: 100 });
        let b = build(Op::DeriveRaw, 5, |w| {
            w.u16(KeyKind::Aes256Gcm as u16)
                .u16(Usage::ENCRYPT.bits())
                .u16(3)
                .bytes(b"\x04ab")
                .bytes(&[2])
                .bytes(b"zz");
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::DeriveRaw {
                key_id: 5,
                kind: KeyKind::Aes256Gcm,
                usage: Usage::ENCRYPT,
                peer_public: b"\x04ab",
                name: b"zz"
            }
        );
        let b = build(Op::EncryptWithIv, 9, |w| {
            w.u16(2).bytes(&[7; IV_LEN]).bytes(b"ad").bytes(b"text");
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::EncryptWithIv {
                key_id: 9,
                iv: &[7; IV_LEN],
                aad: b"ad",
                plaintext: b"text"
            }
        );
        let b = build(Op::Encrypt, 7, |w| {
            w.u16(3).bytes(b"aad").bytes(b"plain");
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::Encrypt {
                key_id: 7,
                aad: b"aad",
                plaintext: b"plain"
            }
        );
        let b = build(Op::Seal, 0, |w| {
            w.u16(1).u16(0).u32(1 << 16).u16(0).bytes(b"secret");
        });
        assert_eq!(
            Request::parse(&b).unwrap(),
            Request::Seal {
                bind_pcrs: true,
                pcr_mask: 1 << 16,
                aad: b"",
                data: b"secret"
            }
        );
    }

    fn package(binding: &ImportBinding<'_>, ct: &[u8]) -> std::vec::Vec<u8> {
        let mut b = std::vec![0u8; binding.len()];
        assert_eq!(binding.write(&mut b), Some(binding.len()));
        b.extend_from_slice(&[7; IV_LEN]);
        b.extend_from_slice(&(ct.len() as u16).to_le_bytes());
        b.extend_from_slice(ct);
        b
    }

    const BINDING: ImportBinding<'static> = ImportBinding {
        kind: KeyKind::Aes256Gcm,
        usage: Usage::ENCRYPT,
        owner_vmpl: 1,
        instance_id: &[0x11; 16],
        recipient: &[0x04; P384_POINT_LEN],
        ephemeral: &[0x05; P384_POINT_LEN],
        name: b"payments/v1",
        nonce: b"nonce-1",
    };

    #[test]
    fn every_status_decodes_from_its_own_number() {
        for n in 0..64 {
            if let Some(s) = VaultStatus::from_u32(n) {
                assert_eq!(s as u32, n);
            }
        }
        assert_eq!(VaultStatus::from_u32(16), Some(VaultStatus::DuplicateName));
        assert_eq!(VaultStatus::from_u32(17), None);
    }

    #[test]
    fn import_packages_round_trip_and_bound_every_field() {
        let bytes = package(&BINDING, &[9; 48]);
        let body = build(Op::ImportKey, 0, |w| {
            w.bytes(&bytes);
        });
        let Request::ImportKey(p) = Request::parse(&body).unwrap() else {
            panic!("not an import")
        };
        assert_eq!(p.binding, BINDING);
        assert_eq!(p.binding_bytes, &bytes[..BINDING.len()]);
        assert_eq!(p.iv, &[7; IV_LEN]);
        assert_eq!(p.ciphertext, &[9; 48]);
        for len in 0..bytes.len() {
            assert!(ImportPackage::parse(&bytes[..len]).is_err(), "len {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            ImportPackage::parse(&longer),
            Err(VaultRequestError::TrailingBytes(1))
        );
        // Owner VMPL above 3, a reserved byte, a bad name, an empty nonce, an old version.
        let mut b = bytes.clone();
        b[6] = 4;
        assert!(matches!(
            ImportPackage::parse(&b),
            Err(VaultRequestError::Reserved(_))
        ));
        let mut b = bytes.clone();
        b[7] = 1;
        assert!(matches!(
            ImportPackage::parse(&b),
            Err(VaultRequestError::Reserved(_))
        ));
        let name_at = 8 + 16 + 2 * P384_POINT_LEN + 1;
        let mut b = bytes.clone();
        b[name_at] = b' ';
        assert_eq!(ImportPackage::parse(&b), Err(VaultRequestError::BadName));
        for name in [&b""[..], b"has space", &[b'a'; 65]] {
            assert_eq!(ImportBinding { name, ..BINDING }.write(&mut [0; 512]), None);
        }
        assert_eq!(
            ImportBinding {
                nonce: b"",
                ..BINDING
            }
            .write(&mut [0; 512]),
            None
        );
        assert_eq!(BINDING.write(&mut [0; 16]), None);
        let mut b = bytes.clone();
        b[0] = 1;
        assert_eq!(ImportPackage::parse(&b), Err(VaultRequestError::Version(1)));
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let b = build(Op::Decrypt, 1, |w| {
            w.u16(2).bytes(b"ad").bytes(&[9; 12]).bytes(&[1; 20]);
        });
        assert!(Request::parse(&b).is_ok());
        for len in 0..b.len() {
            assert!(Request::parse(&b[..len]).is_err(), "len {len}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(
            Request::parse(&longer),
            Err(VaultRequestError::TrailingBytes(1))
        );
    }

    #[test]
    fn hostile_fields_are_errors() {
        let mut b = build(Op::List, 0, |_| {});
        b[0] = 2;
        assert_eq!(Request::parse(&b), Err(VaultRequestError::Version(2)));
        let mut b = build(Op::List, 0, |_| {});
        b[2] = 99;
        assert_eq!(Request::parse(&b), Err(VaultRequestError::UnknownOp(99)));
        let b = build(Op::CreateKey, 0, |w| {
            w.u16(77).u16(1);
        });
        assert_eq!(Request::parse(&b), Err(VaultRequestError::UnknownKind(77)));
        let b = build(Op::CreateKey, 0, |w| {
            w.u16(1).u16(0x8000);
        });
        assert_eq!(
            Request::parse(&b),
            Err(VaultRequestError::UnknownUsage(0x8000))
        );
        let b = build(Op::Encrypt, 1, |w| {
            w.u16(2000).bytes(&[0; 100]);
        });
        assert_eq!(
            Request::parse(&b),
            Err(VaultRequestError::FieldTooLong("aad"))
        );
        let b = build(Op::Seal, 0, |w| {
            w.u16(2).u16(0).u32(0).u16(0);
        });
        assert_eq!(
            Request::parse(&b),
            Err(VaultRequestError::Reserved("seal flags"))
        );
        let b = build(Op::List, 0, |w| {
            w.u32(1);
        });
        assert_eq!(Request::parse(&b), Err(VaultRequestError::TrailingBytes(4)));
        // Digests outside 16..=64 bytes, random lengths 0 and above the maximum, bad names.
        for digest in [&[1u8; 15][..], &[1; 65]] {
            let b = build(Op::SignDigest, 1, |w| {
                w.bytes(digest);
            });
            assert!(Request::parse(&b).is_err(), "digest of {}", digest.len());
        }
        for len in [0u16, MAX_RANDOM as u16 + 1] {
            let b = build(Op::Random, 0, |w| {
                w.u16(len);
            });
            assert_eq!(
                Request::parse(&b),
                Err(VaultRequestError::FieldTooLong("len"))
            );
        }
        for name in [&b""[..], b"a b", &[b'x'; 65]] {
            let b = build(Op::CreateKey, 0, |w| {
                w.u16(1).u16(1).bytes(&[name.len() as u8]).bytes(name);
            });
            assert!(Request::parse(&b).is_err(), "name {name:?}");
        }
        let huge = std::vec![0u8; MAX_MESSAGE + 1];
        assert!(Request::parse(&huge).is_err());
    }
}
