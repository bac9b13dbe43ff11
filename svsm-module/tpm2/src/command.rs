//! The TPM 2.0 commands svsm-vhsm issues itself (startup, manufacturing, the attestation
//! manifest's EK, benchmarks), marshalled by hand, and bounds-checked parsing of their
//! responses. TPM marshalling is big-endian (TPM 2.0 Library Part 1 §18 and Part 2); structure
//! names below are Part 2's.

use alloc::vec::Vec;

/// `TPM_ST_NO_SESSIONS`.
pub const TPM_ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`.
pub const TPM_ST_SESSIONS: u16 = 0x8002;

/// `TPM_CC_EvictControl`.
const TPM_CC_EVICT_CONTROL: u32 = 0x0000_0120;
/// `TPM_CC_CreatePrimary`.
const TPM_CC_CREATE_PRIMARY: u32 = 0x0000_0131;
/// `TPM_CC_Startup`.
const TPM_CC_STARTUP: u32 = 0x0000_0144;
/// `TPM_CC_FlushContext`.
const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
/// `TPM_CC_ReadPublic`.
const TPM_CC_READ_PUBLIC: u32 = 0x0000_0173;

/// `TPM_RS_PW`: the password authorization session.
const TPM_RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER`.
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_ENDORSEMENT`.
pub const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;

/// `TPM_RC_SUCCESS`.
pub const TPM_RC_SUCCESS: u32 = 0;
/// `TPM_RC_RETRY`: the TPM asks the caller to resend the command unchanged.
pub const TPM_RC_RETRY: u32 = 0x922;

/// Length of a command or response header: tag (2), size (4), code (4).
pub const HEADER_LEN: usize = 10;

/// `TPM_SU`: the startup type of `TPM2_Startup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupType {
    /// `TPM_SU_CLEAR`: TPM Reset or TPM Restart.
    Clear = 0x0000,
    /// `TPM_SU_STATE`: TPM Resume from a `TPM2_Shutdown(STATE)`.
    State = 0x0001,
}

/// A command could not be marshalled (a field exceeds its size prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TPM command field too large for its size prefix")]
pub struct TooLarge;

/// Builds one command: header first, size patched in by [`CommandBuilder::finish`].
pub struct CommandBuilder {
    buf: Vec<u8>,
}

impl CommandBuilder {
    /// Starts a command with `tag` and command code `cc`.
    pub fn new(tag: u16, cc: u32) -> Self {
        let mut b = Self {
            buf: Vec::with_capacity(128),
        };
        b.u16(tag).u32(0).u32(cc);
        b
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A `TPM2B_*`: `u16` size, then the bytes.
    pub fn tpm2b(&mut self, v: &[u8]) -> Result<&mut Self, TooLarge> {
        let len = u16::try_from(v.len()).map_err(|_| TooLarge)?;
        Ok(self.u16(len).bytes(v))
    }

    /// The authorization area with one password session (`TPM_RS_PW`, empty nonce, no
    /// attributes, empty password): `u32` size 9, then the `TPMS_AUTH_COMMAND`.
    pub fn password_auth(&mut self) -> &mut Self {
        self.u32(9) // authorizationSize
            .u32(TPM_RS_PW) // sessionHandle
            .u16(0) // nonce: empty TPM2B_NONCE
            .u8(0) // sessionAttributes
            .u16(0) // hmac: empty TPM2B_AUTH (the empty password)
    }

    /// Patches the size field and returns the command bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, TooLarge> {
        let size = u32::try_from(self.buf.len()).map_err(|_| TooLarge)?;
        let field = self.buf.get_mut(2..6).ok_or(TooLarge)?;
        field.copy_from_slice(&size.to_be_bytes());
        Ok(self.buf)
    }
}

/// `TPM2_Startup(startupType)`.
pub fn startup(su: StartupType) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_STARTUP);
    b.u16(su as u16);
    b.finish()
}

/// `TPM2_CreatePrimary(primaryHandle)` with an empty sensitive area (no userAuth, no data), the
/// given `TPMT_PUBLIC` template, empty outsideInfo and no creation PCRs, authorized by the empty
/// hierarchy password.
pub fn create_primary(hierarchy: u32, template: &[u8]) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_CREATE_PRIMARY);
    b.u32(hierarchy).password_auth();
    // inSensitive: TPM2B_SENSITIVE_CREATE { size 4, userAuth: empty, data: empty }
    b.u16(4).u16(0).u16(0);
    // inPublic: TPM2B_PUBLIC
    b.tpm2b(template)?;
    // outsideInfo: empty TPM2B_DATA; creationPCR: TPML_PCR_SELECTION with count 0
    b.u16(0).u32(0);
    b.finish()
}

/// `TPM2_EvictControl(auth = TPM_RH_OWNER, objectHandle, persistentHandle)`.
pub fn evict_control(object: u32, persistent: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_EVICT_CONTROL);
    b.u32(TPM_RH_OWNER)
        .u32(object)
        .password_auth()
        .u32(persistent);
    b.finish()
}

/// `TPM2_FlushContext(flushHandle)`.
pub fn flush_context(handle: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_FLUSH_CONTEXT);
    b.u32(handle);
    b.finish()
}

/// `TPM2_ReadPublic(objectHandle)`.
pub fn read_public(handle: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_READ_PUBLIC);
    b.u32(handle);
    b.finish()
}

/// `TPM_CC_GetRandom`.
const TPM_CC_GET_RANDOM: u32 = 0x0000_017B;
/// `TPM_CC_PCR_Extend`.
const TPM_CC_PCR_EXTEND: u32 = 0x0000_0182;
/// `TPM_CC_Sign`.
const TPM_CC_SIGN: u32 = 0x0000_015D;
/// `TPM_CC_Quote`.
const TPM_CC_QUOTE: u32 = 0x0000_0158;
/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_NULL`.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ST_HASHCHECK`.
const TPM_ST_HASHCHECK: u16 = 0x8024;
/// `TPM_RH_NULL`.
const TPM_RH_NULL: u32 = 0x4000_0007;

/// `TPM2_GetRandom(bytesRequested)`.
pub fn get_random(bytes: u16) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_GET_RANDOM);
    b.u16(bytes);
    b.finish()
}

/// `TPM2_PCR_Extend(pcr)` with one SHA-256 digest, authorized by the empty PCR password.
pub fn pcr_extend_sha256(pcr: u32, digest: &[u8; 32]) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND);
    b.u32(pcr).password_auth();
    b.u32(1).u16(TPM_ALG_SHA256).bytes(digest); // TPML_DIGEST_VALUES with one TPMT_HA
    b.finish()
}

/// `TPM2_PCR_Extend(pcr)` with a SHA-256 and a SHA-384 digest in one command.
pub fn pcr_extend_sha256_sha384(
    pcr: u32,
    d256: &[u8; 32],
    d384: &[u8; 48],
) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND);
    b.u32(pcr).password_auth();
    b.u32(2)
        .u16(TPM_ALG_SHA256)
        .bytes(d256)
        .u16(0x000C)
        .bytes(d384);
    b.finish()
}

/// `TPM2_Sign(key)` over a SHA-256 `digest` with the key's own scheme, no ticket (allowed for
/// unrestricted keys), authorized by the key's empty password.
pub fn sign_sha256(key: u32, digest: &[u8; 32]) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_SIGN);
    b.u32(key).password_auth();
    b.tpm2b(digest)?;
    b.u16(TPM_ALG_NULL); // inScheme: the key's scheme
    b.u16(TPM_ST_HASHCHECK).u32(TPM_RH_NULL).u16(0); // validation: the NULL ticket
    b.finish()
}

/// `TPM2_Quote(key)` over SHA-256 PCRs in `pcr_mask` (bits 0..23), with `nonce` as
/// qualifyingData and the key's own scheme.
pub fn quote_sha256(key: u32, nonce: &[u8], pcr_mask: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_QUOTE);
    b.u32(key).password_auth();
    b.tpm2b(nonce)?;
    b.u16(TPM_ALG_NULL); // inScheme
    let m = pcr_mask.to_le_bytes();
    b.u32(1)
        .u16(TPM_ALG_SHA256)
        .u8(3)
        .u8(m[0])
        .u8(m[1])
        .u8(m[2]);
    b.finish()
}

/// `TPM_CC_PCR_Read`.
const TPM_CC_PCR_READ: u32 = 0x0000_017E;

/// `TPM2_PCR_Read` of the SHA-256 PCRs in `mask` (bits 0..23).
pub fn pcr_read_sha256(mask: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ);
    let m = mask.to_le_bytes();
    b.u32(1)
        .u16(TPM_ALG_SHA256)
        .u8(3)
        .u8(m[0])
        .u8(m[1])
        .u8(m[2]);
    b.finish()
}

/// The SHA-256 PCRs a `TPM2_PCR_Read` response returned (bitmap) and their values in order.
pub fn parse_pcr_read(resp: &[u8]) -> Result<(u32, Vec<[u8; 32]>), ResponseError> {
    let (_, mut r) = parse_response(resp)?;
    let _update_counter = r.u32("pcrUpdateCounter")?;
    let mut returned = 0u32;
    for _ in 0..r.u32("pcrSelectionOut.count")? {
        let hash = r.u16("hash")?;
        let size = usize::from(*r.take(1, "sizeofSelect")?.first().unwrap_or(&0));
        let bitmap = r.take(size, "pcrSelect")?;
        if hash == TPM_ALG_SHA256 {
            for (i, byte) in bitmap.iter().take(3).enumerate() {
                returned |= u32::from(*byte) << (8 * i);
            }
        }
    }
    let count = r.u32("pcrValues.count")?;
    let mut values = Vec::new();
    for _ in 0..count {
        let d = r.tpm2b("digest")?;
        values.push(
            d.try_into()
                .map_err(|_| ResponseError::Malformed("digest size"))?,
        );
    }
    Ok((returned, values))
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// What is wrong with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The TPM answered with this non-zero response code.
    #[error("TPM response code {0:#x}")]
    Tpm(u32),
    /// The bytes do not form the expected structure; the reason names the field.
    #[error("malformed TPM response ({0})")]
    Malformed(&'static str),
}

/// A bounds-checked big-endian reader over response bytes.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ResponseError> {
        let (head, tail) = self
            .data
            .split_at_checked(n)
            .ok_or(ResponseError::Malformed(what))?;
        self.data = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ResponseError> {
        let (head, tail) = self
            .data
            .split_first_chunk::<N>()
            .ok_or(ResponseError::Malformed(what))?;
        self.data = tail;
        Ok(*head)
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ResponseError> {
        self.array::<2>(what).map(u16::from_be_bytes)
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ResponseError> {
        self.array::<4>(what).map(u32::from_be_bytes)
    }

    /// A `TPM2B_*`: `u16` size, then that many bytes.
    pub fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], ResponseError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

/// Checks a response header (size field equal to the length, response code zero) and returns
/// the tag and a reader positioned after the header.
pub fn parse_response(resp: &[u8]) -> Result<(u16, Reader<'_>), ResponseError> {
    let mut r = Reader::new(resp);
    let tag = r.u16("response tag")?;
    let size = r.u32("response size")?;
    let rc = r.u32("response code")?;
    if usize::try_from(size).ok() != Some(resp.len()) {
        return Err(ResponseError::Malformed("response size field"));
    }
    if rc != TPM_RC_SUCCESS {
        return Err(ResponseError::Tpm(rc));
    }
    if tag != TPM_ST_NO_SESSIONS && tag != TPM_ST_SESSIONS {
        return Err(ResponseError::Malformed("response tag"));
    }
    Ok((tag, r))
}

/// The response code of a response, if it has a complete header.
pub fn response_code(resp: &[u8]) -> Option<u32> {
    let code = resp.get(6..HEADER_LEN)?;
    let code: [u8; 4] = code.try_into().ok()?;
    Some(u32::from_be_bytes(code))
}

/// The new object's handle from a `TPM2_CreatePrimary` response.
pub fn parse_create_primary(resp: &[u8]) -> Result<u32, ResponseError> {
    let (tag, mut r) = parse_response(resp)?;
    if tag != TPM_ST_SESSIONS {
        return Err(ResponseError::Malformed("CreatePrimary response tag"));
    }
    r.u32("objectHandle")
}

/// The new object's handle and its `TPMT_PUBLIC` (without the `TPM2B` size) from a
/// `TPM2_CreatePrimary` response.
pub fn parse_create_primary_public(resp: &[u8]) -> Result<(u32, Vec<u8>), ResponseError> {
    let (tag, mut r) = parse_response(resp)?;
    if tag != TPM_ST_SESSIONS {
        return Err(ResponseError::Malformed("CreatePrimary response tag"));
    }
    let handle = r.u32("objectHandle")?;
    let _parameter_size = r.u32("parameterSize")?;
    let public = r.tpm2b("outPublic")?;
    Ok((handle, public.to_vec()))
}

/// The `TPM2B_ATTEST` contents (the TPMS_ATTEST bytes that are signed) and the marshalled
/// `TPMT_SIGNATURE` from a `TPM2_Quote` response.
pub fn parse_quote(resp: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ResponseError> {
    let (tag, mut r) = parse_response(resp)?;
    if tag != TPM_ST_SESSIONS {
        return Err(ResponseError::Malformed("Quote response tag"));
    }
    let parameter_size = r.u32("parameterSize")? as usize;
    let params = r.take(parameter_size, "parameters")?;
    let mut p = Reader::new(params);
    let attest = p.tpm2b("quoted")?.to_vec();
    let signature = p.take(p.remaining(), "signature")?.to_vec();
    Ok((attest, signature))
}

/// A response that carries no parameters the caller needs (Startup, EvictControl, ...).
pub fn parse_empty(resp: &[u8]) -> Result<(), ResponseError> {
    parse_response(resp).map(|_| ())
}

/// The `TPMT_PUBLIC` (without its `TPM2B` size) from a `TPM2_ReadPublic` response.
pub fn parse_read_public(resp: &[u8]) -> Result<Vec<u8>, ResponseError> {
    let (tag, mut r) = parse_response(resp)?;
    if tag != TPM_ST_NO_SESSIONS {
        return Err(ResponseError::Malformed("ReadPublic response tag"));
    }
    let public = r.tpm2b("outPublic")?;
    let _name = r.tpm2b("name")?;
    let _qualified_name = r.tpm2b("qualifiedName")?;
    if r.remaining() != 0 {
        return Err(ResponseError::Malformed("trailing bytes after ReadPublic"));
    }
    if public.is_empty() {
        return Err(ResponseError::Malformed("empty outPublic"));
    }
    Ok(public.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_clear_bytes() {
        let cmd = startup(StartupType::Clear).unwrap();
        assert_eq!(
            cmd,
            [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0],
            "TPM2_Startup(CLEAR)"
        );
    }

    #[test]
    fn evict_control_layout() {
        let cmd = evict_control(0x8000_0000, 0x8101_0001).unwrap();
        // header 10 + 2 handles 8 + auth size 4 + auth 9 + persistent 4
        assert_eq!(cmd.len(), 35);
        assert_eq!(&cmd[2..6], &35u32.to_be_bytes());
        assert_eq!(&cmd[18..22], &9u32.to_be_bytes());
        assert_eq!(&cmd[22..26], &TPM_RS_PW.to_be_bytes());
        assert_eq!(&cmd[31..35], &0x8101_0001u32.to_be_bytes());
    }

    #[test]
    fn response_checks() {
        // size field says 11, length 10
        let bad = [0x80, 0x01, 0, 0, 0, 11, 0, 0, 0, 0];
        assert_eq!(
            parse_empty(&bad),
            Err(ResponseError::Malformed("response size field"))
        );
        let short = [0x80, 0x01, 0, 0];
        assert!(matches!(
            parse_empty(&short),
            Err(ResponseError::Malformed(_))
        ));
        let err = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01];
        assert_eq!(parse_empty(&err), Err(ResponseError::Tpm(0x101)));
        assert_eq!(response_code(&err), Some(0x101));
        assert_eq!(response_code(&short), None);
        let ok = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0];
        assert_eq!(parse_empty(&ok), Ok(()));
    }

    #[test]
    fn read_public_truncated() {
        // outPublic claims 100 bytes but none follow
        let resp = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0, 100];
        assert_eq!(
            parse_read_public(&resp),
            Err(ResponseError::Malformed("outPublic"))
        );
    }
}
