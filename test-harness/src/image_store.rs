//! The host's side of the image's state-store protocol on COM2 (the format is documented in
//! `svsm-module/image/src/store_proto.rs`): the strict decoder of the image's requests and the
//! encoder of replies. Dependency-free, so the `image_frame` fuzz target includes it as is.

/// Store protocol header length.
pub const STORE_HEADER_LEN: usize = 16;
/// Largest blob in the store protocol.
pub const STORE_MAX_BLOB: usize = 1024 * 1024;

/// A store request's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Read a slot.
    Read,
    /// Replace a slot.
    Write,
}

/// A decoded store request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRequest {
    /// Operation.
    pub op: StoreOp,
    /// Slot.
    pub slot: u8,
    /// Blob bytes that follow.
    pub len: usize,
}

/// Decodes a store request header strictly: magic, operation, zero reserved bytes, a length of
/// at most [`STORE_MAX_BLOB`] that matches the total, and no blob on a read.
pub fn parse_store_request(h: &[u8]) -> Result<StoreRequest, &'static str> {
    let h: &[u8; STORE_HEADER_LEN] = h
        .get(..STORE_HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or("truncated")?;
    if &h[..4] != b"SVSQ" {
        return Err("magic");
    }
    if h[10..12] != [0, 0] {
        return Err("reserved");
    }
    let total = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
    if len > STORE_MAX_BLOB || total != STORE_HEADER_LEN + len {
        return Err("length");
    }
    let op = match h[8] {
        1 if len == 0 => StoreOp::Read,
        2 => StoreOp::Write,
        _ => return Err("operation"),
    };
    Ok(StoreRequest {
        op,
        slot: h[9],
        len,
    })
}

/// Encodes a store reply (status 0 ok, 1 empty, 2 unavailable, 3 too large).
pub fn encode_store_reply(status: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STORE_HEADER_LEN + data.len());
    out.extend_from_slice(b"SVSA");
    out.extend_from_slice(&((STORE_HEADER_LEN + data.len()) as u32).to_le_bytes());
    out.extend_from_slice(&[status, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}
