//! Request bodies as any client can send them to the key broker: the strict JSON decoding of
//! every API body, then what the handlers do next with it (the bundle's decoding, a policy
//! document's compilation, a resource's kind and usages, an AK's public area).
#![no_main]
use host_verifier::broker::api::{self, decode_request};
use host_verifier::broker::policy::PolicyDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_request::<api::ReleaseRequest>(data) {
        let _ = host_verifier::bundle::Bundle::from_parsed(r.bundle);
    }
    if let Ok(r) = decode_request::<api::AttestRequest>(data) {
        let _ = host_verifier::bundle::Bundle::from_parsed(r.bundle);
    }
    if let Ok(doc) = decode_request::<PolicyDocument>(data) {
        let _ = doc.compile(false);
        let _ = doc.compile(true);
    }
    if let Ok(r) = decode_request::<api::NewResource>(data) {
        let _ = api::kind_from_name(&r.kind);
        let _ = api::usage_from_names(&r.usage);
    }
    if let Ok(r) = decode_request::<api::AkChallengeRequest>(data) {
        use base64::Engine;
        let _ = host_verifier::bundle::Bundle::from_parsed(r.bundle);
        if let Ok(ak) = base64::engine::general_purpose::STANDARD.decode(&r.ak_public) {
            let _ = host_verifier::bundle_verify::tpm::AkPublic::parse(&ak);
        }
    }
    if let Ok(r) = decode_request::<api::AkCertificateRequest>(data) {
        let _ = hex::decode(&r.challenge_id);
    }
    let _ = decode_request::<api::ResourcePolicyChange>(data);
});
