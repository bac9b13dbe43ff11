//! Continuous attestation through the broker service (HTTPS on loopback, SQLite), with a
//! simulated node whose kernel IMA measures into PCR 10 of its vTPM: rounds that send only the
//! new IMA entries; a tampered binary refused by path, the node then untrusted and its release
//! refused until a good round; missed rounds counted by the sweeper, audited and shown in
//! `/metrics`; a rolled-back sealed state costing half the reputation; a reboot starting the
//! IMA position over and earning nothing from the last boot's rounds; evidence that does not
//! verify changing nobody's record; position and trust bound to the runtime policy (a looser
//! one, or a changed one, earns nothing under the strict one).

use host_verifier::broker::api;
use host_verifier::broker::client::{BrokerClient, ClientError};
use host_verifier::broker::policy::PolicyDocument;
use host_verifier::measured::runtime_policy::RuntimePolicyDocument;
use sha2::{Digest, Sha256};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use test_harness::broker::{bundle_json, runtime, sim_trust, DataDir, LocalBroker, SimNode};
use test_harness::sim::store::SimStore;

/// One TPM engine per process: tests that boot machines take turns.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The files the node's image holds, and so its runtime policy.
const FILES: [(&str, &[u8]); 3] = [
    ("/init", b"#!/bin/sh\nexec /usr/bin/app\n"),
    ("/usr/bin/app", b"app v1"),
    ("/usr/bin/svsm-agent", b"agent v1"),
];

fn runtime_policy() -> RuntimePolicyDocument {
    let mut doc = RuntimePolicyDocument::default();
    for (path, content) in FILES {
        doc.digests
            .insert(path.into(), vec![hex::encode(Sha256::digest(content))]);
    }
    doc.excludes = vec!["/tmp/".into()];
    doc
}

/// The node's release policy with rounds every `interval` s and a minimum reputation.
fn round_policy(interval: u64, min_reputation: Option<u32>) -> PolicyDocument {
    PolicyDocument {
        ima_policy: Some("node-image".into()),
        round_interval_s: Some(interval),
        min_reputation,
        ..SimNode::policy()
    }
}

struct Bed {
    rt: tokio::runtime::Runtime,
    _dir: DataDir,
    broker: LocalBroker,
    client: BrokerClient,
}

fn bed(interval: u64) -> Bed {
    let rt = runtime().unwrap();
    let dir = DataDir::init("rounds").unwrap();
    let broker = LocalBroker::start_configured(&rt, &dir.path, None, sim_trust().unwrap(), |o| {
        o.round_sweep = Duration::from_millis(300);
    })
    .unwrap();
    let client = broker.client(&dir).unwrap();
    rt.block_on(client.put_ima_policy("node-image", &runtime_policy()))
        .unwrap();
    rt.block_on(client.put_policy("rounds", &round_policy(interval, None)))
        .unwrap();
    rt.block_on(client.put_policy("release", &round_policy(interval, Some(50))))
        .unwrap();
    rt.block_on(client.put_resource(
        "disk-key",
        &api::NewResource {
            kind: "aes-256-gcm".into(),
            usage: vec!["encrypt".into()],
            policy: "release".into(),
            material: None,
        },
    ))
    .unwrap();
    Bed {
        rt,
        _dir: dir,
        broker,
        client,
    }
}

impl Bed {
    fn nonce(&self) -> Vec<u8> {
        hex::decode(self.rt.block_on(self.client.challenge()).unwrap().nonce).unwrap()
    }

    /// One round: the node sends its IMA entries from `from`.
    fn round(&self, node: &SimNode, from: u64) -> api::AttestResponse {
        let bundle = node.bundle_with_ima(&self.nonce(), from).unwrap();
        self.rt
            .block_on(
                self.client
                    .attest(bundle_json(&bundle).unwrap(), Some("rounds")),
            )
            .unwrap()
    }

    fn release(&self, node: &SimNode, from: u64) -> Result<api::Released, ClientError> {
        let bundle = node.bundle_with_ima(&self.nonce(), from).unwrap();
        self.rt.block_on(
            self.client
                .release("disk-key", bundle_json(&bundle).unwrap()),
        )
    }

    fn node_rounds(&self, instance: &str) -> host_verifier::broker::store::NodeRounds {
        let nodes = self.rt.block_on(self.client.nodes()).unwrap();
        nodes
            .into_iter()
            .find(|n| n.instance_id == instance)
            .and_then(|n| n.rounds)
            .unwrap_or_else(|| panic!("no rounds recorded for {instance}"))
    }

    fn metrics(&self) -> String {
        let http = self.client.http().clone();
        let url = self.client.url("/metrics");
        self.rt
            .block_on(async move { http.get(url).send().await?.text().await })
            .unwrap()
    }

    fn audit_has(&self, action: &str, decision: &str, reason: &str) -> bool {
        self.rt
            .block_on(self.client.audit(0))
            .unwrap()
            .iter()
            .any(|r| {
                r.action == action
                    && r.decision == decision
                    && r.reasons.iter().any(|x| x.contains(reason))
            })
    }
}

fn boot_node(store: Option<SimStore>) -> SimNode {
    let node = SimNode::launch(store).unwrap();
    node.ima_start().unwrap();
    node.ima_measure(FILES[0].0, FILES[0].1).unwrap();
    node.ima_measure(FILES[1].0, FILES[1].1).unwrap();
    node
}

fn failed_check(failed: &[api::FailedCheck], check: &str) -> String {
    failed
        .iter()
        .find(|f| f.check == check)
        .map(|f| f.reason.clone())
        .unwrap_or_else(|| panic!("no {check} in {failed:?}"))
}

#[test]
fn rounds_send_new_entries_and_a_tampered_binary_blocks_releases_until_a_good_round() {
    let _t = turn();
    let bed = bed(300);
    let node = boot_node(None);

    // Round 1 from entry 0: boot_aggregate, /init, /usr/bin/app.
    let r1 = bed.round(&node, 0);
    assert_eq!(r1.verdict, "affirming", "{:?}", r1.failed_checks);
    let round = r1.round.clone().expect("a round was recorded");
    assert_eq!(
        (round.ima_offset, round.reputation, round.trusted),
        (3, 55, true)
    );
    assert_eq!(round.next_round_in_s, 165); // 300 s at reputation 100, scaled to 55
    let instance = r1.instance_id.clone().unwrap();

    // A release continues from the kept position and needs a trusted node.
    let released = bed
        .release(&node, 3)
        .expect("a trusted node gets its disk key");
    assert_eq!(released.instance_id, instance);

    // Round 2 sends only the entry measured since.
    node.ima_measure(FILES[2].0, FILES[2].1).unwrap();
    node.ima_measure("/tmp/scratch", b"anything").unwrap();
    let r2 = bed.round(&node, 3);
    assert_eq!(r2.verdict, "affirming", "{:?}", r2.failed_checks);
    assert_eq!(
        r2.round.as_ref().map(|r| (r.ima_offset, r.reputation)),
        Some((5, 60))
    );

    // A tampered binary runs: the next round is refused by path and the node is untrusted.
    node.ima_measure("/usr/bin/app", b"app v1, patched")
        .unwrap();
    let r3 = bed.round(&node, 5);
    assert_eq!(r3.verdict, "contraindicated");
    let reason = failed_check(&r3.failed_checks, "vtpm.ima_policy");
    assert!(
        reason.contains("IMA entry 5 /usr/bin/app: its sha256 digest"),
        "{reason}"
    );
    let round = r3.round.clone().unwrap();
    assert_eq!(
        (round.ima_offset, round.reputation, round.trusted),
        (5, 35, false)
    );
    assert!(bed.audit_has("attest", "refused", "/usr/bin/app"));

    // Its releases are refused, naming why, even with evidence that is otherwise fine.
    let err = bed.release(&node, 5).unwrap_err();
    assert_eq!(err.status(), Some(403));
    let failed = err.failed_checks().to_vec();
    // The release's own appraisal meets the same entry.
    assert!(
        failed.iter().any(|f| f.check == "vtpm.ima_policy"),
        "{failed:?}"
    );
    assert!(bed.audit_has("release", "refused", "/usr/bin/app"));

    // The position did not move: the failing entry is met again, round after round.
    let r4 = bed.round(&node, 5);
    assert_eq!(r4.verdict, "contraindicated");
    assert_eq!(r4.round.as_ref().map(|r| r.reputation), Some(10));
    let rounds = bed.node_rounds(&instance);
    assert_eq!((rounds.good, rounds.failed, rounds.trusted), (2, 2, false));
    assert_eq!(rounds.ima_entries, Some(5));
    assert!(rounds.last_failure.unwrap().contains("vtpm.ima_policy"));
    let metrics = bed.metrics();
    assert!(
        metrics.contains("broker_rounds_total{outcome=\"good\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("broker_rounds_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );

    // Entries sent that skip what was appraised, or rewrite it, are refused by name.
    let r5 = bed.round(&node, 6);
    let reason = failed_check(&r5.failed_checks, "vtpm.ima_replay");
    assert!(reason.contains("entries 5..6 are missing"), "{reason}");

    // A reboot starts a new IMA list: the position starts over, and a clean boot is trusted
    // again after a good round (the reputation it lost stays lost).
    drop(node);
    let node = boot_node(None);
    let r6 = bed.round(&node, 0);
    assert_eq!(r6.verdict, "affirming", "{:?}", r6.failed_checks);
    let new_instance = r6.instance_id.clone().unwrap();
    assert_ne!(
        new_instance, instance,
        "a fresh boot without state is a new instance"
    );
    bed.broker.stop(&bed.rt);
}

/// The app writes a key: the node's sealed state moves to a new epoch (and survives reboots).
fn write_state(node: &SimNode) {
    let mut v = guest_driver::vault::VaultClient::probe(
        node.machine.transport(test_harness::broker::app_vmpl()),
    )
    .unwrap();
    v.create_key(
        svsm_abi::vault::KeyKind::Aes256Gcm,
        svsm_abi::vault::Usage::ENCRYPT,
    )
    .unwrap();
}

#[test]
fn missed_rounds_rolled_back_state_and_foreign_evidence() {
    let _t = turn();
    // Rounds due every 2 s at this reputation (4 s at 100), missed 3 s after the last.
    let bed = bed(4);
    let store = SimStore::new();
    let node = boot_node(Some(store.clone()));
    write_state(&node);
    let r1 = bed.round(&node, 0);
    assert_eq!(r1.verdict, "affirming", "{:?}", r1.failed_checks);
    assert_eq!(r1.round.as_ref().unwrap().next_round_in_s, 2);
    let instance = r1.instance_id.clone().unwrap();
    assert!(bed.release(&node, 3).is_ok());

    // The agent stops: after the grace period the sweeper marks the node untrusted, audits
    // the miss, and its release is refused.
    std::thread::sleep(Duration::from_millis(5500));
    let rounds = bed.node_rounds(&instance);
    assert!(!rounds.trusted, "{rounds:?}");
    assert!(rounds.missed >= 1, "{rounds:?}");
    assert!(rounds.reputation < 55, "{rounds:?}");
    assert!(bed.audit_has("round", "missed", "no round since"));
    let metrics = bed.metrics();
    assert!(
        metrics.contains("broker_rounds_total{outcome=\"missed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("broker_nodes{trust=\"untrusted\"} 1"),
        "{metrics}"
    );
    let err = bed.release(&node, 3).unwrap_err();
    let reason = failed_check(err.failed_checks(), "broker.node_trust");
    assert!(reason.contains("missed its round"), "{reason}");

    // A good round makes it trusted again.
    let r2 = bed.round(&node, 3);
    assert_eq!(r2.verdict, "affirming", "{:?}", r2.failed_checks);
    assert!(r2.round.as_ref().unwrap().trusted);
    assert!(bed.release(&node, 3).is_ok());

    // Evidence that does not verify (its nonce swapped for another live one) names the
    // instance but changes nothing: only a node's own evidence can count against it.
    let mut bundle = node.bundle_with_ima(&bed.nonce(), 3).unwrap();
    bundle.nonce = bed.nonce();
    let r = bed
        .rt
        .block_on(
            bed.client
                .attest(bundle_json(&bundle).unwrap(), Some("rounds")),
        )
        .unwrap();
    assert_eq!(r.verdict, "contraindicated");
    assert!(r.round.is_none());
    let untouched = bed.node_rounds(&instance);
    assert_eq!((untouched.failed, untouched.good), (0, 2));

    // The host rolls the sealed state back to before the last write: the next round is
    // refused (broker.epoch) and costs half the reputation.
    let old_slots = (store.slot(0), store.slot(1));
    write_state(&node);
    // The manifest states the epoch restored at boot: the broker sees the new one after a
    // reboot (a new TPM boot too, so the IMA list starts over from entry 0).
    drop(node);
    let node = boot_node(Some(store.clone()));
    // Same instance, new boot: the good rounds of the last boot earn this one nothing.
    let err = bed.release(&node, 0).unwrap_err();
    let reason = failed_check(err.failed_checks(), "broker.node_trust");
    assert!(reason.contains("no round this boot"), "{reason}");
    let r3 = bed.round(&node, 0);
    assert_eq!(r3.verdict, "affirming", "{:?}", r3.failed_checks);
    let before = r3.round.unwrap().reputation;
    drop(node);
    store.set_slot(0, old_slots.0);
    store.set_slot(1, old_slots.1);
    let node = boot_node(Some(store.clone()));
    let r4 = bed.round(&node, 0);
    assert_eq!(r4.verdict, "contraindicated");
    assert_eq!(r4.instance_id.as_deref(), Some(instance.as_str()));
    assert!(r4.failed_checks.iter().any(|f| f.check == "broker.epoch"));
    let after = r4.round.unwrap();
    assert_eq!(after.reputation, before.saturating_sub(50));
    assert!(!after.trusted);
    // ...and its releases are refused, naming the rollback.
    let err = bed.release(&node, 0).unwrap_err();
    assert_eq!(err.status(), Some(403));
    let reason = failed_check(err.failed_checks(), "broker.node_trust");
    assert!(reason.contains("broker.epoch"), "{reason}");
    bed.broker.stop(&bed.rt);
}

#[test]
fn trust_and_the_ima_position_are_bound_to_the_runtime_policy() {
    let _t = turn();
    let bed = bed(300);
    // A looser runtime policy that also admits a patched app, and rounds under it.
    let mut loose = runtime_policy();
    loose
        .digests
        .get_mut("/usr/bin/app")
        .unwrap()
        .push(hex::encode(Sha256::digest(b"app v1, patched")));
    bed.rt
        .block_on(bed.client.put_ima_policy("loose", &loose))
        .unwrap();
    let loose_rounds = PolicyDocument {
        ima_policy: Some("loose".into()),
        ..round_policy(300, None)
    };
    bed.rt
        .block_on(bed.client.put_policy("rounds-loose", &loose_rounds))
        .unwrap();
    let node = boot_node(None);
    let r1 = bed.round(&node, 0);
    assert_eq!(r1.verdict, "affirming", "{:?}", r1.failed_checks);

    // The patched app runs; the node rounds under the loose policy. Its position under the
    // strict one is not continued: the loose policy appraises the boot's log from entry 0.
    node.ima_measure("/usr/bin/app", b"app v1, patched")
        .unwrap();
    let nonce = bed.nonce();
    let bundle = node.bundle_with_ima(&nonce, 3).unwrap();
    let r2 = bed
        .rt
        .block_on(
            bed.client
                .attest(bundle_json(&bundle).unwrap(), Some("rounds-loose")),
        )
        .unwrap();
    let reason = failed_check(&r2.failed_checks, "vtpm.ima_replay");
    assert!(reason.contains("entries 0..3 are missing"), "{reason}");
    let bundle = node.bundle_with_ima(&bed.nonce(), 0).unwrap();
    let r3 = bed
        .rt
        .block_on(
            bed.client
                .attest(bundle_json(&bundle).unwrap(), Some("rounds-loose")),
        )
        .unwrap();
    assert_eq!(r3.verdict, "affirming", "{:?}", r3.failed_checks);
    assert_eq!(r3.round.as_ref().map(|r| r.ima_offset), Some(4));

    // A release under the strict policy neither continues the loose round's position nor
    // trusts it: from the loose position the entries are missing, from 0 the patched app is
    // named, and the node's trust is refused either way.
    let err = bed.release(&node, 4).unwrap_err();
    let failed = err.failed_checks();
    let reason = failed_check(failed, "vtpm.ima_replay");
    assert!(reason.contains("entries 0..4 are missing"), "{reason}");
    let err = bed.release(&node, 0).unwrap_err();
    let reason = failed_check(err.failed_checks(), "vtpm.ima_policy");
    assert!(reason.contains("/usr/bin/app"), "{reason}");
    drop(node);

    // A clean node with a good strict round is trusted until the runtime policy changes under
    // the same name; then it needs a round under the new version first.
    let node = boot_node(None);
    let r4 = bed.round(&node, 0);
    assert_eq!(r4.verdict, "affirming", "{:?}", r4.failed_checks);
    assert!(bed.release(&node, 3).is_ok());
    let mut changed = runtime_policy();
    changed.excludes.push("/var/tmp/".into());
    let info = bed
        .rt
        .block_on(bed.client.put_ima_policy("node-image", &changed))
        .unwrap();
    assert_eq!(info.sha256.len(), 64);
    let err = bed.release(&node, 0).unwrap_err();
    let reason = failed_check(err.failed_checks(), "broker.node_trust");
    assert!(reason.contains("another runtime policy"), "{reason}");
    let r5 = bed.round(&node, 0);
    assert_eq!(r5.verdict, "affirming", "{:?}", r5.failed_checks);
    assert!(bed.release(&node, 3).is_ok());
    bed.broker.stop(&bed.rt);
}
