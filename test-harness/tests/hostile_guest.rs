//! A hostile guest at VMPL1 against the module: every bad request gets the spec's result code,
//! nothing panics, and buffers that change mid-call change nothing the module already copied.

use sha2::{Digest, Sha512};
use std::sync::{Mutex, MutexGuard, OnceLock};
use svsm_abi::attest::{AttestServicesRequest, AttestSingleServiceRequest, VTPM_SERVICE_GUID};
use svsm_abi::snp::{AttestationReport, REPORT_SIZE};
use svsm_abi::svsm::{
    attest_call, core_call, vtpm_call, CallId, CallRegisters, ResultCode, PROTOCOL_ATTEST,
    PROTOCOL_CORE, PROTOCOL_VAULT, PROTOCOL_VTPM,
};
use svsm_abi::Guid;
use svsm_core::platform::{Gpa, GuestMemory, Vmpl, PAGE_SIZE};
use test_harness::sim::memory::{Hostility, PagePerms};
use test_harness::sim::psp::LaunchConfig;
use test_harness::sim::{SimMachine, DEFAULT_PAGES};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

fn machine() -> MutexGuard<'static, SimMachine> {
    static MACHINE: OnceLock<Mutex<SimMachine>> = OnceLock::new();
    let guard = MACHINE
        .get_or_init(|| Mutex::new(SimMachine::new(LaunchConfig::genoa([0x33; 48])).unwrap()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Every test starts from friendly, fully shared memory.
    {
        let mut module = guard.module();
        let mem = module.memory_mut();
        mem.hostility = Hostility::None;
        for page in 0..DEFAULT_PAGES as u64 {
            mem.set_perms(page * PAGE_SIZE, PagePerms::SHARED);
        }
    }
    guard
}

const VMPL1: u8 = 1;

fn call(m: &SimMachine, protocol: u32, id: u32, rcx: u64) -> (ResultCode, CallRegisters) {
    let mut regs = CallRegisters {
        rax: CallId { protocol, call: id }.to_rax(),
        rcx,
        ..Default::default()
    };
    m.module().handle_call(Vmpl::new(VMPL1).unwrap(), &mut regs);
    assert_eq!(regs.rax >> 32, 0, "result codes are 32-bit");
    (ResultCode::from_rax(regs.rax), regs)
}

fn write(m: &SimMachine, gpa: u64, data: &[u8]) {
    m.module()
        .memory_mut()
        .write(Vmpl::ZERO, Gpa::new(gpa), data)
        .unwrap();
}

fn read(m: &SimMachine, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    m.module()
        .memory_mut()
        .read(Vmpl::ZERO, Gpa::new(gpa), &mut buf)
        .unwrap();
    buf
}

// TPM2_GetRandom(16).
const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 16];

fn vtpm_request(locality: u8, size: u32, command: &[u8]) -> Vec<u8> {
    let mut b = vec![8, 0, 0, 0, locality];
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(command);
    b
}

#[test]
fn unknown_protocols_and_calls() {
    let m = machine();
    assert_eq!(call(&m, 0x1234, 0, 0).0, ResultCode::UnsupportedProtocol);
    assert_eq!(
        call(&m, u32::MAX, u32::MAX, 0).0,
        ResultCode::UnsupportedProtocol
    );
    assert_eq!(
        call(&m, PROTOCOL_CORE, 99, 0).0,
        ResultCode::UnsupportedCall
    );
    assert_eq!(
        call(&m, PROTOCOL_CORE, core_call::PVALIDATE, 0).0,
        ResultCode::UnsupportedCall
    );
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, 2, 0).0,
        ResultCode::UnsupportedCall
    );
    assert_eq!(call(&m, PROTOCOL_VTPM, 2, 0).0, ResultCode::UnsupportedCall);
    assert_eq!(
        call(&m, PROTOCOL_VAULT, 2, 0).0,
        ResultCode::UnsupportedCall
    );
    let (code, regs) = call(&m, PROTOCOL_VAULT, 0, 0);
    assert_eq!(
        (code, regs.rcx, regs.rdx),
        (ResultCode::Success, 1, 64 * 1024 + 1024),
        "vault QUERY"
    );
}

#[test]
fn query_protocol_and_vtpm_query_as_linux_expects() {
    let m = machine();
    for (protocol, version, expect) in [
        (PROTOCOL_CORE, 1, 0x1_0000_0001u64),
        (PROTOCOL_ATTEST, 1, 0x1_0000_0001),
        (PROTOCOL_VTPM, 1, 0x1_0000_0001),
        (PROTOCOL_VTPM, 2, 0),
        (PROTOCOL_VTPM, 0, 0),
        (PROTOCOL_VAULT, 1, 0x1_0000_0001),
        (7, 1, 0),
    ] {
        let (code, regs) = call(
            &m,
            PROTOCOL_CORE,
            core_call::QUERY_PROTOCOL,
            u64::from(protocol) << 32 | version,
        );
        assert_eq!(
            (code, regs.rcx),
            (ResultCode::Success, expect),
            "protocol {protocol} v{version}"
        );
    }
    let (code, regs) = call(&m, PROTOCOL_VTPM, vtpm_call::QUERY, 0);
    assert_eq!(code, ResultCode::Success);
    assert_eq!(
        regs.rcx,
        1 << 8,
        "TPM_SEND_COMMAND, so Linux binds tpm_svsm"
    );
    assert_eq!(regs.rdx, 0);
}

#[test]
fn vtpm_command_gpas_outside_memory_overflowing_or_private() {
    let m = machine();
    let end = DEFAULT_PAGES as u64 * PAGE_SIZE;
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, end).0,
        ResultCode::InvalidAddress
    );
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, end - 4).0,
        ResultCode::InvalidAddress
    );
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, u64::MAX - 3).0,
        ResultCode::InvalidAddress
    );
    // A request whose command runs past the end of memory.
    let req = vtpm_request(0, 12, &GET_RANDOM);
    write(&m, end - 12, &req[..12]);
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, end - 12).0,
        ResultCode::InvalidAddress
    );
    // VMPL0-private page named as the buffer.
    let gpa = 40 * PAGE_SIZE;
    write(&m, gpa, &req);
    m.module()
        .memory_mut()
        .set_perms(gpa, PagePerms::VMPL0_PRIVATE);
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::InvalidAddress
    );
    assert_eq!(
        read(&m, gpa, req.len()),
        req,
        "nothing written to the private page"
    );
}

#[test]
fn vtpm_command_unaligned_and_page_crossing() {
    let m = machine();
    // The request straddles pages 50/51 at an odd address: allowed, as Linux's buffer may be.
    let gpa = 51 * PAGE_SIZE - 5;
    write(&m, gpa, &vtpm_request(0, 12, &GET_RANDOM));
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::Success
    );
    let rsp = read(&m, gpa, 4 + 28);
    assert_eq!(
        u32::from_le_bytes(rsp[..4].try_into().unwrap()),
        28,
        "GetRandom(16) response"
    );
    assert_eq!(&rsp[10..14], &[0u8; 4], "TPM_RC_SUCCESS");
    // The same request crossing into a VMPL0-private page.
    write(&m, gpa, &vtpm_request(0, 12, &GET_RANDOM));
    m.module()
        .memory_mut()
        .set_perms(51 * PAGE_SIZE, PagePerms::VMPL0_PRIVATE);
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::InvalidAddress
    );
}

#[test]
fn vtpm_command_sizes_and_headers() {
    let m = machine();
    let gpa = 60 * PAGE_SIZE;
    // Size 0: the SVSM call succeeds and the TPM answers with its own error.
    write(&m, gpa, &vtpm_request(0, 0, &[]));
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::Success
    );
    let rsp = read(&m, gpa, 14);
    assert_eq!(u32::from_le_bytes(rsp[..4].try_into().unwrap()), 10);
    assert_ne!(&rsp[10..14], &[0, 0, 0, 0], "a TPM error code");
    // Max + 1 (4088 > 4087) and absurd sizes: invalid parameter.
    for size in [4088u32, 4096, u32::MAX] {
        write(&m, gpa, &vtpm_request(0, size, &GET_RANDOM));
        assert_eq!(
            call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
            ResultCode::InvalidParameter,
            "size {size}"
        );
    }
    // Maximum size is accepted (the TPM rejects the content, the protocol does not).
    let mut big = vec![0u8; 4087];
    big[..12].copy_from_slice(&GET_RANDOM);
    write(&m, gpa, &vtpm_request(0, 4087, &big));
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::Success
    );
    // Declared size larger than the real command: the TPM sees the bytes that follow.
    write(&m, gpa, &vtpm_request(0, 20, &GET_RANDOM));
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::Success
    );
    // Locality must be 0; platform commands other than SEND_COMMAND are not served.
    write(&m, gpa, &vtpm_request(3, 12, &GET_RANDOM));
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::InvalidParameter
    );
    write(&m, gpa, &[1, 0, 0, 0]);
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::UnsupportedCall
    );
    write(&m, gpa, &[19, 0, 0, 0]);
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::InvalidParameter
    );
}

#[test]
fn vtpm_buffer_mutated_during_the_call() {
    let m = machine();
    let gpa = 70 * PAGE_SIZE;
    write(&m, gpa, &vtpm_request(0, 12, &GET_RANDOM));
    m.module().memory_mut().hostility = Hostility::MutateAfterRead;
    assert_eq!(
        call(&m, PROTOCOL_VTPM, vtpm_call::CMD, gpa).0,
        ResultCode::Success
    );
    m.module().memory_mut().hostility = Hostility::None;
    let rsp = read(&m, gpa, 4 + 28);
    assert_eq!(
        u32::from_le_bytes(rsp[..4].try_into().unwrap()),
        28,
        "answered what was first read"
    );
}

/// Lays out an ATTEST_SERVICES request at `req_gpa` with buffers at the given places.
fn services_request(
    nonce_gpa: u64,
    nonce_len: u16,
    report: (u64, u32),
    manifest: (u64, u32),
) -> AttestServicesRequest {
    AttestServicesRequest {
        report_gpa: U64::new(report.0),
        report_size: U32::new(report.1),
        nonce_gpa: U64::new(nonce_gpa),
        nonce_size: U16::new(nonce_len),
        manifest_gpa: U64::new(manifest.0),
        manifest_size: U32::new(manifest.1),
        ..Default::default()
    }
}

#[test]
fn attest_buffers_too_small_report_the_sizes() {
    let m = machine();
    let base = 100 * PAGE_SIZE;
    write(&m, base + 0x100, &[7; 64]);
    for (report_size, manifest_size) in [
        (100u32, 4096u32),
        (4096, 0),
        (0, 0),
        (REPORT_SIZE as u32 - 1, 4096),
    ] {
        let req = services_request(
            base + 0x100,
            64,
            (base + 0x1000, report_size),
            (base + 0x2000, manifest_size),
        );
        write(&m, base + 8, req.as_bytes());
        let (code, regs) = call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8);
        assert_eq!(code, ResultCode::InvalidParameter);
        assert_eq!(
            regs.rcx,
            24 + 2 * 24 + 314 + 136,
            "manifest size: vTPM EK and vault"
        );
        assert_eq!(regs.rdx, 0, "no certificates asked for");
        assert_eq!(regs.r8, REPORT_SIZE as u64, "report size");
    }
}

#[test]
fn attest_request_reserved_fields_private_pages_and_unknown_services() {
    let m = machine();
    let base = 110 * PAGE_SIZE;
    let req = services_request(
        base + 0x100,
        64,
        (base + 0x1000, 4096),
        (base + 0x2000, 4096),
    );
    let mut bytes = req.as_bytes().to_vec();
    bytes[0x0C] = 1;
    write(&m, base + 8, &bytes);
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8).0,
        ResultCode::InvalidParameter
    );
    // Linux's u32 nonce size with a non-zero upper half.
    let mut bytes = req.as_bytes().to_vec();
    bytes[0x1A] = 1;
    write(&m, base + 8, &bytes);
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8).0,
        ResultCode::InvalidParameter
    );
    // Output buffer on a VMPL0-private page.
    write(&m, base + 8, req.as_bytes());
    m.module()
        .memory_mut()
        .set_perms(base + 0x1000, PagePerms::VMPL0_PRIVATE);
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8).0,
        ResultCode::InvalidAddress
    );
    assert_eq!(
        read(&m, base + 0x1000, 16),
        vec![0; 16],
        "the private page was not written"
    );
    m.module()
        .memory_mut()
        .set_perms(base + 0x1000, PagePerms::SHARED);
    // Request itself on a private page, and nonce past the end of memory.
    m.module()
        .memory_mut()
        .set_perms(base, PagePerms::VMPL0_PRIVATE);
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8).0,
        ResultCode::InvalidAddress
    );
    m.module().memory_mut().set_perms(base, PagePerms::SHARED);
    let far = services_request(
        u64::MAX - 10,
        64,
        (base + 0x1000, 4096),
        (base + 0x2000, 4096),
    );
    write(&m, base + 8, far.as_bytes());
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8).0,
        ResultCode::InvalidAddress
    );
    // SINGLE_SERVICE: unknown GUID and unknown manifest version.
    let single = |guid: Guid, version: u32| AttestSingleServiceRequest {
        base: req,
        service_guid: guid,
        manifest_version: U32::new(version),
        reserved: [0; 4],
    };
    write(&m, base + 8, single(Guid([9; 16]), 0).as_bytes());
    assert_eq!(
        call(
            &m,
            PROTOCOL_ATTEST,
            attest_call::ATTEST_SINGLE_SERVICE,
            base + 8
        )
        .0,
        ResultCode::UnsupportedProtocol
    );
    // Version 2 is our richer vTPM manifest; 1 is retired and 3 does not exist.
    write(&m, base + 8, single(VTPM_SERVICE_GUID, 1).as_bytes());
    assert_eq!(
        call(
            &m,
            PROTOCOL_ATTEST,
            attest_call::ATTEST_SINGLE_SERVICE,
            base + 8
        )
        .0,
        ResultCode::InvalidParameter
    );
    write(&m, base + 8, single(VTPM_SERVICE_GUID, 3).as_bytes());
    assert_eq!(
        call(
            &m,
            PROTOCOL_ATTEST,
            attest_call::ATTEST_SINGLE_SERVICE,
            base + 8
        )
        .0,
        ResultCode::InvalidParameter
    );
    write(&m, base + 8, single(VTPM_SERVICE_GUID, 0).as_bytes());
    assert_eq!(
        call(
            &m,
            PROTOCOL_ATTEST,
            attest_call::ATTEST_SINGLE_SERVICE,
            base + 8
        )
        .0,
        ResultCode::Success
    );
}

#[test]
fn attest_with_overlapping_buffers_and_a_racing_vcpu() {
    let m = machine();
    let base = 120 * PAGE_SIZE;
    let nonce = [0x5Eu8; 64];
    write(&m, base + 0x100, &nonce);
    // Report and manifest buffers overlap each other and the request; the call still completes.
    let req = services_request(base + 0x100, 64, (base, 4096), (base + 0x80, 4096));
    write(&m, base + 8, req.as_bytes());
    assert_eq!(
        call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8).0,
        ResultCode::Success
    );

    // A racing vCPU rewrites everything the module reads, right after it reads it: the report
    // still binds the nonce as first read, because nothing is read twice.
    write(&m, base + 0x100, &nonce);
    let req = services_request(
        base + 0x100,
        64,
        (base + 0x1000, 4096),
        (base + 0x2000, 4096),
    );
    write(&m, base + 8, req.as_bytes());
    m.module().memory_mut().hostility = Hostility::MutateAfterRead;
    let (code, regs) = call(&m, PROTOCOL_ATTEST, attest_call::ATTEST_SERVICES, base + 8);
    m.module().memory_mut().hostility = Hostility::None;
    assert_eq!(code, ResultCode::Success);
    let report = read(&m, base + 0x1000, REPORT_SIZE);
    let manifest = read(&m, base + 0x2000, regs.rcx as usize);
    let expected: [u8; 64] = Sha512::new()
        .chain_update(nonce)
        .chain_update(&manifest)
        .finalize()
        .into();
    assert_eq!(
        AttestationReport::parse(&report).unwrap().raw().report_data,
        expected
    );
}
