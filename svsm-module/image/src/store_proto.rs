//! The state-store protocol on COM2. The image asks, the host answers; one request at a time.
//! All integers little-endian; 16-byte headers.
//!
//! Request (image -> host): `"SVSQ"`, u32 total length (16 + n), u8 op (1 = read, 2 = write),
//! u8 slot, 2 zero bytes, u32 n, then n blob bytes (n = 0 for a read).
//!
//! Reply (host -> image): `"SVSA"`, u32 total length (16 + n), u8 status (0 = ok, 1 = empty
//! slot, 2 = unavailable, 3 = too large), 3 zero bytes, u32 n, then n bytes (the slot's
//! contents for a successful read; n = 0 otherwise).
//!
//! n is at most [`MAX_BLOB`]. The image parses every reply strictly and treats anything else
//! as "store unavailable"; the host (test-harness `image` module) does the same for requests.

/// Header length of both messages.
pub const HEADER_LEN: usize = 16;
/// Largest blob either side accepts (sealed module state is a few KiB).
pub const MAX_BLOB: usize = 1024 * 1024;
const REQUEST_MAGIC: &[u8; 4] = b"SVSQ";
const REPLY_MAGIC: &[u8; 4] = b"SVSA";

/// Store operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Read a slot.
    Read = 1,
    /// Replace a slot.
    Write = 2,
}

/// Reply status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreStatus {
    /// Done.
    Ok,
    /// The slot is empty.
    Empty,
    /// The store failed.
    Unavailable,
    /// The blob is too large for the store.
    TooLarge,
}

/// A decoded reply header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// Status.
    pub status: StoreStatus,
    /// Bytes that follow.
    pub len: usize,
}

/// Why a reply was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadReply;

/// Encodes a request header for an `n`-byte blob.
pub fn encode_request_header(op: StoreOp, slot: u8, n: usize, out: &mut [u8; HEADER_LEN]) {
    out[..4].copy_from_slice(REQUEST_MAGIC);
    out[4..8].copy_from_slice(&((HEADER_LEN + n) as u32).to_le_bytes());
    out[8] = op as u8;
    out[9] = slot;
    out[10..12].copy_from_slice(&[0, 0]);
    out[12..16].copy_from_slice(&(n as u32).to_le_bytes());
}

/// Parses a reply header.
pub fn parse_reply_header(h: &[u8; HEADER_LEN]) -> Result<ReplyHeader, BadReply> {
    if &h[..4] != REPLY_MAGIC || h[9..12] != [0, 0, 0] {
        return Err(BadReply);
    }
    let total = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
    if len > MAX_BLOB || total != HEADER_LEN + len {
        return Err(BadReply);
    }
    let status = match h[8] {
        0 => StoreStatus::Ok,
        1 => StoreStatus::Empty,
        2 => StoreStatus::Unavailable,
        3 => StoreStatus::TooLarge,
        _ => return Err(BadReply),
    };
    if status != StoreStatus::Ok && len != 0 {
        return Err(BadReply);
    }
    Ok(ReplyHeader { status, len })
}
