//! The token: one vault connection, its sessions, object searches and operations, all in safe
//! Rust. The FFI layer turns C pointers into the slices and values these methods take, and
//! their results back.
//!
//! What the token trusts: the vault's answers are bounds-checked by the vault client; every
//! value an application passes (templates, mechanisms, lengths) is checked here before it
//! becomes a vault request. Nothing secret passes through: the vault never answers with
//! private or secret key bytes, and sensitive attributes read as CKR_ATTRIBUTE_SENSITIVE.

use crate::error::Error;
use crate::mechanism::Mechanism;
use crate::objects::{self, attribute, objects_of, Class, Curve, KeyInfo, ObjectId};
use cryptoki_sys as ck;
use guest_driver::transport::SvsmTransport;
use guest_driver::vault::VaultClient;
use sha2::Digest;
use std::collections::{BTreeMap, VecDeque};
use svsm_abi::vault::{valid_key_name, KeyKind, Usage, MAX_DATA, TAG_LEN};
use zeroize::Zeroizing;

/// One attribute of an application's template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// CKA_*.
    pub kind: ck::CK_ATTRIBUTE_TYPE,
    /// Its value bytes.
    pub value: Vec<u8>,
}

/// An application's template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template(pub Vec<Attr>);

impl Template {
    fn get(&self, kind: ck::CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_slice())
    }

    fn flag(&self, kind: ck::CK_ATTRIBUTE_TYPE) -> Result<Option<bool>, Error> {
        match self.get(kind) {
            None => Ok(None),
            Some([v]) => Ok(Some(*v != ck::CK_FALSE)),
            Some(_) => Err(Error::AttributeValueInvalid),
        }
    }

    fn ulong(&self, kind: ck::CK_ATTRIBUTE_TYPE) -> Result<Option<u64>, Error> {
        match self.get(kind) {
            None => Ok(None),
            Some(v) => Ok(Some(u64::from_ne_bytes(
                v.try_into().map_err(|_| Error::AttributeValueInvalid)?,
            ))),
        }
    }

    /// The name CKA_LABEL asks for (empty: none). The vault's names are 1..=64 printable
    /// ASCII bytes without spaces.
    fn label(&self) -> Result<Vec<u8>, Error> {
        match self.get(ck::CKA_LABEL) {
            None | Some([]) => Ok(Vec::new()),
            Some(l) if valid_key_name(l) => Ok(l.to_vec()),
            Some(_) => Err(Error::AttributeValueInvalid),
        }
    }
}

/// Attributes a template may set at creation rather than match: the name, token or session
/// object, and the inputs of key generation. CKA_PRIVATE is taken either way: applications
/// ask for private keys behind a login, and this token has no login (objects read back
/// CKA_PRIVATE false; docs/pkcs11.md).
const CREATION_INPUTS: &[ck::CK_ATTRIBUTE_TYPE] = &[
    ck::CKA_LABEL,
    ck::CKA_TOKEN,
    ck::CKA_PRIVATE,
    ck::CKA_EC_PARAMS,
    ck::CKA_VALUE_LEN,
];

/// Checks a creation template against the object it would make: every attribute it names must
/// be one the object has, with the value it will have. So a template asking for an extractable
/// key, a wrapping key, or a key that both signs and agrees keys fails instead of being quietly
/// given something else.
fn check_template(id: ObjectId, info: &KeyInfo, template: &Template) -> Result<(), Error> {
    for a in &template.0 {
        if CREATION_INPUTS.contains(&a.kind) {
            continue;
        }
        if a.kind == ck::CKA_ID {
            // The vault assigns key ids, and CKA_ID is the id.
            return Err(Error::AttributeReadOnly);
        }
        let mut no_point = || Err(Error::TemplateInconsistent);
        match attribute(id, info, a.kind, &mut no_point) {
            Ok(v) if v == a.value => {}
            // A boolean given as any non-zero byte means TRUE.
            Ok(v) if v.len() == 1 && a.value.len() == 1 && (v[0] != 0) == (a.value[0] != 0) => {}
            Ok(_) | Err(Error::AttributeSensitive) => return Err(Error::TemplateInconsistent),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A running signature or MAC.
enum SignOp {
    /// CKM_ECDSA: the data is the digest.
    Ecdsa {
        key: u32,
        curve: Curve,
        data: Vec<u8>,
    },
    /// CKM_ECDSA_SHA256 / SHA384: hashed here, the digest signed in the vault.
    EcdsaHash {
        key: u32,
        curve: Curve,
        hash: Box<Hash>,
    },
    /// CKM_SHA256_HMAC / SHA384_HMAC: the data goes to the vault.
    Hmac {
        key: u32,
        len: usize,
        data: Zeroizing<Vec<u8>>,
    },
}

#[derive(Clone)]
enum Hash {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
}

impl Hash {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hash::Sha256(h) => h.update(data),
            Hash::Sha384(h) => h.update(data),
        }
    }
    fn finish(self) -> Vec<u8> {
        match self {
            Hash::Sha256(h) => h.finalize().to_vec(),
            Hash::Sha384(h) => h.finalize().to_vec(),
        }
    }
}

/// A running AES-GCM encryption or decryption: GCM authenticates the whole message, so the
/// parts are gathered and the vault sees it once.
struct GcmOp {
    key: u32,
    iv: [u8; svsm_abi::vault::IV_LEN],
    aad: Vec<u8>,
    data: Zeroizing<Vec<u8>>,
}

/// A session.
#[derive(Default)]
struct Session {
    read_write: bool,
    find: Option<VecDeque<ck::CK_OBJECT_HANDLE>>,
    sign: Option<SignOp>,
    verify: Option<SignOp>,
    encrypt: Option<GcmOp>,
    decrypt: Option<GcmOp>,
    /// Session objects (CKA_TOKEN false) it made: destroyed when it closes.
    objects: Vec<u32>,
}

/// The ECDSA digest as the vault signs it: the leftmost order-length bytes of a longer input,
/// a shorter one left-padded with zeros (the same integer, as ECDSA's bits2field reads it).
fn ecdsa_digest(curve: Curve, data: &[u8]) -> Vec<u8> {
    let n = curve.order_len();
    match data.get(..n) {
        Some(head) => head.to_vec(),
        None => {
            let mut d = vec![0u8; n - data.len()];
            d.extend_from_slice(data);
            d
        }
    }
}

/// Verifies r || s over `digest` with a SEC1 public key.
fn verify_ecdsa(curve: Curve, point: &[u8], digest: &[u8], sig: &[u8]) -> Result<(), Error> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    if sig.len() != 2 * curve.order_len() {
        return Err(Error::SignatureLenRange);
    }
    let ok = match curve {
        Curve::P256 => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| Error::DeviceError)?;
            p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
        Curve::P384 => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| Error::DeviceError)?;
            p384::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| vk.verify_prehash(digest, &s).is_ok())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::SignatureInvalid)
    }
}

/// The token over one vault transport.
pub struct Token<T: SvsmTransport> {
    vault: VaultClient<T>,
    description: String,
    sessions: BTreeMap<ck::CK_SESSION_HANDLE, Session>,
    next_session: ck::CK_SESSION_HANDLE,
    keys: BTreeMap<u32, KeyInfo>,
    points: BTreeMap<u32, Vec<u8>>,
}

impl<T: SvsmTransport> Token<T> {
    /// A token over `vault`; `description` says how it is reached (the slot description).
    pub fn new(vault: VaultClient<T>, description: String) -> Self {
        Token {
            vault,
            description,
            sessions: BTreeMap::new(),
            next_session: 1,
            keys: BTreeMap::new(),
            points: BTreeMap::new(),
        }
    }

    /// How the vault is reached.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Open sessions: all, and read-write ones.
    pub fn session_counts(&self) -> (usize, usize) {
        (
            self.sessions.len(),
            self.sessions.values().filter(|s| s.read_write).count(),
        )
    }

    // --- sessions -----------------------------------------------------------------------------

    /// C_OpenSession.
    pub fn open_session(&mut self, flags: ck::CK_FLAGS) -> Result<ck::CK_SESSION_HANDLE, Error> {
        if flags & ck::CKF_SERIAL_SESSION == 0 {
            return Err(Error::SessionParallelNotSupported);
        }
        let handle = self.next_session;
        self.next_session = self
            .next_session
            .checked_add(1)
            .ok_or(Error::GeneralError)?;
        self.sessions.insert(
            handle,
            Session {
                read_write: flags & ck::CKF_RW_SESSION != 0,
                ..Session::default()
            },
        );
        Ok(handle)
    }

    /// C_CloseSession: its session objects are destroyed.
    pub fn close_session(&mut self, handle: ck::CK_SESSION_HANDLE) -> Result<(), Error> {
        let session = self
            .sessions
            .remove(&handle)
            .ok_or(Error::SessionHandleInvalid)?;
        let mut result = Ok(());
        for key in session.objects {
            self.keys.remove(&key);
            self.points.remove(&key);
            if let Err(e) = self.vault.destroy(key) {
                result = Err(Error::from(e));
            }
        }
        result
    }

    /// C_CloseAllSessions (and C_Finalize).
    pub fn close_all(&mut self) -> Result<(), Error> {
        let handles: Vec<_> = self.sessions.keys().copied().collect();
        let mut result = Ok(());
        for h in handles {
            if let Err(e) = self.close_session(h) {
                result = Err(e);
            }
        }
        result
    }

    /// C_GetSessionInfo: (state, flags). There is no login, so sessions are public ones.
    pub fn session_info(
        &self,
        handle: ck::CK_SESSION_HANDLE,
    ) -> Result<(ck::CK_STATE, ck::CK_FLAGS), Error> {
        let s = self
            .sessions
            .get(&handle)
            .ok_or(Error::SessionHandleInvalid)?;
        Ok(if s.read_write {
            (
                ck::CKS_RW_PUBLIC_SESSION,
                ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION,
            )
        } else {
            (ck::CKS_RO_PUBLIC_SESSION, ck::CKF_SERIAL_SESSION)
        })
    }

    fn session(&mut self, handle: ck::CK_SESSION_HANDLE) -> Result<&mut Session, Error> {
        self.sessions
            .get_mut(&handle)
            .ok_or(Error::SessionHandleInvalid)
    }

    // --- keys and objects ---------------------------------------------------------------------

    /// Reloads the key list from the vault (session objects keep their flag).
    fn refresh(&mut self) -> Result<(), Error> {
        let listed = self.vault.list()?;
        let session_keys: Vec<u32> = self
            .sessions
            .values()
            .flat_map(|s| s.objects.iter().copied())
            .collect();
        self.keys = listed
            .into_iter()
            .filter_map(|k| {
                Some((
                    k.id,
                    KeyInfo {
                        kind: KeyKind::from_u16(k.kind)?,
                        usage: Usage::from_bits(k.usage)?,
                        name: k.name,
                        session_object: session_keys.contains(&k.id),
                    },
                ))
            })
            .collect();
        Ok(())
    }

    /// What the token knows of `key`, from the last listing or a new one.
    fn info(&mut self, key: u32) -> Result<KeyInfo, Error> {
        if !self.keys.contains_key(&key) {
            self.refresh()?;
        }
        self.keys
            .get(&key)
            .cloned()
            .ok_or(Error::ObjectHandleInvalid)
    }

    /// The object a handle names, if its key exists and shows that object.
    fn object(&mut self, handle: ck::CK_OBJECT_HANDLE) -> Result<(ObjectId, KeyInfo), Error> {
        let id = ObjectId::from_handle(handle)?;
        let info = self.info(id.key)?;
        if !objects_of(info.kind).contains(&id.class) {
            return Err(Error::ObjectHandleInvalid);
        }
        Ok((id, info))
    }

    /// The key an operation uses: an object of `class`, else CKR_KEY_HANDLE_INVALID.
    fn key_object(
        &mut self,
        handle: ck::CK_OBJECT_HANDLE,
        class: Class,
    ) -> Result<(u32, KeyInfo), Error> {
        match self.object(handle) {
            Ok((id, info)) if id.class == class => Ok((id.key, info)),
            Ok(_) => Err(Error::KeyTypeInconsistent),
            Err(_) => Err(Error::KeyHandleInvalid),
        }
    }

    /// A key's public point (SEC1 uncompressed), asked of the vault once.
    fn point(&mut self, key: u32) -> Result<Vec<u8>, Error> {
        if let Some(p) = self.points.get(&key) {
            return Ok(p.clone());
        }
        let p = self.vault.export_public(key)?;
        self.points.insert(key, p.clone());
        Ok(p)
    }

    /// C_GetAttributeValue for one attribute.
    pub fn attribute(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        handle: ck::CK_OBJECT_HANDLE,
        kind: ck::CK_ATTRIBUTE_TYPE,
    ) -> Result<Vec<u8>, Error> {
        self.session(session)?;
        let (id, info) = self.object(handle)?;
        let mut fetch = || self.point(id.key);
        objects::attribute(id, &info, kind, &mut fetch)
    }

    /// Checks a handle before its attributes are read one by one.
    pub fn check_object(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        handle: ck::CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        self.session(session)?;
        self.object(handle).map(|_| ())
    }

    /// C_FindObjectsInit.
    pub fn find_init(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        template: &Template,
    ) -> Result<(), Error> {
        if self.session(session)?.find.is_some() {
            return Err(Error::OperationActive);
        }
        self.refresh()?;
        let keys: Vec<(u32, KeyInfo)> = self.keys.iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut found = VecDeque::new();
        for (key, info) in keys {
            for &class in objects_of(info.kind) {
                let id = ObjectId { key, class };
                let mut matches = true;
                for a in &template.0 {
                    let mut fetch = || self.point(key);
                    match objects::attribute(id, &info, a.kind, &mut fetch) {
                        Ok(v) if v == a.value => {}
                        _ => {
                            matches = false;
                            break;
                        }
                    }
                }
                if matches {
                    found.push_back(id.handle());
                }
            }
        }
        self.session(session)?.find = Some(found);
        Ok(())
    }

    /// C_FindObjects: up to `max` more handles.
    pub fn find(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<ck::CK_OBJECT_HANDLE>, Error> {
        let found = self
            .session(session)?
            .find
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        let n = max.min(found.len());
        Ok(found.drain(..n).collect())
    }

    /// C_FindObjectsFinal.
    pub fn find_final(&mut self, session: ck::CK_SESSION_HANDLE) -> Result<(), Error> {
        self.session(session)?
            .find
            .take()
            .map(|_| ())
            .ok_or(Error::OperationNotInitialized)
    }

    /// C_DestroyObject: a private or secret key (an EC key's public half goes with it).
    pub fn destroy(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        handle: ck::CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        let read_write = self.session(session)?.read_write;
        let (id, info) = self.object(handle)?;
        if id.class == Class::Public {
            return Err(Error::ActionProhibited);
        }
        if !info.session_object && !read_write {
            return Err(Error::SessionReadOnly);
        }
        self.vault.destroy(id.key)?;
        self.keys.remove(&id.key);
        self.points.remove(&id.key);
        for s in self.sessions.values_mut() {
            s.objects.retain(|k| *k != id.key);
        }
        Ok(())
    }

    /// Records a new key made in `session`.
    fn made(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        key: u32,
        info: KeyInfo,
    ) -> Result<(), Error> {
        if info.session_object {
            self.session(session)?.objects.push(key);
        }
        self.keys.insert(key, info);
        Ok(())
    }

    /// Whether a creation template makes a token object, and whether the session may.
    fn token_object(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        templates: &[&Template],
    ) -> Result<bool, Error> {
        let mut token = false;
        for t in templates {
            token |= t.flag(ck::CKA_TOKEN)?.unwrap_or(false);
        }
        if token && !self.session(session)?.read_write {
            return Err(Error::SessionReadOnly);
        }
        Ok(token)
    }

    // --- key generation -----------------------------------------------------------------------

    /// C_GenerateKeyPair: an EC key pair, for signing or for key agreement (the vault keeps
    /// those apart: a template asking for both is inconsistent). Returns (public, private).
    pub fn generate_key_pair(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        public: &Template,
        private: &Template,
    ) -> Result<(ck::CK_OBJECT_HANDLE, ck::CK_OBJECT_HANDLE), Error> {
        if *mechanism != Mechanism::EcKeyPairGen {
            return Err(Error::MechanismInvalid);
        }
        let token = self.token_object(session, &[public, private])?;
        let params = match (
            public.get(ck::CKA_EC_PARAMS),
            private.get(ck::CKA_EC_PARAMS),
        ) {
            (Some(a), Some(b)) if a != b => return Err(Error::TemplateInconsistent),
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => return Err(Error::TemplateIncomplete),
        };
        let curve = Curve::from_params(params)?;
        let sign = private.flag(ck::CKA_SIGN)?.unwrap_or(false)
            || public.flag(ck::CKA_VERIFY)?.unwrap_or(false);
        let derive = private.flag(ck::CKA_DERIVE)?.unwrap_or(false)
            || public.flag(ck::CKA_DERIVE)?.unwrap_or(false);
        if sign && derive {
            return Err(Error::TemplateInconsistent);
        }
        let kind = curve.kind(derive);
        let usage = if derive {
            Usage::DERIVE
        } else {
            Usage::SIGN | Usage::VERIFY
        };
        let name = match (private.label()?, public.label()?) {
            (a, b) if b.is_empty() || a == b => a,
            (a, _) if a.is_empty() => public.label()?,
            _ => return Err(Error::TemplateInconsistent),
        };
        let info = KeyInfo {
            kind,
            usage,
            name: String::from_utf8(name.clone()).map_err(|_| Error::AttributeValueInvalid)?,
            session_object: !token,
        };
        check_template(
            ObjectId {
                key: 0,
                class: Class::Public,
            },
            &info,
            public,
        )?;
        check_template(
            ObjectId {
                key: 0,
                class: Class::Private,
            },
            &info,
            private,
        )?;
        let created = self.vault.create_named_key(kind, usage, &name)?;
        self.points.insert(created.id, created.public);
        self.made(session, created.id, info)?;
        Ok((
            ObjectId {
                key: created.id,
                class: Class::Public,
            }
            .handle(),
            ObjectId {
                key: created.id,
                class: Class::Private,
            }
            .handle(),
        ))
    }

    /// The kind and usage a secret-key template asks for, with `mechanism` the generation or
    /// derivation that makes it.
    fn secret_kind(template: &Template, aes: bool) -> Result<(KeyKind, Usage), Error> {
        let key_type = template.ulong(ck::CKA_KEY_TYPE)?;
        let len = template.ulong(ck::CKA_VALUE_LEN)?;
        let kind = match (key_type, aes, len) {
            (Some(ck::CKK_AES) | None, true, Some(32) | None) => KeyKind::Aes256Gcm,
            (Some(ck::CKK_AES), false, Some(32) | None) => KeyKind::Aes256Gcm,
            (Some(ck::CKK_GENERIC_SECRET) | None, false, Some(32) | None) => KeyKind::HmacSha256,
            (Some(ck::CKK_GENERIC_SECRET) | None, false, Some(48)) => KeyKind::HmacSha384,
            (Some(ck::CKK_AES | ck::CKK_GENERIC_SECRET) | None, _, Some(_)) => {
                return Err(Error::AttributeValueInvalid)
            }
            _ => return Err(Error::TemplateInconsistent),
        };
        let usage = if kind == KeyKind::Aes256Gcm {
            let mut u = Usage::empty();
            u.set(
                Usage::ENCRYPT,
                template.flag(ck::CKA_ENCRYPT)?.unwrap_or(true),
            );
            u.set(
                Usage::DECRYPT,
                template.flag(ck::CKA_DECRYPT)?.unwrap_or(true),
            );
            u
        } else {
            let mut u = Usage::empty();
            u.set(Usage::MAC, template.flag(ck::CKA_SIGN)?.unwrap_or(true));
            u.set(
                Usage::VERIFY,
                template.flag(ck::CKA_VERIFY)?.unwrap_or(true),
            );
            u
        };
        if usage.is_empty() {
            return Err(Error::TemplateInconsistent);
        }
        Ok((kind, usage))
    }

    /// C_GenerateKey: an AES-256 key, or an HMAC key of 32 or 48 bytes.
    pub fn generate_key(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        template: &Template,
    ) -> Result<ck::CK_OBJECT_HANDLE, Error> {
        let aes = match mechanism {
            Mechanism::AesKeyGen => true,
            Mechanism::GenericSecretKeyGen => false,
            _ => return Err(Error::MechanismInvalid),
        };
        let token = self.token_object(session, &[template])?;
        let (kind, usage) = Self::secret_kind(template, aes)?;
        if !aes && kind == KeyKind::Aes256Gcm {
            return Err(Error::TemplateInconsistent);
        }
        let name = template.label()?;
        let info = KeyInfo {
            kind,
            usage,
            name: String::from_utf8(name.clone()).map_err(|_| Error::AttributeValueInvalid)?,
            session_object: !token,
        };
        let id = ObjectId {
            key: 0,
            class: Class::Secret,
        };
        check_template(id, &info, template)?;
        let created = self.vault.create_named_key(kind, usage, &name)?;
        self.made(session, created.id, info)?;
        Ok(ObjectId {
            key: created.id,
            ..id
        }
        .handle())
    }

    /// C_DeriveKey: CKM_ECDH1_DERIVE with CKD_NULL into an AES or HMAC key that stays in the
    /// vault.
    pub fn derive_key(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        base: ck::CK_OBJECT_HANDLE,
        template: &Template,
    ) -> Result<ck::CK_OBJECT_HANDLE, Error> {
        let Mechanism::Ecdh1Derive { public } = mechanism else {
            return Err(Error::MechanismInvalid);
        };
        let (base, base_info) = self.key_object(base, Class::Private)?;
        if !base_info.usage.contains(Usage::DERIVE) {
            return Err(Error::KeyFunctionNotPermitted);
        }
        let token = self.token_object(session, &[template])?;
        let (kind, usage) = Self::secret_kind(template, false)?;
        let name = template.label()?;
        let info = KeyInfo {
            kind,
            usage,
            name: String::from_utf8(name.clone()).map_err(|_| Error::AttributeValueInvalid)?,
            session_object: !token,
        };
        let id = ObjectId {
            key: 0,
            class: Class::Secret,
        };
        check_template(id, &info, template)?;
        let peer = objects::ec_point_raw(public);
        let key = self.vault.derive_raw(base, kind, usage, peer, &name)?;
        self.made(session, key, info)?;
        Ok(ObjectId { key, ..id }.handle())
    }

    // --- signatures and MACs ------------------------------------------------------------------

    fn start_sign(
        &mut self,
        mechanism: &Mechanism,
        handle: ck::CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<SignOp, Error> {
        let op = match mechanism {
            Mechanism::Ecdsa | Mechanism::EcdsaSha256 | Mechanism::EcdsaSha384 => {
                let class = if verify {
                    Class::Public
                } else {
                    Class::Private
                };
                let (key, info) = self.key_object(handle, class)?;
                let curve = Curve::of(info.kind).ok_or(Error::KeyTypeInconsistent)?;
                if !info.usage.contains(Usage::SIGN) {
                    return Err(Error::KeyFunctionNotPermitted);
                }
                match mechanism {
                    Mechanism::EcdsaSha256 => SignOp::EcdsaHash {
                        key,
                        curve,
                        hash: Box::new(Hash::Sha256(sha2::Sha256::new())),
                    },
                    Mechanism::EcdsaSha384 => SignOp::EcdsaHash {
                        key,
                        curve,
                        hash: Box::new(Hash::Sha384(sha2::Sha384::new())),
                    },
                    _ => SignOp::Ecdsa {
                        key,
                        curve,
                        data: Vec::new(),
                    },
                }
            }
            Mechanism::Sha256Hmac | Mechanism::Sha384Hmac => {
                let (key, info) = self.key_object(handle, Class::Secret)?;
                let want = if *mechanism == Mechanism::Sha256Hmac {
                    KeyKind::HmacSha256
                } else {
                    KeyKind::HmacSha384
                };
                if info.kind != want {
                    return Err(Error::KeyTypeInconsistent);
                }
                let need = if verify { Usage::VERIFY } else { Usage::MAC };
                if !info.usage.contains(need) {
                    return Err(Error::KeyFunctionNotPermitted);
                }
                SignOp::Hmac {
                    key,
                    len: want.secret_len(),
                    data: Zeroizing::new(Vec::new()),
                }
            }
            _ => return Err(Error::MechanismInvalid),
        };
        Ok(op)
    }

    /// C_SignInit.
    pub fn sign_init(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        key: ck::CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        if self.session(session)?.sign.is_some() {
            return Err(Error::OperationActive);
        }
        let op = self.start_sign(mechanism, key, false)?;
        self.session(session)?.sign = Some(op);
        Ok(())
    }

    /// The length of the active signature.
    pub fn sign_len(&mut self, session: ck::CK_SESSION_HANDLE) -> Result<usize, Error> {
        Ok(
            match self
                .session(session)?
                .sign
                .as_ref()
                .ok_or(Error::OperationNotInitialized)?
            {
                SignOp::Ecdsa { curve, .. } | SignOp::EcdsaHash { curve, .. } => {
                    2 * curve.order_len()
                }
                SignOp::Hmac { len, .. } => *len,
            },
        )
    }

    /// C_SignUpdate (and the update half of C_VerifyUpdate).
    fn update(op: &mut SignOp, data: &[u8]) -> Result<(), Error> {
        match op {
            SignOp::Ecdsa { data: d, .. } => {
                // A digest, not a message: nothing longer than SHA-512 makes sense.
                if d.len() + data.len() > svsm_abi::vault::MAX_DIGEST * 16 {
                    return Err(Error::DataLenRange);
                }
                d.extend_from_slice(data);
            }
            SignOp::EcdsaHash { hash, .. } => hash.update(data),
            SignOp::Hmac { data: d, .. } => {
                if d.len() + data.len() > MAX_DATA {
                    return Err(Error::DataLenRange);
                }
                d.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// C_SignUpdate.
    pub fn sign_update(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<(), Error> {
        let s = self.session(session)?;
        let op = s.sign.as_mut().ok_or(Error::OperationNotInitialized)?;
        let r = Self::update(op, data);
        if r.is_err() {
            s.sign = None;
        }
        r
    }

    /// C_SignFinal (and C_Sign after its data): ends the operation.
    pub fn sign_final(&mut self, session: ck::CK_SESSION_HANDLE) -> Result<Vec<u8>, Error> {
        let op = self
            .session(session)?
            .sign
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        Ok(match op {
            SignOp::Ecdsa { key, curve, data } => {
                self.vault.sign_digest(key, &ecdsa_digest(curve, &data))?
            }
            SignOp::EcdsaHash { key, hash, .. } => {
                self.vault.sign_digest(key, &(*hash).finish())?
            }
            SignOp::Hmac { key, data, .. } => self.vault.mac(key, &data)?,
        })
    }

    /// C_Sign.
    pub fn sign(&mut self, session: ck::CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_update(session, data)?;
        self.sign_final(session)
    }

    /// C_VerifyInit.
    pub fn verify_init(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        key: ck::CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        if self.session(session)?.verify.is_some() {
            return Err(Error::OperationActive);
        }
        let op = self.start_sign(mechanism, key, true)?;
        self.session(session)?.verify = Some(op);
        Ok(())
    }

    /// C_VerifyUpdate.
    pub fn verify_update(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<(), Error> {
        let s = self.session(session)?;
        let op = s.verify.as_mut().ok_or(Error::OperationNotInitialized)?;
        let r = Self::update(op, data);
        if r.is_err() {
            s.verify = None;
        }
        r
    }

    /// C_VerifyFinal: ECDSA is checked here with the public key; HMAC in the vault.
    pub fn verify_final(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        signature: &[u8],
    ) -> Result<(), Error> {
        let op = self
            .session(session)?
            .verify
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        match op {
            SignOp::Ecdsa { key, curve, data } => {
                let point = self.point(key)?;
                verify_ecdsa(curve, &point, &ecdsa_digest(curve, &data), signature)
            }
            SignOp::EcdsaHash { key, curve, hash } => {
                let point = self.point(key)?;
                verify_ecdsa(curve, &point, &(*hash).finish(), signature)
            }
            SignOp::Hmac { key, len, data } => {
                if signature.len() != len {
                    return Err(Error::SignatureLenRange);
                }
                if self.vault.verify(key, signature, &data)? {
                    Ok(())
                } else {
                    Err(Error::SignatureInvalid)
                }
            }
        }
    }

    /// C_Verify.
    pub fn verify(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        self.verify_update(session, data)?;
        self.verify_final(session, signature)
    }

    // --- AES-GCM ------------------------------------------------------------------------------

    fn start_gcm(
        &mut self,
        mechanism: &Mechanism,
        handle: ck::CK_OBJECT_HANDLE,
        need: Usage,
    ) -> Result<GcmOp, Error> {
        let Mechanism::AesGcm { iv, aad } = mechanism else {
            return Err(Error::MechanismInvalid);
        };
        let (key, info) = self.key_object(handle, Class::Secret)?;
        if info.kind != KeyKind::Aes256Gcm {
            return Err(Error::KeyTypeInconsistent);
        }
        if !info.usage.contains(need) {
            return Err(Error::KeyFunctionNotPermitted);
        }
        if aad.len() > svsm_abi::vault::MAX_FIELD {
            return Err(Error::MechanismParamInvalid);
        }
        Ok(GcmOp {
            key,
            iv: *iv,
            aad: aad.clone(),
            data: Zeroizing::new(Vec::new()),
        })
    }

    /// C_EncryptInit.
    pub fn encrypt_init(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        key: ck::CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        if self.session(session)?.encrypt.is_some() {
            return Err(Error::OperationActive);
        }
        let op = self.start_gcm(mechanism, key, Usage::ENCRYPT)?;
        self.session(session)?.encrypt = Some(op);
        Ok(())
    }

    /// The ciphertext length of the active encryption once `more` bytes are added.
    pub fn encrypt_len(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        more: usize,
    ) -> Result<usize, Error> {
        let op = self
            .session(session)?
            .encrypt
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?;
        Ok(op.data.len() + more + TAG_LEN)
    }

    fn gather(slot: &mut Option<GcmOp>, data: &[u8], limit: usize) -> Result<(), Error> {
        let op = slot.as_mut().ok_or(Error::OperationNotInitialized)?;
        if op.data.len() + data.len() > limit {
            *slot = None;
            return Err(Error::DataLenRange);
        }
        op.data.extend_from_slice(data);
        Ok(())
    }

    /// C_EncryptUpdate: gathers the part (GCM output comes at the end).
    pub fn encrypt_update(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<(), Error> {
        Self::gather(&mut self.session(session)?.encrypt, data, MAX_DATA)
    }

    /// C_EncryptFinal (and C_Encrypt): ciphertext || tag.
    pub fn encrypt_final(&mut self, session: ck::CK_SESSION_HANDLE) -> Result<Vec<u8>, Error> {
        let op = self
            .session(session)?
            .encrypt
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        Ok(self
            .vault
            .encrypt_with_iv(op.key, &op.iv, &op.aad, &op.data)?)
    }

    /// C_Encrypt.
    pub fn encrypt(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.encrypt_update(session, data)?;
        self.encrypt_final(session)
    }

    /// C_DecryptInit.
    pub fn decrypt_init(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        key: ck::CK_OBJECT_HANDLE,
    ) -> Result<(), Error> {
        if self.session(session)?.decrypt.is_some() {
            return Err(Error::OperationActive);
        }
        let op = self.start_gcm(mechanism, key, Usage::DECRYPT)?;
        self.session(session)?.decrypt = Some(op);
        Ok(())
    }

    /// The plaintext length of the active decryption once `more` bytes are added.
    pub fn decrypt_len(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        more: usize,
    ) -> Result<usize, Error> {
        let op = self
            .session(session)?
            .decrypt
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?;
        (op.data.len() + more)
            .checked_sub(TAG_LEN)
            .ok_or(Error::EncryptedDataLenRange)
    }

    /// C_DecryptUpdate: gathers the part (GCM releases plaintext only once the tag checks).
    pub fn decrypt_update(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<(), Error> {
        Self::gather(
            &mut self.session(session)?.decrypt,
            data,
            MAX_DATA + TAG_LEN,
        )
    }

    /// C_DecryptFinal (and C_Decrypt).
    pub fn decrypt_final(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let op = self
            .session(session)?
            .decrypt
            .take()
            .ok_or(Error::OperationNotInitialized)?;
        if op.data.len() < TAG_LEN {
            return Err(Error::EncryptedDataLenRange);
        }
        let mut sealed = Zeroizing::new(op.iv.to_vec());
        sealed.extend_from_slice(&op.data);
        Ok(Zeroizing::new(
            self.vault.decrypt(op.key, &op.aad, &sealed)?,
        ))
    }

    /// C_Decrypt.
    pub fn decrypt(
        &mut self,
        session: ck::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.decrypt_update(session, data)?;
        self.decrypt_final(session)
    }

    // --- random -------------------------------------------------------------------------------

    /// C_GenerateRandom: from the vault's entropy source.
    pub fn random(&mut self, session: ck::CK_SESSION_HANDLE, out: &mut [u8]) -> Result<(), Error> {
        self.session(session)?;
        Ok(self.vault.random(out)?)
    }
}
