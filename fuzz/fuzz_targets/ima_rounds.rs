//! One round of incremental IMA appraisal (`host_verifier::measured::ima_rounds`) on a list
//! from the guest, against a fixed runtime policy with a digest, an exclude and a P-256
//! verification key: every `ima-sig` signature field goes through `FileSignature::parse` and
//! the signature check. The first 9 bytes choose the kept position (entry count and whether a
//! non-zero PCR 10 is kept) and the round's offset; an accepted round never moves the position
//! backwards, and never past the entries sent.
#![no_main]
use host_verifier::measured::ima_rounds::{appraise_round, ImaPosition, Round};
use host_verifier::measured::runtime_policy::RuntimePolicy;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use svsm_abi::ima::{FileSignature, ImaLog};

/// A P-256 public key (SubjectPublicKeyInfo, base64) with its IMA key id given as 0x01020304.
const POLICY: &str = r#"{"meta": {"version": 1}, "digests": {"/init": ["1111111111111111111111111111111111111111111111111111111111111111"]}, "excludes": ["/tmp/"], "verification-keys": "{\"keyids\": [16909060], \"pubkeys\": [\"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtXIeazmqtD3xbSA5tWMIzWO4sV4+fvoh8EUdb4lSaj4B3hKpIhTm5jONHGnaO1cCkUvf1BCjFSXCTKdOyQDodw==\"]}"}"#;

fn policy() -> &'static RuntimePolicy {
    static P: OnceLock<RuntimePolicy> = OnceLock::new();
    P.get_or_init(|| RuntimePolicy::from_json(POLICY.as_bytes()).expect("the fuzz policy compiles"))
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<9>() else {
        return;
    };
    let Ok(log) = ImaLog::parse(rest) else {
        return;
    };
    for e in log.entries() {
        if let Ok(Some(sig)) = e.signature() {
            if let Ok(s) = FileSignature::parse(sig) {
                assert_eq!(s.signature.len() + 9, sig.len());
            }
        }
    }
    let kept = u64::from(head[0] & 0x3F);
    let position = ImaPosition {
        entries: kept,
        pcr10: if head[1] & 1 == 1 { [head[2]; 32] } else { [0; 32] },
    };
    let offset = if head[3] & 1 == 1 { kept } else { u64::from(head[3] >> 1) };
    let mut quoted = [0u8; 32];
    quoted[..5].copy_from_slice(&head[4..9]);
    let round = Round {
        offset,
        log: &log,
        quoted_pcr10: quoted,
        pcrs_0_to_9: (head[0] & 0x40 != 0).then_some(&[[0u8; 32]; 10][..]),
    };
    if let Ok(out) = appraise_round(policy(), &position, &round) {
        assert!(out.position.entries >= position.entries);
        assert!(out.position.entries <= offset + log.len() as u64);
        assert_eq!(out.position.pcr10, quoted);
        assert_eq!(out.appraised + position.entries, out.position.entries);
    }
});
