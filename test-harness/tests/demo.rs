//! The demo flow (`make demo`) as a test: the expected launch gets its key and signs; a launch
//! with one firmware byte changed, and a launch of the same firmware with another kernel, are
//! contraindicated, get nothing, and refuse the package the host captured from the first.

use host_verifier::Verdict;
use svsm_abi::vault::VaultStatus;
use test_harness::demo::{run_all, Scenario};

#[test]
fn expected_launch_gets_the_key_and_tampered_launches_do_not() {
    let mut lines = Vec::new();
    let (outcomes, ok) = run_all(|l| lines.push(l.to_owned())).unwrap();
    assert!(ok, "{lines:#?}");
    let by = |s: Scenario| &outcomes.iter().find(|(x, _)| *x == s).unwrap().1;
    let good = by(Scenario::Expected);
    assert_eq!(good.verdict, Verdict::Affirming);
    assert!(good.key_released && good.signature_verified);
    assert!(good.released_package.is_some());
    for bad in [Scenario::TamperedFirmware, Scenario::TamperedKernel] {
        let o = by(bad);
        assert_eq!(o.verdict, Verdict::Contraindicated, "{bad:?}");
        assert!(!o.key_released && !o.signature_verified, "{bad:?}");
        // The import of the captured package was attempted and refused: another instance.
        assert_eq!(
            o.replay_refused,
            Some(VaultStatus::WrongInstance),
            "{bad:?}"
        );
    }
    let text = lines.join("\n");
    assert!(text.contains("not in the policy's allowlist"), "{text}");
    // The kernel case passes the MEASUREMENT check and fails on PCR 4 alone.
    let kernel_part = text.split("another kernel").nth(1).unwrap();
    assert!(
        kernel_part.contains("vtpm.reference_pcrs failed: PCR 4 is"),
        "{kernel_part}"
    );
    assert!(
        !kernel_part.contains("cpu.measurement failed"),
        "{kernel_part}"
    );
    assert!(text.contains("KeyNotFound"), "{text}");
}
