//! `svsm-agent` (the guest-agent crate) against the broker service over HTTPS, on a simulated
//! node reached through the framed SVSM call channel over loopback TCP (the path the binary
//! takes in a guest, with the vTPM protocol instead of /dev/tpmrm0) and whose kernel IMA list is
//! a file like /sys's: rounds that send only the new entries, a key provisioned on demand for
//! an app that asks the vault for it by name (the app never talks to the broker), the key
//! signing inside the vault, and a tampered binary that makes the next round contraindicated
//! and the next provisioning refused.

use clap::Parser;
use guest_agent::{Agent, AgentConfig, TpmPath};
use guest_driver::agent_socket::{ask_provision, AgentSocketError};
use guest_driver::channel::ChannelArgs;
use guest_driver::cli::{run, Cli, CliError};
use host_verifier::broker::api;
use host_verifier::broker::policy::PolicyDocument;
use host_verifier::measured::runtime_policy::RuntimePolicyDocument;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use test_harness::broker::{runtime, sim_trust, DataDir, LocalBroker, SimNode};
use test_harness::guest_channel::GuestChannel;

const FILES: [(&str, &[u8]); 2] = [("/init", b"#!/bin/sh\n"), ("/usr/bin/app", b"app v1")];

fn svsm_vault(port: u16, args: &[&str]) -> Result<String, CliError> {
    let mut argv = vec!["svsm-vault", "--connect"];
    let connect = format!("127.0.0.1:{port}");
    argv.push(&connect);
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| CliError::Usage(e.to_string()))?;
    run(&cli, cli.channel.open().unwrap())
}

#[test]
fn rounds_keys_on_demand_and_a_tampered_binary() {
    let rt = runtime().unwrap();
    let dir = DataDir::init("agent").unwrap();
    let broker =
        LocalBroker::start_configured(&rt, &dir.path, None, sim_trust().unwrap(), |_| {}).unwrap();
    let admin = broker.client(&dir).unwrap();
    let mut image = RuntimePolicyDocument::default();
    for (path, content) in FILES {
        image
            .digests
            .insert(path.into(), vec![hex::encode(Sha256::digest(content))]);
    }
    rt.block_on(admin.put_ima_policy("node-image", &image))
        .unwrap();
    let policy = PolicyDocument {
        ima_policy: Some("node-image".into()),
        min_reputation: Some(50),
        ..SimNode::policy()
    };
    rt.block_on(admin.put_policy("node", &policy)).unwrap();
    let signing_key = || api::NewResource {
        kind: "ecdsa-p384".into(),
        usage: vec!["sign".into(), "verify".into()],
        policy: "node".into(),
        material: None,
    };
    let payments = rt
        .block_on(admin.put_resource("payments", &signing_key()))
        .unwrap();
    rt.block_on(admin.put_resource("payments-2", &signing_key()))
        .unwrap();

    // The node: booted, its kernel's IMA list exposed as a file, its call channel on TCP.
    let node = SimNode::launch(None).unwrap();
    node.ima_start().unwrap();
    for (path, content) in FILES {
        node.ima_measure(path, content).unwrap();
    }
    let scratch = dir.path.join("guest");
    std::fs::create_dir_all(&scratch).unwrap();
    let ima = scratch.join("binary_runtime_measurements");
    let expose = |node: &SimNode| std::fs::write(&ima, node.ima_list().unwrap()).unwrap();
    expose(&node);
    let channel = GuestChannel::start(0, node.machine.clone()).unwrap();
    let port = channel.port();
    let args = ChannelArgs {
        connect: format!("127.0.0.1:{port}"),
        device: None,
        buffer_pages: 40,
        vmpl: 1,
    };
    let agent = Arc::new(
        Agent::new(AgentConfig {
            channel: args,
            tpm: TpmPath::Svsm,
            ima_log: ima.clone(),
            firmware_log: None,
            broker: broker.url.clone(),
            ca_pem: dir.ca_pem.clone(),
            policy: Some("node".into()),
        })
        .unwrap(),
    );

    // Round 1: the whole list; the broker keeps the position.
    let r1 = agent.round().unwrap();
    assert_eq!(r1.verdict, "affirming", "{:?}", r1.failed_checks);
    assert_eq!(agent.ima_offset(), 3);

    // The app asks its vault for "payments" by name: the vault does not hold it, so the key
    // is provisioned through the agent's socket; then it signs inside the vault.
    let socket = scratch.join("agent.sock");
    agent.serve(&socket).unwrap();
    let doc = scratch.join("doc.txt");
    std::fs::write(&doc, b"pay 10 to alice").unwrap();
    let doc_arg = doc.display().to_string();
    let missing = svsm_vault(port, &["sign", "--key", "name:payments", "--in", &doc_arg]);
    assert!(
        matches!(missing, Err(CliError::NoSuchName { .. })),
        "{missing:?}"
    );
    let key = ask_provision(&socket, "payments").unwrap();
    let sig = svsm_vault(port, &["sign", "--key", "name:payments", "--in", &doc_arg]).unwrap();
    let listed = svsm_vault(port, &["list", "--json"]).unwrap();
    assert!(listed.contains("\"name\":\"payments\""), "{listed}");
    assert!(listed.contains(&format!("\"key\":{key}")), "{listed}");
    // The signature verifies with the public key the broker published for the resource.
    use p384::ecdsa::signature::Verifier;
    let public = hex::decode(payments.public_key.unwrap()).unwrap();
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
    let sig = p384::ecdsa::Signature::from_slice(&hex::decode(sig.trim()).unwrap()).unwrap();
    vk.verify(b"pay 10 to alice", &sig).unwrap();

    // Round 2 sends only what was measured since.
    node.ima_measure("/usr/bin/app", FILES[1].1).unwrap();
    expose(&node);
    let r2 = agent.round().unwrap();
    assert_eq!(r2.verdict, "affirming", "{:?}", r2.failed_checks);
    assert_eq!(agent.ima_offset(), 4);

    // A tampered binary runs: the next round is contraindicated naming it, and the next key
    // an app asks for is refused.
    node.ima_measure("/usr/bin/app", b"app v1 with a backdoor")
        .unwrap();
    expose(&node);
    let r3 = agent.round().unwrap();
    assert_eq!(r3.verdict, "contraindicated");
    assert!(
        r3.failed_checks
            .iter()
            .any(|f| f.check == "vtpm.ima_policy" && f.reason.contains("/usr/bin/app")),
        "{:?}",
        r3.failed_checks
    );
    assert_eq!(
        agent.ima_offset(),
        4,
        "the position stays before the failing entry"
    );
    let refused = ask_provision(&socket, "payments-2");
    assert!(
        matches!(&refused, Err(AgentSocketError::Refused(e)) if e.contains("vtpm.ima_policy")),
        "{refused:?}"
    );
    broker.stop(&rt);
    drop(channel);
}
