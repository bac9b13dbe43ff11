//! The guest agent in the real Linux guest (Debian's cloud kernel under QEMU + OVMF, IMA on,
//! the vTPM and the SVSM call channel of a simulated machine) against the key broker on the
//! host, reached through QEMU's user network (10.0.2.2 is the host's loopback; the broker's
//! certificate pinned): a round of continuous attestation appraising every IMA entry of the
//! boot against a runtime policy made from the guest's own initramfs; an app that asks its
//! vault for a key by name and gets it provisioned through the agent, signing inside VMPL0;
//! then a program that is not in the image runs, and the next round is contraindicated naming
//! it, and the next key the app asks for is refused. One boot (10-40 s under TCG).

use host_verifier::broker::api;
use host_verifier::broker::policy::PolicyDocument;
use host_verifier::measured::runtime_policy::{RuntimePolicyDocument, TreeOptions};
use std::path::PathBuf;
use std::time::Duration;
use svsm_sim::guest::{build, default_guest_dir, run_guest, RunOptions, TpmDevice};
use test_harness::broker::{runtime, sim_trust, DataDir, LocalBroker};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::SimMachine;
use test_harness::tpm_backend::SvsmBackend;

/// The simulated machine's launch MEASUREMENT.
const MEASUREMENT: [u8; 48] = [0x47; 48];

fn guest_binaries() -> Vec<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    svsm_sim::guest::guest_binaries(dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_agent_attests_the_real_guest_provisions_a_key_and_a_tampered_guest_is_refused() {
    let image = build(&default_guest_dir(), &guest_binaries())
        .unwrap_or_else(|e| panic!("guest build: {e}"));
    let rt = runtime().unwrap();
    let dir = DataDir::init_with_names("guest-agent", &["10.0.2.2".to_owned()]).unwrap();
    let broker = LocalBroker::start(
        &rt,
        &dir.path,
        None,
        sim_trust().unwrap(),
        Duration::from_secs(300),
    )
    .unwrap();
    let port: u16 = broker.url.rsplit(':').next().unwrap().parse().unwrap();
    let admin = broker.client(&dir).unwrap();

    // The runtime policy: every file of the guest's initramfs, made the way an operator
    // does (`host-verifier ima policy create --root target/guest/rootfs`).
    let image_policy = RuntimePolicyDocument::from_tree(
        &image.rootfs,
        &TreeOptions {
            mount_point: "/".into(),
            ..TreeOptions::default()
        },
    )
    .unwrap();
    assert!(image_policy.digests.contains_key("/usr/bin/svsm-agent"));
    rt.block_on(admin.put_ima_policy("guest-image", &image_policy))
        .unwrap();
    let mut snp = serde_json::Map::new();
    snp.insert(
        "measurements".into(),
        serde_json::json!([hex::encode(MEASUREMENT)]),
    );
    let policy = PolicyDocument {
        snp,
        requester_vmpl: Some(1),
        ima_policy: Some("guest-image".into()),
        min_reputation: Some(50),
        ..PolicyDocument::default()
    };
    rt.block_on(admin.put_policy("guest", &policy)).unwrap();
    let key = || api::NewResource {
        kind: "ecdsa-p384".into(),
        usage: vec!["sign".into(), "verify".into()],
        policy: "guest".into(),
        material: None,
    };
    let payments = rt.block_on(admin.put_resource("payments", &key())).unwrap();
    rt.block_on(admin.put_resource("payments-2", &key()))
        .unwrap();

    // The broker's certificate reaches the guest on its command line (base64 DER).
    let pem = String::from_utf8(dir.ca_pem.clone()).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let machine = SimMachine::new(LaunchConfig::genoa(MEASUREMENT)).unwrap();
    let backend = Box::new(SvsmBackend::new(&machine).unwrap());
    let run = run_guest(
        &image,
        svsm_sim::guest::GuestTpm::Backend(backend),
        Some(svsm_sim::guest::CallTarget::Sim(&machine)),
        &RunOptions {
            task: "agent".into(),
            append: format!(
                "ima_policy=tcb svsm.broker=10.0.2.2:{port} svsm.policy=guest svsm.tamper=1 \
                 svsm.broker_pem={der_b64}"
            ),
            device: TpmDevice::Crb,
            timeout: Duration::from_secs(300),
            broker_port: Some(port),
        },
    )
    .unwrap();
    let context = format!("task output:\n{}\nconsole:\n{}", run.output, run.console);
    assert_eq!(run.status, Some(0), "{context}");

    // Round 1: every IMA entry of the boot is in the image's policy.
    let rounds: Vec<serde_json::Value> = run
        .output
        .lines()
        .filter(|l| l.starts_with("{\"failed_checks\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rounds.len(), 2, "{context}");
    assert_eq!(rounds[0]["verdict"], "affirming", "{context}");
    let first_offset = rounds[0]["state"]["ima_offset"].as_u64().unwrap();
    // boot_aggregate, /init, busybox, the task, its module list, eight modules, the agent and
    // its libraries: every one in the image's policy.
    assert!(first_offset >= 15, "{context}");
    assert_eq!(rounds[0]["state"]["trusted"], true);

    // The app's key, provisioned on demand, signed inside VMPL0.
    use p384::ecdsa::signature::Verifier;
    let public = hex::decode(payments.public_key.unwrap()).unwrap();
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
    let sig = run.file("payments.sig").expect(&context);
    let sig = p384::ecdsa::Signature::from_slice(&sig).unwrap();
    vk.verify(b"a payment signed inside VMPL0\n", &sig)
        .expect("the guest's signature verifies with the broker's public key");

    // The program that is not in the image: the next round names it, and the next key is
    // refused.
    assert_eq!(rounds[1]["verdict"], "contraindicated", "{context}");
    let reasons = rounds[1]["failed_checks"].to_string();
    assert!(
        reasons.contains("vtpm.ima_policy") && reasons.contains("/usr/bin/not-in-the-image"),
        "{reasons}"
    );
    assert_eq!(rounds[1]["state"]["trusted"], false);
    assert!(run.output.contains("payments-2 refused"), "{context}");
    let audit = rt.block_on(admin.audit(0)).unwrap();
    assert!(audit.iter().any(|r| r.action == "release"
        && r.decision == "allowed"
        && r.subject.contains("resource=payments ")));
    assert!(audit.iter().any(|r| r.action == "release"
        && r.decision == "refused"
        && r.subject.contains("resource=payments-2")));
    broker.stop(&rt);
}
