//! The Linux IMA measurement list (`svsm_abi::ima`) as the host verifier reads it from a guest,
//! then the replay and boot_aggregate check over it (`host_verifier::bundle_verify::ima`). A
//! list that parses is re-framed entry by entry to exactly its input, every field of every
//! entry stays within its bound, and the decoded templates' fields decode.
#![no_main]
use host_verifier::bundle_verify::ima::{check_boot_aggregate, replay_sha256};
use libfuzzer_sys::fuzz_target;
use svsm_abi::ima::{ImaLog, Template, MAX_FIELDS, MAX_PCR, MAX_TEMPLATE_DATA, MAX_TEMPLATE_NAME};

fuzz_target!(|data: &[u8]| {
    let Ok(log) = ImaLog::parse(data) else {
        return;
    };
    let mut framed = 0;
    for (i, e) in log.entries().enumerate() {
        assert_eq!(e.index, i);
        assert!(e.pcr <= MAX_PCR);
        assert!(!e.template_name.is_empty() && e.template_name.len() <= MAX_TEMPLATE_NAME);
        assert!(e.template_data.len() <= MAX_TEMPLATE_DATA);
        framed += 4 + 20 + 4 + e.template_name.len() + 4 + e.template_data.len();
        let fields: Vec<&[u8]> = e.fields().map(Result::unwrap).collect();
        assert!(!fields.is_empty() && fields.len() <= MAX_FIELDS);
        assert_eq!(
            fields.iter().map(|f| 4 + f.len()).sum::<usize>(),
            e.template_data.len()
        );
        match e.template() {
            Template::ImaNg | Template::ImaSig => {
                let digest = e.file_digest().unwrap();
                assert!(!digest.algo_name.is_empty() && !digest.digest.is_empty());
                assert!(!e.file_name().unwrap().contains(&0));
                let _ = e.signature().unwrap();
            }
            Template::Other => assert!(e.file_name().is_err()),
        }
    }
    assert_eq!(framed, data.len());
    assert_eq!(log.entries().count(), log.len());
    let quoted = data.get(..32).and_then(|q| <[u8; 32]>::try_from(q).ok());
    let _ = replay_sha256(&log, &quoted.unwrap_or([0x5A; 32]));
    let _ = check_boot_aggregate(&log, &[[0; 32]; 10]);
});
