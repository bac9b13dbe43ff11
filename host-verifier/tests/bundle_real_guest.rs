//! A real guest's evidence bundle (`tests/data/bundle-real-guest`: Debian's 6.1 kernel booted
//! by Debian's OVMF on our vTPM, IMA on, made by `svsm-attest bundle` inside the guest): the
//! firmware log and the IMA log replay to the quote, and each is mutated on purpose to fail
//! the check that covers it, naming what differs.

use host_verifier::bundle::Bundle;
use host_verifier::bundle_verify::ima::ImaFailure;
use host_verifier::bundle_verify::replay::{LogSource, ReplayError};
use host_verifier::bundle_verify::{
    verify_bundle, BundleAppraisal, BundleCheckId as C, BundleContext, BundleFailure,
};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Outcome, Policy, TrustStore, Verdict, Verifier};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use svsm_abi::snp::Product;

fn read(dir: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bundle() -> Bundle {
    Bundle::from_json(&read("bundle-real-guest", "bundle.json")).unwrap()
}

fn appraise(b: &Bundle) -> BundleAppraisal {
    let anchors = ProductAnchors::load(
        Product::Genoa,
        &read("bundle-sim", "ark.der"),
        &read("bundle-sim", "ask.der"),
        &read("bundle-sim", "ask.der"),
    )
    .unwrap();
    let policy =
        Policy::from_toml(&String::from_utf8(read("bundle-real-guest", "policy.toml")).unwrap())
            .unwrap();
    let v = Verifier::with_trust_store(Arc::new(TrustStore::new(vec![anchors])), policy);
    let nonce = hex::decode(
        String::from_utf8(read("bundle-real-guest", "nonce.hex"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    // When it was made (2026-12-04T15:13:00Z).
    let at = UNIX_EPOCH + Duration::from_secs(1_796_397_180);
    let mut ctx = BundleContext::new(&v, &nonce, at);
    ctx.requester_vmpl = Some(1);
    verify_bundle(b, &ctx).unwrap()
}

fn passed(a: &BundleAppraisal, id: C) -> bool {
    matches!(a.check(id).map(|c| &c.outcome), Some(Outcome::Pass))
}

/// Offset of the first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("present")
}

#[test]
fn the_real_guest_bundle_is_affirmed_with_both_logs_replayed() {
    let a = appraise(&bundle());
    assert_eq!(a.verdict(), Verdict::Affirming, "{}", a.render_text());
    for id in [C::VtpmLogReplay, C::VtpmImaReplay, C::VtpmImaBootAggregate] {
        assert!(passed(&a, id), "{id}\n{}", a.render_text());
    }
    let fw = a.firmware_log.clone().unwrap();
    assert_eq!(fw.events, Some(24));
    assert_eq!(fw.pcrs_extended, vec![0, 1, 2, 3, 4, 5, 6, 7, 9]);
    assert_eq!(a.event_log.events, Some(0));
    let ima = a.ima_log.clone().unwrap();
    assert_eq!((ima.covered, ima.entries), (Some(60), Some(60)));
    let text = a.render_text();
    assert!(
        text.contains("0 SVSM events then 24 firmware events"),
        "{text}"
    );
    assert!(text.contains("60 of 60 IMA entries"), "{text}");
}

#[test]
fn a_changed_firmware_event_fails_the_replay_naming_its_pcr() {
    let mut b = bundle();
    let log = b.firmware_log.as_mut().unwrap();
    // PCR 5's last event, "Exit Boot Services Returned with Success": its SHA-256 digest.
    let digest =
        hex::decode("b54f7542cbd872a81a9d9dea839b2b8d747c7ebd5ea6615c40f42f44a6dbeba0").unwrap();
    let at = find(log, &digest);
    log[at] ^= 0x01;
    let a = appraise(&b);
    assert_eq!(a.verdict(), Verdict::Contraindicated);
    assert!(
        matches!(
            a.failure(C::VtpmLogReplay),
            Some(BundleFailure::ReplayMismatch { pcr: 5, all, .. }) if all == &vec![5]
        ),
        "{}",
        a.render_text()
    );
    // The IMA checks do not depend on the firmware log.
    assert!(passed(&a, C::VtpmImaReplay));
}

#[test]
fn a_truncated_or_foreign_firmware_log_is_a_named_failure() {
    let mut b = bundle();
    let log = b.firmware_log.as_mut().unwrap();
    log.truncate(log.len() - 7);
    let a = appraise(&b);
    assert!(
        matches!(
            a.failure(C::VtpmLogReplay),
            Some(BundleFailure::FirmwareLog(ReplayError::Parse {
                log: LogSource::Firmware,
                ..
            }))
        ),
        "{}",
        a.render_text()
    );
    // The SVSM's log handed in as the firmware's: PCRs 0-9 stay unexplained but are not
    // contradicted (nothing is extended), so the replay passes; reference PCRs catch it.
    let mut b = bundle();
    b.firmware_log = Some(b.event_log.clone());
    let a = appraise(&b);
    assert!(passed(&a, C::VtpmLogReplay), "{}", a.render_text());
}

#[test]
fn an_altered_ima_entry_matches_no_prefix_of_the_quote() {
    let mut b = bundle();
    let log = b.ima_log.as_mut().unwrap();
    // The first file name after boot_aggregate: flip a byte of it.
    let at = find(log, b"/init");
    log[at + 1] ^= 0x20;
    let a = appraise(&b);
    assert_eq!(a.verdict(), Verdict::Contraindicated);
    assert!(
        matches!(
            a.failure(C::VtpmImaReplay),
            Some(BundleFailure::Ima(ImaFailure::NoPrefixMatches {
                entries: 60,
                ..
            }))
        ),
        "{}",
        a.render_text()
    );
    assert!(matches!(
        a.failure(C::VtpmImaBootAggregate),
        Some(BundleFailure::Prerequisite(C::VtpmImaReplay))
    ));
    assert!(passed(&a, C::VtpmLogReplay));
}

#[test]
fn an_ima_log_cut_before_the_quote_or_garbled_fails() {
    let mut b = bundle();
    let log = b.ima_log.as_mut().unwrap();
    // Drop the last entry: the quote covers all 60, so no prefix of 59 reaches it.
    let last = find(log, b"/lib/x86_64-linux-gnu/libgcc_s.so.1");
    let start = log[..last]
        .windows(4)
        .rposition(|w| w == [10, 0, 0, 0])
        .unwrap();
    log.truncate(start);
    let a = appraise(&b);
    assert!(
        matches!(
            a.failure(C::VtpmImaReplay),
            Some(BundleFailure::Ima(ImaFailure::NoPrefixMatches { .. }))
        ),
        "{}",
        a.render_text()
    );
    let mut b = bundle();
    b.ima_log = Some(b"not an IMA log".to_vec());
    let a = appraise(&b);
    assert!(matches!(
        a.failure(C::VtpmImaReplay),
        Some(BundleFailure::Ima(ImaFailure::Parse(_)))
    ));
    // Without an IMA log the two checks do not apply.
    let mut b = bundle();
    b.ima_log = None;
    let a = appraise(&b);
    assert_eq!(a.verdict(), Verdict::Affirming);
    assert!(matches!(
        a.check(C::VtpmImaReplay).map(|c| &c.outcome),
        Some(Outcome::NotApplicable(_))
    ));
}
