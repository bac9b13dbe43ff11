//! The SNP build's log: lines go into a ring in private memory, and the boot and request
//! loops drain it to COM1 through GHCB I/O events between other GHCB uses (so a line logged
//! in the middle of a GHCB exchange — by the TPM engine, say — cannot clobber it). When the
//! ring is full the oldest bytes are dropped and the drain says how many.

use core::fmt::Write;

const RING_SIZE: usize = 16 * 1024;

struct Ring {
    bytes: [u8; RING_SIZE],
    /// Index of the oldest byte.
    head: usize,
    len: usize,
    dropped: u64,
}

static RING: spin::Mutex<Ring> = spin::Mutex::new(Ring {
    bytes: [0; RING_SIZE],
    head: 0,
    len: 0,
    dropped: 0,
});

impl Ring {
    fn push(&mut self, data: &[u8]) {
        for &b in data {
            if self.len == RING_SIZE {
                self.head = (self.head + 1) % RING_SIZE;
                self.len -= 1;
                self.dropped += 1;
            }
            let at = (self.head + self.len) % RING_SIZE;
            if let Some(slot) = self.bytes.get_mut(at) {
                *slot = b;
            }
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.bytes.get(self.head).copied();
        self.head = (self.head + 1) % RING_SIZE;
        self.len -= 1;
        b
    }
}

/// Appends bytes to the ring. On one CPU the lock is only ever held by an interrupted log
/// call (an exception or #VC while logging): then the bytes are dropped rather than waiting
/// for ever.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(mut ring) = RING.try_lock() {
        ring.push(bytes);
    }
}

/// The ring as a `core::fmt` sink.
pub struct RingWriter;

impl Write for RingWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Moves everything in the ring to `out`, one byte at a time (the lock is not held while
/// `out` runs, so it may log). Reports dropped bytes first.
pub fn drain(out: &mut dyn FnMut(u8)) {
    let Some(dropped) = RING.try_lock().map(|mut r| core::mem::take(&mut r.dropped)) else {
        return;
    };
    if dropped > 0 {
        let mut note = heapless_line::Line::new();
        let _ = writeln!(note, "[svsm-image: {dropped} log bytes dropped]");
        for &b in note.as_bytes() {
            out(b);
        }
    }
    while let Some(b) = RING.try_lock().and_then(|mut r| r.pop()) {
        out(b);
    }
}

/// A fixed line buffer (no heap: the drain may run before the heap exists).
mod heapless_line {
    pub struct Line {
        buf: [u8; 64],
        len: usize,
    }

    impl Line {
        pub fn new() -> Self {
            Line {
                buf: [0; 64],
                len: 0,
            }
        }

        pub fn as_bytes(&self) -> &[u8] {
            self.buf.get(..self.len).unwrap_or(&[])
        }
    }

    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                let slot = self.buf.get_mut(self.len).ok_or(core::fmt::Error)?;
                *slot = b;
                self.len += 1;
            }
            Ok(())
        }
    }
}

/// Logs a formatted line to the ring.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::snp::log::RingWriter, format_args!($($arg)*));
        $crate::snp::log::write_bytes(b"\n");
    }};
}
