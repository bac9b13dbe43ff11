#![allow(non_snake_case, clippy::too_many_arguments)]

//! The C entry points (PKCS#11 2.40's function list). Each one turns the application's
//! pointers into checked slices and values, takes the module lock, calls the token, and turns
//! the result into a `CK_RV`. No panic crosses this boundary: every entry point runs under
//! `catch_unwind` and answers CKR_GENERAL_ERROR if one happens.

use crate::config::Endpoint;
use crate::error::Error;
use crate::mechanism::{self, Ecdh1Params, GcmParams, Mechanism, Params, MECHANISMS};
use crate::token::{Attr, Template, Token};
use cryptoki_sys as ck;
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_BBOOL, CK_BYTE, CK_FLAGS, CK_MECHANISM, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE,
    CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG,
};
use guest_driver::channel::VaultTransport;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

/// The one slot.
pub const SLOT_ID: CK_SLOT_ID = 0;

/// The token, once `C_Initialize` opened the vault. One lock serializes every call, which is
/// what makes the module safe for threads (CKF_OS_LOCKING_OK): the vault connection carries
/// one request at a time anyway.
static STATE: Mutex<Option<Token<VaultTransport>>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<Token<VaultTransport>>> {
    // A panic caught while the lock was held leaves a token whose sessions are still
    // consistent (every method updates them last): keep serving.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` with the token; the result as a CK_RV; a panic as CKR_GENERAL_ERROR.
fn run(f: impl FnOnce(&mut Token<VaultTransport>) -> Result<(), Error>) -> CK_RV {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut guard = state();
        let token = guard.as_mut().ok_or(Error::NotInitialized)?;
        f(token)
    }));
    match outcome {
        Ok(Ok(())) => ck::CKR_OK,
        Ok(Err(e)) => e.rv(),
        Err(_) => ck::CKR_GENERAL_ERROR,
    }
}

/// Like [`run`], for calls that need no token (or manage it themselves).
fn run_bare(f: impl FnOnce() -> Result<(), Error>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ck::CKR_OK,
        Ok(Err(e)) => e.rv(),
        Err(_) => ck::CKR_GENERAL_ERROR,
    }
}

fn usize_of(n: CK_ULONG) -> Result<usize, Error> {
    usize::try_from(n).map_err(|_| Error::ArgumentsBad)
}

fn ulong_of(n: usize) -> CK_ULONG {
    CK_ULONG::try_from(n).unwrap_or(CK_ULONG::MAX)
}

/// The bytes an application passes: `len` bytes at `p` (NULL only when `len` is 0).
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes that stay valid and unchanged for `'a`.
unsafe fn input<'a>(p: *const CK_BYTE, len: CK_ULONG) -> Result<&'a [u8], Error> {
    let len = usize_of(len)?;
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-NULL, and the caller guarantees `len` readable bytes for 'a (the PKCS#11
    // contract for every (pointer, length) argument).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A writable out-parameter.
///
/// # Safety
/// `p` must be NULL or point to a writable, aligned `T`.
unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees a valid, aligned `T` when non-NULL; as_mut checks NULL.
    unsafe { p.as_mut() }.ok_or(Error::ArgumentsBad)
}

/// The PKCS#11 output convention: NULL buffer → report the length needed; too small → report
/// it and CKR_BUFFER_TOO_SMALL (the operation stays active); else `produce` the output.
///
/// # Safety
/// `buf` must be NULL or point to `*len` writable bytes; `len` must be a valid out-parameter.
unsafe fn output<V: AsRef<[u8]>>(
    buf: *mut CK_BYTE,
    len: *mut CK_ULONG,
    needed: usize,
    produce: impl FnOnce() -> Result<V, Error>,
) -> Result<(), Error> {
    // SAFETY: forwarded caller guarantee.
    let len = unsafe { out(len) }?;
    if buf.is_null() {
        *len = ulong_of(needed);
        return Ok(());
    }
    if usize_of(*len)? < needed {
        *len = ulong_of(needed);
        return Err(Error::BufferTooSmall);
    }
    let value = produce()?;
    let value = value.as_ref();
    if value.len() > usize_of(*len)? {
        return Err(Error::GeneralError);
    }
    // SAFETY: `buf` is non-NULL with at least `*len >= value.len()` writable bytes (caller
    // guarantee), and cannot overlap `value`, which this module allocated.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), buf, value.len()) };
    *len = ulong_of(value.len());
    Ok(())
}

/// An application's template, copied.
///
/// # Safety
/// `p` must be NULL (with `n` 0) or point to `n` `CK_ATTRIBUTE`s whose (pValue, ulValueLen)
/// are valid inputs.
unsafe fn template(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<Template, Error> {
    let n = usize_of(n)?;
    if n == 0 {
        return Ok(Template::default());
    }
    if p.is_null() || n > 4096 {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: non-NULL and the caller guarantees `n` attributes.
    let attrs = unsafe { std::slice::from_raw_parts(p, n) };
    let mut t = Vec::with_capacity(n);
    for a in attrs {
        // SAFETY: each attribute's value is a valid (pointer, length) input.
        let value = unsafe { input(a.pValue.cast::<u8>(), a.ulValueLen) }?;
        t.push(Attr {
            kind: a.type_,
            value: value.to_vec(),
        });
    }
    Ok(Template(t))
}

/// Reads a parameter structure of exactly its size.
///
/// # Safety
/// `p` must be NULL or point to `len` readable bytes.
unsafe fn param<T: Copy>(p: *const c_void, len: CK_ULONG) -> Option<T> {
    if p.is_null() || usize_of(len).ok()? != std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `len` (checked equal to size_of::<T>()) readable bytes at `p`; read_unaligned
    // makes no alignment assumption; T is a plain C struct (any bit pattern is valid).
    Some(unsafe { p.cast::<T>().read_unaligned() })
}

/// The mechanism an application names, with its parameters copied and decoded.
///
/// # Safety
/// `p` must be NULL or point to a `CK_MECHANISM` whose parameter is a valid input and, for the
/// mechanisms with pointer-carrying parameters, whose pointers are valid inputs.
unsafe fn mechanism(p: *const CK_MECHANISM) -> Result<Mechanism, Error> {
    // SAFETY: caller guarantee; as_ref checks NULL.
    let m = unsafe { p.as_ref() }.ok_or(Error::ArgumentsBad)?;
    let params = if m.pParameter.is_null() && m.ulParameterLen == 0 {
        Params::None
    } else {
        match m.mechanism {
            ck::CKM_ECDH1_DERIVE => {
                // SAFETY: the parameter is a CK_ECDH1_DERIVE_PARAMS of its stated size (checked
                // by `param`), per the caller guarantee.
                let e =
                    unsafe { param::<ck::CK_ECDH1_DERIVE_PARAMS>(m.pParameter, m.ulParameterLen) };
                match e {
                    Some(e) => {
                        // SAFETY: its data pointers are valid inputs (caller guarantee).
                        let shared = unsafe { input(e.pSharedData, e.ulSharedDataLen) }?;
                        // SAFETY: as above.
                        let public = unsafe { input(e.pPublicData, e.ulPublicDataLen) }?;
                        Params::Ecdh1(Ecdh1Params {
                            kdf: e.kdf,
                            shared_data: shared.to_vec(),
                            public: public.to_vec(),
                        })
                    }
                    None => Params::Malformed,
                }
            }
            ck::CKM_AES_GCM => {
                // SAFETY: the parameter is a CK_GCM_PARAMS of its stated size (checked by
                // `param`), per the caller guarantee.
                let g = unsafe { param::<ck::CK_GCM_PARAMS>(m.pParameter, m.ulParameterLen) };
                match g {
                    Some(g) => {
                        // SAFETY: its IV and AAD pointers are valid inputs (caller guarantee).
                        let iv = unsafe { input(g.pIv, g.ulIvLen) }?;
                        // SAFETY: as above.
                        let aad = unsafe { input(g.pAAD, g.ulAADLen) }?;
                        Params::Gcm(GcmParams {
                            iv: iv.to_vec(),
                            aad: aad.to_vec(),
                            tag_bits: g.ulTagBits,
                        })
                    }
                    None => Params::Malformed,
                }
            }
            _ => Params::Malformed,
        }
    };
    Mechanism::decode(m.mechanism, params)
}

/// Space-padded fixed-width text (PKCS#11 info strings are not NUL-terminated).
fn padded<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let mut n = 0;
    // Cut on a character boundary so the field stays UTF-8.
    for (i, c) in text.char_indices() {
        if i + c.len_utf8() > N {
            break;
        }
        n = i + c.len_utf8();
    }
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

fn check_slot(slot: CK_SLOT_ID) -> Result<(), Error> {
    if slot == SLOT_ID {
        Ok(())
    } else {
        Err(Error::SlotInvalid)
    }
}

const VERSION: ck::CK_VERSION = ck::CK_VERSION { major: 0, minor: 1 };

// --- general purpose -------------------------------------------------------------------------

/// C_Initialize: opens the vault the environment names (crate::config).
///
/// # Safety
/// `args` must be NULL or point to a `CK_C_INITIALIZE_ARGS`.
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    run_bare(|| {
        // SAFETY: caller guarantee; as_ref checks NULL.
        if let Some(a) = unsafe { args.cast::<ck::CK_C_INITIALIZE_ARGS>().as_ref() } {
            if !a.pReserved.is_null() {
                return Err(Error::ArgumentsBad);
            }
            let callbacks = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ];
            if callbacks.iter().any(|c| *c) && !callbacks.iter().all(|c| *c) {
                return Err(Error::ArgumentsBad);
            }
            // The module locks with the OS; it cannot use the application's mutexes only.
            if callbacks[0] && a.flags & ck::CKF_OS_LOCKING_OK == 0 {
                return Err(Error::CantLock);
            }
        }
        let mut guard = state();
        if guard.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        let opened = Endpoint::from_env().and_then(|e| e.open());
        match opened {
            Ok((vault, description)) => {
                *guard = Some(Token::new(vault, description));
                Ok(())
            }
            Err(e) => {
                // The one place this module writes to stderr: an application that only
                // sees CKR_DEVICE_ERROR would leave its user guessing where the vault is.
                eprintln!("svsm-vault-pkcs11: {e}");
                Err(Error::DeviceError)
            }
        }
    })
}

/// C_Finalize: session objects are destroyed and the vault connection closed.
///
/// # Safety
/// Any pointer (it must be NULL).
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    run_bare(|| {
        if !reserved.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let mut guard = state();
        let mut token = guard.take().ok_or(Error::NotInitialized)?;
        // Finalizing succeeds even if a session object could not be destroyed.
        let _ = token.close_all();
        Ok(())
    })
}

/// C_GetInfo.
///
/// # Safety
/// `info` must be NULL or point to a writable `CK_INFO`.
pub unsafe extern "C" fn C_GetInfo(info: *mut ck::CK_INFO) -> CK_RV {
    run(|_| {
        // SAFETY: caller guarantee.
        let info = unsafe { out(info) }?;
        *info = ck::CK_INFO {
            cryptokiVersion: ck::CK_VERSION {
                major: 2,
                minor: 40,
            },
            manufacturerID: padded("svsm-vhsm"),
            flags: 0,
            libraryDescription: padded("SVSM vault PKCS#11 module"),
            libraryVersion: VERSION,
        };
        Ok(())
    })
}

/// The function list.
static FUNCTIONS: ck::CK_FUNCTION_LIST = ck::CK_FUNCTION_LIST {
    version: ck::CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
};

/// C_GetFunctionList: the module's one exported symbol applications look up.
///
/// # Safety
/// `list` must be NULL or point to a writable `CK_FUNCTION_LIST_PTR`.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut ck::CK_FUNCTION_LIST) -> CK_RV {
    run_bare(|| {
        // SAFETY: caller guarantee.
        let list = unsafe { out(list) }?;
        // The list is never written through this pointer (PKCS#11 hands it out as non-const
        // for historical reasons only).
        *list = std::ptr::addr_of!(FUNCTIONS).cast_mut();
        Ok(())
    })
}

// --- slots and tokens ------------------------------------------------------------------------

/// C_GetSlotList: the one slot, which always holds the token.
///
/// # Safety
/// `list` must be NULL or point to `*count` writable slot ids; `count` a valid out-parameter.
pub unsafe extern "C" fn C_GetSlotList(
    _present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    run(|_| {
        // SAFETY: caller guarantee.
        let count = unsafe { out(count) }?;
        if !list.is_null() {
            if *count < 1 {
                *count = 1;
                return Err(Error::BufferTooSmall);
            }
            // SAFETY: non-NULL with room for at least one id.
            unsafe { *list = SLOT_ID };
        }
        *count = 1;
        Ok(())
    })
}

/// C_GetSlotInfo.
///
/// # Safety
/// `info` must be NULL or point to a writable `CK_SLOT_INFO`.
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut ck::CK_SLOT_INFO) -> CK_RV {
    run(|token| {
        check_slot(slot)?;
        // SAFETY: caller guarantee.
        let info = unsafe { out(info) }?;
        *info = ck::CK_SLOT_INFO {
            slotDescription: padded(token.description()),
            manufacturerID: padded("svsm-vhsm"),
            flags: ck::CKF_TOKEN_PRESENT | ck::CKF_HW_SLOT,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
        };
        Ok(())
    })
}

/// The token's label (what `pkcs11:token=` URIs name).
pub const TOKEN_LABEL: &str = "SVSM Vault";

/// C_GetTokenInfo. No CKF_LOGIN_REQUIRED: the vault's boundary is the VMPL, not a PIN the
/// module would check in the same process it protects against (docs/pkcs11.md).
///
/// # Safety
/// `info` must be NULL or point to a writable `CK_TOKEN_INFO`.
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut ck::CK_TOKEN_INFO) -> CK_RV {
    run(|token| {
        check_slot(slot)?;
        // SAFETY: caller guarantee.
        let info = unsafe { out(info) }?;
        let (sessions, rw) = token.session_counts();
        *info = ck::CK_TOKEN_INFO {
            label: padded(TOKEN_LABEL),
            manufacturerID: padded("svsm-vhsm"),
            model: padded("VMPL0 vault"),
            serialNumber: padded("1"),
            flags: ck::CKF_RNG | ck::CKF_TOKEN_INITIALIZED,
            ulMaxSessionCount: ck::CK_EFFECTIVELY_INFINITE,
            ulSessionCount: ulong_of(sessions),
            ulMaxRwSessionCount: ck::CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: ulong_of(rw),
            ulMaxPinLen: 0,
            ulMinPinLen: 0,
            ulTotalPublicMemory: ck::CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: ck::CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: ck::CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: ck::CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: VERSION,
            firmwareVersion: VERSION,
            utcTime: [b' '; 16],
        };
        Ok(())
    })
}

/// C_GetMechanismList.
///
/// # Safety
/// `list` must be NULL or point to `*count` writable entries; `count` a valid out-parameter.
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    run(|_| {
        check_slot(slot)?;
        // SAFETY: caller guarantee.
        let count = unsafe { out(count) }?;
        if !list.is_null() {
            if usize_of(*count)? < MECHANISMS.len() {
                *count = ulong_of(MECHANISMS.len());
                return Err(Error::BufferTooSmall);
            }
            for (i, m) in MECHANISMS.iter().enumerate() {
                // SAFETY: `list` has at least MECHANISMS.len() entries (checked above).
                unsafe { *list.add(i) = m.0 };
            }
        }
        *count = ulong_of(MECHANISMS.len());
        Ok(())
    })
}

/// C_GetMechanismInfo.
///
/// # Safety
/// `info` must be NULL or point to a writable `CK_MECHANISM_INFO`.
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    kind: CK_MECHANISM_TYPE,
    info: *mut ck::CK_MECHANISM_INFO,
) -> CK_RV {
    run(|_| {
        check_slot(slot)?;
        let (min, max, flags) = mechanism::info(kind)?;
        // SAFETY: caller guarantee.
        let info = unsafe { out(info) }?;
        *info = ck::CK_MECHANISM_INFO {
            ulMinKeySize: min,
            ulMaxKeySize: max,
            flags,
        };
        Ok(())
    })
}

/// C_InitToken: the vault is initialized by its launch, not by a PIN.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_InitToken(
    _slot: CK_SLOT_ID,
    _pin: *mut CK_BYTE,
    _len: CK_ULONG,
    _label: *mut CK_BYTE,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_InitPIN: there is no PIN.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_InitPIN(
    _session: CK_SESSION_HANDLE,
    _pin: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_SetPIN: there is no PIN.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SetPIN(
    _session: CK_SESSION_HANDLE,
    _old: *mut CK_BYTE,
    _old_len: CK_ULONG,
    _new: *mut CK_BYTE,
    _new_len: CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

// --- sessions --------------------------------------------------------------------------------

/// C_OpenSession (notifications are not used).
///
/// # Safety
/// `session` must be NULL or a writable `CK_SESSION_HANDLE`.
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: *mut c_void,
    _notify: ck::CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    run(|token| {
        check_slot(slot)?;
        // SAFETY: caller guarantee.
        let session = unsafe { out(session) }?;
        *session = token.open_session(flags)?;
        Ok(())
    })
}

/// C_CloseSession.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    run(|token| token.close_session(session))
}

/// C_CloseAllSessions.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    run(|token| {
        check_slot(slot)?;
        token.close_all()
    })
}

/// C_GetSessionInfo.
///
/// # Safety
/// `info` must be NULL or point to a writable `CK_SESSION_INFO`.
pub unsafe extern "C" fn C_GetSessionInfo(
    session: CK_SESSION_HANDLE,
    info: *mut ck::CK_SESSION_INFO,
) -> CK_RV {
    run(|token| {
        let (state, flags) = token.session_info(session)?;
        // SAFETY: caller guarantee.
        let info = unsafe { out(info) }?;
        *info = ck::CK_SESSION_INFO {
            slotID: SLOT_ID,
            state,
            flags,
            ulDeviceError: 0,
        };
        Ok(())
    })
}

/// C_GetOperationState: operations hold key handles, not state worth saving.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_GetOperationState(
    _session: CK_SESSION_HANDLE,
    _state: *mut CK_BYTE,
    _len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_SetOperationState.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SetOperationState(
    _session: CK_SESSION_HANDLE,
    _state: *mut CK_BYTE,
    _len: CK_ULONG,
    _enc: CK_OBJECT_HANDLE,
    _auth: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_Login: the token has no PIN (CKF_LOGIN_REQUIRED clear; docs/pkcs11.md says why).
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    _user: ck::CK_USER_TYPE,
    _pin: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        token.session_info(session)?;
        Err(Error::UserPinNotInitialized)
    })
}

/// C_Logout.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    run(|token| {
        token.session_info(session)?;
        Err(Error::UserNotLoggedIn)
    })
}

// --- objects ---------------------------------------------------------------------------------

/// C_CreateObject: keys reach the vault generated inside it or wrapped by a key broker for
/// this launch (`svsm-vault import`), never as plaintext through an application.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_CreateObject(
    _session: CK_SESSION_HANDLE,
    _template: *mut CK_ATTRIBUTE,
    _count: CK_ULONG,
    _object: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_CopyObject: a vault key is never copied.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_CopyObject(
    _session: CK_SESSION_HANDLE,
    _object: CK_OBJECT_HANDLE,
    _template: *mut CK_ATTRIBUTE,
    _count: CK_ULONG,
    _new: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_DestroyObject.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_DestroyObject(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| token.destroy(session, object))
}

/// C_GetObjectSize.
///
/// # Safety
/// `size` must be NULL or a writable `CK_ULONG`.
pub unsafe extern "C" fn C_GetObjectSize(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        token.check_object(session, object)?;
        // SAFETY: caller guarantee.
        *unsafe { out(size) }? = ck::CK_UNAVAILABLE_INFORMATION;
        Ok(())
    })
}

/// C_GetAttributeValue, with the specification's per-attribute length rules: a NULL value
/// asks for the length; a sensitive, unknown or too-small one gets CK_UNAVAILABLE_INFORMATION
/// and the call its error code, after every attribute was processed.
///
/// # Safety
/// `template` must point to `count` attributes whose values are NULL or writable buffers of
/// their stated lengths.
pub unsafe extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    run(|token| {
        token.check_object(session, object)?;
        let n = usize_of(count)?;
        if n == 0 {
            return Ok(());
        }
        if template.is_null() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: non-NULL with `n` attributes (caller guarantee); the module holds no other
        // reference into them.
        let attrs = unsafe { std::slice::from_raw_parts_mut(template, n) };
        let mut result = Ok(());
        for a in attrs {
            match token.attribute(session, object, a.type_) {
                Ok(value) => {
                    if a.pValue.is_null() {
                        a.ulValueLen = ulong_of(value.len());
                    } else if usize_of(a.ulValueLen)? >= value.len() {
                        // SAFETY: pValue is non-NULL with ulValueLen >= value.len() writable
                        // bytes (caller guarantee); `value` is the module's own buffer.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                value.as_ptr(),
                                a.pValue.cast::<u8>(),
                                value.len(),
                            )
                        };
                        a.ulValueLen = ulong_of(value.len());
                    } else {
                        a.ulValueLen = ck::CK_UNAVAILABLE_INFORMATION;
                        result = Err(Error::BufferTooSmall);
                    }
                }
                Err(e @ (Error::AttributeSensitive | Error::AttributeTypeInvalid)) => {
                    a.ulValueLen = ck::CK_UNAVAILABLE_INFORMATION;
                    result = Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        result
    })
}

/// C_SetAttributeValue: the vault fixes every attribute at creation.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    _template: *mut CK_ATTRIBUTE,
    _count: CK_ULONG,
) -> CK_RV {
    run(|token| {
        token.check_object(session, object)?;
        Err(Error::AttributeReadOnly)
    })
}

/// C_FindObjectsInit.
///
/// # Safety
/// `template` must be NULL (with `count` 0) or point to `count` attributes with valid values.
pub unsafe extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let template = unsafe { self::template(template, count) }?;
        token.find_init(session, &template)
    })
}

/// C_FindObjects.
///
/// # Safety
/// `objects` must point to `max` writable handles; `count` a valid out-parameter.
pub unsafe extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let count = unsafe { out(count) }?;
        let max = usize_of(max)?;
        if objects.is_null() && max > 0 {
            return Err(Error::ArgumentsBad);
        }
        let found = token.find(session, max)?;
        for (i, h) in found.iter().enumerate() {
            // SAFETY: `objects` has `max >= found.len()` writable entries.
            unsafe { *objects.add(i) = *h };
        }
        *count = ulong_of(found.len());
        Ok(())
    })
}

/// C_FindObjectsFinal.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    run(|token| token.find_final(session))
}

// --- encryption ------------------------------------------------------------------------------

/// C_EncryptInit (CKM_AES_GCM).
///
/// # Safety
/// `mech` must point to a valid `CK_MECHANISM`.
pub unsafe extern "C" fn C_EncryptInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        token.encrypt_init(session, &m, key)
    })
}

/// C_Encrypt.
///
/// # Safety
/// Input and output buffers per the PKCS#11 conventions.
pub unsafe extern "C" fn C_Encrypt(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    encrypted: *mut CK_BYTE,
    encrypted_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let data = unsafe { input(data, data_len) }?;
        let needed = token.encrypt_len(session, data.len())?;
        // SAFETY: caller guarantee.
        unsafe {
            output(encrypted, encrypted_len, needed, || {
                token.encrypt(session, data)
            })
        }
    })
}

/// C_EncryptUpdate: GCM gathers the parts and outputs everything at C_EncryptFinal.
///
/// # Safety
/// Input and output buffers per the PKCS#11 conventions.
pub unsafe extern "C" fn C_EncryptUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
    _encrypted: *mut CK_BYTE,
    encrypted_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let part = unsafe { input(part, part_len) }?;
        // SAFETY: caller guarantee.
        let encrypted_len = unsafe { out(encrypted_len) }?;
        token.encrypt_update(session, part)?;
        *encrypted_len = 0;
        Ok(())
    })
}

/// C_EncryptFinal.
///
/// # Safety
/// Output buffer per the PKCS#11 conventions.
pub unsafe extern "C" fn C_EncryptFinal(
    session: CK_SESSION_HANDLE,
    last: *mut CK_BYTE,
    last_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        let needed = token.encrypt_len(session, 0)?;
        // SAFETY: caller guarantee.
        unsafe { output(last, last_len, needed, || token.encrypt_final(session)) }
    })
}

/// C_DecryptInit (CKM_AES_GCM).
///
/// # Safety
/// `mech` must point to a valid `CK_MECHANISM`.
pub unsafe extern "C" fn C_DecryptInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        token.decrypt_init(session, &m, key)
    })
}

/// C_Decrypt.
///
/// # Safety
/// Input and output buffers per the PKCS#11 conventions.
pub unsafe extern "C" fn C_Decrypt(
    session: CK_SESSION_HANDLE,
    encrypted: *mut CK_BYTE,
    encrypted_len: CK_ULONG,
    data: *mut CK_BYTE,
    data_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let encrypted = unsafe { input(encrypted, encrypted_len) }?;
        let needed = token.decrypt_len(session, encrypted.len())?;
        // SAFETY: caller guarantee.
        unsafe { output(data, data_len, needed, || token.decrypt(session, encrypted)) }
    })
}

/// C_DecryptUpdate: GCM releases plaintext only at C_DecryptFinal, once the tag checks.
///
/// # Safety
/// Input and output buffers per the PKCS#11 conventions.
pub unsafe extern "C" fn C_DecryptUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
    _data: *mut CK_BYTE,
    data_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let part = unsafe { input(part, part_len) }?;
        // SAFETY: caller guarantee.
        let data_len = unsafe { out(data_len) }?;
        token.decrypt_update(session, part)?;
        *data_len = 0;
        Ok(())
    })
}

/// C_DecryptFinal.
///
/// # Safety
/// Output buffer per the PKCS#11 conventions.
pub unsafe extern "C" fn C_DecryptFinal(
    session: CK_SESSION_HANDLE,
    last: *mut CK_BYTE,
    last_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        let needed = token.decrypt_len(session, 0)?;
        // SAFETY: caller guarantee.
        unsafe { output(last, last_len, needed, || token.decrypt_final(session)) }
    })
}

// --- digests: none (hashing needs no vault; applications have their own) ----------------------

/// C_DigestInit: no digest mechanisms.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DigestInit(_session: CK_SESSION_HANDLE, _m: *mut CK_MECHANISM) -> CK_RV {
    run(|_| Err(Error::MechanismInvalid))
}

/// C_Digest.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_Digest(
    _session: CK_SESSION_HANDLE,
    _data: *mut CK_BYTE,
    _len: CK_ULONG,
    _digest: *mut CK_BYTE,
    _digest_len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::OperationNotInitialized))
}

/// C_DigestUpdate.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DigestUpdate(
    _session: CK_SESSION_HANDLE,
    _part: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::OperationNotInitialized))
}

/// C_DigestKey.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DigestKey(_session: CK_SESSION_HANDLE, _key: CK_OBJECT_HANDLE) -> CK_RV {
    run(|_| Err(Error::OperationNotInitialized))
}

/// C_DigestFinal.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DigestFinal(
    _session: CK_SESSION_HANDLE,
    _digest: *mut CK_BYTE,
    _len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::OperationNotInitialized))
}

// --- signatures and MACs ---------------------------------------------------------------------

/// C_SignInit.
///
/// # Safety
/// `mech` must point to a valid `CK_MECHANISM`.
pub unsafe extern "C" fn C_SignInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        token.sign_init(session, &m, key)
    })
}

/// C_Sign: ECDSA signatures are r || s, each the curve's order length.
///
/// # Safety
/// Input and output buffers per the PKCS#11 conventions.
pub unsafe extern "C" fn C_Sign(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let data = unsafe { input(data, data_len) }?;
        let needed = token.sign_len(session)?;
        // SAFETY: caller guarantee.
        unsafe {
            output(signature, signature_len, needed, || {
                token.sign(session, data)
            })
        }
    })
}

/// C_SignUpdate.
///
/// # Safety
/// Input buffer per the PKCS#11 conventions.
pub unsafe extern "C" fn C_SignUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let part = unsafe { input(part, part_len) }?;
        token.sign_update(session, part)
    })
}

/// C_SignFinal.
///
/// # Safety
/// Output buffer per the PKCS#11 conventions.
pub unsafe extern "C" fn C_SignFinal(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    run(|token| {
        let needed = token.sign_len(session)?;
        // SAFETY: caller guarantee.
        unsafe {
            output(signature, signature_len, needed, || {
                token.sign_final(session)
            })
        }
    })
}

/// C_SignRecoverInit: no recovery mechanisms.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SignRecoverInit(
    _session: CK_SESSION_HANDLE,
    _m: *mut CK_MECHANISM,
    _key: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|_| Err(Error::MechanismInvalid))
}

/// C_SignRecover.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SignRecover(
    _session: CK_SESSION_HANDLE,
    _data: *mut CK_BYTE,
    _len: CK_ULONG,
    _sig: *mut CK_BYTE,
    _sig_len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::OperationNotInitialized))
}

/// C_VerifyInit.
///
/// # Safety
/// `mech` must point to a valid `CK_MECHANISM`.
pub unsafe extern "C" fn C_VerifyInit(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        token.verify_init(session, &m, key)
    })
}

/// C_Verify.
///
/// # Safety
/// Input buffers per the PKCS#11 conventions.
pub unsafe extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let data = unsafe { input(data, data_len) }?;
        // SAFETY: caller guarantee.
        let signature = unsafe { input(signature, signature_len) }?;
        token.verify(session, data, signature)
    })
}

/// C_VerifyUpdate.
///
/// # Safety
/// Input buffer per the PKCS#11 conventions.
pub unsafe extern "C" fn C_VerifyUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    part_len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let part = unsafe { input(part, part_len) }?;
        token.verify_update(session, part)
    })
}

/// C_VerifyFinal.
///
/// # Safety
/// Input buffer per the PKCS#11 conventions.
pub unsafe extern "C" fn C_VerifyFinal(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let signature = unsafe { input(signature, signature_len) }?;
        token.verify_final(session, signature)
    })
}

/// C_VerifyRecoverInit: no recovery mechanisms.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_VerifyRecoverInit(
    _session: CK_SESSION_HANDLE,
    _m: *mut CK_MECHANISM,
    _key: CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|_| Err(Error::MechanismInvalid))
}

/// C_VerifyRecover.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_VerifyRecover(
    _session: CK_SESSION_HANDLE,
    _sig: *mut CK_BYTE,
    _sig_len: CK_ULONG,
    _data: *mut CK_BYTE,
    _len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::OperationNotInitialized))
}

/// The dual-function updates: none.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DigestEncryptUpdate(
    _session: CK_SESSION_HANDLE,
    _part: *mut CK_BYTE,
    _len: CK_ULONG,
    _out: *mut CK_BYTE,
    _out_len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// See [`C_DigestEncryptUpdate`].
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DecryptDigestUpdate(
    _session: CK_SESSION_HANDLE,
    _part: *mut CK_BYTE,
    _len: CK_ULONG,
    _out: *mut CK_BYTE,
    _out_len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// See [`C_DigestEncryptUpdate`].
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SignEncryptUpdate(
    _session: CK_SESSION_HANDLE,
    _part: *mut CK_BYTE,
    _len: CK_ULONG,
    _out: *mut CK_BYTE,
    _out_len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// See [`C_DigestEncryptUpdate`].
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_DecryptVerifyUpdate(
    _session: CK_SESSION_HANDLE,
    _part: *mut CK_BYTE,
    _len: CK_ULONG,
    _out: *mut CK_BYTE,
    _out_len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

// --- keys ------------------------------------------------------------------------------------

/// C_GenerateKey: AES-256 (CKM_AES_KEY_GEN) or HMAC (CKM_GENERIC_SECRET_KEY_GEN), in the vault.
///
/// # Safety
/// Mechanism and template per the PKCS#11 conventions; `key` a valid out-parameter.
pub unsafe extern "C" fn C_GenerateKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        // SAFETY: caller guarantee.
        let t = unsafe { self::template(template, count) }?;
        // SAFETY: caller guarantee.
        let key = unsafe { out(key) }?;
        *key = token.generate_key(session, &m, &t)?;
        Ok(())
    })
}

/// C_GenerateKeyPair: an EC key pair (P-256 or P-384), in the vault.
///
/// # Safety
/// Mechanism and templates per the PKCS#11 conventions; the handles valid out-parameters.
pub unsafe extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    public_template: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private_template: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        // SAFETY: caller guarantee.
        let public = unsafe { template(public_template, public_count) }?;
        // SAFETY: caller guarantee.
        let private = unsafe { template(private_template, private_count) }?;
        // SAFETY: caller guarantee.
        let public_key = unsafe { out(public_key) }?;
        // SAFETY: caller guarantee.
        let private_key = unsafe { out(private_key) }?;
        let (p, s) = token.generate_key_pair(session, &m, &public, &private)?;
        *public_key = p;
        *private_key = s;
        Ok(())
    })
}

/// C_WrapKey: no key leaves the vault, wrapped or not.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_WrapKey(
    _session: CK_SESSION_HANDLE,
    _m: *mut CK_MECHANISM,
    _wrapping: CK_OBJECT_HANDLE,
    _key: CK_OBJECT_HANDLE,
    _wrapped: *mut CK_BYTE,
    _len: *mut CK_ULONG,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_UnwrapKey: keys arrive wrapped to the launch by a key broker (`svsm-vault import`).
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_UnwrapKey(
    _session: CK_SESSION_HANDLE,
    _m: *mut CK_MECHANISM,
    _unwrapping: CK_OBJECT_HANDLE,
    _wrapped: *mut CK_BYTE,
    _len: CK_ULONG,
    _template: *mut CK_ATTRIBUTE,
    _count: CK_ULONG,
    _key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

/// C_DeriveKey: CKM_ECDH1_DERIVE (CKD_NULL) into a key that stays in the vault.
///
/// # Safety
/// Mechanism and template per the PKCS#11 conventions; `key` a valid out-parameter.
pub unsafe extern "C" fn C_DeriveKey(
    session: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    run(|token| {
        // SAFETY: caller guarantee.
        let m = unsafe { mechanism(mech) }?;
        // SAFETY: caller guarantee.
        let t = unsafe { self::template(template, count) }?;
        // SAFETY: caller guarantee.
        let key = unsafe { out(key) }?;
        *key = token.derive_key(session, &m, base, &t)?;
        Ok(())
    })
}

// --- random ----------------------------------------------------------------------------------

/// C_SeedRandom: the vault's entropy comes from the platform, not from applications.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_SeedRandom(
    session: CK_SESSION_HANDLE,
    _seed: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        token.session_info(session)?;
        Err(Error::RandomSeedNotSupported)
    })
}

/// C_GenerateRandom.
///
/// # Safety
/// `data` must point to `len` writable bytes (NULL only when `len` is 0).
pub unsafe extern "C" fn C_GenerateRandom(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    run(|token| {
        let n = usize_of(len)?;
        if n == 0 {
            return token.session_info(session).map(|_| ());
        }
        if data.is_null() || n > isize::MAX as usize {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: non-NULL with `n` writable bytes (caller guarantee).
        let buf = unsafe { std::slice::from_raw_parts_mut(data, n) };
        token.random(session, buf)
    })
}

// --- legacy parallel functions ----------------------------------------------------------------

/// C_GetFunctionStatus: legacy.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_GetFunctionStatus(_session: CK_SESSION_HANDLE) -> CK_RV {
    ck::CKR_FUNCTION_NOT_PARALLEL
}

/// C_CancelFunction: legacy.
///
/// # Safety
/// None needed.
pub unsafe extern "C" fn C_CancelFunction(_session: CK_SESSION_HANDLE) -> CK_RV {
    ck::CKR_FUNCTION_NOT_PARALLEL
}

/// C_WaitForSlotEvent: the token never leaves its slot.
///
/// # Safety
/// Any arguments.
pub unsafe extern "C" fn C_WaitForSlotEvent(
    _flags: CK_FLAGS,
    _slot: *mut CK_SLOT_ID,
    _reserved: *mut c_void,
) -> CK_RV {
    run(|_| Err(Error::FunctionNotSupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_text_is_cut_on_characters_and_filled_with_spaces() {
        assert_eq!(&padded::<8>("abc"), b"abc     ");
        assert_eq!(&padded::<4>("abcdef"), b"abcd");
        // "é" is two bytes: it does not fit after three ASCII bytes in four.
        assert_eq!(&padded::<4>("abcé"), b"abc ");
    }

    #[test]
    fn calls_before_initialize_say_so_and_null_pointers_are_bad_arguments() {
        // SAFETY: NULL and valid pointers only.
        unsafe {
            let mut info = std::mem::zeroed::<ck::CK_INFO>();
            assert_eq!(C_GetInfo(&mut info), ck::CKR_CRYPTOKI_NOT_INITIALIZED);
            assert_eq!(
                C_GetFunctionList(std::ptr::null_mut()),
                ck::CKR_ARGUMENTS_BAD
            );
            let mut list = std::ptr::null_mut();
            assert_eq!(C_GetFunctionList(&mut list), ck::CKR_OK);
            assert!(!list.is_null());
            assert_eq!(
                C_Finalize(std::ptr::null_mut()),
                ck::CKR_CRYPTOKI_NOT_INITIALIZED
            );
        }
    }
}
