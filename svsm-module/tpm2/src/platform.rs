//! The platform-hierarchy commands VMPL0 issues to give the vTPM its identity and keep it: NV
//! indices for the EK certificates (defined, written and write-locked under the platform
//! authorization), the hierarchy lock that takes the platform hierarchy away from the guest,
//! and the two reads that check the result (NV_ReadPublic, GetCapability of fixed
//! properties). Structure names and layouts are TPM 2.0 Library Part 2's; command layouts
//! are Part 3's (§31 NV, §24.2 HierarchyControl, §30.2 GetCapability).

use crate::command::{parse_response, CommandBuilder, Reader, ResponseError, TooLarge};
use crate::command::{TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS};
use alloc::vec::Vec;

/// `TPM_RH_PLATFORM`.
pub const TPM_RH_PLATFORM: u32 = 0x4000_000C;

const TPM_CC_HIERARCHY_CONTROL: u32 = 0x0000_0121;
const TPM_CC_NV_UNDEFINE_SPACE: u32 = 0x0000_0122;
const TPM_CC_NV_DEFINE_SPACE: u32 = 0x0000_012A;
const TPM_CC_NV_WRITE: u32 = 0x0000_0137;
const TPM_CC_NV_WRITE_LOCK: u32 = 0x0000_0138;
const TPM_CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
const TPM_CC_NV_READ: u32 = 0x0000_014E;
const TPM_CC_GET_CAPABILITY: u32 = 0x0000_017A;
/// `TPM_CC_Startup`: the command after which VMPL0 takes the platform hierarchy again.
pub const TPM_CC_STARTUP: u32 = 0x0000_0144;

/// `TPM_CAP_TPM_PROPERTIES`.
const TPM_CAP_TPM_PROPERTIES: u32 = 0x0000_0006;
/// `TPM_ALG_SHA256`.
const TPM_ALG_SHA256: u16 = 0x000B;

/// `TPM_RC_NV_DEFINED` (format 0, 0x04C): the index already exists.
pub const TPM_RC_NV_DEFINED: u32 = 0x0000_014C;
/// `TPM_RC_HIERARCHY` as HierarchyControl reports it for its first handle (format 1, handle 1):
/// the platform hierarchy is already disabled.
pub const TPM_RC_HIERARCHY_HANDLE_1: u32 = 0x0000_0185;
/// `TPM_RC_INITIALIZE`: the TPM has not had `TPM2_Startup` yet.
pub const TPM_RC_INITIALIZE: u32 = 0x0000_0100;
/// `TPM_RC_HANDLE` for the first handle (format 1, handle 1): no such index.
pub const TPM_RC_HANDLE_1: u32 = 0x0000_018B;

/// Largest `TPM2B_MAX_NV_BUFFER` the module writes in one `TPM2_NV_Write` (libtpms's
/// `MAX_NV_BUFFER_SIZE` is 1024; the reference code's minimum).
pub const NV_WRITE_CHUNK: usize = 1024;

/// `TPMA_NV` bits (Part 2 §13.4).
pub mod nv_attr {
    /// The index may be written with platform authorization.
    pub const PPWRITE: u32 = 1 << 0;
    /// `TPM2_NV_WriteLock` locks the index until it is redefined (never, for platform indices
    /// once the platform hierarchy is gone).
    pub const WRITEDEFINE: u32 = 1 << 13;
    /// Readable with platform authorization.
    pub const PPREAD: u32 = 1 << 16;
    /// Readable with owner authorization.
    pub const OWNERREAD: u32 = 1 << 17;
    /// Readable with the index's own (empty) authValue.
    pub const AUTHREAD: u32 = 1 << 18;
    /// Not subject to dictionary-attack protection.
    pub const NO_DA: u32 = 1 << 25;
    /// Set by the TPM: the index is write-locked.
    pub const WRITELOCKED: u32 = 1 << 11;
    /// Set by the TPM: the index has been written.
    pub const WRITTEN: u32 = 1 << 29;
    /// Defined with platform authorization (the definer must set it).
    pub const PLATFORMCREATE: u32 = 1 << 30;
}

/// Attributes of an EK certificate index as the module defines it: written under platform
/// authorization once and then locked (PPWRITE | WRITEDEFINE), readable by anyone (AUTHREAD
/// with an empty authValue, OWNERREAD, PPREAD), NO_DA, and PLATFORMCREATE (required when the
/// platform defines an index: only the platform can delete it).
pub const EK_CERT_NV_ATTRIBUTES: u32 = nv_attr::PLATFORMCREATE
    | nv_attr::PPWRITE
    | nv_attr::WRITEDEFINE
    | nv_attr::PPREAD
    | nv_attr::OWNERREAD
    | nv_attr::AUTHREAD
    | nv_attr::NO_DA;

/// `TPM2_NV_DefineSpace(TPM_RH_PLATFORM)` of an ordinary index with an empty authValue, no
/// policy, nameAlg SHA-256, `attributes` and `size` bytes.
pub fn nv_define_space_platform(
    index: u32,
    attributes: u32,
    size: u16,
) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_NV_DEFINE_SPACE);
    b.u32(TPM_RH_PLATFORM).password_auth();
    b.u16(0); // auth: empty TPM2B_AUTH
              // publicInfo: TPM2B_NV_PUBLIC { nvIndex, nameAlg, attributes, authPolicy (empty), dataSize }
    b.u16(4 + 2 + 4 + 2 + 2)
        .u32(index)
        .u16(TPM_ALG_SHA256)
        .u32(attributes)
        .u16(0)
        .u16(size);
    b.finish()
}

/// `TPM2_NV_UndefineSpace(authHandle = TPM_RH_PLATFORM, nvIndex)`.
pub fn nv_undefine_space_platform(index: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_NV_UNDEFINE_SPACE);
    b.u32(TPM_RH_PLATFORM).u32(index).password_auth();
    b.finish()
}

/// `TPM2_NV_Write(authHandle = TPM_RH_PLATFORM, nvIndex, data, offset)`.
pub fn nv_write_platform(index: u32, data: &[u8], offset: u16) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_NV_WRITE);
    b.u32(TPM_RH_PLATFORM).u32(index).password_auth();
    b.tpm2b(data)?.u16(offset);
    b.finish()
}

/// `TPM2_NV_WriteLock(authHandle = TPM_RH_PLATFORM, nvIndex)`.
pub fn nv_write_lock_platform(index: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_NV_WRITE_LOCK);
    b.u32(TPM_RH_PLATFORM).u32(index).password_auth();
    b.finish()
}

/// `TPM2_HierarchyControl(authHandle = TPM_RH_PLATFORM, enable = TPM_RH_PLATFORM, state =
/// NO)`: clears phEnable until the next `TPM2_Startup`. Nothing but a Startup sets it again.
pub fn disable_platform_hierarchy() -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_HIERARCHY_CONTROL);
    b.u32(TPM_RH_PLATFORM).password_auth();
    b.u32(TPM_RH_PLATFORM).u8(0);
    b.finish()
}

/// `TPM2_NV_ReadPublic(nvIndex)`.
pub fn nv_read_public(index: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_NV_READ_PUBLIC);
    b.u32(index);
    b.finish()
}

/// `TPM2_NV_Read(authHandle = nvIndex, nvIndex, size, offset)` with the index's own (empty)
/// authValue: how anyone reads an AUTHREAD index such as an EK certificate.
pub fn nv_read(index: u32, size: u16, offset: u16) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_SESSIONS, TPM_CC_NV_READ);
    b.u32(index).u32(index).password_auth();
    b.u16(size).u16(offset);
    b.finish()
}

/// The data of a `TPM2_NV_Read` response.
pub fn parse_nv_read(resp: &[u8]) -> Result<&[u8], ResponseError> {
    let (tag, mut r) = parse_response(resp)?;
    if tag != TPM_ST_SESSIONS {
        return Err(ResponseError::Malformed("NV_Read response tag"));
    }
    let parameter_size = r.u32("parameterSize")?;
    let params = r.take(parameter_size as usize, "parameters")?;
    let mut p = Reader::new(params);
    let data = p.tpm2b("data")?;
    if p.remaining() != 0 {
        return Err(ResponseError::Malformed(
            "trailing bytes in NV_Read parameters",
        ));
    }
    Ok(data)
}

/// The public area of an NV index (`TPMS_NV_PUBLIC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvPublic {
    /// The index.
    pub index: u32,
    /// Its name algorithm.
    pub name_alg: u16,
    /// `TPMA_NV`.
    pub attributes: u32,
    /// Its authPolicy.
    pub auth_policy: Vec<u8>,
    /// Its size in bytes.
    pub data_size: u16,
}

/// Parses a `TPM2_NV_ReadPublic` response.
pub fn parse_nv_read_public(resp: &[u8]) -> Result<NvPublic, ResponseError> {
    let (tag, mut r) = parse_response(resp)?;
    if tag != TPM_ST_NO_SESSIONS {
        return Err(ResponseError::Malformed("NV_ReadPublic response tag"));
    }
    let public = r.tpm2b("nvPublic")?;
    let _name = r.tpm2b("nvName")?;
    if r.remaining() != 0 {
        return Err(ResponseError::Malformed(
            "trailing bytes after NV_ReadPublic",
        ));
    }
    let mut p = Reader::new(public);
    let nv = NvPublic {
        index: p.u32("nvIndex")?,
        name_alg: p.u16("nameAlg")?,
        attributes: p.u32("attributes")?,
        auth_policy: p.tpm2b("authPolicy")?.to_vec(),
        data_size: p.u16("dataSize")?,
    };
    if p.remaining() != 0 {
        return Err(ResponseError::Malformed("trailing bytes in nvPublic"));
    }
    Ok(nv)
}

/// `TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, first, count)`.
pub fn get_tpm_properties(first: u32, count: u32) -> Result<Vec<u8>, TooLarge> {
    let mut b = CommandBuilder::new(TPM_ST_NO_SESSIONS, TPM_CC_GET_CAPABILITY);
    b.u32(TPM_CAP_TPM_PROPERTIES).u32(first).u32(count);
    b.finish()
}

/// The `(property, value)` pairs of a `TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES)` response.
pub fn parse_tpm_properties(resp: &[u8]) -> Result<Vec<(u32, u32)>, ResponseError> {
    let (_, mut r) = parse_response(resp)?;
    let _more = r.take(1, "moreData")?;
    if r.u32("capability")? != TPM_CAP_TPM_PROPERTIES {
        return Err(ResponseError::Malformed("capability"));
    }
    let count = r.u32("count")?;
    // Each entry is 8 bytes: a count the response cannot hold is refused before allocating.
    if usize::try_from(count).map_or(true, |c| c.saturating_mul(8) > r.remaining()) {
        return Err(ResponseError::Malformed("property count"));
    }
    let mut out = Vec::new();
    for _ in 0..count {
        out.push((r.u32("property")?, r.u32("value")?));
    }
    Ok(out)
}

/// The command code of a command (`None` if the header is incomplete).
pub fn command_code(command: &[u8]) -> Option<u32> {
    let code: [u8; 4] = command.get(6..10)?.try_into().ok()?;
    Some(u32::from_be_bytes(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_value() {
        // PLATFORMCREATE | PPWRITE | WRITEDEFINE | PPREAD | OWNERREAD | AUTHREAD | NO_DA
        assert_eq!(EK_CERT_NV_ATTRIBUTES, 0x4207_2001);
    }

    #[test]
    fn define_space_layout() {
        let cmd = nv_define_space_platform(0x01C0_0002, EK_CERT_NV_ATTRIBUTES, 1200).unwrap();
        // header 10 + handle 4 + auth area 4+9 + auth 2 + nvPublic 2+14
        assert_eq!(cmd.len(), 45);
        assert_eq!(&cmd[10..14], &TPM_RH_PLATFORM.to_be_bytes());
        assert_eq!(&cmd[29..31], &14u16.to_be_bytes());
        assert_eq!(&cmd[31..35], &0x01C0_0002u32.to_be_bytes());
        assert_eq!(&cmd[43..45], &1200u16.to_be_bytes());
        assert_eq!(command_code(&cmd), Some(TPM_CC_NV_DEFINE_SPACE));
    }

    #[test]
    fn hierarchy_control_layout() {
        let cmd = disable_platform_hierarchy().unwrap();
        assert_eq!(cmd.len(), 10 + 4 + 13 + 5);
        assert_eq!(&cmd[27..31], &TPM_RH_PLATFORM.to_be_bytes());
        assert_eq!(cmd[31], 0);
    }

    #[test]
    fn nv_public_parses_and_refuses_garbage() {
        let mut public = Vec::new();
        public.extend_from_slice(&0x01C0_0002u32.to_be_bytes());
        public.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        public.extend_from_slice(&(EK_CERT_NV_ATTRIBUTES | nv_attr::WRITTEN).to_be_bytes());
        public.extend_from_slice(&0u16.to_be_bytes());
        public.extend_from_slice(&900u16.to_be_bytes());
        let mut body = Vec::new();
        body.extend_from_slice(&(public.len() as u16).to_be_bytes());
        body.extend_from_slice(&public);
        body.extend_from_slice(&[0, 2, 0, 0xB]); // name
        let mut resp = Vec::from([0x80, 0x01]);
        resp.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
        resp.extend_from_slice(&[0, 0, 0, 0]);
        resp.extend_from_slice(&body);
        let nv = parse_nv_read_public(&resp).unwrap();
        assert_eq!(nv.index, 0x01C0_0002);
        assert_eq!(nv.data_size, 900);
        for cut in 10..resp.len() {
            let mut short = resp[..cut].to_vec();
            let size = short.len() as u32;
            short[2..6].copy_from_slice(&size.to_be_bytes());
            assert!(parse_nv_read_public(&short).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn property_count_is_bounded() {
        // moreData, capability, count = 0xFFFFFFFF, nothing after
        let mut resp = Vec::from([0x80, 0x01, 0, 0, 0, 19, 0, 0, 0, 0, 0]);
        resp.extend_from_slice(&TPM_CAP_TPM_PROPERTIES.to_be_bytes());
        resp.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            parse_tpm_properties(&resp),
            Err(ResponseError::Malformed("property count"))
        );
    }
}
