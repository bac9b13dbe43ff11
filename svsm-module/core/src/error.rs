//! Every error a guest request can end in, and its SVSM result code. The mapping is one
//! exhaustive `match` with no catch-all arm: a new variant anywhere in the chain does not compile
//! until it has a code. A table test pins every mapping.

use crate::platform::{MemoryError, PspError};
use crate::tpm::TpmEngineError;
use crate::vault::VaultError;
use svsm_abi::attest::{AttestRequestError, ManifestError};
use svsm_abi::svsm::ResultCode;
use svsm_abi::vault::{VaultRequestError, VaultStatus};
use svsm_abi::vtpm::VtpmBufferError;
use svsm_abi::Guid;

/// Why an SVSM call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SvsmError {
    /// The protocol number is not served.
    #[error("protocol {0:#x} is not served")]
    UnsupportedProtocol(u32),
    /// The call id is not served by the protocol.
    #[error("call {call} of protocol {protocol:#x} is not served")]
    UnsupportedCall {
        /// Protocol.
        protocol: u32,
        /// Call id.
        call: u32,
    },
    /// A guest address named in the request is invalid or inaccessible.
    #[error("guest memory: {0}")]
    Memory(#[from] MemoryError),
    /// An attestation request is malformed.
    #[error("attestation request: {0}")]
    AttestRequest(#[from] AttestRequestError),
    /// SVSM_ATTEST_SINGLE_SERVICE named a service this module does not run.
    #[error("no service with GUID {0}")]
    UnknownService(Guid),
    /// SVSM_ATTEST_SINGLE_SERVICE asked for a manifest version the service does not have.
    #[error("manifest version {0} is not available")]
    ManifestVersion(u32),
    /// An attestation output buffer is too small; the sizes needed are returned in RCX/RDX/R8.
    #[error("attestation buffers too small")]
    BuffersTooSmall,
    /// Building the services manifest failed.
    #[error("services manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A vTPM request buffer is malformed.
    #[error("vTPM request: {0}")]
    VtpmBuffer(#[from] VtpmBufferError),
    /// The TPM engine failed.
    #[error("TPM engine: {0}")]
    Tpm(#[from] TpmEngineError),
    /// A TPM command issued by the module itself (not the guest) returned a TPM error code.
    #[error("internal TPM command failed with response code {0:#x}")]
    TpmResponse(u32),
    /// The secure processor failed.
    #[error("secure processor: {0}")]
    Psp(#[from] PspError),
    /// A vault request is malformed.
    #[error("vault request: {0}")]
    VaultRequest(#[from] VaultRequestError),
    /// A vault operation failed.
    #[error("{0}")]
    Vault(#[from] VaultError),
}

impl SvsmError {
    /// The result code the guest sees in RAX (SVSM spec §5 Table 4).
    pub const fn result_code(&self) -> ResultCode {
        match self {
            SvsmError::UnsupportedProtocol(_) => ResultCode::UnsupportedProtocol,
            SvsmError::UnsupportedCall { .. } => ResultCode::UnsupportedCall,
            SvsmError::Memory(e) => match e {
                MemoryError::Overflow { .. }
                | MemoryError::NotPresent(_)
                | MemoryError::NoAccess { .. }
                | MemoryError::NotValidated(_) => ResultCode::InvalidAddress,
            },
            SvsmError::AttestRequest(e) => match e {
                AttestRequestError::Length { .. } | AttestRequestError::ReservedNonZero { .. } => {
                    ResultCode::InvalidParameter
                }
            },
            // coconut-svsm answers an unknown service GUID this way; guests rely on nothing else.
            SvsmError::UnknownService(_) => ResultCode::UnsupportedProtocol,
            SvsmError::ManifestVersion(_) => ResultCode::InvalidParameter,
            // The spec requires INVALID_PARAMETER here and Linux relies on it (sizes in RCX..R8).
            SvsmError::BuffersTooSmall => ResultCode::InvalidParameter,
            SvsmError::Manifest(e) => match e {
                ManifestError::Truncated { .. }
                | ManifestError::BadGuid(_)
                | ManifestError::TotalSize { .. }
                | ManifestError::EntryOutOfRange { .. }
                | ManifestError::TooManyEntries(_)
                | ManifestError::EkCaLength(_)
                | ManifestError::UnsupportedVersion(_)
                | ManifestError::UnknownState(_)
                | ManifestError::InconsistentState
                | ManifestError::Reserved(_)
                | ManifestError::BufferTooSmall { .. } => ResultCode::InvalidRequest,
            },
            SvsmError::VtpmBuffer(e) => match e {
                VtpmBufferError::UnsupportedCommand(_) => ResultCode::UnsupportedCall,
                VtpmBufferError::Truncated(_)
                | VtpmBufferError::Oversized(_)
                | VtpmBufferError::UnknownCommand(_)
                | VtpmBufferError::Locality(_)
                | VtpmBufferError::SizeTooLarge { .. }
                | VtpmBufferError::SizePastEnd { .. } => ResultCode::InvalidParameter,
            },
            SvsmError::Tpm(e) => match e {
                TpmEngineError::CommandTooLarge { .. } => ResultCode::InvalidParameter,
                TpmEngineError::InUse => ResultCode::Busy,
                TpmEngineError::NotPoweredOn
                | TpmEngineError::ResponseTooLarge { .. }
                | TpmEngineError::Engine(_)
                | TpmEngineError::StateExport
                | TpmEngineError::StateCorrupt
                | TpmEngineError::PlatformLock(_) => ResultCode::InvalidRequest,
            },
            SvsmError::TpmResponse(_) => ResultCode::InvalidRequest,
            SvsmError::Psp(e) => match e {
                // The host did not deliver: nothing was done, the guest may retry.
                PspError::Transport => ResultCode::Busy,
                PspError::CertificatesTooLarge(_) => ResultCode::InvalidParameter,
                PspError::Refused(_) | PspError::BadReply | PspError::ChannelDisabled => {
                    ResultCode::InvalidRequest
                }
            },
            SvsmError::VaultRequest(e) => match e {
                VaultRequestError::Truncated(_)
                | VaultRequestError::TrailingBytes(_)
                | VaultRequestError::Version(_)
                | VaultRequestError::UnknownOp(_)
                | VaultRequestError::UnknownKind(_)
                | VaultRequestError::UnknownUsage(_)
                | VaultRequestError::FieldTooLong(_)
                | VaultRequestError::Reserved(_)
                | VaultRequestError::BadName => ResultCode::InvalidParameter,
            },
            SvsmError::Vault(e) => match e {
                VaultError::Status(status) => vault_status_code(*status),
                VaultError::Unavailable | VaultError::NoTpm => ResultCode::InvalidRequest,
            },
        }
    }
}

/// Vault statuses are protocol-defined errors 0x8000_1000 + n.
const fn vault_status_code(status: VaultStatus) -> ResultCode {
    match status {
        VaultStatus::KeyNotFound
        | VaultStatus::UsageNotAllowed
        | VaultStatus::WrongKeyKind
        | VaultStatus::AuthenticationFailed
        | VaultStatus::ResponseTooSmall
        | VaultStatus::VaultFull
        | VaultStatus::UnknownContext
        | VaultStatus::PcrMismatch
        | VaultStatus::EntropyFailed
        | VaultStatus::BadPublicKey
        | VaultStatus::ForeignBlob
        | VaultStatus::OwnerMismatch
        | VaultStatus::WrongInstance
        | VaultStatus::WrongBoot
        | VaultStatus::NotPersisted
        | VaultStatus::DuplicateName => ResultCode::ProtocolError(status as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svsm_abi::vtpm::PlatformCommand;

    #[test]
    fn every_error_maps_to_its_pinned_code() {
        use ResultCode::*;
        let table: &[(SvsmError, ResultCode)] = &[
            (SvsmError::UnsupportedProtocol(9), UnsupportedProtocol),
            (
                SvsmError::UnsupportedCall {
                    protocol: 0,
                    call: 99,
                },
                UnsupportedCall,
            ),
            (
                SvsmError::Memory(MemoryError::Overflow { gpa: 0, len: 1 }),
                InvalidAddress,
            ),
            (
                SvsmError::Memory(MemoryError::NotPresent(0)),
                InvalidAddress,
            ),
            (
                SvsmError::Memory(MemoryError::NoAccess { gpa: 0, vmpl: 1 }),
                InvalidAddress,
            ),
            (
                SvsmError::Memory(MemoryError::NotValidated(0)),
                InvalidAddress,
            ),
            (
                SvsmError::AttestRequest(AttestRequestError::Length {
                    actual: 0,
                    expected: 64,
                }),
                InvalidParameter,
            ),
            (
                SvsmError::AttestRequest(AttestRequestError::ReservedNonZero { field: "x" }),
                InvalidParameter,
            ),
            (
                SvsmError::UnknownService(Guid::default()),
                UnsupportedProtocol,
            ),
            (SvsmError::ManifestVersion(1), InvalidParameter),
            (SvsmError::BuffersTooSmall, InvalidParameter),
            (
                SvsmError::Manifest(ManifestError::TooManyEntries(1)),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::BufferTooSmall {
                    needed: 1,
                    available: 0,
                }),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::BadGuid(Guid::default())),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::TotalSize {
                    declared: 0,
                    actual: 1,
                }),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::Truncated {
                    field: "x",
                    needed: 1,
                    available: 0,
                }),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::EntryOutOfRange {
                    index: 0,
                    offset: 0,
                    size: 0,
                }),
                InvalidRequest,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::UnsupportedCommand(
                    PlatformCommand::PowerOn,
                )),
                UnsupportedCall,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::UnknownCommand(19)),
                InvalidParameter,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::Locality(1)),
                InvalidParameter,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::SizeTooLarge {
                    size: 5000,
                    max: 4087,
                }),
                InvalidParameter,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::SizePastEnd {
                    size: 9,
                    available: 0,
                }),
                InvalidParameter,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::Truncated(3)),
                InvalidParameter,
            ),
            (
                SvsmError::VtpmBuffer(VtpmBufferError::Oversized(5000)),
                InvalidParameter,
            ),
            (SvsmError::Tpm(TpmEngineError::NotPoweredOn), InvalidRequest),
            (
                SvsmError::Tpm(TpmEngineError::CommandTooLarge { size: 1, max: 0 }),
                InvalidParameter,
            ),
            (
                SvsmError::Tpm(TpmEngineError::ResponseTooLarge {
                    size: 1,
                    capacity: 0,
                }),
                InvalidRequest,
            ),
            (SvsmError::Tpm(TpmEngineError::Engine(9)), InvalidRequest),
            (SvsmError::Tpm(TpmEngineError::StateExport), InvalidRequest),
            (SvsmError::Tpm(TpmEngineError::StateCorrupt), InvalidRequest),
            (
                SvsmError::Tpm(TpmEngineError::PlatformLock(0x101)),
                InvalidRequest,
            ),
            (SvsmError::Tpm(TpmEngineError::InUse), Busy),
            (SvsmError::TpmResponse(0x101), InvalidRequest),
            (SvsmError::Psp(PspError::Transport), Busy),
            (
                SvsmError::Psp(PspError::CertificatesTooLarge(1)),
                InvalidParameter,
            ),
            (SvsmError::Psp(PspError::Refused(0x16)), InvalidRequest),
            (SvsmError::Psp(PspError::BadReply), InvalidRequest),
            (SvsmError::Psp(PspError::ChannelDisabled), InvalidRequest),
            (
                SvsmError::VaultRequest(VaultRequestError::UnknownOp(99)),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::Truncated("x")),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::TrailingBytes(1)),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::Version(2)),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::UnknownKind(9)),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::UnknownUsage(9)),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::FieldTooLong("x")),
                InvalidParameter,
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::Reserved("x")),
                InvalidParameter,
            ),
            (SvsmError::Vault(VaultError::Unavailable), InvalidRequest),
            (SvsmError::Vault(VaultError::NoTpm), InvalidRequest),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::KeyNotFound)),
                ProtocolError(1),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::UsageNotAllowed)),
                ProtocolError(2),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::WrongKeyKind)),
                ProtocolError(3),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::AuthenticationFailed)),
                ProtocolError(4),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::ResponseTooSmall)),
                ProtocolError(5),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::VaultFull)),
                ProtocolError(6),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::UnknownContext)),
                ProtocolError(7),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::PcrMismatch)),
                ProtocolError(8),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::EntropyFailed)),
                ProtocolError(9),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::BadPublicKey)),
                ProtocolError(10),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::ForeignBlob)),
                ProtocolError(11),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::OwnerMismatch)),
                ProtocolError(12),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::WrongInstance)),
                ProtocolError(13),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::WrongBoot)),
                ProtocolError(14),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::NotPersisted)),
                ProtocolError(15),
            ),
            (
                SvsmError::Vault(VaultError::Status(VaultStatus::DuplicateName)),
                ProtocolError(16),
            ),
            (
                SvsmError::VaultRequest(VaultRequestError::BadName),
                InvalidParameter,
            ),
            (
                SvsmError::Manifest(ManifestError::UnsupportedVersion(1)),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::UnknownState(9)),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::InconsistentState),
                InvalidRequest,
            ),
            (
                SvsmError::Manifest(ManifestError::Reserved("flags")),
                InvalidRequest,
            ),
        ];
        for status in [VaultStatus::KeyNotFound, VaultStatus::ForeignBlob] {
            assert_eq!(
                SvsmError::Vault(VaultError::Status(status))
                    .result_code()
                    .to_u32(),
                status.result_code()
            );
        }
        for (err, code) in table {
            assert_eq!(err.result_code(), *code, "{err:?}");
        }
    }
}
