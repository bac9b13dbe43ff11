//! vCPU models and their CPUID(1).EAX signatures. The VMSA carries the signature in RDX at reset
//! (QEMU's `-cpu` model decides it), so the model changes the digest. Families, models and
//! steppings are QEMU's `builtin_x86_defs` as listed by sev-snp-measure 0.0.13 and the `sev`
//! crate 8.0.0 (`src/measurement/vcpu_types.rs`).

use crate::error::VcpuTypeError;
use core::fmt;
use core::str::FromStr;

/// CPUID Fn0000_0001_EAX from family, model and stepping (AMD CPUID Specification #25481):
/// stepping bits 3:0, model low nibble 7:4, base family (at most 0xF) 11:8, model high nibble
/// 19:16, extended family (family − 0xF above 0xF) 27:20.
pub const fn cpu_sig(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xF {
        (0xF, (family - 0xF) & 0xFF)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xF) << 16)
        | (family_low << 8)
        | ((model & 0xF) << 4)
        | (stepping & 0xF)
}

/// QEMU EPYC vCPU models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuType {
    /// EPYC (Naples).
    Epyc,
    /// EPYC-v1.
    EpycV1,
    /// EPYC-v2.
    EpycV2,
    /// EPYC-IBPB.
    EpycIbpb,
    /// EPYC-v3.
    EpycV3,
    /// EPYC-v4.
    EpycV4,
    /// EPYC-Rome.
    EpycRome,
    /// EPYC-Rome-v1.
    EpycRomeV1,
    /// EPYC-Rome-v2.
    EpycRomeV2,
    /// EPYC-Rome-v3.
    EpycRomeV3,
    /// EPYC-Milan.
    EpycMilan,
    /// EPYC-Milan-v1.
    EpycMilanV1,
    /// EPYC-Milan-v2.
    EpycMilanV2,
    /// EPYC-Genoa.
    EpycGenoa,
    /// EPYC-Genoa-v1.
    EpycGenoaV1,
    /// EPYC-Turin.
    EpycTurin,
    /// EPYC-Turin-v1 (known to the `sev` crate, not to sev-snp-measure 0.0.13).
    EpycTurinV1,
    /// EPYC-Turin-v2 (known to the `sev` crate, not to sev-snp-measure 0.0.13).
    EpycTurinV2,
}

impl VcpuType {
    /// Every known model.
    pub const ALL: [VcpuType; 18] = [
        VcpuType::Epyc,
        VcpuType::EpycV1,
        VcpuType::EpycV2,
        VcpuType::EpycIbpb,
        VcpuType::EpycV3,
        VcpuType::EpycV4,
        VcpuType::EpycRome,
        VcpuType::EpycRomeV1,
        VcpuType::EpycRomeV2,
        VcpuType::EpycRomeV3,
        VcpuType::EpycMilan,
        VcpuType::EpycMilanV1,
        VcpuType::EpycMilanV2,
        VcpuType::EpycGenoa,
        VcpuType::EpycGenoaV1,
        VcpuType::EpycTurin,
        VcpuType::EpycTurinV1,
        VcpuType::EpycTurinV2,
    ];

    /// QEMU's name.
    pub const fn name(self) -> &'static str {
        match self {
            VcpuType::Epyc => "EPYC",
            VcpuType::EpycV1 => "EPYC-v1",
            VcpuType::EpycV2 => "EPYC-v2",
            VcpuType::EpycIbpb => "EPYC-IBPB",
            VcpuType::EpycV3 => "EPYC-v3",
            VcpuType::EpycV4 => "EPYC-v4",
            VcpuType::EpycRome => "EPYC-Rome",
            VcpuType::EpycRomeV1 => "EPYC-Rome-v1",
            VcpuType::EpycRomeV2 => "EPYC-Rome-v2",
            VcpuType::EpycRomeV3 => "EPYC-Rome-v3",
            VcpuType::EpycMilan => "EPYC-Milan",
            VcpuType::EpycMilanV1 => "EPYC-Milan-v1",
            VcpuType::EpycMilanV2 => "EPYC-Milan-v2",
            VcpuType::EpycGenoa => "EPYC-Genoa",
            VcpuType::EpycGenoaV1 => "EPYC-Genoa-v1",
            VcpuType::EpycTurin => "EPYC-Turin",
            VcpuType::EpycTurinV1 => "EPYC-Turin-v1",
            VcpuType::EpycTurinV2 => "EPYC-Turin-v2",
        }
    }

    /// (family, model, stepping).
    pub const fn family_model_stepping(self) -> (u32, u32, u32) {
        match self {
            VcpuType::Epyc
            | VcpuType::EpycV1
            | VcpuType::EpycV2
            | VcpuType::EpycIbpb
            | VcpuType::EpycV3
            | VcpuType::EpycV4 => (23, 1, 2),
            VcpuType::EpycRome
            | VcpuType::EpycRomeV1
            | VcpuType::EpycRomeV2
            | VcpuType::EpycRomeV3 => (23, 49, 0),
            VcpuType::EpycMilan | VcpuType::EpycMilanV1 | VcpuType::EpycMilanV2 => (25, 1, 1),
            VcpuType::EpycGenoa | VcpuType::EpycGenoaV1 => (25, 17, 0),
            VcpuType::EpycTurin | VcpuType::EpycTurinV1 | VcpuType::EpycTurinV2 => (26, 0, 0),
        }
    }

    /// The CPUID(1).EAX signature that goes into RDX.
    pub const fn signature(self) -> u32 {
        let (f, m, s) = self.family_model_stepping();
        cpu_sig(f, m, s)
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VcpuType {
    type Err = VcpuTypeError;

    /// QEMU's name, case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VcpuType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| VcpuTypeError::Unknown(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_reference() {
        assert_eq!(VcpuType::Epyc.signature(), 0x800F12);
        assert_eq!(VcpuType::EpycV4.signature(), 0x800F12);
        assert_eq!(VcpuType::EpycRome.signature(), 0x830F10);
        assert_eq!(VcpuType::EpycMilan.signature(), 0xA00F11);
        assert_eq!(VcpuType::EpycGenoa.signature(), 0xA10F10);
        assert_eq!(VcpuType::EpycTurin.signature(), 0xB00F00);
        assert_eq!(cpu_sig(6, 0x55, 7), 0x50657);
    }

    #[test]
    fn names_round_trip() {
        for t in VcpuType::ALL {
            assert_eq!(t.name().parse::<VcpuType>().unwrap(), t);
            assert_eq!(t.name().to_lowercase().parse::<VcpuType>().unwrap(), t);
        }
        assert_eq!(
            "EPYC-Zen9".parse::<VcpuType>(),
            Err(VcpuTypeError::Unknown("EPYC-Zen9".into()))
        );
    }
}
