//! The SVSM image's two serial lines, every decoder on both sides: COM1 framed SVSM calls
//! (`svsm_abi::frame`: the image decodes call frames, the host reply frames and stream
//! lengths) and the COM2 state-store protocol (the image's reply parser, `store_proto.rs`, and
//! the host's request parser, `test-harness/src/image_store.rs`). A decoded frame must
//! re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use svsm_abi::frame::{
    declared_length, encode_call, encode_reply, CallFrame, ReplyFrame, MAX_FRAME_BUFFER,
};

#[allow(dead_code)]
#[path = "../../test-harness/src/image_store.rs"]
mod host_store;
#[allow(dead_code)]
#[path = "../../svsm-module/image/src/store_proto.rs"]
mod image_store;

fuzz_target!(|data: &[u8]| {
    if let Ok(total) = declared_length(data) {
        assert!(total <= 64 + MAX_FRAME_BUFFER);
    }
    if let Ok(call) = CallFrame::parse(data) {
        assert!(call.vmpl <= 3);
        let mut out = vec![0u8; data.len()];
        let n = encode_call(
            &call.regs,
            call.vmpl,
            call.buffer_gpa,
            call.buffer,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..n], data);
    }
    if let Ok(reply) = ReplyFrame::parse(data) {
        let mut out = vec![0u8; data.len()];
        let n = encode_reply(&reply.regs, reply.buffer, &mut out).unwrap();
        assert_eq!(&out[..n], data);
    }
    if let Some(head) = data.get(..16) {
        let head: &[u8; 16] = head.try_into().unwrap();
        if let Ok(r) = image_store::parse_reply_header(head) {
            assert!(r.len <= image_store::MAX_BLOB);
        }
    }
    if let Ok(req) = host_store::parse_store_request(data) {
        assert!(req.len <= host_store::STORE_MAX_BLOB);
        assert!(req.op == host_store::StoreOp::Write || req.len == 0);
    }
});
