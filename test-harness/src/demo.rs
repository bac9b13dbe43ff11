//! `svsm-sim demo` (and `make demo`): the flow the project exists for, end to end, on the
//! simulated SNP machine, printing each step.
//!
//! 1. Reference values, computed from the files as a user would: the launch digest of Debian's
//!    OVMF.fd for 4 EPYC-Genoa vCPUs (the `ovmf` crate, what `snp-measure` prints) for the
//!    policy, and the PCRs that firmware, kernel, initrd and command line give
//!    (`host_verifier::reference`, what `host-verifier bundle reference-pcrs` prints).
//! 2. The launch: the simulated PSP launches a guest; the SVSM measures firmware, kernel,
//!    initrd and command line into vTPM PCRs and its event log before the guest runs.
//! 3. An app at VMPL1 asks the vault to sign with the payments key: the vault does not have it.
//! 4. The guest gathers one evidence bundle for the broker's nonce: the VMPL0 SNP report over
//!    the vTPM manifest (EK, AK, this boot's transport key, state, requester VMPL, event-log
//!    digest), a TPM quote by the AK, the PCRs and the event log.
//! 5. The broker (host-verifier) appraises the bundle: chain, report, binding, quote, log
//!    replay, MEASUREMENT and reference PCRs, requester VMPL. Only when it is affirming does it
//!    wrap the payments key for this boot, instance, VMPL1, key name and nonce.
//! 6. The vault imports the key inside VMPL0 and signs; the broker checks the signature.
//!
//! Then two attacks, each with the package the broker released to the good launch replayed by
//! the host: a launch with one firmware byte changed (MEASUREMENT differs) and a launch of the
//! same firmware with another kernel (only PCR 4 differs). Both are contraindicated, the broker
//! releases nothing, and the vault refuses the captured package.
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
use svsm_abi::attest::VtpmManifestV2;
use svsm_abi::snp::Product;
use svsm_abi::vault::{KeyKind, Usage, VaultStatus};
use svsm_core::measure::{Component, ComponentKind};
use svsm_core::platform::Vmpl;
use svsm_core::vault::ImportTarget;

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

/// The launches the demo makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Exactly the reference firmware, kernel, initrd and command line.
    Expected,
    /// One firmware byte changed: MEASUREMENT differs.
    TamperedFirmware,
    /// The reference firmware with another kernel: MEASUREMENT is the same, PCR 4 is not.
    TamperedKernel,
}

impl Scenario {
    /// Every scenario, in demo order.
    pub const ALL: [Scenario; 3] = [
        Scenario::Expected,
        Scenario::TamperedFirmware,
        Scenario::TamperedKernel,
    ];

    /// A heading for the demo output.
    pub const fn title(self) -> &'static str {
        match self {
            Scenario::Expected => "expected launch",
            Scenario::TamperedFirmware => "tampered launch: the host changed one firmware byte",
            Scenario::TamperedKernel => {
                "tampered launch: same firmware (same MEASUREMENT), another kernel"
            }
        }
    }
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
    /// The package the broker released (the host can capture it on its way to the guest).
    pub released_package: Option<Vec<u8>>,
    /// How the vault answered the replay of a package captured from another launch.
    pub replay_refused: Option<VaultStatus>,
}

/// The demo's expected launch files.
const KERNEL: &[u8] = b"vmlinuz (demo kernel)";
const KERNEL_BACKDOORED: &[u8] = b"vmlinuz (demo kernel, with a backdoor)";
const INITRD: &[u8] = b"initrd (demo)";
const CMDLINE: &[u8] = b"console=ttyS0\0";
/// The name the broker gives the released key.
pub const KEY_NAME: &[u8] = b"payments";

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

/// Runs one scenario. `captured` is a package the host captured from another launch: it is
/// replayed to this guest's vault when the broker releases nothing. `say` prints a step.
pub fn run(
    scenario: Scenario,
    captured: Option<&[u8]>,
    mut say: impl FnMut(&str),
) -> Result<DemoOutcome, DemoError> {
    let firmware = step(
        "read OVMF.fd (apt-get install ovmf)",
        std::fs::read(OVMF_FD),
    )?;
    let reference = reference_measurement(&firmware)?;
    let reference_pcrs = host_verifier::reference::launch_pcrs(&[
        (ComponentKind::Firmware, &firmware),
        (ComponentKind::Kernel, KERNEL),
        (ComponentKind::Initrd, INITRD),
        (ComponentKind::CommandLine, CMDLINE),
    ]);
    say(&format!(
        "1. reference values, from the files: snp-measure OVMF.fd, 4 x EPYC-Genoa = {}; PCRs of firmware, kernel, initrd, cmdline: {}",
        hex::encode(reference),
        reference_pcrs
            .iter()
            .map(|(i, v)| format!("{i}={}..", hex::encode(&v[..4])))
            .collect::<Vec<_>>()
            .join(" ")
    ));

    let mut launched_fw = firmware.clone();
    if scenario == Scenario::TamperedFirmware {
        // The host swaps in a firmware with one byte changed (inside a measured page).
        if let Some(b) = launched_fw.get_mut(0x1000) {
            *b ^= 0x01;
        }
    }
    let kernel = if scenario == Scenario::TamperedKernel {
        KERNEL_BACKDOORED
    } else {
        KERNEL
    };
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
                bytes: kernel,
            },
            Component {
                kind: ComponentKind::Initrd,
                bytes: INITRD,
            },
            Component {
                kind: ComponentKind::CommandLine,
                bytes: CMDLINE,
            },
        ]),
    )?;
    say(&format!(
        "2. launch: PSP MEASUREMENT {}{}; the SVSM measured firmware, kernel{}, initrd, cmdline into PCRs 0/4/9/8",
        hex::encode(launched),
        if scenario == Scenario::TamperedFirmware { " (TAMPERED firmware)" } else { "" },
        if scenario == Scenario::TamperedKernel { " (ANOTHER kernel)" } else { "" },
    ));

    let vmpl1 = Vmpl::new(1).unwrap_or(Vmpl::ZERO);
    let mut app = step(
        "open the vault",
        VaultClient::probe(machine.transport(vmpl1)),
    )?;
    let have = step("list keys", app.list())?;
    say(&format!("3. app (VMPL1): sign \"pay 100 to bob\" with the payments key -> the vault holds {} keys: it must be provisioned", have.len()));

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
    let mut ctx = BundleContext::new(&verifier, &nonce, SystemTime::now());
    ctx.expected_pcrs = reference_pcrs;
    // The broker releases to VMPL1 only: the attestation must have been asked for there.
    ctx.requester_vmpl = Some(1);
    let appraisal = step("appraise", verify_bundle(&bundle, &ctx))?;
    let verdict = appraisal.verdict();
    say(&format!(
        "5. broker: host-verifier appraised the bundle (MEASUREMENT, reference PCRs, requester VMPL1) against the TEST roots of the simulated PSP (not AMD's): {}",
        appraisal.verdict_str()
    ));
    for failed in appraisal.failures() {
        let why = failed.failure().map(|f| f.to_string()).unwrap_or_default();
        say(&format!("   - {} failed: {why}", failed.id));
    }

    if verdict != Verdict::Affirming {
        say("6. broker: contraindicated -> no key released");
        let replay_refused = match captured {
            Some(package) => {
                let refused = match app.import_key(package) {
                    Err(VaultClientError::Vault(status)) => Some(status),
                    Ok(_) | Err(_) => None,
                };
                say(&format!(
                    "   host: replays the package the broker released to the expected launch -> vault: {}",
                    match refused {
                        Some(s) => format!("refused ({s:?})"),
                        None => "ACCEPTED (unexpected)".to_owned(),
                    }
                ));
                refused
            }
            None => None,
        };
        let still_missing = matches!(
            app.sign(1, b"pay 100 to bob"),
            Err(VaultClientError::Vault(VaultStatus::KeyNotFound))
        );
        say(&format!(
            "7. app: still cannot sign ({})",
            if still_missing {
                "KeyNotFound"
            } else {
                "unexpected"
            }
        ));
        return Ok(DemoOutcome {
            verdict,
            key_released: false,
            signature_verified: false,
            released_package: None,
            replay_refused,
        });
    }

    // The broker wraps its payments key for what the appraised manifest names.
    let manifest = step("manifest", VtpmManifestV2::parse(&bundle.manifest))?;
    let payments_key = p384::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let ephemeral = p384::SecretKey::random(&mut rand::thread_rng());
    let iv: [u8; 12] = rand::random();
    let owner = step(
        "requester VMPL",
        Vmpl::new(manifest.module.requester_vmpl).ok_or("VMPL above 3"),
    )?;
    let package = step(
        "wrap",
        svsm_core::vault::wrap_for_import(
            &ImportTarget {
                kind: KeyKind::EcdsaP384,
                usage: Usage::SIGN,
                owner,
                instance_id: manifest.module.instance_id,
                recipient: manifest.module.transport_public,
                name: KEY_NAME,
                nonce: &nonce,
            },
            &ephemeral,
            &iv,
            &payments_key.to_bytes(),
        ),
    )?;
    let key = step("import", app.import_key(&package))?;
    say(&format!(
        "6. broker: affirming -> payments key wrapped for this boot's transport key, instance {}, VMPL{}, name \"payments\", nonce (ECDH P-384 + HKDF-SHA384 + AES-256-GCM); vault imported it as key {key}",
        hex::encode(manifest.module.instance_id),
        owner.level()
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
        released_package: Some(package),
        replay_refused: None,
    })
}

/// Runs every scenario in order, replaying the expected launch's package in the others.
/// Returns the outcomes and whether each is what the design promises.
pub fn run_all(
    mut say: impl FnMut(&str),
) -> Result<(Vec<(Scenario, DemoOutcome)>, bool), DemoError> {
    let mut outcomes = Vec::new();
    let mut captured: Option<Vec<u8>> = None;
    let mut ok = true;
    for scenario in Scenario::ALL {
        say(&format!("\n== {}", scenario.title()));
        let outcome = run(scenario, captured.as_deref(), &mut say)?;
        ok &= match scenario {
            Scenario::Expected => {
                outcome.verdict == Verdict::Affirming
                    && outcome.key_released
                    && outcome.signature_verified
            }
            Scenario::TamperedFirmware | Scenario::TamperedKernel => {
                outcome.verdict == Verdict::Contraindicated
                    && !outcome.key_released
                    && outcome.replay_refused.is_some()
            }
        };
        if captured.is_none() {
            captured = outcome.released_package.clone();
        }
        outcomes.push((scenario, outcome));
    }
    Ok((outcomes, ok))
}
