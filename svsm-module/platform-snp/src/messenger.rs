//! PSP guest messages over a guest-request channel (SNP ABI spec "SNP_GUEST_REQUEST"; GHCB spec
//! "SNP Guest Request" and "SNP Extended Guest Request").
//!
//! Sequence numbers. One [`GuestMessenger`] owns one VMPCK and its counter N (the last sequence
//! number consumed; 0 at launch). A request carries N+1, the PSP answers with N+2, and N becomes
//! N+2 only when that answer has been authenticated. From the moment a request is encrypted its
//! sequence number is committed: every outcome either consumes it (an authenticated response),
//! re-sends the byte-identical message (hypervisor BUSY, or the plain re-issue after
//! "certificate buffer too small"), or disables the VMPCK. A sequence number is therefore never
//! used for two different messages, which would reuse an AES-GCM IV.
//!
//! Disabling. The VMPCK is wiped from memory and every later request fails with
//! [`MessengerError::Disabled`] when: the response header does not answer the request (ALGO,
//! HDR_VERSION, HDR_SIZE, MSG_VMPCK, MSG_SEQNO, MSG_TYPE, MSG_VERSION, MSG_SIZE), the tag does
//! not verify, the firmware rejected the envelope (non-zero status in SW_EXITINFO2), the
//! hypervisor reported an error other than a bounded BUSY or the extended request's INVALID_LEN,
//! the GHCB exchange failed after the request went out, or the counter would overflow. Errors
//! that leave the counters in step do not disable: a STATUS error inside an authenticated
//! response, a malformed certificate table (host data, outside the envelope), a certificate
//! buffer too small (the re-issued plain request consumed the number), a payload too large to
//! send (nothing was encrypted).

use crate::envelope::{self, CryptoError, VmpckKey};
use crate::ghcb::{Ghcb, GhcbError, GuestRequestExit};
use crate::memory::SharedMemory;
use crate::CpuOps;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::snp::certs::{CertTable, CertTableEntry, CertTableError};
use svsm_abi::snp::ghcb::{GuestRequestResult, VMM_ERR_BUSY, VMM_ERR_INVALID_LEN};
use svsm_abi::snp::guest_msg::{
    EnvelopeError, ExpectedResponse, GuestMessage, MessageHeader, MSG_PAGE_SIZE, MSG_VERSION_1,
};
use svsm_abi::snp::msg::{
    GuestFieldSelect, KeyRequest, KeyResponse, MessageError, MessageType, ReportRequest,
    ReportResponse,
};
use svsm_abi::snp::RawReport;
use svsm_core::platform::{DerivedKey, PAGE_SIZE};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Bytes of MSG_KEY_REQ understood by all firmware (up to TCB_VERSION).
pub const KEY_REQUEST_LEN_V1: usize = 0x20;
/// Times a request answered with BUSY is re-sent (byte-identical) before giving up.
pub const DEFAULT_BUSY_RETRIES: u32 = 2;

/// Delivery of sealed message pages to the PSP through the hypervisor.
pub trait GuestRequestChannel {
    /// SNP guest request: delivers `request`, copies the response page into `response`.
    fn guest_request(
        &mut self,
        request: &GuestMessage,
        response: &mut GuestMessage,
    ) -> Result<GuestRequestResult, GhcbError>;

    /// SNP extended guest request: as [`Self::guest_request`], and on success the certificate
    /// buffer is copied into `certs` (whose length is [`Self::certificate_capacity`]).
    fn extended_guest_request(
        &mut self,
        request: &GuestMessage,
        response: &mut GuestMessage,
        certs: &mut [u8],
    ) -> Result<GuestRequestExit, GhcbError>;

    /// Bytes of certificate buffer the channel offers (whole pages; 0 = none).
    fn certificate_capacity(&self) -> usize;
}

/// The shared pages of the guest-request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRequestPages {
    /// GPA of the request page.
    pub request_gpa: u64,
    /// GPA of the response page.
    pub response_gpa: u64,
    /// GPA of the certificate buffer (page aligned).
    pub certs_gpa: u64,
    /// Pages in the certificate buffer (0 = no extended requests).
    pub cert_pages: u64,
}

/// The guest-request channel over the GHCB page.
pub struct GhcbChannel<C, S> {
    ghcb: Ghcb<C, S>,
    pages: GuestRequestPages,
}

impl<C: CpuOps, S: SharedMemory> GhcbChannel<C, S> {
    /// A channel through a registered `ghcb` using the shared `pages`.
    pub fn new(ghcb: Ghcb<C, S>, pages: GuestRequestPages) -> Result<Self, GhcbError> {
        for gpa in [pages.request_gpa, pages.response_gpa, pages.certs_gpa] {
            if gpa % PAGE_SIZE != 0 {
                return Err(GhcbError::Misaligned(gpa));
            }
        }
        Ok(GhcbChannel { ghcb, pages })
    }

    /// The GHCB (for page-state changes and termination).
    pub fn ghcb_mut(&mut self) -> &mut Ghcb<C, S> {
        &mut self.ghcb
    }

    fn send(
        &mut self,
        request: &GuestMessage,
        certs: Option<(u64, u64)>,
    ) -> Result<GuestRequestExit, GhcbError> {
        let p = self.pages;
        let shared = self.ghcb.shared_mut();
        shared.write_shared(p.request_gpa, request.as_bytes())?;
        shared.write_shared(p.response_gpa, &[0u8; MSG_PAGE_SIZE])?;
        self.ghcb
            .guest_request(p.request_gpa, p.response_gpa, certs)
    }
}

impl<C: CpuOps, S: SharedMemory> GuestRequestChannel for GhcbChannel<C, S> {
    fn guest_request(
        &mut self,
        request: &GuestMessage,
        response: &mut GuestMessage,
    ) -> Result<GuestRequestResult, GhcbError> {
        let exit = self.send(request, None)?;
        self.ghcb
            .shared_mut()
            .read_shared(self.pages.response_gpa, response.as_mut_bytes())?;
        Ok(exit.result)
    }

    fn extended_guest_request(
        &mut self,
        request: &GuestMessage,
        response: &mut GuestMessage,
        certs: &mut [u8],
    ) -> Result<GuestRequestExit, GhcbError> {
        let p = self.pages;
        // A stale table must not be read as this request's: clear the buffer first.
        for page in 0..p.cert_pages {
            self.ghcb
                .shared_mut()
                .write_shared(p.certs_gpa + page * PAGE_SIZE, &[0u8; PAGE_SIZE as usize])?;
        }
        let exit = self.send(request, Some((p.certs_gpa, p.cert_pages)))?;
        let capacity = self.certificate_capacity();
        let shared = self.ghcb.shared_mut();
        shared.read_shared(p.response_gpa, response.as_mut_bytes())?;
        if exit.result
            == (GuestRequestResult {
                vmm_error: 0,
                fw_status: 0,
            })
        {
            let len = certs.len().min(capacity);
            if let Some(out) = certs.get_mut(..len) {
                shared.read_shared(p.certs_gpa, out)?;
            }
        }
        Ok(exit)
    }

    fn certificate_capacity(&self) -> usize {
        usize::try_from(self.pages.cert_pages.saturating_mul(PAGE_SIZE)).unwrap_or(0)
    }
}

/// Why a guest message failed. See the module documentation for which variants disable the
/// VMPCK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessengerError {
    /// The VMPCK is disabled (wiped after an earlier failure); no request is sent.
    #[error("VMPCK{0} is disabled")]
    Disabled(u8),
    /// The VMPCK is all zero in the secrets page.
    #[error("VMPCK{0} is absent")]
    Absent(u8),
    /// The VMPCK index is not 0..=3.
    #[error("VMPCK index {0} does not exist")]
    VmpckIndex(u8),
    /// The sequence number would overflow.
    #[error("message sequence numbers of VMPCK{0} are exhausted")]
    SequenceExhausted(u8),
    /// Sealing failed locally (nothing was sent).
    #[error("sealing the request: {0}")]
    Seal(CryptoError),
    /// The response header does not answer the request.
    #[error("response header: {0}")]
    Header(EnvelopeError),
    /// The response's tag did not verify.
    #[error("the response failed authentication")]
    Authentication,
    /// The GHCB exchange failed.
    #[error("GHCB: {0}")]
    Ghcb(#[from] GhcbError),
    /// The hypervisor stayed BUSY through every byte-identical re-send.
    #[error("the hypervisor stayed busy")]
    Busy,
    /// The hypervisor reported an error (upper half of SW_EXITINFO2).
    #[error("hypervisor error {0:#x}")]
    Hypervisor(u32),
    /// The firmware rejected the envelope (lower half of SW_EXITINFO2).
    #[error("firmware rejected the message with status {0:#x}")]
    Firmware(u32),
    /// The authenticated response payload is malformed or carries a failure STATUS.
    #[error("response payload: {0}")]
    Payload(MessageError),
    /// The channel has no certificate buffer.
    #[error("no certificate buffer is configured")]
    NoCertificateBuffer,
    /// The host has more certificate data than the buffer holds.
    #[error("certificate buffer of {capacity_pages} pages is too small: {needed_pages} needed")]
    CertBufferTooSmall {
        /// Pages the hypervisor asked for (RBX).
        needed_pages: u64,
        /// Pages offered.
        capacity_pages: u64,
    },
    /// The host's certificate table is malformed.
    #[error("certificate table: {0}")]
    Certificates(CertTableError),
}

impl From<CryptoError> for MessengerError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Header(h) => MessengerError::Header(h),
            CryptoError::Authentication => MessengerError::Authentication,
            other => MessengerError::Seal(other),
        }
    }
}

/// How a delivered request ended at the hypervisor.
enum Delivered {
    /// A response page came back.
    Response,
    /// INVALID_LEN; the plain re-issue came back with a response page.
    CertsTooSmall(u64),
}

/// Counters for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessengerStats {
    /// Guest-request exits issued (re-sends included).
    pub exits: u64,
    /// Sequence numbers committed to a request (each used for exactly one message).
    pub requests_sealed: u64,
    /// Responses authenticated.
    pub responses_accepted: u64,
}

/// PSP guest messages under one VMPCK. See the module documentation.
pub struct GuestMessenger<T> {
    channel: T,
    vmpck_id: u8,
    key: Option<VmpckKey>,
    last_seqno: u64,
    busy_retries: u32,
    request: Box<GuestMessage>,
    response: Box<GuestMessage>,
    stats: MessengerStats,
}

impl<T: GuestRequestChannel> GuestMessenger<T> {
    /// A messenger for VMPCK`vmpck_id` with `key`, whose counter last used `last_seqno` (0 when
    /// nothing used this key since launch; the SVSM keeps VMPCK0's counter privately).
    pub fn new(
        channel: T,
        vmpck_id: u8,
        key: &[u8; 32],
        last_seqno: u64,
    ) -> Result<Self, MessengerError> {
        if vmpck_id > 3 {
            return Err(MessengerError::VmpckIndex(vmpck_id));
        }
        let key = VmpckKey::new(key).ok_or(MessengerError::Absent(vmpck_id))?;
        Ok(GuestMessenger {
            channel,
            vmpck_id,
            key: Some(key),
            last_seqno,
            busy_retries: DEFAULT_BUSY_RETRIES,
            request: Box::new(GuestMessage::new_zeroed()),
            response: Box::new(GuestMessage::new_zeroed()),
            stats: MessengerStats::default(),
        })
    }

    /// Sets how many times a BUSY answer is re-sent before the VMPCK is given up.
    pub fn set_busy_retries(&mut self, retries: u32) {
        self.busy_retries = retries;
    }

    /// The channel.
    pub fn channel_mut(&mut self) -> &mut T {
        &mut self.channel
    }

    /// The VMPCK index.
    pub fn vmpck_id(&self) -> u8 {
        self.vmpck_id
    }

    /// True once the VMPCK was disabled.
    pub fn is_disabled(&self) -> bool {
        self.key.is_none()
    }

    /// The last sequence number consumed.
    pub fn last_seqno(&self) -> u64 {
        self.last_seqno
    }

    /// Counters.
    pub fn stats(&self) -> MessengerStats {
        self.stats
    }

    /// Wipes the VMPCK; no further request is sent with it.
    pub fn disable(&mut self) {
        self.key = None;
    }

    /// MSG_REPORT_REQ: an attestation report.
    pub fn report(&mut self, request: &ReportRequest) -> Result<RawReport, MessengerError> {
        let payload = self.exchange(
            MessageType::ReportReq as u8,
            request.as_bytes(),
            size_of::<ReportResponse>(),
            None,
        )?;
        let rsp = ReportResponse::parse(payload).map_err(MessengerError::Payload)?;
        Ok(rsp.report)
    }

    /// MSG_REPORT_REQ as an extended guest request: the report and the host's certificate
    /// table (trimmed to its extent; 24 zero bytes when the host has none).
    pub fn extended_report(
        &mut self,
        request: &ReportRequest,
    ) -> Result<(RawReport, Vec<u8>), MessengerError> {
        let capacity = self.channel.certificate_capacity();
        if capacity == 0 {
            return Err(MessengerError::NoCertificateBuffer);
        }
        let mut certs = vec![0u8; capacity];
        let payload = self.exchange(
            MessageType::ReportReq as u8,
            request.as_bytes(),
            size_of::<ReportResponse>(),
            Some(&mut certs),
        )?;
        let report = ReportResponse::parse(payload)
            .map_err(MessengerError::Payload)?
            .report;
        let len = table_extent(&certs).map_err(MessengerError::Certificates)?;
        certs.truncate(len);
        Ok((report, certs))
    }

    /// MSG_KEY_REQ: a derived key. The request goes out in its 0x20-byte form (understood by all
    /// firmware) unless it selects or sets the launch mitigation vector.
    pub fn derived_key(&mut self, request: &KeyRequest) -> Result<DerivedKey, MessengerError> {
        let full = request.as_bytes();
        let needs_mit = request
            .fields()
            .contains(GuestFieldSelect::LAUNCH_MIT_VECTOR)
            || request.launch_mit_vector.get() != 0;
        let len = if needs_mit {
            full.len()
        } else {
            KEY_REQUEST_LEN_V1
        };
        let payload = full.get(..len).unwrap_or(full);
        let plain = self.exchange(
            MessageType::KeyReq as u8,
            payload,
            size_of::<KeyResponse>(),
            None,
        )?;
        let rsp = KeyResponse::parse(plain).map_err(MessengerError::Payload)?;
        let key = DerivedKey(rsp.derived_key);
        // The plaintext stays in the private response buffer: wipe it.
        self.response.payload.fill(0);
        Ok(key)
    }

    /// Seals `payload` as `msg_type`, delivers it, and returns the authenticated plaintext of
    /// a response of `rsp_size` bytes. With `certs`, sends an extended request.
    fn exchange(
        &mut self,
        msg_type: u8,
        payload: &[u8],
        rsp_size: usize,
        certs: Option<&mut Vec<u8>>,
    ) -> Result<&[u8], MessengerError> {
        let id = self.vmpck_id;
        if self.key.is_none() {
            return Err(MessengerError::Disabled(id));
        }
        let (Some(seqno), Some(_)) = (
            self.last_seqno.checked_add(1),
            self.last_seqno.checked_add(2),
        ) else {
            self.disable();
            return Err(MessengerError::SequenceExhausted(id));
        };
        let rsp_size = u16::try_from(rsp_size)
            .map_err(|_| MessengerError::Seal(CryptoError::PayloadTooLarge(rsp_size)))?;
        let header = MessageHeader::new(seqno, msg_type, MSG_VERSION_1, 0, id);
        let key = self.key.as_ref().ok_or(MessengerError::Disabled(id))?;
        envelope::seal(key, header, payload, &mut self.request)?;
        // From here on `seqno` is committed.
        self.stats.requests_sealed += 1;
        let delivered = match self.deliver(certs) {
            Ok(d) => d,
            Err(e) => {
                self.disable();
                return Err(e);
            }
        };
        let expected = ExpectedResponse {
            seqno: seqno.wrapping_add(1),
            msg_type: msg_type.wrapping_add(1),
            msg_version: MSG_VERSION_1,
            vmpck: id,
            msg_size: rsp_size,
        };
        let key = self.key.as_ref().ok_or(MessengerError::Disabled(id))?;
        if let Err(e) = envelope::open(key, &mut self.response, &expected) {
            self.disable();
            return Err(e.into());
        }
        self.last_seqno = expected.seqno;
        self.stats.responses_accepted += 1;
        if let Delivered::CertsTooSmall(needed_pages) = delivered {
            self.response.payload.fill(0);
            return Err(MessengerError::CertBufferTooSmall {
                needed_pages,
                capacity_pages: (self.channel.certificate_capacity() as u64) / PAGE_SIZE,
            });
        }
        self.response
            .payload
            .get(..usize::from(rsp_size))
            .ok_or(MessengerError::Header(EnvelopeError::PayloadTooLarge(
                rsp_size,
            )))
    }

    /// Sends the sealed request until the hypervisor answers with a response page, re-sending
    /// it byte-identical on BUSY (bounded) and as a plain request after INVALID_LEN. Any error
    /// returned here leaves the sequence number in doubt: the caller disables the VMPCK.
    fn deliver(&mut self, mut certs: Option<&mut Vec<u8>>) -> Result<Delivered, MessengerError> {
        let mut busy = 0u32;
        let mut too_small = None;
        loop {
            self.stats.exits += 1;
            let exit = match certs.as_deref_mut() {
                Some(buf) => {
                    self.channel
                        .extended_guest_request(&self.request, &mut self.response, buf)?
                }
                None => GuestRequestExit {
                    result: self
                        .channel
                        .guest_request(&self.request, &mut self.response)?,
                    cert_pages: None,
                },
            };
            match (exit.result.vmm_error, exit.result.fw_status) {
                (0, 0) => {
                    return Ok(match too_small {
                        Some(pages) => Delivered::CertsTooSmall(pages),
                        None => Delivered::Response,
                    })
                }
                (VMM_ERR_BUSY, _) if busy < self.busy_retries => busy += 1,
                (VMM_ERR_BUSY, _) => return Err(MessengerError::Busy),
                (VMM_ERR_INVALID_LEN, _) if certs.is_some() => {
                    // The hypervisor did not call the PSP: the number is unused. Re-issue the
                    // identical message as a plain request so that it is consumed.
                    too_small = Some(exit.cert_pages.unwrap_or(0));
                    certs = None;
                }
                (0, status) => return Err(MessengerError::Firmware(status)),
                (vmm, _) => return Err(MessengerError::Hypervisor(vmm)),
            }
        }
    }
}

/// The bytes a parsed certificate table spans: its entries, terminator and blobs.
pub fn table_extent(buf: &[u8]) -> Result<usize, CertTableError> {
    let table = CertTable::parse(buf)?;
    let entries = table.len();
    let mut end = (entries + 1) * size_of::<CertTableEntry>();
    for i in 0..entries {
        let entry = buf
            .get(i * size_of::<CertTableEntry>()..)
            .and_then(|tail| CertTableEntry::read_from_prefix(tail).ok())
            .map(|(e, _)| e)
            .ok_or(CertTableError::Unterminated(buf.len()))?;
        let blob_end = (entry.offset.get() as usize).saturating_add(entry.length.get() as usize);
        end = end.max(blob_end);
    }
    Ok(end)
}
