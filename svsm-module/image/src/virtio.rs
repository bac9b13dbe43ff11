//! An optional faster call line: a virtio console (QEMU `virtio-serial-pci,disable-modern=on`
//! with a `virtconsole` on port 0), driven through the legacy virtio-PCI I/O interface by
//! polling, no interrupts. It carries exactly the same byte stream as COM1 (the
//! `svsm_abi::frame` call and reply frames); only the device differs. The 16550 accepts at most
//! 14 received bytes per QEMU main-loop iteration, so a 4 KiB frame takes hundreds of them; the
//! virtio console moves a whole frame per iteration.
//!
//! Layout (virtio 0.9.5 legacy, I/O BAR 0): 0x00 host features, 0x04 guest features, 0x08 queue
//! PFN, 0x0c queue size, 0x0e queue select, 0x10 queue notify, 0x12 device status. Queue 0 is
//! the receive queue, queue 1 the transmit queue (no multiport feature: one port, 0).
//! The rings live in image statics, identity-mapped, so their addresses are physical.

use crate::cpu::outb;
use core::arch::asm;
use core::sync::atomic::{compiler_fence, Ordering};

/// Red Hat's PCI vendor id (virtio).
const VIRTIO_VENDOR: u16 = 0x1AF4;
/// Legacy (transitional) virtio console device id.
const CONSOLE_DEVICE: u16 = 0x1003;
/// Descriptors per queue the driver uses (QEMU's virtio-serial queues have 128).
const MAX_QUEUE: usize = 128;
/// Receive buffers posted, and their size.
const RX_BUFFERS: usize = 16;
const RX_BUFFER_SIZE: usize = 4096;
/// Transmit buffer size (one descriptor per chunk).
const TX_BUFFER_SIZE: usize = 16 * 1024;

fn outw(port: u16, value: u16) {
    // SAFETY: port I/O to the virtio device's legacy I/O BAR; no memory is touched.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}

fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as in `outw`.
    unsafe {
        asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

fn outl(port: u16, value: u32) {
    crate::cpu::outl(port, value);
}

fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: PCI configuration / virtio I/O port read; no memory is touched.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags))
    };
    v
}

fn pci_address(dev: u8, offset: u8) -> u32 {
    0x8000_0000 | (u32::from(dev) << 11) | u32::from(offset & 0xFC)
}

fn pci_read(dev: u8, offset: u8) -> u32 {
    outl(0xCF8, pci_address(dev, offset));
    inl(0xCFC)
}

fn pci_write(dev: u8, offset: u8, value: u32) {
    outl(0xCF8, pci_address(dev, offset));
    outl(0xCFC, value);
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

const DESC_F_WRITE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

/// One legacy virtqueue: descriptor table, available ring (page 0), used ring (page 1).
#[repr(C, align(4096))]
struct Ring {
    desc: [Desc; MAX_QUEUE],
    avail_flags: u16,
    avail_idx: u16,
    avail_ring: [u16; MAX_QUEUE],
    avail_event: u16,
    _pad: [u8; 4096 - (16 * MAX_QUEUE + 6 + 2 * MAX_QUEUE) % 4096],
    used_flags: u16,
    used_idx: u16,
    used_ring: [UsedElem; MAX_QUEUE],
    used_event: u16,
}

#[repr(C, align(4096))]
struct Buffers {
    rx: [[u8; RX_BUFFER_SIZE]; RX_BUFFERS],
    tx: [u8; TX_BUFFER_SIZE],
}

const EMPTY_DESC: Desc = Desc {
    addr: 0,
    len: 0,
    flags: 0,
    next: 0,
};
const EMPTY_RING: Ring = Ring {
    desc: [EMPTY_DESC; MAX_QUEUE],
    avail_flags: 1, // no interrupts, please
    avail_idx: 0,
    avail_ring: [0; MAX_QUEUE],
    avail_event: 0,
    _pad: [0; 4096 - (16 * MAX_QUEUE + 6 + 2 * MAX_QUEUE) % 4096],
    used_flags: 0,
    used_idx: 0,
    used_ring: [UsedElem { id: 0, len: 0 }; MAX_QUEUE],
    used_event: 0,
};

static mut RX_RING: Ring = EMPTY_RING;
static mut TX_RING: Ring = EMPTY_RING;
static mut BUFFERS: Buffers = Buffers {
    rx: [[0; RX_BUFFER_SIZE]; RX_BUFFERS],
    tx: [0; TX_BUFFER_SIZE],
};

/// The virtio console (the single instance; it owns the statics above).
pub struct VirtioConsole {
    io: u16,
    rx_size: u16,
    tx_size: u16,
    rx_seen: u16,
    tx_seen: u16,
    /// The receive buffer being consumed: (buffer id, bytes, consumed).
    current: Option<(u16, usize, usize)>,
}

impl VirtioConsole {
    /// Finds and initialises the console on PCI bus 0, if QEMU has one; call at most once.
    pub fn probe() -> Option<Self> {
        let dev = (0u8..32).find(|&d| {
            let id = pci_read(d, 0);
            id as u16 == VIRTIO_VENDOR && (id >> 16) as u16 == CONSOLE_DEVICE
        })?;
        let bar0 = pci_read(dev, 0x10);
        if bar0 & 1 == 0 {
            return None; // not an I/O BAR: not the legacy interface
        }
        let io = (bar0 & 0xFFFC) as u16;
        // Enable I/O decoding and bus mastering.
        let cmd = pci_read(dev, 0x04);
        pci_write(dev, 0x04, (cmd & 0xFFFF) | 0x5);

        outb(io + 0x12, 0); // reset
        outb(io + 0x12, 1); // ACKNOWLEDGE
        outb(io + 0x12, 1 | 2); // DRIVER
        let _host_features = inl(io);
        outl(io + 0x04, 0); // no features: one port, no control queue

        let mut sizes = [0u16; 2];
        for (q, size) in sizes.iter_mut().enumerate() {
            outw(io + 0x0E, q as u16);
            let n = inw(io + 0x0C);
            if n == 0 || usize::from(n) > MAX_QUEUE || !n.is_power_of_two() {
                outb(io + 0x12, 0x80); // FAILED
                return None;
            }
            *size = n;
        }
        // The rings are statics that live forever; probe runs once, and from here on the device
        // owns what virtio gives it.
        let (rx, tx) = (
            core::ptr::addr_of_mut!(RX_RING),
            core::ptr::addr_of_mut!(TX_RING),
        );
        // The legacy ring layout depends on the queue size; the statics are laid out for
        // MAX_QUEUE, so only that size is accepted.
        if sizes != [MAX_QUEUE as u16; 2] {
            outb(io + 0x12, 0x80);
            return None;
        }
        for (q, ring) in [(0u16, rx), (1u16, tx)] {
            outw(io + 0x0E, q);
            outl(io + 0x08, (ring as u64 >> 12) as u32);
        }
        let mut console = VirtioConsole {
            io,
            rx_size: sizes[0],
            tx_size: sizes[1],
            rx_seen: 0,
            tx_seen: 0,
            current: None,
        };
        for id in 0..RX_BUFFERS as u16 {
            console.post_rx(id);
        }
        outb(io + 0x12, 1 | 2 | 4); // DRIVER_OK
        outw(io + 0x10, 0); // buffers are available on the receive queue
        Some(console)
    }

    /// Puts receive buffer `id` (descriptor `id`) on the available ring (no notify).
    fn post_rx(&mut self, id: u16) {
        // SAFETY: single context; descriptor/avail entries are written before the index is
        // published (compiler fence; x86 keeps stores in order), as virtio requires.
        unsafe {
            let ring = core::ptr::addr_of_mut!(RX_RING);
            let buffers = core::ptr::addr_of_mut!(BUFFERS);
            let addr = core::ptr::addr_of_mut!((*buffers).rx[usize::from(id)]) as u64;
            (*ring).desc[usize::from(id)] = Desc {
                addr,
                len: RX_BUFFER_SIZE as u32,
                flags: DESC_F_WRITE,
                next: 0,
            };
            let idx = core::ptr::read_volatile(core::ptr::addr_of!((*ring).avail_idx));
            (*ring).avail_ring[usize::from(idx % self.rx_size)] = id;
            compiler_fence(Ordering::SeqCst);
            core::ptr::write_volatile(
                core::ptr::addr_of_mut!((*ring).avail_idx),
                idx.wrapping_add(1),
            );
        }
    }

    /// Blocks until a byte arrives.
    pub fn read_byte(&mut self) -> u8 {
        loop {
            if let Some((id, len, used)) = self.current {
                if used < len {
                    // SAFETY: the device has returned buffer `id` (used ring) and not got it
                    // back yet; `used < len <= RX_BUFFER_SIZE`.
                    let b = unsafe {
                        let buffers = core::ptr::addr_of!(BUFFERS);
                        core::ptr::read_volatile(core::ptr::addr_of!(
                            (*buffers).rx[usize::from(id)][used]
                        ))
                    };
                    self.current = Some((id, len, used + 1));
                    return b;
                }
                self.current = None;
                self.post_rx(id);
                outw(self.io + 0x10, 0);
            }
            // SAFETY: reads the device-written used ring (volatile: the device updates it).
            let (id, len) = unsafe {
                let ring = core::ptr::addr_of!(RX_RING);
                loop {
                    let used = core::ptr::read_volatile(core::ptr::addr_of!((*ring).used_idx));
                    if used != self.rx_seen {
                        compiler_fence(Ordering::SeqCst);
                        let e = core::ptr::read_volatile(core::ptr::addr_of!(
                            (*ring).used_ring[usize::from(self.rx_seen % self.rx_size)]
                        ));
                        self.rx_seen = self.rx_seen.wrapping_add(1);
                        break (e.id, e.len);
                    }
                    core::hint::spin_loop();
                }
            };
            let id = (id as u16).min(RX_BUFFERS as u16 - 1);
            self.current = Some((id, (len as usize).min(RX_BUFFER_SIZE), 0));
        }
    }

    /// Fills `buf`, blocking.
    pub fn read_exact(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.read_byte();
        }
    }

    /// Sends `bytes`, one descriptor per chunk, waiting for the device to take each.
    pub fn write_all(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(TX_BUFFER_SIZE) {
            // SAFETY: single context; the TX buffer is free (the previous chunk was consumed
            // before this loop went on); descriptor and ring entries are written before the
            // index is published.
            unsafe {
                let buffers = core::ptr::addr_of_mut!(BUFFERS);
                let tx = core::ptr::addr_of_mut!((*buffers).tx);
                core::ptr::copy_nonoverlapping(chunk.as_ptr(), tx.cast::<u8>(), chunk.len());
                let ring = core::ptr::addr_of_mut!(TX_RING);
                (*ring).desc[0] = Desc {
                    addr: tx as u64,
                    len: chunk.len() as u32,
                    flags: 0,
                    next: 0,
                };
                let idx = core::ptr::read_volatile(core::ptr::addr_of!((*ring).avail_idx));
                (*ring).avail_ring[usize::from(idx % self.tx_size)] = 0;
                compiler_fence(Ordering::SeqCst);
                core::ptr::write_volatile(
                    core::ptr::addr_of_mut!((*ring).avail_idx),
                    idx.wrapping_add(1),
                );
            }
            outw(self.io + 0x10, 1);
            self.tx_seen = self.tx_seen.wrapping_add(1);
            // SAFETY: reads the device-written used index.
            unsafe {
                let ring = core::ptr::addr_of!(TX_RING);
                while core::ptr::read_volatile(core::ptr::addr_of!((*ring).used_idx))
                    != self.tx_seen
                {
                    core::hint::spin_loop();
                }
            }
        }
    }
}
