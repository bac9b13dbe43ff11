//! The SVSM call channel: a guest process (e.g. `svsm-vault`) sends framed SVSM calls
//! (`svsm_abi::frame`) over loopback TCP; each frame's buffer is written into the simulated
//! guest memory at the frame's GPA as the guest at the frame's VMPL, the call is dispatched by
//! the module exactly as a VMGEXIT would be, and the buffer is read back into the reply.

use crate::sim::SimMachine;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use svsm_abi::frame::{declared_length, encode_reply, CallFrame, REPLY_HEADER_LEN};
use svsm_core::platform::{Gpa, GuestMemory, Vmpl};

/// A running channel; dropping it stops accepting.
pub struct GuestChannel {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GuestChannel {
    /// Listens on 127.0.0.1:`port` (0 = any) in front of `machine`.
    pub fn start(port: u16, machine: SimMachine) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let machine = machine.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_nodelay(true);
                            let _ = serve(stream, &machine);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(GuestChannel {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for GuestChannel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bad(what: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Serves framed calls from `stream` into `machine` until the peer closes it (any byte stream:
/// a TCP connection, or the serial line QEMU connects for a guest).
pub fn serve<S: Read + Write>(mut stream: S, machine: &SimMachine) -> io::Result<()> {
    loop {
        let mut head = [0u8; 8];
        if let Err(e) = stream.read_exact(&mut head) {
            return if e.kind() == io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(e)
            };
        }
        let total = declared_length(&head).map_err(bad)?;
        let mut frame = vec![0u8; total];
        frame[..8].copy_from_slice(&head);
        stream.read_exact(&mut frame[8..])?;
        let call = CallFrame::parse(&frame).map_err(bad)?;
        // The channel speaks for guests below VMPL0 only.
        let vmpl = Vmpl::new(call.vmpl)
            .filter(|v| *v != Vmpl::ZERO)
            .ok_or_else(|| bad("VMPL0 calls are refused"))?;
        let mut regs = call.regs;
        let mut buffer = call.buffer.to_vec();
        {
            let mut module = machine.module();
            // The guest's own writes into its buffer, then the call, then what it reads back.
            module
                .memory_mut()
                .write(vmpl, Gpa::new(call.buffer_gpa), &buffer)
                .map_err(bad)?;
            module.handle_call(vmpl, &mut regs);
            module
                .memory_mut()
                .read(vmpl, Gpa::new(call.buffer_gpa), &mut buffer)
                .map_err(bad)?;
        }
        let mut reply = vec![0u8; REPLY_HEADER_LEN + buffer.len()];
        let n = encode_reply(&regs, &buffer, &mut reply).map_err(bad)?;
        stream.write_all(&reply[..n])?;
    }
}
