//! The combined attestation digest of seed 004 (docs/gpu.md "The combined digest"): one Stark
//! field element that a prover's on-chain verifier can hold (`felt252`), naming the CPU
//! attestation, the GPU attestation, or both. It is a name for the evidence, not a verdict: a
//! bundle appraisal prints it next to its verdict, and it is only as trustworthy as that
//! verdict.
//!
//! Definitions (field P = 2^251 + 17·2^192 + 1, Poseidon = Starknet's Hades permutation with
//! width 3 as `poseidon_hash(x, y)` and `poseidon_hash_many` define it):
//! - `felt(bytes)` = SHA-256(bytes) read big-endian, its top 6 bits cleared (so < 2^250 < P);
//! - `cpu` = `felt(SNP ATTESTATION_REPORT)`, all 1184 bytes as the PSP returned them
//!   (signature included);
//! - `gpu` = `felt(GPU report)` for one GPU, the report being SPDM GET_MEASUREMENTS request ‖
//!   MEASUREMENTS response as NVIDIA's tools write it; for several GPUs
//!   `poseidon_hash_many([felt(report_1), …, felt(report_n)])` in the bundle's order;
//! - combined = `poseidon_hash(cpu, gpu)` with both, `poseidon_hash(0, cpu)` with the CPU only,
//!   `gpu` with GPUs only, 0 with neither.

use serde::Serialize;
use sha2::{Digest, Sha256};
use starknet_crypto::{poseidon_hash, poseidon_hash_many, Felt};

/// The combined digest and its parts, each as a 0x-prefixed, 64-digit hex field element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CombinedDigest {
    /// `cpu`, when there is a CPU report.
    pub cpu: Option<String>,
    /// `gpu`, when there is at least one GPU report.
    pub gpu: Option<String>,
    /// The combined digest.
    pub combined: String,
    /// Which case: "cpu+gpu", "cpu", "gpu" or "none".
    pub parts: &'static str,
}

fn hex(f: &Felt) -> String {
    format!("0x{}", ::hex::encode(f.to_bytes_be()))
}

/// SHA-256 of `bytes` as a field element: big-endian, top 6 bits cleared.
pub fn felt(bytes: &[u8]) -> Felt {
    let mut digest: [u8; 32] = Sha256::digest(bytes).into();
    digest[0] &= 0x03;
    Felt::from_bytes_be(&digest)
}

/// The combined digest of a CPU report (if any) and GPU reports (any number, in order).
pub fn combined_digest(cpu_report: Option<&[u8]>, gpu_reports: &[&[u8]]) -> CombinedDigest {
    let cpu = cpu_report.map(felt);
    let gpu = match gpu_reports {
        [] => None,
        [one] => Some(felt(one)),
        many => Some(poseidon_hash_many(
            many.iter().map(|r| felt(r)).collect::<Vec<_>>().iter(),
        )),
    };
    let (combined, parts) = match (&cpu, &gpu) {
        (Some(c), Some(g)) => (poseidon_hash(*c, *g), "cpu+gpu"),
        (Some(c), None) => (poseidon_hash(Felt::ZERO, *c), "cpu"),
        (None, Some(g)) => (*g, "gpu"),
        (None, None) => (Felt::ZERO, "none"),
    };
    CombinedDigest {
        cpu: cpu.as_ref().map(hex),
        gpu: gpu.as_ref().map(hex),
        combined: hex(&combined),
        parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poseidon_matches_starkware_reference() {
        // Values computed with StarkWare's own Python (cairo-lang 0.14.0.1,
        // starkware.cairo.common.poseidon_hash), not with the crate under test.
        let f = |v: u64| Felt::from(v);
        assert_eq!(
            hex(&poseidon_hash(f(1), f(2))),
            "0x05d44a3decb2b2e0cc71071f7b802f45dd792d064f0fc7316c46514f70f9891a"
        );
        assert_eq!(
            hex(&poseidon_hash(f(0), f(5))),
            "0x029ec4c828e3e42eaee3e1b85d4a75ad9046506a9623264f8fff46e3f4423c27"
        );
        assert_eq!(
            hex(&poseidon_hash_many([f(1), f(2), f(3)].iter())),
            "0x02f0d8840bcf3bc629598d8a6cc80cb7c0d9e52d93dab244bbf9cd0dca0ad082"
        );
    }

    #[test]
    fn felt_clears_the_top_six_bits() {
        // SHA-256("abc") = ba7816bf...; 0xba & 0x03 = 0x02.
        assert_eq!(
            hex(&felt(b"abc")),
            "0x027816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_four_cases() {
        let none = combined_digest(None, &[]);
        assert_eq!(
            (none.parts, none.combined.as_str()),
            ("none", &*hex(&Felt::ZERO))
        );
        let gpu = combined_digest(None, &[b"g"]);
        assert_eq!(gpu.combined, hex(&felt(b"g")));
        let cpu = combined_digest(Some(b"c"), &[]);
        assert_eq!(cpu.combined, hex(&poseidon_hash(Felt::ZERO, felt(b"c"))));
        let both = combined_digest(Some(b"c"), &[b"g"]);
        assert_eq!(both.combined, hex(&poseidon_hash(felt(b"c"), felt(b"g"))));
        let two = combined_digest(Some(b"c"), &[b"g", b"h"]);
        assert_eq!(
            two.gpu,
            Some(hex(&poseidon_hash_many([felt(b"g"), felt(b"h")].iter())))
        );
        assert_ne!(two.combined, both.combined);
    }
}
