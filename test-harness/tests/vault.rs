//! The vault on the simulated SNP machine, through guest-driver -> svsm-core: round trips, no
//! secret ever leaves, VMPL and usage isolation, sealed state across reboots (same launch,
//! other launch, rollback, crash at any byte), and provisioning bound to an attestation.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use guest_driver::attest::{attest, Scope};
use guest_driver::vault::{VaultClient, VaultClientError};
use p384::elliptic_curve::sec1::ToEncodedPoint;
use std::sync::{Mutex, MutexGuard};
use svsm_abi::attest::{ModuleState, ServicesManifest, VAULT_SERVICE_GUID};
use svsm_abi::vault::{KeyKind, Usage, VaultStatus};
use svsm_core::module::EphemeralReason;
use svsm_core::platform::{Gpa, GuestMemory, Vmpl, PAGE_SIZE};
use svsm_core::sealed::SealError;
use svsm_core::vault::{wrap_for_import, ImportTarget};
use svsm_core::StateStatus;
use test_harness::sim::memory::PagePerms;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::store::{AnyStore, SimStore};
use test_harness::sim::{SimMachine, SimTransport};

/// One engine per process: every test takes its turn.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

const MEASUREMENT: [u8; 48] = [0x66; 48];

fn boot(store: &SimStore, config: LaunchConfig, expected_epoch: Option<u64>) -> SimMachine {
    SimMachine::boot(config, AnyStore::Memory(store.clone()), expected_epoch).unwrap()
}

fn vault(machine: &SimMachine, vmpl: u8) -> VaultClient<SimTransport> {
    VaultClient::probe(machine.transport(Vmpl::new(vmpl).unwrap())).unwrap()
}

fn refused(r: Result<impl std::fmt::Debug, VaultClientError>) -> VaultStatus {
    match r {
        Err(VaultClientError::Vault(s)) => s,
        other => panic!("expected a vault refusal, got {other:?}"),
    }
}

#[test]
fn sign_verify_encrypt_decrypt_mac_round_trips() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let mut v = vault(&machine, 1);

    for kind in [KeyKind::EcdsaP256, KeyKind::EcdsaP384] {
        let key = v.create_key(kind, Usage::SIGN | Usage::VERIFY).unwrap();
        let sig = v.sign(key.id, b"message").unwrap();
        assert!(v.verify(key.id, &sig, b"message").unwrap());
        assert!(!v.verify(key.id, &sig, b"other message").unwrap());
        assert_eq!(v.export_public(key.id).unwrap(), key.public);
        // The signature verifies outside the vault with the exported public key.
        use p256::ecdsa::signature::Verifier;
        match kind {
            KeyKind::EcdsaP256 => {
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public).unwrap();
                vk.verify(
                    b"message",
                    &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
                )
                .unwrap();
            }
            _ => {
                let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&key.public).unwrap();
                vk.verify(
                    b"message",
                    &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
                )
                .unwrap();
            }
        }
    }

    let aes = v
        .create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::DECRYPT)
        .unwrap();
    assert!(aes.public.is_empty());
    let sealed = v.encrypt(aes.id, b"header", b"attack at dawn").unwrap();
    assert_eq!(sealed.len(), 12 + 14 + 16);
    assert_eq!(
        v.decrypt(aes.id, b"header", &sealed).unwrap(),
        b"attack at dawn"
    );
    assert_eq!(
        refused(v.decrypt(aes.id, b"other header", &sealed)),
        VaultStatus::AuthenticationFailed
    );
    let mut tampered = sealed.clone();
    tampered[20] ^= 1;
    assert_eq!(
        refused(v.decrypt(aes.id, b"header", &tampered)),
        VaultStatus::AuthenticationFailed
    );
    assert_ne!(
        v.encrypt(aes.id, b"header", b"attack at dawn").unwrap(),
        sealed,
        "fresh IV each time"
    );

    let hmac = v
        .create_key(KeyKind::HmacSha384, Usage::MAC | Usage::VERIFY)
        .unwrap();
    let tag = v.mac(hmac.id, b"data").unwrap();
    assert_eq!(tag.len(), 48);
    assert!(v.verify(hmac.id, &tag, b"data").unwrap());
    assert!(!v.verify(hmac.id, &tag, b"data!").unwrap());

    let listed = v.list().unwrap();
    assert_eq!(listed.len(), 4);
    v.destroy(hmac.id).unwrap();
    assert_eq!(refused(v.mac(hmac.id, b"data")), VaultStatus::KeyNotFound);
    assert_eq!(v.list().unwrap().len(), 3);
}

#[test]
fn ecdh_derive_agrees_with_the_peer() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let mut v = vault(&machine, 1);
    let ecdh = v.create_key(KeyKind::EcdhP384, Usage::DERIVE).unwrap();
    let peer = p384::SecretKey::random(&mut rand::thread_rng());
    let peer_public = peer.public_key().to_encoded_point(false);
    let derived = v
        .derive(
            ecdh.id,
            KeyKind::Aes256Gcm,
            Usage::ENCRYPT | Usage::DECRYPT,
            peer_public.as_bytes(),
            b"session 1",
        )
        .unwrap();
    // The peer computes the same key from the vault's public ECDH key.
    let vault_public = p384::PublicKey::from_sec1_bytes(&ecdh.public).unwrap();
    let shared = p384::ecdh::diffie_hellman(peer.to_nonzero_scalar(), vault_public.as_affine());
    let hk = hkdf::Hkdf::<sha2::Sha384>::new(
        Some(svsm_core::vault::DERIVE_LABEL),
        shared.raw_secret_bytes(),
    );
    let mut key = [0u8; 32];
    hk.expand(b"session 1", &mut key).unwrap();
    let sealed = v.encrypt(derived, b"", b"hello peer").unwrap();
    let plain = aes_gcm::Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .decrypt(
            sealed[..12].into(),
            Payload {
                msg: &sealed[12..],
                aad: b"",
            },
        )
        .unwrap();
    assert_eq!(plain, b"hello peer");
    assert_eq!(
        refused(v.derive(
            ecdh.id,
            KeyKind::Aes256Gcm,
            Usage::SIGN,
            peer_public.as_bytes(),
            b""
        )),
        VaultStatus::UsageNotAllowed
    );
    assert_eq!(
        refused(v.derive(
            ecdh.id,
            KeyKind::Aes256Gcm,
            Usage::ENCRYPT,
            b"\x04not a point",
            b""
        )),
        VaultStatus::BadPublicKey
    );
}

#[test]
fn other_vmpls_and_wrong_usages_are_refused_and_vault_pages_are_private() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let mut v1 = vault(&machine, 1);
    let mut v2 = vault(&machine, 2);
    let sign_only = v1.create_key(KeyKind::EcdsaP384, Usage::SIGN).unwrap();
    let encrypt_only = v1.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT).unwrap();
    // Another VMPL sees no such key.
    assert_eq!(
        refused(v2.sign(sign_only.id, b"m")),
        VaultStatus::KeyNotFound
    );
    assert_eq!(
        refused(v2.export_public(sign_only.id)),
        VaultStatus::KeyNotFound
    );
    assert_eq!(refused(v2.destroy(sign_only.id)), VaultStatus::KeyNotFound);
    assert!(v2.list().unwrap().is_empty());
    // Wrong usage.
    assert_eq!(
        refused(v1.verify(sign_only.id, &[0; 96], b"m")),
        VaultStatus::UsageNotAllowed
    );
    let sealed = v1.encrypt(encrypt_only.id, b"", b"x").unwrap();
    assert_eq!(
        refused(v1.decrypt(encrypt_only.id, b"", &sealed)),
        VaultStatus::UsageNotAllowed
    );
    assert_eq!(
        refused(v1.sign(encrypt_only.id, b"m")),
        VaultStatus::UsageNotAllowed
    );
    assert_eq!(
        refused(v1.create_key(KeyKind::Aes256Gcm, Usage::SIGN)),
        VaultStatus::UsageNotAllowed
    );
    assert_eq!(
        refused(v1.create_key(KeyKind::EcdsaP256, Usage::empty())),
        VaultStatus::UsageNotAllowed
    );
    // VMPL0-private pages (the module's own memory): VMPL1 can neither read them nor make
    // the vault read or write them on its behalf.
    let private = 900 * PAGE_SIZE;
    machine
        .module()
        .memory_mut()
        .set_perms(private, PagePerms::VMPL0_PRIVATE);
    let mut buf = [0u8; 16];
    let vmpl1 = Vmpl::new(1).unwrap();
    assert!(machine
        .module()
        .memory_mut()
        .read(vmpl1, Gpa::new(private), &mut buf)
        .is_err());
    let mut regs = svsm_abi::svsm::CallRegisters {
        rax: svsm_abi::svsm::CallId {
            protocol: svsm_abi::svsm::PROTOCOL_VAULT,
            call: 1,
        }
        .to_rax(),
        rcx: private,
        rdx: 12,
        r8: private,
        r9: 4096,
    };
    machine.module().handle_call(vmpl1, &mut regs);
    assert_eq!(
        regs.rax, 0x8000_0003,
        "INVALID_ADDRESS for a private request buffer"
    );
}

/// Imports known material so the scan below knows what must never appear.
fn import(
    v: &mut VaultClient<SimTransport>,
    _machine: &SimMachine,
    kind: KeyKind,
    usage: Usage,
    material: &[u8],
) -> u32 {
    let nonce: Vec<u8> = (0..32).map(|_| rand::random()).collect();
    let evidence = attest(v.transport_mut(), Scope::AllServices, &nonce, false).unwrap();
    let manifest = ServicesManifest::parse(&evidence.manifest).unwrap();
    let state =
        ModuleState::parse_vault_manifest(manifest.find(&VAULT_SERVICE_GUID).unwrap()).unwrap();
    let name = format!("key-{}", hex::encode(&nonce[..4]));
    let package = wrap_for_import(
        &ImportTarget {
            kind,
            usage,
            owner: Vmpl::new(state.requester_vmpl).unwrap(),
            instance_id: state.instance_id,
            recipient: state.transport_public,
            name: name.as_bytes(),
            nonce: &nonce,
        },
        &p384::SecretKey::random(&mut rand::thread_rng()),
        &rand::random(),
        material,
    )
    .unwrap();
    v.import_key(&package).unwrap()
}

#[test]
fn no_response_and_no_stored_blob_contains_key_material() {
    let _t = turn();
    let store = SimStore::new();
    let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
    let mut v = vault(&machine, 1);
    let aes_material = [0xA1u8; 32];
    let hmac_material = [0xB2u8; 48];
    let p384_material = p384::SecretKey::random(&mut rand::thread_rng())
        .to_bytes()
        .to_vec();
    let p256_material = p256::SecretKey::random(&mut rand::thread_rng())
        .to_bytes()
        .to_vec();
    let ecdh_material = p384::SecretKey::random(&mut rand::thread_rng())
        .to_bytes()
        .to_vec();
    let aes = import(
        &mut v,
        &machine,
        KeyKind::Aes256Gcm,
        Usage::ENCRYPT | Usage::DECRYPT,
        &aes_material,
    );
    let hmac = import(
        &mut v,
        &machine,
        KeyKind::HmacSha384,
        Usage::MAC | Usage::VERIFY,
        &hmac_material,
    );
    let ecdsa = import(
        &mut v,
        &machine,
        KeyKind::EcdsaP384,
        Usage::SIGN | Usage::VERIFY,
        &p384_material,
    );
    let ecdsa256 = import(
        &mut v,
        &machine,
        KeyKind::EcdsaP256,
        Usage::SIGN,
        &p256_material,
    );
    let ecdh = import(
        &mut v,
        &machine,
        KeyKind::EcdhP384,
        Usage::DERIVE,
        &ecdh_material,
    );

    let mut responses: Vec<Vec<u8>> = Vec::new();
    let peer = p384::SecretKey::random(&mut rand::thread_rng())
        .public_key()
        .to_encoded_point(false);
    responses.push(v.encrypt(aes, b"aad", b"plaintext").unwrap());
    responses.push(v.mac(hmac, b"data").unwrap());
    responses.push(v.sign(ecdsa, b"data").unwrap());
    responses.push(v.sign(ecdsa256, b"data").unwrap());
    responses.push(v.export_public(ecdsa).unwrap());
    responses.push(v.export_public(ecdh).unwrap());
    responses.push(
        v.derive(ecdh, KeyKind::HmacSha384, Usage::MAC, peer.as_bytes(), b"i")
            .unwrap()
            .to_le_bytes()
            .to_vec(),
    );
    responses.push(v.seal(None, b"", b"sealed data").unwrap());
    responses.push(v.transport_key().unwrap());
    for r in [v.export_public(aes), v.export_public(hmac)] {
        assert_eq!(
            refused(r),
            VaultStatus::WrongKeyKind,
            "symmetric keys have no public part"
        );
    }
    responses.push(format!("{:?}", v.list().unwrap()).into_bytes());
    // Everything the host ever sees: responses, the whole guest memory, the sealed slots.
    let mut guest_memory = vec![0u8; 1024 * PAGE_SIZE as usize];
    machine
        .module()
        .memory_mut()
        .read(Vmpl::ZERO, Gpa::new(0), &mut guest_memory)
        .unwrap();
    responses.push(guest_memory);
    responses.push(store.slot(0).unwrap_or_default());
    responses.push(store.slot(1).unwrap_or_default());
    for (name, secret) in [
        ("AES", &aes_material[..]),
        ("HMAC", &hmac_material[..]),
        ("P-384", &p384_material[..]),
        ("P-256", &p256_material[..]),
        ("ECDH", &ecdh_material[..]),
    ] {
        for (i, r) in responses.iter().enumerate() {
            // Any 16-byte run of the secret is a leak.
            for window in secret.windows(16) {
                assert!(
                    !r.windows(16).any(|w| w == window),
                    "{name} material in response {i}"
                );
            }
        }
    }
}

#[test]
fn state_survives_reboot_only_for_the_same_launch_and_rollback_is_detected() {
    let _t = turn();
    let store = SimStore::new();
    let (key, public, ek, old_slots, epoch_after) = {
        let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
        assert_eq!(machine.module().state_status(), StateStatus::Fresh);
        let mut v = vault(&machine, 1);
        let key = v.create_key(KeyKind::EcdsaP384, Usage::SIGN).unwrap();
        let old_slots = (store.slot(0), store.slot(1), machine.module().state_epoch());
        v.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT).unwrap();
        let ek = machine.module().transport_public().unwrap();
        let epoch = machine.module().state_epoch();
        (key.id, key.public, ek, old_slots, epoch)
    };
    // Same launch: everything is back.
    {
        let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), Some(epoch_after));
        assert_eq!(machine.module().state_status(), StateStatus::Restored);
        assert_eq!(machine.module().state_epoch(), epoch_after);
        assert_ne!(
            machine.module().transport_public().unwrap(),
            ek,
            "the transport key is new at every boot: it is never sealed"
        );
        let mut v = vault(&machine, 1);
        assert_eq!(v.export_public(key).unwrap(), public);
        assert_eq!(v.list().unwrap().len(), 2);
        use p256::ecdsa::signature::Verifier;
        let sig = v.sign(key, b"after reboot").unwrap();
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&public)
            .unwrap()
            .verify(
                b"after reboot",
                &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
            )
            .unwrap();
    }
    // Another measurement or another policy: the state does not unseal, and the module says why.
    let mut other_policy = LaunchConfig::genoa(MEASUREMENT);
    other_policy.policy |= 1 << 20;
    for config in [LaunchConfig::genoa([0x67; 48]), other_policy] {
        let machine = boot(&store, config, None);
        assert_eq!(
            machine.module().state_status(),
            StateStatus::Ephemeral(EphemeralReason::Sealed(SealError::ForeignLaunch))
        );
        assert_eq!(
            refused(vault(&machine, 1).export_public(key)),
            VaultStatus::KeyNotFound
        );
    }
    assert_eq!(
        boot(&store, LaunchConfig::genoa(MEASUREMENT), None)
            .module()
            .state_status(),
        StateStatus::Restored,
        "the foreign boots did not overwrite the state"
    );
    // The host replays the older slots: detected when the expected epoch is supplied.
    store.set_slot(0, old_slots.0.clone());
    store.set_slot(1, old_slots.1.clone());
    let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), Some(epoch_after));
    assert_eq!(
        machine.module().state_status(),
        StateStatus::Ephemeral(EphemeralReason::Sealed(SealError::Rollback {
            found: old_slots.2,
            expected: epoch_after
        }))
    );
}

#[test]
fn a_write_interrupted_at_any_byte_leaves_a_consistent_state() {
    let _t = turn();
    let store = SimStore::new();
    let blob_len = {
        let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
        let mut v = vault(&machine, 1);
        v.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT).unwrap();
        let slot = (machine.module().state_epoch() % 2) as u8;
        store.slot(slot).unwrap().len()
    };
    // Every 4th byte of the 64-byte header (magic, version, key check, instance, epoch, IV,
    // length), every 211th byte of the ciphertext, and the bytes around the tag.
    let mut offsets: Vec<usize> = (0..64).step_by(4).collect();
    offsets.extend((64..blob_len).step_by(211));
    offsets.extend([blob_len - 17, blob_len - 16, blob_len - 1]);
    for crash_at in offsets {
        let before = {
            let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
            assert_eq!(
                machine.module().state_status(),
                StateStatus::Restored,
                "crash at {crash_at}"
            );
            let mut v = vault(&machine, 1);
            let before = v.list().unwrap().len();
            store.crash_next_write_after(crash_at);
            // The key is created in memory; sealing it is what the power loss interrupts, and
            // the caller is told so (the response still carries the new key).
            match v.create_key(KeyKind::HmacSha384, Usage::MAC) {
                Err(VaultClientError::NotPersisted { response }) => assert_eq!(response.len(), 6),
                other => panic!("crash at {crash_at}: expected NotPersisted, got {other:?}"),
            }
            assert!(machine.module().persist_error().is_some());
            before
        };
        let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
        assert_eq!(
            machine.module().state_status(),
            StateStatus::Restored,
            "crash at {crash_at}"
        );
        let after = vault(&machine, 1).list().unwrap().len();
        assert_eq!(after, before, "crash at {crash_at}: the old state, whole");
    }
}

#[test]
fn provisioned_keys_import_only_when_wrapped_to_this_vault_and_nonce() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let mut v = vault(&machine, 1);
    // The host party appraises the attestation, takes instance, transport key and requester
    // from the manifest...
    let nonce = b"broker nonce 0001".to_vec();
    let evidence = attest(v.transport_mut(), Scope::AllServices, &nonce, false).unwrap();
    let manifest = ServicesManifest::parse(&evidence.manifest).unwrap();
    let state =
        ModuleState::parse_vault_manifest(manifest.find(&VAULT_SERVICE_GUID).unwrap()).unwrap();
    assert_eq!(state.requester_vmpl, 1);
    assert_eq!(&state.transport_public[..], &v.transport_key().unwrap()[..]);
    let instance = *state.instance_id;
    let transport = *state.transport_public;
    // ...and wraps a key for them, bound to the nonce it checked.
    let material = [0x42u8; 32];
    let wrap = |recipient: &[u8; 97], nonce: &[u8], usage: Usage, name: &[u8]| {
        wrap_for_import(
            &ImportTarget {
                kind: KeyKind::Aes256Gcm,
                usage,
                owner: Vmpl::new(1).unwrap(),
                instance_id: &instance,
                recipient,
                name,
                nonce,
            },
            &p384::SecretKey::random(&mut rand::thread_rng()),
            &rand::random(),
            &material,
        )
        .unwrap()
    };
    let both = Usage::ENCRYPT | Usage::DECRYPT;
    let package = wrap(&transport, &nonce, both, b"disk");
    let key = v.import_key(&package).unwrap();
    let sealed = v.encrypt(key, b"", b"provisioned").unwrap();
    let plain = aes_gcm::Aes256Gcm::new_from_slice(&material)
        .unwrap()
        .decrypt(
            sealed[..12].into(),
            Payload {
                msg: &sealed[12..],
                aad: b"",
            },
        )
        .unwrap();
    assert_eq!(plain, b"provisioned", "the imported key is the host's key");
    let listed = v.list().unwrap();
    assert!(listed.iter().any(|k| k.id == key && k.name == "disk"));
    // The same package again: names are unique per owner.
    assert_eq!(refused(v.import_key(&package)), VaultStatus::DuplicateName);

    // Wrapped to another key (another boot).
    let other = p384::SecretKey::random(&mut rand::thread_rng())
        .public_key()
        .to_encoded_point(false);
    let other: [u8; 97] = other.as_bytes().try_into().unwrap();
    assert_eq!(
        refused(v.import_key(&wrap(&other, &nonce, both, b"k1"))),
        VaultStatus::WrongBoot
    );
    // Bound to a nonce no attestation of this VMPL carried.
    assert_eq!(
        refused(v.import_key(&wrap(&transport, b"some other nonce", both, b"k2"))),
        VaultStatus::UnknownContext
    );
    // The binding altered in transit (usage widened from ENCRYPT to ENCRYPT|DECRYPT): the
    // fields still check, the AEAD does not.
    let mut altered = wrap(&transport, &nonce, Usage::ENCRYPT, b"k3");
    altered[4..6].copy_from_slice(&both.bits().to_le_bytes());
    assert_eq!(
        refused(v.import_key(&altered)),
        VaultStatus::AuthenticationFailed
    );
    // Ciphertext flipped.
    let mut flipped = wrap(&transport, &nonce, both, b"k4");
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        refused(v.import_key(&flipped)),
        VaultStatus::AuthenticationFailed
    );
}

#[test]
fn seal_unseal_to_the_launch_and_to_pcrs() {
    let _t = turn();
    let store = SimStore::new();
    let (plain_blob, pcr_blob) = {
        let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
        let mut v = vault(&machine, 1);
        let plain_blob = v.seal(None, b"ctx", b"launch secret").unwrap();
        assert_eq!(v.unseal(b"ctx", &plain_blob).unwrap(), b"launch secret");
        assert_eq!(
            refused(v.unseal(b"other ctx", &plain_blob)),
            VaultStatus::AuthenticationFailed
        );
        // Another VMPL cannot unseal what VMPL1 sealed.
        assert_eq!(
            refused(vault(&machine, 2).unseal(b"ctx", &plain_blob)),
            VaultStatus::ForeignBlob
        );
        let pcr_blob = v.seal(Some(1 << 16), b"", b"pcr secret").unwrap();
        assert_eq!(v.unseal(b"", &pcr_blob).unwrap(), b"pcr secret");
        (plain_blob, pcr_blob)
    };
    // After a reboot of the same launch: PCR 16 is reset, so both unseal again.
    {
        let machine = boot(&store, LaunchConfig::genoa(MEASUREMENT), None);
        let mut v = vault(&machine, 1);
        assert_eq!(v.unseal(b"ctx", &plain_blob).unwrap(), b"launch secret");
        assert_eq!(v.unseal(b"", &pcr_blob).unwrap(), b"pcr secret");
        // Extend PCR 16 through the vTPM: the PCR-bound blob no longer unseals.
        let mut tpm =
            guest_driver::vtpm::VtpmClient::probe(machine.transport(Vmpl::new(1).unwrap()))
                .unwrap();
        let cmd = svsm_core::tpm2::command::pcr_extend_sha256(16, &[1; 32]).unwrap();
        let mut rsp = [0u8; 4096];
        tpm.send_command(&cmd, &mut rsp).unwrap();
        assert_eq!(refused(v.unseal(b"", &pcr_blob)), VaultStatus::PcrMismatch);
        assert_eq!(v.unseal(b"ctx", &plain_blob).unwrap(), b"launch secret");
    }
    // Another launch cannot unseal.
    let machine = boot(&SimStore::new(), LaunchConfig::genoa([0x99; 48]), None);
    assert_eq!(
        refused(vault(&machine, 1).unseal(b"ctx", &plain_blob)),
        VaultStatus::AuthenticationFailed
    );
}

#[test]
fn a_secret_is_revealed_to_its_owner_and_no_other_key_is() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let mut v = vault(&machine, 1);
    // A disk key a provider released: handed back to the VMPL that owns it, byte for byte.
    let disk_key = [0x5au8; 32];
    let id = import(
        &mut v,
        &machine,
        KeyKind::Secret256,
        Usage::REVEAL,
        &disk_key,
    );
    // Nobody else sees it, and it does nothing but be revealed.
    assert_eq!(
        refused(vault(&machine, 2).reveal_secret(id)),
        VaultStatus::KeyNotFound
    );
    assert_eq!(refused(v.sign(id, b"m")), VaultStatus::UsageNotAllowed);
    assert_eq!(v.reveal_secret(id).unwrap().as_slice(), &disk_key);
    // Once: it left the vault with the answer, so a second use needs a new release.
    assert_eq!(refused(v.reveal_secret(id)), VaultStatus::KeyNotFound);
    assert_eq!(
        refused(v.create_key(KeyKind::Secret256, Usage::SIGN)),
        VaultStatus::UsageNotAllowed
    );
    // No other kind can be granted REVEAL, so no vault key ever leaves.
    assert_eq!(
        refused(v.create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::REVEAL)),
        VaultStatus::UsageNotAllowed
    );
    let aes = v
        .create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::DECRYPT)
        .unwrap();
    assert_eq!(
        refused(v.reveal_secret(aes.id)),
        VaultStatus::UsageNotAllowed
    );
    // A secret made inside the vault is random.
    let made = v.create_key(KeyKind::Secret256, Usage::REVEAL).unwrap();
    assert_ne!(v.reveal_secret(made.id).unwrap().as_slice(), &disk_key);
}

#[test]
fn a_released_secret_is_not_in_the_sealed_state() {
    let _t = turn();
    let store = SimStore::new();
    let config = LaunchConfig::genoa(MEASUREMENT);
    let machine = boot(&store, config.clone(), None);
    let mut v = vault(&machine, 1);
    let kept = v
        .create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::DECRYPT)
        .unwrap();
    let secret = import(
        &mut v,
        &machine,
        KeyKind::Secret256,
        Usage::REVEAL,
        &[0x77; 32],
    );
    drop(v);
    drop(machine);
    // The same launch restores its keys, but not the secret: revealing it again after a
    // reboot needs the broker again.
    let machine = boot(&store, config, None);
    let mut v = vault(&machine, 1);
    let ids: Vec<u32> = v.list().unwrap().iter().map(|k| k.id).collect();
    assert!(ids.contains(&kept.id), "{ids:?}");
    assert!(!ids.contains(&secret), "{ids:?}");
    assert_eq!(refused(v.reveal_secret(secret)), VaultStatus::KeyNotFound);
}

/// The requests PKCS#11 needs: a digest signed as given, named keys, random bytes, HMAC-SHA-256,
/// raw ECDH (CKD_NULL) on both curves, and AES-GCM under the caller's IV; each checked against
/// a computation outside the vault.
#[test]
fn pkcs11_requests_agree_with_computations_outside_the_vault() {
    use aes_gcm::aead::AeadInPlace;
    use hmac::Mac;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let mut v = vault(&machine, 1);

    // A digest is signed as given: SHA-256 on P-256, SHA-256 and SHA-384 on P-384.
    let p256k = v
        .create_named_key(KeyKind::EcdsaP256, Usage::SIGN, b"web-tls")
        .unwrap();
    let digest = sha2::Sha256::digest(b"to be signed");
    let sig = v.sign_digest(p256k.id, &digest).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p256k.public).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    let p384k = v.create_key(KeyKind::EcdsaP384, Usage::SIGN).unwrap();
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&p384k.public).unwrap();
    for digest in [
        sha2::Sha256::digest(b"x").to_vec(),
        sha2::Sha384::digest(b"x").to_vec(),
    ] {
        let sig = v.sign_digest(p384k.id, &digest).unwrap();
        assert_eq!(sig.len(), 96);
        vk.verify_prehash(&digest, &p384::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap();
    }
    // A digest shorter than 16 bytes is a malformed request, not a vault refusal.
    assert!(matches!(
        v.sign_digest(p256k.id, &[0; 8]),
        Err(VaultClientError::Driver(_))
    ));

    // Names: listed, unique per VMPL, free at another VMPL.
    let listed = v.list().unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|k| k.id == p256k.id)
            .map(|k| k.name.as_str()),
        Some("web-tls")
    );
    assert_eq!(
        refused(v.create_named_key(KeyKind::EcdsaP384, Usage::SIGN, b"web-tls")),
        VaultStatus::DuplicateName
    );
    vault(&machine, 2)
        .create_named_key(KeyKind::EcdsaP384, Usage::SIGN, b"web-tls")
        .unwrap();

    // Random bytes, more than one request's worth.
    let (mut a, mut b) = (vec![0u8; 3000], vec![0u8; 3000]);
    v.random(&mut a).unwrap();
    v.random(&mut b).unwrap();
    assert_ne!(a, b);
    assert!(a.iter().any(|&x| x != 0));

    // Raw ECDH on both curves: the new key is Z's leading bytes; proven by using it.
    let ecdh256 = v.create_key(KeyKind::EcdhP256, Usage::DERIVE).unwrap();
    let peer = p256::SecretKey::random(&mut rand::thread_rng());
    let z = p256::ecdh::diffie_hellman(
        peer.to_nonzero_scalar(),
        p256::PublicKey::from_sec1_bytes(&ecdh256.public)
            .unwrap()
            .as_affine(),
    );
    let hmac256 = v
        .derive_raw(
            ecdh256.id,
            KeyKind::HmacSha256,
            Usage::MAC | Usage::VERIFY,
            peer.public_key().to_encoded_point(false).as_bytes(),
            b"hmac-from-z",
        )
        .unwrap();
    let tag = v.mac(hmac256, b"data").unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(z.raw_secret_bytes()).unwrap();
    mac.update(b"data");
    assert_eq!(tag, mac.finalize().into_bytes().to_vec());
    assert!(v.verify(hmac256, &tag, b"data").unwrap());

    let ecdh384 = v.create_key(KeyKind::EcdhP384, Usage::DERIVE).unwrap();
    let peer = p384::SecretKey::random(&mut rand::thread_rng());
    let z = p384::ecdh::diffie_hellman(
        peer.to_nonzero_scalar(),
        p384::PublicKey::from_sec1_bytes(&ecdh384.public)
            .unwrap()
            .as_affine(),
    );
    let aes = v
        .derive_raw(
            ecdh384.id,
            KeyKind::Aes256Gcm,
            Usage::ENCRYPT | Usage::DECRYPT,
            peer.public_key().to_encoded_point(false).as_bytes(),
            b"",
        )
        .unwrap();
    // AES-GCM under the caller's IV matches the same computation outside.
    let iv = [0x42u8; 12];
    let sealed = v.encrypt_with_iv(aes, &iv, b"aad", b"plaintext").unwrap();
    let mut expect = b"plaintext".to_vec();
    let outside = aes_gcm::Aes256Gcm::new_from_slice(&z.raw_secret_bytes()[..32]).unwrap();
    let tag = outside
        .encrypt_in_place_detached(&iv.into(), b"aad", &mut expect)
        .unwrap();
    expect.extend_from_slice(&tag);
    assert_eq!(sealed, expect);
    let mut with_iv = iv.to_vec();
    with_iv.extend_from_slice(&sealed);
    assert_eq!(v.decrypt(aes, b"aad", &with_iv).unwrap(), b"plaintext");

    // Refusals: a key longer than Z, a kind that cannot be derived, a signing key used for ECDH,
    // a bad peer point, and every new request on a key of another VMPL.
    let peer_point = peer.public_key().to_encoded_point(false);
    assert_eq!(
        refused(
            v.derive_raw(
                ecdh256.id,
                KeyKind::HmacSha384,
                Usage::MAC,
                p256::SecretKey::random(&mut rand::thread_rng())
                    .public_key()
                    .to_encoded_point(false)
                    .as_bytes(),
                b""
            )
        ),
        VaultStatus::WrongKeyKind
    );
    assert_eq!(
        refused(v.derive_raw(
            ecdh384.id,
            KeyKind::EcdsaP256,
            Usage::SIGN,
            peer_point.as_bytes(),
            b""
        )),
        VaultStatus::WrongKeyKind
    );
    assert_eq!(
        refused(v.derive_raw(
            p384k.id,
            KeyKind::Aes256Gcm,
            Usage::ENCRYPT,
            peer_point.as_bytes(),
            b""
        )),
        VaultStatus::UsageNotAllowed
    );
    assert_eq!(
        refused(v.derive_raw(
            ecdh384.id,
            KeyKind::Aes256Gcm,
            Usage::ENCRYPT,
            &[4; 97],
            b""
        )),
        VaultStatus::BadPublicKey
    );
    let mut other = vault(&machine, 2);
    assert_eq!(
        refused(other.sign_digest(p256k.id, &digest)),
        VaultStatus::KeyNotFound
    );
    assert_eq!(
        refused(other.encrypt_with_iv(aes, &iv, b"", b"x")),
        VaultStatus::KeyNotFound
    );
    assert_eq!(
        refused(v.encrypt_with_iv(hmac256, &iv, b"", b"x")),
        VaultStatus::UsageNotAllowed
    );
}
