//! The attestation protocol (SVSM spec §7): SVSM_ATTEST_SERVICES and
//! SVSM_ATTEST_SINGLE_SERVICE. The report is always requested at VMPL0 with
//! REPORT_DATA = SHA-512(nonce || manifest); the request may sit at any GPA (Linux puts it in
//! the calling area at offset 8).

use crate::error::SvsmError;
use crate::module::SvsmModule;
use crate::module::{StateStatus, ATTESTED_CONTEXTS};
use crate::platform::{Entropy, Gpa, GuestMemory, SecureProcessor, StateStore, Vmpl};
use crate::tpm::TpmEngine;
use alloc::vec;
use alloc::vec::Vec;
use sha2::{Digest, Sha512};
use svsm_abi::attest::{
    services_manifest_len, write_services_manifest, AttestServicesRequest,
    AttestSingleServiceRequest, VAULT_SERVICE_GUID, VTPM_SERVICE_GUID,
};
use svsm_abi::snp::REPORT_SIZE;
use svsm_abi::svsm::CallRegisters;
use svsm_abi::svsm::{attest_call, PROTOCOL_ATTEST};
use svsm_abi::Guid;
use zerocopy::IntoBytes;

const SERVICES_REQUEST_LEN: usize = core::mem::size_of::<AttestServicesRequest>();
const SINGLE_REQUEST_LEN: usize = core::mem::size_of::<AttestSingleServiceRequest>();

/// Version of the vault service manifest.
pub const VAULT_MANIFEST_VERSION: u32 = 1;
/// Vault manifest flag: the module runs on ephemeral (unsealed, unpersisted) state.
pub const VAULT_FLAG_EPHEMERAL: u32 = 1;

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
                let manifest = self.services_manifest()?;
                self.attest(caller, &request, &manifest, regs)
            }
            attest_call::ATTEST_SINGLE_SERVICE => {
                let mut raw = [0u8; SINGLE_REQUEST_LEN];
                self.memory.read(caller, gpa, &mut raw)?;
                let request = AttestSingleServiceRequest::parse(&raw)?;
                let manifest =
                    self.service_manifest(request.service_guid, request.manifest_version.get())?;
                self.attest(caller, &request.base, &manifest, regs)
            }
            _ => Err(SvsmError::UnsupportedCall {
                protocol: PROTOCOL_ATTEST,
                call,
            }),
        }
    }

    /// The services this module runs, each with its version-0 manifest, in table order.
    fn services(&mut self) -> Result<Vec<(Guid, Vec<u8>)>, SvsmError> {
        let mut services = Vec::new();
        if self.tpm.is_some() {
            services.push((VTPM_SERVICE_GUID, self.vtpm_manifest()?));
        }
        if let Some(manifest) = self.vault_manifest() {
            services.push((VAULT_SERVICE_GUID, manifest));
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

    /// The vault's manifest (version 0 of its service): `u32 manifest version, u32 flags
    /// (bit 0 = ephemeral state), u64 sealed-state epoch, 16-byte instance id, 97-byte transport
    /// public key (P-384, SEC1 uncompressed)`. A remote party refuses a rolled-back epoch and
    /// wraps provisioned keys to the transport key.
    fn vault_manifest(&self) -> Option<Vec<u8>> {
        let keys = self.keys.as_ref()?;
        let flags = match self.status {
            StateStatus::Ephemeral(_) => VAULT_FLAG_EPHEMERAL,
            StateStatus::Fresh | StateStatus::Restored => 0,
        };
        let mut m = Vec::with_capacity(129);
        m.extend_from_slice(&VAULT_MANIFEST_VERSION.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&self.epoch.to_le_bytes());
        m.extend_from_slice(&self.instance_id);
        m.extend_from_slice(&keys.transport_public());
        Some(m)
    }

    fn services_manifest(&mut self) -> Result<Vec<u8>, SvsmError> {
        let services = self.services()?;
        let refs: Vec<(Guid, &[u8])> = services.iter().map(|(g, m)| (*g, m.as_slice())).collect();
        let mut table = vec![0u8; services_manifest_len(&refs)?];
        write_services_manifest(&refs, &mut table)?;
        Ok(table)
    }

    fn service_manifest(&mut self, guid: Guid, version: u32) -> Result<Vec<u8>, SvsmError> {
        let (_, manifest) = self
            .services()?
            .into_iter()
            .find(|(g, _)| *g == guid)
            .ok_or(SvsmError::UnknownService(guid))?;
        match (guid, version) {
            (_, 0) => Ok(manifest),
            (g, svsm_abi::attest::VTPM_MANIFEST_V1) if g == VTPM_SERVICE_GUID => {
                self.vtpm_manifest_v1()
            }
            _ => Err(SvsmError::ManifestVersion(version)),
        }
    }

    /// The vTPM service manifest version 1 (`svsm_abi::attest::VtpmManifestV1`).
    fn vtpm_manifest_v1(&mut self) -> Result<Vec<u8>, SvsmError> {
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
        let flags = match self.status {
            StateStatus::Ephemeral(_) => svsm_abi::attest::MANIFEST_FLAG_EPHEMERAL,
            StateStatus::Fresh | StateStatus::Restored => 0,
        };
        let transport = self
            .keys
            .as_ref()
            .map(|k| k.transport_public())
            .unwrap_or([0; 97]);
        let log_digest: [u8; 48] = Sha384::digest(&self.event_log).into();
        let mut m = Vec::with_capacity(256 + ek.len() + ak.len());
        m.extend_from_slice(&svsm_abi::attest::VTPM_MANIFEST_V1.to_le_bytes());
        m.extend_from_slice(&flags.to_le_bytes());
        m.extend_from_slice(&self.epoch.to_le_bytes());
        m.extend_from_slice(&self.instance_id);
        m.extend_from_slice(&transport);
        m.extend_from_slice(&log_digest);
        for part in [&ek, &ak] {
            m.extend_from_slice(&(part.len() as u16).to_le_bytes());
            m.extend_from_slice(part);
        }
        m.extend_from_slice(&(self.extra_evidence.len() as u16).to_le_bytes());
        for (kind, digest) in &self.extra_evidence {
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
        // The nonce may now bind a key import to this attestation.
        if self.attested_contexts.len() >= ATTESTED_CONTEXTS {
            self.attested_contexts.remove(0);
        }
        self.attested_contexts.push(nonce.clone());

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
