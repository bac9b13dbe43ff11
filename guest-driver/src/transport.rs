//! The transport seam: how a guest issues an SVSM call and where its request buffers live.

use svsm_abi::svsm::{CallRegisters, ResultCode};

/// Every way a transport can fail (below the SVSM's own result codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The SVSM never ran the call: CALL_PENDING was still set afterwards.
    #[error("the SVSM did not take the call (CALL_PENDING still set)")]
    NotTaken,
    /// The hypervisor answered the run-VMPL request with an error.
    #[error("the hypervisor refused to run VMPL0 (GHCB response {0:#x})")]
    Hypervisor(u64),
    /// The TPM device failed (the OS error number).
    #[error("the TPM device failed (OS error {0})")]
    TpmDevice(i32),
    /// The TPM refused the vault's vendor command, or its answer was malformed (`u32::MAX`).
    #[error("the TPM answered {0:#x} to the vault's vendor command")]
    TpmResponse(u32),
    /// A buffer access lies outside the driver's buffer.
    #[error("buffer access at {offset:#x}+{len:#x} outside the {size:#x}-byte driver buffer")]
    BufferRange {
        /// Offset.
        offset: usize,
        /// Length.
        len: usize,
        /// Buffer size.
        size: usize,
    },
}

/// Why a client call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The SVSM answered with an error result code.
    #[error("the SVSM returned {0:?}")]
    Svsm(ResultCode),
    /// The SVSM kept answering INCOMPLETE/BUSY.
    #[error("the SVSM stayed busy after {0} attempts")]
    Busy(usize),
    /// The protocol (or version) is not offered.
    #[error("protocol {0:#x} is not offered by this SVSM")]
    ProtocolUnavailable(u32),
    /// The vTPM does not report TPM_SEND_COMMAND.
    #[error("the vTPM does not support TPM_SEND_COMMAND")]
    NoSendCommand,
    /// A vTPM buffer could not be built or the response was malformed.
    #[error("vTPM buffer: {0}")]
    VtpmBuffer(#[from] svsm_abi::vtpm::VtpmBufferError),
    /// The caller's response buffer is too small.
    #[error("response of {needed} bytes does not fit {available}")]
    ResponseTooLarge {
        /// Needed.
        needed: usize,
        /// Available.
        available: usize,
    },
    /// The driver buffer cannot hold what the SVSM needs to return.
    #[error("attestation needs {needed} bytes of buffer, the driver has {available}")]
    BufferTooSmall {
        /// Needed.
        needed: usize,
        /// Available.
        available: usize,
    },
    /// The SVSM reported an impossible size.
    #[error("the SVSM reported an invalid {0} size")]
    BadSize(&'static str),
}

/// How many times INCOMPLETE/BUSY is retried before giving up.
pub const MAX_BUSY_RETRIES: usize = 64;

/// A way to issue SVSM calls plus a driver-owned guest buffer for requests and responses.
pub trait SvsmTransport {
    /// Issues one SVSM call: registers in, result registers out. INCOMPLETE/BUSY are returned
    /// to the caller unchanged; [`call`] retries them.
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError>;
    /// GPA of the driver buffer (page aligned).
    fn buffer_gpa(&self) -> u64;
    /// Size of the driver buffer.
    fn buffer_len(&self) -> usize;
    /// Writes into the driver buffer.
    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError>;
    /// Reads from the driver buffer.
    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError>;
}

/// Issues a call, re-issuing it while the SVSM answers INCOMPLETE or BUSY (as Linux does), and
/// returns the result code with the output registers.
pub fn call<T: SvsmTransport + ?Sized>(
    transport: &mut T,
    regs: CallRegisters,
) -> Result<(ResultCode, CallRegisters), DriverError> {
    for _ in 0..MAX_BUSY_RETRIES {
        let mut r = regs;
        transport.raw_call(&mut r)?;
        match ResultCode::from_rax(r.rax) {
            ResultCode::Incomplete | ResultCode::Busy => continue,
            code => return Ok((code, r)),
        }
    }
    Err(DriverError::Busy(MAX_BUSY_RETRIES))
}

/// Like [`call`], but any non-success code is an error.
pub fn call_ok<T: SvsmTransport + ?Sized>(
    transport: &mut T,
    regs: CallRegisters,
) -> Result<CallRegisters, DriverError> {
    match call(transport, regs)? {
        (code, r) if code.is_success() => Ok(r),
        (code, _) => Err(DriverError::Svsm(code)),
    }
}
