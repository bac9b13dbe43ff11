//! The vault through the TPM: an [`SvsmTransport`] that carries the vault protocol's requests as
//! the vTPM's vendor command (`svsm_abi::tpm_vendor`) over any TPM command channel — the stock
//! Linux driver's `/dev/tpmrm0` in a guest ([`TpmDevice`]), the mssim protocol on a host. A
//! [`crate::vault::VaultClient`] over it works unchanged: this transport answers the two calls
//! the client makes (QUERY_PROTOCOL for the vault, the vault's REQUEST) and refuses the rest.
//!
//! Every request travels as part commands (`TPM_CC_SVSM_VAULT_PART`): one RUN when the request
//! fits a TPM command and the response its answer, more (WRITEs before, READs after) up to the
//! vault's largest message, so a 64 KiB encryption works through a 4 KiB TPM buffer.
//!
//! The vault is reported only if the TPM lists the part command in TPM_CAP_COMMANDS, which
//! only an svsm-vhsm vTPM does; any other TPM looks like an SVSM without the vault protocol.

use crate::transport::{SvsmTransport, TransportError};
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::svsm::{
    core_call, protocol_versions_rcx, CallId, CallRegisters, ProtocolQuery, ResultCode,
    PROTOCOL_CORE, PROTOCOL_VAULT,
};
use svsm_abi::tpm_vendor::{self, PartAction, VendorVaultReply, TPM_CC_SVSM_VAULT_PART};
use svsm_abi::vault::{VAULT_CALL_REQUEST, VAULT_VERSION};

/// The largest TPM command or response the channel carries (Linux's TPM_BUFSIZE, the vTPM
/// protocol's buffer).
pub const TPM_BUFFER: usize = 4096;

/// A way to run one TPM command and get its response.
pub trait TpmChannel {
    /// Sends `command`, writes the response into `response`, returns its length.
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError>;

    /// Where this client's transfer ids start (vault messages in parts): distinct per client,
    /// so that two processes of one VMPL sharing the TPM do not mix their parts.
    fn transfer_seed(&mut self) -> u32 {
        0x5356_0001
    }
}

/// Vault requests over a [`TpmChannel`]. Its "driver buffer" is local memory: requests are
/// written there by the client and sent as vendor commands.
pub struct TpmVaultTransport<C: TpmChannel> {
    channel: C,
    buffer: Vec<u8>,
    command: Vec<u8>,
    response: Vec<u8>,
    next_transfer: u32,
}

/// The local buffer: a request and a response of the vault's largest message.
const LOCAL_BUFFER: usize = 2 * svsm_abi::vault::MAX_MESSAGE.next_multiple_of(4096);

/// The base "GPA" of the local buffer: any page-aligned value; it only locates offsets.
const BUFFER_BASE: u64 = 0x1000;

impl<C: TpmChannel> TpmVaultTransport<C> {
    /// A transport over `channel`. The local buffer is two vTPM buffers: requests and
    /// responses each fit one TPM command.
    pub fn new(mut channel: C) -> Self {
        let next_transfer = channel.transfer_seed();
        TpmVaultTransport {
            channel,
            buffer: vec![0; LOCAL_BUFFER],
            command: Vec::with_capacity(TPM_BUFFER),
            response: vec![0; TPM_BUFFER],
            next_transfer,
        }
    }

    /// The channel.
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.channel
    }

    /// Whether the TPM lists the vault's part command, the one this transport sends
    /// (TPM2_GetCapability(TPM_CAP_COMMANDS) from that command code, one entry).
    fn lists_vault_command(&mut self) -> Result<bool, TransportError> {
        let command = tpm_vendor::get_capability_command(
            tpm_vendor::TPM_CAP_COMMANDS,
            TPM_CC_SVSM_VAULT_PART,
            1,
        );
        let n = self.channel.transact(&command, &mut self.response)?;
        let r = self.response.get(..n).unwrap_or(&[]);
        // Response: header, moreData, capability, count, then TPMA_CC entries.
        let be32 = |at: usize| {
            r.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
        };
        if be32(6) != Some(0) || be32(11) != Some(tpm_vendor::TPM_CAP_COMMANDS) {
            return Ok(false);
        }
        let count = be32(15).unwrap_or(0);
        Ok((0..count.min(64) as usize)
            .any(|i| be32(19 + 4 * i) == Some(tpm_vendor::TPMA_CC_SVSM_VAULT_PART)))
    }

    /// Sends one part command and reads its answer: (registers, data copied to `out` from
    /// `at`, bytes copied).
    fn part(
        &mut self,
        transfer: u32,
        action: PartAction,
        offset: u32,
        data: core::ops::Range<usize>,
        out: Option<(usize, usize)>,
    ) -> Result<(VendorVaultReply, usize), TransportError> {
        let too_big = TransportError::BufferRange {
            offset: data.start,
            len: data.len(),
            size: tpm_vendor::MAX_PART_DATA,
        };
        let header =
            tpm_vendor::part_command_header(transfer, action, offset, data.len()).ok_or(too_big)?;
        self.command.clear();
        self.command.extend_from_slice(&header);
        self.command
            .extend_from_slice(self.buffer.get(data).ok_or(too_big)?);
        let n = self.channel.transact(&self.command, &mut self.response);
        zeroize::Zeroize::zeroize(self.command.as_mut_slice());
        let n = n?;
        let result = tpm_vendor::parse_part_response(self.response.get(..n).unwrap_or(&[]))
            .map_err(|e| match e {
                tpm_vendor::VendorResponseError::Tpm(code) => TransportError::TpmResponse(code),
                _ => TransportError::TpmResponse(u32::MAX),
            })
            .and_then(|answer| {
                let copied = answer.data.len();
                if let Some((at, room)) = out {
                    let err = TransportError::BufferRange {
                        offset: at,
                        len: copied,
                        size: room,
                    };
                    if copied > room {
                        return Err(err);
                    }
                    self.buffer
                        .get_mut(at..at + copied)
                        .ok_or(err)?
                        .copy_from_slice(answer.data);
                }
                Ok((answer.reply, copied))
            });
        if let Some(r) = self.response.get_mut(..n) {
            zeroize::Zeroize::zeroize(r);
        }
        result
    }

    /// One vault request, in as many part commands as it takes: WRITEs of the request's
    /// leading parts, a RUN with its last part (answered with the response's first bytes),
    /// READs of the rest.
    fn vault_request(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        let size = self.buffer.len();
        let range = |gpa: u64, len: u64| -> Result<core::ops::Range<usize>, TransportError> {
            let err = TransportError::BufferRange {
                offset: gpa.wrapping_sub(BUFFER_BASE) as usize,
                len: len as usize,
                size,
            };
            let start =
                usize::try_from(gpa.checked_sub(BUFFER_BASE).ok_or(err)?).map_err(|_| err)?;
            let end = start
                .checked_add(usize::try_from(len).map_err(|_| err)?)
                .filter(|e| *e <= size)
                .ok_or(err)?;
            Ok(start..end)
        };
        let request = range(regs.rcx, regs.rdx)?;
        let out = range(regs.r8, regs.r9)?;
        self.next_transfer = self.next_transfer.wrapping_add(1).max(1);
        let transfer = self.next_transfer;
        let max = tpm_vendor::MAX_PART_DATA;
        // Everything but the last part (which RUN carries) is written first.
        let last = request.start + (request.len().saturating_sub(1) / max) * max;
        let mut offset = request.start;
        while offset < last {
            let reply = self
                .part(
                    transfer,
                    PartAction::Write,
                    (offset - request.start) as u32,
                    offset..offset + max,
                    None,
                )?
                .0;
            if reply.status.get() != 0 {
                return self.refused(regs, reply);
            }
            offset += max;
        }
        let (reply, first) = self.part(
            transfer,
            PartAction::Run,
            (offset - request.start) as u32,
            offset..request.end,
            Some((out.start, out.len())),
        )?;
        let status = reply.status.get();
        let carries =
            status == 0 || status == svsm_abi::vault::VaultStatus::NotPersisted.result_code();
        let total = usize::try_from(reply.rcx.get()).unwrap_or(usize::MAX);
        if carries && total > out.len() {
            // The vault answered more than the caller has room for (it ran: like the vault
            // protocol, say how much it needs).
            regs.rax = u64::from(svsm_abi::vault::VaultStatus::ResponseTooSmall.result_code());
            regs.rcx = reply.rcx.get();
            regs.rdx = 0;
            return Ok(());
        }
        let mut got = first;
        while carries && got < total {
            let (read, n) = self.part(
                transfer,
                PartAction::Read,
                got as u32,
                0..0,
                Some((out.start + got, out.len() - got)),
            )?;
            if read.status.get() != 0 || n == 0 || read.rcx.get() != reply.rcx.get() {
                return Err(TransportError::TpmResponse(u32::MAX));
            }
            got += n;
        }
        regs.rax = u64::from(status);
        regs.rcx = reply.rcx.get();
        regs.rdx = reply.rdx.get();
        Ok(())
    }

    /// A part the vTPM did not take: its status as the call's result.
    fn refused(
        &mut self,
        regs: &mut CallRegisters,
        reply: VendorVaultReply,
    ) -> Result<(), TransportError> {
        regs.rax = u64::from(reply.status.get());
        regs.rcx = 0;
        regs.rdx = 0;
        Ok(())
    }
}

impl<C: TpmChannel> SvsmTransport for TpmVaultTransport<C> {
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        let id = CallId::from_rax(regs.rax);
        let unsupported = u64::from(ResultCode::UnsupportedProtocol.to_u32());
        match (id.protocol, id.call) {
            (PROTOCOL_CORE, core_call::QUERY_PROTOCOL) => {
                let query = ProtocolQuery::from_rcx(regs.rcx);
                let version = u32::from(VAULT_VERSION);
                regs.rcx = if query.protocol == PROTOCOL_VAULT
                    && query.version == version
                    && self.lists_vault_command()?
                {
                    protocol_versions_rcx(version, version)
                } else {
                    0
                };
                regs.rax = 0;
                Ok(())
            }
            (PROTOCOL_VAULT, VAULT_CALL_REQUEST) => self.vault_request(regs),
            _ => {
                regs.rax = unsupported;
                Ok(())
            }
        }
    }

    fn buffer_gpa(&self) -> u64 {
        BUFFER_BASE
    }

    fn buffer_len(&self) -> usize {
        self.buffer.len()
    }

    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        let err = TransportError::BufferRange {
            offset,
            len: data.len(),
            size: self.buffer.len(),
        };
        self.buffer
            .get_mut(offset..offset.checked_add(data.len()).ok_or(err)?)
            .ok_or(err)?
            .copy_from_slice(data);
        Ok(())
    }

    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let err = TransportError::BufferRange {
            offset,
            len: out.len(),
            size: self.buffer.len(),
        };
        out.copy_from_slice(
            self.buffer
                .get(offset..offset.checked_add(out.len()).ok_or(err)?)
                .ok_or(err)?,
        );
        Ok(())
    }
}

impl<C: TpmChannel> Drop for TpmVaultTransport<C> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.buffer.as_mut_slice());
    }
}

/// A TPM command channel a process opens: a TPM character device (`/dev/tpmrm0`: write the
/// command, read the response) or a TPM simulator's TCP command port (the "mssim" protocol of
/// the TCG reference simulator, as `svsm-sim tpm-server` serves it: tests on a host).
#[cfg(feature = "std")]
pub struct TpmDevice(TpmLink);

#[cfg(feature = "std")]
enum TpmLink {
    File(std::fs::File),
    Mssim(std::net::TcpStream),
}

/// The mssim command that carries one TPM command (TCG `TpmTcpProtocol.h` TPM_SEND_COMMAND).
#[cfg(feature = "std")]
const MSSIM_SEND_COMMAND: u32 = 8;

#[cfg(feature = "std")]
impl TpmDevice {
    /// Opens the device read-write.
    pub fn open(path: &std::path::Path) -> std::io::Result<TpmDevice> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(|f| TpmDevice(TpmLink::File(f)))
    }

    /// Connects to a TPM simulator's command port (`host:port`).
    pub fn connect_mssim(address: &str) -> std::io::Result<TpmDevice> {
        let s = std::net::TcpStream::connect(address)?;
        let _ = s.set_nodelay(true);
        Ok(TpmDevice(TpmLink::Mssim(s)))
    }

    /// Opens what `spec` names: `mssim:host=H,port=P` (the tpm2-tools TCTI spelling; both keys
    /// optional, 127.0.0.1 and 2321 by default) or a device path.
    pub fn open_spec(spec: &str) -> std::io::Result<TpmDevice> {
        let Some(config) = spec
            .strip_prefix("mssim:")
            .or((spec == "mssim").then_some(""))
        else {
            return TpmDevice::open(std::path::Path::new(spec));
        };
        let (mut host, mut port) = ("127.0.0.1", "2321");
        for pair in config.split(',').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("host", h)) => host = h,
                Some(("port", p)) => port = p,
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        std::format!("`{pair}` in `{spec}`: mssim takes host=H,port=P"),
                    ))
                }
            }
        }
        TpmDevice::connect_mssim(&std::format!("{host}:{port}"))
    }
}

#[cfg(feature = "std")]
impl TpmChannel for TpmDevice {
    fn transfer_seed(&mut self) -> u32 {
        // Randomly keyed per process by the standard library: two clients of one VMPL
        // sharing the TPM start their transfer ids far apart.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        (h.finish() as u32).max(1)
    }

    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        use std::io::{Read, Write};
        let os = |e: std::io::Error| TransportError::TpmDevice(e.raw_os_error().unwrap_or(0));
        match &mut self.0 {
            TpmLink::File(f) => {
                // One write is one command and one read one response (the driver's contract).
                f.write_all(command).map_err(os)?;
                f.read(response).map_err(os)
            }
            TpmLink::Mssim(s) => {
                let size = u32::try_from(command.len())
                    .map_err(|_| TransportError::TpmResponse(u32::MAX))?;
                let mut head = [0u8; 9];
                head[..4].copy_from_slice(&MSSIM_SEND_COMMAND.to_be_bytes());
                head[5..].copy_from_slice(&size.to_be_bytes());
                s.write_all(&head).map_err(os)?;
                s.write_all(command).map_err(os)?;
                let mut word = [0u8; 4];
                s.read_exact(&mut word).map_err(os)?;
                let len = u32::from_be_bytes(word) as usize;
                let dst = response
                    .get_mut(..len)
                    .ok_or(TransportError::TpmResponse(u32::MAX))?;
                s.read_exact(dst).map_err(os)?;
                // Every mssim command ends with a u32 acknowledgement (0).
                s.read_exact(&mut word).map_err(os)?;
                Ok(len)
            }
        }
    }
}

/// The vTPM protocol itself as a TPM channel (the SVSM call that `tpm_svsm` makes): what a
/// kernel-side client, or a test on the simulated machine, uses.
impl<T: SvsmTransport> TpmChannel for crate::vtpm::VtpmClient<T> {
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError> {
        self.send_command(command, response).map_err(|e| match e {
            crate::transport::DriverError::Transport(t) => t,
            _ => TransportError::TpmResponse(u32::MAX),
        })
    }
}
