//! Reference PCR values computed from the files a relying party expects the guest to be
//! launched with, the way the module measures them (`svsm_abi::eventlog::LaunchComponent`):
//! each component extends its PCR, from zero, with the SHA-256 of its bytes. Nothing is read
//! back from a TPM: these are the values an honest launch of exactly these files must quote.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use svsm_abi::eventlog::LaunchComponent;

/// The SHA-256 PCR values a launch of `components` (in measuring order) produces, by index;
/// only the PCRs they extend.
pub fn launch_pcrs(components: &[(LaunchComponent, &[u8])]) -> BTreeMap<usize, [u8; 32]> {
    let mut pcrs: BTreeMap<usize, [u8; 32]> = BTreeMap::new();
    for (kind, bytes) in components {
        let (pcr, _) = kind.pcr_and_event();
        let value = pcrs.entry(pcr as usize).or_insert([0; 32]);
        let digest = Sha256::digest(bytes);
        *value = Sha256::new()
            .chain_update(*value)
            .chain_update(digest)
            .finalize()
            .into();
    }
    pcrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_extend_per_component_from_zero() {
        let pcrs = launch_pcrs(&[
            (LaunchComponent::Firmware, b"fw"),
            (LaunchComponent::Kernel, b"k"),
        ]);
        let extend = |d: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([0u8; 32]);
            h.update(Sha256::digest(d));
            h.finalize().into()
        };
        assert_eq!(pcrs.keys().copied().collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(pcrs[&0], extend(b"fw"));
        assert_eq!(pcrs[&4], extend(b"k"));
        // Two components of one PCR extend in order.
        let twice = launch_pcrs(&[
            (LaunchComponent::Kernel, b"a"),
            (LaunchComponent::Kernel, b"b"),
        ]);
        assert_ne!(twice[&4], extend(b"b"));
    }
}
