//! The token over the vault of a simulated SNP machine, in process: every mechanism checked
//! against a computation outside the vault, the template rules, sessions and their objects,
//! searches, and the attributes that must never yield a secret.

use cryptoki_sys as ck;
use guest_driver::vault::VaultClient;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::Digest;
use svsm_core::platform::Vmpl;
use svsm_vault_pkcs11::mechanism::Mechanism;
use svsm_vault_pkcs11::objects::ec_point_raw;
use svsm_vault_pkcs11::{Attr, Error, Template, Token};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::{SimMachine, SimTransport};

/// One engine per process: every test takes its turn.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn token(machine: &SimMachine, vmpl: u8) -> Token<SimTransport> {
    let vault = VaultClient::probe(machine.transport(Vmpl::new(vmpl).unwrap())).unwrap();
    Token::new(vault, "simulated".into())
}

fn t(attrs: &[(ck::CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> Template {
    Template(
        attrs
            .iter()
            .map(|(kind, value)| Attr {
                kind: *kind,
                value: value.clone(),
            })
            .collect(),
    )
}

fn yes() -> Vec<u8> {
    vec![ck::CK_TRUE]
}
fn no() -> Vec<u8> {
    vec![ck::CK_FALSE]
}
fn ul(v: u64) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn ec_pair(
    tok: &mut Token<SimTransport>,
    s: ck::CK_SESSION_HANDLE,
    curve: &[u8],
    label: &str,
    derive: bool,
) -> Result<(ck::CK_OBJECT_HANDLE, ck::CK_OBJECT_HANDLE), Error> {
    let usage = if derive { ck::CKA_DERIVE } else { ck::CKA_SIGN };
    tok.generate_key_pair(
        s,
        &Mechanism::EcKeyPairGen,
        &t(&[
            (ck::CKA_EC_PARAMS, curve.to_vec()),
            (ck::CKA_TOKEN, yes()),
            (ck::CKA_PRIVATE, no()),
        ]),
        &t(&[
            (ck::CKA_TOKEN, yes()),
            (ck::CKA_PRIVATE, yes()),
            (ck::CKA_SENSITIVE, yes()),
            (usage, yes()),
            (ck::CKA_LABEL, label.as_bytes().to_vec()),
        ]),
    )
}

#[test]
fn ecdsa_signatures_verify_outside_with_the_public_key() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x61; 48])).unwrap();
    let mut tok = token(&machine, 1);
    let s = tok
        .open_session(ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION)
        .unwrap();

    let (public, private) = ec_pair(&mut tok, s, P256, "sig-p256", false).unwrap();
    let point = tok.attribute(s, public, ck::CKA_EC_POINT).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(ec_point_raw(&point)).unwrap();
    // CKM_ECDSA over a SHA-256 digest, as the OpenSSL engine and OpenSSH send it.
    let digest = sha2::Sha256::digest(b"message");
    tok.sign_init(s, &Mechanism::Ecdsa, private).unwrap();
    assert_eq!(tok.sign_len(s).unwrap(), 64);
    let sig = tok.sign(s, &digest).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    // CKM_ECDSA_SHA256 in two parts: the same statement.
    tok.sign_init(s, &Mechanism::EcdsaSha256, private).unwrap();
    tok.sign_update(s, b"mess").unwrap();
    tok.sign_update(s, b"age").unwrap();
    let sig = tok.sign_final(s).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    // The token verifies with the public object; a changed message does not.
    tok.verify_init(s, &Mechanism::EcdsaSha256, public).unwrap();
    tok.verify(s, b"message", &sig).unwrap();
    tok.verify_init(s, &Mechanism::EcdsaSha256, public).unwrap();
    assert_eq!(
        tok.verify(s, b"massage", &sig),
        Err(Error::SignatureInvalid)
    );
    tok.verify_init(s, &Mechanism::EcdsaSha256, public).unwrap();
    assert_eq!(
        tok.verify(s, b"message", &sig[..63]),
        Err(Error::SignatureLenRange)
    );

    // P-384 with SHA-384, and a short raw digest (left-padded, the same integer).
    let (public, private) = ec_pair(&mut tok, s, P384, "sig-p384", false).unwrap();
    let point = tok.attribute(s, public, ck::CKA_EC_POINT).unwrap();
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(ec_point_raw(&point)).unwrap();
    tok.sign_init(s, &Mechanism::EcdsaSha384, private).unwrap();
    let sig = tok.sign(s, b"message").unwrap();
    assert_eq!(sig.len(), 96);
    vk.verify_prehash(
        &sha2::Sha384::digest(b"message"),
        &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    tok.sign_init(s, &Mechanism::Ecdsa, private).unwrap();
    let sig = tok.sign(s, &digest).unwrap();
    vk.verify_prehash(&digest, &p384::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();

    // Wrong key for the mechanism, an operation twice, no operation.
    assert_eq!(
        tok.sign_init(s, &Mechanism::Ecdsa, public),
        Err(Error::KeyTypeInconsistent)
    );
    tok.sign_init(s, &Mechanism::Ecdsa, private).unwrap();
    assert_eq!(
        tok.sign_init(s, &Mechanism::Ecdsa, private),
        Err(Error::OperationActive)
    );
    tok.sign(s, &digest).unwrap();
    assert_eq!(tok.sign_final(s), Err(Error::OperationNotInitialized));
    assert_eq!(
        tok.sign_init(s, &Mechanism::Sha256Hmac, private),
        Err(Error::KeyTypeInconsistent)
    );
}

#[test]
fn aes_gcm_hmac_and_ecdh_agree_with_computations_outside() {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use hmac::Mac;
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x62; 48])).unwrap();
    let mut tok = token(&machine, 1);
    let s = tok
        .open_session(ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION)
        .unwrap();

    // ECDH P-256 (CKD_NULL) into an AES-256 key; the peer computes Z itself.
    let (public, private) = ec_pair(&mut tok, s, P256, "agree", true).unwrap();
    let vault_point = tok.attribute(s, public, ck::CKA_EC_POINT).unwrap();
    let peer = p256::SecretKey::random(&mut rand::thread_rng());
    let z = p256::ecdh::diffie_hellman(
        peer.to_nonzero_scalar(),
        p256::PublicKey::from_sec1_bytes(ec_point_raw(&vault_point))
            .unwrap()
            .as_affine(),
    );
    let peer_point = peer
        .public_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let aes = tok
        .derive_key(
            s,
            &Mechanism::Ecdh1Derive {
                public: peer_point.clone(),
            },
            private,
            &t(&[
                (ck::CKA_CLASS, ul(ck::CKO_SECRET_KEY)),
                (ck::CKA_KEY_TYPE, ul(ck::CKK_AES)),
                (ck::CKA_VALUE_LEN, ul(32)),
                (ck::CKA_LABEL, b"from-ecdh".to_vec()),
            ]),
        )
        .unwrap();
    let gcm = Mechanism::AesGcm {
        iv: [9; 12],
        aad: b"header".to_vec(),
    };
    tok.encrypt_init(s, &gcm, aes).unwrap();
    assert_eq!(tok.encrypt_len(s, 4096).unwrap(), 4096 + 16);
    let plaintext = vec![0x5a; 4096];
    let sealed = tok.encrypt(s, &plaintext).unwrap();
    let mut expect = plaintext.clone();
    let tag = aes_gcm::Aes256Gcm::new_from_slice(z.raw_secret_bytes())
        .unwrap()
        .encrypt_in_place_detached(&[9; 12].into(), b"header", &mut expect)
        .unwrap();
    expect.extend_from_slice(&tag);
    assert_eq!(sealed, expect);
    // Decrypt in parts; a flipped bit is refused and yields nothing.
    tok.decrypt_init(s, &gcm, aes).unwrap();
    tok.decrypt_update(s, &sealed[..1000]).unwrap();
    tok.decrypt_update(s, &sealed[1000..]).unwrap();
    assert_eq!(*tok.decrypt_final(s).unwrap(), plaintext);
    let mut bad = sealed.clone();
    bad[7] ^= 1;
    tok.decrypt_init(s, &gcm, aes).unwrap();
    assert_eq!(
        tok.decrypt(s, &bad).map(|_| ()),
        Err(Error::EncryptedDataInvalid)
    );
    tok.decrypt_init(s, &gcm, aes).unwrap();
    assert_eq!(tok.decrypt_len(s, 15), Err(Error::EncryptedDataLenRange));
    // Asking for the length leaves the operation active; the failed call ends it.
    assert_eq!(
        tok.decrypt(s, &[0; 15]).map(|_| ()),
        Err(Error::EncryptedDataLenRange)
    );

    // HMAC-SHA256 keys made in the vault sign and verify; derived ones match the peer's Z.
    let hmac = tok
        .derive_key(
            s,
            &Mechanism::Ecdh1Derive { public: peer_point },
            private,
            &t(&[
                (ck::CKA_CLASS, ul(ck::CKO_SECRET_KEY)),
                (ck::CKA_KEY_TYPE, ul(ck::CKK_GENERIC_SECRET)),
                (ck::CKA_VALUE_LEN, ul(32)),
            ]),
        )
        .unwrap();
    tok.sign_init(s, &Mechanism::Sha256Hmac, hmac).unwrap();
    let tag = tok.sign(s, b"data").unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(z.raw_secret_bytes()).unwrap();
    mac.update(b"data");
    assert_eq!(tag, mac.finalize().into_bytes().to_vec());
    tok.verify_init(s, &Mechanism::Sha256Hmac, hmac).unwrap();
    tok.verify(s, b"data", &tag).unwrap();
    tok.verify_init(s, &Mechanism::Sha256Hmac, hmac).unwrap();
    assert_eq!(tok.verify(s, b"date", &tag), Err(Error::SignatureInvalid));
    let made = tok
        .generate_key(
            s,
            &Mechanism::GenericSecretKeyGen,
            &t(&[(ck::CKA_VALUE_LEN, ul(48)), (ck::CKA_TOKEN, yes())]),
        )
        .unwrap();
    tok.sign_init(s, &Mechanism::Sha384Hmac, made).unwrap();
    assert_eq!(tok.sign(s, b"data").unwrap().len(), 48);
    assert_eq!(
        tok.sign_init(s, &Mechanism::Sha256Hmac, made),
        Err(Error::KeyTypeInconsistent)
    );

    // AES keys made in the vault: a round trip, and the key is sensitive.
    let key = tok
        .generate_key(
            s,
            &Mechanism::AesKeyGen,
            &t(&[(ck::CKA_VALUE_LEN, ul(32)), (ck::CKA_ENCRYPT, yes())]),
        )
        .unwrap();
    tok.encrypt_init(s, &gcm, key).unwrap();
    tok.encrypt_update(s, b"part one, ").unwrap();
    tok.encrypt_update(s, b"part two").unwrap();
    let sealed = tok.encrypt_final(s).unwrap();
    tok.decrypt_init(s, &gcm, key).unwrap();
    assert_eq!(*tok.decrypt(s, &sealed).unwrap(), b"part one, part two");
    assert_eq!(
        tok.attribute(s, key, ck::CKA_VALUE),
        Err(Error::AttributeSensitive)
    );
    assert_eq!(
        tok.attribute(s, key, ck::CKA_EXTRACTABLE).unwrap(),
        no(),
        "never extractable"
    );

    // Random bytes from the vault.
    let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
    tok.random(s, &mut a).unwrap();
    tok.random(s, &mut b).unwrap();
    assert_ne!(a, b);
}

#[test]
fn templates_get_what_they_ask_or_an_error() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x63; 48])).unwrap();
    let mut tok = token(&machine, 1);
    let rw = tok
        .open_session(ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION)
        .unwrap();
    let ro = tok.open_session(ck::CKF_SERIAL_SESSION).unwrap();
    let pair = |tok: &mut Token<SimTransport>, s, public: Template, private: Template| {
        tok.generate_key_pair(s, &Mechanism::EcKeyPairGen, &public, &private)
    };
    let params = || (ck::CKA_EC_PARAMS, P256.to_vec());
    // Sign and derive at once: the vault keeps those apart.
    assert_eq!(
        pair(
            &mut tok,
            rw,
            t(&[params()]),
            t(&[(ck::CKA_SIGN, yes()), (ck::CKA_DERIVE, yes())])
        ),
        Err(Error::TemplateInconsistent)
    );
    // Extractable, not sensitive, a wrapping key, a chosen CKA_ID, an unknown curve, none.
    for private in [
        t(&[(ck::CKA_EXTRACTABLE, yes())]),
        t(&[(ck::CKA_SENSITIVE, no())]),
        t(&[(ck::CKA_UNWRAP, yes())]),
    ] {
        assert_eq!(
            pair(&mut tok, rw, t(&[params()]), private),
            Err(Error::TemplateInconsistent)
        );
    }
    assert_eq!(
        pair(&mut tok, rw, t(&[params()]), t(&[(ck::CKA_ID, vec![1])])),
        Err(Error::AttributeReadOnly)
    );
    assert_eq!(
        pair(
            &mut tok,
            rw,
            t(&[(ck::CKA_EC_PARAMS, vec![6, 3, 1, 2, 3])]),
            t(&[])
        ),
        Err(Error::CurveNotSupported)
    );
    assert_eq!(
        pair(&mut tok, rw, t(&[]), t(&[])),
        Err(Error::TemplateIncomplete)
    );
    // The two templates naming different curves.
    assert_eq!(
        pair(
            &mut tok,
            rw,
            t(&[params()]),
            t(&[(ck::CKA_EC_PARAMS, P384.to_vec())])
        ),
        Err(Error::TemplateInconsistent)
    );
    assert_eq!(
        pair(
            &mut tok,
            rw,
            t(&[params()]),
            t(&[(ck::CKA_LABEL, b"has space".to_vec())])
        ),
        Err(Error::AttributeValueInvalid)
    );
    // A token object needs a read-write session; a session object does not.
    assert_eq!(
        pair(&mut tok, ro, t(&[params(), (ck::CKA_TOKEN, yes())]), t(&[])),
        Err(Error::SessionReadOnly)
    );
    assert!(pair(&mut tok, ro, t(&[params()]), t(&[])).is_ok());
    // Secret keys: AES is 32 bytes only; HMAC 32 or 48; nothing both encrypts nothing.
    assert_eq!(
        tok.generate_key(
            rw,
            &Mechanism::AesKeyGen,
            &t(&[(ck::CKA_VALUE_LEN, ul(16))])
        ),
        Err(Error::AttributeValueInvalid)
    );
    assert_eq!(
        tok.generate_key(
            rw,
            &Mechanism::GenericSecretKeyGen,
            &t(&[(ck::CKA_VALUE_LEN, ul(20))])
        ),
        Err(Error::AttributeValueInvalid)
    );
    assert_eq!(
        tok.generate_key(
            rw,
            &Mechanism::AesKeyGen,
            &t(&[(ck::CKA_ENCRYPT, no()), (ck::CKA_DECRYPT, no())])
        ),
        Err(Error::TemplateInconsistent)
    );
    assert_eq!(
        tok.generate_key(rw, &Mechanism::Ecdsa, &t(&[])),
        Err(Error::MechanismInvalid)
    );
    // A duplicate label is refused by the vault.
    ec_pair(&mut tok, rw, P256, "taken", false).unwrap();
    assert_eq!(
        ec_pair(&mut tok, rw, P384, "taken", false),
        Err(Error::AttributeValueInvalid)
    );
}

#[test]
fn sessions_searches_and_the_objects_a_session_owns() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x64; 48])).unwrap();
    let mut tok = token(&machine, 1);
    let rw = tok
        .open_session(ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION)
        .unwrap();
    assert_eq!(tok.open_session(0), Err(Error::SessionParallelNotSupported));
    let (_, kept) = ec_pair(&mut tok, rw, P256, "kept", false).unwrap();
    let s2 = tok.open_session(ck::CKF_SERIAL_SESSION).unwrap();
    // A session object (CKA_TOKEN false) lives as long as its session.
    let (_, temp) = tok
        .generate_key_pair(
            s2,
            &Mechanism::EcKeyPairGen,
            &t(&[(ck::CKA_EC_PARAMS, P384.to_vec())]),
            &t(&[(ck::CKA_LABEL, b"temp".to_vec())]),
        )
        .unwrap();
    assert_eq!(tok.attribute(s2, temp, ck::CKA_TOKEN).unwrap(), no());
    assert_eq!(tok.attribute(rw, kept, ck::CKA_TOKEN).unwrap(), yes());

    let find = |tok: &mut Token<SimTransport>, s, template: Template| {
        tok.find_init(s, &template).unwrap();
        let mut all = Vec::new();
        loop {
            let got = tok.find(s, 1).unwrap();
            if got.is_empty() {
                break;
            }
            all.extend(got);
        }
        tok.find_final(s).unwrap();
        all
    };
    assert_eq!(
        find(
            &mut tok,
            rw,
            t(&[
                (ck::CKA_CLASS, ul(ck::CKO_PRIVATE_KEY)),
                (ck::CKA_LABEL, b"kept".to_vec())
            ])
        ),
        vec![kept]
    );
    assert_eq!(
        find(&mut tok, rw, t(&[])).len(),
        4,
        "two pairs, two objects each"
    );
    assert_eq!(
        find(&mut tok, rw, t(&[(ck::CKA_KEY_TYPE, ul(ck::CKK_AES))])).len(),
        0
    );
    assert_eq!(tok.find(rw, 1), Err(Error::OperationNotInitialized));

    // Another VMPL's token sees none of them.
    let mut other = token(&machine, 2);
    let o = other.open_session(ck::CKF_SERIAL_SESSION).unwrap();
    other.find_init(o, &t(&[])).unwrap();
    assert!(other.find(o, 10).unwrap().is_empty());
    assert_eq!(
        other.attribute(o, kept, ck::CKA_LABEL),
        Err(Error::ObjectHandleInvalid)
    );

    // Closing the session destroys its object in the vault; the token object stays.
    tok.close_session(s2).unwrap();
    assert_eq!(
        tok.attribute(rw, temp, ck::CKA_LABEL),
        Err(Error::ObjectHandleInvalid)
    );
    assert_eq!(find(&mut tok, rw, t(&[])).len(), 2);
    // A read-only session may not destroy a token object; a public half is not destroyed
    // alone; a read-write session destroys the key.
    let ro = tok.open_session(ck::CKF_SERIAL_SESSION).unwrap();
    assert_eq!(tok.destroy(ro, kept), Err(Error::SessionReadOnly));
    assert_eq!(tok.destroy(rw, kept + 1), Err(Error::ActionProhibited));
    tok.destroy(rw, kept).unwrap();
    assert_eq!(find(&mut tok, rw, t(&[])).len(), 0);
    assert_eq!(tok.close_session(999), Err(Error::SessionHandleInvalid));
}

/// Imports known P-256 material (wrapped to this boot as a key broker does), so the scan
/// knows what must never appear.
fn import_p256(machine: &SimMachine, material: &[u8], name: &str) {
    use guest_driver::attest::{attest, Scope};
    use svsm_abi::attest::{ModuleState, ServicesManifest, VAULT_SERVICE_GUID};
    use svsm_abi::vault::{KeyKind, Usage};
    use svsm_core::vault::{wrap_for_import, ImportTarget};
    let mut v = VaultClient::probe(machine.transport(Vmpl::new(1).unwrap())).unwrap();
    let nonce: Vec<u8> = (0..32).map(|_| rand::random()).collect();
    let evidence = attest(v.transport_mut(), Scope::AllServices, &nonce, false).unwrap();
    let manifest = ServicesManifest::parse(&evidence.manifest).unwrap();
    let state =
        ModuleState::parse_vault_manifest(manifest.find(&VAULT_SERVICE_GUID).unwrap()).unwrap();
    let package = wrap_for_import(
        &ImportTarget {
            kind: KeyKind::EcdsaP256,
            usage: Usage::SIGN | Usage::VERIFY,
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
    v.import_key(&package).unwrap();
}

#[test]
fn no_attribute_response_or_guest_memory_carries_a_private_key() {
    use svsm_core::platform::{Gpa, GuestMemory, PAGE_SIZE};
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x65; 48])).unwrap();
    let material = p256::SecretKey::random(&mut rand::thread_rng())
        .to_bytes()
        .to_vec();
    import_p256(&machine, &material, "provisioned");
    let mut tok = token(&machine, 1);
    let s = tok
        .open_session(ck::CKF_SERIAL_SESSION | ck::CKF_RW_SESSION)
        .unwrap();
    tok.find_init(s, &t(&[(ck::CKA_LABEL, b"provisioned".to_vec())]))
        .unwrap();
    let found = tok.find(s, 10).unwrap();
    tok.find_final(s).unwrap();
    assert_eq!(found.len(), 2, "the private and the public object");
    // Every attribute of both objects, read as an application would.
    let mut seen = Vec::new();
    for handle in found.iter().copied() {
        for kind in (0..0x200u64).chain([ck::CKA_VENDOR_DEFINED]) {
            match tok.attribute(s, handle, kind) {
                Ok(v) => seen.extend(v),
                Err(Error::AttributeSensitive) => {
                    assert_eq!(kind, ck::CKA_VALUE, "attribute {kind:#x} is sensitive")
                }
                Err(e) => assert_eq!(e, Error::AttributeTypeInvalid, "attribute {kind:#x}"),
            }
        }
    }
    let private = found
        .iter()
        .copied()
        .find(|h| tok.attribute(s, *h, ck::CKA_SIGN).unwrap() == yes())
        .unwrap();
    tok.sign_init(s, &Mechanism::Ecdsa, private).unwrap();
    seen.extend(tok.sign(s, &[7; 32]).unwrap());
    // And the guest's whole memory, where the vault's requests and responses travelled.
    let mut guest_memory = vec![0u8; 1024 * PAGE_SIZE as usize];
    machine
        .module()
        .memory_mut()
        .read(Vmpl::ZERO, Gpa::new(0), &mut guest_memory)
        .unwrap();
    for (what, bytes) in [
        ("attributes and signature", &seen),
        ("guest memory", &guest_memory),
    ] {
        for window in material.windows(16) {
            assert!(
                !bytes.windows(16).any(|w| w == window),
                "private key material in the {what}"
            );
        }
    }
}

#[test]
fn the_tpm_path_carries_a_4_kib_aes_gcm_message_in_parts() {
    use guest_driver::tpm_vault::TpmVaultTransport;
    use guest_driver::vtpm::VtpmClient;
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x66; 48])).unwrap();
    let vtpm = VtpmClient::probe(machine.transport(Vmpl::new(1).unwrap())).unwrap();
    let vault = VaultClient::probe(TpmVaultTransport::new(vtpm)).unwrap();
    let mut tok = Token::new(vault, "through the vTPM".into());
    let s = tok.open_session(ck::CKF_SERIAL_SESSION).unwrap();
    let key = tok
        .generate_key(s, &Mechanism::AesKeyGen, &t(&[(ck::CKA_VALUE_LEN, ul(32))]))
        .unwrap();
    let gcm = Mechanism::AesGcm {
        iv: [3; 12],
        aad: b"".to_vec(),
    };
    let plaintext: Vec<u8> = (0..4096).map(|i| i as u8).collect();
    tok.encrypt_init(s, &gcm, key).unwrap();
    let sealed = tok.encrypt(s, &plaintext).unwrap();
    assert_eq!(sealed.len(), 4096 + 16);
    // The same key through the call channel decrypts it: one vault, two ways in.
    let mut direct = token(&machine, 1);
    let d = direct.open_session(ck::CKF_SERIAL_SESSION).unwrap();
    direct.decrypt_init(d, &gcm, key).unwrap();
    assert_eq!(*direct.decrypt(d, &sealed).unwrap(), plaintext);
}
