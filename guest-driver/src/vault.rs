//! Vault protocol client: typed operations over the svsm-vhsm vault call. Requests are built in
//! the transport's buffer (request in the first half, response in the second), and every length
//! the SVSM returns is bounds-checked.

use crate::core_protocol::query_protocol;
use crate::transport::{call, DriverError, SvsmTransport};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::svsm::{CallId, CallRegisters, ResultCode, PROTOCOL_VAULT};
use svsm_abi::vault::{
    KeyKind, Op, RequestWriter, Usage, VaultStatus, IV_LEN, MAX_MESSAGE, VAULT_CALL_REQUEST,
};

/// Why a vault call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultClientError {
    /// The driver or transport failed, or the SVSM returned a non-vault error code.
    #[error("{0}")]
    Driver(#[from] DriverError),
    /// The vault refused the operation.
    #[error("vault refused: {0:?}")]
    Vault(VaultStatus),
    /// The request does not fit the buffer.
    #[error("request too large for the driver buffer")]
    RequestTooLarge,
    /// The response is shorter than its operation's fixed part.
    #[error("malformed vault response")]
    MalformedResponse,
    /// The operation took effect (its response is kept here, e.g. a new key id) but the vault
    /// could not seal and store its new state: after a restart it would be gone.
    #[error("the operation took effect but the vault state was not stored (lost on restart)")]
    NotPersisted {
        /// The operation's response.
        response: Vec<u8>,
    },
}

/// A key the vault created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedKey {
    /// The key id.
    pub id: u32,
    /// The public key (SEC1 uncompressed) for asymmetric kinds; empty otherwise.
    pub public: Vec<u8>,
}

/// A listed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// Id.
    pub id: u32,
    /// Kind number (see [`KeyKind`]).
    pub kind: u16,
    /// Usage bits.
    pub usage: u16,
    /// Its name: a provider's for an imported key, the creator's otherwise (empty: none).
    pub name: String,
}

/// The vault, reached over an SVSM transport.
pub struct VaultClient<T> {
    transport: T,
    half: usize,
    scratch: Vec<u8>,
}

fn status_of(code: ResultCode) -> Option<VaultStatus> {
    let ResultCode::ProtocolError(n) = code else {
        return None;
    };
    VaultStatus::from_u32(n)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, VaultClientError> {
    let bytes = b
        .get(at..at + 4)
        .ok_or(VaultClientError::MalformedResponse)?;
    Ok(u32::from_le_bytes(
        bytes
            .try_into()
            .map_err(|_| VaultClientError::MalformedResponse)?,
    ))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, VaultClientError> {
    let bytes = b
        .get(at..at + 2)
        .ok_or(VaultClientError::MalformedResponse)?;
    Ok(u16::from_le_bytes(
        bytes
            .try_into()
            .map_err(|_| VaultClientError::MalformedResponse)?,
    ))
}

impl<T: SvsmTransport> VaultClient<T> {
    /// Checks that the vault protocol is offered.
    pub fn probe(mut transport: T) -> Result<Self, VaultClientError> {
        if query_protocol(&mut transport, PROTOCOL_VAULT, 1)?.is_none() {
            return Err(DriverError::ProtocolUnavailable(PROTOCOL_VAULT).into());
        }
        let half = (transport.buffer_len() / 2).min(MAX_MESSAGE.next_multiple_of(4096)) & !0xFFF;
        Ok(VaultClient {
            transport,
            half,
            scratch: vec![0; half],
        })
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends a request built by `build`; returns the response bytes.
    fn request(
        &mut self,
        op: Op,
        key_id: u32,
        build: impl FnOnce(&mut RequestWriter<'_>),
    ) -> Result<Vec<u8>, VaultClientError> {
        let mut w = RequestWriter::new(&mut self.scratch, op, key_id);
        build(&mut w);
        let len = w.finish().ok_or(VaultClientError::RequestTooLarge)?;
        let request = self
            .scratch
            .get(..len)
            .ok_or(VaultClientError::RequestTooLarge)?;
        self.transport
            .write_buffer(0, request)
            .map_err(DriverError::from)?;
        let base = self.transport.buffer_gpa();
        let regs = CallRegisters {
            rax: CallId {
                protocol: PROTOCOL_VAULT,
                call: VAULT_CALL_REQUEST,
            }
            .to_rax(),
            rcx: base,
            rdx: len as u64,
            r8: base + self.half as u64,
            r9: self.half as u64,
        };
        let (code, out) = call(&mut self.transport, regs)?;
        let not_persisted = status_of(code) == Some(VaultStatus::NotPersisted);
        if !code.is_success() && !not_persisted {
            return Err(match status_of(code) {
                Some(status) => VaultClientError::Vault(status),
                None => DriverError::Svsm(code).into(),
            });
        }
        let n = usize::try_from(out.rcx).map_err(|_| VaultClientError::MalformedResponse)?;
        if n > self.half {
            return Err(VaultClientError::MalformedResponse);
        }
        let mut response = vec![0u8; n];
        self.transport
            .read_buffer(self.half, &mut response)
            .map_err(DriverError::from)?;
        if not_persisted {
            return Err(VaultClientError::NotPersisted { response });
        }
        Ok(response)
    }

    /// Creates a key.
    pub fn create_key(
        &mut self,
        kind: KeyKind,
        usage: Usage,
    ) -> Result<CreatedKey, VaultClientError> {
        self.create_named_key(kind, usage, b"")
    }

    /// Creates a key with a name (unique among this VMPL's keys; empty: none).
    pub fn create_named_key(
        &mut self,
        kind: KeyKind,
        usage: Usage,
        name: &[u8],
    ) -> Result<CreatedKey, VaultClientError> {
        let r = self.request(Op::CreateKey, 0, |w| {
            w.u16(kind as u16).u16(usage.bits());
            if !name.is_empty() {
                w.bytes(&[name.len() as u8]).bytes(name);
            }
        })?;
        let id = u32_at(&r, 0)?;
        let len = usize::from(u16_at(&r, 4)?);
        let public = r
            .get(6..6 + len)
            .ok_or(VaultClientError::MalformedResponse)?
            .to_vec();
        Ok(CreatedKey { id, public })
    }

    /// Imports a key a provider wrapped for this boot, this instance and the caller's VMPL: the
    /// import package (`svsm_abi::vault::ImportPackage` bytes) exactly as the provider sent it.
    /// Returns the new key's id.
    pub fn import_key(&mut self, package: &[u8]) -> Result<u32, VaultClientError> {
        let r = self.request(Op::ImportKey, 0, |w| {
            w.bytes(package);
        })?;
        u32_at(&r, 0)
    }

    /// Signs `message` (r || s).
    pub fn sign(&mut self, key: u32, message: &[u8]) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::Sign, key, |w| {
            w.bytes(message);
        })
    }

    /// Signs a digest the caller computed (r || s, each the curve's order length).
    pub fn sign_digest(&mut self, key: u32, digest: &[u8]) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::SignDigest, key, |w| {
            w.bytes(digest);
        })
    }

    /// Fills `out` from the vault's entropy source (as many requests as it takes).
    pub fn random(&mut self, out: &mut [u8]) -> Result<(), VaultClientError> {
        for chunk in out.chunks_mut(svsm_abi::vault::MAX_RANDOM) {
            let r = self.request(Op::Random, 0, |w| {
                w.u16(chunk.len() as u16);
            })?;
            if r.len() != chunk.len() {
                return Err(VaultClientError::MalformedResponse);
            }
            chunk.copy_from_slice(&r);
        }
        Ok(())
    }

    /// ECDH with `peer_public`; the shared secret's leading bytes become a new key (PKCS#11
    /// `CKD_NULL`). Returns its id.
    pub fn derive_raw(
        &mut self,
        key: u32,
        kind: KeyKind,
        usage: Usage,
        peer_public: &[u8],
        name: &[u8],
    ) -> Result<u32, VaultClientError> {
        let r = self.request(Op::DeriveRaw, key, |w| {
            w.u16(kind as u16)
                .u16(usage.bits())
                .u16(peer_public.len() as u16)
                .bytes(peer_public);
            if !name.is_empty() {
                w.bytes(&[name.len() as u8]).bytes(name);
            }
        })?;
        u32_at(&r, 0)
    }

    /// Encrypts under the caller's IV; returns ciphertext || tag.
    pub fn encrypt_with_iv(
        &mut self,
        key: u32,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::EncryptWithIv, key, |w| {
            w.u16(aad.len() as u16)
                .bytes(iv)
                .bytes(aad)
                .bytes(plaintext);
        })
    }

    /// Verifies a signature or MAC; `Ok(false)` when it does not verify.
    pub fn verify(
        &mut self,
        key: u32,
        signature: &[u8],
        message: &[u8],
    ) -> Result<bool, VaultClientError> {
        let r = self.request(Op::Verify, key, |w| {
            w.u16(signature.len() as u16)
                .bytes(signature)
                .bytes(message);
        })?;
        Ok(u32_at(&r, 0)? == 1)
    }

    /// Encrypts; returns IV || ciphertext || tag.
    pub fn encrypt(
        &mut self,
        key: u32,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::Encrypt, key, |w| {
            w.u16(aad.len() as u16).bytes(aad).bytes(plaintext);
        })
    }

    /// Decrypts IV || ciphertext || tag.
    pub fn decrypt(
        &mut self,
        key: u32,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, VaultClientError> {
        let (iv, ct) = sealed
            .split_at_checked(IV_LEN)
            .ok_or(VaultClientError::MalformedResponse)?;
        self.request(Op::Decrypt, key, |w| {
            w.u16(aad.len() as u16).bytes(aad).bytes(iv).bytes(ct);
        })
    }

    /// HMAC (SHA-384 or SHA-256, by the key's kind).
    pub fn mac(&mut self, key: u32, data: &[u8]) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::Mac, key, |w| {
            w.bytes(data);
        })
    }

    /// ECDH with `peer_public`, HKDF with `info`, into a new key; returns its id.
    pub fn derive(
        &mut self,
        key: u32,
        kind: KeyKind,
        usage: Usage,
        peer_public: &[u8],
        info: &[u8],
    ) -> Result<u32, VaultClientError> {
        let r = self.request(Op::Derive, key, |w| {
            w.u16(kind as u16)
                .u16(usage.bits())
                .u16(peer_public.len() as u16)
                .u16(info.len() as u16)
                .bytes(peer_public)
                .bytes(info);
        })?;
        u32_at(&r, 0)
    }

    /// Seals data to this launch (and, with `pcr_mask`, to the current SHA-256 PCRs).
    pub fn seal(
        &mut self,
        pcr_mask: Option<u32>,
        aad: &[u8],
        data: &[u8],
    ) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::Seal, 0, |w| {
            w.u16(u16::from(pcr_mask.is_some()))
                .u16(0)
                .u32(pcr_mask.unwrap_or(0))
                .u16(aad.len() as u16)
                .bytes(aad)
                .bytes(data);
        })
    }

    /// Unseals.
    pub fn unseal(&mut self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::Unseal, 0, |w| {
            w.u16(aad.len() as u16).bytes(aad).bytes(blob);
        })
    }

    /// A key's public part.
    pub fn export_public(&mut self, key: u32) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::ExportPublic, key, |_| {})
    }

    /// The bytes of a secret ([`svsm_abi::vault::KeyKind::Secret256`] with `REVEAL`) this VMPL
    /// owns: the one vault answer that carries secret bytes, wiped when dropped.
    pub fn reveal_secret(
        &mut self,
        key: u32,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultClientError> {
        let secret = zeroize::Zeroizing::new(self.request(Op::RevealSecret, key, |_| {})?);
        // The response area of the driver buffer held it too.
        let wipe = [0u8; 32];
        let _ = self.transport.write_buffer(self.half, &wipe);
        if secret.len() != svsm_abi::vault::KeyKind::Secret256.secret_len() {
            return Err(VaultClientError::MalformedResponse);
        }
        Ok(secret)
    }

    /// Destroys a key.
    pub fn destroy(&mut self, key: u32) -> Result<(), VaultClientError> {
        self.request(Op::Destroy, key, |_| {}).map(|_| ())
    }

    /// The caller's keys.
    pub fn list(&mut self) -> Result<Vec<KeyEntry>, VaultClientError> {
        let r = self.request(Op::List, 0, |_| {})?;
        let count = u32_at(&r, 0)? as usize;
        let mut at = 4;
        let mut keys = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            let name_len = usize::from(*r.get(at + 8).ok_or(VaultClientError::MalformedResponse)?);
            let name = r
                .get(at + 9..at + 9 + name_len)
                .ok_or(VaultClientError::MalformedResponse)?;
            keys.push(KeyEntry {
                id: u32_at(&r, at)?,
                kind: u16_at(&r, at + 4)?,
                usage: u16_at(&r, at + 6)?,
                name: String::from_utf8_lossy(name).into_owned(),
            });
            at += 9 + name_len;
        }
        Ok(keys)
    }

    /// The vault's transport public key.
    pub fn transport_key(&mut self) -> Result<Vec<u8>, VaultClientError> {
        self.request(Op::TransportKey, 0, |_| {})
    }

    /// Measures `data` into `pcr` (SHA-256 and SHA-384 banks) and appends it to the event log.
    pub fn measure(
        &mut self,
        pcr: u32,
        event_type: u32,
        data: &[u8],
    ) -> Result<(), VaultClientError> {
        self.request(Op::Measure, 0, |w| {
            w.u32(pcr).u32(event_type).bytes(data);
        })
        .map(|_| ())
    }

    /// Reads the whole event log (in as many calls as its size needs).
    pub fn read_event_log(&mut self) -> Result<Vec<u8>, VaultClientError> {
        let mut log = Vec::new();
        loop {
            let offset =
                u32::try_from(log.len()).map_err(|_| VaultClientError::MalformedResponse)?;
            let chunk = self.request(Op::ReadEventLog, 0, |w| {
                w.u32(offset);
            })?;
            if chunk.is_empty() {
                return Ok(log);
            }
            log.extend_from_slice(&chunk);
        }
    }

    /// Registers the SHA-384 digest of extra evidence (e.g. a GPU report, kind 1) so the next
    /// vTPM manifest version 1 binds it to the same nonce.
    pub fn add_evidence(&mut self, kind: u16, digest: &[u8; 48]) -> Result<(), VaultClientError> {
        self.request(Op::AddEvidence, 0, |w| {
            w.u16(kind).bytes(digest);
        })
        .map(|_| ())
    }
}
