//! PSP guest-message responses as a hostile hypervisor (or a broken PSP) returns them, through
//! the platform's real response path: `GuestMessenger` (sequence numbers, BUSY / INVALID_LEN
//! handling, VMPCK disabling) -> envelope checks and AES-256-GCM -> MSG_REPORT_RSP /
//! MSG_KEY_RSP parsing -> the extended report's certificate table.
//!
//! Input: byte 0 = operation (0 report, 1 key, 2 extended report); byte 1 = flags (bit 0: seal
//! the fuzzed payload under the real VMPCK, so the payload parsers are reached); 8 bytes
//! SW_EXITINFO2 of the first exit; 8 bytes RBX; then either (sealed) 4 bytes of header
//! deviations {seqno delta, type delta, version, vmpck}, a u16 payload length and the payload,
//! or (raw) one response page; whatever remains is the certificate buffer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::snp::ghcb::GuestRequestResult;
use svsm_abi::snp::guest_msg::{GuestMessage, MessageHeader, MSG_PAGE_SIZE};
use svsm_abi::snp::msg::{GuestFieldSelect, KeyRequest, KeySelect, ReportRequest, RootKey};
use svsm_abi::snp::TcbVersion;
use svsm_platform_snp::envelope::{seal, VmpckKey};
use svsm_platform_snp::ghcb::{GhcbError, GuestRequestExit};
use svsm_platform_snp::messenger::{GuestMessenger, GuestRequestChannel, MessengerError};
use zerocopy::{FromBytes, IntoBytes};

const KEY: [u8; 32] = [0x42; 32];
const CERT_CAPACITY: usize = 2 * 4096;

struct FuzzChannel {
    first: Option<(u64, u64)>,
    response: Vec<u8>,
    certs: Vec<u8>,
}

impl FuzzChannel {
    fn exit(&mut self, response: &mut GuestMessage) -> (GuestRequestResult, u64) {
        response.as_mut_bytes().copy_from_slice(&self.response);
        let (info2, rbx) = self.first.take().unwrap_or((0, 0));
        (GuestRequestResult::from_exit_info2(info2), rbx)
    }
}

impl GuestRequestChannel for FuzzChannel {
    fn guest_request(
        &mut self,
        _request: &GuestMessage,
        response: &mut GuestMessage,
    ) -> Result<GuestRequestResult, GhcbError> {
        Ok(self.exit(response).0)
    }

    fn extended_guest_request(
        &mut self,
        _request: &GuestMessage,
        response: &mut GuestMessage,
        certs: &mut [u8],
    ) -> Result<GuestRequestExit, GhcbError> {
        let (result, rbx) = self.exit(response);
        let n = certs.len().min(self.certs.len());
        certs[..n].copy_from_slice(&self.certs[..n]);
        Ok(GuestRequestExit {
            result,
            cert_pages: Some(rbx),
        })
    }

    fn certificate_capacity(&self) -> usize {
        CERT_CAPACITY
    }
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn u64_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let op = take(&mut data, 1).first().copied().unwrap_or(0) % 3;
    let flags = take(&mut data, 1).first().copied().unwrap_or(0);
    let info2 = u64_of(take(&mut data, 8));
    let rbx = u64_of(take(&mut data, 8));
    // The messenger sends sequence number 1; the PSP answers with 2.
    let rsp_type = if op == 1 { 4u8 } else { 6u8 };
    let mut response = vec![0u8; MSG_PAGE_SIZE];
    if flags & 1 == 1 {
        let dev = take(&mut data, 4);
        let dev = |i: usize| dev.get(i).copied().unwrap_or(0);
        let seqno = 2u64.wrapping_add(dev(0) as i8 as u64);
        let msg_type = rsp_type.wrapping_add(dev(1));
        let version = 1u8.wrapping_add(dev(2));
        let len = u64_of(take(&mut data, 2)) as usize;
        let payload = take(&mut data, len.min(4000));
        let mut msg = GuestMessage::read_from_bytes(&response).unwrap();
        let key = VmpckKey::new(&KEY).unwrap();
        seal(
            &key,
            MessageHeader::new(seqno, msg_type, version, 0, dev(3)),
            payload,
            &mut msg,
        )
        .unwrap();
        response.copy_from_slice(msg.as_bytes());
    } else {
        let page = take(&mut data, MSG_PAGE_SIZE);
        response[..page.len()].copy_from_slice(page);
    }
    let channel = FuzzChannel {
        first: Some((info2, rbx)),
        response,
        certs: data.to_vec(),
    };
    let mut m = GuestMessenger::new(channel, 0, &KEY, 0).unwrap();
    let result = match op {
        0 => m
            .report(&ReportRequest::new([1; 64], 0, KeySelect::Default))
            .map(|_| ()),
        1 => m
            .derived_key(&KeyRequest::new(
                RootKey::Vcek,
                KeySelect::Vcek,
                GuestFieldSelect::MEASUREMENT,
                0,
                0,
                TcbVersion::from_raw(0),
            ))
            .map(|_| ()),
        _ => m
            .extended_report(&ReportRequest::new([1; 64], 0, KeySelect::Default))
            .map(|(_, certs)| assert!(certs.len() <= CERT_CAPACITY)),
    };
    // The counter either advanced past the answered request, or the key is gone.
    match &result {
        Ok(()) => assert!(m.last_seqno() == 2 && !m.is_disabled()),
        Err(MessengerError::Header(_) | MessengerError::Authentication) => {
            assert!(m.is_disabled())
        }
        Err(_) => assert!(m.is_disabled() || m.last_seqno() == 2),
    }
    // A second request never reuses sequence number 1.
    let before = m.stats().requests_sealed;
    let _ = m.report(&ReportRequest::new([2; 64], 0, KeySelect::Default));
    if m.stats().requests_sealed > before {
        assert_eq!(m.last_seqno() % 2, 0);
    }
});
