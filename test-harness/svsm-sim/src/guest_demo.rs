//! The real-guest part of `make demo` (`svsm-sim demo`), and the test that asserts it: the
//! seeds' flows in Debian's kernel under QEMU + OVMF, on the vTPM and vault of a simulated SNP
//! machine, against the key broker on its embedded default (SQLite, HTTPS on loopback; the
//! guest reaches it through QEMU's user network at 10.0.2.2, its certificate pinned).
//!
//! The operator's side, done here as they would: a runtime policy made from the guest's own
//! initramfs; a release policy pinning the launch MEASUREMENT, the requester VMPL, the vTPM
//! PCRs 4 and 9 computed from the kernel, initrd and command line (`snp-measure guest-pcrs`),
//! the runtime policy and a minimum reputation; two app keys and a disk key; a LUKS2 volume
//! made with Debian's cryptsetup, attached as the guest's virtio disk.
//!
//! Launch 1 (the expected one), the `agent` task: the disk key is asked for before any round
//! and refused; a round is affirmed over every IMA entry of the boot; the app asks its vault
//! for `payments`, which the agent has provisioned, and signs inside VMPL0; the disk key is
//! released, revealed by the vault to its owner and the volume opened with cryptsetup, its
//! file read back; a program that is not in the image runs, the next round names it and the
//! next key (`payments-2`) is refused. Launch 2 boots the same initramfs and command line with
//! a changed kernel (PCR 4 differs): its round is contraindicated and it gets no key at all.

use crate::disk::make_luks_volume;
use crate::guest::{run_guest, CallTarget, GuestError, GuestImage, GuestRun, GuestTpm, RunOptions};
use host_verifier::broker::api::{self, AuditRecord};
use host_verifier::broker::policy::PolicyDocument;
use host_verifier::measured::runtime_policy::{RuntimePolicyDocument, TreeOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_harness::broker::{runtime, sim_trust, DataDir, LocalBroker};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

/// The simulated machine's launch MEASUREMENT (what the policy pins).
pub const MEASUREMENT: [u8; 48] = [0x47; 48];
/// The file the host writes into the encrypted volume.
pub const DISK_FILE: &[u8] = b"written by the host into the encrypted volume\n";
/// The message the app signs.
pub const MESSAGE: &[u8] = b"a payment signed inside VMPL0\n";
/// Bytes appended to the kernel for the changed-kernel launch (its PE image hash changes).
const KERNEL_CHANGE: usize = 4096;

/// Why the demo could not run (a refusal is an outcome, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestDemoError {
    /// Building, booting or a file.
    #[error("{0}")]
    Guest(#[from] GuestError),
    /// The broker.
    #[error("broker: {0}")]
    Broker(String),
    /// The simulated machine.
    #[error("simulated machine: {0}")]
    Machine(String),
    /// Reference values.
    #[error("reference values: {0}")]
    Reference(String),
}

fn broker_err(e: impl std::fmt::Display) -> GuestDemoError {
    GuestDemoError::Broker(e.to_string())
}

/// One launch: the guest's run and the rounds the agent printed (the broker's answers).
#[derive(Debug)]
pub struct Launch {
    /// What the guest left.
    pub run: GuestRun,
    /// Every round's answer, in order.
    pub rounds: Vec<serde_json::Value>,
}

impl Launch {
    fn new(run: GuestRun) -> Launch {
        // The agent's JSON answers (`--json`): every line that parses as an object with a
        // verdict.
        let rounds = run
            .output
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("verdict").is_some())
            .collect();
        Launch { run, rounds }
    }

    /// The `STEP` lines, without the prefix.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.run
            .output
            .lines()
            .filter_map(|l| l.strip_prefix("STEP "))
    }

    /// The step that starts with `prefix`.
    pub fn step(&self, prefix: &str) -> Option<&str> {
        self.steps().find(|s| s.starts_with(prefix))
    }

    /// The guest's output and console, for a failure message.
    pub fn context(&self) -> String {
        format!(
            "task output:\n{}\nconsole:\n{}",
            self.run.output, self.run.console
        )
    }
}

/// What the demo saw.
#[derive(Debug)]
pub struct GuestDemo {
    /// The expected launch.
    pub expected: Launch,
    /// The launch with a changed kernel.
    pub changed_kernel: Launch,
    /// The public key the broker published for `payments` (SEC1).
    pub payments_public: Vec<u8>,
    /// The broker's audit log afterwards.
    pub audit: Vec<AuditRecord>,
    /// Wall time of the whole demo.
    pub elapsed: Duration,
}

impl GuestDemo {
    /// Every outcome the design promises, or the first that is not as promised.
    pub fn check(&self) -> Result<(), String> {
        let e = &self.expected;
        let want = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
        want(
            e.run.status == Some(0),
            "the expected launch's task did not finish",
        )?;
        want(
            e.step("disk key before attestation: refused")
                .is_some_and(|s| s.contains("broker.node_trust")),
            "the disk key was not refused before the first round",
        )?;
        want(
            e.rounds.first().is_some_and(|r| {
                r["verdict"] == "affirming" && r["state"]["trusted"] == serde_json::json!(true)
            }),
            "round 1 of the expected launch was not affirmed",
        )?;
        use p384::ecdsa::signature::Verifier;
        let signed = e.run.file("payments.sig").is_some_and(|sig| {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&self.payments_public);
            let sig = p384::ecdsa::Signature::from_slice(&sig);
            matches!((key, sig), (Ok(k), Ok(s)) if k.verify(MESSAGE, &s).is_ok())
        });
        want(
            signed,
            "the app's signature does not verify with the broker's public key",
        )?;
        want(
            e.run.file("disk-hello").as_deref() == Some(DISK_FILE),
            "the disk did not open, or its file did not read back",
        )?;
        want(
            e.rounds.get(1).is_some_and(|r| {
                r["verdict"] == "contraindicated"
                    && r["failed_checks"]
                        .to_string()
                        .contains("/usr/bin/not-in-the-image")
            }),
            "the round after the tampered binary did not name it",
        )?;
        want(
            e.step("app key payments-2: refused")
                .is_some_and(|s| s.contains("vtpm.ima_policy")),
            "the tampered node got payments-2, or not because of the tampered binary",
        )?;
        want(
            e.step("disk key after the tamper: refused")
                .is_some_and(|s| s.contains("vtpm.ima_policy")),
            "the tampered node got the disk key again",
        )?;
        let c = &self.changed_kernel;
        want(
            c.rounds.first().is_some_and(|r| {
                r["verdict"] == "contraindicated"
                    && r["failed_checks"]
                        .to_string()
                        .contains("vtpm.reference_pcrs")
            }),
            "the changed kernel's round was not refused on the reference PCRs",
        )?;
        let refused_on_pcrs = |prefix: &str| {
            c.step(prefix)
                .is_some_and(|s| s.contains("vtpm.reference_pcrs"))
        };
        want(
            refused_on_pcrs("app key payments: refused")
                && refused_on_pcrs("disk: not opened")
                && c.run.file("disk-hello").is_none(),
            "the changed kernel got a key, or not because of PCR 4",
        )?;
        let releases: Vec<(&str, &str)> = self
            .audit
            .iter()
            .filter(|r| r.action == "release")
            .map(|r| {
                let resource = r
                    .subject
                    .split(' ')
                    .next()
                    .and_then(|s| s.strip_prefix("resource="))
                    .unwrap_or("");
                (resource, r.decision.as_str())
            })
            .filter(|(_, d)| *d == "allowed")
            .collect();
        want(
            releases == [("payments", "allowed"), ("disk", "allowed")],
            &format!("the broker released other than payments and disk once each: {releases:?}"),
        )
    }
}

/// The kernel command line of the demo's launches (the guest reaches the broker at `port`).
fn append(port: u16, der_b64: &str, tamper: bool) -> String {
    format!(
        "ima_policy=tcb svsm.broker=10.0.2.2:{port} svsm.policy=guest svsm.disk=disk \
         svsm.tamper={} svsm.broker_pem={der_b64}",
        u8::from(tamper)
    )
}

/// Boots `image` once on a fresh simulated machine.
fn launch(image: &GuestImage, options: &RunOptions) -> Result<Launch, GuestDemoError> {
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT))
        .map_err(|e| GuestDemoError::Machine(e.to_string()))?;
    let backend =
        Box::new(SvsmBackend::new(&machine).map_err(|e| GuestDemoError::Machine(e.to_string()))?);
    let run = run_guest(
        image,
        GuestTpm::Backend(backend),
        Some(CallTarget::Sim(&machine)),
        options,
    )?;
    Ok(Launch::new(run))
}

/// Runs the demo with the guest `image` (built by [`crate::guest::build`]), saying each step.
pub fn run(
    image: &GuestImage,
    work: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<GuestDemo, GuestDemoError> {
    let start = Instant::now();
    let rt = runtime().map_err(broker_err)?;
    let dir =
        DataDir::init_with_names("guest-demo", &["10.0.2.2".to_owned()]).map_err(broker_err)?;
    let broker = LocalBroker::start(
        &rt,
        &dir.path,
        None,
        sim_trust().map_err(broker_err)?,
        Duration::from_secs(300),
    )
    .map_err(broker_err)?;
    let result = run_with(image, work, &rt, &dir, &broker, say);
    broker.stop(&rt);
    let mut demo = result?;
    demo.elapsed = start.elapsed();
    Ok(demo)
}

fn run_with(
    image: &GuestImage,
    work: &Path,
    rt: &tokio::runtime::Runtime,
    dir: &DataDir,
    broker: &LocalBroker,
    say: &mut dyn FnMut(&str),
) -> Result<GuestDemo, GuestDemoError> {
    let port: u16 = broker
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| broker_err(format!("no port in {}", broker.url)))?;
    let admin = broker.client(dir).map_err(broker_err)?;
    say(&format!(
        "1. broker: {} (SQLite in {}), its certificate pinned by the guest",
        broker.url,
        dir.path.display()
    ));

    // The operator's reference values, made from the files.
    let mut image_policy = RuntimePolicyDocument::from_tree(
        &image.rootfs,
        &TreeOptions {
            mount_point: "/".into(),
            ..TreeOptions::default()
        },
    )
    .map_err(|e| GuestDemoError::Reference(e.to_string()))?;
    // The data disk's files are data that root reads (IMA's tcb policy measures them).
    // It is mounted noexec: nothing there runs.
    image_policy.excludes.push("/mnt/data/".into());
    let paths = image_policy.digests.len();
    rt.block_on(admin.put_ima_policy("guest-image", &image_policy))
        .map_err(broker_err)?;
    let pem = String::from_utf8_lossy(&dir.ca_pem).into_owned();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let expected_options = RunOptions {
        task: "agent".into(),
        append: append(port, &der_b64, true),
        device: crate::guest::TpmDevice::Crb,
        timeout: Duration::from_secs(300),
        broker_port: Some(port),
        disk: Some(work.join("data.img")),
    };
    let kernel = std::fs::read(&image.kernel).map_err(GuestError::Io)?;
    let initrd = std::fs::read(&image.initrd).map_err(GuestError::Io)?;
    let cmdline = crate::guest::kernel_cmdline(&expected_options);
    let pcrs = ovmf::direct_boot::expected_pcrs(&ovmf::direct_boot::DirectBoot {
        kernel: &kernel,
        initrd: Some(&initrd),
        cmdline: &cmdline,
        memory_bytes: crate::guest::GUEST_MEMORY_MIB << 20,
    })
    .map_err(|e| GuestDemoError::Reference(e.to_string()))?;
    let mut reference_pcrs = BTreeMap::new();
    for index in [4usize, 9] {
        let value = pcrs
            .get(&index)
            .ok_or_else(|| GuestDemoError::Reference(format!("no PCR {index}")))?;
        reference_pcrs.insert(index.to_string(), hex::encode(value));
    }
    let mut snp = serde_json::Map::new();
    snp.insert(
        "measurements".into(),
        serde_json::json!([hex::encode(MEASUREMENT)]),
    );
    let policy = PolicyDocument {
        snp,
        reference_pcrs,
        requester_vmpl: Some(1),
        ima_policy: Some("guest-image".into()),
        min_reputation: Some(50),
        ..PolicyDocument::default()
    };
    rt.block_on(admin.put_policy("guest", &policy))
        .map_err(broker_err)?;
    say(&format!(
        "2. operator: runtime policy from the guest's initramfs ({paths} paths, /mnt/data/ excluded); \
         release policy \"guest\": MEASUREMENT, VMPL1, PCR 4 (kernel) and 9 (command line, initrd) \
         computed from the files, the runtime policy, reputation >= 50"
    ));
    let key = |kind: &str, usage: &[&str], material: Option<String>| api::NewResource {
        kind: kind.into(),
        usage: usage.iter().map(|u| (*u).to_owned()).collect(),
        policy: "guest".into(),
        material,
    };
    let payments = rt
        .block_on(admin.put_resource("payments", &key("ecdsa-p384", &["sign", "verify"], None)))
        .map_err(broker_err)?;
    rt.block_on(admin.put_resource("payments-2", &key("ecdsa-p384", &["sign", "verify"], None)))
        .map_err(broker_err)?;
    let disk_key: [u8; 32] = rand::random();
    make_luks_volume(
        expected_options
            .disk
            .as_deref()
            .unwrap_or(Path::new("data.img")),
        &disk_key,
        &[("hello.txt", DISK_FILE)],
    )?;
    use base64::Engine;
    rt.block_on(admin.put_resource(
        "disk",
        &key(
            "secret-256",
            &["reveal"],
            Some(base64::engine::general_purpose::STANDARD.encode(disk_key)),
        ),
    ))
    .map_err(broker_err)?;
    say("3. operator: app keys payments and payments-2 (generated by the broker), disk key \"disk\" \
         of a LUKS2 volume made here with cryptsetup, attached as the guest's /dev/vda");

    say("4. launch 1: the expected kernel (Debian's cloud kernel, the project's initramfs)");
    let started = Instant::now();
    let expected = launch(image, &expected_options)?;
    for step in expected.steps() {
        say(&format!("   guest: {step}"));
    }
    say(&format!(
        "   (boot to power-off {:.0} s under TCG)",
        started.elapsed().as_secs_f64()
    ));

    say("5. launch 2: the same initramfs and command line with a changed kernel (4 KiB appended: its PE hash, PCR 4, differs)");
    let mut changed = kernel.clone();
    changed.extend(std::iter::repeat_n(0u8, KERNEL_CHANGE));
    let changed_path = work.join("vmlinuz-changed");
    std::fs::write(&changed_path, &changed).map_err(GuestError::Io)?;
    let changed_image = GuestImage {
        kernel: changed_path,
        ..image.clone()
    };
    let changed_options = RunOptions {
        append: append(port, &der_b64, false),
        ..expected_options.clone()
    };
    let started = Instant::now();
    let changed_kernel = launch(&changed_image, &changed_options)?;
    for step in changed_kernel.steps() {
        say(&format!("   guest: {step}"));
    }
    say(&format!(
        "   (boot to power-off {:.0} s under TCG)",
        started.elapsed().as_secs_f64()
    ));

    let audit = rt.block_on(admin.audit(0)).map_err(broker_err)?;
    say("6. the broker's audit log (GET /v1/admin/audit):");
    for r in &audit {
        let reasons = if r.reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reasons.join("; "))
        };
        let mut line = format!("   {} {} {}{reasons}", r.action, r.decision, r.subject);
        if line.len() > 200 {
            line.truncate(200);
            line.push_str(" …");
        }
        say(&line);
    }
    Ok(GuestDemo {
        expected,
        changed_kernel,
        payments_public: payments
            .public_key
            .and_then(|k| hex::decode(k).ok())
            .unwrap_or_default(),
        audit,
        elapsed: Duration::ZERO,
    })
}

/// A scratch directory for the demo's files, removed on drop.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    /// A fresh one under the system temp dir.
    pub fn new() -> std::io::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!(
            "svsm-guest-demo-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
