//! A polled 16550 UART (COM1 at 0x3f8 carries the framed SVSM calls, COM2 at 0x2f8 the state
//! store), and the QEMU debug console (port 0xe9) for the boot log. No interrupts: the image
//! polls the line status register.

use crate::cpu::{inb, outb};

/// COM1: framed SVSM calls from the host.
pub const COM1: u16 = 0x3f8;
/// COM2: the state store on the host.
pub const COM2: u16 = 0x2f8;
/// QEMU's `isa-debugcon` port (`-debugcon`): the image's log.
pub const DEBUGCON: u16 = 0xe9;

/// A 16550 UART at an I/O base.
#[derive(Clone, Copy, Debug)]
pub struct Uart {
    base: u16,
}

impl Uart {
    /// Initialises the UART: interrupts off, 115200 8N1, FIFOs on.
    pub fn init(base: u16) -> Self {
        outb(base + 1, 0x00); // IER: no interrupts
        outb(base + 3, 0x80); // LCR: DLAB
        outb(base, 0x01); // divisor 1 = 115200 (QEMU does not pace the emulated line)
        outb(base + 1, 0x00);
        outb(base + 3, 0x03); // 8N1
        outb(base + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
        outb(base + 4, 0x03); // DTR | RTS
        Uart { base }
    }

    fn data_ready(&self) -> bool {
        inb(self.base + 5) & 0x01 != 0
    }

    /// Blocks until a byte arrives. Between two polls of an empty line it backs off for a few
    /// microseconds without touching the device: under TCG every port access takes QEMU's big
    /// lock, and a tight poll loop keeps QEMU's main loop (which feeds the UART from the host
    /// socket) from getting it.
    pub fn read_byte(&self) -> u8 {
        while !self.data_ready() {
            backoff();
        }
        inb(self.base)
    }

    /// A byte if one arrives before the TSC passes `deadline`.
    pub fn read_byte_until(&self, deadline: u64) -> Option<u8> {
        loop {
            if self.data_ready() {
                return Some(inb(self.base));
            }
            if crate::cpu::rdtsc() > deadline {
                return None;
            }
            backoff();
        }
    }

    /// Discards whatever input is waiting.
    pub fn drain(&self) {
        while self.data_ready() {
            let _ = inb(self.base);
        }
    }

    /// Fills `buf`, blocking.
    pub fn read_exact(&self, buf: &mut [u8]) {
        for b in buf {
            *b = self.read_byte();
        }
    }

    /// Writes one byte, waiting for room in the transmitter.
    pub fn write_byte(&self, b: u8) {
        while inb(self.base + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(self.base, b);
    }

    /// Writes all of `bytes`, 16 at a time once the transmitter FIFO is empty (one status
    /// read per FIFO load instead of per byte).
    pub fn write_all(&self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            while inb(self.base + 5) & 0x20 == 0 {
                core::hint::spin_loop();
            }
            for &b in chunk {
                outb(self.base, b);
            }
        }
    }
}

/// TSC ticks to wait between polls of an empty receiver.
pub static BACKOFF_TICKS: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(20_000);

fn backoff() {
    let ticks = BACKOFF_TICKS.load(core::sync::atomic::Ordering::Relaxed);
    let start = crate::cpu::rdtsc();
    while crate::cpu::rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// The line the framed calls travel on: COM1, or the virtio console when QEMU has one.
pub enum CallLine {
    /// COM1.
    Uart(Uart),
    /// The virtio console.
    Virtio(crate::virtio::VirtioConsole),
}

impl CallLine {
    /// Blocks until a byte arrives.
    pub fn read_byte(&mut self) -> u8 {
        match self {
            CallLine::Uart(u) => u.read_byte(),
            CallLine::Virtio(v) => v.read_byte(),
        }
    }

    /// Fills `buf`, blocking.
    pub fn read_exact(&mut self, buf: &mut [u8]) {
        match self {
            CallLine::Uart(u) => u.read_exact(buf),
            CallLine::Virtio(v) => v.read_exact(buf),
        }
    }

    /// Writes all of `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) {
        match self {
            CallLine::Uart(u) => u.write_all(bytes),
            CallLine::Virtio(v) => v.write_all(bytes),
        }
    }

    /// What the log calls it.
    pub fn name(&self) -> &'static str {
        match self {
            CallLine::Uart(_) => "COM1",
            CallLine::Virtio(_) => "virtio console",
        }
    }
}

/// The debug console as a `core::fmt` sink.
pub struct DebugCon;

impl core::fmt::Write for DebugCon {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        debugcon_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes raw bytes to the debug console.
pub fn debugcon_bytes(bytes: &[u8]) {
    for &b in bytes {
        outb(DEBUGCON, b);
    }
}

/// Logs a formatted line to the debug console.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::serial::DebugCon, format_args!($($arg)*));
        $crate::serial::debugcon_bytes(b"\n");
    }};
}
