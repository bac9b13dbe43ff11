//! The demo's real-guest flow as a test (`svsm_sim::guest_demo`, what `make demo` prints),
//! asserting each outcome: the guest agent in Debian's kernel under QEMU + OVMF with IMA on,
//! on the vTPM and vault of a simulated machine, against the key broker on SQLite reached
//! through QEMU's user network with its certificate pinned.
//!
//! Launch 1: the disk key refused before the node's first round (`broker.node_trust`); a round
//! affirmed over every IMA entry of the boot against a runtime policy made from the guest's own
//! initramfs; an app key provisioned on demand and signing inside VMPL0; the disk key released,
//! revealed by the vault to its owner, the host-made LUKS2 volume opened with cryptsetup in the
//! guest and its file read back; a program that is not in the image run, the next round
//! contraindicated naming it, the next key refused. Launch 2, a changed kernel (PCR 4): its
//! round refused on the reference PCRs and no key at all. Two boots (20-60 s each under TCG).

use std::path::PathBuf;
use svsm_sim::guest::{build, default_guest_dir};
use svsm_sim::guest_demo::{self, WorkDir};

fn guest_binaries() -> Vec<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    svsm_sim::guest::guest_binaries(dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_demo_flow_in_the_real_guest_keys_disk_tamper_and_a_changed_kernel() {
    let image = build(&default_guest_dir(), &guest_binaries())
        .unwrap_or_else(|e| panic!("guest build: {e}"));
    let work = WorkDir::new().unwrap();
    let demo = guest_demo::run(&image, &work.0, &mut |line| eprintln!("{line}"))
        .unwrap_or_else(|e| panic!("demo: {e}"));
    let e = &demo.expected;
    let context = e.context();
    assert_eq!(e.run.status, Some(0), "{context}");

    // The disk key before any round: refused, naming why.
    let early = e
        .step("disk key before attestation: refused")
        .unwrap_or_else(|| panic!("no early refusal; {context}"));
    assert!(
        early.contains("broker.node_trust") && early.contains("no round"),
        "{early}"
    );

    // Round 1: every IMA entry of the boot is in the image's policy.
    assert_eq!(e.rounds.len(), 2, "{context}");
    assert_eq!(e.rounds[0]["verdict"], "affirming", "{context}");
    let first_offset = e.rounds[0]["state"]["ima_offset"].as_u64().unwrap();
    // boot_aggregate, /init, busybox, the task, its module list, the modules, the agent and
    // its libraries: every one in the image's policy.
    assert!(first_offset >= 20, "{context}");
    assert_eq!(e.rounds[0]["state"]["trusted"], true);

    // The tampered binary: named by the next round; the next key refused.
    assert_eq!(e.rounds[1]["verdict"], "contraindicated", "{context}");
    let reasons = e.rounds[1]["failed_checks"].to_string();
    assert!(
        reasons.contains("vtpm.ima_policy") && reasons.contains("/usr/bin/not-in-the-image"),
        "{reasons}"
    );
    assert_eq!(e.rounds[1]["state"]["trusted"], false);
    assert!(e.run.output.contains("payments-2 refused"), "{context}");
    let again = e
        .step("disk key after the tamper: refused")
        .unwrap_or_else(|| panic!("the disk key was released again; {context}"));
    assert!(again.contains("vtpm.ima_policy"), "{again}");

    // The disk opened and the host's file read back.
    assert_eq!(
        e.run.file("disk-hello").as_deref(),
        Some(guest_demo::DISK_FILE),
        "{context}"
    );

    // The changed kernel: its round fails on PCR 4 and nothing is released to it.
    let c = &demo.changed_kernel;
    assert_eq!(c.run.status, Some(0), "{}", c.context());
    assert_eq!(c.rounds.len(), 1, "{}", c.context());
    let reasons = c.rounds[0]["failed_checks"].to_string();
    assert!(
        reasons.contains("vtpm.reference_pcrs") && reasons.contains("PCR 4"),
        "{reasons}"
    );
    for step in ["app key payments: refused", "disk: not opened"] {
        let s = c
            .step(step)
            .unwrap_or_else(|| panic!("no {step:?}; {}", c.context()));
        assert!(s.contains("vtpm.reference_pcrs"), "{s}");
    }

    // The audit log: exactly the two releases the design allows.
    let decisions: Vec<(String, String)> = demo
        .audit
        .iter()
        .filter(|r| r.action == "release")
        .map(|r| {
            let resource = r.subject.split(' ').next().unwrap_or("").to_owned();
            (resource, r.decision.clone())
        })
        .collect();
    let allowed: Vec<&str> = decisions
        .iter()
        .filter(|(_, d)| d == "allowed")
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(
        allowed,
        ["resource=payments", "resource=disk"],
        "{decisions:?}"
    );
    assert!(decisions.contains(&("resource=payments-2".into(), "refused".into())));
    demo.check().unwrap();
}
