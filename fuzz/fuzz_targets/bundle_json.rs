//! Evidence bundles: the JSON decoding (`Bundle::from_json`), the quote's TPMS_ATTEST, the AK's
//! ECDSA TPMT_SIGNATURE and TPMT_PUBLIC parsers, and a whole appraisal of every bundle that
//! decodes (anchored in the simulator's TEST chain, so a well-formed seed reaches every check).
//! The raw input also goes straight into the three binary parsers. Seeds (fuzz/seeds/bundle_json):
//! a real bundle of the simulated machine (written by test-harness/tests/bundle.rs) and a real
//! guest's bundle with OVMF's and IMA's logs (host-verifier/tests/data/bundle-real-guest).
#![no_main]
use host_verifier::bundle::Bundle;
use host_verifier::bundle_verify::tpm::{AkPublic, EcdsaSignature, QuoteAttest};
use host_verifier::bundle_verify::{verify_bundle, BundleCheckId, BundleContext};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Policy, TrustStore, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};
use svsm_abi::attest::VtpmManifest;
use svsm_abi::snp::Product;

const ARK: &[u8] = include_bytes!("../../host-verifier/tests/data/bundle-sim/ark.der");
const ASK: &[u8] = include_bytes!("../../host-verifier/tests/data/bundle-sim/ask.der");
const POLICY: &str = include_str!("../../host-verifier/tests/data/bundle-sim/policy.toml");

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let anchors = ProductAnchors::load(Product::Genoa, ARK, ASK, ASK).expect("test roots");
        let policy = Policy::from_toml(POLICY).expect("fixture policy");
        Verifier::with_trust_store(Arc::new(TrustStore::new(vec![anchors])), policy)
    })
}

fn parsers(attest: &[u8], signature: &[u8], public: &[u8]) {
    if let Ok(q) = QuoteAttest::parse(attest) {
        for sel in &q.pcr_select {
            for pcr in sel.pcrs() {
                assert!(pcr < sel.select.len() * 8);
            }
        }
        assert!(q.extra_data.len() <= 64 && q.pcr_digest.len() <= 64);
    }
    if let Ok(s) = EcdsaSignature::parse(signature) {
        assert!(s.to_p256().is_ok());
    }
    let _ = AkPublic::parse(public);
}

fuzz_target!(|data: &[u8]| {
    parsers(data, data, data);
    let Ok(bundle) = Bundle::from_json(data) else {
        return;
    };
    let again = Bundle::from_json(bundle.to_json().expect("encodes").as_bytes()).expect("decodes");
    assert_eq!(again, bundle);
    let ak = VtpmManifest::parse(&bundle.manifest)
        .map(|m| m.ak_public.to_vec())
        .unwrap_or_default();
    parsers(&bundle.quote_attest, &bundle.quote_signature, &ak);
    let at = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
    let mut ctx = BundleContext::new(verifier(), &bundle.nonce, at);
    ctx.min_epoch = Some(1);
    ctx.requester_vmpl = Some(1);
    ctx.require_extra_evidence = true;
    let a = verify_bundle(&bundle, &ctx).expect("every bundle is appraised");
    assert_eq!(a.checks.len(), BundleCheckId::ALL.len());
    let _ = a.render_text();
    let _ = a.to_ear_json(1_780_272_000).expect("EAR of an appraisal");
});
