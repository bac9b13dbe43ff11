//! The TPM engine boundary: what the vTPM protocol service needs from a TPM 2.0 engine.
//! Implemented by the `vtpm` crate (the TCG reference engine from libtpms) and by any
//! freestanding engine later; svsm-core never sees engine internals.

use alloc::vec::Vec;

/// Largest TPM command or response the SVSM vTPM protocol can carry in its 4 KiB buffer.
pub const MAX_TPM_BUFFER: usize = 4096;

/// Every error a [`TpmEngine`] returns. TPM-level failures (bad command, bad auth, ...) are not
/// errors here: they come back as a TPM response with a non-zero response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmEngineError {
    /// The engine is not powered on (no manufacture/restore happened, or it was powered off).
    #[error("TPM engine is not powered on")]
    NotPoweredOn,
    /// The command is larger than the engine accepts.
    #[error("TPM command of {size} bytes exceeds {max}")]
    CommandTooLarge {
        /// Command size.
        size: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The response does not fit the caller's buffer.
    #[error("TPM response of {size} bytes does not fit a {capacity}-byte buffer")]
    ResponseTooLarge {
        /// Response size.
        size: usize,
        /// Buffer size.
        capacity: usize,
    },
    /// The engine library itself failed (its return code, not a TPM response code).
    #[error("TPM engine failure, library code {0:#x}")]
    Engine(u32),
    /// Exporting the engine state failed.
    #[error("TPM state export failed")]
    StateExport,
    /// A state blob offered for restore is malformed or was refused by the engine.
    #[error("TPM state is corrupt or was refused by the engine")]
    StateCorrupt,
    /// The process-global engine already has an owner.
    #[error("the TPM engine is already in use by another instance")]
    InUse,
    /// The platform hierarchy could not be taken from the guest (the response code of
    /// TPM2_HierarchyControl); the command that needed it was not run or its response wiped.
    #[error("the platform hierarchy could not be locked (TPM response code {0:#x})")]
    PlatformLock(u32),
}

/// The engine's complete state, in the engine's own serialization (for `vtpm`: libtpms's
/// permanent and volatile blobs, each behind an integrity header). It holds the TPM's seeds,
/// so it is secret; it is wiped when dropped and leaves VMPL0 only sealed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TpmState {
    /// Permanent state (NV, seeds, persistent objects).
    pub permanent: Vec<u8>,
    /// Volatile state (PCRs, loaded objects, sessions); may be empty.
    pub volatile: Vec<u8>,
}

impl core::fmt::Debug for TpmState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TpmState")
            .field("permanent_len", &self.permanent.len())
            .field("volatile_len", &self.volatile.len())
            .finish()
    }
}

impl zeroize::Zeroize for TpmState {
    /// Zeroes both blobs (their whole capacity) and empties them.
    fn zeroize(&mut self) {
        self.permanent.zeroize();
        self.volatile.zeroize();
    }
}

impl Drop for TpmState {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

/// The `Drop` above wipes both blobs: every `TpmState` (and every clone) is zeroed when dropped.
impl zeroize::ZeroizeOnDrop for TpmState {}

/// A TPM 2.0 engine.
pub trait TpmEngine {
    /// Runs one TPM command at `locality`, writing the response into `response`; returns the
    /// response length. A malformed command yields a TPM error response, not an `Err`.
    fn execute(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, TpmEngineError>;

    /// Runs one command VMPL0 issues itself while the platform hierarchy is still open: between
    /// manufacture or restore and the first [`TpmEngine::execute`] or
    /// [`TpmEngine::lock_platform`]. Resends on TPM_RC_RETRY. Afterwards platform-authorized
    /// commands fail with TPM_RC_HIERARCHY like anyone else's.
    fn execute_provisioning(
        &mut self,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, TpmEngineError>;

    /// Closes the provisioning window now: clears phEnable, so no one can use the platform
    /// hierarchy until the next `TPM2_Startup`; the engine does the same itself after every
    /// Startup it runs.
    fn lock_platform(&mut self) -> Result<(), TpmEngineError>;

    /// True when the permanent state changed since the last [`TpmEngine::export_state`]
    /// (the caller then exports and seals it).
    fn state_changed(&self) -> bool;

    /// Exports the current state and clears [`TpmEngine::state_changed`].
    fn export_state(&mut self) -> Result<TpmState, TpmEngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Compiles only for types that promise to wipe themselves when dropped.
    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn tpm_state_is_wiped_on_drop() {
        assert_zeroize_on_drop::<TpmState>();
        let mut s = TpmState {
            permanent: vec![0xAA; 64],
            volatile: vec![0x55; 16],
        };
        zeroize::Zeroize::zeroize(&mut s);
        assert!(s.permanent.is_empty() && s.volatile.is_empty());
        assert_eq!(s, TpmState::default());
    }
}
