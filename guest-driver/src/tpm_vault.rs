//! The vault through the TPM: an [`SvsmTransport`] that carries the vault protocol's requests as
//! the vTPM's vendor command (`svsm_abi::tpm_vendor`) over any TPM command channel — the stock
//! Linux driver's `/dev/tpmrm0` in a guest ([`TpmDevice`]), the mssim protocol on a host. A
//! [`crate::vault::VaultClient`] over it works unchanged: this transport answers the two calls
//! the client makes (QUERY_PROTOCOL for the vault, the vault's REQUEST) and refuses the rest.
//!
//! The vault is reported only if the TPM lists the vendor command in TPM_CAP_COMMANDS, which
//! only an svsm-vhsm vTPM does; any other TPM looks like an SVSM without the vault protocol.

use crate::transport::{SvsmTransport, TransportError};
use alloc::vec;
use alloc::vec::Vec;
use svsm_abi::svsm::{
    core_call, protocol_versions_rcx, CallId, CallRegisters, ProtocolQuery, ResultCode,
    PROTOCOL_CORE, PROTOCOL_VAULT,
};
use svsm_abi::tpm_vendor::{self, TPM_CC_SVSM_VAULT};
use svsm_abi::vault::{VAULT_CALL_REQUEST, VAULT_VERSION};

/// The largest TPM command or response the channel carries (Linux's TPM_BUFSIZE, the vTPM
/// protocol's buffer).
pub const TPM_BUFFER: usize = 4096;

/// A way to run one TPM command and get its response.
pub trait TpmChannel {
    /// Sends `command`, writes the response into `response`, returns its length.
    fn transact(&mut self, command: &[u8], response: &mut [u8]) -> Result<usize, TransportError>;
}

/// Vault requests over a [`TpmChannel`]. Its "driver buffer" is local memory: requests are
/// written there by the client and sent as vendor commands.
pub struct TpmVaultTransport<C: TpmChannel> {
    channel: C,
    buffer: Vec<u8>,
    command: Vec<u8>,
    response: Vec<u8>,
}

/// The base "GPA" of the local buffer: any page-aligned value; it only locates offsets.
const BUFFER_BASE: u64 = 0x1000;

impl<C: TpmChannel> TpmVaultTransport<C> {
    /// A transport over `channel`. The local buffer is two vTPM buffers: requests and
    /// responses each fit one TPM command.
    pub fn new(channel: C) -> Self {
        TpmVaultTransport {
            channel,
            buffer: vec![0; 2 * TPM_BUFFER],
            command: Vec::with_capacity(TPM_BUFFER),
            response: vec![0; TPM_BUFFER],
        }
    }

    /// The channel.
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.channel
    }

    /// Whether the TPM lists the vault's vendor command (TPM2_GetCapability(TPM_CAP_COMMANDS)
    /// from that command code, one entry).
    fn lists_vault_command(&mut self) -> Result<bool, TransportError> {
        let command =
            tpm_vendor::get_capability_command(tpm_vendor::TPM_CAP_COMMANDS, TPM_CC_SVSM_VAULT, 1);
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
            .any(|i| be32(19 + 4 * i) == Some(tpm_vendor::TPMA_CC_SVSM_VAULT)))
    }

    fn vault_request(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        let range = |gpa: u64, len: u64| -> Result<core::ops::Range<usize>, TransportError> {
            let err = TransportError::BufferRange {
                offset: gpa.wrapping_sub(BUFFER_BASE) as usize,
                len: len as usize,
                size: 2 * TPM_BUFFER,
            };
            let start =
                usize::try_from(gpa.checked_sub(BUFFER_BASE).ok_or(err)?).map_err(|_| err)?;
            let end = start
                .checked_add(usize::try_from(len).map_err(|_| err)?)
                .filter(|e| *e <= 2 * TPM_BUFFER)
                .ok_or(err)?;
            Ok(start..end)
        };
        let request = self.buffer.get(range(regs.rcx, regs.rdx)?).unwrap_or(&[]);
        let header =
            tpm_vendor::vault_command_header(request.len()).ok_or(TransportError::BufferRange {
                offset: 0,
                len: request.len(),
                size: TPM_BUFFER,
            })?;
        self.command.clear();
        self.command.extend_from_slice(&header);
        self.command.extend_from_slice(request);
        let n = self.channel.transact(&self.command, &mut self.response)?;
        zeroize::Zeroize::zeroize(self.command.as_mut_slice());
        let answer = tpm_vendor::parse_vault_response(self.response.get(..n).unwrap_or(&[]))
            .map_err(|e| match e {
                tpm_vendor::VendorResponseError::Tpm(code) => TransportError::TpmResponse(code),
                _ => TransportError::TpmResponse(u32::MAX),
            })?;
        let out = range(regs.r8, answer.data.len() as u64)?;
        if answer.data.len() as u64 > regs.r9 {
            return Err(TransportError::BufferRange {
                offset: out.start,
                len: answer.data.len(),
                size: regs.r9 as usize,
            });
        }
        if let Some(dst) = self.buffer.get_mut(out) {
            dst.copy_from_slice(answer.data);
        }
        regs.rax = u64::from(answer.reply.status.get());
        regs.rcx = answer.reply.rcx.get();
        regs.rdx = answer.reply.rdx.get();
        if let Some(r) = self.response.get_mut(..n) {
            zeroize::Zeroize::zeroize(r);
        }
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
        2 * TPM_BUFFER
    }

    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        let err = TransportError::BufferRange {
            offset,
            len: data.len(),
            size: 2 * TPM_BUFFER,
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
            size: 2 * TPM_BUFFER,
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
