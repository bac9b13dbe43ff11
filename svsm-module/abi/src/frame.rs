//! Framed SVSM calls, for transports where the guest cannot issue VMGEXIT itself (a process
//! talking to the simulator over TCP; a host driving the QEMU image over a serial port).
//!
//! A call frame carries the call registers, the caller's VMPL and the guest buffer the call
//! references (its GPA, length and bytes); the reply frame carries the result registers and the
//! buffer as the SVSM left it. All integers little-endian.
//!
//! Call:  `"SVFC"`, u32 total length, 5 x u64 registers (RAX RCX RDX R8 R9), u8 VMPL, 3 zero
//!        bytes, u64 buffer GPA, u32 buffer length, buffer bytes.
//! Reply: `"SVFR"`, u32 total length, 5 x u64 registers, u32 buffer length, buffer bytes.

use crate::svsm::CallRegisters;

/// Most buffer bytes a frame carries (the vault's 64 KiB messages in both directions, with
/// headroom).
pub const MAX_FRAME_BUFFER: usize = 256 * 1024;
/// Call frame header length (before the buffer).
pub const CALL_HEADER_LEN: usize = 4 + 4 + 40 + 1 + 3 + 8 + 4;
/// Reply frame header length (before the buffer).
pub const REPLY_HEADER_LEN: usize = 4 + 4 + 40 + 4;
const CALL_MAGIC: &[u8; 4] = b"SVFC";
const REPLY_MAGIC: &[u8; 4] = b"SVFR";

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its header or its declared length.
    #[error("frame truncated")]
    Truncated,
    /// Wrong magic.
    #[error("not a frame (bad magic)")]
    BadMagic,
    /// The total length disagrees with the buffer length, or exceeds the maximum.
    #[error("frame length {0} is inconsistent or too large")]
    Length(u64),
    /// VMPL above 3 or non-zero reserved bytes.
    #[error("frame field {0} is invalid")]
    Field(&'static str),
}

/// A decoded call frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallFrame<'a> {
    /// Call registers.
    pub regs: CallRegisters,
    /// Caller VMPL (0..=3).
    pub vmpl: u8,
    /// GPA of the buffer.
    pub buffer_gpa: u64,
    /// The buffer's bytes.
    pub buffer: &'a [u8],
}

/// A decoded reply frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyFrame<'a> {
    /// Result registers.
    pub regs: CallRegisters,
    /// The buffer after the call.
    pub buffer: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FrameError> {
    let s = b.get(at..at + 4).ok_or(FrameError::Truncated)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, FrameError> {
    let s = b.get(at..at + 8).ok_or(FrameError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn regs_at(b: &[u8], at: usize) -> Result<CallRegisters, FrameError> {
    Ok(CallRegisters {
        rax: u64_at(b, at)?,
        rcx: u64_at(b, at + 8)?,
        rdx: u64_at(b, at + 16)?,
        r8: u64_at(b, at + 24)?,
        r9: u64_at(b, at + 32)?,
    })
}

/// The total length a frame declares in bytes 4..8, once 8 bytes have arrived (so a stream
/// reader knows how much more to read). Refuses lengths beyond the maximum.
pub fn declared_length(prefix: &[u8]) -> Result<usize, FrameError> {
    let magic = prefix.get(..4).ok_or(FrameError::Truncated)?;
    if magic != CALL_MAGIC && magic != REPLY_MAGIC {
        return Err(FrameError::BadMagic);
    }
    let total = u32_at(prefix, 4)? as usize;
    if !(REPLY_HEADER_LEN..=CALL_HEADER_LEN + MAX_FRAME_BUFFER).contains(&total) {
        return Err(FrameError::Length(total as u64));
    }
    Ok(total)
}

fn put_regs(out: &mut [u8], at: usize, regs: &CallRegisters) {
    for (i, r) in [regs.rax, regs.rcx, regs.rdx, regs.r8, regs.r9]
        .iter()
        .enumerate()
    {
        if let Some(slot) = out.get_mut(at + 8 * i..at + 8 * i + 8) {
            slot.copy_from_slice(&r.to_le_bytes());
        }
    }
}

impl<'a> CallFrame<'a> {
    /// Decodes a whole call frame.
    pub fn parse(frame: &'a [u8]) -> Result<Self, FrameError> {
        if frame.get(..4) != Some(CALL_MAGIC.as_slice()) {
            return Err(if frame.len() < 4 {
                FrameError::Truncated
            } else {
                FrameError::BadMagic
            });
        }
        let total = u32_at(frame, 4)? as usize;
        let vmpl = *frame.get(48).ok_or(FrameError::Truncated)?;
        if vmpl > 3 {
            return Err(FrameError::Field("vmpl"));
        }
        if frame
            .get(49..52)
            .ok_or(FrameError::Truncated)?
            .iter()
            .any(|&b| b != 0)
        {
            return Err(FrameError::Field("reserved"));
        }
        let buffer_gpa = u64_at(frame, 52)?;
        let len = u32_at(frame, 60)? as usize;
        if len > MAX_FRAME_BUFFER || total != CALL_HEADER_LEN + len || frame.len() != total {
            return Err(FrameError::Length(total as u64));
        }
        Ok(CallFrame {
            regs: regs_at(frame, 8)?,
            vmpl,
            buffer_gpa,
            buffer: frame.get(CALL_HEADER_LEN..).ok_or(FrameError::Truncated)?,
        })
    }
}

/// Writes `parts` one after another into `out`; returns the length or `Length` if it does not fit.
fn write_parts(out: &mut [u8], parts: &[&[u8]]) -> Result<usize, FrameError> {
    let mut at = 0usize;
    for part in parts {
        let end = at
            .checked_add(part.len())
            .ok_or(FrameError::Length(u64::MAX))?;
        out.get_mut(at..end)
            .ok_or(FrameError::Length(end as u64))?
            .copy_from_slice(part);
        at = end;
    }
    Ok(at)
}

fn regs_bytes(regs: &CallRegisters) -> [u8; 40] {
    let mut b = [0u8; 40];
    put_regs(&mut b, 0, regs);
    b
}

/// Encodes a call frame into `out`; returns its length.
pub fn encode_call(
    regs: &CallRegisters,
    vmpl: u8,
    buffer_gpa: u64,
    buffer: &[u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    if buffer.len() > MAX_FRAME_BUFFER {
        return Err(FrameError::Length(buffer.len() as u64));
    }
    let total = (CALL_HEADER_LEN + buffer.len()) as u32;
    write_parts(
        out,
        &[
            CALL_MAGIC,
            &total.to_le_bytes(),
            &regs_bytes(regs),
            &[vmpl, 0, 0, 0],
            &buffer_gpa.to_le_bytes(),
            &(buffer.len() as u32).to_le_bytes(),
            buffer,
        ],
    )
}

/// Encodes a reply frame into `out`; returns its length.
pub fn encode_reply(
    regs: &CallRegisters,
    buffer: &[u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    if buffer.len() > MAX_FRAME_BUFFER {
        return Err(FrameError::Length(buffer.len() as u64));
    }
    let total = (REPLY_HEADER_LEN + buffer.len()) as u32;
    write_parts(
        out,
        &[
            REPLY_MAGIC,
            &total.to_le_bytes(),
            &regs_bytes(regs),
            &(buffer.len() as u32).to_le_bytes(),
            buffer,
        ],
    )
}

impl<'a> ReplyFrame<'a> {
    /// Decodes a whole reply frame.
    pub fn parse(frame: &'a [u8]) -> Result<Self, FrameError> {
        if frame.get(..4) != Some(REPLY_MAGIC.as_slice()) {
            return Err(if frame.len() < 4 {
                FrameError::Truncated
            } else {
                FrameError::BadMagic
            });
        }
        let total = u32_at(frame, 4)? as usize;
        let len = u32_at(frame, 48)? as usize;
        if len > MAX_FRAME_BUFFER || total != REPLY_HEADER_LEN + len || frame.len() != total {
            return Err(FrameError::Length(total as u64));
        }
        Ok(ReplyFrame {
            regs: regs_at(frame, 8)?,
            buffer: frame.get(REPLY_HEADER_LEN..).ok_or(FrameError::Truncated)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn call_and_reply_round_trip_and_reject_damage() {
        let regs = CallRegisters {
            rax: 0x2_0000_0001,
            rcx: 0x20_0000,
            rdx: 3,
            r8: 4,
            r9: 5,
        };
        let mut out = vec![0u8; 200];
        let n = encode_call(&regs, 1, 0x20_0000, b"page bytes", &mut out).unwrap();
        assert_eq!(declared_length(&out[..8]), Ok(n));
        let call = CallFrame::parse(&out[..n]).unwrap();
        assert_eq!(
            (call.regs, call.vmpl, call.buffer_gpa, call.buffer),
            (regs, 1, 0x20_0000, &b"page bytes"[..])
        );
        for len in 0..n {
            assert!(CallFrame::parse(&out[..len]).is_err(), "len {len}");
        }
        let mut bad = out[..n].to_vec();
        bad[48] = 4;
        assert_eq!(CallFrame::parse(&bad), Err(FrameError::Field("vmpl")));
        let mut bad = out[..n].to_vec();
        bad[60] = 0xFF;
        assert!(matches!(CallFrame::parse(&bad), Err(FrameError::Length(_))));
        let m = encode_reply(&regs, b"after", &mut out).unwrap();
        let reply = ReplyFrame::parse(&out[..m]).unwrap();
        assert_eq!((reply.regs, reply.buffer), (regs, &b"after"[..]));
        assert!(ReplyFrame::parse(&out[..m - 1]).is_err());
        assert!(
            encode_call(&regs, 1, 0, &[0; 300], &mut out).is_err(),
            "does not fit"
        );
        assert_eq!(declared_length(b"XXXX\0\0\0\0"), Err(FrameError::BadMagic));
        assert!(matches!(
            declared_length(b"SVFC\xff\xff\xff\x7f"),
            Err(FrameError::Length(_))
        ));
    }
}
