//! Starting the guest under the SVSM (SVSM spec, AMD pub. 58019, §4): before the guest's
//! firmware runs, the SVSM gives it its copy of the secrets page — VMPCKs up to the guest's VMPL
//! wiped, the SVSM fields (base, size, calling area, maximum core-protocol version, the guest's
//! VMPL) filled — prepares the boot vCPU's calling area, builds the firmware's VMSA at the
//! guest's VMPL in reset state (what OVMF expects at its reset vector), marks it a VMSA and has
//! the platform run it. The result is the [`CoreProtocol`] that serves the guest from then on.
//!
//! Trusts the platform and the hardware secrets page it is given; the pages it writes are the
//! SVSM's choice (the launch layout), never a guest's.

use crate::core_protocol::{CoreProtocol, VcpuRecord};
use crate::platform::{
    Gpa, GuestMemory, MemoryError, Rmp, RmpError, VcpuControl, VcpuError, Vmpl, VmplAccess,
    PAGE_SIZE,
};
use svsm_abi::core_protocol::PageSize;
use svsm_abi::snp::secrets::{SecretsError, SecretsPage, SvsmSecretsInfo};
use svsm_abi::snp::vmsa::{reset_state, RESET_EIP};
use zerocopy::IntoBytes;

/// The highest core-protocol version served (written to the guest's secrets page).
pub const CORE_PROTOCOL_MAX_VERSION: u32 = 1;

/// Where the guest starts and what it is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestBoot {
    /// The SVSM's memory: first GPA.
    pub svsm_base: Gpa,
    /// The SVSM's memory: bytes.
    pub svsm_size: u64,
    /// The VMPL the guest runs at (1..=3).
    pub guest_vmpl: Vmpl,
    /// The boot vCPU's APIC ID.
    pub apic_id: u32,
    /// The page (inside the SVSM's memory) that becomes the firmware's VMSA.
    pub firmware_vmsa: Gpa,
    /// The boot vCPU's calling area (guest memory).
    pub calling_area: Gpa,
    /// Where the guest's copy of the secrets page goes (guest memory).
    pub guest_secrets: Gpa,
    /// SEV_FEATURES of the guest's VMSA (the SVSM's own).
    pub sev_features: u64,
    /// CPUID(1).EAX, which RDX holds at reset.
    pub cpu_signature: u32,
}

/// Why the guest could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestBootError {
    /// The layout is not usable (a page misaligned, the VMSA outside the SVSM's memory or at a
    /// 2 MiB-aligned address, the calling area or secrets copy inside it, the guest at VMPL0).
    #[error("guest boot layout: {0}")]
    Layout(&'static str),
    /// The secrets page could not be copied for the guest.
    #[error("secrets page: {0}")]
    Secrets(SecretsError),
    /// A page could not be written.
    #[error("memory: {0}")]
    Memory(MemoryError),
    /// RMPADJUST failed.
    #[error("RMPADJUST: {0}")]
    Rmpadjust(RmpError),
    /// The platform could not start the vCPU.
    #[error("vCPU: {0}")]
    Vcpu(VcpuError),
}

fn inside(gpa: Gpa, base: Gpa, size: u64) -> bool {
    gpa.raw() >= base.raw() && gpa.raw() - base.raw() < size
}

/// Starts the guest's firmware (see the module documentation).
pub fn start_guest<M: GuestMemory + Rmp, V: VcpuControl>(
    memory: &mut M,
    vcpus: &mut V,
    boot: &GuestBoot,
    hardware_secrets: &SecretsPage,
) -> Result<CoreProtocol, GuestBootError> {
    let end = boot
        .svsm_base
        .checked_add(boot.svsm_size)
        .ok_or(GuestBootError::Layout(
            "the SVSM's memory wraps the address space",
        ))?;
    let aligned = [boot.firmware_vmsa, boot.calling_area, boot.guest_secrets]
        .iter()
        .all(|g| g.is_page_aligned());
    if !aligned || boot.svsm_base.raw() % PAGE_SIZE != 0 || boot.svsm_size % PAGE_SIZE != 0 {
        return Err(GuestBootError::Layout("a page is not 4 KiB aligned"));
    }
    if boot.guest_vmpl.level() == 0 {
        return Err(GuestBootError::Layout("the guest cannot run at VMPL0"));
    }
    if !inside(boot.firmware_vmsa, boot.svsm_base, boot.svsm_size) {
        return Err(GuestBootError::Layout(
            "the firmware VMSA must be in the SVSM's memory",
        ));
    }
    if boot.firmware_vmsa.raw() % PageSize::Size2M.bytes() == 0 {
        return Err(GuestBootError::Layout(
            "a VMSA cannot sit at a 2 MiB-aligned address",
        ));
    }
    if inside(boot.calling_area, boot.svsm_base, boot.svsm_size)
        || inside(boot.guest_secrets, boot.svsm_base, boot.svsm_size)
        || boot.calling_area == boot.guest_secrets
    {
        return Err(GuestBootError::Layout(
            "the calling area and the secrets copy must be distinct guest pages",
        ));
    }
    let guest = boot.guest_vmpl;
    let grant = |memory: &mut M, gpa: Gpa| -> Result<(), GuestBootError> {
        for level in (1..=guest.level()).filter_map(Vmpl::new) {
            memory
                .rmpadjust(gpa, PageSize::Size4K, level, VmplAccess::FULL)
                .map_err(GuestBootError::Rmpadjust)?;
        }
        Ok(())
    };

    // The guest's secrets page: its VMPCKs and the SVSM fields.
    let copy = hardware_secrets
        .copy_for_guest(
            guest.level(),
            &SvsmSecretsInfo {
                base: boot.svsm_base.raw(),
                size: boot.svsm_size,
                caa: boot.calling_area.raw(),
                max_version: CORE_PROTOCOL_MAX_VERSION,
            },
        )
        .map_err(GuestBootError::Secrets)?;
    memory
        .write(Vmpl::ZERO, boot.guest_secrets, copy.as_bytes())
        .map_err(GuestBootError::Memory)?;
    grant(memory, boot.guest_secrets)?;

    // The calling area: no call pending.
    memory
        .write(Vmpl::ZERO, boot.calling_area, &[0u8; 8])
        .map_err(GuestBootError::Memory)?;
    grant(memory, boot.calling_area)?;

    // The firmware's VMSA: reset state at the guest's VMPL, then a VMSA in the RMP, then run.
    let mut vmsa = reset_state(RESET_EIP, u64::from(boot.cpu_signature), boot.sev_features);
    vmsa.vmpl = guest.level();
    memory
        .write(Vmpl::ZERO, boot.firmware_vmsa, vmsa.as_bytes())
        .map_err(GuestBootError::Memory)?;
    memory
        .rmpadjust(
            boot.firmware_vmsa,
            PageSize::Size4K,
            guest,
            // In the SVSM's memory: no guest access, ever.
            VmplAccess::VMSA_ONLY,
        )
        .map_err(GuestBootError::Rmpadjust)?;
    vcpus
        .create(boot.apic_id, boot.firmware_vmsa, guest, boot.sev_features)
        .map_err(GuestBootError::Vcpu)?;
    Ok(CoreProtocol::new(
        boot.svsm_base,
        end,
        VcpuRecord {
            apic_id: boot.apic_id,
            vmpl: guest,
            vmsa: boot.firmware_vmsa,
            ca: boot.calling_area,
            boot: true,
            superseded: false,
        },
        boot.sev_features,
    ))
}
