//! Integration tests of the vTPM engine: manufacture, commands, keys, power, locality, and
//! malformed input. libtpms is one engine per process and `Vtpm` is exclusive, so every test
//! takes the binary-wide lock first.

mod common;

use common::*;
use vtpm::{
    AkCurve, TpmEngine, TpmEngineError, Vtpm, VtpmConfig, VtpmError, AK_HANDLE, EK_ECC_P384_HANDLE,
    EK_RSA_HANDLE, MAX_TPM_BUFFER,
};

fn manufacture() -> Vtpm {
    Vtpm::manufacture(VtpmConfig::default()).expect("manufacture")
}

#[test]
fn manufacture_random_and_pcr() {
    let _g = serial();
    let mut tpm = manufacture();
    assert!(tpm.is_powered_on());

    let a = get_random(&mut tpm, 32);
    let b = get_random(&mut tpm, 32);
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);

    assert_eq!(pcr_read_sha256(&mut tpm, 10), [0u8; 32]);
    send_ok(&mut tpm, &pcr_extend_cmd(10, &[0xab; 32]));
    // SHA-256(32 zero bytes || 32 bytes 0xAB)
    assert_eq!(
        hex::encode(pcr_read_sha256(&mut tpm, 10)),
        "debb3e7acfff6dd18d501042273629f0b79cb206bb8c24f59f62ddb80849403b"
    );
}

#[test]
fn endorsement_and_attestation_keys() {
    let _g = serial();
    let mut tpm = manufacture();

    let rsa = tpm.ek_rsa_public().unwrap();
    assert_eq!(rsa.len(), 314);
    // type RSA, nameAlg SHA-256, attributes 0x000300B2, PolicyA
    assert_eq!(&rsa[..8], &[0x00, 0x01, 0x00, 0x0B, 0x00, 0x03, 0x00, 0xB2]);
    assert_eq!(&rsa[8..10], &[0x00, 0x20]);
    assert_eq!(&rsa[10..42], &vtpm::POLICY_A_SHA256);
    // AES-128-CFB, scheme NULL, 2048 bits, exponent 0, then a 256-byte modulus
    assert_eq!(
        &rsa[42..56],
        &[0x00, 0x06, 0x00, 0x80, 0x00, 0x43, 0x00, 0x10, 0x08, 0x00, 0, 0, 0, 0]
    );
    assert_eq!(&rsa[56..58], &[0x01, 0x00]);
    assert_ne!(&rsa[58..], &[0u8; 256][..]);

    let ecc = tpm.ek_ecc_public().unwrap();
    assert_eq!(ecc.len(), 170);
    // type ECC, nameAlg SHA-384, attributes 0x000300F2, PolicyB
    assert_eq!(&ecc[..8], &[0x00, 0x23, 0x00, 0x0C, 0x00, 0x03, 0x00, 0xF2]);
    assert_eq!(&ecc[10..58], &vtpm::POLICY_B_SHA384);
    // AES-256-CFB, scheme NULL, curve P-384, kdf NULL, X and Y of 48 bytes
    assert_eq!(
        &ecc[58..70],
        &[0x00, 0x06, 0x01, 0x00, 0x00, 0x43, 0x00, 0x10, 0x00, 0x04, 0x00, 0x10]
    );
    assert_eq!(&ecc[70..72], &[0x00, 0x30]);
    assert_eq!(&ecc[120..122], &[0x00, 0x30]);

    let ak = tpm.ak_public().unwrap();
    assert_eq!(ak.len(), 88);
    // type ECC, nameAlg SHA-256, attributes 0x00050472, no policy, ECDSA-SHA256 on P-256
    assert_eq!(
        &ak[..22],
        &[
            0x00, 0x23, 0x00, 0x0B, 0x00, 0x05, 0x04, 0x72, 0x00, 0x00, 0x00, 0x10, 0x00, 0x18,
            0x00, 0x0B, 0x00, 0x03, 0x00, 0x10, 0x00, 0x20
        ]
    );

    // The publics are what TPM2_ReadPublic returns for the persistent handles, every time.
    assert_eq!(tpm.ek_rsa_public().unwrap(), rsa);
    assert_eq!(read_public(&mut tpm, EK_RSA_HANDLE), rsa);
    assert_eq!(read_public(&mut tpm, EK_ECC_P384_HANDLE), ecc);
    assert_eq!(read_public(&mut tpm, AK_HANDLE), ak);
    drop(tpm);

    // A new TPM has new seeds, hence new keys.
    let mut other = manufacture();
    assert_ne!(other.ek_rsa_public().unwrap(), rsa);
    assert_ne!(other.ek_ecc_public().unwrap(), ecc);
}

#[test]
fn p384_attestation_key_quotes() {
    let _g = serial();
    let mut tpm = Vtpm::manufacture(VtpmConfig {
        ak_curve: AkCurve::P384,
    })
    .unwrap();
    let ak = tpm.ak_public().unwrap();
    assert_eq!(ak.len(), 120);
    assert_eq!(&ak[2..4], &[0x00, 0x0C], "nameAlg SHA-384");
    assert_eq!(
        &ak[14..18],
        &[0x00, 0x0C, 0x00, 0x04],
        "ECDSA-SHA384, P-384"
    );

    // TPM2_Quote over SHA-256 PCR 0..7 with the AK.
    let quote = Cmd::new(TPM_ST_SESSIONS, 0x158)
        .u32(AK_HANDLE)
        .pw_auth(b"")
        .tpm2b(b"fresh nonce")
        .u16(0x0010) // inScheme: TPM_ALG_NULL, use the key's
        .u32(1)
        .u16(TPM_ALG_SHA256)
        .u8(3)
        .bytes(&[0xff, 0, 0])
        .build();
    let mut buf = vec![0u8; MAX_TPM_BUFFER];
    let n = tpm.execute_retrying(0, &quote, &mut buf).unwrap();
    let resp = &buf[..n];
    assert_eq!(rc(resp), TPM_RC_SUCCESS, "{resp:02x?}");
    // parameterSize, then TPM2B_ATTEST: magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE
    let attest_len = u16::from_be_bytes([resp[14], resp[15]]) as usize;
    assert_eq!(&resp[16..22], &[0xff, 0x54, 0x43, 0x47, 0x80, 0x18]);
    let sig = &resp[16 + attest_len..];
    // TPMT_SIGNATURE: ECDSA with SHA-384, r and s of 48 bytes
    assert_eq!(&sig[..6], &[0x00, 0x18, 0x00, 0x0C, 0x00, 0x30]);
}

#[test]
fn second_instance_is_in_use() {
    let _g = serial();
    let tpm = manufacture();
    let again = Vtpm::manufacture(VtpmConfig::default());
    assert_eq!(again.unwrap_err(), VtpmError::Engine(TpmEngineError::InUse));
    // Restoring needs the engine too (checked after the state's digest).
    let state = {
        let mut tpm = tpm;
        let state = tpm.export_state().unwrap();
        let again = Vtpm::restore(&state, VtpmConfig::default());
        assert_eq!(
            again.unwrap_err().engine_error(),
            Some(TpmEngineError::InUse)
        );
        // The refused attempts did not disturb the owner.
        assert_eq!(get_random(&mut tpm, 8).len(), 8);
        state
    };
    // Once the owner is gone, the engine is free again.
    let mut restored = Vtpm::restore(&state, VtpmConfig::default()).unwrap();
    assert_eq!(get_random(&mut restored, 8).len(), 8);
}

#[test]
fn instances_from_many_threads_are_exclusive() {
    let _g = serial();
    let holders = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    match Vtpm::manufacture(VtpmConfig::default()) {
                        Ok(mut tpm) => {
                            let now = holders.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert_eq!(now, 0, "two owners at once");
                            assert_eq!(get_random(&mut tpm, 16).len(), 16);
                            holders.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => assert_eq!(e, VtpmError::Engine(TpmEngineError::InUse)),
                    }
                }
            });
        }
    });
}

#[test]
fn malformed_commands_get_tpm_error_responses() {
    let _g = serial();
    let mut tpm = manufacture();
    let get_random = Cmd::new(TPM_ST_NO_SESSIONS, 0x17B).u16(8).build();

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![0x80]),
        ("truncated header", get_random[..6].to_vec()),
        ("header only, size says 12", get_random[..10].to_vec()),
        ("missing parameter byte", get_random[..11].to_vec()),
        ("zero size field", {
            let mut c = get_random.clone();
            c[2..6].copy_from_slice(&0u32.to_be_bytes());
            c
        }),
        ("bad tag", {
            let mut c = get_random.clone();
            c[0..2].copy_from_slice(&0x1234u16.to_be_bytes());
            c
        }),
        ("unknown command code", {
            let mut c = get_random.clone();
            c[6..10].copy_from_slice(&0x0000_0fffu32.to_be_bytes());
            c
        }),
        ("garbage", (0..200u8).map(|i| i.wrapping_mul(37)).collect()),
    ];
    for size in [13u32, 100, 4096, 0xffff_ffff] {
        let mut c = get_random.clone();
        c[2..6].copy_from_slice(&size.to_be_bytes());
        cases.push(("size field larger than the command", c));
    }
    let mut padded = get_random.clone();
    padded.extend_from_slice(&[0u8; 20]);
    cases.push(("size field smaller than the command", padded));

    for (what, cmd) in cases {
        let resp = send(&mut tpm, &cmd);
        let code = rc(&resp);
        assert_ne!(code, TPM_RC_SUCCESS, "{what}: {resp:02x?}");
        assert_eq!(resp.len(), 10, "{what}: an error response is a bare header");
    }
    // The TPM still works afterwards.
    assert_eq!(common::get_random(&mut tpm, 8).len(), 8);
}

#[test]
fn size_limits_are_typed_errors() {
    let _g = serial();
    let mut tpm = manufacture();
    let mut buf = vec![0u8; MAX_TPM_BUFFER];

    let huge = vec![0u8; MAX_TPM_BUFFER + 1];
    assert_eq!(
        tpm.execute(0, &huge, &mut buf),
        Err(TpmEngineError::CommandTooLarge {
            size: MAX_TPM_BUFFER + 1,
            max: MAX_TPM_BUFFER
        })
    );
    // Exactly the limit is passed on (and refused by the TPM: it is not a command).
    let mut at_limit = Cmd::new(TPM_ST_NO_SESSIONS, 0x17B).u16(8).build();
    at_limit.resize(MAX_TPM_BUFFER, 0);
    at_limit[2..6].copy_from_slice(&(MAX_TPM_BUFFER as u32).to_be_bytes());
    let n = tpm.execute(0, &at_limit, &mut buf).unwrap();
    assert_ne!(rc(&buf[..n]), TPM_RC_SUCCESS);

    // A response that does not fit the caller's buffer.
    let cmd = Cmd::new(TPM_ST_NO_SESSIONS, 0x17B).u16(32).build();
    let mut small = [0u8; 20];
    assert_eq!(
        tpm.execute(0, &cmd, &mut small),
        Err(TpmEngineError::ResponseTooLarge {
            size: 44,
            capacity: 20
        })
    );
}

#[test]
fn locality_reaches_the_tpm() {
    let _g = serial();
    let mut tpm = manufacture();
    // PCR 17 is resettable/extendable only from locality 4 and 3 (PC Client profile).
    let extend = pcr_extend_cmd(17, &[1; 32]);
    assert_eq!(rc(&send_at(&mut tpm, 0, &extend)), TPM_RC_LOCALITY);
    assert_eq!(rc(&send_at(&mut tpm, 3, &extend)), TPM_RC_SUCCESS);
    // Locality 0 again afterwards: the value is per command, not sticky.
    assert_eq!(rc(&send_at(&mut tpm, 0, &extend)), TPM_RC_LOCALITY);
    // An out-of-range locality is the TPM's business, not a crash.
    let resp = send_at(&mut tpm, 200, &pcr_extend_cmd(10, &[1; 32]));
    assert!(resp.len() >= 10);
}

#[test]
fn power_cycle_keeps_nv_and_clears_volatile_state() {
    let _g = serial();
    let mut tpm = manufacture();
    let ek = tpm.ek_rsa_public().unwrap();
    send_ok(&mut tpm, &pcr_extend_cmd(10, &[0xab; 32]));
    assert_eq!(
        rc(&nv_define(&mut tpm, TEST_NV_INDEX, NV_OWNER_RW, b"", 16)),
        TPM_RC_SUCCESS
    );
    send_ok(
        &mut tpm,
        &nv_write_cmd(TPM_RH_OWNER, TEST_NV_INDEX, b"", b"survives a cycle"),
    );

    tpm.power_off();
    tpm.power_off(); // idempotent
    assert!(!tpm.is_powered_on());
    let mut buf = vec![0u8; MAX_TPM_BUFFER];
    assert_eq!(
        tpm.execute(
            0,
            &Cmd::new(TPM_ST_NO_SESSIONS, 0x17B).u16(8).build(),
            &mut buf
        ),
        Err(TpmEngineError::NotPoweredOn)
    );
    assert_eq!(
        tpm.ek_rsa_public().unwrap_err(),
        VtpmError::Engine(TpmEngineError::NotPoweredOn)
    );

    tpm.power_on().unwrap();
    tpm.power_on().unwrap(); // idempotent
    assert_eq!(pcr_read_sha256(&mut tpm, 10), [0u8; 32], "PCRs reset");
    assert_eq!(nv_read(&mut tpm, TEST_NV_INDEX, 16), b"survives a cycle");
    assert_eq!(tpm.ek_rsa_public().unwrap(), ek);
}

#[test]
fn shutdown_state_is_resumed_at_power_on() {
    let _g = serial();
    let mut tpm = manufacture();
    send_ok(&mut tpm, &pcr_extend_cmd(10, &[0xab; 32]));
    let extended = pcr_read_sha256(&mut tpm, 10);
    // TPM2_Shutdown(STATE), as an OS does before hibernating.
    send_ok(
        &mut tpm,
        &Cmd::new(TPM_ST_NO_SESSIONS, 0x145).u16(1).build(),
    );
    tpm.power_off();
    tpm.power_on().unwrap();
    assert_eq!(
        pcr_read_sha256(&mut tpm, 10),
        extended,
        "TPM Resume keeps PCRs"
    );
    // Without a Shutdown(STATE), the next power-on is a TPM Reset.
    tpm.power_off();
    tpm.power_on().unwrap();
    assert_eq!(pcr_read_sha256(&mut tpm, 10), [0u8; 32]);
}

#[test]
fn state_changed_tracks_nv_writes() {
    let _g = serial();
    let mut tpm = manufacture();
    assert!(tpm.state_changed(), "a new TPM was never exported");
    tpm.export_state().unwrap();
    assert!(!tpm.state_changed());

    get_random(&mut tpm, 8);
    pcr_read_sha256(&mut tpm, 0);
    assert!(!tpm.state_changed(), "reads do not touch NV");

    assert_eq!(
        rc(&nv_define(&mut tpm, TEST_NV_INDEX, NV_OWNER_RW, b"", 8)),
        TPM_RC_SUCCESS
    );
    assert!(tpm.state_changed());
    tpm.export_state().unwrap();
    assert!(!tpm.state_changed());
    send_ok(
        &mut tpm,
        &nv_write_cmd(TPM_RH_OWNER, TEST_NV_INDEX, b"", b"12345678"),
    );
    assert!(tpm.state_changed());
}

#[test]
fn execute_retrying_resends_on_tpm_rc_retry() {
    let _g = serial();
    let mut tpm = manufacture();
    // A DA-protected NV index with a password.
    assert_eq!(
        rc(&nv_define(
            &mut tpm,
            TEST_NV_INDEX,
            NV_AUTH_RW,
            b"secret",
            8
        )),
        TPM_RC_SUCCESS
    );
    let write = nv_write_cmd(TEST_NV_INDEX, TEST_NV_INDEX, b"secret", b"abcdefgh");

    // After a fresh startup libtpms must first record in NV that DA-protected authorization
    // was used, and asks for the command again.
    tpm.power_off();
    tpm.power_on().unwrap();
    assert_eq!(rc(&send(&mut tpm, &write)), TPM_RC_RETRY);
    assert_eq!(rc(&send(&mut tpm, &write)), TPM_RC_SUCCESS);

    tpm.power_off();
    tpm.power_on().unwrap();
    let mut buf = vec![0u8; MAX_TPM_BUFFER];
    let n = tpm.execute_retrying(0, &write, &mut buf).unwrap();
    assert_eq!(rc(&buf[..n]), TPM_RC_SUCCESS);
}
