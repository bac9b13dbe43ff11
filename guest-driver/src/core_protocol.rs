//! Core protocol client: QUERY_PROTOCOL.

use crate::transport::{call_ok, DriverError, SvsmTransport};
use svsm_abi::svsm::{core_call, CallId, CallRegisters, ProtocolQuery, PROTOCOL_CORE};

/// Asks whether `protocol` is served at `version`; returns its (min, max) versions or `None`.
pub fn query_protocol<T: SvsmTransport + ?Sized>(
    transport: &mut T,
    protocol: u32,
    version: u32,
) -> Result<Option<(u32, u32)>, DriverError> {
    let regs = CallRegisters {
        rax: CallId {
            protocol: PROTOCOL_CORE,
            call: core_call::QUERY_PROTOCOL,
        }
        .to_rax(),
        rcx: ProtocolQuery { protocol, version }.to_rcx(),
        ..Default::default()
    };
    let out = call_ok(transport, regs)?;
    if out.rcx == 0 {
        return Ok(None);
    }
    Ok(Some((out.rcx as u32, (out.rcx >> 32) as u32)))
}
