//! The demo flow (`make demo`) as a test: the expected launch gets its key and signs; a launch
//! with one firmware byte changed is contraindicated and gets nothing.

use host_verifier::Verdict;
use test_harness::demo::{run, DemoOutcome};

#[test]
fn expected_launch_gets_the_key_and_tampered_launch_does_not() {
    let mut lines = Vec::new();
    let good = run(false, |l| lines.push(l.to_owned())).unwrap();
    assert_eq!(
        good,
        DemoOutcome {
            verdict: Verdict::Affirming,
            key_released: true,
            signature_verified: true
        }
    );
    assert!(lines.iter().any(|l| l.contains("affirming")), "{lines:#?}");
    let mut lines = Vec::new();
    let bad = run(true, |l| lines.push(l.to_owned())).unwrap();
    assert_eq!(bad.verdict, Verdict::Contraindicated);
    assert!(!bad.key_released && !bad.signature_verified);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("not in the policy's allowlist")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("KeyNotFound")),
        "{lines:#?}"
    );
}
