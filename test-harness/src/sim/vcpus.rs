//! The host's side of vCPU creation as the simulated machine plays it (GHCB "AP Creation"
//! NAE event): which APIC IDs exist, which vCPUs run from which VMSA, and a switch that makes a
//! vCPU refuse to stop (as a running one does).

use svsm_core::platform::{Gpa, VcpuControl, VcpuError, Vmpl};

/// A started vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimVcpu {
    /// APIC ID.
    pub apic_id: u32,
    /// Its VMSA.
    pub vmsa: Gpa,
    /// The VMPL it runs at.
    pub vmpl: Vmpl,
    /// SEV features it was started with.
    pub sev_features: u64,
}

/// The simulated host's vCPUs.
#[derive(Clone, Debug, Default)]
pub struct SimVcpus {
    /// APIC IDs the guest has (the boot vCPU's included).
    pub apic_ids: Vec<u32>,
    /// vCPUs started through [`VcpuControl::create`].
    pub started: Vec<SimVcpu>,
    /// APIC IDs whose vCPU is running and cannot be stopped now.
    pub busy: Vec<u32>,
}

impl SimVcpus {
    /// A guest with these APIC IDs.
    pub fn new(apic_ids: &[u32]) -> Self {
        SimVcpus {
            apic_ids: apic_ids.to_vec(),
            ..SimVcpus::default()
        }
    }
}

impl VcpuControl for SimVcpus {
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
        if !self.apic_ids.contains(&apic_id) {
            return Err(VcpuError::UnknownApicId(apic_id));
        }
        self.started.push(SimVcpu {
            apic_id,
            vmsa,
            vmpl,
            sev_features,
        });
        Ok(())
    }

    fn destroy(&mut self, apic_id: u32, vmsa: Gpa, _vmpl: Vmpl) -> Result<(), VcpuError> {
        if self.busy.contains(&apic_id) {
            return Err(VcpuError::Running);
        }
        self.started
            .retain(|v| !(v.apic_id == apic_id && v.vmsa == vmsa));
        Ok(())
    }
}
