//! A transport that carries SVSM calls as frames over a byte stream (`svsm_abi::frame`): what a
//! guest process uses to reach the simulator (TCP) or a host uses to reach the QEMU image
//! (serial). The driver buffer is local; each call ships it with the registers and takes back
//! what the SVSM left in it.

use crate::transport::{SvsmTransport, TransportError};
use std::io::{Read, Write};
use std::vec;
use std::vec::Vec;
use svsm_abi::frame::{
    declared_length, encode_call, ReplyFrame, CALL_HEADER_LEN, MAX_FRAME_BUFFER,
};
use svsm_abi::svsm::CallRegisters;

/// SVSM calls over a stream.
pub struct FramedTransport<S> {
    stream: S,
    vmpl: u8,
    buffer_gpa: u64,
    buffer: Vec<u8>,
    frame: Vec<u8>,
}

impl<S: Read + Write> FramedTransport<S> {
    /// A transport for a guest at `vmpl` whose `buffer_len`-byte driver buffer sits at
    /// `buffer_gpa` on the far side.
    pub fn new(stream: S, vmpl: u8, buffer_gpa: u64, buffer_len: usize) -> Self {
        let len = buffer_len.min(MAX_FRAME_BUFFER);
        FramedTransport {
            stream,
            vmpl,
            buffer_gpa,
            buffer: vec![0; len],
            frame: vec![0; CALL_HEADER_LEN + len],
        }
    }

    fn range(&self, offset: usize, len: usize) -> Result<core::ops::Range<usize>, TransportError> {
        let err = TransportError::BufferRange {
            offset,
            len,
            size: self.buffer.len(),
        };
        let end = offset.checked_add(len).ok_or(err)?;
        if end > self.buffer.len() {
            return Err(err);
        }
        Ok(offset..end)
    }
}

impl<S: Read + Write> SvsmTransport for FramedTransport<S> {
    fn raw_call(&mut self, regs: &mut CallRegisters) -> Result<(), TransportError> {
        let io = |_| TransportError::Hypervisor(u64::MAX);
        let n = encode_call(
            regs,
            self.vmpl,
            self.buffer_gpa,
            &self.buffer,
            &mut self.frame,
        )
        .map_err(|_| TransportError::Hypervisor(u64::MAX))?;
        self.stream
            .write_all(self.frame.get(..n).unwrap_or(&[]))
            .map_err(io)?;
        self.stream.flush().map_err(io)?;
        let mut head = [0u8; 8];
        self.stream.read_exact(&mut head).map_err(io)?;
        let total = declared_length(&head).map_err(|_| TransportError::Hypervisor(u64::MAX))?;
        let mut reply = vec![0u8; total];
        reply
            .get_mut(..8)
            .ok_or(TransportError::Hypervisor(u64::MAX))?
            .copy_from_slice(&head);
        self.stream
            .read_exact(reply.get_mut(8..).unwrap_or(&mut []))
            .map_err(io)?;
        let frame = ReplyFrame::parse(&reply).map_err(|_| TransportError::Hypervisor(u64::MAX))?;
        if frame.buffer.len() != self.buffer.len() {
            return Err(TransportError::Hypervisor(u64::MAX));
        }
        self.buffer.copy_from_slice(frame.buffer);
        *regs = frame.regs;
        Ok(())
    }

    fn buffer_gpa(&self) -> u64 {
        self.buffer_gpa
    }

    fn buffer_len(&self) -> usize {
        self.buffer.len()
    }

    fn write_buffer(&mut self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        let r = self.range(offset, data.len())?;
        self.buffer
            .get_mut(r)
            .unwrap_or(&mut [])
            .copy_from_slice(data);
        Ok(())
    }

    fn read_buffer(&mut self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let r = self.range(offset, out.len())?;
        out.copy_from_slice(self.buffer.get(r).unwrap_or(&[]));
        Ok(())
    }
}
