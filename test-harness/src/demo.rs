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
//! 4. The guest asks the key broker (`host-verifier serve`'s service, started here over HTTPS
//!    on loopback with a fresh data directory and SQLite) for a challenge, and gathers one
//!    evidence bundle for its nonce: the VMPL0 SNP report over the vTPM manifest (EK, AK, this
//!    boot's transport key, state, requester VMPL, event-log digest), a TPM quote by the AK,
//!    the PCRs and the event log.
//! 5. It asks the broker to release the payments key (`POST /v1/release`). The broker redeems
//!    the nonce, appraises the bundle against the key's release policy (chain, report,
//!    binding, quote, log replay, MEASUREMENT and reference PCRs, requester VMPL), accepts the
//!    sealed-state epoch, and only then wraps the key for this boot, instance, VMPL1, key name
//!    and nonce; every decision lands in its audit log.
//! 6. The vault imports the key inside VMPL0 and signs; the signature verifies with the public
//!    key the broker published when it generated the key.
//!
//! Then two attacks, each with the package the broker released to the good launch replayed by
//! the host: a launch with one firmware byte changed (MEASUREMENT differs) and a launch of the
//! same firmware with another kernel (only PCR 4 differs). Both are contraindicated, the broker
//! releases nothing, and the vault refuses the captured package.
//!
//! The simulated PSP signs with a TEST chain: the verifier is given those roots explicitly and
//! says so. On real hardware the pinned AMD roots are used and the simulated chain is refused.

use crate::broker::{bundle_json, runtime, sim_trust, DataDir, LocalBroker};
use crate::evidence::collect;
use crate::sim::psp::LaunchConfig;
use crate::sim::SimMachine;
use guest_driver::vault::{VaultClient, VaultClientError};
use host_verifier::broker::api::NewResource;
use host_verifier::broker::client::{BrokerClient, ClientError};
use host_verifier::broker::policy::PolicyDocument;
use host_verifier::Verdict;
use p384::ecdsa::signature::Verifier as _;
use std::collections::BTreeMap;
use std::time::Duration;
use svsm_abi::vault::VaultStatus;
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

/// The demo's key broker: one replica over HTTPS on loopback, SQLite in a fresh data
/// directory, trusting the simulated PSP's TEST roots, holding the payments key under a release
/// policy of the reference values.
pub struct DemoBroker {
    rt: tokio::runtime::Runtime,
    broker: Option<LocalBroker>,
    client: BrokerClient,
    /// The payments key's public key (SEC1), as the broker published it.
    pub payments_public: Vec<u8>,
    since: i64,
    _dir: DataDir,
}

impl DemoBroker {
    /// Starts the broker and provisions the payments key with its policy (as an operator
    /// would, through the admin API).
    pub fn start(mut say: impl FnMut(&str)) -> Result<DemoBroker, DemoError> {
        let firmware = step(
            "read OVMF.fd (apt-get install ovmf)",
            std::fs::read(OVMF_FD),
        )?;
        let reference = reference_measurement(&firmware)?;
        let reference_pcrs = reference_pcrs(&firmware);
        let rt = step("tokio runtime", runtime())?;
        let dir = step("broker init", DataDir::init("demo"))?;
        let trust = step("TEST roots", sim_trust())?;
        let broker = step(
            "start the broker",
            LocalBroker::start(&rt, &dir.path, None, trust, Duration::from_secs(300)),
        )?;
        let client = step("broker client", broker.client(&dir))?;
        let since = now();
        let policy = PolicyDocument {
            snp: serde_json::json!({ "measurements": [hex::encode(reference)] })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            reference_pcrs: reference_pcrs
                .iter()
                .map(|(i, v)| (i.to_string(), hex::encode(v)))
                .collect::<BTreeMap<_, _>>(),
            requester_vmpl: Some(1),
            min_epoch: None,
            ..Default::default()
        };
        step(
            "PUT /v1/admin/policies/payments",
            rt.block_on(client.put_policy("payments", &policy)),
        )?;
        let resource = step(
            "PUT /v1/admin/resources/payments",
            rt.block_on(client.put_resource(
                "payments",
                &NewResource {
                    kind: "ecdsa-p384".into(),
                    usage: vec!["sign".into()],
                    policy: "payments".into(),
                    material: None,
                },
            )),
        )?;
        let payments_public = step(
            "payments public key",
            hex::decode(resource.public_key.unwrap_or_default()),
        )?;
        say(&format!(
            "0. key broker: the service of `host-verifier serve`, started in this process at {} (TLS, self-signed by `broker init`; SQLite); admin API: policy \"payments\" (MEASUREMENT, PCRs 0/4/8/9, requester VMPL1) and resource \"payments\" (ECDSA P-384, generated by the broker, sealed under its master key)",
            broker.url
        ));
        Ok(DemoBroker {
            rt,
            broker: Some(broker),
            client,
            payments_public,
            since,
            _dir: dir,
        })
    }

    /// The audit log since the broker started, a line per decision.
    pub fn audit_lines(&self) -> Result<Vec<String>, DemoError> {
        let rows = step(
            "GET /v1/admin/audit",
            self.rt.block_on(self.client.audit(self.since)),
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}{}",
                    r.action,
                    r.decision,
                    r.subject,
                    if r.reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", r.reasons.join("; "))
                    }
                )
            })
            .collect())
    }
}

impl Drop for DemoBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.stop(&self.rt);
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn reference_pcrs(firmware: &[u8]) -> BTreeMap<usize, [u8; 32]> {
    host_verifier::reference::launch_pcrs(&[
        (ComponentKind::Firmware, firmware),
        (ComponentKind::Kernel, KERNEL),
        (ComponentKind::Initrd, INITRD),
        (ComponentKind::CommandLine, CMDLINE),
    ])
}

/// Runs one scenario against `broker`. `captured` is a package the host captured from another
/// launch: it is replayed to this guest's vault when the broker releases nothing. `say`
/// prints a step.
pub fn run(
    scenario: Scenario,
    captured: Option<&[u8]>,
    broker: &DemoBroker,
    mut say: impl FnMut(&str),
) -> Result<DemoOutcome, DemoError> {
    let firmware = step(
        "read OVMF.fd (apt-get install ovmf)",
        std::fs::read(OVMF_FD),
    )?;
    let reference = reference_measurement(&firmware)?;
    let reference_pcrs = reference_pcrs(&firmware);
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

    let challenge = step(
        "POST /v1/challenge",
        broker.rt.block_on(broker.client.challenge()),
    )?;
    let nonce = step("nonce", hex::decode(&challenge.nonce))?;
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
        "4. guest: POST /v1/challenge -> nonce {}; evidence bundle for it ({} bytes of JSON: SNP report, certificates, vTPM manifest, quote, 24 PCRs, {}-byte event log)",
        challenge.nonce,
        json.len(),
        bundle.event_log.len()
    ));

    let request = step("bundle JSON", bundle_json(&bundle))?;
    let released = broker
        .rt
        .block_on(broker.client.release("payments", request));
    let released = match released {
        Ok(r) => r,
        Err(e @ ClientError::Api { status: 403, .. }) => {
            say("5. broker: POST /v1/release \"payments\" -> 403 refused: the appraisal (TEST roots of the simulated PSP, not AMD's) does not admit the release:");
            for failed in e.failed_checks() {
                say(&format!("   - {} failed: {}", failed.check, failed.reason));
            }
            say("6. broker: contraindicated -> no key released (decision and reasons in its audit log)");
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
                verdict: Verdict::Contraindicated,
                key_released: false,
                signature_verified: false,
                released_package: None,
                replay_refused,
            });
        }
        Err(e) => return step("POST /v1/release", Err(e)),
    };
    say(&format!(
        "5. broker: POST /v1/release \"payments\" -> affirming (MEASUREMENT, reference PCRs, requester VMPL{}, epoch) against the TEST roots of the simulated PSP (not AMD's)",
        released.owner_vmpl
    ));
    let package = {
        use base64::Engine;
        step(
            "package",
            base64::engine::general_purpose::STANDARD.decode(&released.package),
        )?
    };
    let key = step("import", app.import_key(&package))?;
    say(&format!(
        "6. broker: payments key wrapped for this boot's transport key, instance {}, VMPL{}, name \"payments\", nonce (ECDH P-384 + HKDF-SHA384 + AES-256-GCM); vault imported it as key {key}",
        released.instance_id, released.owner_vmpl
    ));
    let sig = step("sign", app.sign(key, b"pay 100 to bob"))?;
    let signature = step("signature", p384::ecdsa::Signature::from_slice(&sig))?;
    let public = step(
        "payments public key",
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&broker.payments_public),
    )?;
    let verified = public.verify(b"pay 100 to bob", &signature).is_ok();
    say(&format!(
        "7. app: signed inside VMPL0 without ever holding the key; the signature verifies with the public key the broker published: {}",
        if verified { "valid" } else { "INVALID" }
    ));
    Ok(DemoOutcome {
        verdict: Verdict::Affirming,
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
    let broker = DemoBroker::start(&mut say)?;
    for scenario in Scenario::ALL {
        say(&format!("\n== {}", scenario.title()));
        let outcome = run(scenario, captured.as_deref(), &broker, &mut say)?;
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
    say("\n== the broker's audit log (GET /v1/admin/audit)");
    let audit = broker.audit_lines()?;
    // Two admin changes, then one decision per scenario.
    ok &= audit.iter().filter(|l| l.starts_with("release ")).count() == Scenario::ALL.len();
    for line in audit {
        say(&format!("   {line}"));
    }
    Ok((outcomes, ok))
}
