//! `svsm-sim demo` (and `make demo`): the flow the project exists for, end to end, on the
//! simulated SNP machine, printing each step.
//!
//! 1. The reference value: the launch digest of Debian's OVMF.fd for 4 EPYC-Genoa vCPUs,
//!    computed by the `ovmf` crate (what `snp-measure` prints) and put in the verifier policy.
//! 2. The launch: the simulated PSP launches a guest with that MEASUREMENT (or, tampered, one
//!    with a modified firmware byte); the SVSM measures firmware, kernel, initrd and command
//!    line into vTPM PCRs and its event log before the guest runs.
//! 3. An app asks the vault to sign with the payments key: the vault does not have it.
//! 4. The guest gathers one evidence bundle for the broker's nonce: the VMPL0 SNP report over
//!    the vTPM manifest (EK, AK, vault transport key, sealed-state epoch, event-log digest), a
//!    TPM quote by the AK, the PCRs and the event log.
//! 5. The broker (host-verifier) appraises the bundle: chain, report, binding, quote, log
//!    replay, reference values. Only when it is affirming does it wrap the payments key to the
//!    attested transport key, bound to its nonce.
//! 6. The vault imports the key inside VMPL0 and signs; the broker checks the signature.
//!
//! The simulated PSP signs with a TEST chain: the verifier is given those roots explicitly and
//! says so. On real hardware the pinned AMD roots are used and the simulated chain is refused.

use crate::evidence::collect;
use crate::sim::psp::LaunchConfig;
use crate::sim::SimMachine;
use guest_driver::vault::{VaultClient, VaultClientError};
use host_verifier::bundle_verify::{verify_bundle, BundleContext};
use host_verifier::trust::ProductAnchors;
use host_verifier::{Policy, TrustStore, Verdict, Verifier};
use p384::ecdsa::signature::Verifier as _;
use std::sync::Arc;
use std::time::SystemTime;
use svsm_abi::attest::VtpmManifestV1;
use svsm_abi::snp::Product;
use svsm_abi::vault::{KeyKind, Usage, VaultStatus};
use svsm_core::measure::{Component, ComponentKind};
use svsm_core::platform::Vmpl;

/// Where Debian's OVMF image is (installed by scripts/bootstrap.sh).
pub const OVMF_FD: &str = "/usr/share/ovmf/OVMF.fd";

/// Why the demo could not run (an appraisal that says no is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step failed.
    #[error("{step}: {message}")]
    Step {
        /// Which step.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
}

fn step<T, E: std::fmt::Display>(step: &'static str, r: Result<T, E>) -> Result<T, DemoError> {
    r.map_err(|e| DemoError::Step {
        step,
        message: e.to_string(),
    })
}

/// What one run showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOutcome {
    /// The appraisal's verdict.
    pub verdict: Verdict,
    /// Whether the broker released the key.
    pub key_released: bool,
    /// Whether the app's signature verified with the broker's public key.
    pub signature_verified: bool,
}

/// The reference value: the launch digest of OVMF.fd (4 vCPUs EPYC-Genoa, features 0x1).
pub fn reference_measurement(firmware: &[u8]) -> Result<[u8; 48], DemoError> {
    let fw = step("parse OVMF.fd", ovmf::firmware::Firmware::parse(firmware))?;
    let params = ovmf::snp::LaunchParams {
        vcpus: 4,
        vcpu_sig: ovmf::VcpuType::EpycGenoa.signature(),
        guest_features: 0x1,
        vmm: Default::default(),
        hashes: None,
        ovmf_hash: None,
    };
    Ok(step("launch digest", ovmf::snp::snp_launch_digest(&fw, &params))?.0)
}

/// Runs the flow; `tampered` launches a firmware with one byte changed. `say` prints a step.
pub fn run(tampered: bool, mut say: impl FnMut(&str)) -> Result<DemoOutcome, DemoError> {
    let firmware = step(
        "read OVMF.fd (apt-get install ovmf)",
        std::fs::read(OVMF_FD),
    )?;
    let reference = reference_measurement(&firmware)?;
    say(&format!(
        "1. reference value: snp-measure OVMF.fd, 4 x EPYC-Genoa = {}",
        hex::encode(reference)
    ));

    let mut launched_fw = firmware.clone();
    if tampered {
        // The host swaps in a firmware with one byte changed (inside a measured page).
        if let Some(b) = launched_fw.get_mut(0x1000) {
            *b ^= 0x01;
        }
    }
    let launched = reference_measurement(&launched_fw)?;
    let machine = step(
        "boot the simulated machine",
        SimMachine::new(LaunchConfig::genoa(launched)),
    )?;
    step(
        "measure launch components",
        machine.module().measure_launch(&[
            Component {
                kind: ComponentKind::Firmware,
                bytes: &launched_fw,
            },
            Component {
                kind: ComponentKind::Kernel,
                bytes: b"vmlinuz (demo kernel)",
            },
            Component {
                kind: ComponentKind::Initrd,
                bytes: b"initrd (demo)",
            },
            Component {
                kind: ComponentKind::CommandLine,
                bytes: b"console=ttyS0\0",
            },
        ]),
    )?;
    say(&format!(
        "2. launch: PSP MEASUREMENT {}{}; the SVSM measured firmware, kernel, initrd, cmdline into PCRs 0/4/9/8",
        hex::encode(launched),
        if tampered { " (TAMPERED firmware)" } else { "" }
    ));

    let vmpl1 = Vmpl::new(1).unwrap_or(Vmpl::ZERO);
    let mut app = step(
        "open the vault",
        VaultClient::probe(machine.transport(vmpl1)),
    )?;
    let have = step("list keys", app.list())?;
    say(&format!("3. app: sign \"pay 100 to bob\" with the payments key -> the vault holds {} keys: it must be provisioned", have.len()));

    let nonce: [u8; 32] = rand::random();
    let bundle = step(
        "gather evidence",
        collect(
            machine.transport(vmpl1),
            machine.transport(vmpl1),
            &nonce,
            &[],
        ),
    )?;
    let json = step("encode bundle", bundle.to_json())?;
    say(&format!(
        "4. guest: evidence bundle for the broker's nonce {} ({} bytes of JSON: SNP report, certificates, vTPM manifest, quote, 24 PCRs, {}-byte event log)",
        hex::encode(nonce),
        json.len(),
        bundle.event_log.len()
    ));

    let chain = machine.module().psp_mut().chain().clone();
    let anchors = step(
        "load the simulated roots",
        ProductAnchors::load(
            Product::Genoa,
            &chain.ark_der,
            &chain.ask_der,
            &chain.ask_der,
        ),
    )?;
    let policy = step(
        "policy",
        Policy::from_toml(&format!("measurements = [\"{}\"]", hex::encode(reference))),
    )?;
    let verifier = Verifier::with_trust_store(Arc::new(TrustStore::new(vec![anchors])), policy);
    let ctx = BundleContext::new(&verifier, &nonce, SystemTime::now());
    let appraisal = step("appraise", verify_bundle(&bundle, &ctx))?;
    let verdict = appraisal.verdict();
    say(&format!(
        "5. broker: host-verifier appraised the bundle against the TEST roots of the simulated PSP (not AMD's): {}",
        appraisal.verdict_str()
    ));
    for failed in appraisal.failures() {
        let why = failed.failure().map(|f| f.to_string()).unwrap_or_default();
        say(&format!("   - {} failed: {why}", failed.id));
    }

    if verdict != Verdict::Affirming {
        let refused = matches!(
            app.sign(1, b"pay 100 to bob"),
            Err(VaultClientError::Vault(VaultStatus::KeyNotFound))
        );
        say(&format!(
            "6. broker: no key for a contraindicated guest; the app still cannot sign ({})",
            if refused { "KeyNotFound" } else { "unexpected" }
        ));
        return Ok(DemoOutcome {
            verdict,
            key_released: false,
            signature_verified: false,
        });
    }

    // The broker wraps its payments key to the transport key the appraised manifest carries.
    let manifest = step("manifest", VtpmManifestV1::parse(&bundle.manifest))?;
    let payments_key = p384::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let ephemeral = p384::SecretKey::random(&mut rand::thread_rng());
    let iv: [u8; 12] = rand::random();
    let (e_pub, wrapped) = svsm_core::vault::wrap_for_import(
        manifest.transport_public,
        &ephemeral,
        &iv,
        &nonce,
        KeyKind::EcdsaP384,
        Usage::SIGN,
        &payments_key.to_bytes(),
    )
    .ok_or(DemoError::Step {
        step: "wrap",
        message: "wrapping failed".into(),
    })?;
    let key = step(
        "import",
        app.import_key(
            KeyKind::EcdsaP384,
            Usage::SIGN,
            &nonce,
            &e_pub,
            &iv,
            &wrapped,
        ),
    )?;
    say(&format!(
        "6. broker: affirming -> payments key wrapped to the attested transport key (ECDH P-384 + HKDF-SHA384 + AES-256-GCM, bound to the nonce); vault imported it as key {key}"
    ));
    let sig = step("sign", app.sign(key, b"pay 100 to bob"))?;
    let signature = step("signature", p384::ecdsa::Signature::from_slice(&sig))?;
    let verified = payments_key
        .verifying_key()
        .verify(b"pay 100 to bob", &signature)
        .is_ok();
    say(&format!(
        "7. app: signed inside VMPL0 without ever holding the key; broker verifies the signature with its public key: {}",
        if verified { "valid" } else { "INVALID" }
    ));
    Ok(DemoOutcome {
        verdict,
        key_released: true,
        signature_verified: verified,
    })
}
