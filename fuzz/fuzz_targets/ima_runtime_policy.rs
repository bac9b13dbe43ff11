//! Runtime policy documents (`host_verifier::measured::runtime_policy`): Keylime's JSON with
//! digests, exclude patterns (compiled by the regex engine with a size bound) and
//! verification keys (base64 SubjectPublicKeyInfo). Relying-party input, but parsed with bounds
//! all the same: any bytes give a policy or a typed error, and a compiled policy answers
//! `admit` for any path without panicking.
#![no_main]
use host_verifier::measured::runtime_policy::RuntimePolicy;
use libfuzzer_sys::fuzz_target;
use svsm_abi::ima::{FileDigest, HashAlgo};

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = RuntimePolicy::from_json(data) else {
        return;
    };
    let digest = [0x11; 32];
    let d = FileDigest {
        algo_name: b"sha256",
        algo: Some(HashAlgo::Sha256),
        digest: &digest,
    };
    let sig = [3u8, 2, 4, 1, 2, 3, 4, 0, 0];
    for path in [&b"/init"[..], b"/tmp/x", b"", data.get(..16).unwrap_or_default()] {
        let _ = policy.admit(path, &d, Some(&sig));
    }
});
