//! The sealing property the key hierarchy rests on, on the software PSP: a key derived for one
//! launch (measurement, policy, ...) cannot be derived by another launch or from VMPL1, and
//! every selected field changes the key.

use std::sync::Arc;
use svsm_abi::snp::msg::{GuestFieldSelect, KeyRequest, KeySelect, RootKey};
use svsm_abi::snp::TcbVersion;
use svsm_core::platform::{PspError, SecureProcessor, Vmpl};
use test_harness::sim::chain::TestChain;
use test_harness::sim::psp::{LaunchConfig, SimPsp, STATUS_INVALID_KEY, STATUS_INVALID_PARAMS};
use test_harness::sim::DEFAULT_CHIP_SEED;

fn psp(config: LaunchConfig, requester: u8) -> SimPsp {
    static CHAIN: std::sync::OnceLock<Arc<TestChain>> = std::sync::OnceLock::new();
    let chain = CHAIN
        .get_or_init(|| {
            let first = SimPsp::new(LaunchConfig::genoa([0; 48]), DEFAULT_CHIP_SEED, Vmpl::ZERO);
            first.unwrap().chain().clone()
        })
        .clone();
    SimPsp::with_chain(
        config,
        DEFAULT_CHIP_SEED,
        Vmpl::new(requester).unwrap(),
        chain,
    )
}

/// The request the key hierarchy makes: VCEK root, measurement + policy, TCB pinned.
fn sealing_request(vmpl: u32, config: &LaunchConfig) -> KeyRequest {
    KeyRequest::new(
        RootKey::Vcek,
        KeySelect::Vcek,
        GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY | GuestFieldSelect::TCB_VERSION,
        vmpl,
        0,
        TcbVersion::encode(&config.tcb, config.product.tcb_layout()),
    )
}

fn key(psp: &mut SimPsp, request: &KeyRequest) -> [u8; 32] {
    psp.derived_key(request).unwrap().0
}

#[test]
fn measurement_a_key_is_not_derivable_with_measurement_b() {
    let a = LaunchConfig::genoa([0xAA; 48]);
    let b = LaunchConfig::genoa([0xBB; 48]);
    let key_a = key(&mut psp(a.clone(), 0), &sealing_request(0, &a));
    assert_eq!(
        key_a,
        key(&mut psp(a.clone(), 0), &sealing_request(0, &a)),
        "deterministic"
    );
    // Launch B asks for every VMPL and every field combination it may: never A's key.
    let mut psp_b = psp(b.clone(), 0);
    for vmpl in 0..4 {
        for bits in 0..(1u64 << 7) {
            let fields = GuestFieldSelect::from_bits_truncate(bits);
            for root in [RootKey::Vcek, RootKey::Vmrk] {
                let req = KeyRequest::new(
                    root,
                    KeySelect::Vcek,
                    fields,
                    vmpl,
                    0,
                    TcbVersion::encode(&b.tcb, b.product.tcb_layout()),
                );
                if let Ok(k) = psp_b.derived_key(&req) {
                    assert_ne!(k.0, key_a, "vmpl {vmpl} fields {bits:#x} {root:?}");
                }
            }
        }
    }
}

#[test]
fn vmpl1_cannot_derive_the_vmpl0_key() {
    let a = LaunchConfig::genoa([0xAA; 48]);
    let key_a = key(&mut psp(a.clone(), 0), &sealing_request(0, &a));
    let mut from_vmpl1 = psp(a.clone(), 1);
    assert_eq!(
        from_vmpl1.derived_key(&sealing_request(0, &a)).unwrap_err(),
        PspError::Refused(STATUS_INVALID_PARAMS),
        "a VMPL lower than the requester's is refused"
    );
    for vmpl in 1..4 {
        assert_ne!(key(&mut from_vmpl1, &sealing_request(vmpl, &a)), key_a);
    }
    assert!(
        from_vmpl1.derived_key(&sealing_request(4, &a)).is_err(),
        "VMPL 4 does not exist"
    );
}

#[test]
fn every_selected_field_changes_the_key() {
    let base = LaunchConfig::genoa([0xAA; 48]);
    let all = GuestFieldSelect::all();
    let tcb = TcbVersion::encode(&base.tcb, base.product.tcb_layout());
    let req = |root, vmpl, svn, tcb| KeyRequest::new(root, KeySelect::Vcek, all, vmpl, svn, tcb);
    let reference = key(&mut psp(base.clone(), 0), &req(RootKey::Vcek, 0, 1, tcb));

    let mut policy = base.clone();
    policy.policy |= 1 << 20;
    let mut image = base.clone();
    image.image_id[0] ^= 1;
    let mut family = base.clone();
    family.family_id[0] ^= 1;
    let mut measurement = base.clone();
    measurement.measurement[47] ^= 1;
    for (what, config) in [
        ("policy", policy),
        ("image id", image),
        ("family id", family),
        ("measurement", measurement),
    ] {
        assert_ne!(
            key(&mut psp(config, 0), &req(RootKey::Vcek, 0, 1, tcb)),
            reference,
            "{what}"
        );
    }
    let mut p = psp(base.clone(), 0);
    assert_ne!(
        key(&mut p, &req(RootKey::Vcek, 1, 1, tcb)),
        reference,
        "VMPL"
    );
    assert_ne!(
        key(&mut p, &req(RootKey::Vcek, 0, 0, tcb)),
        reference,
        "guest SVN"
    );
    let mut older = base.tcb;
    older.microcode -= 1;
    assert_ne!(
        key(
            &mut p,
            &req(
                RootKey::Vcek,
                0,
                1,
                TcbVersion::encode(&older, base.product.tcb_layout())
            )
        ),
        reference,
        "TCB"
    );
    assert_ne!(
        key(&mut p, &req(RootKey::Vmrk, 0, 1, tcb)),
        reference,
        "root key"
    );
    // Another chip (another chip secret) gives another key for the same launch.
    let mut other_chip =
        SimPsp::with_chain(base.clone(), [0x43; 48], Vmpl::ZERO, p.chain().clone());
    assert_ne!(
        key(&mut other_chip, &req(RootKey::Vcek, 0, 1, tcb)),
        reference,
        "chip"
    );
}

#[test]
fn the_psp_enforces_svn_tcb_and_key_selection() {
    let base = LaunchConfig::genoa([0xAA; 48]);
    let mut p = psp(base.clone(), 0);
    let fields = GuestFieldSelect::MEASUREMENT | GuestFieldSelect::TCB_VERSION;
    let tcb = TcbVersion::encode(&base.tcb, base.product.tcb_layout());
    // Guest SVN above the launch SVN (1).
    let svn2 = KeyRequest::new(RootKey::Vcek, KeySelect::Vcek, fields, 0, 2, tcb);
    assert_eq!(
        p.derived_key(&svn2).unwrap_err(),
        PspError::Refused(STATUS_INVALID_PARAMS)
    );
    // A TCB newer than the committed one.
    let mut newer = base.tcb;
    newer.snp += 1;
    let req = KeyRequest::new(
        RootKey::Vcek,
        KeySelect::Vcek,
        fields,
        0,
        0,
        TcbVersion::encode(&newer, base.product.tcb_layout()),
    );
    assert_eq!(
        p.derived_key(&req).unwrap_err(),
        PspError::Refused(STATUS_INVALID_PARAMS)
    );
    // VLEK selected on a machine without one.
    let vlek = KeyRequest::new(RootKey::Vcek, KeySelect::Vlek, fields, 0, 0, tcb);
    assert_eq!(
        p.derived_key(&vlek).unwrap_err(),
        PspError::Refused(STATUS_INVALID_KEY)
    );
}
