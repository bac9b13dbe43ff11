//! A report (and, after its 1184 bytes, a VEK in PEM or DER) through the whole host verifier:
//! parsing, every check, the text summary and the EAR. Seeds: each real report followed by its
//! VCEK/VLEK (seed-corpus.sh).
#![no_main]
use host_verifier::{Error, Evidence, Policy, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::from_toml(
            r#"
            min_abi = "1.55"
            min_guest_policy_abi = "0.1"
            vmpl = 0
            measurements = ["5feee30d6d7e1a29f403d70a4198237ddfb13051a2d6976439487c609388ed7f98189887920ab2fa0096903a0c23fca1"]
            chip_ids = ["59790fb1c39f35c1"]
            vlek_csp_ids = ["CN=cc-us-east-2.amazonaws.com"]
            host_data = "4f4448c67f3c8dfc8de8a5e37125d807dadcc41f06cf23f615dbd52eec777d10"
            platform_info_required = ["ecc"]
            platform_info_forbidden = ["bit40"]
            min_guest_svn = 1
            products = ["Milan", "Genoa", "Turin"]
            [min_tcb.default]
            snp = 8
            [min_tcb.Turin]
            fmc = 1
            "#,
        )
        .expect("fuzz policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let (report, vek) = if data.len() > 1184 {
        data.split_at(1184)
    } else {
        (data, &[][..])
    };
    let verifier = Verifier::new(policy().clone()).expect("pinned anchors");
    let at = UNIX_EPOCH + Duration::from_secs(1_780_272_000);
    let crl = data.get(..data.len().min(64));
    for ev in [
        Evidence {
            report,
            vek: Some(vek).filter(|v| !v.is_empty()),
            crl: None,
            at,
        },
        Evidence {
            report,
            vek: Some(vek),
            crl,
            at,
        },
    ] {
        match verifier.verify(&ev) {
            Ok(a) => {
                assert_eq!(a.checks.len(), host_verifier::CheckId::ALL.len());
                let _ = a.render_text();
                let _ = a.to_ear_json(1_780_272_000).expect("EAR of an appraisal");
            }
            Err(Error::NotImplemented(c)) => panic!("check {c} missing"),
            Err(_) => {}
        }
    }
});
