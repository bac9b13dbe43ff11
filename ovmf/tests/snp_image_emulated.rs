//! The SNP build of the image, run: its IGVM file (built here as `snp-measure build-igvm`
//! does) is loaded into the emulated SEV-SNP machine of `test-harness/snp-emu` (unicorn CPU,
//! RMP model with the C-bit checked on every translation, GHCB hypervisor, PSP, a guest at
//! VMPL1 making SVSM calls as Linux does). Not SNP hardware: what the emulator checks is listed
//! in its documentation; docs/launch.md says what it cannot show.

mod common;

use ovmf::igvm_build::{build, guest_firmware, svsm_elf, SvsmIgvm};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the IGVM file of the SNP image (`make image-snp`) with an OVMF-like firmware, as
/// `target/snp-emu/<name>.igvm` (kept for a look when a test fails).
fn igvm(name: &str) -> PathBuf {
    let elf_path = root().join("target/image/x86_64-unknown-none/release-snp/svsm-image");
    let elf = std::fs::read(&elf_path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make image-snp` first)", elf_path.display()));
    let elf = svsm_elf(&elf).unwrap();
    let firmware = common::Synth::sid_like(0x20_0000).build();
    let (bytes, _) = build(&SvsmIgvm {
        svsm_image: &elf.image,
        svsm_base: elf.base,
        svsm_size: 128 << 20,
        svsm_entry: elf.entry,
        firmware: &firmware,
        policy: 0x30000,
        sev_features: 1,
        guest: guest_firmware(&firmware).unwrap(),
    })
    .unwrap();
    let dir = root().join("target/snp-emu");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.igvm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs the emulator on a scenario and returns its JSON report.
fn emulate(scenario: &str) -> Value {
    let out = Command::new("python3")
        .arg(root().join("test-harness/snp-emu/snp_emu.py"))
        .arg("--igvm")
        .arg(igvm(scenario))
        .args(["--scenario", scenario, "--timeout", "900"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "snp_emu.py failed (needs the unicorn and cryptography Python packages: scripts/bootstrap.sh installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn call<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no call {name}: {report}"))
}

#[test]
fn the_snp_image_boots_starts_the_firmware_and_serves_its_calls() {
    let r = emulate("normal");
    assert_eq!(r["outcome"], "script-done", "{r:#}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["notes"], serde_json::json!([]), "{r:#}");
    let log = r["log"].as_str().unwrap();
    assert!(
        log.contains("module booted: state Fresh, vTPM served"),
        "{log}"
    );
    assert!(log.contains("firmware started at VMPL1"), "{log}");
    // CPUID answered through #VC from the CPUID page; the PSP asked for a report (the
    // committed TCB) and the root key; entropy from RDRAND and RDSEED.
    // ... and while ATTEST_SERVICES asked the PSP, the caller's VMSA was not runnable.
    for event in [
        "vc-cpuid",
        "report",
        "key",
        "rdrand",
        "rdseed",
        "invlpgb",
        "svme-clear-during-call",
    ] {
        assert!(
            r["events"].as_array().unwrap().iter().any(|e| e == event),
            "{event}: {r:#}"
        );
    }

    // What the firmware finds before its first instruction.
    let c = &r["checks"];
    assert_eq!(c["vmsa_vmpl"], 1);
    assert_eq!(
        c["vmsa_rip"], 0xFFF0,
        "reset state: RIP 0xFFF0 (CS base 0xFFFF0000)"
    );
    assert_eq!(c["vmsa_efer"], 0x1000, "EFER.SVME only");
    assert_eq!(c["vmsa_is_vmsa_in_rmp"], true);
    assert_eq!(c["vmsa_sev_features"], 1);
    assert_eq!(
        c["secrets_vmpck0_zero"], true,
        "VMPCK0 wiped from the guest's copy"
    );
    assert_eq!(c["secrets_vmpck1_kept"], true);
    assert_eq!(c["secrets_svsm_base"], 0x400_0000);
    assert_eq!(c["secrets_svsm_size"], 128 << 20);
    assert_eq!(c["secrets_svsm_caa"], 0x80_F000);
    assert_eq!(c["secrets_svsm_max_version"], 1);
    assert_eq!(c["secrets_svsm_guest_vmpl"], 1);
    assert_eq!(c["guest_cpuid_copied"], true);
    for page in ["firmware", "caa", "prevalidated"] {
        assert_eq!(
            c[format!("{page}_vmpl1_perms")],
            0xF,
            "{page} granted RWX to VMPL1"
        );
    }
    assert_eq!(c["ap"]["apic_id"], 0);
    assert_eq!(c["ap"]["vmpl"], 1);
    assert_eq!(c["ap"]["event"], 1, "AP creation: CREATE");

    // The calls, made as Linux makes them (calling area + VMSA registers).
    for call in r["calls"].as_array().unwrap() {
        assert_eq!(call["result"]["call_pending"], 0, "{call}");
        assert_eq!(call["result"]["svme"], true, "{call}");
    }
    let q = &call(&r, "core-query-protocol-vtpm")["result"];
    assert_eq!(
        (q["rax"].as_u64(), q["rcx"].as_u64()),
        (Some(0), Some(0x1_0000_0001))
    );
    let q = &call(&r, "vtpm-query")["result"];
    assert_eq!(q["rax"], 0);
    assert_ne!(
        q["rcx"].as_u64().unwrap() & (1 << 8),
        0,
        "TPM_SEND_COMMAND: tpm_svsm binds"
    );
    assert_eq!(call(&r, "vtpm-send-startup")["result"]["rax"], 0);
    let random = call(&r, "vtpm-send-getrandom");
    assert_eq!(random["result"]["rax"], 0);
    assert_eq!(random["response_size"], 28);
    let tpm = random["tpm_response"].as_str().unwrap();
    assert_eq!(
        &tpm[..24],
        "80010000001c000000000010",
        "TPM_RC_SUCCESS, 16 bytes: {tpm}"
    );
    // ATTEST_SERVICES: the SVSM's report (VMPL0) binds the nonce and the services manifest
    // (REPORT_DATA = SHA-512(nonce || manifest), checked by the emulator), the manifest lists
    // the vTPM and the vault, the sizes come back in RCX (manifest), RDX (certificates) and R8
    // (report).
    let attest = call(&r, "attest-services");
    assert_eq!(attest["result"]["rax"], 0, "{attest}");
    assert_eq!(attest["report_data_binds"], true);
    assert_eq!(attest["report_vmpl"], 0);
    assert_eq!(attest["result"]["r8"], 1184);
    assert_eq!(attest["result"]["rcx"], attest["manifest_size"]);
    let manifest = hex::decode(attest["manifest"].as_str().unwrap()).unwrap();
    let manifest = svsm_abi::attest::ServicesManifest::parse(&manifest).unwrap();
    assert!(manifest
        .find(&svsm_abi::attest::VTPM_SERVICE_GUID)
        .is_some());
    assert!(manifest
        .find(&svsm_abi::attest::VAULT_SERVICE_GUID)
        .is_some());
    let pv = call(&r, "core-pvalidate-guest-page");
    assert_eq!(pv["result"]["rax"], 0);
    assert_eq!(
        pv["rmp"],
        serde_json::json!({"validated": true, "vmpl1": 15})
    );
    assert_eq!(
        call(&r, "core-pvalidate-svsm-page")["result"]["rax"],
        0x8000_0003u64,
        "SVSM_ERR_INVALID_ADDRESS"
    );
    assert_eq!(
        call(&r, "core-create-vcpu-ap1")["result"]["rax"],
        0x8000_0005u64,
        "SVSM_ERR_INVALID_PARAMETER: one vCPU is served"
    );
    assert_eq!(
        call(&r, "unknown-protocol")["result"]["rax"],
        0x8000_0001u64,
        "SVSM_ERR_UNSUPPORTED_PROTOCOL"
    );
}

#[test]
fn bad_launches_end_with_the_documented_reason() {
    // The CPUID page has no usable C-bit position: the 32-bit entry ends the launch.
    let r = emulate("no-cbit");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 1}),
        "{r:#}"
    );
    assert_eq!(r["violations"], serde_json::json!([]), "{r:#}");
    // The host refuses to register the GHCB.
    let r = emulate("no-ghcb");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 4}),
        "{r:#}"
    );
    assert_eq!(r["violations"], serde_json::json!([]), "{r:#}");
    // The host's memory map is unsorted: refused, and the log says why (printed through the
    // GHCB before the termination request).
    let r = emulate("bad-memory-map");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 3}),
        "{r:#}"
    );
    let log = r["log"].as_str().unwrap();
    assert!(
        log.contains("IGVM memory map: entry 1 is out of order"),
        "{log}"
    );
    assert!(
        log.contains("terminating (reason set 2, code 0x3)"),
        "{log}"
    );
    assert_eq!(r["violations"], serde_json::json!([]), "{r:#}");
    // A CPU without INVLPGB, a host without multi-VMPL support: refused before anything runs.
    let r = emulate("no-invlpgb");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 11}),
        "{r:#}"
    );
    let r = emulate("no-multi-vmpl");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 10}),
        "{r:#}"
    );
    // A host whose page-state changes never make progress: refused, not a loop.
    let r = emulate("hostile-psc");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 4}),
        "{r:#}"
    );
    // A PSP reply with another sequence number (a replay or a forgery): VMPCK0 is not trusted
    // again and the launch ends before anything is sealed or served.
    let r = emulate("bad-psp-seqno");
    assert_eq!(
        r["terminated"],
        serde_json::json!({"set": 2, "code": 6}),
        "{r:#}"
    );
    let log = r["log"].as_str().unwrap();
    assert!(
        log.contains("first attestation report: the secure processor's reply"),
        "{log}"
    );
    assert!(!log.contains("module booted"), "{log}");
}
