//! The vTPM engine as the image runs it: `vtpm::Vtpm` (libtpms + libcrypto, linked statically)
//! behind a guard that enforces the entropy rule. libtpms and OpenSSL do not reliably report a
//! failed seed (manufacture and some commands still succeed, observed on this engine), so the guard checks
//! the libc shim's latched [`libc_shim::entropy::failed`] flag around every engine call: once
//! any entropy read has failed, the engine is not made, and a running engine answers nothing
//! more (the response of the command during which it failed is wiped, not returned).

use svsm_core::tpm::{TpmEngine, TpmEngineError, TpmState};
use svsm_core::TpmFactory;
use vtpm::{Vtpm, VtpmConfig, VtpmError};

/// libtpms `TPM_FAIL`, the library code reported when the guard stops the engine.
pub const ENTROPY_STOP: u32 = 9;

/// The engine behind the entropy guard.
pub struct GuardedTpm {
    inner: Vtpm,
    stopped: bool,
}

impl GuardedTpm {
    /// True once the guard stopped the engine.
    #[cfg_attr(feature = "snp", allow(dead_code))] // the PVH statistics call
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// A platform reset as firmware sees it (`_TPM_Init`: the engine restarts from its NV,
    /// PCRs and sessions are gone, the next command must be `TPM2_Startup`). Refused once the
    /// guard stopped the engine.
    // An SNP guest cannot reboot without a new launch, so the SNP build never resets.
    #[cfg_attr(feature = "snp", allow(dead_code))]
    pub fn reset_for_firmware(&mut self) -> Result<(), TpmEngineError> {
        if self.stopped || libc_shim::entropy::failed() {
            self.stopped = true;
            return Err(TpmEngineError::Engine(ENTROPY_STOP));
        }
        self.inner.reset_for_firmware().map_err(|e| {
            e.engine_error()
                .unwrap_or(TpmEngineError::Engine(ENTROPY_STOP))
        })
    }
}

impl GuardedTpm {
    /// Runs `call` on the engine unless the guard stopped it; if entropy failed during the
    /// call, the response is wiped and the engine stopped.
    fn guarded(
        &mut self,
        response: &mut [u8],
        call: impl FnOnce(&mut Vtpm, &mut [u8]) -> Result<usize, TpmEngineError>,
    ) -> Result<usize, TpmEngineError> {
        if self.stopped || libc_shim::entropy::failed() {
            self.stopped = true;
            return Err(TpmEngineError::Engine(ENTROPY_STOP));
        }
        let result = call(&mut self.inner, response);
        if libc_shim::entropy::failed() {
            self.stopped = true;
            response.fill(0);
            crate::log!("svsm-image: entropy failed during a TPM command: vTPM stopped");
            return Err(TpmEngineError::Engine(ENTROPY_STOP));
        }
        result
    }
}

impl TpmEngine for GuardedTpm {
    fn execute(
        &mut self,
        locality: u8,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, TpmEngineError> {
        self.guarded(response, |tpm, rsp| tpm.execute(locality, command, rsp))
    }

    fn execute_provisioning(
        &mut self,
        command: &[u8],
        response: &mut [u8],
    ) -> Result<usize, TpmEngineError> {
        self.guarded(response, |tpm, rsp| tpm.execute_provisioning(command, rsp))
    }

    fn lock_platform(&mut self) -> Result<(), TpmEngineError> {
        self.inner.lock_platform()
    }

    fn state_changed(&self) -> bool {
        !self.stopped && self.inner.state_changed()
    }

    fn export_state(&mut self) -> Result<TpmState, TpmEngineError> {
        if self.stopped {
            return Err(TpmEngineError::StateExport);
        }
        self.inner.export_state()
    }
}

fn engine_error(e: VtpmError) -> TpmEngineError {
    match e {
        VtpmError::Engine(e) => e,
        VtpmError::Tpm { rc, .. } => TpmEngineError::Engine(rc),
        _ => TpmEngineError::StateCorrupt,
    }
}

/// Makes or restores the one engine, refusing when entropy has failed.
#[derive(Default)]
pub struct ImageTpmFactory {
    /// Engine configuration.
    pub config: VtpmConfig,
}

fn checked(made: Result<Vtpm, VtpmError>) -> Result<GuardedTpm, TpmEngineError> {
    if libc_shim::entropy::failed() {
        drop(made);
        crate::log!("svsm-image: entropy source failed: the vTPM is not started");
        return Err(TpmEngineError::Engine(ENTROPY_STOP));
    }
    made.map(|inner| GuardedTpm {
        inner,
        stopped: false,
    })
    .map_err(engine_error)
}

impl TpmFactory for ImageTpmFactory {
    type Engine = GuardedTpm;

    fn manufacture(&mut self) -> Result<GuardedTpm, TpmEngineError> {
        if libc_shim::entropy::failed() {
            return checked(Err(VtpmError::Engine(TpmEngineError::Engine(ENTROPY_STOP))));
        }
        checked(Vtpm::manufacture(self.config))
    }

    fn restore(&mut self, state: &TpmState) -> Result<GuardedTpm, TpmEngineError> {
        if libc_shim::entropy::failed() {
            return checked(Err(VtpmError::Engine(TpmEngineError::Engine(ENTROPY_STOP))));
        }
        checked(Vtpm::restore(state, self.config))
    }
}
