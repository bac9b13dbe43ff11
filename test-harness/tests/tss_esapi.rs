//! The `tss-esapi` 7.7 crate (the Rust wrapper of tpm2-tss's ESAPI) drives the vTPM in-process
//! through the mssim endpoint (`mssim:` TCTI), covering what `tpm2_tools.rs` covers with the
//! command-line tools. Every expected value is computed independently of the TPM (sha2, p384, or
//! marshalled by hand from the TPM 2.0 Library Part 2 layouts).

use p384::ecdsa::signature::Verifier as _;
use sha2::{Digest as _, Sha256, Sha384};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, OnceLock};
use test_harness::mssim::MssimServer;
use test_harness::tpm_backend::start_endpoint;
use tss_esapi::attributes::{NvIndexAttributesBuilder, ObjectAttributes, ObjectAttributesBuilder};
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::constants::{
    CapabilityType, SessionType, StartupType, StructureTag, Tss2ResponseCode,
};
use tss_esapi::handles::{
    KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PcrHandle, PersistentTpmHandle,
    SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::interface_types::structure_tags::AttestationType;
use tss_esapi::structures::{
    Attest, AttestInfo, Auth, CapabilityData, Data, Digest, DigestValues, EccPoint, EccScheme,
    HashScheme, HashcheckTicket, KeyDerivationFunctionScheme, KeyedHashScheme, MaxNvBuffer,
    NvPublicBuilder, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Public,
    PublicEccParameters, PublicKeyRsa, PublicKeyedHashParameters, PublicRsaParameters, RsaExponent,
    RsaScheme, SensitiveData, Signature, SignatureScheme, SymmetricDefinition,
    SymmetricDefinitionObject, Ticket,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, Error};

// TPM 2.0 response codes (Library Part 2 §6.6), with the handle/parameter/session number bits
// the TPM adds for format-1 codes.
/// TPM_RC_INITIALIZE: Startup after Startup.
const TPM_RC_INITIALIZE: u32 = 0x100;
/// TPM_RC_NV_UNINITIALIZED: read of an NV index never written.
const TPM_RC_NV_UNINITIALIZED: u32 = 0x14A;
/// TPM_RC_AUTH_UNAVAILABLE: authValue (password) use of an object whose userWithAuth is clear.
const TPM_RC_AUTH_UNAVAILABLE: u32 = 0x12F;
/// TPM_RC_LOCALITY (a warning): PCR not extendable from this locality.
const TPM_RC_LOCALITY: u32 = 0x907;
/// TPM_RC_SIGNATURE + TPM_RC_P + TPM_RC_2: VerifySignature's `signature` parameter is bad.
const TPM_RC_SIGNATURE_PARAM_2: u32 = 0x2DB;
/// TPM_RC_TICKET + TPM_RC_P + TPM_RC_3: Sign's `validation` ticket is not valid (a restricted
/// key given the NULL ticket).
const TPM_RC_TICKET_PARAM_3: u32 = 0x3E0;
/// TPM_RC_POLICY_FAIL + TPM_RC_S + TPM_RC_1: the policy session (session 1) does not match.
const TPM_RC_POLICY_FAIL_SESSION_1: u32 = 0x99D;
/// TPM_RC_BAD_AUTH + TPM_RC_S + TPM_RC_1: wrong authValue in session 1 for an entity without
/// dictionary-attack protection (a DA-protected one answers TPM_RC_AUTH_FAIL, 0x98E).
const TPM_RC_BAD_AUTH_SESSION_1: u32 = 0x9A2;
/// TPM_CC_PolicyPCR.
const TPM_CC_POLICY_PCR: u32 = 0x17F;
/// TPM_GENERATED_VALUE, the magic of every TPMS_ATTEST.
const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;
/// TPM_ST_ATTEST_QUOTE.
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// PolicyA_SHA256 = PolicySecret(TPM_RH_ENDORSEMENT) (TCG EK Credential Profile, template L-1).
const POLICY_A_SHA256: &str = "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa";
/// PolicyB_SHA384 (TCG EK Credential Profile 2.x, template H-3).
const POLICY_B_SHA384: &str = "b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419ca\
                               cb47ba09699646150f9fc000f3f80e12";

fn server() -> &'static MssimServer {
    static SERVER: OnceLock<MssimServer> = OnceLock::new();
    SERVER.get_or_init(|| start_endpoint(0).expect("start the mssim endpoint"))
}

/// The TPM has three object slots, like hardware; tests take turns rather than race for them.
static TPM_TURN: Mutex<()> = Mutex::new(());

/// An ESAPI context holding the TPM for one test. Fields drop in order: the context first (it
/// flushes the objects and sessions it created), then the turn.
struct Tpm {
    ctx: Context,
    _turn: MutexGuard<'static, ()>,
}

impl Tpm {
    fn new() -> Self {
        let turn = TPM_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let tcti = TctiNameConf::from_str(&server().tcti()).expect("TCTI string");
        let mut ctx = Context::new(tcti).expect("ESAPI context over mssim");
        // Dropping the previous test's context flushed what it created.
        for first in [0x8000_0000, 0x0200_0000] {
            assert_eq!(loaded(&mut ctx, first), Vec::<u32>::new(), "left loaded");
        }
        Tpm { ctx, _turn: turn }
    }
}

/// The handles of one type the TPM holds: transient objects (from 0x80000000) or loaded
/// sessions (from 0x02000000; policy sessions are listed with their 0x03 handles).
fn loaded(ctx: &mut Context, first: u32) -> Vec<u32> {
    let (data, _) = ctx
        .get_capability(CapabilityType::Handles, first, 64)
        .unwrap();
    let CapabilityData::Handles(handles) = data else {
        panic!("not a handle list: {data:?}");
    };
    handles.iter().map(|&h| u32::from(h)).collect()
}

impl Deref for Tpm {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl DerefMut for Tpm {
    fn deref_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }
}

/// The raw TPM response code of a failed ESAPI call.
fn tpm_rc(e: Error) -> u32 {
    match e {
        Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => rc.0,
        Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => rc.0,
        other => panic!("not a TPM response code: {other:?}"),
    }
}

/// Runs `f` with a password session (empty password) as session 1.
fn with_pw<T>(ctx: &mut Context, f: impl FnOnce(&mut Context) -> T) -> T {
    ctx.execute_with_session(Some(AuthSession::Password), f)
}

fn slot(index: u32) -> PcrSlot {
    PcrSlot::try_from(1u32 << index).unwrap()
}

fn pcr_handle(index: u32) -> PcrHandle {
    match index {
        16 => PcrHandle::Pcr16,
        18 => PcrHandle::Pcr18,
        19 => PcrHandle::Pcr19,
        20 => PcrHandle::Pcr20,
        21 => PcrHandle::Pcr21,
        22 => PcrHandle::Pcr22,
        23 => PcrHandle::Pcr23,
        _ => panic!("PCR {index} not used here"),
    }
}

fn selection(alg: HashingAlgorithm, indexes: &[u32]) -> PcrSelectionList {
    let slots: Vec<PcrSlot> = indexes.iter().map(|&i| slot(i)).collect();
    PcrSelectionListBuilder::new()
        .with_selection(alg, &slots)
        .build()
        .unwrap()
}

/// Reads one PCR of one bank.
fn pcr(ctx: &mut Context, alg: HashingAlgorithm, index: u32) -> Vec<u8> {
    let sel = selection(alg, &[index]);
    let (_, read, digests) = ctx.pcr_read(sel.clone()).unwrap();
    assert_eq!(read, sel, "PCR_Read answered another selection");
    assert_eq!(digests.len(), 1);
    digests.value()[0].value().to_vec()
}

fn extend(
    ctx: &mut Context,
    index: u32,
    values: &[(HashingAlgorithm, &[u8])],
) -> Result<(), Error> {
    let mut dv = DigestValues::new();
    for (alg, d) in values {
        dv.set(*alg, Digest::try_from(d.to_vec()).unwrap());
    }
    with_pw(ctx, |c| c.pcr_extend(pcr_handle(index), dv))
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

fn sha384(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

/// An object's Name: nameAlg || H(TPMT_PUBLIC), with the public area marshalled by tpm2-tss.
fn object_name(public: &Public) -> Vec<u8> {
    let bytes = public.marshall().unwrap();
    match public.name_hashing_algorithm() {
        HashingAlgorithm::Sha256 => [&0x000Bu16.to_be_bytes()[..], &sha256(&[&bytes])].concat(),
        HashingAlgorithm::Sha384 => [&0x000Cu16.to_be_bytes()[..], &sha384(&[&bytes])].concat(),
        other => panic!("nameAlg {other:?}"),
    }
}

fn attributes(a: ObjectAttributes) -> u32 {
    u32::from(a)
}

/// A restricted decryption (storage) ECC key template, like tpm2_createprimary's default.
fn ecc_storage(curve: EccCurve) -> Public {
    let (name_alg, symmetric) = match curve {
        EccCurve::NistP384 => (
            HashingAlgorithm::Sha384,
            SymmetricDefinitionObject::AES_256_CFB,
        ),
        _ => (
            HashingAlgorithm::Sha256,
            SymmetricDefinitionObject::AES_128_CFB,
        ),
    };
    Public::Ecc {
        object_attributes: storage_attributes(),
        name_hashing_algorithm: name_alg,
        auth_policy: Digest::default(),
        parameters: PublicEccParameters::new(
            symmetric,
            EccScheme::Null,
            curve,
            KeyDerivationFunctionScheme::Null,
        ),
        unique: EccPoint::default(),
    }
}

fn rsa_storage() -> Public {
    Public::Rsa {
        object_attributes: storage_attributes(),
        name_hashing_algorithm: HashingAlgorithm::Sha256,
        auth_policy: Digest::default(),
        parameters: PublicRsaParameters::new(
            SymmetricDefinitionObject::AES_128_CFB,
            RsaScheme::Null,
            RsaKeyBits::Rsa2048,
            RsaExponent::default(),
        ),
        unique: PublicKeyRsa::default(),
    }
}

fn storage_attributes() -> ObjectAttributes {
    ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
        .unwrap()
}

/// An ECDSA signing key template; `restricted` makes it an attestation key.
fn ecc_signing(curve: EccCurve, hash: HashingAlgorithm, restricted: bool) -> Public {
    Public::Ecc {
        object_attributes: ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_user_with_auth(true)
            .with_no_da(true)
            .with_restricted(restricted)
            .with_sign_encrypt(true)
            .build()
            .unwrap(),
        name_hashing_algorithm: hash,
        auth_policy: Digest::default(),
        parameters: PublicEccParameters::new(
            SymmetricDefinitionObject::Null,
            EccScheme::EcDsa(HashScheme::new(hash)),
            curve,
            KeyDerivationFunctionScheme::Null,
        ),
        unique: EccPoint::default(),
    }
}

fn create_primary(ctx: &mut Context, hierarchy: Hierarchy, public: Public) -> (KeyHandle, Public) {
    let r = with_pw(ctx, |c| {
        c.create_primary(hierarchy, public, None, None, None, None)
    })
    .unwrap();
    (r.key_handle, r.out_public)
}

fn ecc_xy(public: &Public) -> (Vec<u8>, Vec<u8>) {
    match public {
        Public::Ecc { unique, .. } => (unique.x().value().to_vec(), unique.y().value().to_vec()),
        other => panic!("not an ECC key: {other:?}"),
    }
}

fn template_curve(public: &Public) -> EccCurve {
    match public {
        Public::Ecc { parameters, .. } => parameters.ecc_curve(),
        _ => unreachable!(),
    }
}

fn p384_key(public: &Public) -> p384::ecdsa::VerifyingKey {
    let (x, y) = ecc_xy(public);
    assert_eq!((x.len(), y.len()), (48, 48));
    let sec1 = [&[0x04u8][..], &x, &y].concat();
    p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).expect("a point on P-384")
}

/// Left-pads a big-endian integer to `len` bytes.
fn pad(v: &[u8], len: usize) -> Vec<u8> {
    assert!(v.len() <= len);
    [vec![0u8; len - v.len()], v.to_vec()].concat()
}

fn null_hashcheck() -> HashcheckTicket {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .unwrap()
}

/// Sends one TPM command over the mssim command port, bypassing tpm2-tss entirely; returns the
/// TPM response.
fn raw_command(command: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", server().command_port())).unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&8u32.to_be_bytes()); // TPM_SEND_COMMAND
    frame.push(0); // locality
    frame.extend_from_slice(&(command.len() as u32).to_be_bytes());
    frame.extend_from_slice(command);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut response = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut response).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0; 4]);
    response
}

#[test]
fn startup_and_get_random() {
    let mut tpm = Tpm::new();
    // The endpoint sent Startup(CLEAR) at power-on. A second Startup is refused by the TPM with
    // TPM_RC_INITIALIZE. Esys_Startup (tpm2-tss 3.2.1) turns exactly that code into success, so
    // tss-esapi's `startup` returns Ok: check the TPM's own answer on the raw command path.
    let startup_clear = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
    let response = raw_command(&startup_clear);
    assert_eq!(response.len(), 10, "{response:02x?}");
    assert_eq!(&response[..2], &[0x80, 0x01]);
    assert_eq!(u32::from_be_bytes(response[2..6].try_into().unwrap()), 10);
    assert_eq!(
        u32::from_be_bytes(response[6..10].try_into().unwrap()),
        TPM_RC_INITIALIZE
    );

    // Through ESAPI: Ok (INITIALIZE swallowed), and the TPM state is untouched: a Startup(CLEAR)
    // that ran would have reset PCR 16.
    extend(&mut tpm, 16, &[(HashingAlgorithm::Sha256, &[0x5A; 32])]).unwrap();
    let before = pcr(&mut tpm, HashingAlgorithm::Sha256, 16);
    assert_ne!(before, vec![0u8; 32]);
    tpm.startup(StartupType::Clear).unwrap();
    assert_eq!(pcr(&mut tpm, HashingAlgorithm::Sha256, 16), before);

    let a = tpm.get_random(32).unwrap().value().to_vec();
    let b = tpm.get_random(32).unwrap().value().to_vec();
    assert_eq!((a.len(), b.len()), (32, 32));
    assert_ne!(a, b);
    assert_ne!(a, vec![0u8; 32]);
    let c = tpm.get_random(48).unwrap();
    assert_eq!(c.len(), 48);
}

#[test]
fn pcr_extend_and_read_sha256_and_sha384() {
    let mut tpm = Tpm::new();
    let (s256, s384) = (HashingAlgorithm::Sha256, HashingAlgorithm::Sha384);

    // PCR 23 (application): extend both banks in one command.
    let before256 = pcr(&mut tpm, s256, 23);
    let before384 = pcr(&mut tpm, s384, 23);
    assert_eq!((before256.len(), before384.len()), (32, 48));
    let d256 = sha256(&[b"tss-esapi sha256 event"]);
    let d384 = sha384(&[b"tss-esapi sha384 event"]);
    extend(&mut tpm, 23, &[(s256, &d256), (s384, &d384)]).unwrap();
    assert_eq!(pcr(&mut tpm, s256, 23), sha256(&[&before256, &d256]));
    assert_eq!(pcr(&mut tpm, s384, 23), sha384(&[&before384, &d384]));

    // PCR 16 (debug): extend the sha384 bank only; the sha256 bank must not move.
    let keep256 = pcr(&mut tpm, s256, 16);
    let before384 = pcr(&mut tpm, s384, 16);
    let d384 = [0xC3u8; 48];
    extend(&mut tpm, 16, &[(s384, &d384)]).unwrap();
    assert_eq!(pcr(&mut tpm, s384, 16), sha384(&[&before384, &d384]));
    assert_eq!(pcr(&mut tpm, s256, 16), keep256);

    // PCRs 17-22 are extendable only from localities above 0 (PC Client PCR attributes, as
    // libtpms sets them); the SVSM vTPM protocol carries locality 0 only, so extending 18-22 is
    // refused with TPM_RC_LOCALITY and they stay as they were.
    for index in 18..=22 {
        let v256 = pcr(&mut tpm, s256, index);
        let v384 = pcr(&mut tpm, s384, index);
        let e = extend(&mut tpm, index, &[(s256, &d256)]).unwrap_err();
        assert_eq!(tpm_rc(e), TPM_RC_LOCALITY, "PCR {index}");
        assert_eq!(pcr(&mut tpm, s256, index), v256);
        assert_eq!(pcr(&mut tpm, s384, index), v384);
    }
}

#[test]
fn create_primary_ecc256_ecc384_rsa2048_in_the_owner_hierarchy() {
    let mut tpm = Tpm::new();
    let cases = [
        ("ecc256", ecc_storage(EccCurve::NistP256)),
        ("ecc384", ecc_storage(EccCurve::NistP384)),
        ("rsa2048", rsa_storage()),
    ];
    for (what, template) in cases {
        let (h1, p1) = create_primary(&mut tpm, Hierarchy::Owner, template.clone());
        match &p1 {
            Public::Ecc { parameters, .. } => {
                let (x, y) = ecc_xy(&p1);
                let size = if what == "ecc256" { 32 } else { 48 };
                assert_eq!((x.len(), y.len()), (size, size), "{what}");
                assert_eq!(parameters.ecc_curve(), template_curve(&template), "{what}");
                if what == "ecc384" {
                    let _ = p384_key(&p1);
                }
            }
            Public::Rsa {
                parameters, unique, ..
            } => {
                assert_eq!(what, "rsa2048");
                assert_eq!(parameters.key_bits(), RsaKeyBits::Rsa2048);
                assert_eq!(unique.value().len(), 256);
                assert!(unique.value()[0] & 0x80 != 0, "modulus of 2048 bits");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(
            attributes(p1.object_attributes()),
            attributes(storage_attributes())
        );
        // The TPM's Name for the loaded key is the hash of the public area it returned.
        let (read, name, _) = tpm.read_public(h1).unwrap();
        assert_eq!(read, p1, "{what}");
        assert_eq!(name.value(), object_name(&p1).as_slice(), "{what}");
        // Primary keys derive from the owner seed: the same template gives the same key.
        let (h2, p2) = create_primary(&mut tpm, Hierarchy::Owner, template);
        assert_eq!(p2, p1, "{what}: primary key not reproducible");
        assert_eq!(loaded(&mut tpm, 0x8000_0000).len(), 2, "{what}");
        tpm.flush_context(h1.into()).unwrap();
        tpm.flush_context(h2.into()).unwrap();
        assert_eq!(loaded(&mut tpm, 0x8000_0000), Vec::<u32>::new(), "{what}");
    }
}

#[test]
fn create_load_sign_verify_signature() {
    let mut tpm = Tpm::new();
    let (parent, _) = create_primary(&mut tpm, Hierarchy::Owner, ecc_storage(EccCurve::NistP256));
    let template = ecc_signing(EccCurve::NistP256, HashingAlgorithm::Sha256, false);
    let created = with_pw(&mut tpm, |c| {
        c.create(parent, template, None, None, None, None)
    })
    .unwrap();
    let key = with_pw(&mut tpm, |c| {
        c.load(parent, created.out_private, created.out_public.clone())
    })
    .unwrap();
    let (public, name, _) = tpm.read_public(key).unwrap();
    assert_eq!(public, created.out_public);
    assert_eq!(name.value(), object_name(&created.out_public).as_slice());

    let digest = sha256(&[b"sign me inside the vTPM"]);
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    let signature = with_pw(&mut tpm, |c| {
        c.sign(
            key,
            Digest::try_from(digest.clone()).unwrap(),
            scheme,
            null_hashcheck(),
        )
    })
    .unwrap();
    match &signature {
        Signature::EcDsa(s) => {
            assert_eq!(s.hashing_algorithm(), HashingAlgorithm::Sha256);
            assert!(s.signature_r().value().len() <= 32 && s.signature_s().value().len() <= 32);
        }
        other => panic!("not ECDSA: {other:?}"),
    }
    let ticket = tpm
        .verify_signature(key, Digest::try_from(digest).unwrap(), signature.clone())
        .unwrap();
    assert_eq!(ticket.tag(), StructureTag::Verified);
    assert_eq!(ticket.hierarchy(), Hierarchy::Owner);

    // A different digest must not verify.
    let other = sha256(&[b"not what was signed"]);
    let e = tpm
        .verify_signature(key, Digest::try_from(other).unwrap(), signature)
        .unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_SIGNATURE_PARAM_2);
}

/// Checks a quote's structure against the nonce, the selection and PCR values read separately;
/// returns the marshalled TPMS_ATTEST.
fn check_quote(
    attest: &Attest,
    nonce: &[u8],
    sel: &PcrSelectionList,
    expected_pcr_digest: &[u8],
    qualified_signer: &[u8],
) -> Vec<u8> {
    assert_eq!(attest.attestation_type(), AttestationType::Quote);
    assert_eq!(attest.extra_data().value(), nonce);
    assert_eq!(attest.qualified_signer().value(), qualified_signer);
    match attest.attested() {
        AttestInfo::Quote { info } => {
            assert_eq!(info.pcr_selection(), sel);
            assert_eq!(info.pcr_digest().value(), expected_pcr_digest);
        }
        other => panic!("not a quote: {other:?}"),
    }
    let bytes = attest.marshall().unwrap();
    assert_eq!(
        u32::from_be_bytes(bytes[..4].try_into().unwrap()),
        TPM_GENERATED_VALUE
    );
    assert_eq!(
        u16::from_be_bytes(bytes[4..6].try_into().unwrap()),
        TPM_ST_ATTEST_QUOTE
    );
    bytes
}

#[test]
fn quote_and_verify() {
    let mut tpm = Tpm::new();
    let (s256, s384) = (HashingAlgorithm::Sha256, HashingAlgorithm::Sha384);
    extend(
        &mut tpm,
        23,
        &[(s256, &sha256(&[b"quoted"])), (s384, &sha384(&[b"quoted"]))],
    )
    .unwrap();
    let quoted = [0u32, 18, 23];

    // Restricted ECC P-256 attestation key in the endorsement hierarchy; quote sha256 PCRs.
    let (ak, ak_public) = create_primary(
        &mut tpm,
        Hierarchy::Endorsement,
        ecc_signing(EccCurve::NistP256, s256, true),
    );
    let (_, _, ak_qualified) = tpm.read_public(ak).unwrap();
    let nonce: Vec<u8> = (0u8..32).collect();
    let sel = selection(s256, &quoted);
    let (attest, signature) = with_pw(&mut tpm, |c| {
        c.quote(
            ak,
            Data::try_from(nonce.clone()).unwrap(),
            SignatureScheme::EcDsa {
                hash_scheme: HashScheme::new(s256),
            },
            sel.clone(),
        )
    })
    .unwrap();
    let values: Vec<Vec<u8>> = quoted.iter().map(|&i| pcr(&mut tpm, s256, i)).collect();
    let pcr_digest = sha256(&values.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let bytes = check_quote(&attest, &nonce, &sel, &pcr_digest, ak_qualified.value());
    // The signature covers SHA-256 of exactly these bytes: the TPM checks it with the AK.
    let ticket = tpm
        .verify_signature(
            ak,
            Digest::try_from(sha256(&[&bytes])).unwrap(),
            signature.clone(),
        )
        .unwrap();
    assert_eq!(ticket.hierarchy(), Hierarchy::Endorsement);
    // A quote with another nonce would hash differently: it does not verify.
    let mut forged = bytes.clone();
    let at = forged
        .windows(nonce.len())
        .position(|w| w == nonce.as_slice())
        .unwrap();
    forged[at] ^= 1;
    let e = tpm
        .verify_signature(ak, Digest::try_from(sha256(&[&forged])).unwrap(), signature)
        .unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_SIGNATURE_PARAM_2);
    // The AK is restricted (fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA
    // | restricted | sign): it signs only digests the TPM itself computed, so it refuses to sign
    // the forged attestation's digest without a hashcheck ticket.
    assert_eq!(attributes(ak_public.object_attributes()), 0x0005_0472);
    let e = with_pw(&mut tpm, |c| {
        c.sign(
            ak,
            Digest::try_from(sha256(&[&forged])).unwrap(),
            SignatureScheme::Null,
            null_hashcheck(),
        )
    })
    .unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_TICKET_PARAM_3);

    // Restricted ECC P-384 attestation key; quote the sha384 bank (key's own scheme) and verify
    // the signature in Rust, outside the TPM.
    let (ak384, ak384_public) = create_primary(
        &mut tpm,
        Hierarchy::Endorsement,
        ecc_signing(EccCurve::NistP384, s384, true),
    );
    let (_, _, ak384_qualified) = tpm.read_public(ak384).unwrap();
    let nonce384 = sha256(&[b"fresh verifier nonce"]);
    let sel384 = selection(s384, &quoted);
    let (attest, signature) = with_pw(&mut tpm, |c| {
        c.quote(
            ak384,
            Data::try_from(nonce384.clone()).unwrap(),
            SignatureScheme::Null,
            sel384.clone(),
        )
    })
    .unwrap();
    let values: Vec<Vec<u8>> = quoted.iter().map(|&i| pcr(&mut tpm, s384, i)).collect();
    let pcr_digest = sha384(&values.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let bytes = check_quote(
        &attest,
        &nonce384,
        &sel384,
        &pcr_digest,
        ak384_qualified.value(),
    );
    let Signature::EcDsa(sig) = signature else {
        panic!("not ECDSA: {signature:?}");
    };
    assert_eq!(sig.hashing_algorithm(), s384);
    let sig = p384::ecdsa::Signature::from_slice(
        &[
            pad(sig.signature_r().value(), 48),
            pad(sig.signature_s().value(), 48),
        ]
        .concat(),
    )
    .unwrap();
    let vk = p384_key(&ak384_public);
    vk.verify(&bytes, &sig)
        .expect("quote signature (P-384, SHA-384)");
    let mut forged = bytes;
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(vk.verify(&forged, &sig).is_err());
}

/// TPMS_NV_PUBLIC marshalled by hand (Part 2 §13.5), for the index Name.
fn nv_name(index: u32, attrs: u32, size: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&index.to_be_bytes());
    p.extend_from_slice(&0x000Bu16.to_be_bytes()); // nameAlg SHA-256
    p.extend_from_slice(&attrs.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // authPolicy: empty
    p.extend_from_slice(&size.to_be_bytes());
    [&0x000Bu16.to_be_bytes()[..], &sha256(&[&p])].concat()
}

#[test]
fn nv_define_write_read() {
    let mut tpm = Tpm::new();
    let index = 0x0150_0018;
    let nv_index = NvIndexTpmHandle::new(index).unwrap();
    // A leftover from an aborted run of this process cannot exist (fresh endpoint), but be safe.
    if let Ok(old) = tpm.tr_from_tpm_public(TpmHandle::NvIndex(nv_index)) {
        with_pw(&mut tpm, |c| {
            c.nv_undefine_space(Provision::Owner, NvIndexHandle::from(old))
        })
        .unwrap();
    }

    // Everything below goes through an HMAC session with command and response parameter
    // encryption (AES-128-CFB), so the index auth and the data cross the wire encrypted.
    let session = tpm
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Hmac,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .unwrap();
    let (attrs, mask) = tss_esapi::attributes::SessionAttributesBuilder::new()
        .with_decrypt(true)
        .with_encrypt(true)
        .with_continue_session(true)
        .build();
    tpm.tr_sess_set_attributes(session.unwrap(), attrs, mask)
        .unwrap();

    let nv_attributes = NvIndexAttributesBuilder::new()
        .with_owner_read(true)
        .with_owner_write(true)
        .with_auth_read(true)
        .with_auth_write(true)
        .with_no_da(true)
        .build()
        .unwrap();
    let public = NvPublicBuilder::new()
        .with_nv_index(nv_index)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(nv_attributes)
        .with_data_area_size(32)
        .build()
        .unwrap();
    let index_auth = Auth::try_from(b"nv index secret".to_vec()).unwrap();
    let handle = tpm
        .execute_with_session(session, |c| {
            c.nv_define_space(Provision::Owner, Some(index_auth.clone()), public)
        })
        .unwrap();

    let (read_public, name) = tpm.nv_read_public(handle).unwrap();
    assert_eq!(read_public.data_size(), 32);
    assert!(!read_public.attributes().written());
    let attrs_defined = read_public.attributes().0;
    assert_eq!(name.value(), nv_name(index, attrs_defined, 32).as_slice());

    // Never written: reading is refused.
    let e = tpm
        .execute_with_session(session, |c| c.nv_read(NvAuth::Owner, handle, 32, 0))
        .unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_NV_UNINITIALIZED);

    let mut expected: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x42).collect();
    tpm.execute_with_session(session, |c| {
        c.nv_write(
            NvAuth::Owner,
            handle,
            MaxNvBuffer::try_from(expected.clone()).unwrap(),
            0,
        )
    })
    .unwrap();
    // A partial write at an offset, with the index's own auth.
    let patch = [0xEE, 0xDD, 0xCC, 0xBB];
    tpm.execute_with_session(session, |c| {
        c.nv_write(
            NvAuth::NvIndex(handle),
            handle,
            MaxNvBuffer::try_from(patch.to_vec()).unwrap(),
            8,
        )
    })
    .unwrap();
    expected[8..12].copy_from_slice(&patch);

    let all = tpm
        .execute_with_session(session, |c| c.nv_read(NvAuth::Owner, handle, 32, 0))
        .unwrap();
    assert_eq!(all.value(), expected.as_slice());
    let part = tpm
        .execute_with_session(session, |c| {
            c.nv_read(NvAuth::NvIndex(handle), handle, 6, 7)
        })
        .unwrap();
    assert_eq!(part.value(), &expected[7..13]);

    // Written now: the attribute, and so the Name, changed.
    let (read_public, name) = tpm.nv_read_public(handle).unwrap();
    assert!(read_public.attributes().written());
    assert_eq!(
        name.value(),
        nv_name(index, attrs_defined | (1 << 29), 32).as_slice()
    );

    // The wrong index auth fails (noDA index: no lockout accounting).
    tpm.tr_set_auth(handle.into(), Auth::try_from(b"wrong".to_vec()).unwrap())
        .unwrap();
    let e = tpm
        .execute_with_session(session, |c| {
            c.nv_read(NvAuth::NvIndex(handle), handle, 4, 0)
        })
        .unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_BAD_AUTH_SESSION_1);

    tpm.execute_with_session(session, |c| c.nv_undefine_space(Provision::Owner, handle))
        .unwrap();
    assert!(tpm
        .tr_from_tpm_public(TpmHandle::NvIndex(nv_index))
        .is_err());
}

/// PolicyPCR digest computed outside the TPM (Part 3 §23.7): from an all-zero policy,
/// H(policy || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(PCR values)).
fn policy_pcr_digest(index: u32, pcr_value: &[u8]) -> Vec<u8> {
    let mut select = [0u8; 3];
    select[(index / 8) as usize] = 1 << (index % 8);
    let mut tpml = Vec::new();
    tpml.extend_from_slice(&1u32.to_be_bytes()); // count
    tpml.extend_from_slice(&0x000Bu16.to_be_bytes()); // hash: SHA-256
    tpml.push(3); // sizeofSelect
    tpml.extend_from_slice(&select);
    sha256(&[
        &[0u8; 32],
        &TPM_CC_POLICY_PCR.to_be_bytes(),
        &tpml,
        &sha256(&[pcr_value]),
    ])
}

fn start_policy_session(ctx: &mut Context, kind: SessionType) -> (AuthSession, PolicySession) {
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::Null,
            HashingAlgorithm::Sha256,
        )
        .unwrap()
        .unwrap();
    (session, PolicySession::try_from(session).unwrap())
}

#[test]
fn pcr_policy_seal_unseals_until_the_pcr_changes() {
    let mut tpm = Tpm::new();
    let index = 16;
    let sel = selection(HashingAlgorithm::Sha256, &[index]);
    let value = pcr(&mut tpm, HashingAlgorithm::Sha256, index);
    let policy = policy_pcr_digest(index, &value);

    // The TPM computes the same policy in a trial session (from the current PCR values).
    let (_, trial) = start_policy_session(&mut tpm, SessionType::Trial);
    tpm.policy_pcr(trial, Digest::default(), sel.clone())
        .unwrap();
    assert_eq!(
        tpm.policy_get_digest(trial).unwrap().value(),
        policy.as_slice()
    );
    tpm.flush_context(ObjectHandle::from(SessionHandle::from(trial)))
        .unwrap();

    let (parent, _) = create_primary(&mut tpm, Hierarchy::Owner, ecc_storage(EccCurve::NistP256));
    let sealed_template = Public::KeyedHash {
        // No userWithAuth: the object can be used only through its policy.
        object_attributes: ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_no_da(true)
            .build()
            .unwrap(),
        name_hashing_algorithm: HashingAlgorithm::Sha256,
        auth_policy: Digest::try_from(policy.clone()).unwrap(),
        parameters: PublicKeyedHashParameters::new(KeyedHashScheme::Null),
        unique: Digest::default(),
    };
    let secret = b"sealed to PCR 16 by tss-esapi".to_vec();
    let created = with_pw(&mut tpm, |c| {
        c.create(
            parent,
            sealed_template,
            None,
            Some(SensitiveData::try_from(secret.clone()).unwrap()),
            None,
            None,
        )
    })
    .unwrap();
    assert_eq!(created.out_public.auth_policy().value(), policy.as_slice());
    let sealed = with_pw(&mut tpm, |c| {
        c.load(parent, created.out_private, created.out_public)
    })
    .unwrap();

    // Without the policy (password session) the TPM refuses: userWithAuth is clear.
    let e = with_pw(&mut tpm, |c| c.unseal(sealed.into())).unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_AUTH_UNAVAILABLE);

    let (auth, policy_session) = start_policy_session(&mut tpm, SessionType::Policy);
    tpm.policy_pcr(policy_session, Digest::default(), sel.clone())
        .unwrap();
    let unsealed = tpm
        .execute_with_session(Some(auth), |c| c.unseal(sealed.into()))
        .unwrap();
    assert_eq!(unsealed.value(), secret.as_slice());

    extend(
        &mut tpm,
        index,
        &[(HashingAlgorithm::Sha256, &sha256(&[b"the PCR moved"]))],
    )
    .unwrap();
    let (auth, policy_session) = start_policy_session(&mut tpm, SessionType::Policy);
    tpm.policy_pcr(policy_session, Digest::default(), sel)
        .unwrap();
    let e = tpm
        .execute_with_session(Some(auth), |c| c.unseal(sealed.into()))
        .unwrap_err();
    assert_eq!(tpm_rc(e), TPM_RC_POLICY_FAIL_SESSION_1);
    // Both policy sessions are still loaded (ESYS sets continueSession); dropping the context
    // flushes them, which the next test's start checks.
    let sessions = loaded(&mut tpm, 0x0200_0000);
    assert_eq!(sessions.len(), 2, "{sessions:x?}");
    assert!(sessions.iter().all(|h| h >> 24 == 0x03), "{sessions:x?}");
}

#[test]
fn read_public_of_the_persistent_eks() {
    let mut tpm = Tpm::new();

    let rsa = tpm
        .tr_from_tpm_public(TpmHandle::Persistent(
            PersistentTpmHandle::new(0x8101_0001).unwrap(),
        ))
        .unwrap();
    let (public, name, _) = tpm.read_public(rsa.into()).unwrap();
    match &public {
        Public::Rsa {
            object_attributes,
            name_hashing_algorithm,
            auth_policy,
            parameters,
            unique,
        } => {
            assert_eq!(*name_hashing_algorithm, HashingAlgorithm::Sha256);
            // fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted |
            // decrypt (template L-1).
            assert_eq!(attributes(*object_attributes), 0x0003_00B2);
            assert_eq!(hex::encode(auth_policy.value()), POLICY_A_SHA256);
            assert_eq!(parameters.key_bits(), RsaKeyBits::Rsa2048);
            assert_eq!(parameters.exponent(), RsaExponent::default());
            assert_eq!(
                parameters.symmetric_definition_object(),
                SymmetricDefinitionObject::AES_128_CFB
            );
            assert_eq!(parameters.rsa_scheme(), RsaScheme::Null);
            assert_eq!(unique.value().len(), 256);
            assert!(unique.value()[0] & 0x80 != 0);
        }
        other => panic!("EK 0x81010001 is not RSA: {other:?}"),
    }
    assert_eq!(name.value(), object_name(&public).as_slice());

    let ecc = tpm
        .tr_from_tpm_public(TpmHandle::Persistent(
            PersistentTpmHandle::new(0x8101_0016).unwrap(),
        ))
        .unwrap();
    let (public, name, _) = tpm.read_public(ecc.into()).unwrap();
    match &public {
        Public::Ecc {
            object_attributes,
            name_hashing_algorithm,
            auth_policy,
            parameters,
            ..
        } => {
            assert_eq!(*name_hashing_algorithm, HashingAlgorithm::Sha384);
            // As L-1 plus userWithAuth (template H-3).
            assert_eq!(attributes(*object_attributes), 0x0003_00F2);
            assert_eq!(hex::encode(auth_policy.value()), POLICY_B_SHA384);
            assert_eq!(parameters.ecc_curve(), EccCurve::NistP384);
            assert_eq!(
                parameters.symmetric_definition_object(),
                SymmetricDefinitionObject::AES_256_CFB
            );
            assert_eq!(parameters.ecc_scheme(), EccScheme::Null);
            let _ = p384_key(&public);
        }
        other => panic!("EK 0x81010016 is not ECC: {other:?}"),
    }
    assert_eq!(name.value(), object_name(&public).as_slice());

    // Both are listed among the persistent handles.
    let handles = loaded(&mut tpm, 0x8100_0000);
    assert!(
        handles.contains(&0x8101_0001) && handles.contains(&0x8101_0016),
        "{handles:x?}"
    );
}
