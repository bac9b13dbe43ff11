//! The key broker as a service, over HTTPS on loopback, against SQLite and against a real
//! PostgreSQL cluster this test starts itself (a throwaway cluster on a UNIX socket, stopped
//! with the test process): the whole flow (challenge → bundle from the simulated machine →
//! release → vault import → sign) with two replicas, the signed EAR of `attest`, and every
//! refusal — each with its reason in the response and in the audit log.

use base64::Engine;
use host_verifier::broker::api::{self, NewResource};
use host_verifier::broker::client::{BrokerClient, ClientError};
use host_verifier::broker::policy::PolicyDocument;
use host_verifier::broker::store::{AuditRecord, Store};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use svsm_evidence::Bundle;
use test_harness::broker::{bundle_json, runtime, sim_trust, DataDir, LocalBroker, SimNode};
use test_harness::sim::store::SimStore;

/// One TPM engine per process: tests that boot machines take turns.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// One PostgreSQL cluster for this binary, kept by a thread that lives as long as the process
/// (the cluster is tied to the thread that spawned it).
fn postgres_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("svsm-broker-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cluster = svsm_process::postgres::Cluster::start(&dir);
            let _ = tx.send(cluster.as_ref().map(|c| c.url()).map_err(|e| e.to_string()));
            let _keep = cluster;
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("PostgreSQL: {e}"))
    })
    .clone()
}

fn refusal(r: Result<api::Released, ClientError>) -> (u16, Vec<api::FailedCheck>) {
    match r {
        Ok(_) => panic!("released, expected a refusal"),
        Err(e) => (e.status().unwrap_or(0), e.failed_checks().to_vec()),
    }
}

fn has_check(failed: &[api::FailedCheck], check: &str, reason: &str) -> bool {
    failed
        .iter()
        .any(|f| f.check == check && f.reason.contains(reason))
}

fn audited(rows: &[AuditRecord], action: &str, decision: &str, reason: &str) -> bool {
    rows.iter().any(|r| {
        r.action == action && r.decision == decision && r.reasons.iter().any(|x| x.contains(reason))
    })
}

fn resource(kind: &str, usage: &str, policy: &str) -> NewResource {
    NewResource {
        kind: kind.into(),
        usage: vec![usage.into()],
        policy: policy.into(),
        material: None,
    }
}

/// The whole flow and every refusal on `database` (None: SQLite in the data directory).
fn exercise(database: Option<String>) {
    let _t = turn();
    let rt = runtime().unwrap();
    let dir = DataDir::init("flow").unwrap();
    let trust = sim_trust().unwrap();
    let ttl = Duration::from_secs(300);
    let a = LocalBroker::start(&rt, &dir.path, database.clone(), trust.clone(), ttl).unwrap();
    let b = LocalBroker::start(&rt, &dir.path, database.clone(), trust.clone(), ttl).unwrap();
    let short = LocalBroker::start(
        &rt,
        &dir.path,
        database.clone(),
        trust.clone(),
        Duration::from_secs(1),
    )
    .unwrap();
    let ca = a.client(&dir).unwrap();
    let cb = b.client(&dir).unwrap();
    let node = SimNode::launch(None).unwrap();
    let fresh_bundle = |c: &BrokerClient, node: &SimNode| -> Bundle {
        let ch = rt.block_on(c.challenge()).unwrap();
        node.bundle(&hex::decode(ch.nonce).unwrap()).unwrap()
    };

    // The operator's setup, through replica A.
    let policy = SimNode::policy();
    rt.block_on(ca.put_policy("node", &policy)).unwrap();
    rt.block_on(ca.put_policy("default", &policy)).unwrap();
    let payments = rt
        .block_on(ca.put_resource("payments", &resource("ecdsa-p384", "sign", "node")))
        .unwrap();
    assert_eq!(payments.kind, "ecdsa-p384");
    let mut other_measurement = policy.clone();
    other_measurement.snp.insert(
        "measurements".into(),
        serde_json::json!([hex::encode([0x11u8; 48])]),
    );
    rt.block_on(ca.put_policy("other-measurement", &other_measurement))
        .unwrap();
    rt.block_on(ca.put_resource(
        "wrong-image",
        &resource("aes-256-gcm", "encrypt", "other-measurement"),
    ))
    .unwrap();
    let mut other_pcr = policy.clone();
    other_pcr
        .reference_pcrs
        .insert("4".into(), hex::encode([0u8; 32]));
    rt.block_on(ca.put_policy("other-kernel", &other_pcr))
        .unwrap();
    rt.block_on(ca.put_resource(
        "wrong-kernel",
        &resource("hmac-sha384", "mac", "other-kernel"),
    ))
    .unwrap();
    let mut needs_epoch = policy.clone();
    needs_epoch.min_epoch = Some(1);
    rt.block_on(ca.put_policy("needs-epoch", &needs_epoch))
        .unwrap();
    rt.block_on(ca.put_resource(
        "restored-only",
        &resource("ecdsa-p256", "sign", "needs-epoch"),
    ))
    .unwrap();

    // The flow: the nonce issued by A is redeemed at B; the vault imports and signs.
    let bundle = fresh_bundle(&ca, &node);
    let released = rt
        .block_on(cb.release("payments", bundle_json(&bundle).unwrap()))
        .unwrap();
    assert_eq!(released.owner_vmpl, 1);
    let package = base64::engine::general_purpose::STANDARD
        .decode(&released.package)
        .unwrap();
    let mut vault = guest_driver::vault::VaultClient::probe(
        node.machine.transport(test_harness::broker::app_vmpl()),
    )
    .unwrap();
    let key = vault.import_key(&package).unwrap();
    let sig = vault.sign(key, b"pay 100 to bob").unwrap();
    {
        use p384::ecdsa::signature::Verifier;
        let public = hex::decode(payments.public_key.unwrap()).unwrap();
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&public)
            .unwrap()
            .verify(
                b"pay 100 to bob",
                &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
            )
            .expect("the vault signed with the released key");
    }

    // Reused nonce, at either replica.
    for c in [&ca, &cb] {
        let (status, failed) =
            refusal(rt.block_on(c.release("payments", bundle_json(&bundle).unwrap())));
        assert_eq!(status, 403);
        assert!(
            has_check(&failed, "broker.nonce", "already used"),
            "{failed:?}"
        );
    }
    // Concurrent redemptions of one nonce over both replicas: exactly one wins.
    let racing = fresh_bundle(&ca, &node);
    let wins = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..16 {
            let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            let j = bundle_json(&racing).unwrap();
            tasks.push(tokio::spawn(async move { c.release("payments", j).await }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                wins += 1;
            }
        }
        wins
    });
    assert_eq!(wins, 1, "one nonce, one release");

    // A nonce the broker never issued.
    let forged = node.bundle(&[0x77; 32]).unwrap();
    let (status, failed) =
        refusal(rt.block_on(ca.release("payments", bundle_json(&forged).unwrap())));
    assert_eq!(status, 403);
    assert!(
        has_check(&failed, "broker.nonce", "not issued"),
        "{failed:?}"
    );

    // An expired nonce (the short replica issues nonces valid 1 s).
    let cs = short.client(&dir).unwrap();
    let late = fresh_bundle(&cs, &node);
    std::thread::sleep(Duration::from_millis(2100));
    let (status, failed) =
        refusal(rt.block_on(cb.release("payments", bundle_json(&late).unwrap())));
    assert_eq!(status, 403);
    assert!(has_check(&failed, "broker.nonce", "expired"), "{failed:?}");

    // A tampered bundle: one bit of the quote's signature.
    let mut tampered = fresh_bundle(&ca, &node);
    if let Some(last) = tampered.quote_signature.last_mut() {
        *last ^= 1;
    }
    let (status, failed) =
        refusal(rt.block_on(ca.release("payments", bundle_json(&tampered).unwrap())));
    assert_eq!(status, 403);
    assert!(
        failed.iter().any(|f| f.check == "vtpm.quote_signature"),
        "{failed:?}"
    );

    // Policy mismatches: another MEASUREMENT, another kernel's PCR 4.
    let (status, failed) = refusal(rt.block_on(ca.release(
        "wrong-image",
        bundle_json(&fresh_bundle(&ca, &node)).unwrap(),
    )));
    assert_eq!(status, 403);
    assert!(
        has_check(&failed, "cpu.measurement", "not in the policy's allowlist"),
        "{failed:?}"
    );
    let (status, failed) = refusal(rt.block_on(ca.release(
        "wrong-kernel",
        bundle_json(&fresh_bundle(&ca, &node)).unwrap(),
    )));
    assert_eq!(status, 403);
    assert!(
        has_check(&failed, "vtpm.reference_pcrs", "PCR 4"),
        "{failed:?}"
    );
    assert!(!failed.iter().any(|f| f.check == "cpu.measurement"));

    // A fresh state where the policy wants a restored one at epoch >= 1.
    let (status, failed) = refusal(rt.block_on(ca.release(
        "restored-only",
        bundle_json(&fresh_bundle(&ca, &node)).unwrap(),
    )));
    assert_eq!(status, 403);
    assert!(failed.iter().any(|f| f.check == "svsm.epoch"), "{failed:?}");
    drop(vault);
    drop(node);

    // Epoch regression: the host restores older sealed state. The module cannot tell (no
    // expected epoch), the broker can: it saw a newer epoch of this instance.
    let store = SimStore::new();
    let (old_slots, instance) = {
        let n = SimNode::launch(Some(store.clone())).unwrap();
        let mut v = guest_driver::vault::VaultClient::probe(
            n.machine.transport(test_harness::broker::app_vmpl()),
        )
        .unwrap();
        v.create_key(
            svsm_abi::vault::KeyKind::Aes256Gcm,
            svsm_abi::vault::Usage::ENCRYPT,
        )
        .unwrap();
        let old = (store.slot(0), store.slot(1));
        v.create_key(
            svsm_abi::vault::KeyKind::Aes256Gcm,
            svsm_abi::vault::Usage::ENCRYPT,
        )
        .unwrap();
        let instance = n.machine.module().instance_id();
        (old, instance)
    };
    {
        let n = SimNode::launch(Some(store.clone())).unwrap();
        let epoch = n.machine.module().state_epoch();
        let r = rt.block_on(cb.release("payments", bundle_json(&fresh_bundle(&ca, &n)).unwrap()));
        assert!(
            r.is_ok(),
            "the newest state at epoch {epoch} is released to: {r:?}"
        );
    }
    store.set_slot(0, old_slots.0);
    store.set_slot(1, old_slots.1);
    {
        let n = SimNode::launch(Some(store.clone())).unwrap();
        assert_eq!(n.machine.module().instance_id(), instance);
        let (status, failed) = refusal(
            rt.block_on(ca.release("payments", bundle_json(&fresh_bundle(&cb, &n)).unwrap())),
        );
        assert_eq!(status, 403);
        assert!(
            has_check(&failed, "broker.epoch", "rolled back"),
            "{failed:?}"
        );
    }

    // A policy that does not pin the image affirms any SVSM on genuine hardware: its attest
    // answers, but it must not touch the instance records (a foreign SVSM could otherwise
    // claim a victim's instance id with a huge epoch and lock it out).
    let mut any_image = policy.clone();
    any_image.snp.remove("measurements");
    rt.block_on(ca.put_policy("any-image", &any_image)).unwrap();
    let lax = SimNode::launch(None).unwrap();
    let lax_instance = hex::encode(lax.machine.module().instance_id());
    let answer = rt
        .block_on(ca.attest(
            bundle_json(&fresh_bundle(&cb, &lax)).unwrap(),
            Some("any-image"),
        ))
        .unwrap();
    assert_eq!(answer.verdict, "affirming", "{:?}", answer.failed_checks);
    assert_eq!(answer.instance_id.as_deref(), Some(lax_instance.as_str()));
    let nodes = rt.block_on(ca.nodes()).unwrap();
    assert!(
        !nodes.iter().any(|n| n.instance_id == lax_instance),
        "an attest under a policy without MEASUREMENTs recorded the instance: {nodes:?}"
    );
    let rows = rt.block_on(ca.audit(0)).unwrap();
    assert!(
        !rows.iter().any(|r| r.subject.contains(&lax_instance)),
        "the audit log names an instance no pinned image vouched for"
    );
    // The same node under the image-pinning policy is recorded.
    let answer = rt
        .block_on(ca.attest(bundle_json(&fresh_bundle(&cb, &lax)).unwrap(), None))
        .unwrap();
    assert_eq!(answer.verdict, "affirming");
    let nodes = rt.block_on(ca.nodes()).unwrap();
    assert!(nodes.iter().any(|n| n.instance_id == lax_instance));
    drop(lax);

    // Names that do not exist: 404, and audited (a probe for resource names is visible).
    let e = rt
        .block_on(ca.release("no-such-key", bundle_json(&bundle).unwrap()))
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    let n = SimNode::launch(None).unwrap();
    let e = rt
        .block_on(ca.attest(
            bundle_json(&fresh_bundle(&cb, &n)).unwrap(),
            Some("no-such-policy"),
        ))
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    drop(n);

    // A replica given a CRL checks it: one that does not parse refuses every release.
    let crl_path = dir.path.join("not-a-crl.der");
    std::fs::write(&crl_path, b"not a CRL").unwrap();
    let revoking =
        LocalBroker::start_configured(&rt, &dir.path, database.clone(), trust.clone(), |o| {
            o.crl = Some(crl_path.clone())
        })
        .unwrap();
    let cr = revoking.client(&dir).unwrap();
    let n = SimNode::launch(None).unwrap();
    let (status, failed) =
        refusal(rt.block_on(cr.release("payments", bundle_json(&fresh_bundle(&cr, &n)).unwrap())));
    assert_eq!(status, 403);
    assert!(has_check(&failed, "cpu.snp", "crl failed"), "{failed:?}");
    drop(n);
    revoking.stop(&rt);

    // attest: an EAR signed by the broker's key, verifiable with /v1/ear-key.
    let n = SimNode::launch(None).unwrap();
    let answer = rt
        .block_on(ca.attest(bundle_json(&fresh_bundle(&cb, &n)).unwrap(), None))
        .unwrap();
    assert_eq!(answer.verdict, "affirming", "{:?}", answer.failed_checks);
    let key = rt.block_on(cb.ear_key()).unwrap();
    let ear = ear::Ear::from_jwt_jwk(
        &answer.ear,
        ear::Algorithm::ES256,
        serde_json::to_string(&key.jwk).unwrap().as_bytes(),
    )
    .expect("the EAR verifies with the broker's published key");
    assert_eq!(ear.status, Some(ear::TrustTier::Affirming));
    // One character of the signature changed: refused.
    let sig_at = answer.ear.rfind('.').unwrap() + 1;
    let mut broken = answer.ear.clone().into_bytes();
    broken[sig_at] = if broken[sig_at] == b'A' { b'B' } else { b'A' };
    let jwk = serde_json::to_string(&key.jwk).unwrap();
    assert!(ear::Ear::from_jwt_jwk(
        std::str::from_utf8(&broken).unwrap(),
        ear::Algorithm::ES256,
        jwk.as_bytes()
    )
    .is_err());
    let against_other = rt
        .block_on(ca.attest(
            bundle_json(&fresh_bundle(&cb, &n)).unwrap(),
            Some("other-measurement"),
        ))
        .unwrap();
    assert_eq!(against_other.verdict, "contraindicated");
    let ear = ear::Ear::from_jwt_jwk(
        &against_other.ear,
        ear::Algorithm::ES256,
        serde_json::to_string(&key.jwk).unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(ear.status, Some(ear::TrustTier::Contraindicated));
    drop(n);

    // Admin credentials: none, wrong, then right.
    let anonymous = BrokerClient::new(&a.url, &dir.ca_pem).unwrap();
    let wrong = BrokerClient::new(&a.url, &dir.ca_pem)
        .unwrap()
        .with_admin_token(&"0".repeat(64));
    for c in [&anonymous, &wrong] {
        let e = rt
            .block_on(c.put_policy("evil", &PolicyDocument::default()))
            .unwrap_err();
        assert_eq!(e.status(), Some(401), "{e}");
        assert_eq!(rt.block_on(c.audit(0)).unwrap_err().status(), Some(401));
    }

    // Malformed and oversized bodies: a 4xx naming the field.
    let raw = |path: &str, body: Vec<u8>| -> (u16, api::ErrorBody) {
        rt.block_on(async {
            let r = ca
                .http()
                .post(ca.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<api::ErrorBody>().await.unwrap())
        })
    };
    let (status, body) = raw("/v1/release", b"{not json".to_vec());
    assert_eq!((status, body.error.as_str()), (400, "malformed"));
    let mut request = serde_json::json!({
        "resource": "payments",
        "bundle": serde_json::to_value(bundle_json(&bundle).unwrap()).unwrap(),
        "priority": "high",
    });
    let (status, body) = raw("/v1/release", serde_json::to_vec(&request).unwrap());
    assert_eq!(status, 400);
    assert!(
        body.message.contains("unknown field `priority`"),
        "{body:?}"
    );
    request.as_object_mut().unwrap().remove("priority");
    request["bundle"]["quote"]["attest"] = serde_json::json!(7);
    let (status, body) = raw("/v1/release", serde_json::to_vec(&request).unwrap());
    assert_eq!(status, 400);
    assert_eq!(
        body.field.as_deref(),
        Some("bundle.quote.attest"),
        "{body:?}"
    );
    request["bundle"]["quote"]["attest"] = serde_json::json!("!!not base64!!");
    let (status, body) = raw("/v1/release", serde_json::to_vec(&request).unwrap());
    assert_eq!(status, 400);
    assert_eq!(body.field.as_deref(), Some("bundle"), "{body:?}");
    assert!(body.message.contains("quote.attest"), "{body:?}");
    request.as_object_mut().unwrap().remove("resource");
    let (status, body) = raw("/v1/release", serde_json::to_vec(&request).unwrap());
    assert_eq!(status, 400);
    assert!(
        body.message.contains("missing field `resource`"),
        "{body:?}"
    );
    let (status, body) = raw("/v1/release", vec![b' '; 13 * 1024 * 1024]);
    assert_eq!((status, body.error.as_str()), (413, "too_large"));
    let (status, _) = raw("/v1/nothing-here", vec![]);
    assert_eq!(status, 404);
    let (status, body) = rt.block_on(async {
        let r = ca.http().get(ca.url("/v1/release")).send().await.unwrap();
        (
            r.status().as_u16(),
            r.json::<api::ErrorBody>().await.unwrap(),
        )
    });
    assert_eq!((status, body.error.as_str()), (405, "method_not_allowed"));

    // Every refusal is in the audit log with its reason.
    let rows = rt.block_on(cb.audit(0)).unwrap();
    for (action, decision, reason) in [
        ("release", "allowed", ""),
        ("release", "refused", "already used"),
        ("release", "refused", "not issued"),
        ("release", "refused", "expired"),
        ("release", "refused", "vtpm.quote_signature"),
        ("release", "refused", "cpu.measurement"),
        ("release", "refused", "vtpm.reference_pcrs"),
        ("release", "refused", "svsm.epoch"),
        ("release", "refused", "rolled back"),
        ("attest", "allowed", ""),
        ("attest", "refused", "cpu.measurement"),
        ("admin", "refused", "admin credentials"),
        ("release", "refused", "no resource named \"no-such-key\""),
        ("attest", "refused", "no policy named \"no-such-policy\""),
        ("admin", "allowed", ""),
    ] {
        let found = if reason.is_empty() {
            rows.iter()
                .any(|r| r.action == action && r.decision == decision)
        } else {
            audited(&rows, action, decision, reason)
        };
        assert!(
            found,
            "no audit row {action} {decision} {reason:?}: {rows:#?}"
        );
    }
    // Releases: exactly the ones answered 200 (the flow, one racer, the newest state).
    assert_eq!(
        rows.iter()
            .filter(|r| r.action == "release" && r.decision == "allowed")
            .count(),
        3
    );
    let nodes = rt.block_on(ca.nodes()).unwrap();
    assert!(nodes.iter().any(|n| n.instance_id == hex::encode(instance)));

    // Health and metrics.
    rt.block_on(async {
        let h = ca.http().get(ca.url("/healthz")).send().await.unwrap();
        assert_eq!(h.status().as_u16(), 200);
        let m = ca
            .http()
            .get(cb.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            m.contains("broker_requests_total{endpoint=\"/v1/release\",status=\"200\"}"),
            "{m}"
        );
        assert!(m.contains("broker_decisions_total"), "{m}");
        assert!(m.contains("broker_request_duration_seconds_bucket"), "{m}");
    });
    a.stop(&rt);
    b.stop(&rt);
    short.stop(&rt);
}

#[test]
fn the_whole_flow_and_every_refusal_on_sqlite() {
    exercise(None);
}

#[test]
fn the_whole_flow_and_every_refusal_on_postgresql_with_two_replicas() {
    let url = postgres_url();
    runtime()
        .unwrap()
        .block_on(Store::reset_for_tests(&url))
        .unwrap();
    exercise(Some(url));
}
