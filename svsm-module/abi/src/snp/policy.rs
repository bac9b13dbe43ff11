//! Bit fields of the ATTESTATION_REPORT: GUEST POLICY (SNP ABI spec "Guest Policy Structure"),
//! PLATFORM_INFO ("PLATFORM_INFO Field") and KEY_INFO (signer info). Unknown bits are kept, never
//! rejected at parse time: a verifier reports them and its policy decides.

use bitflags::bitflags;

bitflags! {
    /// The flag bits (16 and up) of the guest policy. The ABI version sits in bits 15:0.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PolicyFlags: u64 {
        /// Host SMT allowed.
        const SMT = 1 << 16;
        /// Reserved, must be 1.
        const RESERVED_MBO = 1 << 17;
        /// A migration agent may be associated.
        const MIGRATE_MA = 1 << 18;
        /// The host may debug (decrypt) the guest.
        const DEBUG = 1 << 19;
        /// The guest may run on a single socket only.
        const SINGLE_SOCKET = 1 << 20;
        /// CXL devices and memory may be populated.
        const CXL_ALLOW = 1 << 21;
        /// AES-256-XTS memory encryption required.
        const MEM_AES_256_XTS = 1 << 22;
        /// RAPL must be disabled.
        const RAPL_DIS = 1 << 23;
        /// Ciphertext hiding must be enabled.
        const CIPHERTEXT_HIDING = 1 << 24;
        /// Guest page move / swap disabled (report version 5 era).
        const PAGE_SWAP_DISABLE = 1 << 25;
    }
}

/// GUEST POLICY (report offset 0x008).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Minimum firmware ABI minor version required.
    pub const fn abi_minor(self) -> u8 {
        self.0 as u8
    }
    /// Minimum firmware ABI major version required.
    pub const fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// The flag bits, unknown ones retained.
    pub const fn flags(self) -> PolicyFlags {
        PolicyFlags::from_bits_retain(self.0 & !0xFFFF)
    }
    /// Bits 63:26, reserved by the spec, that are set.
    pub const fn unknown_bits(self) -> u64 {
        self.0 & !0xFFFF & !PolicyFlags::all().bits()
    }
    /// True if the host may debug the guest.
    pub const fn debug_allowed(self) -> bool {
        self.0 & PolicyFlags::DEBUG.bits() != 0
    }
}

bitflags! {
    /// PLATFORM_INFO (report offset 0x040).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PlatformInfo: u64 {
        /// SMT enabled on the host.
        const SMT_EN = 1 << 0;
        /// Transparent SME enabled.
        const TSME_EN = 1 << 1;
        /// ECC memory in use.
        const ECC_EN = 1 << 2;
        /// RAPL disabled.
        const RAPL_DIS = 1 << 3;
        /// Ciphertext hiding for DRAM enabled.
        const CIPHERTEXT_HIDING_EN = 1 << 4;
        /// DRAM alias check completed since reset, no aliases found (report v3+).
        const ALIAS_CHECK_COMPLETE = 1 << 5;
        /// Bit 6: set on Turin; named IOMMU_WRITE_SAFE by one source, reserved by others.
        const IOMMU_WRITE_SAFE = 1 << 6;
        /// SEV-TIO enabled (report v5).
        const TIO_EN = 1 << 7;
    }
}

impl PlatformInfo {
    /// Set bits that have no name here (kept, reported, never fatal at parse time).
    pub const fn unknown_bits(self) -> u64 {
        self.bits() & !PlatformInfo::all().bits()
    }
}

/// Which key signed the report (KEY_INFO bits 4:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningKey {
    /// 0: the chip's VCEK.
    Vcek,
    /// 1: the cloud provider's VLEK.
    Vlek,
    /// 7: no key; the report is unsigned.
    None,
    /// 2..=6: reserved values.
    Reserved(u8),
}

/// KEY_INFO (report offset 0x048).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyInfo(pub u32);

impl KeyInfo {
    /// AUTHOR_KEY_EN: the ID block carried an author key (AUTHOR_KEY_DIGEST is meaningful).
    pub const fn author_key_en(self) -> bool {
        self.0 & 1 != 0
    }
    /// MASK_CHIP_KEY: the host masked the chip key; the report is not signed with the VCEK.
    pub const fn mask_chip_key(self) -> bool {
        self.0 & 2 != 0
    }
    /// The signing key selector.
    pub const fn signing_key(self) -> SigningKey {
        match (self.0 >> 2) & 7 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            v => SigningKey::Reserved(v as u8),
        }
    }
    /// Bits 31:5, which must be zero.
    pub const fn reserved_bits(self) -> u32 {
        self.0 & !0x1F
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_fields() {
        let p = GuestPolicy(0x3001F);
        assert_eq!((p.abi_major(), p.abi_minor()), (0, 31));
        assert!(p
            .flags()
            .contains(PolicyFlags::SMT | PolicyFlags::RESERVED_MBO));
        assert!(!p.debug_allowed());
        assert!(GuestPolicy(0xB0000).debug_allowed());
        assert_eq!(GuestPolicy(1 << 40 | 0x30000).unknown_bits(), 1 << 40);
    }

    #[test]
    fn platform_info_keeps_unknown_bits() {
        let turin = PlatformInfo::from_bits_retain(0x65);
        assert!(turin.contains(PlatformInfo::IOMMU_WRITE_SAFE | PlatformInfo::ALIAS_CHECK_COMPLETE));
        assert_eq!(turin.unknown_bits(), 0);
        assert_eq!(
            PlatformInfo::from_bits_retain(1 << 9 | 1).unknown_bits(),
            1 << 9
        );
    }

    #[test]
    fn key_info_signers() {
        assert_eq!(KeyInfo(0).signing_key(), SigningKey::Vcek);
        assert_eq!(KeyInfo(4).signing_key(), SigningKey::Vlek);
        assert_eq!(KeyInfo(7 << 2).signing_key(), SigningKey::None);
        assert_eq!(KeyInfo(3 << 2).signing_key(), SigningKey::Reserved(3));
        assert!(KeyInfo(1).author_key_en());
        assert!(KeyInfo(2).mask_chip_key());
        assert_eq!(KeyInfo(0x20).reserved_bits(), 0x20);
    }
}
