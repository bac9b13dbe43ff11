//! The module: platform pieces plus services, and the dispatcher that turns a guest's registers
//! into a result. Every protocol handler returns `Result<(), SvsmError>`; the dispatcher writes
//! the result code into RAX, so no guest input reaches a panic or an unmapped error.
//!
//! Boot ([`SvsmModule::boot`]) derives the key hierarchy, opens the sealed state (vTPM and vault)
//! from the untrusted store, or manufactures a fresh vTPM on first boot. When the state exists
//! but cannot be opened (another launch, tampering, rollback), the module does not stop: it runs
//! an ephemeral vTPM, never writes over the stored state, and says so in [`StateStatus`] and in
//! the vault manifest.

use crate::error::SvsmError;
use crate::identity::IdentityError;
use crate::keys::{BootTransportKey, KeyHierarchy};
use crate::platform::{Entropy, GuestMemory, PspError, SecureProcessor, StateStore, Vmpl};
use crate::sealed::{self, Loaded, SealError};
use crate::tpm::{TpmEngine, TpmEngineError, TpmState, MAX_TPM_BUFFER};
use crate::vault::{AttestedNonce, Vault};
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::snp::TcbVersion;
use svsm_abi::svsm::{
    core_call, protocol_versions_rcx, CallId, CallRegisters, ProtocolQuery, PROTOCOL_ATTEST,
    PROTOCOL_CORE, PROTOCOL_VAULT, PROTOCOL_VTPM,
};

/// How many recent attestation nonces an import may bind to.
pub const ATTESTED_CONTEXTS: usize = 8;

/// Makes and restores TPM engines (the `vtpm` crate, or any other engine).
pub trait TpmFactory {
    /// The engine.
    type Engine: TpmEngine;
    /// A freshly manufactured TPM.
    fn manufacture(&mut self) -> Result<Self::Engine, TpmEngineError>;
    /// A TPM restored from its exported permanent state (then started with Startup(CLEAR)).
    fn restore(&mut self, state: &TpmState) -> Result<Self::Engine, TpmEngineError>;
}

/// Boot parameters.
#[derive(Clone, Copy, Debug)]
pub struct BootConfig {
    /// The minimum TCB the root key is pinned to (must not exceed the committed TCB).
    pub min_tcb: TcbVersion,
    /// Refuse sealed state older than this epoch (rollback protection), if known.
    pub expected_epoch: Option<u64>,
}

/// Why the module runs without persistent state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EphemeralReason {
    /// The PSP did not give the root key.
    #[error("no root key from the secure processor: {0}")]
    RootKey(PspError),
    /// The sealed state could not be opened.
    #[error("sealed state refused: {0}")]
    Sealed(SealError),
    /// The TPM engine refused the unsealed state.
    #[error("the vTPM engine refused the unsealed state: {0}")]
    TpmRestore(TpmEngineError),
}

/// Why the latest state could not be sealed and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// No key hierarchy (no root key at boot).
    #[error("no sealing key")]
    NoKeys,
    /// The TPM engine did not export its state.
    #[error("vTPM state export failed: {0}")]
    Export(TpmEngineError),
    /// No entropy for the IV.
    #[error("no entropy for the sealing IV")]
    Entropy,
    /// The epoch counter is exhausted.
    #[error("state epoch exhausted")]
    EpochExhausted,
    /// The payload does not fit the blob format.
    #[error("state too large to seal")]
    TooLarge,
    /// The store refused the write.
    #[error("state store: {0}")]
    Store(crate::platform::StoreError),
}

/// Where the module's state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateStatus {
    /// First boot: nothing stored; state is created and sealed.
    Fresh,
    /// Restored from sealed state.
    Restored,
    /// Running on state that is not persisted, for the reason given.
    Ephemeral(EphemeralReason),
}

/// The SVSM module at VMPL0.
pub struct SvsmModule<M, P, T, S, R> {
    pub(crate) memory: M,
    pub(crate) psp: P,
    pub(crate) tpm: Option<T>,
    pub(crate) store: S,
    pub(crate) rng: R,
    pub(crate) keys: Option<KeyHierarchy>,
    pub(crate) vault: Vault,
    pub(crate) status: StateStatus,
    pub(crate) epoch: u64,
    pub(crate) instance_id: [u8; 16],
    /// The last persistence failure, if the latest state could not be written.
    pub(crate) persist_error: Option<PersistError>,
    /// This boot's vault transport key (never sealed; `None` if entropy failed at boot).
    pub(crate) transport: Option<BootTransportKey>,
    /// Recent attestation nonces with their requesters (newest last).
    pub(crate) attested_contexts: Vec<AttestedNonce>,
    /// The vTPM EK's TPMT_PUBLIC, re-derived from the endorsement seed at boot and kept.
    pub(crate) ek_public: Option<Vec<u8>>,
    /// The EK CA's public key, when the vTPM has its EK certificates.
    pub(crate) ek_ca_public: Option<[u8; 97]>,
    /// Why the vTPM has no EK certificates, if it has none.
    pub(crate) identity_error: Option<IdentityError>,
    /// The TCG event log of the measurements (launch components and guest requests).
    pub(crate) event_log: Vec<u8>,
    /// Digests of extra evidence registered by the guest (registering VMPL, kind, SHA-384),
    /// each carried by that VMPL's next attestation and then dropped.
    pub(crate) extra_evidence: Vec<(Vmpl, u16, [u8; 48])>,
    /// The AK's TPMT_PUBLIC, re-derived on first use and kept.
    pub(crate) ak_public: Option<Vec<u8>>,
    /// Copy-in/copy-out buffers, reused across calls.
    pub(crate) vault_request: Vec<u8>,
    pub(crate) vault_response: Vec<u8>,
    pub(crate) vtpm_request: Vec<u8>,
    pub(crate) vtpm_response: Vec<u8>,
    /// Vault messages in parts over the vTPM's vendor command.
    pub(crate) transfers: crate::vault_parts::Transfers,
}

impl<M, P, T, S, R> SvsmModule<M, P, T, S, R>
where
    M: GuestMemory,
    P: SecureProcessor,
    T: TpmEngine,
    S: StateStore,
    R: Entropy,
{
    /// Boots the module: keys, sealed state, vTPM (`factory` is `None` when no vTPM is served).
    pub fn boot<F: TpmFactory<Engine = T>>(
        memory: M,
        mut psp: P,
        mut store: S,
        mut rng: R,
        factory: Option<&mut F>,
        config: BootConfig,
    ) -> Self {
        let keys = KeyHierarchy::derive(&mut psp, config.min_tcb);
        let mut status = StateStatus::Fresh;
        let mut epoch = 0;
        let mut instance_id = [0u8; 16];
        let mut vault = Vault::default();
        let mut tpm_state: Option<TpmState> = None;

        match &keys {
            Err(e) => status = StateStatus::Ephemeral(EphemeralReason::RootKey(*e)),
            Ok(keys) => match sealed::load(&mut store, keys.state_sealing(), config.expected_epoch)
            {
                Ok(Loaded::Empty) => {}
                Ok(Loaded::State(opened)) => match decode_payload(&opened.payload) {
                    Some((tpm, v)) => {
                        status = StateStatus::Restored;
                        epoch = opened.epoch;
                        instance_id = opened.instance_id;
                        tpm_state = tpm;
                        vault = v;
                    }
                    None => {
                        status = StateStatus::Ephemeral(EphemeralReason::Sealed(
                            SealError::MalformedPayload,
                        ))
                    }
                },
                Err(e) => status = StateStatus::Ephemeral(EphemeralReason::Sealed(e)),
            },
        }
        if status == StateStatus::Fresh && rng.fill(&mut instance_id).is_err() {
            status = StateStatus::Ephemeral(EphemeralReason::Sealed(SealError::Store(
                crate::platform::StoreError::Unavailable,
            )));
        }

        // Made after the sealed state is opened and never stored: a new key every boot.
        let transport = BootTransportKey::generate(&mut rng);

        let mut tpm = factory.and_then(|f| {
            if let Some(state) = &tpm_state {
                match f.restore(state) {
                    Ok(t) => return Some(t),
                    Err(e) => {
                        status = StateStatus::Ephemeral(EphemeralReason::TpmRestore(e));
                        vault = Vault::default();
                    }
                }
            }
            f.manufacture().ok()
        });

        // The EK certificates are issued (first boot) or re-bound (later boots) while the
        // platform hierarchy is still VMPL0's; then it is locked before any guest command.
        let mut identity = None;
        let mut identity_error = None;
        if let Some(t) = tpm.as_mut() {
            let established =
                crate::identity::establish(t, keys.as_ref().ok(), &instance_id, &mut psp, &mut rng);
            match established {
                Ok(id) => identity = Some(id),
                Err(e) => identity_error = Some(e),
            }
            // On failure the engine tries again before the guest's first command, and refuses
            // that command if it still cannot.
            if let Err(e) = t.lock_platform() {
                identity_error.get_or_insert(IdentityError::Engine(e));
            }
        }
        let provisioned_now = identity.as_ref().is_some_and(|i| i.provisioned);

        let mut module = SvsmModule {
            memory,
            psp,
            tpm,
            store,
            rng,
            keys: keys.ok(),
            vault,
            status,
            epoch,
            instance_id,
            persist_error: None,
            transport,
            attested_contexts: Vec::new(),
            ek_public: identity.as_ref().map(|i| i.ek_rsa_public.clone()),
            ek_ca_public: identity.as_ref().map(|i| i.ca_public),
            identity_error,
            event_log: crate::measure::new_log(),
            extra_evidence: Vec::new(),
            ak_public: None,
            vault_request: Vec::new(),
            vault_response: Vec::new(),
            vtpm_request: vec![0; svsm_abi::vtpm::VTPM_BUFFER_SIZE],
            vtpm_response: vec![0; MAX_TPM_BUFFER],
            transfers: crate::vault_parts::Transfers::default(),
        };
        if module.status == StateStatus::Fresh || provisioned_now {
            // A failure is recorded and reported in every manifest until a write succeeds.
            let _ = module.persist();
        }
        module
    }

    /// The public key (SEC1, P-384) of the CA that issued the vTPM's EK certificates.
    pub fn ek_ca_public(&self) -> Option<[u8; 97]> {
        self.ek_ca_public
    }

    /// Why the vTPM has no EK certificates (or its platform hierarchy could not be locked).
    pub fn identity_error(&self) -> Option<IdentityError> {
        self.identity_error
    }

    /// Guest memory (the simulated machine's guest side uses it to place requests).
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }

    /// The secure processor.
    pub fn psp_mut(&mut self) -> &mut P {
        &mut self.psp
    }

    /// The TPM engine, if served.
    pub fn tpm_mut(&mut self) -> Option<&mut T> {
        self.tpm.as_mut()
    }

    /// The untrusted state store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Where the state came from.
    pub fn state_status(&self) -> StateStatus {
        self.status
    }

    /// The epoch of the state last sealed (or restored).
    pub fn state_epoch(&self) -> u64 {
        self.epoch
    }

    /// The last error writing sealed state, if the newest state is not stored.
    pub fn persist_error(&self) -> Option<PersistError> {
        self.persist_error
    }

    /// This boot's vault transport public key (SEC1), if entropy gave one at boot.
    pub fn transport_public(&self) -> Option<[u8; 97]> {
        self.transport.as_ref().map(|t| *t.public())
    }

    /// The instance id of the sealed state.
    pub fn instance_id(&self) -> [u8; 16] {
        self.instance_id
    }

    /// Seals the current state into the next slot (write-then-switch), unless ephemeral. A
    /// failure is returned and recorded (see [`SvsmModule::persist_error`]): the manifest flags
    /// it until a later write succeeds. The call that changed the state has already happened
    /// and is not undone; its caller reports the failure to the guest.
    pub(crate) fn persist(&mut self) -> Result<(), PersistError> {
        if matches!(self.status, StateStatus::Ephemeral(_)) {
            return Ok(());
        }
        let result = self.try_persist();
        self.persist_error = result.err();
        result
    }

    fn try_persist(&mut self) -> Result<(), PersistError> {
        let keys = self.keys.as_ref().ok_or(PersistError::NoKeys)?;
        let state = self
            .tpm
            .as_mut()
            .map(|t| t.export_state())
            .transpose()
            .map_err(PersistError::Export)?;
        // Sized up front: a growing Vec would free outgrown copies of secrets unwiped.
        let permanent = state.as_ref().map_or(0, |t| t.permanent.len());
        let mut payload = zeroize::Zeroizing::new(Vec::with_capacity(
            4 + permanent + Vault::serialized_len_bound(self.vault.len()),
        ));
        encode_payload(state.as_ref(), &self.vault, &mut payload);
        let mut iv = [0u8; 12];
        self.rng.fill(&mut iv).map_err(|_| PersistError::Entropy)?;
        let epoch = self
            .epoch
            .checked_add(1)
            .ok_or(PersistError::EpochExhausted)?;
        let blob = sealed::seal(
            keys.state_sealing(),
            &self.instance_id,
            epoch,
            &iv,
            &payload,
        )
        .ok_or(PersistError::TooLarge)?;
        let slot = if epoch % 2 == 0 {
            sealed::SLOTS[0]
        } else {
            sealed::SLOTS[1]
        };
        self.store.write(slot, &blob).map_err(PersistError::Store)?;
        self.epoch = epoch;
        Ok(())
    }

    /// Handles one SVSM call from a guest at `caller`: reads the inputs from `regs` and writes
    /// the result code (RAX) and any outputs back into it.
    pub fn handle_call(&mut self, caller: Vmpl, regs: &mut CallRegisters) {
        let id = CallId::from_rax(regs.rax);
        let result = match id.protocol {
            PROTOCOL_CORE => self.core_protocol(id.call, regs),
            PROTOCOL_ATTEST => self.attest_protocol(caller, id.call, regs),
            PROTOCOL_VTPM if self.tpm.is_some() => self.vtpm_protocol(caller, id.call, regs),
            PROTOCOL_VAULT if self.keys.is_some() => self.vault_protocol(caller, id.call, regs),
            other => Err(SvsmError::UnsupportedProtocol(other)),
        };
        regs.rax = match result {
            Ok(()) => 0,
            Err(e) => u64::from(e.result_code().to_u32()),
        };
    }

    /// The versions served of a protocol as (min, max), or `None`.
    pub fn protocol_versions(&self, protocol: u32) -> Option<(u32, u32)> {
        match protocol {
            PROTOCOL_CORE | PROTOCOL_ATTEST => Some((1, 1)),
            PROTOCOL_VTPM if self.tpm.is_some() => Some((1, 1)),
            PROTOCOL_VAULT if self.keys.is_some() => Some((1, 1)),
            _ => None,
        }
    }

    fn core_protocol(&mut self, call: u32, regs: &mut CallRegisters) -> Result<(), SvsmError> {
        match call {
            core_call::QUERY_PROTOCOL => {
                let query = ProtocolQuery::from_rcx(regs.rcx);
                regs.rcx = match self.protocol_versions(query.protocol) {
                    Some((min, max)) if (min..=max).contains(&query.version) => {
                        protocol_versions_rcx(min, max)
                    }
                    _ => 0,
                };
                Ok(())
            }
            // vCPU and memory management belong to the SVSM kernel hosting this module, not to
            // the services; answered as unsupported rather than pretended.
            _ => Err(SvsmError::UnsupportedCall {
                protocol: PROTOCOL_CORE,
                call,
            }),
        }
    }
}

/// Payload: `u32 len + TPM permanent state` (0 = no vTPM), then the vault's keys.
fn encode_payload(tpm: Option<&TpmState>, vault: &Vault, out: &mut Vec<u8>) {
    let permanent = tpm.map(|t| t.permanent.as_slice()).unwrap_or(&[]);
    out.extend_from_slice(&(permanent.len() as u32).to_le_bytes());
    out.extend_from_slice(permanent);
    vault.serialize(out);
}

fn decode_payload(payload: &[u8]) -> Option<(Option<TpmState>, Vault)> {
    let (len, rest) = payload.split_first_chunk::<4>()?;
    let (permanent, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    let (vault, rest) = Vault::deserialize(rest)?;
    if !rest.is_empty() {
        return None;
    }
    // Volatile state (PCRs, sessions) is not kept: a reboot starts with Startup(CLEAR).
    let tpm = (!permanent.is_empty()).then(|| TpmState {
        permanent: permanent.to_vec(),
        volatile: Vec::new(),
    });
    Some((tpm, vault))
}
