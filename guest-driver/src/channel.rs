//! The SVSM call channel a guest process opens: framed SVSM calls over TCP
//! (`svsm-sim tpm-server --guest-port`) or a character device (the serial line `svsm-sim guest
//! run` connects to the machine: a stand-in for VMGEXIT where QEMU has no SEV-SNP). Shared by
//! the guest command lines (`svsm-vault`, `svsm-attest`).

use crate::framed::FramedTransport;
use crate::tpm_vault::{TpmDevice, TpmVaultTransport};
use crate::transport::{SvsmTransport, TransportError};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::string::{String, ToString};
use svsm_abi::svsm::CallRegisters;

/// Where the simulator places a channel client's driver buffer (see `svsm-sim tpm-server
/// --guest-port`).
pub const BUFFER_GPA: u64 = 0x20_0000;

/// The call-channel options of every guest command line.
#[derive(clap::Args, Debug, Clone)]
pub struct ChannelArgs {
    /// Where the SVSM call channel is (svsm-sim tpm-server --guest-port).
    #[arg(long, default_value = "127.0.0.1:2323", global = true)]
    pub connect: String,
    /// Use this character device (or any stream file) for the call channel instead of
    /// `--connect`: e.g. the serial port `svsm-sim guest run` connects to the machine. Put a
    /// serial line in raw mode first (`stty -F DEV raw -echo`).
    #[arg(long, value_name = "PATH", global = true)]
    pub device: Option<std::path::PathBuf>,
    /// Size of the driver buffer each call carries, in 4 KiB pages (the vault's largest
    /// message needs 40; a slow line does better with fewer).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(2..=40), global = true)]
    pub buffer_pages: u16,
    /// The VMPL this guest runs at (keys belong to the VMPL that made them).
    #[arg(long, default_value_t = 1, global = true)]
    pub vmpl: u8,
}

/// The vault's transport: the SVSM call channel, or the TPM device's vendor command.
pub enum VaultTransport {
    /// `--connect` or `--device`.
    Channel(FramedTransport<ChannelStream>),
    /// `--tpm`.
    Tpm(TpmVaultTransport<TpmDevice>),
}

impl SvsmTransport for VaultTransport {
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        match self {
            VaultTransport::Channel(t) => t.raw_call(regs),
            VaultTransport::Tpm(t) => t.raw_call(regs),
        }
    }
    fn buffer_gpa(&self) -> u64 {
        match self {
            VaultTransport::Channel(t) => t.buffer_gpa(),
            VaultTransport::Tpm(t) => t.buffer_gpa(),
        }
    }
    fn buffer_len(&self) -> usize {
        match self {
            VaultTransport::Channel(t) => t.buffer_len(),
            VaultTransport::Tpm(t) => t.buffer_len(),
        }
    }
    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        match self {
            VaultTransport::Channel(t) => t.write_buffer(offset, data),
            VaultTransport::Tpm(t) => t.write_buffer(offset, data),
        }
    }
    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        match self {
            VaultTransport::Channel(t) => t.read_buffer(offset, out),
            VaultTransport::Tpm(t) => t.read_buffer(offset, out),
        }
    }
}

/// The stream under a channel.
#[derive(Debug)]
pub enum ChannelStream {
    /// `--connect`.
    Tcp(TcpStream),
    /// `--device`.
    Device(std::fs::File),
}

impl Read for ChannelStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ChannelStream::Tcp(s) => s.read(buf),
            ChannelStream::Device(f) => f.read(buf),
        }
    }
}

impl Write for ChannelStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ChannelStream::Tcp(s) => s.write(buf),
            ChannelStream::Device(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ChannelStream::Tcp(s) => s.flush(),
            ChannelStream::Device(f) => f.flush(),
        }
    }
}

/// Why the channel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// `--device` could not be opened.
    #[error("cannot open the call channel {path}: {error}")]
    Device {
        /// The path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// `--tpm` could not be opened.
    #[error("cannot open the TPM device {path}: {error}")]
    Tpm {
        /// The path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// `--connect` could not be reached.
    #[error("cannot reach the SVSM call channel at {address}: {error}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        error: std::io::Error,
    },
}

impl ChannelArgs {
    /// Opens the vault's transport: the TPM device `tpm` if given (`svsm-vault --tpm`), else
    /// the call channel.
    pub fn open_vault(
        &self,
        tpm: Option<&std::path::Path>,
    ) -> Result<VaultTransport, ChannelError> {
        match tpm {
            Some(path) => path
                .to_str()
                .map_or_else(|| TpmDevice::open(path), TpmDevice::open_spec)
                .map(|d| VaultTransport::Tpm(TpmVaultTransport::new(d)))
                .map_err(|error| ChannelError::Tpm {
                    path: path.display().to_string(),
                    error,
                }),
            None => self.open().map(VaultTransport::Channel),
        }
    }

    /// Opens the channel as a framed transport.
    pub fn open(&self) -> Result<FramedTransport<ChannelStream>, ChannelError> {
        let buffer_len = usize::from(self.buffer_pages) * 4096;
        let stream = match &self.device {
            Some(path) => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map(ChannelStream::Device)
                .map_err(|error| ChannelError::Device {
                    path: path.display().to_string(),
                    error,
                })?,
            None => {
                let s =
                    TcpStream::connect(&self.connect).map_err(|error| ChannelError::Connect {
                        address: self.connect.clone(),
                        error,
                    })?;
                let _ = s.set_nodelay(true);
                ChannelStream::Tcp(s)
            }
        };
        Ok(FramedTransport::new(
            stream, self.vmpl, BUFFER_GPA, buffer_len,
        ))
    }
}
