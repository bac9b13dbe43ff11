//! The key broker under faults, as processes (`host-verifier serve`) over a real PostgreSQL
//! cluster each test starts itself: a replica killed with SIGKILL in the middle of a load and
//! started again, and the database stopped and started in the middle of a load. Afterwards no
//! nonce was redeemed twice, no epoch went back, every release has its audit row, and the
//! broker serves again without a restart.

use host_verifier::broker::api::NewResource;
use host_verifier::broker::client::BrokerClient;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use test_harness::broker::{
    challenged_bundles, release_load, runtime, DataDir, LoadOptions, ServeProcess, SimNode,
};

/// One TPM engine per process, and one load at a time on two cores.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// `host-verifier`, built next to this test (`make test` builds every binary first).
fn host_verifier_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("host-verifier");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --workspace --bins (make test does)",
        bin.display()
    );
    bin
}

fn cluster(tag: &str) -> (svsm_process::postgres::Cluster, PathBuf) {
    let dir = std::env::temp_dir().join(format!("svsm-broker-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let c =
        svsm_process::postgres::Cluster::start(&dir).unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
    (c, dir)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn provision(rt: &tokio::runtime::Runtime, admin: &BrokerClient) {
    rt.block_on(admin.put_policy("node", &SimNode::policy()))
        .unwrap();
    rt.block_on(admin.put_resource(
        "payments",
        &NewResource {
            kind: "ecdsa-p384".into(),
            usage: vec!["sign".into()],
            policy: "node".into(),
            material: None,
        },
    ))
    .unwrap();
}

fn nonce_of(subject: &str) -> Option<&str> {
    subject
        .split_whitespace()
        .find_map(|w| w.strip_prefix("nonce="))
}

#[test]
fn a_replica_killed_during_load_loses_nothing_and_serves_again() {
    let _t = turn();
    let (pg, pg_dir) = cluster("kill");
    let url = pg.url();
    let rt = runtime().unwrap();
    let dir = DataDir::init("kill").unwrap();
    let bin = host_verifier_bin();
    let mut a = ServeProcess::spawn(&bin, &dir.path, &url, &[]).unwrap();
    let b = ServeProcess::spawn(&bin, &dir.path, &url, &[]).unwrap();
    let client = |url: &str| {
        BrokerClient::new(url, &dir.ca_pem)
            .unwrap()
            .with_admin_token(&dir.admin_token)
    };
    let (ca, cb) = (client(&a.url), client(&b.url));
    provision(&rt, &ca);
    let node = SimNode::launch(None).unwrap();
    let epoch = node.machine.module().state_epoch();
    let instance = hex::encode(node.machine.module().instance_id());
    let bundles = challenged_bundles(&rt, &[ca.clone(), cb.clone()], &node, 200).unwrap();
    let total = bundles.len();

    let done = Arc::new(AtomicUsize::new(0));
    let load = rt.spawn(release_load(
        vec![ca.clone(), cb.clone()],
        "payments",
        bundles.clone(),
        LoadOptions {
            concurrency: 16,
            retry_unavailable_for: None,
            failover: true,
        },
        done.clone(),
    ));
    wait_until(Duration::from_secs(120), || {
        done.load(Ordering::Relaxed) >= total / 3
    });
    a.child.kill().unwrap();
    let report = rt.block_on(load).unwrap();
    eprintln!(
        "kill -9 during load: {} released, {} refused, {} transport errors (failed over)",
        report.released, report.refused, report.errors
    );
    assert_eq!(
        report.released + report.refused,
        total,
        "every bundle answered: {report:?}"
    );
    assert!(report.errors > 0, "the kill cut requests in flight");
    // Refusals are only nonces the killed replica redeemed before it died.
    for r in &report.refusals {
        assert!(r.contains("already used"), "{r}");
    }
    // Started again on the same data directory and database.
    a = ServeProcess::spawn(&bin, &dir.path, &url, &[]).unwrap();
    let ca = client(&a.url);

    // No nonce redeemed twice: every bundle is now refused everywhere.
    let mut unique = report.released_nonces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), report.released);
    for bundle in bundles.iter().step_by(7) {
        for c in [&ca, &cb] {
            let e = rt
                .block_on(c.release("payments", bundle.clone()))
                .unwrap_err();
            assert!(
                e.failed_checks()
                    .iter()
                    .any(|f| f.reason.contains("already used")),
                "{e}"
            );
        }
    }
    // Every release answered has its audit row; no nonce was released twice in the log.
    let rows = rt.block_on(ca.audit(0)).unwrap();
    let allowed: Vec<&str> = rows
        .iter()
        .filter(|r| r.action == "release" && r.decision == "allowed")
        .filter_map(|r| nonce_of(&r.subject))
        .collect();
    let mut allowed_unique = allowed.clone();
    allowed_unique.sort();
    allowed_unique.dedup();
    assert_eq!(
        allowed_unique.len(),
        allowed.len(),
        "a nonce released twice"
    );
    for n in &report.released_nonces {
        assert!(allowed.contains(&n.as_str()), "release of {n} not audited");
    }
    // At most the requests in flight at the kill were audited but not answered.
    assert!(allowed.len() <= report.released + 16);
    // The epoch did not go back.
    let nodes = rt.block_on(cb.nodes()).unwrap();
    let record = nodes.iter().find(|n| n.instance_id == instance).unwrap();
    assert!(record.max_epoch >= epoch);
    // The restarted replica serves a new flow.
    let fresh = challenged_bundles(&rt, std::slice::from_ref(&ca), &node, 1).unwrap();
    rt.block_on(ca.release("payments", fresh[0].clone()))
        .unwrap();
    drop(pg);
    let _ = std::fs::remove_dir_all(&pg_dir);
}

#[test]
fn the_database_stopped_during_load_gives_503s_then_service_resumes_without_restart() {
    let _t = turn();
    let (mut pg, pg_dir) = cluster("dbstop");
    let url = pg.url();
    let rt = runtime().unwrap();
    let dir = DataDir::init("dbstop").unwrap();
    let bin = host_verifier_bin();
    let mut broker = ServeProcess::spawn(&bin, &dir.path, &url, &[]).unwrap();
    let c = BrokerClient::new(&broker.url, &dir.ca_pem)
        .unwrap()
        .with_admin_token(&dir.admin_token);
    provision(&rt, &c);
    let node = SimNode::launch(None).unwrap();
    let bundles = challenged_bundles(&rt, std::slice::from_ref(&c), &node, 120).unwrap();
    let total = bundles.len();
    let done = Arc::new(AtomicUsize::new(0));
    let load = rt.spawn(release_load(
        vec![c.clone()],
        "payments",
        bundles,
        LoadOptions {
            concurrency: 8,
            retry_unavailable_for: Some(Duration::from_secs(90)),
            failover: false,
        },
        done.clone(),
    ));
    wait_until(Duration::from_secs(120), || {
        done.load(Ordering::Relaxed) >= total / 4
    });
    pg.stop().unwrap();
    // While it is down: 503 with Retry-After, and /healthz says so.
    let health = rt.block_on(async {
        c.http()
            .get(c.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(health, 503);
    std::thread::sleep(Duration::from_secs(2));
    pg.restart().unwrap();
    let report = rt.block_on(load).unwrap();
    eprintln!(
        "database stopped during load: {} released, {} refused, {} answers 503 (retried)",
        report.released, report.refused, report.unavailable
    );
    assert!(report.unavailable > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.released + report.refused, total, "{report:?}");
    // A request cut between redeeming its nonce and its audit row released nothing; retried,
    // it is refused as used. Nothing else is refused.
    for r in &report.refusals {
        assert!(r.contains("already used"), "{r}");
    }
    assert!(
        broker.child.try_wait().unwrap().is_none(),
        "the broker kept running"
    );
    let health = rt.block_on(async {
        c.http()
            .get(c.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(health, 200);
    let rows = rt.block_on(c.audit(0)).unwrap();
    for n in &report.released_nonces {
        assert!(
            rows.iter()
                .any(|r| r.decision == "allowed" && nonce_of(&r.subject) == Some(n.as_str())),
            "release of {n} not audited"
        );
    }
    let fresh = challenged_bundles(&rt, std::slice::from_ref(&c), &node, 1).unwrap();
    rt.block_on(c.release("payments", fresh[0].clone()))
        .unwrap();
    let _ = broker.child.stop(Duration::from_secs(10));
    drop(pg);
    let _ = std::fs::remove_dir_all(&pg_dir);
}
