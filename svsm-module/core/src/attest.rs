//! The attestation protocol (SVSM spec §7): SVSM_ATTEST_SERVICES and
//! SVSM_ATTEST_SINGLE_SERVICE. The report is always requested at VMPL0 with
//! REPORT_DATA = SHA-512(nonce || manifest); the request may sit at any GPA (Linux puts it in
//! the calling area at offset 8).
//!
//! Every manifest of ours is built for one request: it names the VMPL that asked (the report
//! itself is always VMPL0's), carries this boot's transport key, and lists only the extra
//! evidence that VMPL registered since its previous attestation, which this attestation then
//! consumes. The nonce is remembered with the requester so a key import can bind to it.

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::module::{EphemeralReason, StateStatus, ATTESTED_CONTEXTS};
use crate::platform::{Entropy, Gpa, GuestMemory, SecureProcessor, StateStore, Vmpl};
use crate::sealed::SealError;
use crate::tpm::TpmEngine;
use crate::vault::AttestedNonce;
use alloc::vec;
use alloc::vec::Vec;
use sha2::{Digest, Sha512};
use svsm_abi::attest::{
    services_manifest_len, write_services_manifest, AttestServicesRequest,
    AttestSingleServiceRequest, EphemeralCause, StateHeader, StateKind, MANIFEST_FLAG_EPHEMERAL,
    MANIFEST_FLAG_NOT_PERSISTED, VAULT_MANIFEST_V2, VAULT_SERVICE_GUID, VTPM_MANIFEST_VERSION,
    VTPM_SERVICE_GUID,
};
use svsm_abi::snp::REPORT_SIZE;
use svsm_abi::svsm::CallRegisters;
use svsm_abi::svsm::{attest_call, PROTOCOL_ATTEST};
use svsm_abi::Guid;
use zerocopy::IntoBytes;

const SERVICES_REQUEST_LEN: usize = core::mem::size_of::<AttestServicesRequest>();
const SINGLE_REQUEST_LEN: usize = core::mem::size_of::<AttestSingleServiceRequest>();

/// The manifest's name for why the state is ephemeral.
fn ephemeral_cause(reason: EphemeralReason) -> EphemeralCause {
    match reason {
        EphemeralReason::RootKey(_) => EphemeralCause::NoRootKey,
        EphemeralReason::TpmRestore(_) => EphemeralCause::TpmRestore,
        EphemeralReason::Sealed(e) => match e {
            SealError::ForeignLaunch => EphemeralCause::ForeignLaunch,
            SealError::Tampered => EphemeralCause::Tampered,
            SealError::Rollback { .. } => EphemeralCause::Rollback,
            SealError::Truncated
            | SealError::BadMagic
            | SealError::UnsupportedVersion(_)
            | SealError::MalformedPayload => EphemeralCause::Malformed,
            SealError::Store(_) => EphemeralCause::StoreUnavailable,
        },
    }
}

impl<M, P, T, S, R> SvsmModule<M, P, T, S, R>
where
    M: GuestMemory,
    P: SecureProcessor,
    T: TpmEngine,
    S: StateStore,
    R: Entropy,
{
    pub(crate) fn attest_protocol(
        &mut self,
        caller: Vmpl,
        call: u32,
        regs: &mut CallRegisters,
    ) -> Result<(), SvsmError> {
        let gpa = Gpa::new(regs.rcx);
        match call {
            attest_call::ATTEST_SERVICES => {
                let mut raw = [0u8; SERVICES_REQUEST_LEN];
                self.memory.read(caller, gpa, &mut raw)?;
                let request = AttestServicesRequest::parse(&raw)?;
                let manifest = self.services_manifest(caller)?;
                self.attest(caller, &request, &manifest, false, regs)
            }
            attest_call::ATTEST_SINGLE_SERVICE => {
                let mut raw = [0u8; SINGLE_REQUEST_LEN];
                self.memory.read(caller, gpa, &mut raw)?;
                let request = AttestSingleServiceRequest::parse(&raw)?;
                let version = request.manifest_version.get();
                let manifest = self.service_manifest(caller, request.service_guid, version)?;
                // Only svsm-vhsm's own vTPM manifest lists extra evidence.
                let carries_extra =
                    request.service_guid == VTPM_SERVICE_GUID && version == VTPM_MANIFEST_VERSION;
                self.attest(caller, &request.base, &manifest, carries_extra, regs)
            }
            _ => Err(SvsmError::UnsupportedCall {
                protocol: PROTOCOL_ATTEST,
                call,
            }),
        }
    }

    /// The services this module runs, each with its version-0 manifest, in table order.
    fn services(&mut self, caller: Vmpl) -> Result<Vec<(Guid, Vec<u8>)>, SvsmError> {
        let mut services = Vec::new();
        if self.tpm.is_some() {
            services.push((VTPM_SERVICE_GUID, self.vtpm_manifest()?));
        }
        if self.keys.is_some() {
            services.push((
                VAULT_SERVICE_GUID,
                self.state_header(caller, VAULT_MANIFEST_V2),
            ));
        }
        Ok(services)
    }

    fn vtpm_manifest(&mut self) -> Result<Vec<u8>, SvsmError> {
        if let Some(ek) = &self.ek_public {
            return Ok(ek.clone());
        }
        let tpm = self
            .tpm
            .as_mut()
            .ok_or(SvsmError::UnknownService(VTPM_SERVICE_GUID))?;
        let ek = crate::tpm2::ek_rsa_public(tpm)?;
        self.ek_public = Some(ek.clone());
        Ok(ek)
    }

    /// The [`StateHeader`] every manifest of ours opens with (the whole vault manifest): where
    /// the state came from, whether the newest state is stored, the requester, this boot's
    /// transport key.
    fn state_header(&self, caller: Vmpl, version: u32) -> Vec<u8> {
        let (state, reason) = match self.status {
            StateStatus::Fresh => (StateKind::Fresh, EphemeralCause::None),
            StateStatus::Restored => (StateKind::Restored, EphemeralCause::None),
            StateStatus::Ephemeral(r) => (StateKind::Ephemeral, ephemeral_cause(r)),
        };
        let mut flags = 0;
        if state == StateKind::Ephemeral {
            flags |= MANIFEST_FLAG_EPHEMERAL;
        }
        if self.persist_error.is_some() {
            flags |= MANIFEST_FLAG_NOT_PERSISTED;
        }
        let header = StateHeader {
            version: version.into(),
            flags: flags.into(),
            state: state as u8,
            reason: reason as u8,
            requester_vmpl: caller.level(),
            reserved0: 0,
            epoch: self.epoch.into(),
            instance_id: self.instance_id,
            transport_public: self.transport.as_ref().map_or([0; 97], |t| *t.public()),
            reserved1: [0; 3],
        };
        header.as_bytes().to_vec()
    }

    fn services_manifest(&mut self, caller: Vmpl) -> Result<Vec<u8>, SvsmError> {
        let services = self.services(caller)?;
        let refs: Vec<(Guid, &[u8])> = services.iter().map(|(g, m)| (*g, m.as_slice())).collect();
        let mut table = vec![0u8; services_manifest_len(&refs)?];
        write_services_manifest(&refs, &mut table)?;
        Ok(table)
    }

    fn service_manifest(
        &mut self,
        caller: Vmpl,
        guid: Guid,
        version: u32,
    ) -> Result<Vec<u8>, SvsmError> {
        let (_, manifest) = self
            .services(caller)?
            .into_iter()
            .find(|(g, _)| *g == guid)
            .ok_or(SvsmError::UnknownService(guid))?;
        match (guid, version) {
            (_, 0) => Ok(manifest),
            (g, VTPM_MANIFEST_VERSION) if g == VTPM_SERVICE_GUID => {
                self.vtpm_manifest_current(caller)
            }
            _ => Err(SvsmError::ManifestVersion(version)),
        }
    }

    /// The vTPM service manifest (`svsm_abi::attest::VtpmManifest`).
    fn vtpm_manifest_current(&mut self, caller: Vmpl) -> Result<Vec<u8>, SvsmError> {
        use sha2::Sha384;
        let ek = self.vtpm_manifest()?;
        let ak = match &self.ak_public {
            Some(ak) => ak.clone(),
            None => {
                let tpm = self
                    .tpm
                    .as_mut()
                    .ok_or(SvsmError::UnknownService(VTPM_SERVICE_GUID))?;
                let ak = crate::tpm2::ak_public(tpm, crate::tpm2::templates::AkCurve::P256)?;
                self.ak_public = Some(ak.clone());
                ak
            }
        };
        let log_digest: [u8; 48] = Sha384::digest(&self.event_log).into();
        let mut m = self.state_header(caller, VTPM_MANIFEST_VERSION);
        m.extend_from_slice(&log_digest);
        let ca: &[u8] = self.ek_ca_public.as_ref().map_or(&[], |c| c.as_slice());
        for part in [ek.as_slice(), ak.as_slice(), ca] {
            m.extend_from_slice(&(part.len() as u16).to_le_bytes());
            m.extend_from_slice(part);
        }
        let mine: Vec<_> = self
            .extra_evidence
            .iter()
            .filter(|(vmpl, _, _)| *vmpl == caller)
            .collect();
        m.extend_from_slice(&(mine.len() as u16).to_le_bytes());
        for (_, kind, digest) in mine {
            m.extend_from_slice(&kind.to_le_bytes());
            m.extend_from_slice(digest);
        }
        Ok(m)
    }

    fn attest(
        &mut self,
        caller: Vmpl,
        request: &AttestServicesRequest,
        manifest: &[u8],
        carries_extra: bool,
        regs: &mut CallRegisters,
    ) -> Result<(), SvsmError> {
        let mut nonce = vec![0u8; usize::from(request.nonce_size.get())];
        self.memory
            .read(caller, Gpa::new(request.nonce_gpa.get()), &mut nonce)?;

        let certs_wanted = request.certs_size.get() != 0;
        let certs = if certs_wanted {
            self.psp.certificates()?
        } else {
            Vec::new()
        };
        // A table whose first entry is the terminator carries no certificates.
        let certs_len = if certs.iter().take(24).all(|&b| b == 0) {
            0
        } else {
            certs.len()
        };

        // Sizes go back on success and on "buffer too small" alike (SVSM spec §7, Linux).
        regs.rcx = manifest.len() as u64;
        regs.rdx = certs_len as u64;
        regs.r8 = REPORT_SIZE as u64;
        let too_small = (request.report_size.get() as usize) < REPORT_SIZE
            || (request.manifest_size.get() as usize) < manifest.len()
            || (certs_wanted && (request.certs_size.get() as usize) < certs_len);
        if too_small {
            return Err(SvsmError::BuffersTooSmall);
        }

        let report_data: [u8; 64] = Sha512::new()
            .chain_update(&nonce)
            .chain_update(manifest)
            .finalize()
            .into();
        let report = self.psp.attestation_report(&report_data, Vmpl::ZERO)?;
        // The nonce may now bind a key import by the requester to this attestation.
        if self.attested_contexts.len() >= ATTESTED_CONTEXTS {
            self.attested_contexts.remove(0);
        }
        self.attested_contexts.push(AttestedNonce {
            requester: caller,
            nonce: nonce.clone(),
        });
        // The requester's extra evidence is carried by this attestation and no other.
        if carries_extra {
            self.extra_evidence.retain(|(vmpl, _, _)| *vmpl != caller);
        }

        self.memory.write(
            caller,
            Gpa::new(request.report_gpa.get()),
            report.as_bytes(),
        )?;
        self.memory
            .write(caller, Gpa::new(request.manifest_gpa.get()), manifest)?;
        if certs_len > 0 {
            self.memory
                .write(caller, Gpa::new(request.certs_gpa.get()), &certs)?;
        }
        Ok(())
    }
}
