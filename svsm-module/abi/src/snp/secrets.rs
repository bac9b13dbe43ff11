//! The SNP secrets page (SNP ABI spec, "Secrets Page Format"; the OS area follows the GHCB
//! spec, "Secrets page OS area"; the SVSM fields at 0x140 follow the SVSM spec §4.1). One 4 KiB
//! page the PSP fills at launch: the four VMPCKs that key guest messages, the guest-OS-visible
//! workarounds, and an area the guest OS uses to keep its message sequence numbers.
//!
//! The SVSM reads the hardware page once, keeps VMPCK0 for itself, and hands the guest a copy
//! ([`SecretsPage::copy_for_guest`]) with VMPCK0..VMPCK(guest VMPL − 1) zeroed and the SVSM
//! fields filled in. An all-zero VMPCK means the key is absent or was disabled.

use crate::assert_layout;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the secrets page.
pub const SECRETS_PAGE_SIZE: usize = 4096;
/// Size of one VMPCK (an AES-256-GCM key).
pub const VMPCK_LEN: usize = 32;
/// Lowest secrets-page VERSION accepted (version 2 and 3 pages share this layout).
pub const MIN_SECRETS_VERSION: u32 = 2;

/// The guest OS area at 0x0A0 of the secrets page (GHCB spec, "Secrets page OS area"), 96 bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SecretsOsArea {
    /// Low 32 bits of the last message sequence number used with VMPCK0..3.
    pub msg_seqno_lo: [U32; 4],
    /// Physical address of the AP jump table (SEV-ES style AP boot).
    pub ap_jump_table_pa: U64,
    /// High 32 bits of the sequence numbers for VMPCK0..3 (GHCB 2.01+; older guests: reserved).
    pub msg_seqno_hi: [U32; 4],
    /// Reserved.
    pub reserved_28: [u8; 22],
    /// OS-area version (1 = GHCB 2.01).
    pub version: zerocopy::little_endian::U16,
    /// Free for the guest's use.
    pub guest_usage: [u8; 32],
}
assert_layout!(
    SecretsOsArea,
    size = 96,
    msg_seqno_lo = 0,
    ap_jump_table_pa = 0x10,
    msg_seqno_hi = 0x18,
    reserved_28 = 0x28,
    version = 0x3E,
    guest_usage = 0x40
);

/// The secrets page, 4096 bytes (SNP ABI spec, "Secrets Page Format").
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SecretsPage {
    /// VERSION of the page layout (2 or 3 on current firmware).
    pub version: U32,
    /// Bit 0 IMIEN (initial migration image enabled); bits 31:1 reserved.
    pub imi_en: U32,
    /// FMS: CPUID Fn0000_0001_EAX of the part.
    pub fms: U32,
    /// Reserved.
    pub reserved_0c: U32,
    /// Guest-OS-visible workarounds, from the hypervisor at launch.
    pub gosvw: [u8; 16],
    /// VMPCK0..VMPCK3: the AES-256-GCM keys of guest messages for each VMPL.
    pub vmpck: [[u8; VMPCK_LEN]; 4],
    /// The guest OS area.
    pub os_area: SecretsOsArea,
    /// VMSA tweak bitmap (VMSA register protection only).
    pub vmsa_tweak_bitmap: [u8; 64],
    /// SVSM_BASE: GPA of the SVSM's memory (zero in the hardware page; the SVSM fills it in the
    /// guest's copy).
    pub svsm_base: U64,
    /// SVSM_SIZE: bytes of SVSM memory; 0 means no SVSM.
    pub svsm_size: U64,
    /// SVSM_CAA: GPA of the boot vCPU's 4 KiB calling area.
    pub svsm_caa: U64,
    /// SVSM_MAX_VERSION: highest SVSM core-protocol version.
    pub svsm_max_version: U32,
    /// SVSM_GUEST_VMPL: the VMPL the guest OS runs at.
    pub svsm_guest_vmpl: u8,
    /// Reserved.
    pub reserved_15d: [u8; 3],
    /// TSC_FACTOR: mean TSC frequency = nominal × (1 − TSC_FACTOR / 100000).
    pub tsc_factor: U32,
    /// Reserved to the end of the page.
    pub reserved_164: [u8; SECRETS_PAGE_SIZE - 0x164],
}
assert_layout!(
    SecretsPage,
    size = SECRETS_PAGE_SIZE,
    version = 0,
    imi_en = 4,
    fms = 8,
    reserved_0c = 0xC,
    gosvw = 0x10,
    vmpck = 0x20,
    os_area = 0xA0,
    vmsa_tweak_bitmap = 0x100,
    svsm_base = 0x140,
    svsm_size = 0x148,
    svsm_caa = 0x150,
    svsm_max_version = 0x158,
    svsm_guest_vmpl = 0x15C,
    reserved_15d = 0x15D,
    tsc_factor = 0x160,
    reserved_164 = 0x164
);

impl core::fmt::Debug for SecretsPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the keys; say only which are present.
        let present: [bool; 4] = core::array::from_fn(|i| self.vmpck_present(i as u8));
        f.debug_struct("SecretsPage")
            .field("version", &self.version.get())
            .field("vmpck_present", &present)
            .field("svsm_base", &self.svsm_base.get())
            .field("svsm_size", &self.svsm_size.get())
            .field("svsm_caa", &self.svsm_caa.get())
            .field("svsm_guest_vmpl", &self.svsm_guest_vmpl)
            .finish_non_exhaustive()
    }
}

/// Why a secrets page was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// Not exactly one page.
    #[error("secrets page is {actual} bytes, expected {SECRETS_PAGE_SIZE}")]
    Length {
        /// Bytes given.
        actual: usize,
    },
    /// VERSION below [`MIN_SECRETS_VERSION`].
    #[error("secrets page VERSION {0} is not supported (need at least {MIN_SECRETS_VERSION})")]
    Version(u32),
    /// A VMPCK index above 3.
    #[error("VMPCK index {0} does not exist (0..=3)")]
    VmpckIndex(u8),
    /// The guest VMPL of a guest copy is not 1..=3.
    #[error("guest VMPL {0} cannot receive a secrets page copy (1..=3)")]
    GuestVmpl(u8),
}

/// What the SVSM writes into the guest's copy of the secrets page (SVSM spec §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvsmSecretsInfo {
    /// GPA of the SVSM's memory.
    pub base: u64,
    /// Bytes of SVSM memory.
    pub size: u64,
    /// GPA of the boot vCPU's calling area.
    pub caa: u64,
    /// Highest core-protocol version served.
    pub max_version: u32,
}

impl SecretsPage {
    /// Reads a secrets page: exactly 4096 bytes with a supported VERSION.
    pub fn parse(bytes: &[u8]) -> Result<&Self, SecretsError> {
        let page = Self::ref_from_bytes(bytes).map_err(|_| SecretsError::Length {
            actual: bytes.len(),
        })?;
        if page.version.get() < MIN_SECRETS_VERSION {
            return Err(SecretsError::Version(page.version.get()));
        }
        Ok(page)
    }

    /// VMPCK`index`, or `None` when the index is out of range or the key is all zero (absent
    /// or disabled).
    pub fn vmpck(&self, index: u8) -> Option<&[u8; VMPCK_LEN]> {
        self.vmpck
            .get(usize::from(index))
            .filter(|k| k.iter().any(|&b| b != 0))
    }

    /// True when VMPCK`index` exists and is not all zero.
    pub fn vmpck_present(&self, index: u8) -> bool {
        self.vmpck(index).is_some()
    }

    /// The 64-bit sequence number the guest OS recorded in the OS area for VMPCK`index` (low
    /// half at 0x0A0 + 4·index, high half at 0x0B8 + 4·index).
    pub fn os_msg_seqno(&self, index: u8) -> Result<u64, SecretsError> {
        let i = usize::from(index);
        let lo = self
            .os_area
            .msg_seqno_lo
            .get(i)
            .ok_or(SecretsError::VmpckIndex(index))?;
        let hi = self
            .os_area
            .msg_seqno_hi
            .get(i)
            .ok_or(SecretsError::VmpckIndex(index))?;
        Ok((u64::from(hi.get()) << 32) | u64::from(lo.get()))
    }

    /// The guest's copy: VMPCK0..VMPCK(`guest_vmpl` − 1) zeroed (the guest may not use the
    /// keys of more privileged levels), the SVSM fields set, everything else unchanged (the
    /// guest's own VMPCKs and OS area pass through).
    pub fn copy_for_guest(
        &self,
        guest_vmpl: u8,
        svsm: &SvsmSecretsInfo,
    ) -> Result<SecretsPage, SecretsError> {
        if !(1..=3).contains(&guest_vmpl) {
            return Err(SecretsError::GuestVmpl(guest_vmpl));
        }
        let mut copy = self.clone();
        for key in copy.vmpck.iter_mut().take(usize::from(guest_vmpl)) {
            key.zero();
        }
        copy.svsm_base = U64::new(svsm.base);
        copy.svsm_size = U64::new(svsm.size);
        copy.svsm_caa = U64::new(svsm.caa);
        copy.svsm_max_version = U32::new(svsm.max_version);
        copy.svsm_guest_vmpl = guest_vmpl;
        Ok(copy)
    }

    /// A page whose every byte is zero (for building pages in tests and emulators).
    pub fn zeroed() -> Self {
        Self::new_zeroed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec;

    fn page() -> std::vec::Vec<u8> {
        let mut b = vec![0u8; SECRETS_PAGE_SIZE];
        b[0] = 3;
        for k in 0..4 {
            b[0x20 + 32 * k..0x40 + 32 * k].fill(0x10 + k as u8);
        }
        b[0xA0..0xA4].copy_from_slice(&7u32.to_le_bytes()); // VMPCK0 seqno lo
        b[0xA8..0xAC].copy_from_slice(&9u32.to_le_bytes()); // VMPCK2 seqno lo
        b[0xC0..0xC4].copy_from_slice(&1u32.to_le_bytes()); // VMPCK2 seqno hi
        b[0xE0] = 0x77; // guest usage
        b
    }

    #[test]
    fn parses_keys_and_sequence_numbers() {
        let b = page();
        let p = SecretsPage::parse(&b).unwrap();
        assert_eq!(p.vmpck(0), Some(&[0x10; 32]));
        assert_eq!(p.vmpck(3), Some(&[0x13; 32]));
        assert_eq!(p.vmpck(4), None);
        assert_eq!(p.os_msg_seqno(0).unwrap(), 7);
        assert_eq!(p.os_msg_seqno(2).unwrap(), (1 << 32) | 9);
        assert_eq!(p.os_msg_seqno(4), Err(SecretsError::VmpckIndex(4)));
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("16, 16"), "{dbg}");
    }

    #[test]
    fn refuses_bad_length_and_version() {
        let b = page();
        for len in [0, 1, SECRETS_PAGE_SIZE - 1, SECRETS_PAGE_SIZE + 1] {
            let mut v = b.clone();
            v.resize(len, 0);
            assert_eq!(
                SecretsPage::parse(&v).unwrap_err(),
                SecretsError::Length { actual: len }
            );
        }
        let mut v = b;
        v[0] = 1;
        assert_eq!(
            SecretsPage::parse(&v).unwrap_err(),
            SecretsError::Version(1)
        );
    }

    #[test]
    fn absent_key_is_none() {
        let mut b = page();
        b[0x40..0x60].fill(0);
        let p = SecretsPage::parse(&b).unwrap();
        assert!(!p.vmpck_present(1));
        assert!(p.vmpck_present(2));
    }

    #[test]
    fn guest_copy_zeroes_privileged_keys_and_sets_svsm_fields() {
        let b = page();
        let p = SecretsPage::parse(&b).unwrap();
        let info = SvsmSecretsInfo {
            base: 0x8000_0000,
            size: 0x100_0000,
            caa: 0x8100_0000,
            max_version: 1,
        };
        let g = p.copy_for_guest(2, &info).unwrap();
        let gb = g.as_bytes();
        assert!(gb[0x20..0x60].iter().all(|&x| x == 0));
        assert_eq!(&gb[0x60..0xA0], &b[0x60..0xA0]);
        assert_eq!(&gb[0xA0..0x100], &b[0xA0..0x100]);
        assert_eq!(&gb[0x140..0x148], &0x8000_0000u64.to_le_bytes());
        assert_eq!(&gb[0x148..0x150], &0x100_0000u64.to_le_bytes());
        assert_eq!(&gb[0x150..0x158], &0x8100_0000u64.to_le_bytes());
        assert_eq!(&gb[0x158..0x15C], &1u32.to_le_bytes());
        assert_eq!(gb[0x15C], 2);
        assert_eq!(
            p.copy_for_guest(0, &info).unwrap_err(),
            SecretsError::GuestVmpl(0)
        );
        assert_eq!(
            p.copy_for_guest(4, &info).unwrap_err(),
            SecretsError::GuestVmpl(4)
        );
    }
}
