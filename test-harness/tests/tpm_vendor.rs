//! The vault over the vTPM's vendor command, on the simulated machine: the TPM lists the
//! command the way Linux's resource manager needs (TPM_CAP_COMMANDS and the command counts
//! agree), a `VaultClient` over TPM commands works unchanged and shares the vault of the VMPL
//! that sends them, messages up to the vault's 64 KiB travel in parts through the 4 KiB buffer,
//! and malformed vendor commands get TPM error codes, never a panic.

use guest_driver::tpm_vault::{TpmChannel, TpmVaultTransport};
use guest_driver::vault::{VaultClient, VaultClientError};
use guest_driver::vtpm::VtpmClient;
use std::sync::{Mutex, MutexGuard};
use svsm_abi::tpm_vendor::{
    self, PartAction, TPMA_CC_SVSM_VAULT, TPMA_CC_SVSM_VAULT_PART, TPM_CC_SVSM_VAULT,
    TPM_CC_SVSM_VAULT_PART,
};
use svsm_abi::vault::{KeyKind, Usage, VaultStatus};
use svsm_core::platform::Vmpl;
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::{SimMachine, SimTransport};

/// One TPM engine per process: tests take turns.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn vtpm(machine: &SimMachine) -> VtpmClient<SimTransport> {
    VtpmClient::probe(machine.transport(Vmpl::new(1).unwrap())).unwrap()
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn transact(tpm: &mut VtpmClient<SimTransport>, command: &[u8]) -> Vec<u8> {
    let mut response = vec![0u8; 4096];
    let n = tpm.transact(command, &mut response).unwrap();
    response.truncate(n);
    response
}

#[test]
fn the_command_list_names_the_vault_command_as_linux_reads_it() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x31; 48])).unwrap();
    let mut tpm = vtpm(&machine);
    // What tpm2_get_cc_attrs_tbl does: TPM_PT_TOTAL_COMMANDS, then that many from TPM_CC_FIRST.
    let total = transact(
        &mut tpm,
        &tpm_vendor::get_capability_command(
            tpm_vendor::TPM_CAP_TPM_PROPERTIES,
            tpm_vendor::TPM_PT_TOTAL_COMMANDS,
            1,
        ),
    );
    assert_eq!(be32(&total, 6), 0);
    assert_eq!(be32(&total, 19), tpm_vendor::TPM_PT_TOTAL_COMMANDS);
    let nr_commands = be32(&total, 23);
    let list = transact(
        &mut tpm,
        &tpm_vendor::get_capability_command(tpm_vendor::TPM_CAP_COMMANDS, 0x11F, nr_commands),
    );
    assert_eq!(be32(&list, 6), 0);
    assert_eq!(list[10], 0, "moreData");
    assert_eq!(
        be32(&list, 15),
        nr_commands,
        "Linux refuses a list of another length"
    );
    let attrs: Vec<u32> = (0..nr_commands as usize)
        .map(|i| be32(&list, 19 + 4 * i))
        .collect();
    // Linux's tpm2_find_cc matches on V and commandIndex.
    let mask = (1 << 29) | 0xFFFF;
    for code in [TPM_CC_SVSM_VAULT, TPM_CC_SVSM_VAULT_PART] {
        assert_eq!(attrs.iter().filter(|a| *a & mask == code).count(), 1);
    }
    assert_eq!(
        attrs[attrs.len() - 2..],
        [TPMA_CC_SVSM_VAULT, TPMA_CC_SVSM_VAULT_PART]
    );
    // The vendor count says so too.
    let vendor = transact(
        &mut tpm,
        &tpm_vendor::get_capability_command(
            tpm_vendor::TPM_CAP_TPM_PROPERTIES,
            tpm_vendor::TPM_PT_VENDOR_COMMANDS,
            1,
        ),
    );
    assert_eq!(be32(&vendor, 19), tpm_vendor::TPM_PT_VENDOR_COMMANDS);
    assert!(be32(&vendor, 23) >= 2);
    // Asked from the vault command on, the list holds the two vendor commands alone.
    let ours = transact(
        &mut tpm,
        &tpm_vendor::get_capability_command(tpm_vendor::TPM_CAP_COMMANDS, TPM_CC_SVSM_VAULT, 8),
    );
    assert_eq!(be32(&ours, 15), 2);
    assert_eq!(be32(&ours, 19), TPMA_CC_SVSM_VAULT);
    assert_eq!(be32(&ours, 23), TPMA_CC_SVSM_VAULT_PART);
}

#[test]
fn the_vault_over_tpm_commands_is_the_vault_of_the_sending_vmpl() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x32; 48])).unwrap();
    let mut over_tpm = VaultClient::probe(TpmVaultTransport::new(vtpm(&machine))).unwrap();
    let key = over_tpm
        .create_key(KeyKind::EcdsaP256, Usage::SIGN | Usage::VERIFY)
        .unwrap();
    let sig = over_tpm.sign(key.id, b"through the TPM").unwrap();
    use p256::ecdsa::signature::Verifier;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public)
        .unwrap()
        .verify(
            b"through the TPM",
            &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
    let aes = over_tpm
        .create_key(KeyKind::Aes256Gcm, Usage::ENCRYPT | Usage::DECRYPT)
        .unwrap();
    let ct = over_tpm.encrypt(aes.id, b"aad", &[7u8; 3000]).unwrap();
    assert_eq!(over_tpm.decrypt(aes.id, b"aad", &ct).unwrap(), [7u8; 3000]);
    // The same keys through the vault protocol at VMPL1, and none at VMPL2.
    let mut direct = VaultClient::probe(machine.transport(Vmpl::new(1).unwrap())).unwrap();
    assert!(direct.verify(key.id, &sig, b"through the TPM").unwrap());
    let mut other = VaultClient::probe(machine.transport(Vmpl::new(2).unwrap())).unwrap();
    assert!(matches!(
        other.sign(key.id, b"x"),
        Err(VaultClientError::Vault(VaultStatus::KeyNotFound))
    ));
    // Refusals travel as vault statuses.
    assert!(matches!(
        over_tpm.sign(aes.id, b"x"),
        Err(VaultClientError::Vault(VaultStatus::UsageNotAllowed))
    ));
    // Messages longer than one TPM command travel in parts: 4 KiB (the PKCS#11 benchmark's
    // size) and the vault's largest, 64 KiB, both ways.
    for len in [4096usize, 64 * 1024] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let ct = over_tpm.encrypt(aes.id, b"parts", &plain).unwrap();
        assert_eq!(ct.len(), 12 + len + 16);
        assert_eq!(direct.decrypt(aes.id, b"parts", &ct).unwrap(), plain);
        assert_eq!(over_tpm.decrypt(aes.id, b"parts", &ct).unwrap(), plain);
    }
}

/// Sends one part command and returns (status, rcx, data).
fn part(
    tpm: &mut VtpmClient<SimTransport>,
    transfer: u32,
    action: PartAction,
    offset: u32,
    data: &[u8],
) -> (u32, u64, Vec<u8>) {
    let mut c = tpm_vendor::part_command_header(transfer, action, offset, data.len())
        .unwrap()
        .to_vec();
    c.extend_from_slice(data);
    let r = transact(tpm, &c);
    let answer = tpm_vendor::parse_part_response(&r).unwrap();
    (
        answer.reply.status.get(),
        answer.reply.rcx.get(),
        answer.data.to_vec(),
    )
}

#[test]
fn parts_belong_to_their_vmpl_and_must_come_in_order() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x34; 48])).unwrap();
    let mut one = vtpm(&machine);
    let mut two = VtpmClient::probe(machine.transport(Vmpl::new(2).unwrap())).unwrap();
    let invalid = 0x8000_0005;
    // A List request, written in two parts by VMPL1.
    let list = [1u8, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(part(&mut one, 9, PartAction::Write, 0, &list[..5]).0, 0);
    // Out of order, another VMPL's transfer, an unknown one, data on READ: refused.
    assert_eq!(
        part(&mut one, 9, PartAction::Write, 3, &list[5..]).0,
        invalid
    );
    assert_eq!(part(&mut two, 9, PartAction::Run, 5, &list[5..]).0, invalid);
    assert_eq!(part(&mut one, 10, PartAction::Read, 0, &[]).0, invalid);
    let (status, rcx, data) = part(&mut one, 9, PartAction::Run, 5, &list[5..]);
    assert_eq!((status, rcx), (0, 4));
    assert_eq!(data, [0, 0, 0, 0], "no keys yet");
    // Answered whole by RUN: the transfer is gone.
    assert_eq!(part(&mut one, 9, PartAction::Read, 0, &[]).0, invalid);
    // A staged request over the vault's maximum is refused.
    let chunk = vec![0u8; tpm_vendor::MAX_PART_DATA];
    let mut offset = 0u32;
    let mut last = 0;
    while (offset as usize) <= svsm_abi::vault::MAX_MESSAGE {
        last = part(&mut one, 11, PartAction::Write, offset, &chunk).0;
        if last != 0 {
            break;
        }
        offset += chunk.len() as u32;
    }
    assert_eq!(last, invalid);
}

#[test]
fn malformed_vendor_commands_get_tpm_error_codes() {
    let _t = turn();
    let machine = SimMachine::new(LaunchConfig::genoa([0x33; 48])).unwrap();
    let mut tpm = vtpm(&machine);
    let mut cmd = tpm_vendor::vault_command_header(3).unwrap().to_vec();
    cmd.extend_from_slice(&[1, 2, 3]);
    // A vault message that does not parse: the TPM answers, the vault names the format.
    let r = transact(&mut tpm, &cmd);
    let reply = tpm_vendor::parse_vault_response(&r).unwrap();
    assert_eq!(
        reply.reply.status.get(),
        0x8000_0005,
        "SVSM_ERR_INVALID_PARAMETER"
    );
    // Wrong size field, sessions tag, another vendor code: TPM errors, header only.
    let mut wrong_size = cmd.clone();
    wrong_size[2..6].copy_from_slice(&99u32.to_be_bytes());
    let mut sessions = cmd.clone();
    sessions[0..2].copy_from_slice(&0x8002u16.to_be_bytes());
    let mut other = cmd.clone();
    other[6..10].copy_from_slice(&(tpm_vendor::TPM_CC_VENDOR_BIT | 1).to_be_bytes());
    for (c, code) in [
        (wrong_size, tpm_vendor::TPM_RC_COMMAND_SIZE),
        (sessions, tpm_vendor::TPM_RC_BAD_TAG),
        (other, tpm_vendor::TPM_RC_COMMAND_CODE),
    ] {
        let r = transact(&mut tpm, &c);
        assert_eq!(r.len(), 10);
        assert_eq!(be32(&r, 6), code);
    }
    // Random vendor commands never break the vTPM: it still answers a normal command.
    for seed in 0..200u32 {
        let len = 10 + (seed as usize * 7) % 300;
        let mut c: Vec<u8> = (0..len).map(|i| (i as u32 * 31 + seed) as u8).collect();
        c[0..2].copy_from_slice(&0x8001u16.to_be_bytes());
        c[2..6].copy_from_slice(&(len as u32).to_be_bytes());
        c[6..10].copy_from_slice(&TPM_CC_SVSM_VAULT.to_be_bytes());
        let r = transact(&mut tpm, &c);
        assert!(r.len() >= 10);
    }
    let random = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 8];
    let r = transact(&mut tpm, &random);
    assert_eq!(be32(&r, 6), 0, "TPM2_GetRandom still works");
}
