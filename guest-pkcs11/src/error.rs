//! Every way a PKCS#11 call can fail, mapped to its `CKR_*` code by one exhaustive match.

use cryptoki_sys as ck;
use guest_driver::vault::VaultClientError;
use svsm_abi::vault::VaultStatus;

/// Why a call failed. Each variant is one `CKR_*` value ([`Error::rv`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `C_Initialize` has not been called.
    #[error("the module is not initialized")]
    NotInitialized,
    /// `C_Initialize` was called twice.
    #[error("the module is already initialized")]
    AlreadyInitialized,
    /// A NULL pointer or an inconsistent argument.
    #[error("bad arguments")]
    ArgumentsBad,
    /// The application asked for its own mutexes and not OS locking, which this module uses.
    #[error("the module needs OS locking")]
    CantLock,
    /// No such slot.
    #[error("no such slot")]
    SlotInvalid,
    /// No such session.
    #[error("no such session")]
    SessionHandleInvalid,
    /// Only serial sessions exist.
    #[error("parallel sessions are not supported")]
    SessionParallelNotSupported,
    /// Creating or destroying a token object needs a read-write session.
    #[error("the session is read-only")]
    SessionReadOnly,
    /// No such object.
    #[error("no such object")]
    ObjectHandleInvalid,
    /// No such key.
    #[error("no such key")]
    KeyHandleInvalid,
    /// An operation of this kind is already active in the session.
    #[error("an operation is already active")]
    OperationActive,
    /// No operation of this kind is active.
    #[error("no operation is active")]
    OperationNotInitialized,
    /// The mechanism is not one this token has.
    #[error("mechanism not supported")]
    MechanismInvalid,
    /// The mechanism's parameters are malformed or not supported.
    #[error("mechanism parameter not supported")]
    MechanismParamInvalid,
    /// The key is of another type than the mechanism needs.
    #[error("key type does not fit the mechanism")]
    KeyTypeInconsistent,
    /// The key's attributes do not allow the operation.
    #[error("the key may not do this")]
    KeyFunctionNotPermitted,
    /// The attribute does not exist for this object, or in a template, is not one this token
    /// takes.
    #[error("attribute type invalid")]
    AttributeTypeInvalid,
    /// An attribute value is malformed or not supported.
    #[error("attribute value invalid")]
    AttributeValueInvalid,
    /// The attribute cannot be set (the vault assigns or fixes it).
    #[error("attribute read-only")]
    AttributeReadOnly,
    /// The attribute's value is secret.
    #[error("attribute sensitive")]
    AttributeSensitive,
    /// A template lacks an attribute the operation needs.
    #[error("template incomplete")]
    TemplateIncomplete,
    /// A template asks for something this token cannot give (e.g. an extractable key).
    #[error("template inconsistent")]
    TemplateInconsistent,
    /// The input is too long or too short.
    #[error("data length out of range")]
    DataLenRange,
    /// Authenticated decryption failed.
    #[error("encrypted data invalid")]
    EncryptedDataInvalid,
    /// The ciphertext is shorter than a tag.
    #[error("encrypted data length out of range")]
    EncryptedDataLenRange,
    /// The signature does not verify.
    #[error("signature invalid")]
    SignatureInvalid,
    /// The signature has the wrong length.
    #[error("signature length out of range")]
    SignatureLenRange,
    /// The output buffer is too small (its length was updated).
    #[error("buffer too small")]
    BufferTooSmall,
    /// The function is not part of this token.
    #[error("function not supported")]
    FunctionNotSupported,
    /// The vault's entropy cannot be seeded.
    #[error("seeding is not supported")]
    RandomSeedNotSupported,
    /// There is no PIN: the vault's access boundary is the VMPL (docs/pkcs11.md).
    #[error("the token has no user PIN")]
    UserPinNotInitialized,
    /// No user is logged in.
    #[error("not logged in")]
    UserNotLoggedIn,
    /// The vault holds as many keys as it can.
    #[error("the vault is full")]
    DeviceMemory,
    /// The vault could not be reached, answered malformed, or could not store its state.
    #[error("the vault could not be reached or failed")]
    DeviceError,
    /// The key cannot be destroyed alone (a public key goes with its private key).
    #[error("action prohibited")]
    ActionProhibited,
    /// Something the vault reported that no PKCS#11 call should meet.
    #[error("general error")]
    GeneralError,
    /// The curve is not P-256 or P-384.
    #[error("curve not supported")]
    CurveNotSupported,
}

impl Error {
    /// The `CKR_*` value.
    pub const fn rv(self) -> ck::CK_RV {
        match self {
            Error::NotInitialized => ck::CKR_CRYPTOKI_NOT_INITIALIZED,
            Error::AlreadyInitialized => ck::CKR_CRYPTOKI_ALREADY_INITIALIZED,
            Error::ArgumentsBad => ck::CKR_ARGUMENTS_BAD,
            Error::CantLock => ck::CKR_CANT_LOCK,
            Error::SlotInvalid => ck::CKR_SLOT_ID_INVALID,
            Error::SessionHandleInvalid => ck::CKR_SESSION_HANDLE_INVALID,
            Error::SessionParallelNotSupported => ck::CKR_SESSION_PARALLEL_NOT_SUPPORTED,
            Error::SessionReadOnly => ck::CKR_SESSION_READ_ONLY,
            Error::ObjectHandleInvalid => ck::CKR_OBJECT_HANDLE_INVALID,
            Error::KeyHandleInvalid => ck::CKR_KEY_HANDLE_INVALID,
            Error::OperationActive => ck::CKR_OPERATION_ACTIVE,
            Error::OperationNotInitialized => ck::CKR_OPERATION_NOT_INITIALIZED,
            Error::MechanismInvalid => ck::CKR_MECHANISM_INVALID,
            Error::MechanismParamInvalid => ck::CKR_MECHANISM_PARAM_INVALID,
            Error::KeyTypeInconsistent => ck::CKR_KEY_TYPE_INCONSISTENT,
            Error::KeyFunctionNotPermitted => ck::CKR_KEY_FUNCTION_NOT_PERMITTED,
            Error::AttributeTypeInvalid => ck::CKR_ATTRIBUTE_TYPE_INVALID,
            Error::AttributeValueInvalid => ck::CKR_ATTRIBUTE_VALUE_INVALID,
            Error::AttributeReadOnly => ck::CKR_ATTRIBUTE_READ_ONLY,
            Error::AttributeSensitive => ck::CKR_ATTRIBUTE_SENSITIVE,
            Error::TemplateIncomplete => ck::CKR_TEMPLATE_INCOMPLETE,
            Error::TemplateInconsistent => ck::CKR_TEMPLATE_INCONSISTENT,
            Error::DataLenRange => ck::CKR_DATA_LEN_RANGE,
            Error::EncryptedDataInvalid => ck::CKR_ENCRYPTED_DATA_INVALID,
            Error::EncryptedDataLenRange => ck::CKR_ENCRYPTED_DATA_LEN_RANGE,
            Error::SignatureInvalid => ck::CKR_SIGNATURE_INVALID,
            Error::SignatureLenRange => ck::CKR_SIGNATURE_LEN_RANGE,
            Error::BufferTooSmall => ck::CKR_BUFFER_TOO_SMALL,
            Error::FunctionNotSupported => ck::CKR_FUNCTION_NOT_SUPPORTED,
            Error::RandomSeedNotSupported => ck::CKR_RANDOM_SEED_NOT_SUPPORTED,
            Error::UserPinNotInitialized => ck::CKR_USER_PIN_NOT_INITIALIZED,
            Error::UserNotLoggedIn => ck::CKR_USER_NOT_LOGGED_IN,
            Error::DeviceMemory => ck::CKR_DEVICE_MEMORY,
            Error::DeviceError => ck::CKR_DEVICE_ERROR,
            Error::ActionProhibited => ck::CKR_ACTION_PROHIBITED,
            Error::GeneralError => ck::CKR_GENERAL_ERROR,
            Error::CurveNotSupported => ck::CKR_CURVE_NOT_SUPPORTED,
        }
    }
}

impl From<VaultClientError> for Error {
    fn from(e: VaultClientError) -> Self {
        match e {
            VaultClientError::Driver(_) => Error::DeviceError,
            VaultClientError::Vault(status) => status.into(),
            VaultClientError::RequestTooLarge => Error::DataLenRange,
            VaultClientError::MalformedResponse => Error::DeviceError,
            VaultClientError::NotPersisted { .. } => Error::DeviceError,
        }
    }
}

impl From<VaultStatus> for Error {
    fn from(s: VaultStatus) -> Self {
        match s {
            VaultStatus::KeyNotFound => Error::KeyHandleInvalid,
            VaultStatus::UsageNotAllowed => Error::KeyFunctionNotPermitted,
            VaultStatus::WrongKeyKind => Error::KeyTypeInconsistent,
            VaultStatus::AuthenticationFailed => Error::EncryptedDataInvalid,
            // The module sizes every request to fit; a response that does not fit is data
            // too long for the vault's largest message.
            VaultStatus::ResponseTooSmall => Error::DataLenRange,
            VaultStatus::VaultFull => Error::DeviceMemory,
            VaultStatus::EntropyFailed => Error::DeviceError,
            VaultStatus::BadPublicKey => Error::MechanismParamInvalid,
            VaultStatus::NotPersisted => Error::DeviceError,
            VaultStatus::DuplicateName => Error::AttributeValueInvalid,
            // Import, sealing and attestation statuses: no PKCS#11 call makes those requests.
            VaultStatus::UnknownContext
            | VaultStatus::PcrMismatch
            | VaultStatus::ForeignBlob
            | VaultStatus::OwnerMismatch
            | VaultStatus::WrongInstance
            | VaultStatus::WrongBoot => Error::GeneralError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vault_status_has_a_pkcs11_meaning() {
        for n in 0..64 {
            if let Some(s) = VaultStatus::from_u32(n) {
                let e = Error::from(s);
                assert_ne!(e.rv(), ck::CKR_OK, "{s:?}");
            }
        }
        assert_eq!(
            Error::from(VaultStatus::UsageNotAllowed).rv(),
            ck::CKR_KEY_FUNCTION_NOT_PERMITTED
        );
        assert_eq!(Error::BufferTooSmall.rv(), 0x150);
        assert_eq!(Error::AttributeSensitive.rv(), 0x11);
    }
}
