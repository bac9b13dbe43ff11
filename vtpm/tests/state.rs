//! Integration tests of state export and restore: round trips with and without volatile state,
//! and corrupt, truncated or mismatched states, which must give `StateCorrupt`, never a crash.
//! libtpms is one engine per process and `Vtpm` is exclusive, so every test takes the
//! binary-wide lock first.

mod common;

use common::*;
use vtpm::{TpmEngine, TpmEngineError, TpmState, Vtpm, VtpmConfig, VtpmError};

const CORRUPT: VtpmError = VtpmError::Engine(TpmEngineError::StateCorrupt);

/// A manufactured TPM with PCR 10 extended and a written NV index, exported while running.
fn exported() -> (TpmState, [Vec<u8>; 3]) {
    let mut tpm = Vtpm::manufacture(VtpmConfig::default()).unwrap();
    send_ok(&mut tpm, &pcr_extend_cmd(10, &[0xab; 32]));
    assert_eq!(
        rc(&nv_define(&mut tpm, TEST_NV_INDEX, NV_OWNER_RW, b"", 16)),
        TPM_RC_SUCCESS
    );
    send_ok(
        &mut tpm,
        &nv_write_cmd(TPM_RH_OWNER, TEST_NV_INDEX, b"", b"written pre-save"),
    );
    let keys = [
        tpm.ek_rsa_public().unwrap(),
        tpm.ek_ecc_public().unwrap(),
        tpm.ak_public().unwrap(),
    ];
    let state = tpm.export_state().unwrap();
    assert!(!state.permanent.is_empty());
    assert!(!state.volatile.is_empty(), "running TPM has volatile state");
    (state, keys)
}

fn keys(tpm: &mut Vtpm) -> [Vec<u8>; 3] {
    [
        tpm.ek_rsa_public().unwrap(),
        tpm.ek_ecc_public().unwrap(),
        tpm.ak_public().unwrap(),
    ]
}

#[test]
fn restore_with_volatile_state_continues_where_it_left() {
    let _g = serial();
    let (state, before) = exported();
    let mut tpm = Vtpm::restore(&state, VtpmConfig::default()).unwrap();
    assert!(!tpm.state_changed(), "restoring is not a change");
    assert_eq!(keys(&mut tpm), before);
    assert_eq!(nv_read(&mut tpm, TEST_NV_INDEX, 16), b"written pre-save");
    // No Startup happened: PCRs are as they were.
    assert_eq!(
        hex::encode(pcr_read_sha256(&mut tpm, 10)),
        "debb3e7acfff6dd18d501042273629f0b79cb206bb8c24f59f62ddb80849403b"
    );
    // And the restored TPM exports again, round trip after round trip.
    let again = tpm.export_state().unwrap();
    drop(tpm);
    let mut tpm = Vtpm::restore(&again, VtpmConfig::default()).unwrap();
    assert_eq!(keys(&mut tpm), before);
}

#[test]
fn restore_permanent_only_starts_up() {
    let _g = serial();
    let (state, before) = exported();
    let permanent_only = TpmState {
        permanent: state.permanent.clone(),
        volatile: Vec::new(),
    };
    let mut tpm = Vtpm::restore(&permanent_only, VtpmConfig::default()).unwrap();
    assert_eq!(keys(&mut tpm), before);
    assert_eq!(nv_read(&mut tpm, TEST_NV_INDEX, 16), b"written pre-save");
    // Startup(CLEAR) (nothing was saved with Shutdown(STATE)): PCRs reset.
    assert_eq!(pcr_read_sha256(&mut tpm, 10), [0u8; 32]);
    assert_eq!(get_random(&mut tpm, 8).len(), 8);
}

#[test]
fn export_while_powered_off_has_no_volatile_state() {
    let _g = serial();
    let mut tpm = Vtpm::manufacture(VtpmConfig::default()).unwrap();
    let before = keys(&mut tpm);
    tpm.power_off();
    let state = tpm.export_state().unwrap();
    assert!(state.volatile.is_empty());
    assert!(!tpm.state_changed());
    drop(tpm);
    let mut tpm = Vtpm::restore(&state, VtpmConfig::default()).unwrap();
    assert_eq!(keys(&mut tpm), before);
}

#[test]
fn corrupt_states_are_refused() {
    let _g = serial();
    let (state, _) = exported();
    let restore = |s: &TpmState| Vtpm::restore(s, VtpmConfig::default()).map(drop);

    let with_perm = |p: Vec<u8>| TpmState {
        permanent: p,
        volatile: state.volatile.clone(),
    };
    let with_vol = |v: Vec<u8>| TpmState {
        permanent: state.permanent.clone(),
        volatile: v,
    };
    let perm_len = state.permanent.len();
    let vol_len = state.volatile.len();

    let mut bad: Vec<(String, TpmState)> = vec![
        ("empty".into(), TpmState::default()),
        ("empty permanent".into(), with_perm(Vec::new())),
        ("zeros".into(), with_perm(vec![0; perm_len])),
        (
            "garbage".into(),
            with_perm((0..perm_len).map(|i| (i * 131 % 251) as u8).collect()),
        ),
        ("garbage volatile".into(), with_vol(vec![1, 2, 3])),
        (
            "volatile given as permanent".into(),
            TpmState {
                permanent: state.volatile.clone(),
                volatile: Vec::new(),
            },
        ),
    ];
    for n in [0, 1, 8, 39, 40, 41, perm_len / 2, perm_len - 1] {
        bad.push((
            format!("permanent truncated to {n}"),
            with_perm(state.permanent[..n].to_vec()),
        ));
    }
    for n in [1, 40, vol_len / 2, vol_len - 1] {
        bad.push((
            format!("volatile truncated to {n}"),
            with_vol(state.volatile[..n].to_vec()),
        ));
    }
    let mut extended = state.permanent.clone();
    extended.push(0);
    bad.push(("permanent with a trailing byte".into(), with_perm(extended)));
    // Single flipped bytes all over both blobs (header, digest and the libtpms blob).
    for off in (0..perm_len).step_by(37).chain([perm_len - 1]) {
        let mut p = state.permanent.clone();
        p[off] ^= 0x01;
        bad.push((format!("permanent byte {off} flipped"), with_perm(p)));
    }
    for off in (0..vol_len).step_by(97).chain([vol_len - 1]) {
        let mut v = state.volatile.clone();
        v[off] ^= 0x80;
        bad.push((format!("volatile byte {off} flipped"), with_vol(v)));
    }

    for (what, s) in &bad {
        assert_eq!(restore(s), Err(CORRUPT), "{what}");
    }

    // Volatile state of another TPM (or another export) does not go with this permanent state.
    let (other, _) = exported();
    assert_eq!(restore(&with_vol(other.volatile.clone())), Err(CORRUPT));

    // The refusals left nothing behind: the real state still restores, and a manufacture
    // afterwards is a new TPM, not a leftover of a refused restore.
    let mut tpm = Vtpm::restore(&state, VtpmConfig::default()).unwrap();
    let ek = tpm.ek_rsa_public().unwrap();
    drop(tpm);
    let mut fresh = Vtpm::manufacture(VtpmConfig::default()).unwrap();
    assert_ne!(fresh.ek_rsa_public().unwrap(), ek);
}

#[test]
fn restore_with_another_ak_curve_reports_the_mismatch() {
    let _g = serial();
    let (state, _) = exported(); // P-256 AK
    let mut tpm = Vtpm::restore(
        &state,
        VtpmConfig {
            ak_curve: vtpm::AkCurve::P384,
        },
    )
    .unwrap();
    assert_eq!(
        tpm.ak_public(),
        Err(VtpmError::UnexpectedKey {
            handle: vtpm::AK_HANDLE,
            key: "AK ECC P-384"
        })
    );
    // The EKs do not depend on the configuration.
    assert_eq!(tpm.ek_rsa_public().unwrap().len(), 314);
}

#[test]
fn evicted_keys_are_reported_not_faked() {
    let _g = serial();
    let mut tpm = Vtpm::manufacture(VtpmConfig::default()).unwrap();
    // The guest, as owner, evicts the AK.
    send_ok(
        &mut tpm,
        &Cmd::new(TPM_ST_SESSIONS, 0x120)
            .u32(TPM_RH_OWNER)
            .u32(vtpm::AK_HANDLE)
            .pw_auth(b"")
            .u32(vtpm::AK_HANDLE)
            .build(),
    );
    match tpm.ak_public() {
        Err(VtpmError::Tpm { command, rc }) => {
            assert_eq!(command, "ReadPublic");
            assert_eq!(rc & 0x3f, 0x0b, "TPM_RC_HANDLE, got {rc:#x}");
        }
        other => panic!("expected a ReadPublic error, got {other:?}"),
    }
}
