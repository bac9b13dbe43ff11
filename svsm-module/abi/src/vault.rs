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
//! No response ever carries private or secret key bytes.

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
    /// An import names a context that no recent attestation carried.
    UnknownContext = 7,
    /// Unsealing data bound to PCRs whose values changed.
    PcrMismatch = 8,
    /// The entropy source failed; nothing was created.
    EntropyFailed = 9,
    /// A public key or signature given by the caller is malformed.
    BadPublicKey = 10,
    /// Data sealed by another VMPL, another launch or another format.
    ForeignBlob = 11,
}

impl VaultStatus {
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
            _ => return None,
        })
    }

    /// Length of the secret material.
    pub const fn secret_len(self) -> usize {
        match self {
            KeyKind::EcdsaP256 | KeyKind::Aes256Gcm => 32,
            KeyKind::EcdsaP384 | KeyKind::HmacSha384 | KeyKind::EcdhP384 => 48,
        }
    }

    /// Whether the kind has a public part.
    pub const fn is_asymmetric(self) -> bool {
        matches!(
            self,
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdhP384
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
    },
    /// Import a wrapped key.
    ImportKey {
        /// Kind of the imported key.
        kind: KeyKind,
        /// Usage.
        usage: Usage,
        /// The attestation nonce / context the wrapping is bound to.
        context: &'a [u8],
        /// The wrapper's ephemeral P-384 public key (SEC1).
        ephemeral_public: &'a [u8],
        /// AES-GCM IV.
        iv: &'a [u8; IV_LEN],
        /// Ciphertext with tag.
        ciphertext: &'a [u8],
    },
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
    /// List keys.
    List,
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
            Op::CreateKey => Request::CreateKey {
                kind: r.kind()?,
                usage: r.usage()?,
            },
            Op::ImportKey => {
                let kind = r.kind()?;
                let usage = r.usage()?;
                let context_len = usize::from(r.u16("context_len")?);
                let public_len = usize::from(r.u16("ephemeral_len")?);
                let ct_len = r.u32("ciphertext_len")? as usize;
                let iv = r.iv()?;
                Request::ImportKey {
                    kind,
                    usage,
                    context: r.field(context_len, MAX_FIELD, "context")?,
                    ephemeral_public: r.field(public_len, MAX_FIELD, "ephemeral_public")?,
                    iv,
                    ciphertext: r.field(ct_len, MAX_FIELD, "ciphertext")?,
                }
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
            Op::List => Request::List,
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
                usage: Usage::SIGN
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
        let huge = std::vec![0u8; MAX_MESSAGE + 1];
        assert!(Request::parse(&huge).is_err());
    }
}
