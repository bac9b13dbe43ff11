//! The broker's shared state on both engines it supports: SQLite (a file) and a real PostgreSQL
//! cluster the test starts itself (a throwaway cluster on a UNIX socket, stopped afterwards).
//! Every rule is checked on both, including the races two replicas can run into: one nonce
//! redeemed by many tasks and two stores at once, and one instance's epoch observed
//! concurrently.

#![cfg(feature = "broker")]

use host_verifier::broker::reputation::RoundEvent;
use host_verifier::broker::rounds::RoundResult;
use host_verifier::broker::store::{
    AuditRecord, EpochRefusal, NonceRefusal, ObservedState, Store, StoreError, NONCE_LEN,
    SCHEMA_VERSION,
};
use host_verifier::measured::ima_rounds::ImaPosition;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("svsm-broker-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One PostgreSQL cluster for this test binary; its database is reset per test. It is started
/// and kept by a thread that lives as long as the process: the cluster is tied to the thread
/// that spawned it (parent-death signal), and a test's thread ends with the test.
fn postgres_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cluster = svsm_process::postgres::Cluster::start(&scratch("pg"));
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a fresh SQLite store and on a fresh PostgreSQL store.
fn on_both<F, Fut>(tag: &str, f: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _t = turn();
    let rt = runtime();
    let dir = scratch(tag);
    let sqlite = format!("sqlite:{}?mode=rwc", dir.join("broker.db").display());
    rt.block_on(f(sqlite));
    let pg = postgres_url();
    // A clean schema for this test.
    rt.block_on(Store::reset_for_tests(&pg)).unwrap();
    rt.block_on(f(pg));
    let _ = std::fs::remove_dir_all(&dir);
}

const NOW: i64 = 1_800_000_000;

#[test]
fn a_nonce_is_redeemed_once_and_only_before_it_expires() {
    on_both("nonce", |url| async move {
        let s = Store::open(&url, 4).await.unwrap();
        let n = [7u8; NONCE_LEN];
        s.issue_nonce(&n, NOW, 60).await.unwrap();
        assert_eq!(s.redeem_nonce(&n, NOW + 1).await.unwrap(), Ok(()));
        assert_eq!(
            s.redeem_nonce(&n, NOW + 2).await.unwrap(),
            Err(NonceRefusal::Used)
        );
        assert_eq!(
            s.redeem_nonce(&[8u8; NONCE_LEN], NOW).await.unwrap(),
            Err(NonceRefusal::Unknown)
        );
        let late = [9u8; NONCE_LEN];
        s.issue_nonce(&late, NOW, 60).await.unwrap();
        assert_eq!(
            s.redeem_nonce(&late, NOW + 60).await.unwrap(),
            Err(NonceRefusal::Expired)
        );
        assert_eq!(s.prune_nonces(NOW + 61).await.unwrap(), 2);
        s.close().await;
    });
}

#[test]
fn many_tasks_on_two_replicas_redeem_one_nonce_exactly_once() {
    on_both("race", |url| async move {
        let a = Store::open(&url, 8).await.unwrap();
        let b = Store::open(&url, 8).await.unwrap();
        for round in 0..5u8 {
            let n = [round; NONCE_LEN];
            a.issue_nonce(&n, NOW, 60).await.unwrap();
            let mut tasks = Vec::new();
            for i in 0..16 {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(
                    async move { s.redeem_nonce(&n, NOW + 1).await },
                ));
            }
            let mut won = 0;
            for t in tasks {
                match t.await.unwrap().unwrap() {
                    Ok(()) => won += 1,
                    Err(r) => assert_eq!(r, NonceRefusal::Used),
                }
            }
            assert_eq!(won, 1, "round {round}");
        }
        a.close().await;
        b.close().await;
    });
}

#[test]
fn epochs_only_move_forward_and_fresh_state_is_refused_once_known() {
    on_both("epoch", |url| async move {
        let s = Store::open(&url, 4).await.unwrap();
        let id = [0xA1u8; 16];
        assert_eq!(
            s.observe_state(&id, ObservedState::Fresh { epoch: 1 }, NOW, "attest")
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            s.observe_state(&id, ObservedState::Restored { epoch: 3 }, NOW, "attest")
                .await
                .unwrap(),
            Ok(())
        );
        // The same state attested again is fine; an older one is a rollback.
        assert_eq!(
            s.observe_state(&id, ObservedState::Restored { epoch: 3 }, NOW, "attest")
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            s.observe_state(&id, ObservedState::Restored { epoch: 2 }, NOW, "attest")
                .await
                .unwrap(),
            Err(EpochRefusal::RolledBack {
                found: 2,
                highest: 3
            })
        );
        assert_eq!(
            s.observe_state(&id, ObservedState::Fresh { epoch: 1 }, NOW, "attest")
                .await
                .unwrap(),
            Err(EpochRefusal::FreshAfterKnown { highest: 3 })
        );
        // A fresh boot attesting again after more writes moves forward like a restored one.
        let boot = [0x43u8; 16];
        for epoch in [1, 1, 4] {
            assert_eq!(
                s.observe_state(&boot, ObservedState::Fresh { epoch }, NOW, "attest")
                    .await
                    .unwrap(),
                Ok(())
            );
        }
        assert_eq!(s.highest_epoch(&boot).await.unwrap(), Some(4));
        assert_eq!(
            s.observe_state(&id, ObservedState::Ephemeral, NOW, "attest")
                .await
                .unwrap(),
            Err(EpochRefusal::Ephemeral)
        );
        assert_eq!(s.highest_epoch(&id).await.unwrap(), Some(3));
        assert_eq!(s.highest_epoch(&[0u8; 16]).await.unwrap(), None);
        // Beyond what the database holds: refused, not clamped (clamping would make every
        // larger epoch equal and let an older one of them pass).
        for epoch in [u64::MAX, 1 << 63] {
            assert_eq!(
                s.observe_state(&id, ObservedState::Restored { epoch }, NOW, "attest")
                    .await
                    .unwrap(),
                Err(EpochRefusal::OutOfRange { found: epoch })
            );
        }
        assert_eq!(s.highest_epoch(&id).await.unwrap(), Some(3));
        s.close().await;
    });
}

#[test]
fn concurrent_observations_of_one_instance_never_regress_its_epoch() {
    on_both("epoch-race", |url| async move {
        let a = Store::open(&url, 8).await.unwrap();
        let b = Store::open(&url, 8).await.unwrap();
        let id = [0xB2u8; 16];
        // Two first sightings at once at the same epoch (the same boot attesting twice): one
        // inserts the row, the other finds it and does not move it; both are accepted.
        let (x, y) = tokio::join!(
            a.observe_state(&id, ObservedState::Fresh { epoch: 1 }, NOW, "attest"),
            b.observe_state(&id, ObservedState::Fresh { epoch: 1 }, NOW, "attest"),
        );
        assert_eq!((x.unwrap(), y.unwrap()), (Ok(()), Ok(())));
        assert_eq!(a.highest_epoch(&id).await.unwrap(), Some(1));
        let mut tasks = Vec::new();
        for epoch in 2..=21u64 {
            let s = if epoch % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                s.observe_state(&id, ObservedState::Restored { epoch }, NOW, "attest")
                    .await
            }));
        }
        for t in tasks {
            // Accepted or refused as a rollback; never an error.
            match t.await.unwrap().unwrap() {
                Ok(()) | Err(EpochRefusal::RolledBack { .. }) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(a.highest_epoch(&id).await.unwrap(), Some(21));
        a.close().await;
        b.close().await;
    });
}

fn position(entries: u64) -> ImaPosition {
    ImaPosition {
        entries,
        pcr10: [entries as u8; 32],
    }
}

#[test]
fn rounds_keep_the_position_reputation_and_misses_on_two_replicas() {
    on_both("rounds", |url| async move {
        let a = Store::open(&url, 8).await.unwrap();
        let b = Store::open(&url, 8).await.unwrap();
        let id = [0xC3u8; 16];
        // No row yet: nothing is recorded for an instance the broker never accepted.
        let good = |boot, entries| RoundResult::Good {
            boot,
            ima: position(entries),
            ima_policy: [9; 32],
        };
        assert_eq!(
            a.record_round(&id, &good(1, 3), 100, NOW).await.unwrap(),
            None
        );
        a.observe_state(&id, ObservedState::Fresh { epoch: 1 }, NOW, "attest")
            .await
            .unwrap()
            .unwrap();
        let st = a
            .record_round(&id, &good(1, 3), 100, NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (st.reputation, st.trusted, st.interval),
            (55, true, Some(55))
        );
        assert_eq!(st.ima_position_for(1, &[9; 32]), position(3));
        assert_eq!(st.ima_position_for(2, &[9; 32]), ImaPosition::START);
        assert_eq!(st.ima_position_for(1, &[8; 32]), ImaPosition::START);
        // Twenty good rounds at once on two replicas: none lost, the position never moves
        // backwards within the boot.
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                s.record_round(&id, &good(1, 4 + i), 100, NOW + 1).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap().unwrap();
        }
        let st = a.round_state(&id).await.unwrap().unwrap();
        assert_eq!(st.rounds_good, 21);
        assert_eq!(st.reputation, 100);
        assert_eq!(st.ima.unwrap().entries, 23);
        // A failed round keeps the position; a rollback costs 50.
        let failed = RoundResult::Failed {
            event: RoundEvent::Failed,
            why: "vtpm.ima_policy".into(),
        };
        let st = a
            .record_round(&id, &failed, 100, NOW + 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (st.reputation, st.trusted, st.ima.unwrap().entries),
            (75, false, 23)
        );
        assert_eq!(st.last_failure.as_deref(), Some("vtpm.ima_policy"));
        let rollback = RoundResult::Failed {
            event: RoundEvent::RolledBack,
            why: "broker.epoch".into(),
        };
        let st = a
            .record_round(&id, &rollback, 100, NOW + 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.reputation, 25);
        // A new boot starts the position over, even at fewer entries.
        let st = a
            .record_round(&id, &good(2, 2), 100, NOW + 4)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((st.boot, st.ima.unwrap().entries), (Some(2), 2));
        assert_eq!(st.interval, Some(30));
        // Missed: not before the grace period (30 s + 50 %); then once per interval, even
        // with both replicas sweeping.
        assert!(a
            .sweep_missed_rounds(NOW + 4 + 45)
            .await
            .unwrap()
            .is_empty());
        let (x, y) = tokio::join!(
            a.sweep_missed_rounds(NOW + 4 + 46),
            b.sweep_missed_rounds(NOW + 4 + 46)
        );
        let missed = x.unwrap().len() + y.unwrap().len();
        assert_eq!(missed, 1);
        let st = a.round_state(&id).await.unwrap().unwrap();
        assert_eq!(
            (st.rounds_missed, st.reputation, st.trusted),
            (1, 20, false)
        );
        assert!(a
            .sweep_missed_rounds(NOW + 4 + 60)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(a.sweep_missed_rounds(NOW + 4 + 77).await.unwrap().len(), 1);
        assert_eq!(a.round_census(NOW + 100).await.unwrap(), (0, 1));
        let nodes = a.nodes(10, NOW + 100).await.unwrap();
        let rounds = nodes[0].rounds.clone().unwrap();
        assert_eq!((rounds.missed, rounds.good, rounds.failed), (2, 22, 2));
        assert!(!rounds.trusted);
        // A node gone for good is counted down to 0 and then left alone.
        assert_eq!(a.sweep_missed_rounds(NOW + 4 + 108).await.unwrap().len(), 1);
        let st = a.round_state(&id).await.unwrap().unwrap();
        assert_eq!((st.rounds_missed, st.reputation), (3, 0));
        assert!(a
            .sweep_missed_rounds(NOW + 4 + 1000)
            .await
            .unwrap()
            .is_empty());
        a.close().await;
        b.close().await;
    });
}

#[test]
fn the_audit_log_keeps_every_decision_with_its_reasons() {
    on_both("audit", |url| async move {
        let s = Store::open(&url, 4).await.unwrap();
        for (i, decision) in ["allowed", "refused"].iter().enumerate() {
            s.audit(&AuditRecord {
                at: NOW + i as i64,
                action: "release".into(),
                subject: "payments".into(),
                decision: (*decision).into(),
                reasons: vec![format!("reason {i}"), "vtpm.reference_pcrs".into()],
            })
            .await
            .unwrap();
        }
        let rows = s.audit_since(NOW, 10).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].decision, "refused");
        assert_eq!(rows[1].reasons, vec!["reason 1", "vtpm.reference_pcrs"]);
        assert_eq!(s.audit_since(NOW + 1, 10).await.unwrap().len(), 1);
        s.close().await;
    });
}

#[test]
fn migrations_run_once_and_a_newer_schema_or_unknown_url_is_refused() {
    on_both("schema", |url| async move {
        let s = Store::open(&url, 4).await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION as i64);
        s.close().await;
        let again = Store::open(&url, 4).await.unwrap();
        assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION as i64);
        again.set_schema_version_for_tests(99).await.unwrap();
        again.close().await;
        assert!(matches!(
            Store::open(&url, 4).await,
            Err(StoreError::SchemaTooNew {
                found: 99,
                known: SCHEMA_VERSION
            })
        ));
    });
    let rt = runtime();
    assert!(matches!(
        rt.block_on(Store::open("mysql://x", 1)),
        Err(StoreError::UnsupportedUrl(_))
    ));
}
