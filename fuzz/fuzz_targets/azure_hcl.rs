//! Azure vTPM evidence parsing: the HCL report (header, sizes, report and hash types, the
//! runtime-claims JSON and its HCLAkPub JWK) and the TPM quote (TPMS_ATTEST, PCR selections, the
//! PCR-digest check, both signature forms). Every input goes through both parsers. Seeds: the
//! three real HCL reports and quotes of vectors/snp (fuzz/seeds/azure_hcl).
#![no_main]
use host_verifier::azure::claims::RuntimeClaims;
use host_verifier::azure::hcl::{HclReport, HW_REPORT_SIZE, VAR_DATA_OFFSET};
use host_verifier::azure::quote::{rsassa_block, QuoteAttest};
use host_verifier::azure::{check_pcr_digest, PCR_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = HclReport::parse(data) {
        assert_eq!(h.hw_report.len(), HW_REPORT_SIZE);
        assert_eq!(h.report_size as usize, VAR_DATA_OFFSET + h.var_data.len());
        assert!(h.report_size as usize <= data.len());
        let _ = h.var_data_sha256();
        if let Ok(claims) = RuntimeClaims::parse(h.var_data) {
            let _ = claims.attestation_key();
            let _ = claims.user_data_bytes();
        }
        // The embedded report through svsm-abi, as the appraisal reads it.
        let _ = svsm_abi::snp::AttestationReport::parse(h.hw_report);
    }
    if let Ok(q) = QuoteAttest::parse(data) {
        for sel in &q.pcr_select {
            for pcr in sel.pcrs() {
                assert!(pcr < sel.select.len() * 8);
            }
        }
        // 24 PCRs of all zeros, and none: never a panic, whatever the selection.
        let pcrs = [[0u8; PCR_SIZE]; 24];
        let _ = check_pcr_digest(&q, &pcrs);
        let _ = check_pcr_digest(&q, &[]);
    }
    for key_len in [256, 384, 512] {
        if let Ok(block) = rsassa_block(data, key_len) {
            assert_eq!(block.len(), key_len);
        }
    }
});
