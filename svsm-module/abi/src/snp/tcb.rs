//! TCB_VERSION (SNP ABI spec, "TCB_VERSION Structure"): eight bytes of security patch levels
//! whose byte positions depend on the product. Milan and Genoa use
//! `[bl, tee, r, r, r, r, snp, ucode]`; Turin and later use `[fmc, bl, tee, snp, r, r, r, ucode]`.
//! A TCB must never be compared as a u64: the components are independent.

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The raw 8-byte TCB_VERSION as stored in reports and key requests.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(transparent)]
pub struct TcbVersion(pub [u8; 8]);

impl TcbVersion {
    /// The raw value read as a little-endian u64 (for display only, never for ordering).
    pub fn raw(&self) -> u64 {
        U64::from_bytes(self.0).get()
    }

    /// Builds a TCB from its little-endian u64 form.
    pub fn from_raw(raw: u64) -> Self {
        TcbVersion(raw.to_le_bytes())
    }

    /// Decodes the SPLs with a product's layout.
    pub fn decode(&self, layout: TcbLayout) -> TcbComponents {
        let b = self.0;
        match layout {
            TcbLayout::MilanGenoa => TcbComponents {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                reserved: [b[2], b[3], b[4], b[5]],
            },
            TcbLayout::Turin => TcbComponents {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
                reserved: [b[4], b[5], b[6], 0],
            },
        }
    }

    /// Encodes SPLs with a product's layout (reserved bytes as given).
    pub fn encode(c: &TcbComponents, layout: TcbLayout) -> Self {
        let r = c.reserved;
        TcbVersion(match layout {
            TcbLayout::MilanGenoa => [
                c.bootloader,
                c.tee,
                r[0],
                r[1],
                r[2],
                r[3],
                c.snp,
                c.microcode,
            ],
            TcbLayout::Turin => [
                c.fmc.unwrap_or(0),
                c.bootloader,
                c.tee,
                c.snp,
                r[0],
                r[1],
                r[2],
                c.microcode,
            ],
        })
    }
}

impl core::fmt::Debug for TcbVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TcbVersion({:#018x})", self.raw())
    }
}

/// Which byte layout a TCB_VERSION uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcbLayout {
    /// Milan and Genoa: `[bl, tee, r, r, r, r, snp, ucode]`.
    MilanGenoa,
    /// Turin (family 0x1A) and later: `[fmc, bl, tee, snp, r, r, r, ucode]`.
    Turin,
}

/// Decoded security patch levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcbComponents {
    /// FMC SPL (Turin layout only).
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// TEE (PSP OS) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// The reserved bytes in layout order (KDS spl_4..spl_7 on Milan/Genoa; 3 bytes on Turin).
    pub reserved: [u8; 4],
}

impl TcbComponents {
    /// Component-wise `self >= other`; `None` when the layouts differ (FMC present on one side).
    pub fn at_least(&self, other: &TcbComponents) -> Option<bool> {
        let fmc_ok = match (self.fmc, other.fmc) {
            (Some(a), Some(b)) => a >= b,
            (None, None) => true,
            _ => return None,
        };
        Some(
            fmc_ok
                && self.bootloader >= other.bootloader
                && self.tee >= other.tee
                && self.snp >= other.snp
                && self.microcode >= other.microcode,
        )
    }
}

/// An AMD EPYC product generation that signs SNP reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Product {
    /// EPYC 7003, family 0x19 models 0x00..=0x0F.
    Milan,
    /// EPYC 9004, family 0x19 models 0x10..=0x1F and 0xA0..=0xAF.
    Genoa,
    /// EPYC 9005, family 0x1A models 0x00..=0x11.
    Turin,
}

impl Product {
    /// The product from a report's CPUID_FAM_ID / CPUID_MOD_ID (v3+ reports).
    pub const fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The TCB byte layout of this product.
    pub const fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Milan | Product::Genoa => TcbLayout::MilanGenoa,
            Product::Turin => TcbLayout::Turin,
        }
    }

    /// The product line name AMD's KDS uses ("Milan", "Genoa", "Turin").
    pub const fn kds_name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Parses a KDS product line name, ignoring a stepping suffix ("Milan-B0").
    pub fn from_kds_name(name: &str) -> Option<Self> {
        let line = name.split('-').next().unwrap_or(name);
        match line {
            "Milan" => Some(Product::Milan),
            "Genoa" => Some(Product::Genoa),
            "Turin" => Some(Product::Turin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_decode_the_vector_values() {
        let turin = TcbVersion::from_raw(0x5100_0000_0401_0101).decode(TcbLayout::Turin);
        assert_eq!(
            (
                turin.fmc,
                turin.bootloader,
                turin.tee,
                turin.snp,
                turin.microcode
            ),
            (Some(1), 1, 1, 4, 81)
        );
        // The same bytes with the wrong layout give a different (wrong) SNP SPL.
        assert_eq!(
            TcbVersion::from_raw(0x5100_0000_0401_0101)
                .decode(TcbLayout::MilanGenoa)
                .snp,
            0
        );
        let milan = TcbVersion::from_raw(0xDB18_0000_0000_0004).decode(TcbLayout::MilanGenoa);
        assert_eq!(
            (milan.bootloader, milan.tee, milan.snp, milan.microcode),
            (4, 0, 24, 219)
        );
        for layout in [TcbLayout::MilanGenoa, TcbLayout::Turin] {
            let t = TcbVersion::from_raw(0x5100_0000_0401_0101);
            assert_eq!(TcbVersion::encode(&t.decode(layout), layout), t);
        }
    }

    #[test]
    fn ordering_is_component_wise() {
        let a = TcbComponents {
            bootloader: 4,
            snp: 24,
            microcode: 219,
            ..Default::default()
        };
        let b = TcbComponents {
            bootloader: 3,
            snp: 25,
            microcode: 100,
            ..Default::default()
        };
        assert_eq!(a.at_least(&b), Some(false));
        assert_eq!(b.at_least(&a), Some(false));
        assert_eq!(a.at_least(&a), Some(true));
        let t = TcbComponents {
            fmc: Some(1),
            ..Default::default()
        };
        assert_eq!(t.at_least(&a), None);
    }

    #[test]
    fn products_from_cpuid_and_names() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xA0), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x1A, 0x50), None);
        assert_eq!(Product::from_cpuid(0x17, 0x01), None);
        assert_eq!(Product::from_kds_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_kds_name("Siena"), None);
    }
}
