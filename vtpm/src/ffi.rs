//! The only place this crate touches C: the libtpms `TPMLIB_*` API (hand-written declarations
//! for libtpms 0.9.2, `libtpms/tpm_library.h` and `tpm_memory.h`), the NV/IO callbacks libtpms
//! calls back into, and the process-global state both sides share.
//!
//! libtpms holds one TPM per process in C globals and is not thread-safe. This module models
//! that honestly:
//! - [`Engine`] is the single owner token. [`Engine::acquire`] hands out at most one at a time
//!   and answers [`TpmEngineError::InUse`] otherwise.
//! - Every call into libtpms happens while the [`ENGINE`] mutex is held.
//! - The callbacks run on the thread that holds [`ENGINE`] (libtpms only calls them from inside
//!   a `TPMLIB_*` call). They reach the NV blobs and the locality through a second mutex,
//!   [`CALLBACK_DATA`]. Lock order is always `ENGINE` then `CALLBACK_DATA`, and Rust code never
//!   calls into libtpms while it holds `CALLBACK_DATA`, so the callbacks can never deadlock.
//!
//! The NV blobs live here, on the Rust side, and are wiped (zeroized) when replaced, deleted,
//! or when the owner goes away. Buffers libtpms allocates for us (responses, exported state) are
//! wiped before they are handed back to `TPM_Free`.
//!
//! A hazard that shapes the callers: libtpms's fatal-error path (`TpmFail`) `longjmp`s to a
//! jump buffer that only `ExecuteCommand` sets up. When it triggers while state is being
//! unmarshalled outside a command (`TPMLIB_ValidateState`/`SetState`/`MainInit` on a blob with
//! a corrupt object inside, observed with a single flipped byte), it jumps into a dead stack
//! frame and the process crashes. So state blobs must be checked before they get here; see
//! `crate::state`.

use alloc::vec;
use alloc::vec::Vec;
use core::ffi::{c_char, c_int, c_uint, CStr};

use crate::sync::{lock, Mutex};

use svsm_core::tpm::{TpmEngineError, MAX_TPM_BUFFER};
use zeroize::{Zeroize, Zeroizing};

/// libtpms `TPM_SUCCESS`.
const TPM_SUCCESS: u32 = 0;
/// libtpms `TPM_FAIL` (general failure).
const TPM_FAIL: u32 = 9;
/// libtpms `TPM_RETRY`: what `nvram_loaddata` must answer for "no such blob" (libtpms then
/// manufactures a fresh TPM for a missing permanent state instead of failing).
const TPM_RETRY: u32 = 0x800;

/// `TPMLIB_TPM_VERSION_2` in `enum TPMLIB_TPMVersion` (the library default is TPM 1.2).
const TPMLIB_TPM_VERSION_2: c_int = 1;
/// `TPMLIB_STATE_PERMANENT` in `enum TPMLIB_StateType`.
const TPMLIB_STATE_PERMANENT: c_int = 1;
/// `TPMLIB_STATE_VOLATILE` in `enum TPMLIB_StateType`.
const TPMLIB_STATE_VOLATILE: c_int = 2;

/// `TPM_BOOL` (`unsigned char`).
type TpmBool = u8;

/// `struct libtpms_callbacks`: an `int` then seven function pointers (C layout). A `None`
/// entry selects libtpms's built-in default (file I/O under `$TPM_PATH` for NV), which this
/// crate never uses: every entry is filled in.
#[repr(C)]
struct LibtpmsCallbacks {
    size_of_struct: c_int,
    tpm_nvram_init: Option<unsafe extern "C" fn() -> u32>,
    tpm_nvram_loaddata:
        Option<unsafe extern "C" fn(*mut *mut u8, *mut u32, u32, *const c_char) -> u32>,
    tpm_nvram_storedata: Option<unsafe extern "C" fn(*const u8, u32, u32, *const c_char) -> u32>,
    tpm_nvram_deletename: Option<unsafe extern "C" fn(u32, *const c_char, TpmBool) -> u32>,
    tpm_io_init: Option<unsafe extern "C" fn() -> u32>,
    tpm_io_getlocality: Option<unsafe extern "C" fn(*mut u32, u32) -> u32>,
    tpm_io_getphysicalpresence: Option<unsafe extern "C" fn(*mut TpmBool, u32) -> u32>,
}

// Declarations matching libtpms 0.9.2's public headers. `TPM_RESULT` is `uint32_t`; the C
// enums are passed as `int`.
unsafe extern "C" {
    fn TPMLIB_ChooseTPMVersion(ver: c_int) -> u32;
    fn TPMLIB_RegisterCallbacks(callbacks: *mut LibtpmsCallbacks) -> u32;
    fn TPMLIB_MainInit() -> u32;
    fn TPMLIB_Terminate();
    fn TPMLIB_Process(
        respbuffer: *mut *mut u8,
        resp_size: *mut u32,
        respbufsize: *mut u32,
        command: *mut u8,
        command_size: u32,
    ) -> u32;
    fn TPMLIB_SetState(st: c_int, buffer: *const u8, buflen: u32) -> u32;
    fn TPMLIB_GetState(st: c_int, buffer: *mut *mut u8, buflen: *mut u32) -> u32;
    fn TPMLIB_ValidateState(st: c_int, flags: c_uint) -> u32;
    fn TPM_Malloc(buffer: *mut *mut u8, size: u32) -> u32;
    fn TPM_Free(buffer: *mut u8);
}

// OpenSSL libcrypto (`openssl/sha.h`), which libtpms links against anyway: the one-shot SHA-256
// (not deprecated in OpenSSL 3) for the integrity check of exported state.
unsafe extern "C" {
    fn SHA256(data: *const u8, len: usize, md: *mut u8) -> *mut u8;
}

/// SHA-256 of `data`, from libcrypto.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut md = [0u8; 32];
    // SAFETY: `data` is valid for `data.len()` bytes and `md` has the 32 bytes SHA256 writes.
    // OpenSSL 3's one-shot digest is thread-safe, so it needs no lock (it is not libtpms).
    unsafe { SHA256(data.as_ptr(), data.len(), md.as_mut_ptr()) };
    md
}

/// Who owns libtpms right now, and whether it is initialised (between `MainInit` and
/// `Terminate`). Guarded by [`ENGINE`]; every libtpms call is made with this lock held.
struct EngineSlot {
    owned: bool,
    running: bool,
}

/// The lock that serialises every call into libtpms.
static ENGINE: Mutex<EngineSlot> = Mutex::new(EngineSlot {
    owned: false,
    running: false,
});

/// The NV blobs libtpms stores through the callbacks, and the locality of the command in
/// flight. Guarded by [`CALLBACK_DATA`].
struct CallbackData {
    /// "permall": the whole permanent (NV) state, seeds included.
    permanent: Vec<u8>,
    /// "volatilestate".
    volatile: Vec<u8>,
    /// "savestate".
    save: Vec<u8>,
    /// Set when `storedata("permall")` brings content different from what was held.
    permanent_changed: bool,
    /// Locality reported to libtpms through `io_getlocality`.
    locality: u8,
}

impl CallbackData {
    fn slot(&mut self, name: BlobName) -> &mut Vec<u8> {
        match name {
            BlobName::Permanent => &mut self.permanent,
            BlobName::Volatile => &mut self.volatile,
            BlobName::Save => &mut self.save,
        }
    }

    /// Wipes every blob and resets the flags.
    fn wipe(&mut self) {
        self.permanent.zeroize();
        self.volatile.zeroize();
        self.save.zeroize();
        self.permanent_changed = false;
        self.locality = 0;
    }
}

/// Callback-side state. Never held while calling into libtpms.
static CALLBACK_DATA: Mutex<CallbackData> = Mutex::new(CallbackData {
    permanent: Vec::new(),
    volatile: Vec::new(),
    save: Vec::new(),
    permanent_changed: false,
    locality: 0,
});

/// The three NV names libtpms uses (`libtpms/tpm_nvfilename.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobName {
    Permanent,
    Volatile,
    Save,
}

impl BlobName {
    fn from_bytes(name: &[u8]) -> Option<Self> {
        match name {
            b"permall" => Some(Self::Permanent),
            b"volatilestate" => Some(Self::Volatile),
            b"savestate" => Some(Self::Save),
            _ => None,
        }
    }

    /// Decodes the `name` argument of a callback.
    ///
    /// # Safety
    /// `name` must be null or point to a NUL-terminated string valid for the call.
    unsafe fn from_c(name: *const c_char) -> Option<Self> {
        if name.is_null() {
            return None;
        }
        // SAFETY: non-null, and the caller (libtpms) passes a NUL-terminated constant string
        // that outlives the callback.
        let name = unsafe { CStr::from_ptr(name) };
        Self::from_bytes(name.to_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks. libtpms calls these only from inside a TPMLIB_* call, i.e. on the thread that holds
// ENGINE. None of them can panic (no indexing, no unwrap; mutex poisoning is ignored), so no
// unwind can reach the C frames.
// ---------------------------------------------------------------------------------------------

/// `tpm_nvram_init`: nothing to prepare, the store is in memory.
unsafe extern "C" fn nvram_init() -> u32 {
    TPM_SUCCESS
}

/// `tpm_nvram_loaddata`: hands back a `TPM_Malloc`'ed copy of the named blob (libtpms frees
/// it), or `TPM_RETRY` when there is none.
unsafe extern "C" fn nvram_loaddata(
    data: *mut *mut u8,
    length: *mut u32,
    tpm_number: u32,
    name: *const c_char,
) -> u32 {
    if data.is_null() || length.is_null() || tpm_number != 0 {
        return TPM_FAIL;
    }
    // SAFETY: libtpms passes one of its NUL-terminated name constants.
    let Some(name) = (unsafe { BlobName::from_c(name) }) else {
        return TPM_FAIL;
    };
    let mut store = lock(&CALLBACK_DATA);
    let blob = store.slot(name);
    if blob.is_empty() {
        return TPM_RETRY;
    }
    let Ok(len) = u32::try_from(blob.len()) else {
        return TPM_FAIL;
    };
    let mut buf: *mut u8 = core::ptr::null_mut();
    // SAFETY: `buf` is a valid out-pointer; TPM_Malloc allocates `len` bytes or fails.
    let rc = unsafe { TPM_Malloc(&mut buf, len) };
    if rc != TPM_SUCCESS || buf.is_null() {
        return if rc == TPM_SUCCESS { TPM_FAIL } else { rc };
    }
    // SAFETY: `buf` was just allocated with room for `len` == `blob.len()` bytes and cannot
    // overlap `blob`, which Rust owns.
    unsafe { core::ptr::copy_nonoverlapping(blob.as_ptr(), buf, blob.len()) };
    // SAFETY: both out-pointers were checked non-null; libtpms passes pointers to its locals.
    unsafe {
        *data = buf;
        *length = len;
    }
    TPM_SUCCESS
}

/// `tpm_nvram_storedata`: copies the blob into the Rust-side store (libtpms keeps ownership of
/// `data`). Storing a permanent blob whose content differs marks the state as changed.
unsafe extern "C" fn nvram_storedata(
    data: *const u8,
    length: u32,
    tpm_number: u32,
    name: *const c_char,
) -> u32 {
    if tpm_number != 0 || (data.is_null() && length != 0) {
        return TPM_FAIL;
    }
    // SAFETY: libtpms passes one of its NUL-terminated name constants.
    let Some(name) = (unsafe { BlobName::from_c(name) }) else {
        return TPM_FAIL;
    };
    let Ok(len) = usize::try_from(length) else {
        return TPM_FAIL;
    };
    let src: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: libtpms hands `length` readable bytes at the non-null `data` for the duration
        // of the call; they are copied before returning.
        unsafe { core::slice::from_raw_parts(data, len) }
    };
    let mut store = lock(&CALLBACK_DATA);
    let changed = store.slot(name).as_slice() != src;
    let blob = store.slot(name);
    blob.zeroize();
    blob.extend_from_slice(src);
    if name == BlobName::Permanent && changed {
        store.permanent_changed = true;
    }
    TPM_SUCCESS
}

/// `tpm_nvram_deletename`: wipes and forgets the named blob.
unsafe extern "C" fn nvram_deletename(
    tpm_number: u32,
    name: *const c_char,
    must_exist: TpmBool,
) -> u32 {
    if tpm_number != 0 {
        return TPM_FAIL;
    }
    // SAFETY: libtpms passes one of its NUL-terminated name constants.
    let Some(name) = (unsafe { BlobName::from_c(name) }) else {
        return TPM_FAIL;
    };
    let mut store = lock(&CALLBACK_DATA);
    let blob = store.slot(name);
    let existed = !blob.is_empty();
    blob.zeroize();
    if name == BlobName::Permanent && existed {
        store.permanent_changed = true;
    }
    if must_exist != 0 && !existed {
        TPM_FAIL
    } else {
        TPM_SUCCESS
    }
}

/// `tpm_io_init`: nothing to prepare.
unsafe extern "C" fn io_init() -> u32 {
    TPM_SUCCESS
}

/// `tpm_io_getlocality`: the locality of the command being executed.
unsafe extern "C" fn io_getlocality(locality: *mut u32, tpm_number: u32) -> u32 {
    if locality.is_null() || tpm_number != 0 {
        return TPM_FAIL;
    }
    let current = lock(&CALLBACK_DATA).locality;
    // SAFETY: checked non-null; libtpms passes a pointer to its local.
    unsafe { *locality = u32::from(current) };
    TPM_SUCCESS
}

/// `tpm_io_getphysicalpresence`: never asserted (there is no physical presence in a VM).
unsafe extern "C" fn io_getphysicalpresence(pp: *mut TpmBool, tpm_number: u32) -> u32 {
    if pp.is_null() || tpm_number != 0 {
        return TPM_FAIL;
    }
    // SAFETY: checked non-null; libtpms passes a pointer to its local.
    unsafe { *pp = 0 };
    TPM_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Buffers allocated by libtpms.
// ---------------------------------------------------------------------------------------------

/// A buffer libtpms allocated for us (a response or an exported state blob). Wiped, then
/// released with `TPM_Free`, when dropped.
struct LibtpmsBuf {
    ptr: *mut u8,
    /// Bytes allocated (what gets wiped).
    capacity: usize,
}

impl LibtpmsBuf {
    /// Takes ownership of `ptr` (null allowed), `capacity` bytes long.
    ///
    /// # Safety
    /// `ptr` must be null or a live libtpms allocation (TPM_Malloc/TPM_Realloc) of at least
    /// `capacity` bytes that nobody else frees.
    unsafe fn from_raw(ptr: *mut u8, capacity: usize) -> Self {
        Self { ptr, capacity }
    }

    /// The first `len` bytes, or `None` if that exceeds the allocation (or there is none).
    fn get(&self, len: usize) -> Option<&[u8]> {
        if len == 0 {
            return Some(&[]);
        }
        if self.ptr.is_null() || len > self.capacity {
            return None;
        }
        // SAFETY: `ptr` is a live allocation of `capacity` >= `len` bytes owned by `self`,
        // initialised by libtpms up to the length it reported.
        Some(unsafe { core::slice::from_raw_parts(self.ptr, len) })
    }
}

impl Drop for LibtpmsBuf {
    fn drop(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        if self.capacity > 0 {
            // SAFETY: `ptr` is a live allocation of `capacity` bytes owned by `self`; it may
            // hold secrets (responses, state), so it is wiped before it is released.
            unsafe { core::slice::from_raw_parts_mut(self.ptr, self.capacity) }.zeroize();
        }
        // SAFETY: `ptr` came from libtpms's allocator and is freed exactly once, here.
        unsafe { TPM_Free(self.ptr) };
    }
}

// ---------------------------------------------------------------------------------------------
// The owner token.
// ---------------------------------------------------------------------------------------------

/// A state blob copied out of libtpms; wiped when dropped.
pub(crate) type SecretBlob = Zeroizing<Vec<u8>>;

/// Why starting the engine failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartError {
    /// `ChooseTPMVersion`, `RegisterCallbacks` or `MainInit` (without a state) failed.
    Library(u32),
    /// A state blob was refused by `SetState`/`ValidateState`, or `MainInit` failed on it.
    StateRefused,
}

/// The exclusive owner of the process-global libtpms engine. At most one exists at a time.
/// Dropping it terminates the engine and wipes all NV blobs.
#[derive(Debug)]
pub(crate) struct Engine {
    _private: (),
}

impl Engine {
    /// Takes ownership of the engine, or [`TpmEngineError::InUse`] if someone holds it.
    pub(crate) fn acquire() -> Result<Self, TpmEngineError> {
        let mut slot = lock(&ENGINE);
        if slot.owned {
            return Err(TpmEngineError::InUse);
        }
        slot.owned = true;
        slot.running = false;
        lock(&CALLBACK_DATA).wipe();
        Ok(Self { _private: () })
    }

    /// True between a successful [`Engine::start`] and [`Engine::stop`].
    pub(crate) fn is_running(&self) -> bool {
        lock(&ENGINE).running
    }

    /// Powers the engine on: selects TPM 2.0, registers the callbacks, optionally hands libtpms
    /// a permanent (and volatile) state with `SetState`, and runs `MainInit`. Without a state,
    /// `MainInit` loads "permall" from the Rust-side store, or manufactures a fresh TPM when the
    /// store is empty. Does nothing if already running.
    pub(crate) fn start(&mut self, state: Option<(&[u8], &[u8])>) -> Result<(), StartError> {
        let mut slot = lock(&ENGINE);
        if slot.running {
            return Ok(());
        }
        // SAFETY: plain call with a valid enum value, serialised by ENGINE; the engine is not
        // running (ChooseTPMVersion also discards any state cached by an earlier SetState).
        let rc = unsafe { TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2) };
        if rc != TPM_SUCCESS {
            return Err(StartError::Library(rc));
        }
        let mut callbacks = LibtpmsCallbacks {
            // The struct is 64 bytes; the cast cannot truncate.
            size_of_struct: core::mem::size_of::<LibtpmsCallbacks>() as c_int,
            tpm_nvram_init: Some(nvram_init),
            tpm_nvram_loaddata: Some(nvram_loaddata),
            tpm_nvram_storedata: Some(nvram_storedata),
            tpm_nvram_deletename: Some(nvram_deletename),
            tpm_io_init: Some(io_init),
            tpm_io_getlocality: Some(io_getlocality),
            tpm_io_getphysicalpresence: Some(io_getphysicalpresence),
        };
        // SAFETY: `callbacks` is a valid, fully initialised struct libtpms copies (up to
        // sizeOfStruct bytes) during the call and does not retain; serialised by ENGINE.
        let rc = unsafe { TPMLIB_RegisterCallbacks(&mut callbacks) };
        if rc != TPM_SUCCESS {
            return Err(StartError::Library(rc));
        }

        if let Some((permanent, volatile)) = state {
            // Seed the Rust-side store with the blobs: `TPMLIB_ValidateState` reads them through
            // the callbacks, and libtpms storing the same permanent blob back during MainInit
            // then does not count as a change.
            {
                let mut store = lock(&CALLBACK_DATA);
                store.wipe();
                store.permanent.extend_from_slice(permanent);
                store.volatile.extend_from_slice(volatile);
            }
            if let Err(e) = validate_and_set_states(permanent, volatile) {
                discard_cached_state();
                lock(&CALLBACK_DATA).wipe();
                return Err(e);
            }
        }

        // SAFETY: plain call, serialised by ENGINE; the callbacks registered above are valid for
        // the whole program.
        let rc = unsafe { TPMLIB_MainInit() };
        if rc != TPM_SUCCESS {
            // SAFETY: Terminate after a failed MainInit releases whatever MainInit allocated;
            // serialised by ENGINE.
            unsafe { TPMLIB_Terminate() };
            discard_cached_state();
            if state.is_some() {
                lock(&CALLBACK_DATA).wipe();
                return Err(StartError::StateRefused);
            }
            return Err(StartError::Library(rc));
        }
        // A volatile blob is consumed by MainInit; it must not come back at the next power-on.
        lock(&CALLBACK_DATA).volatile.zeroize();
        slot.running = true;
        Ok(())
    }

    /// Powers the engine off (`TPMLIB_Terminate`). NV ("permall") stays in the Rust-side store,
    /// volatile blobs are wiped: like a power loss, volatile state does not survive.
    pub(crate) fn stop(&mut self) {
        let mut slot = lock(&ENGINE);
        if slot.running {
            // SAFETY: the engine is initialised; serialised by ENGINE.
            unsafe { TPMLIB_Terminate() };
            slot.running = false;
        }
        let mut store = lock(&CALLBACK_DATA);
        store.volatile.zeroize();
        store.save.zeroize();
    }

    /// Runs one command at `locality`; copies the response into `response`.
    pub(crate) fn process(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, TpmEngineError> {
        let slot = lock(&ENGINE);
        if !slot.running {
            return Err(TpmEngineError::NotPoweredOn);
        }
        if command.len() > MAX_TPM_BUFFER {
            return Err(TpmEngineError::CommandTooLarge {
                size: command.len(),
                max: MAX_TPM_BUFFER,
            });
        }
        let command_size =
            u32::try_from(command.len()).map_err(|_| TpmEngineError::CommandTooLarge {
                size: command.len(),
                max: MAX_TPM_BUFFER,
            })?;
        lock(&CALLBACK_DATA).locality = locality;

        // libtpms takes a mutable pointer: hand it a private, wiped-on-drop copy. It is padded
        // so that even an empty command has a real (zeroed) buffer behind the pointer.
        let mut cmd = Zeroizing::new(vec![0u8; MAX_TPM_BUFFER]);
        if let Some(dst) = cmd.get_mut(..command.len()) {
            dst.copy_from_slice(command);
        }

        let mut resp_ptr: *mut u8 = core::ptr::null_mut();
        let mut resp_size: u32 = 0;
        let mut resp_buf_size: u32 = 0;
        // SAFETY: the engine is initialised; `cmd` holds MAX_TPM_BUFFER >= command_size bytes;
        // the out-pointers are valid locals; a null response buffer asks libtpms to allocate
        // one, which `LibtpmsBuf` takes over. Serialised by ENGINE.
        let rc = unsafe {
            TPMLIB_Process(
                &mut resp_ptr,
                &mut resp_size,
                &mut resp_buf_size,
                cmd.as_mut_ptr(),
                command_size,
            )
        };
        // SAFETY: `resp_ptr` is null or libtpms's allocation of `resp_buf_size` bytes, now ours.
        let resp = unsafe { LibtpmsBuf::from_raw(resp_ptr, resp_buf_size as usize) };
        drop(slot);
        if rc != TPM_SUCCESS {
            return Err(TpmEngineError::Engine(rc));
        }
        let len = resp_size as usize;
        let bytes = resp.get(len).ok_or(TpmEngineError::Engine(TPM_FAIL))?;
        let capacity = response.len();
        let dst = response
            .get_mut(..len)
            .ok_or(TpmEngineError::ResponseTooLarge {
                size: len,
                capacity,
            })?;
        dst.copy_from_slice(bytes);
        Ok(len)
    }

    /// True when the permanent state changed since the last [`Engine::take_changed`].
    pub(crate) fn changed(&self) -> bool {
        lock(&CALLBACK_DATA).permanent_changed
    }

    /// Exports (permanent, volatile). Running: libtpms's `GetState` of both. Powered off: the
    /// last stored permanent blob and no volatile state (it did not survive power-off).
    /// Clears the changed flag.
    pub(crate) fn export(&mut self) -> Result<(SecretBlob, SecretBlob), TpmEngineError> {
        let slot = lock(&ENGINE);
        let (permanent, volatile) = if slot.running {
            let permanent = get_state(TPMLIB_STATE_PERMANENT)?;
            let volatile = get_state(TPMLIB_STATE_VOLATILE)?;
            (permanent, volatile)
        } else {
            let store = lock(&CALLBACK_DATA);
            if store.permanent.is_empty() {
                return Err(TpmEngineError::StateExport);
            }
            (
                Zeroizing::new(store.permanent.clone()),
                Zeroizing::new(Vec::new()),
            )
        };
        if permanent.is_empty() {
            return Err(TpmEngineError::StateExport);
        }
        lock(&CALLBACK_DATA).permanent_changed = false;
        drop(slot);
        Ok((permanent, volatile))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let mut slot = lock(&ENGINE);
        if slot.running {
            // SAFETY: the engine is initialised; serialised by ENGINE.
            unsafe { TPMLIB_Terminate() };
            slot.running = false;
        }
        discard_cached_state();
        lock(&CALLBACK_DATA).wipe();
        slot.owned = false;
    }
}

/// Checks the state blobs already seeded into the Rust-side store with `TPMLIB_ValidateState`,
/// then hands them to libtpms with `TPMLIB_SetState` (ENGINE held by the caller, engine not
/// running). The order matters: `ValidateState` reads the blobs through the callbacks and drops
/// whatever `SetState` had cached, so it must come first.
fn validate_and_set_states(permanent: &[u8], volatile: &[u8]) -> Result<(), StartError> {
    if permanent.is_empty() {
        return Err(StartError::StateRefused);
    }
    let mut types = TPMLIB_STATE_PERMANENT;
    if !volatile.is_empty() {
        types |= TPMLIB_STATE_VOLATILE;
    }
    // SAFETY: plain call with valid flags; ENGINE held, engine chosen (TPM 2) but not running,
    // callbacks registered.
    let rc = unsafe { TPMLIB_ValidateState(types, 0) };
    if rc != TPM_SUCCESS {
        return Err(StartError::StateRefused);
    }
    let perm_len = u32::try_from(permanent.len()).map_err(|_| StartError::StateRefused)?;
    // SAFETY: `permanent` is valid for `perm_len` bytes; libtpms copies it during the call.
    // ENGINE held, engine chosen (TPM 2) but not running.
    let rc = unsafe { TPMLIB_SetState(TPMLIB_STATE_PERMANENT, permanent.as_ptr(), perm_len) };
    if rc != TPM_SUCCESS {
        return Err(StartError::StateRefused);
    }
    if !volatile.is_empty() {
        let vol_len = u32::try_from(volatile.len()).map_err(|_| StartError::StateRefused)?;
        // SAFETY: as above, for the volatile blob.
        let rc = unsafe { TPMLIB_SetState(TPMLIB_STATE_VOLATILE, volatile.as_ptr(), vol_len) };
        if rc != TPM_SUCCESS {
            return Err(StartError::StateRefused);
        }
    }
    Ok(())
}

/// Drops any state blobs cached inside libtpms by `SetState` (re-choosing the TPM version does
/// that). ENGINE must be held and the engine not running.
fn discard_cached_state() {
    // SAFETY: plain call with a valid enum value, made while ENGINE is held and the engine is
    // not running.
    let _ = unsafe { TPMLIB_ChooseTPMVersion(TPMLIB_TPM_VERSION_2) };
}

/// `TPMLIB_GetState` of one type, copied out (ENGINE held by the caller).
fn get_state(state_type: c_int) -> Result<SecretBlob, TpmEngineError> {
    let mut ptr: *mut u8 = core::ptr::null_mut();
    let mut len: u32 = 0;
    // SAFETY: valid out-pointers; the engine is running and ENGINE is held by the caller.
    let rc = unsafe { TPMLIB_GetState(state_type, &mut ptr, &mut len) };
    // SAFETY: `ptr` is null or a libtpms allocation of `len` bytes, now ours to free.
    let buf = unsafe { LibtpmsBuf::from_raw(ptr, len as usize) };
    if rc != TPM_SUCCESS {
        return Err(TpmEngineError::StateExport);
    }
    buf.get(len as usize)
        .map(|b| Zeroizing::new(b.to_vec()))
        .ok_or(TpmEngineError::StateExport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_struct_layout() {
        assert_eq!(core::mem::size_of::<LibtpmsCallbacks>(), 64);
        assert_eq!(core::mem::align_of::<LibtpmsCallbacks>(), 8);
    }

    #[test]
    fn blob_names() {
        assert_eq!(BlobName::from_bytes(b"permall"), Some(BlobName::Permanent));
        assert_eq!(
            BlobName::from_bytes(b"volatilestate"),
            Some(BlobName::Volatile)
        );
        assert_eq!(BlobName::from_bytes(b"savestate"), Some(BlobName::Save));
        assert_eq!(BlobName::from_bytes(b"NVChip"), None);
    }
}
