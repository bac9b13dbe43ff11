//! Helpers shared by the integration tests: a serialising lock (libtpms is one engine per
//! process and `Vtpm` is exclusive, while the test harness runs tests on parallel threads) and a
//! tiny hand-written TPM 2.0 command marshaller for the commands the tests send.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, PoisonError};

use vtpm::{TpmEngine, Vtpm};

static TEST_LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of one test binary. Poisoning (a failed test) does not block the rest.
pub fn serial() -> MutexGuard<'static, ()> {
    TEST_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
pub const TPM_ST_SESSIONS: u16 = 0x8002;
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
pub const TPM_RS_PW: u32 = 0x4000_0009;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_RC_SUCCESS: u32 = 0;
pub const TPM_RC_RETRY: u32 = 0x922;
pub const TPM_RC_LOCALITY: u32 = 0x907;

/// A command under construction.
pub struct Cmd(Vec<u8>);

impl Cmd {
    pub fn new(tag: u16, cc: u32) -> Self {
        let mut c = Cmd(Vec::new());
        c.u16(tag).u32(0).u32(cc);
        c
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        self.u16(v.len() as u16).bytes(v)
    }
    /// Authorization area with one password session holding `password`.
    pub fn pw_auth(&mut self, password: &[u8]) -> &mut Self {
        self.u32(9 + password.len() as u32)
            .u32(TPM_RS_PW)
            .u16(0)
            .u8(0)
            .tpm2b(password)
    }
    pub fn build(&self) -> Vec<u8> {
        let mut v = self.0.clone();
        let len = v.len() as u32;
        v[2..6].copy_from_slice(&len.to_be_bytes());
        v
    }
}

/// Response code of a response.
pub fn rc(resp: &[u8]) -> u32 {
    assert!(resp.len() >= 10, "short response {resp:02x?}");
    let size = u32::from_be_bytes(resp[2..6].try_into().unwrap()) as usize;
    assert_eq!(size, resp.len(), "response size field");
    u32::from_be_bytes(resp[6..10].try_into().unwrap())
}

/// Sends `cmd` at `locality`, returns the response bytes.
pub fn send_at(tpm: &mut Vtpm, locality: u8, cmd: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; vtpm::MAX_TPM_BUFFER];
    let n = tpm.execute(locality, cmd, &mut buf).expect("execute");
    buf.truncate(n);
    buf
}

pub fn send(tpm: &mut Vtpm, cmd: &[u8]) -> Vec<u8> {
    send_at(tpm, 0, cmd)
}

/// Sends and asserts TPM_RC_SUCCESS.
pub fn send_ok(tpm: &mut Vtpm, cmd: &[u8]) -> Vec<u8> {
    let resp = send(tpm, cmd);
    assert_eq!(rc(&resp), TPM_RC_SUCCESS, "response {resp:02x?}");
    resp
}

pub fn get_random(tpm: &mut Vtpm, n: u16) -> Vec<u8> {
    let resp = send_ok(tpm, &Cmd::new(TPM_ST_NO_SESSIONS, 0x17B).u16(n).build());
    let len = u16::from_be_bytes([resp[10], resp[11]]) as usize;
    assert_eq!(resp.len(), 12 + len);
    resp[12..].to_vec()
}

pub fn pcr_extend_cmd(pcr: u32, digest: &[u8; 32]) -> Vec<u8> {
    Cmd::new(TPM_ST_SESSIONS, 0x182)
        .u32(pcr)
        .pw_auth(b"")
        .u32(1)
        .u16(TPM_ALG_SHA256)
        .bytes(digest)
        .build()
}

/// PCR_Read of one SHA-256 PCR (0..24).
pub fn pcr_read_sha256(tpm: &mut Vtpm, pcr: usize) -> Vec<u8> {
    let mut select = [0u8; 3];
    select[pcr / 8] = 1 << (pcr % 8);
    let resp = send_ok(
        tpm,
        &Cmd::new(TPM_ST_NO_SESSIONS, 0x17E)
            .u32(1)
            .u16(TPM_ALG_SHA256)
            .u8(3)
            .bytes(&select)
            .build(),
    );
    // header 10, pcrUpdateCounter 4, TPML_PCR_SELECTION (4 + 2 + 1 + 3), TPML_DIGEST count 4
    let body = &resp[10..];
    assert_eq!(
        &body[4..14],
        &[0, 0, 0, 1, 0, 0x0B, 3, select[0], select[1], select[2]]
    );
    assert_eq!(u32::from_be_bytes(body[14..18].try_into().unwrap()), 1);
    assert_eq!(u16::from_be_bytes([body[18], body[19]]), 32);
    body[20..52].to_vec()
}

/// NV index used by the tests: owner-authorised read/write, not DA-protected.
pub const TEST_NV_INDEX: u32 = 0x0150_0001;

pub fn nv_define(tpm: &mut Vtpm, index: u32, attributes: u32, auth: &[u8], size: u16) -> Vec<u8> {
    let mut public = Cmd(Vec::new());
    public
        .u32(index)
        .u16(TPM_ALG_SHA256)
        .u32(attributes)
        .u16(0)
        .u16(size);
    send(
        tpm,
        &Cmd::new(TPM_ST_SESSIONS, 0x12A)
            .u32(TPM_RH_OWNER)
            .pw_auth(b"")
            .tpm2b(auth)
            .tpm2b(&public.0)
            .build(),
    )
}

/// NV_Write with `auth_handle` (owner or the index itself) and its password.
pub fn nv_write_cmd(auth_handle: u32, index: u32, password: &[u8], data: &[u8]) -> Vec<u8> {
    Cmd::new(TPM_ST_SESSIONS, 0x137)
        .u32(auth_handle)
        .u32(index)
        .pw_auth(password)
        .tpm2b(data)
        .u16(0)
        .build()
}

pub fn nv_read(tpm: &mut Vtpm, index: u32, size: u16) -> Vec<u8> {
    let resp = send_ok(
        tpm,
        &Cmd::new(TPM_ST_SESSIONS, 0x14E)
            .u32(TPM_RH_OWNER)
            .u32(index)
            .pw_auth(b"")
            .u16(size)
            .u16(0)
            .build(),
    );
    // header 10, parameterSize 4, TPM2B data
    let len = u16::from_be_bytes([resp[14], resp[15]]) as usize;
    resp[16..16 + len].to_vec()
}

/// TPMA_NV: OWNERWRITE | OWNERREAD | NO_DA.
pub const NV_OWNER_RW: u32 = (1 << 1) | (1 << 17) | (1 << 25);
/// TPMA_NV: AUTHWRITE | AUTHREAD (DA-protected).
pub const NV_AUTH_RW: u32 = (1 << 2) | (1 << 18);

/// TPM2_ReadPublic's outPublic (TPMT_PUBLIC without its size).
pub fn read_public(tpm: &mut Vtpm, handle: u32) -> Vec<u8> {
    let resp = send_ok(
        tpm,
        &Cmd::new(TPM_ST_NO_SESSIONS, 0x173).u32(handle).build(),
    );
    let len = u16::from_be_bytes([resp[10], resp[11]]) as usize;
    resp[12..12 + len].to_vec()
}
