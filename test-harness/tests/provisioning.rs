//! Provisioning reaches only the boot, instance and VMPL that was appraised (docs/provisioning.md).
//!
//! Each attack here succeeded before the per-boot transport key and the import binding: the
//! transport key was derived from the launch (same for every launch of the image on the chip),
//! a package bound only kind, usage and a nonce that any VMPL could attest with, and the importer
//! became the owner. The known-answer test builds a package with the primitives directly, not
//! with `wrap_for_import`, so the format is pinned independently of the code under test.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use guest_driver::attest::{attest, Scope};
use guest_driver::vault::{VaultClient, VaultClientError};
use hkdf::Hkdf;
use p384::elliptic_curve::sec1::ToEncodedPoint;
use sha2::{Digest, Sha256, Sha384};
use std::sync::{Mutex, MutexGuard};
use svsm_abi::attest::{ModuleState, ServicesManifest, StateKind, VAULT_SERVICE_GUID};
use svsm_abi::vault::{KeyKind, Usage, VaultStatus};
use svsm_core::measure::{Component, ComponentKind};
use svsm_core::platform::Vmpl;
use svsm_core::vault::{wrap_for_import, ImportTarget};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::store::{AnyStore, SimStore};
use test_harness::sim::{SimMachine, SimTransport};

/// One engine per process: every test takes its turn.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

const MEASUREMENT: [u8; 48] = [0x77; 48];
const MATERIAL: [u8; 32] = [0x42; 32];

fn boot(store: &SimStore) -> SimMachine {
    SimMachine::boot(
        LaunchConfig::genoa(MEASUREMENT),
        AnyStore::Memory(store.clone()),
        None,
    )
    .unwrap()
}

fn launch_with_kernel(store: &SimStore, kernel: &[u8]) -> SimMachine {
    let machine = boot(store);
    machine
        .module()
        .measure_launch(&[Component {
            kind: ComponentKind::Kernel,
            bytes: kernel,
        }])
        .unwrap();
    machine
}

fn vault(machine: &SimMachine, vmpl: u8) -> VaultClient<SimTransport> {
    VaultClient::probe(machine.transport(Vmpl::new(vmpl).unwrap())).unwrap()
}

fn refused(r: Result<u32, VaultClientError>) -> VaultStatus {
    match r {
        Err(VaultClientError::Vault(s)) => s,
        other => panic!("expected a vault refusal, got {other:?}"),
    }
}

/// What a broker reads from an appraised attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Appraised {
    instance: [u8; 16],
    transport: [u8; 97],
    requester: u8,
    state: StateKind,
    flags: u32,
}

fn attest_vault(v: &mut VaultClient<SimTransport>, nonce: &[u8]) -> Appraised {
    let evidence = attest(v.transport_mut(), Scope::AllServices, nonce, false).unwrap();
    let manifest = ServicesManifest::parse(&evidence.manifest).unwrap();
    let m = ModuleState::parse_vault_manifest(manifest.find(&VAULT_SERVICE_GUID).unwrap()).unwrap();
    Appraised {
        instance: *m.instance_id,
        transport: *m.transport_public,
        requester: m.requester_vmpl,
        state: m.state,
        flags: m.flags,
    }
}

fn package_for(a: &Appraised, owner: u8, nonce: &[u8], name: &[u8]) -> Vec<u8> {
    wrap_for_import(
        &ImportTarget {
            kind: KeyKind::Aes256Gcm,
            usage: Usage::ENCRYPT | Usage::DECRYPT,
            owner: Vmpl::new(owner).unwrap(),
            instance_id: &a.instance,
            recipient: &a.transport,
            name,
            nonce,
        },
        &p384::SecretKey::random(&mut rand::thread_rng()),
        &rand::random(),
        &MATERIAL,
    )
    .unwrap()
}

/// Byte ranges of the binding fields in a package.
const OWNER: usize = 6;
const INSTANCE: std::ops::Range<usize> = 8..24;
const RECIPIENT: std::ops::Range<usize> = 24..121;

#[test]
fn a_package_for_instance_a_is_refused_by_instance_b_with_the_same_measurement_and_another_kernel()
{
    let _t = turn();
    let nonce = b"broker nonce for instance A";
    // Instance A boots the appraised kernel, attests, and the broker releases a package; the
    // host captures it. (One TPM engine per process: A is shut down before B boots.)
    let (appraised_a, package) = {
        let a = launch_with_kernel(&SimStore::new(), b"the appraised kernel");
        let mut va = vault(&a, 1);
        let appraised_a = attest_vault(&mut va, nonce);
        let package = package_for(&appraised_a, 1, nonce, b"payments");
        let key = va.import_key(&package).unwrap();
        assert!(va.list().unwrap().iter().any(|k| k.id == key));
        (appraised_a, package)
    };
    // B runs the same firmware (same MEASUREMENT, same chip) with another kernel and attests
    // with A's public nonce: any VMPL may ask for an attestation with any nonce.
    let b = launch_with_kernel(&SimStore::new(), b"another kernel");
    let mut vb = vault(&b, 1);
    let appraised_b = attest_vault(&mut vb, nonce);
    assert_ne!(appraised_a.transport, appraised_b.transport);
    assert_ne!(appraised_a.instance, appraised_b.instance);
    assert_eq!(refused(vb.import_key(&package)), VaultStatus::WrongInstance);
    // The host rewrites the binding to name B: the fields now check, the AEAD does not.
    let mut forged = package.clone();
    forged[INSTANCE].copy_from_slice(&appraised_b.instance);
    forged[RECIPIENT].copy_from_slice(&appraised_b.transport);
    assert_eq!(
        refused(vb.import_key(&forged)),
        VaultStatus::AuthenticationFailed
    );
    assert!(vb.list().unwrap().is_empty());
}

#[test]
fn a_package_for_boot_1_is_refused_on_boot_2_of_the_same_instance() {
    let _t = turn();
    let store = SimStore::new();
    let nonce = b"broker nonce, boot 1";
    let (boot1, package) = {
        let machine = boot(&store);
        let mut v = vault(&machine, 1);
        let appraised = attest_vault(&mut v, nonce);
        (appraised, package_for(&appraised, 1, nonce, b"disk"))
    };
    // Reboot on the same sealed state: same instance, restored, but a new transport key.
    let machine = boot(&store);
    let mut v = vault(&machine, 1);
    let boot2 = attest_vault(&mut v, nonce);
    assert_eq!(boot2.instance, boot1.instance);
    assert_eq!(
        (boot1.state, boot2.state),
        (StateKind::Fresh, StateKind::Restored)
    );
    assert_ne!(boot2.transport, boot1.transport);
    assert_eq!(refused(v.import_key(&package)), VaultStatus::WrongBoot);
    let mut forged = package.clone();
    forged[RECIPIENT].copy_from_slice(&boot2.transport);
    assert_eq!(
        refused(v.import_key(&forged)),
        VaultStatus::AuthenticationFailed
    );
}

#[test]
fn a_vmpl3_import_of_a_key_wrapped_for_vmpl1_is_refused() {
    let _t = turn();
    let machine = boot(&SimStore::new());
    let nonce = b"broker nonce for the VMPL1 app";
    let mut v1 = vault(&machine, 1);
    let appraised = attest_vault(&mut v1, nonce);
    assert_eq!(appraised.requester, 1, "the manifest names the requester");
    let package = package_for(&appraised, 1, nonce, b"vmpl1-key");

    let mut v3 = vault(&machine, 3);
    assert_eq!(attest_vault(&mut v3, nonce).requester, 3);
    assert_eq!(refused(v3.import_key(&package)), VaultStatus::OwnerMismatch);
    let mut forged = package.clone();
    forged[OWNER] = 3;
    assert_eq!(
        refused(v3.import_key(&forged)),
        VaultStatus::AuthenticationFailed
    );
    // A package for VMPL3 bound to a nonce only VMPL1 attested with.
    let only_vmpl1 = b"nonce VMPL1 alone attested";
    attest_vault(&mut v1, only_vmpl1);
    assert_eq!(
        refused(v3.import_key(&package_for(&appraised, 3, only_vmpl1, b"k"))),
        VaultStatus::UnknownContext
    );
    // The owner the broker named takes it; VMPL3 does not even see it.
    let key = v1.import_key(&package).unwrap();
    assert!(v3.list().unwrap().iter().all(|k| k.id != key));
}

#[test]
fn a_nonce_replayed_from_another_instance_is_refused() {
    let _t = turn();
    let nonce = b"the nonce the broker gave instance A";
    let appraised_a = attest_vault(&mut vault(&boot(&SimStore::new()), 1), nonce);
    let b = boot(&SimStore::new());
    // B presents A's evidence (captured by the host) as its own answer to the nonce: whatever
    // the broker wraps for that evidence names A, and B cannot use it.
    let mut vb = vault(&b, 1);
    assert_eq!(
        refused(vb.import_key(&package_for(&appraised_a, 1, nonce, b"k"))),
        VaultStatus::WrongInstance
    );
    // A package for B's own instance and boot, bound to the nonce only A attested with.
    let b_keys = attest_vault(&mut vb, b"B's own nonce");
    assert_eq!(
        refused(vb.import_key(&package_for(&b_keys, 1, nonce, b"k"))),
        VaultStatus::UnknownContext
    );
}

/// Builds the package with the primitives only, following docs/provisioning.md.
fn independent_package(
    recipient: &[u8; 97],
    instance: &[u8; 16],
    owner: u8,
    ephemeral: &p384::SecretKey,
    iv: &[u8; 12],
    name: &[u8],
    nonce: &[u8],
) -> Vec<u8> {
    let e_pub = ephemeral.public_key().to_encoded_point(false);
    let mut binding = Vec::new();
    binding.extend_from_slice(&2u16.to_le_bytes()); // format version
    binding.extend_from_slice(&3u16.to_le_bytes()); // AES-256-GCM
    binding.extend_from_slice(&(4u16 | 8).to_le_bytes()); // ENCRYPT | DECRYPT
    binding.extend_from_slice(&[owner, 0]);
    binding.extend_from_slice(instance);
    binding.extend_from_slice(recipient);
    binding.extend_from_slice(e_pub.as_bytes());
    binding.push(name.len() as u8);
    binding.extend_from_slice(name);
    binding.push(nonce.len() as u8);
    binding.extend_from_slice(nonce);
    let t = p384::PublicKey::from_sec1_bytes(recipient).unwrap();
    let shared = p384::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), t.as_affine());
    let mut key = [0u8; 32];
    Hkdf::<Sha384>::new(Some(b"svsm-vhsm import v2"), shared.raw_secret_bytes())
        .expand(&binding, &mut key)
        .unwrap();
    let ct = aes_gcm::Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .encrypt(
            iv.into(),
            Payload {
                msg: &MATERIAL,
                aad: &binding,
            },
        )
        .unwrap();
    let mut package = binding;
    package.extend_from_slice(iv);
    package.extend_from_slice(&(ct.len() as u16).to_le_bytes());
    package.extend_from_slice(&ct);
    package
}

#[test]
fn the_wrap_format_matches_an_independent_construction_and_a_pinned_answer() {
    let _t = turn();
    // Fixed inputs: both scalars are below the P-384 order.
    let recipient_secret = p384::SecretKey::from_slice(&[0x22; 48]).unwrap();
    let recipient: [u8; 97] = recipient_secret
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .try_into()
        .unwrap();
    let ephemeral = p384::SecretKey::from_slice(&[0x11; 48]).unwrap();
    let (instance, iv, name, nonce) = ([0x33u8; 16], [0x44u8; 12], b"kat-key", b"kat-nonce");
    let independent = independent_package(&recipient, &instance, 2, &ephemeral, &iv, name, nonce);
    let ours = wrap_for_import(
        &ImportTarget {
            kind: KeyKind::Aes256Gcm,
            usage: Usage::ENCRYPT | Usage::DECRYPT,
            owner: Vmpl::new(2).unwrap(),
            instance_id: &instance,
            recipient: &recipient,
            name,
            nonce,
        },
        &ephemeral,
        &iv,
        &MATERIAL,
    )
    .unwrap();
    assert_eq!(ours, independent);
    assert_eq!(ours.len(), 8 + 16 + 97 + 97 + 1 + 7 + 1 + 9 + 12 + 2 + 48);
    assert_eq!(
        hex::encode(Sha256::digest(&ours)),
        KAT_SHA256,
        "the import package format changed: a deployed key broker would no longer interoperate"
    );

    // And the vault unwraps an independently built package for its own boot key.
    let machine = boot(&SimStore::new());
    let mut v = vault(&machine, 2);
    let appraised = attest_vault(&mut v, nonce);
    let fresh = p384::SecretKey::random(&mut rand::thread_rng());
    let package = independent_package(
        &appraised.transport,
        &appraised.instance,
        2,
        &fresh,
        &iv,
        name,
        nonce,
    );
    let key = v.import_key(&package).unwrap();
    let ct = v.encrypt(key, b"", b"known answer").unwrap();
    let plain = aes_gcm::Aes256Gcm::new_from_slice(&MATERIAL)
        .unwrap()
        .decrypt(
            ct[..12].into(),
            Payload {
                msg: &ct[12..],
                aad: b"",
            },
        )
        .unwrap();
    assert_eq!(plain, b"known answer");
}

/// SHA-256 of the package made from the fixed inputs above.
const KAT_SHA256: &str = "1c116d20d9734edfa318039dd2709f2f47d7c70cc77b2cf158b3580c9ae40997";

#[test]
fn a_write_that_did_not_persist_is_reported_to_the_caller_and_in_the_manifest() {
    let _t = turn();
    let store = SimStore::new();
    let machine = boot(&store);
    let mut v = vault(&machine, 1);
    assert_eq!(attest_vault(&mut v, b"n1").flags, 0);
    store.crash_next_write_after(0);
    let response = match v.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT) {
        Err(VaultClientError::NotPersisted { response }) => response,
        other => panic!("expected NotPersisted, got {other:?}"),
    };
    let id = u32::from_le_bytes(response[..4].try_into().unwrap());
    assert!(
        v.list().unwrap().iter().any(|k| k.id == id),
        "it took effect"
    );
    assert_eq!(
        attest_vault(&mut v, b"n2").flags,
        svsm_abi::attest::MANIFEST_FLAG_NOT_PERSISTED
    );
    // The next successful write clears the flag.
    v.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT).unwrap();
    assert_eq!(attest_vault(&mut v, b"n3").flags, 0);
}

#[test]
fn a_deleted_store_boots_fresh_with_a_new_instance_and_says_so() {
    let _t = turn();
    let store = SimStore::new();
    let first = attest_vault(&mut vault(&boot(&store), 1), b"n");
    assert_eq!(first.state, StateKind::Fresh);
    let again = attest_vault(&mut vault(&boot(&store), 1), b"n");
    assert_eq!(
        (again.state, again.instance),
        (StateKind::Restored, first.instance)
    );
    // The host deletes both slots.
    store.set_slot(0, None);
    store.set_slot(1, None);
    let wiped = attest_vault(&mut vault(&boot(&store), 1), b"n");
    assert_eq!(
        wiped.state,
        StateKind::Fresh,
        "not reported as restored state"
    );
    assert_ne!(wiped.instance, first.instance);
}
