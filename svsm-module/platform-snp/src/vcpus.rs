//! svsm-core's [`VcpuControl`] on SNP: starting and stopping a guest vCPU is the GHCB "AP
//! creation" NAE event (GHCB spec §4.1.9), issued on the SVSM's GHCB with the VMSA the core
//! protocol has already checked and marked in the RMP. The hypervisor must have offered AP
//! creation (HV features bit 1); the APIC IDs are the guest's, as the launch described them.

use crate::cpu::CpuOps;
use crate::ghcb::{Ghcb, GhcbError};
use crate::memory::SharedMemory;
use alloc::vec::Vec;
use svsm_abi::snp::ghcb::{AP_CREATE, AP_DESTROY};
use svsm_core::platform::{Gpa, VcpuControl, VcpuError, Vmpl};

/// The guest's vCPUs, driven through a GHCB.
pub struct SnpVcpus<'a, C, S> {
    ghcb: &'a mut Ghcb<C, S>,
    apic_ids: Vec<u32>,
}

impl<'a, C: CpuOps, S: SharedMemory> SnpVcpus<'a, C, S> {
    /// vCPUs with these APIC IDs, through `ghcb`.
    pub fn new(ghcb: &'a mut Ghcb<C, S>, apic_ids: &[u32]) -> Self {
        SnpVcpus {
            ghcb,
            apic_ids: apic_ids.to_vec(),
        }
    }
}

/// A host refusal keeps its code; a GHCB that cannot carry the request is a channel failure.
fn host(e: GhcbError) -> VcpuError {
    match e {
        GhcbError::Exception(v) | GhcbError::Input(v) | GhcbError::ExitInfo(v) => {
            VcpuError::Host(v)
        }
        GhcbError::Msr(_)
        | GhcbError::ProtocolVersion { .. }
        | GhcbError::Misaligned(_)
        | GhcbError::NotRegistered
        | GhcbError::IoSize(_)
        | GhcbError::Missing(_)
        | GhcbError::Shared(_)
        | GhcbError::PageStateChange(_)
        | GhcbError::PscTampered(_)
        | GhcbError::PscEntry(_)
        | GhcbError::PscNoProgress => VcpuError::Channel,
    }
}

impl<C: CpuOps, S: SharedMemory> VcpuControl for SnpVcpus<'_, C, S> {
    fn exists(&self, apic_id: u32) -> bool {
        self.apic_ids.contains(&apic_id)
    }

    fn create(
        &mut self,
        apic_id: u32,
        vmsa: Gpa,
        vmpl: Vmpl,
        sev_features: u64,
    ) -> Result<(), VcpuError> {
        if !self.exists(apic_id) {
            return Err(VcpuError::UnknownApicId(apic_id));
        }
        self.ghcb
            .ap_creation(AP_CREATE, apic_id, vmpl.level(), vmsa.raw(), sev_features)
            .map_err(host)
    }

    fn destroy(&mut self, apic_id: u32, vmsa: Gpa, vmpl: Vmpl) -> Result<(), VcpuError> {
        if !self.exists(apic_id) {
            return Err(VcpuError::UnknownApicId(apic_id));
        }
        self.ghcb
            .ap_creation(AP_DESTROY, apic_id, vmpl.level(), vmsa.raw(), 0)
            .map_err(host)
    }
}
