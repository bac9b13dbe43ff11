//! A real guest's evidence bundle (`tests/data/bundle-real-guest`: Debian's 6.1 kernel booted
//! by Debian's OVMF on our vTPM, IMA on, made by `svsm-attest bundle` inside the guest): the
//! firmware log and the IMA log replay to the quote, and each is mutated on purpose to fail
//! the check that covers it, naming what differs.

use host_verifier::bundle::Bundle;
use host_verifier::bundle_verify::ima::{entry_digest, extend, ImaFailure};
use host_verifier::bundle_verify::replay::{LogSource, ReplayError};
use host_verifier::bundle_verify::{
    verify_bundle, BundleAppraisal, BundleCheckId as C, BundleContext, BundleFailure,
};
use host_verifier::measured::ima_rounds::{ImaPosition, RoundFailure};
use host_verifier::measured::runtime_policy::{RuntimePolicy, RuntimePolicyDocument};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Outcome, Policy, TrustStore, Verdict, Verifier};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use svsm_abi::ima::ImaLog;
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
    appraise_with(b, None, None)
}

/// Appraises with a runtime policy and a kept IMA position.
fn appraise_with(
    b: &Bundle,
    ima_policy: Option<&RuntimePolicy>,
    ima_position: Option<ImaPosition>,
) -> BundleAppraisal {
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
    ctx.ima_policy = ima_policy;
    ctx.ima_position = ima_position;
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

/// A runtime policy listing every file the bundle's IMA log measured, but `without`.
fn policy_of_the_log(b: &Bundle, without: Option<&str>) -> RuntimePolicy {
    let log = ImaLog::parse(b.ima_log.as_deref().unwrap()).unwrap();
    let mut doc = RuntimePolicyDocument::default();
    for e in log.entries().skip(1) {
        let name = String::from_utf8(e.file_name().unwrap().to_vec()).unwrap();
        if Some(name.as_str()) == without {
            continue;
        }
        let digest = hex::encode(e.file_digest().unwrap().digest);
        doc.digests.entry(name).or_default().push(digest);
    }
    RuntimePolicy::compile(&doc).unwrap()
}

/// The list's first `n` entries and the PCR 10 they replay to, and the rest.
fn split(b: &Bundle, n: usize) -> (ImaPosition, Vec<u8>) {
    let bytes = b.ima_log.as_deref().unwrap();
    let log = ImaLog::parse(bytes).unwrap();
    let mut pcr = [0; 32];
    let mut end = 0;
    for e in log.entries().take(n) {
        pcr = extend(&pcr, &entry_digest(&e));
        end = e.template_data.as_ptr() as usize - bytes.as_ptr() as usize + e.template_data.len();
    }
    (
        ImaPosition {
            entries: n as u64,
            pcr10: pcr,
        },
        bytes[end..].to_vec(),
    )
}

fn failure(a: &BundleAppraisal, id: C) -> BundleFailure {
    match a.check(id).map(|c| &c.outcome) {
        Some(Outcome::Fail(f)) => f.clone(),
        other => panic!("{id}: {other:?}\n{}", a.render_text()),
    }
}

#[test]
fn a_runtime_policy_of_the_guest_s_own_files_is_satisfied_and_one_missing_file_is_named() {
    let b = bundle();
    let policy = policy_of_the_log(&b, None);
    let a = appraise_with(&b, Some(&policy), None);
    assert_eq!(a.verdict(), Verdict::Affirming, "{}", a.render_text());
    for id in [C::VtpmImaReplay, C::VtpmImaBootAggregate, C::VtpmImaPolicy] {
        assert!(passed(&a, id), "{id}\n{}", a.render_text());
    }
    let ima = a.ima_log.clone().unwrap();
    let position = ima.position.unwrap();
    assert_eq!(position.entries, 60);
    assert_eq!(position.pcr10, b.pcrs_sha256[10]);
    // Without one binary the guest ran, the policy check fails naming it.
    let policy = policy_of_the_log(&b, Some("/bin/busybox"));
    let a = appraise_with(&b, Some(&policy), None);
    assert_eq!(a.verdict(), Verdict::Contraindicated);
    assert!(passed(&a, C::VtpmImaReplay));
    let BundleFailure::ImaPolicy(f) = failure(&a, C::VtpmImaPolicy) else {
        panic!("{}", a.render_text());
    };
    assert!(f.listed.iter().all(|e| e.path == "/bin/busybox"), "{f}");
    assert!(
        f.to_string()
            .contains("/bin/busybox: not in the runtime policy"),
        "{f}"
    );
    // No policy: not applicable; a policy but no IMA log: fails.
    assert!(matches!(
        appraise(&b).check(C::VtpmImaPolicy).map(|c| &c.outcome),
        Some(Outcome::NotApplicable(_))
    ));
    let mut bare = b.clone();
    bare.ima_log = None;
    let policy = policy_of_the_log(&b, None);
    assert_eq!(
        failure(&appraise_with(&bare, Some(&policy), None), C::VtpmImaPolicy),
        BundleFailure::ImaLogMissing
    );
}

#[test]
fn a_later_round_sends_only_new_entries_from_the_kept_position() {
    let b = bundle();
    let policy = policy_of_the_log(&b, None);
    let (kept, rest) = split(&b, 30);
    let mut round = b.clone();
    round.ima_log = Some(rest);
    round.ima_offset = 30;
    let a = appraise_with(&round, Some(&policy), Some(kept));
    assert_eq!(a.verdict(), Verdict::Affirming, "{}", a.render_text());
    assert!(matches!(
        a.check(C::VtpmImaBootAggregate).map(|c| &c.outcome),
        Some(Outcome::NotApplicable(_))
    ));
    let text = a.render_text();
    assert!(text.contains("IMA entries 30..60 replay"), "{text}");
    assert!(
        text.contains("30 newly covered IMA entries are allowed"),
        "{text}"
    );
    assert_eq!(a.ima_log.unwrap().position.unwrap().entries, 60);
    // The same entries from a kept position one entry short: a gap.
    let (short, _) = split(&b, 29);
    let a = appraise_with(&round, Some(&policy), Some(short));
    assert_eq!(
        failure(&a, C::VtpmImaReplay),
        BundleFailure::ImaRound(RoundFailure::Gap {
            appraised: 29,
            offset: 30
        })
    );
    // The whole list resent, against a kept PCR 10 that is not what its first 30 entries
    // replay to: an entry already appraised was rewritten.
    let forged = ImaPosition {
        pcr10: [7; 32],
        ..kept
    };
    let a = appraise_with(&b, Some(&policy), Some(forged));
    assert!(matches!(
        failure(&a, C::VtpmImaReplay),
        BundleFailure::ImaRound(RoundFailure::Rewritten { appraised: 30, .. })
    ));
    assert_eq!(a.verdict(), Verdict::Contraindicated);
    // An offset without a kept position (nothing appraised yet) is a gap too.
    let a = appraise_with(&round, None, None);
    assert!(matches!(
        failure(&a, C::VtpmImaReplay),
        BundleFailure::ImaRound(RoundFailure::Gap {
            appraised: 0,
            offset: 30
        })
    ));
}
