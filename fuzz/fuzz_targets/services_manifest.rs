//! Services manifest (SVSM attestation) as a verifier or guest receives it, and the service
//! manifests of ours inside it: the vault's state header and the vTPM manifest version 2.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::attest::{
    ModuleState, ServicesManifest, StateKind, VtpmManifest, MAX_EXTRA_EVIDENCE,
    VTPM_SERVICE_GUID,
};

fn check_state(s: &ModuleState<'_>) {
    assert!(s.requester_vmpl <= 3);
    assert_eq!(
        s.state == StateKind::Ephemeral,
        s.flags & svsm_abi::attest::MANIFEST_FLAG_EPHEMERAL != 0
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = ServicesManifest::parse(data) {
        assert_eq!(manifest.services().count(), manifest.len());
        let _ = manifest.find(&VTPM_SERVICE_GUID);
        for service in manifest.services() {
            if let Ok(s) = ModuleState::parse_vault_manifest(service.manifest) {
                check_state(&s);
            }
        }
    }
    if let Ok(s) = ModuleState::parse_vault_manifest(data) {
        check_state(&s);
    }
    if let Ok(m) = VtpmManifest::parse(data) {
        check_state(&m.module);
        assert!(m.extra_evidence().count() <= MAX_EXTRA_EVIDENCE);
        assert!(m.ek_public.len() + m.ak_public.len() <= data.len());
    }
});
