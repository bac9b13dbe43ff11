//! The vTPM's standard identity (docs/identity.md). At manufacture VMPL0 issues X.509 EK
//! certificates for the vTPM's three EKs and writes them, with the issuing CA's certificate,
//! to the TCG NV indices under the platform hierarchy, write-locked; then the platform
//! hierarchy is locked for good (the engine clears phEnable after every Startup), so no guest
//! can replace them, change the endorsement seed, or clear through the platform.
//!
//! The CA key (P-384) belongs to this instance: derived from the vault master key (so only
//! VMPL0 of this launch, with this sealed state, has it), the instance id and the RSA EK. A
//! reboot with the same sealed state re-derives the same key; a fresh launch has new seeds,
//! a new EK and so a new CA. Without a root key it is random (and nothing is persisted).
//! The attested vTPM manifest carries its public key; its certificate carries the SNP report
//! that binds it.
//!
//! Every EK public key certified here comes from TPM2_CreatePrimary in the endorsement
//! hierarchy with the profile's template, checked against the template, never from a
//! persistent handle a guest could have refilled.

pub mod cert;

use crate::keys::KeyHierarchy;
use crate::platform::{Entropy, SecureProcessor, Vmpl};
use crate::tpm::{TpmEngine, TpmEngineError, MAX_TPM_BUFFER};
use crate::tpm2::command::{self, ResponseError, TooLarge, TPM_RC_RETRY, TPM_RH_ENDORSEMENT};
use crate::tpm2::platform as nv;
use crate::tpm2::templates::KeyTemplate;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use cert::{EkKey, TpmFacts};
use sha2::{Digest, Sha256, Sha384};
use svsm_abi::identity::{
    EK_CA_CERT_INDEX, EK_CERT_ECC_P256_INDEX, EK_CERT_ECC_P384_INDEX, EK_CERT_RSA_2048_INDEX,
    EK_IDENTITY_INDICES, MAX_EK_CERT_SIZE,
};
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

/// HKDF salt of the EK CA key derivation (from the vault master key).
const CA_SALT: &[u8] = b"svsm-vhsm ek-ca v1";

/// Why the vTPM has no EK certificates (the manifest then carries no CA key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] TpmEngineError),
    /// A command of the provisioning returned an error response code.
    #[error("TPM2_{command} failed with TPM response code {rc:#x}")]
    Tpm {
        /// The command.
        command: &'static str,
        /// Its response code.
        rc: u32,
    },
    /// A response is malformed.
    #[error("TPM2_{command} returned a malformed response ({field})")]
    Malformed {
        /// The command.
        command: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The key the endorsement seed gave is not of its template.
    #[error("the {0} from the endorsement seed does not match its template")]
    UnexpectedKey(&'static str),
    /// No entropy for a CA key (no root key to derive it from).
    #[error("no entropy for the EK CA key")]
    Entropy,
    /// DER encoding failed.
    #[error("certificate encoding failed")]
    Encoding,
    /// A certificate does not fit an NV index.
    #[error("certificate for NV index {index:#010x} is {size} bytes (at most {max})")]
    TooLarge {
        /// The index.
        index: u32,
        /// The certificate's size.
        size: usize,
        /// The most an index holds.
        max: usize,
    },
}

fn map_response(command: &'static str) -> impl Fn(ResponseError) -> IdentityError {
    move |e| match e {
        ResponseError::Tpm(rc) => IdentityError::Tpm { command, rc },
        ResponseError::Malformed(field) => IdentityError::Malformed { command, field },
    }
}

/// The vTPM identity of this boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EkIdentity {
    /// The EK CA's public key, SEC1 uncompressed P-384.
    pub ca_public: [u8; 97],
    /// The RSA EK's TPMT_PUBLIC (the manifest's EK), re-derived at boot.
    pub ek_rsa_public: Vec<u8>,
    /// True when this boot wrote the certificates (the state changed and must be sealed).
    pub provisioned: bool,
}

/// Runs one provisioning command; returns the successful response.
fn run<T: TpmEngine>(
    tpm: &mut T,
    name: &'static str,
    cmd: Result<Vec<u8>, TooLarge>,
) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let cmd = cmd.map_err(|_| IdentityError::Malformed {
        command: name,
        field: "command too large to marshal",
    })?;
    let mut response = Zeroizing::new(vec![0u8; MAX_TPM_BUFFER]);
    for _ in 0..crate::tpm2::MAX_RETRIES {
        let n = tpm.execute_provisioning(&cmd, &mut response)?;
        let rc = response.get(..n).and_then(command::response_code);
        if rc != Some(TPM_RC_RETRY) {
            response.truncate(n);
            return match rc {
                Some(0) => Ok(response),
                Some(rc) => Err(IdentityError::Tpm { command: name, rc }),
                None => Err(IdentityError::Malformed {
                    command: name,
                    field: "response header",
                }),
            };
        }
    }
    Err(IdentityError::Tpm {
        command: name,
        rc: TPM_RC_RETRY,
    })
}

/// The TPMT_PUBLIC the endorsement seed gives for `template` (created and flushed again).
fn endorsement_key<T: TpmEngine>(
    tpm: &mut T,
    template: &KeyTemplate,
) -> Result<Vec<u8>, IdentityError> {
    let resp = run(
        tpm,
        "CreatePrimary",
        command::create_primary(TPM_RH_ENDORSEMENT, &template.template()),
    )?;
    let (handle, public) =
        command::parse_create_primary_public(&resp).map_err(map_response("CreatePrimary"))?;
    run(tpm, "FlushContext", command::flush_context(handle))?;
    if !template.matches(&public) {
        return Err(IdentityError::UnexpectedKey(template.name));
    }
    Ok(public)
}

/// The EK CA's signing key for this instance.
fn ca_key<R: Entropy>(
    keys: Option<&KeyHierarchy>,
    instance_id: &[u8; 16],
    ek_rsa_public: &[u8],
    rng: &mut R,
) -> Result<p384::ecdsa::SigningKey, IdentityError> {
    let ek_digest = Sha256::digest(ek_rsa_public);
    for counter in 0u8..16 {
        let mut scalar = Zeroizing::new([0u8; 48]);
        match keys {
            Some(keys) => {
                let hk = hkdf::Hkdf::<Sha384>::new(Some(CA_SALT), keys.vault_master());
                let ek_digest: [u8; 32] = ek_digest.into();
                let info = [instance_id.as_slice(), ek_digest.as_slice(), &[counter]];
                hk.expand_multi_info(&info, scalar.as_mut())
                    .map_err(|_| IdentityError::Encoding)?;
            }
            None => rng
                .fill(scalar.as_mut())
                .map_err(|_| IdentityError::Entropy)?,
        }
        // A 48-byte string is a valid scalar except with negligible probability: next counter.
        if let Ok(key) = p384::ecdsa::SigningKey::from_slice(scalar.as_ref()) {
            return Ok(key);
        }
    }
    Err(IdentityError::Entropy)
}

fn sec1(key: &p384::ecdsa::SigningKey) -> Result<[u8; 97], IdentityError> {
    let point = key.verifying_key().to_encoded_point(false);
    point
        .as_bytes()
        .try_into()
        .map_err(|_| IdentityError::Encoding)
}

pub use svsm_abi::identity::ek_ca_report_data as ca_report_data;

/// The facts for the EK certificates' subjectAltName, read from the TPM's fixed properties.
fn tpm_facts<T: TpmEngine>(tpm: &mut T) -> Result<TpmFacts, IdentityError> {
    const FIRST: u32 = 0x100; // TPM_PT_FIXED
    let resp = run(tpm, "GetCapability", nv::get_tpm_properties(FIRST, 13))?;
    let props = nv::parse_tpm_properties(&resp).map_err(map_response("GetCapability"))?;
    let get = |p: u32| props.iter().find(|(k, _)| *k == p).map(|(_, v)| *v);
    let mut model = String::new();
    for p in 0x106..=0x109 {
        for byte in get(p).unwrap_or(0).to_be_bytes() {
            if byte.is_ascii_graphic() || byte == b' ' {
                model.push(char::from(byte));
            }
        }
    }
    let model = String::from(model.trim());
    Ok(TpmFacts {
        manufacturer: get(0x105).unwrap_or(0),
        model: if model.is_empty() {
            String::from("svsm-vhsm vTPM")
        } else {
            model
        },
        firmware_version: get(0x10B).unwrap_or(0),
        level: get(0x101).unwrap_or(0),
        revision: get(0x102).unwrap_or(0),
    })
}

/// True when `index` holds a certificate the platform wrote and locked.
fn provisioned<T: TpmEngine>(tpm: &mut T, index: u32) -> Result<bool, IdentityError> {
    let cmd = nv::nv_read_public(index).map_err(|_| IdentityError::Encoding)?;
    let mut response = vec![0u8; MAX_TPM_BUFFER];
    let n = tpm.execute_provisioning(&cmd, &mut response)?;
    let resp = response.get(..n).unwrap_or(&[]);
    match command::response_code(resp) {
        Some(nv::TPM_RC_HANDLE_1) => Ok(false),
        _ => {
            let public = nv::parse_nv_read_public(resp).map_err(map_response("NV_ReadPublic"))?;
            let wanted = nv::nv_attr::PLATFORMCREATE
                | nv::nv_attr::WRITTEN
                | nv::nv_attr::WRITELOCKED
                | nv::EK_CERT_NV_ATTRIBUTES;
            Ok(public.attributes & wanted == wanted)
        }
    }
}

/// Defines `index` under the platform hierarchy (replacing a half-written one), writes `der`
/// and locks it.
fn write_index<T: TpmEngine>(tpm: &mut T, index: u32, der: &[u8]) -> Result<(), IdentityError> {
    let size = u16::try_from(der.len())
        .ok()
        .filter(|s| usize::from(*s) <= MAX_EK_CERT_SIZE)
        .ok_or(IdentityError::TooLarge {
            index,
            size: der.len(),
            max: MAX_EK_CERT_SIZE,
        })?;
    let define = nv::nv_define_space_platform(index, nv::EK_CERT_NV_ATTRIBUTES, size);
    match run(tpm, "NV_DefineSpace", define.clone()) {
        Ok(_) => {}
        Err(IdentityError::Tpm { rc, .. }) if rc == nv::TPM_RC_NV_DEFINED => {
            // Left by an interrupted provisioning (nothing else can define platform indices).
            run(
                tpm,
                "NV_UndefineSpace",
                nv::nv_undefine_space_platform(index),
            )?;
            run(tpm, "NV_DefineSpace", define)?;
        }
        Err(e) => return Err(e),
    }
    for (i, chunk) in der.chunks(nv::NV_WRITE_CHUNK).enumerate() {
        // At most two chunks of 1024 in a 2048-byte index: the offset fits a u16.
        let offset = u16::try_from(i * nv::NV_WRITE_CHUNK).map_err(|_| IdentityError::Encoding)?;
        run(tpm, "NV_Write", nv::nv_write_platform(index, chunk, offset))?;
    }
    run(tpm, "NV_WriteLock", nv::nv_write_lock_platform(index))?;
    Ok(())
}

/// Issues and writes the certificates (when the RSA EK certificate index is not yet a
/// platform-written, locked index), and returns this boot's identity. Must run in the engine's
/// provisioning window (right after manufacture or restore); the caller locks the platform
/// hierarchy afterwards whatever the outcome.
pub fn establish<T: TpmEngine, P: SecureProcessor, R: Entropy>(
    tpm: &mut T,
    keys: Option<&KeyHierarchy>,
    instance_id: &[u8; 16],
    psp: &mut P,
    rng: &mut R,
) -> Result<EkIdentity, IdentityError> {
    let ek_rsa_public = endorsement_key(tpm, &KeyTemplate::ek_rsa_l1())?;
    let ca = ca_key(keys, instance_id, &ek_rsa_public, rng)?;
    let ca_public = sec1(&ca)?;
    if provisioned(tpm, EK_CERT_RSA_2048_INDEX)? {
        return Ok(EkIdentity {
            ca_public,
            ek_rsa_public,
            provisioned: false,
        });
    }
    let ek_p256 = endorsement_key(tpm, &KeyTemplate::ek_ecc_l2())?;
    let ek_p384 = endorsement_key(tpm, &KeyTemplate::ek_ecc_h3())?;
    let facts = tpm_facts(tpm)?;
    // Without a report the CA is still bound through the attested manifest; only a verifier
    // holding certificates alone cannot appraise it (it is told so: the extension is absent).
    let report = psp
        .attestation_report(&ca_report_data(&ca_public), Vmpl::ZERO)
        .ok();
    let report_bytes: Option<&[u8; 1184]> =
        report.as_ref().and_then(|r| r.as_bytes().try_into().ok());

    let mut certs: Vec<(u32, Vec<u8>)> = Vec::with_capacity(EK_IDENTITY_INDICES.len());
    for index in EK_IDENTITY_INDICES {
        let der = match index {
            EK_CA_CERT_INDEX => cert::ca_certificate(&ca, &ca_public, report_bytes)?,
            EK_CERT_ECC_P256_INDEX => {
                let (x, y) = ecc_point(&ek_p256, 32)?;
                cert::ek_certificate(&ca, &ca_public, EkKey::P256 { x, y }, &ek_p256, &facts)?
            }
            EK_CERT_ECC_P384_INDEX => {
                let (x, y) = ecc_point(&ek_p384, 48)?;
                cert::ek_certificate(&ca, &ca_public, EkKey::P384 { x, y }, &ek_p384, &facts)?
            }
            _ => {
                let modulus = rsa_modulus(&ek_rsa_public)?;
                let key = EkKey::Rsa { modulus };
                cert::ek_certificate(&ca, &ca_public, key, &ek_rsa_public, &facts)?
            }
        };
        certs.push((index, der));
    }
    for (index, der) in &certs {
        write_index(tpm, *index, der)?;
    }
    Ok(EkIdentity {
        ca_public,
        ek_rsa_public,
        provisioned: true,
    })
}

/// The modulus at the end of an L-1 EK's TPMT_PUBLIC (its template was checked).
fn rsa_modulus(public: &[u8]) -> Result<&[u8], IdentityError> {
    public
        .len()
        .checked_sub(256)
        .and_then(|at| public.get(at..))
        .ok_or(IdentityError::UnexpectedKey("EK RSA 2048 (L-1)"))
}

/// The two coordinates at the end of an ECC EK's TPMT_PUBLIC (its template was checked).
fn ecc_point(public: &[u8], size: usize) -> Result<(&[u8], &[u8]), IdentityError> {
    let unique = public
        .len()
        .checked_sub(2 * (2 + size))
        .and_then(|at| public.get(at..))
        .ok_or(IdentityError::UnexpectedKey("ECC EK"))?;
    let x = unique.get(2..2 + size);
    let y = unique.get(4 + size..);
    x.zip(y).ok_or(IdentityError::UnexpectedKey("ECC EK"))
}
