//! The SHA-256 PCR values of a Linux direct boot without SEV, computed from the files the user
//! has. It models exactly one boot path: QEMU 7.2 as Debian bookworm ships it
//! (1:7.2+dfsg-7+deb12u18) running `-machine q35 -m MEM -kernel K [-initrd I] -append CMDLINE`
//! with Debian bookworm's OVMF (edk2-stable202211, `/usr/share/ovmf/OVMF.fd`, Secure Boot off,
//! its default variable store) and a Linux 6.1 EFI-stub kernel, the boot path of
//! `svsm-sim guest run`. QEMU copies the kernel's setup header, patches it (command-line
//! pointer, loader type, heap end, initrd address and size) and hands it to OVMF over fw_cfg;
//! OVMF loads the patched image as an EFI application and measures its PE Authenticode digest
//! into PCR 4, its own boot events into PCRs 2–7, and passes the command line (plus
//! `" initrd=initrd"`) as the image's LoadOptions; the EFI stub measures those LoadOptions and
//! the initrd into PCR 9.
//!
//! Sources of the facts (no code is taken from them): QEMU `hw/i386/x86.c` `x86_load_linux`
//! (header patches, initrd placement) and `hw/i386/pc_q35.c` `pc_q35_init` (the RAM below
//! 4 GiB); the Linux x86 boot protocol (`Documentation/arch/x86/boot.rst`) for the setup-header
//! offsets; edk2 `OvmfPkg/Library/X86QemuLoadImageLib` (LoadOptions),
//! `SecurityPkg/Library/DxeTpm2MeasureBootLib` (PE image digest) and `Tcg2Dxe` (separators,
//! EFI actions, Secure Boot variables); the TCG PC Client Platform Firmware Profile
//! (UEFI_VARIABLE_DATA); Linux `drivers/firmware/efi/libstub` (PCR 9 events). Every value was
//! checked against the event log of a real boot of this stack.
//!
//! Not computed: PCR 0 (OVMF's firmware volumes after decompression) and PCR 1 (the boot
//! variables QEMU and OVMF choose at run time): [`NOT_COMPUTED`]. Not modelled, and refused
//! with a typed error rather than guessed: a `vga=` parameter (QEMU then patches the video mode
//! from it), an empty initrd, kernels older than boot protocol 2.02 or not loaded high, a
//! memory size that is not a whole number of MiB, command lines with bytes outside printable
//! ASCII and tab, and PE images whose digest OVMF and the Authenticode rules could disagree on.
//! Secure Boot on (a different variable store) changes PCR 7 and is not modelled.
//!
//! Untrusted: the kernel and initrd bytes and the command line. The setup header is read with
//! bounds-checked accessors, the PE headers are parsed by the `object` crate and hashed by the
//! `authenticode` crate (both bounds-checked, no panics), and every refusal is a
//! [`DirectBootError`] naming the field. Trusted: `sha2`, `object`, `authenticode`, and the
//! firmware and QEMU behaviour above.

use crate::hashes::sha256;
use object::pe::IMAGE_DIRECTORY_ENTRY_SECURITY;
use object::read::pe::PeFile64;
use object::LittleEndian;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use svsm_abi::Guid;

/// What this module models, in one line (the CLI prints it).
pub const MODEL: &str = "QEMU 7.2 (Debian bookworm) -machine q35 direct boot \
(-kernel/-initrd/-append, no SEV), OVMF edk2-stable202211 (Debian bookworm OVMF.fd, Secure Boot \
off), Linux 6.1 EFI stub";

/// PCRs [`expected_pcrs`] returns.
pub const COMPUTED: [usize; 7] = [2, 3, 4, 5, 6, 7, 9];

/// PCRs it does not compute: 0 (firmware volumes after decompression) and 1 (boot variables
/// chosen at run time).
pub const NOT_COMPUTED: [usize; 2] = [0, 1];

/// A direct boot: the files given to QEMU and the guest's memory size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectBoot<'a> {
    /// The kernel file (`-kernel`), an EFI-stub bzImage, as on disk.
    pub kernel: &'a [u8],
    /// The initrd file (`-initrd`), if any.
    pub initrd: Option<&'a [u8]>,
    /// The command line, exactly the `-append` string (empty when there is none).
    pub cmdline: &'a str,
    /// The guest's RAM (`-m`) in bytes.
    pub memory_bytes: u64,
}

/// Why a direct boot cannot be modelled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectBootError {
    /// The kernel is shorter than the setup header fields read from it.
    #[error("kernel is {len} bytes, shorter than its setup header ({need} bytes)")]
    KernelTooShort {
        /// Kernel length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// No "HdrS" magic at offset 0x202: not a Linux bzImage (QEMU would try multiboot).
    #[error("kernel has no Linux setup header: {found:02x?} at 0x202, expected \"HdrS\"")]
    NoSetupHeader {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The boot protocol (u16 at 0x206) is older than 2.02, where QEMU uses other addresses.
    #[error("kernel boot protocol {version:#06x} is older than 2.02")]
    BootProtocol {
        /// The version.
        version: u16,
    },
    /// LOADED_HIGH (loadflags bit 0) is clear: a zImage, which QEMU loads low.
    #[error("kernel loadflags {loadflags:#04x} lack LOADED_HIGH: not a bzImage")]
    NotLoadedHigh {
        /// The loadflags byte.
        loadflags: u8,
    },
    /// The setup code ((setup_sects + 1) × 512 bytes) is longer than the file; QEMU refuses it.
    #[error("kernel setup is {setup_bytes} bytes but the file has {len}")]
    SetupSize {
        /// Setup length from setup_sects.
        setup_bytes: usize,
        /// Kernel length.
        len: usize,
    },
    /// The command line contains `vga=`: QEMU then patches the video mode, not modelled.
    #[error(
        "the command line has \"vga=\" at byte {offset}; QEMU's video-mode patch is not modelled"
    )]
    VgaParameter {
        /// Byte offset of `vga=`.
        offset: usize,
    },
    /// A command-line byte outside printable ASCII and tab (OVMF widens bytes, not UTF-8).
    #[error("the command line has byte {byte:#04x} at {offset}: only printable ASCII and tab are modelled")]
    CmdlineByte {
        /// Byte offset.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// The initrd is empty (QEMU then offers OVMF no initrd but still patches the header).
    #[error("the initrd is empty")]
    EmptyInitrd,
    /// The initrd does not fit below QEMU's initrd limit; QEMU refuses to start.
    #[error("the initrd is {size} bytes; QEMU's limit for this kernel and memory is {max}")]
    InitrdTooLarge {
        /// Initrd length.
        size: usize,
        /// QEMU's initrd_max.
        max: u32,
    },
    /// The memory size is zero or not a whole number of MiB.
    #[error("memory {bytes} bytes: expected a non-zero whole number of MiB")]
    Memory {
        /// The size given.
        bytes: u64,
    },
    /// No PE image (no "MZ" or "PE\0\0" signature): not an EFI-stub kernel, which OVMF would
    /// boot another way.
    #[error("kernel is not a PE image (no MZ/PE signature): not an EFI-stub kernel")]
    NotPe,
    /// The PE optional header is not PE32+ (x86-64).
    #[error("kernel PE optional header magic {magic:#06x}, expected 0x020b (PE32+)")]
    NotPe32Plus {
        /// The magic found.
        magic: u16,
    },
    /// The PE headers, data directories or section table are out of bounds.
    #[error("kernel PE headers or section table are malformed")]
    PeHeaders,
    /// Too few data directories to hold the certificate-table entry.
    #[error("kernel PE has {count} data directories; the certificate table needs 5")]
    PeDataDirectories {
        /// NumberOfRvaAndSizes.
        count: usize,
    },
    /// A certificate table of non-zero size at file offset 0, where OVMF and the Authenticode
    /// rules disagree.
    #[error("kernel PE certificate table has size {size:#x} at offset 0")]
    PeCertificateTable {
        /// Its size.
        size: u32,
    },
    /// A section or the certificate table lies outside the file.
    #[error("kernel PE sections or certificate table lie outside the file")]
    PeLayout,
}

// Setup header (Linux boot protocol, Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1F1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21C;
const HEAP_END_PTR: usize = 0x224;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22C;
const XLOADFLAGS: usize = 0x236;
/// End of the last header field read (xloadflags).
const HEADER_END: usize = 0x238;
const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;
const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;

// QEMU `x86_load_linux`, "high and recent kernel" (protocol >= 2.02, LOADED_HIGH).
const QEMU_LOADER_TYPE: u8 = 0xB0;
const REAL_ADDR: u32 = 0x1_0000;
const CMDLINE_ADDR: u32 = 0x2_0000;
/// The pc machines' ACPI data size (0x20000 + 0x8000), kept free at the top of low RAM.
const ACPI_DATA_SIZE: u64 = 0x2_8000;
/// initrd_max of boot protocols before 2.03.
const LEGACY_INITRD_MAX: u32 = 0x37FF_FFFF;

const MIB: u64 = 1 << 20;

/// The part of a kernel's setup header QEMU reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version (0x206).
    pub version: u16,
    /// Setup length in bytes: (setup_sects + 1) × 512, setup_sects 0 meaning 4.
    pub setup_bytes: usize,
    /// loadflags (0x211).
    pub loadflags: u8,
    /// xloadflags (0x236; meaningful from protocol 2.12).
    pub xloadflags: u16,
    /// initrd_addr_max (0x22C; meaningful from protocol 2.03).
    pub initrd_addr_max: u32,
}

fn array<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn put(data: &mut [u8], at: usize, bytes: &[u8]) {
    // Only called with offsets below HEADER_END on a buffer checked to be longer.
    if let Some(dst) = at
        .checked_add(bytes.len())
        .and_then(|end| data.get_mut(at..end))
    {
        dst.copy_from_slice(bytes);
    }
}

impl SetupHeader {
    /// Reads and checks the header of an untrusted kernel file.
    pub fn parse(kernel: &[u8]) -> Result<Self, DirectBootError> {
        let short = DirectBootError::KernelTooShort {
            len: kernel.len(),
            need: HEADER_END,
        };
        if kernel.len() < HEADER_END {
            return Err(short);
        }
        let magic: [u8; 4] = array(kernel, HEADER_MAGIC).ok_or_else(|| short.clone())?;
        if &magic != b"HdrS" {
            return Err(DirectBootError::NoSetupHeader { found: magic });
        }
        let u16_at = |at| array(kernel, at).map(u16::from_le_bytes);
        let version = u16_at(VERSION).ok_or_else(|| short.clone())?;
        if version < 0x202 {
            return Err(DirectBootError::BootProtocol { version });
        }
        let loadflags = kernel
            .get(LOADFLAGS)
            .copied()
            .ok_or_else(|| short.clone())?;
        if loadflags & LOADED_HIGH == 0 {
            return Err(DirectBootError::NotLoadedHigh { loadflags });
        }
        let sects = match kernel
            .get(SETUP_SECTS)
            .copied()
            .ok_or_else(|| short.clone())?
        {
            0 => 4,
            n => usize::from(n),
        };
        let setup_bytes = (sects + 1) * 512;
        if setup_bytes > kernel.len() {
            return Err(DirectBootError::SetupSize {
                setup_bytes,
                len: kernel.len(),
            });
        }
        Ok(SetupHeader {
            version,
            setup_bytes,
            loadflags,
            xloadflags: u16_at(XLOADFLAGS).ok_or_else(|| short.clone())?,
            initrd_addr_max: array(kernel, INITRD_ADDR_MAX)
                .map(u32::from_le_bytes)
                .ok_or(short)?,
        })
    }

    /// QEMU's highest initrd address for this kernel on a q35 machine with `memory_bytes`.
    pub fn initrd_max(&self, memory_bytes: u64) -> u32 {
        let wanted = if self.version >= 0x20C && self.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
            u32::MAX
        } else if self.version >= 0x203 {
            self.initrd_addr_max
        } else {
            LEGACY_INITRD_MAX
        };
        let top = q35_below_4g_mem_size(memory_bytes).saturating_sub(ACPI_DATA_SIZE);
        if u64::from(wanted) >= top {
            // top <= 0x8000_0000 on q35, so this fits.
            u32::try_from(top.saturating_sub(1)).unwrap_or(u32::MAX)
        } else {
            wanted
        }
    }
}

/// The RAM a q35 machine maps below 4 GiB (QEMU `pc_q35_init`, default max-ram-below-4g):
/// all of it below 0xB000_0000 (2816 MiB), else 2 GiB with the rest above 4 GiB.
pub fn q35_below_4g_mem_size(memory_bytes: u64) -> u64 {
    if memory_bytes >= 0xB000_0000 {
        0x8000_0000
    } else {
        memory_bytes
    }
}

fn check_inputs(boot: &DirectBoot<'_>) -> Result<(), DirectBootError> {
    if boot.memory_bytes == 0 || boot.memory_bytes % MIB != 0 {
        return Err(DirectBootError::Memory {
            bytes: boot.memory_bytes,
        });
    }
    check_cmdline(boot.cmdline)?;
    if let Some(offset) = boot.cmdline.find("vga=") {
        return Err(DirectBootError::VgaParameter { offset });
    }
    if boot.initrd.is_some_and(<[u8]>::is_empty) {
        return Err(DirectBootError::EmptyInitrd);
    }
    Ok(())
}

fn check_cmdline(cmdline: &str) -> Result<(), DirectBootError> {
    if let Some((offset, &byte)) = cmdline
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, &b)| !(b == b'\t' || (0x20..0x7F).contains(&b)))
    {
        return Err(DirectBootError::CmdlineByte { offset, byte });
    }
    Ok(())
}

/// The kernel as OVMF receives it: the file with QEMU's patched setup header (fw_cfg setup
/// data followed by kernel data, which together are the whole file).
pub fn patched_kernel(boot: &DirectBoot<'_>) -> Result<Vec<u8>, DirectBootError> {
    check_inputs(boot)?;
    let header = SetupHeader::parse(boot.kernel)?;
    let mut k = boot.kernel.to_vec();
    put(&mut k, CMD_LINE_PTR, &CMDLINE_ADDR.to_le_bytes());
    put(&mut k, TYPE_OF_LOADER, &[QEMU_LOADER_TYPE]);
    put(&mut k, LOADFLAGS, &[header.loadflags | CAN_USE_HEAP]);
    let heap_end = (CMDLINE_ADDR - REAL_ADDR - 0x200) as u16;
    put(&mut k, HEAP_END_PTR, &heap_end.to_le_bytes());
    if let Some(initrd) = boot.initrd {
        let max = header.initrd_max(boot.memory_bytes);
        let size = u32::try_from(initrd.len())
            .ok()
            .filter(|&s| s < max)
            .ok_or(DirectBootError::InitrdTooLarge {
                size: initrd.len(),
                max,
            })?;
        let addr = (max - size) & !0xFFF;
        put(&mut k, RAMDISK_IMAGE, &addr.to_le_bytes());
        put(&mut k, RAMDISK_SIZE, &size.to_le_bytes());
    }
    Ok(k)
}

/// PE Authenticode SHA-256 of an EFI image, as OVMF measures it (EV_EFI_BOOT_SERVICES_APPLICATION).
pub fn pe_image_digest(image: &[u8]) -> Result<[u8; 32], DirectBootError> {
    let lfanew = array(image, 0x3C)
        .map(u32::from_le_bytes)
        .and_then(|o| usize::try_from(o).ok());
    let signed = image.get(..2) == Some(b"MZ".as_slice())
        && lfanew.and_then(|o| image.get(o..o.checked_add(4)?)) == Some(b"PE\0\0".as_slice());
    let Some(nt) = lfanew.filter(|_| signed) else {
        return Err(DirectBootError::NotPe);
    };
    // COFF file header (20 bytes) after the signature, then the optional header's magic.
    let magic = nt
        .checked_add(24)
        .and_then(|o| array(image, o))
        .map(u16::from_le_bytes)
        .ok_or(DirectBootError::PeHeaders)?;
    if magic != 0x20B {
        return Err(DirectBootError::NotPe32Plus { magic });
    }
    let pe = PeFile64::parse(image).map_err(|_| DirectBootError::PeHeaders)?;
    let count = pe.data_directories().len();
    // (`DataDirectories::get` hides entries with a zero address; the size matters here.)
    let security = pe
        .data_directories()
        .iter()
        .nth(IMAGE_DIRECTORY_ENTRY_SECURITY)
        .ok_or(DirectBootError::PeDataDirectories { count })?;
    // OVMF subtracts the table's size even when its address is 0; the Authenticode rules
    // ignore such an entry. Refuse the one case where they differ.
    let size = security.size.get(LittleEndian);
    if security.virtual_address.get(LittleEndian) == 0 && size != 0 {
        return Err(DirectBootError::PeCertificateTable { size });
    }
    let mut h = Sha256::new();
    authenticode::authenticode_digest(&pe, &mut h).map_err(|_| DirectBootError::PeLayout)?;
    Ok(h.finalize().into())
}

/// The kernel's PCR 4 digest: the Authenticode SHA-256 of [`patched_kernel`].
pub fn kernel_digest(boot: &DirectBoot<'_>) -> Result<[u8; 32], DirectBootError> {
    pe_image_digest(&patched_kernel(boot)?)
}

/// The digest of the LoadOptions the EFI stub measures into PCR 9: UTF-16LE of `cmdline`,
/// plus `" initrd=initrd"` when there is an initrd, plus a UTF-16 NUL. `None` when the options
/// are empty (no command line, no initrd): OVMF passes none and nothing is measured.
pub fn load_options_digest(
    cmdline: &str,
    has_initrd: bool,
) -> Result<Option<[u8; 32]>, DirectBootError> {
    check_cmdline(cmdline)?;
    if cmdline.is_empty() && !has_initrd {
        return Ok(None);
    }
    let suffix = if has_initrd { " initrd=initrd" } else { "" };
    let mut h = Sha256::new();
    for unit in cmdline.encode_utf16().chain(suffix.encode_utf16()) {
        h.update(unit.to_le_bytes());
    }
    h.update([0u8; 2]);
    Ok(Some(h.finalize().into()))
}

/// What a measurement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEvent {
    /// EV_SEPARATOR with data 00 00 00 00.
    Separator,
    /// EV_EFI_ACTION with this ASCII text (no NUL).
    EfiAction(&'static str),
    /// EV_EFI_VARIABLE_DRIVER_CONFIG for this Secure Boot variable.
    SecureBootVariable(&'static str),
    /// EV_EFI_BOOT_SERVICES_APPLICATION: the kernel image.
    Kernel,
    /// EV_EVENT_TAG "LOADED_IMAGE::LoadOptions" (Linux EFI stub).
    LoadOptions,
    /// EV_EVENT_TAG "Linux initrd" (Linux EFI stub).
    Initrd,
}

impl BootEvent {
    /// A short label: the TCG event type and what its data names.
    pub fn label(&self) -> String {
        match self {
            BootEvent::Separator => "EV_SEPARATOR".into(),
            BootEvent::EfiAction(text) => format!("EV_EFI_ACTION {text:?}"),
            BootEvent::SecureBootVariable(name) => format!("EV_EFI_VARIABLE_DRIVER_CONFIG {name}"),
            BootEvent::Kernel => "EV_EFI_BOOT_SERVICES_APPLICATION kernel".into(),
            BootEvent::LoadOptions => "EV_EVENT_TAG LOADED_IMAGE::LoadOptions".into(),
            BootEvent::Initrd => "EV_EVENT_TAG Linux initrd".into(),
        }
    }
}

/// One extend: PCR, what, SHA-256 digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcrEvent {
    /// PCR index.
    pub pcr: usize,
    /// What is measured.
    pub event: BootEvent,
    /// The digest extended.
    pub digest: [u8; 32],
}

/// EFI_GLOBAL_VARIABLE 8be4df61-93ca-11d2-aa0d-00e098032b8c.
pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_fields(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// EFI_IMAGE_SECURITY_DATABASE_GUID d719b2cb-3d3a-4596-a3bc-dad00e67656f.
pub const EFI_IMAGE_SECURITY_DATABASE: Guid = Guid::from_fields(
    0xd719_b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);

/// SHA-256 of a UEFI_VARIABLE_DATA (TCG PC Client PFP): VariableName GUID, u64 name length in
/// characters, u64 data length, the UTF-16LE name without NUL, the data.
pub fn variable_digest(guid: &Guid, name: &str, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(guid.0);
    h.update((name.encode_utf16().count() as u64).to_le_bytes());
    h.update((data.len() as u64).to_le_bytes());
    for unit in name.encode_utf16() {
        h.update(unit.to_le_bytes());
    }
    h.update(data);
    h.finalize().into()
}

/// Digest of an EV_SEPARATOR (four zero bytes).
pub fn separator_digest() -> [u8; 32] {
    sha256(&[0; 4])
}

const CALLING_BOOT_OPTION: &str = "Calling EFI Application from Boot Option";
const EXIT_BOOT_SERVICES: &str = "Exit Boot Services Invocation";
const EXIT_BOOT_SERVICES_OK: &str = "Exit Boot Services Returned with Success";

/// The events of the computed PCRs, in the order each PCR is extended: PCR 7's Secure Boot
/// configuration (SecureBoot = 0, empty PK, KEK, db, dbx) and separator; the kernel image,
/// the boot-option action and the separator in PCR 4; the separators of PCRs 2, 3, 5 and 6;
/// the LoadOptions and initrd in PCR 9 (when present); the ExitBootServices actions in PCR 5.
pub fn boot_events(
    kernel_digest: [u8; 32],
    load_options_digest: Option<[u8; 32]>,
    initrd_digest: Option<[u8; 32]>,
) -> Vec<PcrEvent> {
    let ev = |pcr, event, digest| PcrEvent { pcr, event, digest };
    let sep = |pcr| ev(pcr, BootEvent::Separator, separator_digest());
    let action =
        |pcr, text: &'static str| ev(pcr, BootEvent::EfiAction(text), sha256(text.as_bytes()));
    let var = |guid, name: &'static str, data: &[u8]| {
        ev(
            7,
            BootEvent::SecureBootVariable(name),
            variable_digest(guid, name, data),
        )
    };
    let mut events = vec![
        var(&EFI_GLOBAL_VARIABLE, "SecureBoot", &[0]),
        var(&EFI_GLOBAL_VARIABLE, "PK", &[]),
        var(&EFI_GLOBAL_VARIABLE, "KEK", &[]),
        var(&EFI_IMAGE_SECURITY_DATABASE, "db", &[]),
        var(&EFI_IMAGE_SECURITY_DATABASE, "dbx", &[]),
        sep(7),
        ev(4, BootEvent::Kernel, kernel_digest),
        action(4, CALLING_BOOT_OPTION),
        sep(2),
        sep(3),
        sep(4),
        sep(5),
        sep(6),
    ];
    if let Some(d) = load_options_digest {
        events.push(ev(9, BootEvent::LoadOptions, d));
    }
    if let Some(d) = initrd_digest {
        events.push(ev(9, BootEvent::Initrd, d));
    }
    events.push(action(5, EXIT_BOOT_SERVICES));
    events.push(action(5, EXIT_BOOT_SERVICES_OK));
    events
}

/// Replays `events` from all-zero PCRs; every PCR in [`COMPUTED`] is present (zero if nothing
/// was extended into it).
pub fn replay(events: &[PcrEvent]) -> BTreeMap<usize, [u8; 32]> {
    let mut pcrs: BTreeMap<usize, [u8; 32]> = COMPUTED.iter().map(|&i| (i, [0; 32])).collect();
    for e in events {
        let pcr = pcrs.entry(e.pcr).or_insert([0; 32]);
        let mut h = Sha256::new();
        h.update(*pcr);
        h.update(e.digest);
        *pcr = h.finalize().into();
    }
    pcrs
}

/// The events of `boot` ([`boot_events`] with its kernel, LoadOptions and initrd digests).
pub fn direct_boot_events(boot: &DirectBoot<'_>) -> Result<Vec<PcrEvent>, DirectBootError> {
    let kernel = kernel_digest(boot)?;
    let options = load_options_digest(boot.cmdline, boot.initrd.is_some())?;
    Ok(boot_events(kernel, options, boot.initrd.map(sha256)))
}

/// The SHA-256 values of PCRs 2, 3, 4, 5, 6, 7 and 9 after `boot` reaches the kernel (after
/// ExitBootServices). PCRs 0 and 1 are not computed ([`NOT_COMPUTED`]).
pub fn expected_pcrs(boot: &DirectBoot<'_>) -> Result<BTreeMap<usize, [u8; 32]>, DirectBootError> {
    Ok(replay(&direct_boot_events(boot)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16, sects: u8, xlf: u16, len: usize) -> Vec<u8> {
        let mut k = vec![0u8; len];
        k[SETUP_SECTS] = sects;
        k[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        k[VERSION..VERSION + 2].copy_from_slice(&version.to_le_bytes());
        k[LOADFLAGS] = LOADED_HIGH;
        k[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        k[XLOADFLAGS..XLOADFLAGS + 2].copy_from_slice(&xlf.to_le_bytes());
        k
    }

    #[test]
    fn below_4g_split() {
        assert_eq!(q35_below_4g_mem_size(512 * MIB), 512 * MIB);
        assert_eq!(q35_below_4g_mem_size(2815 * MIB), 2815 * MIB);
        assert_eq!(q35_below_4g_mem_size(2816 * MIB), 0x8000_0000);
        assert_eq!(q35_below_4g_mem_size(64 << 30), 0x8000_0000);
    }

    #[test]
    fn initrd_max_branches() {
        let h = SetupHeader::parse(&header(0x20F, 3, 2, 4096)).unwrap();
        assert_eq!(h.setup_bytes, 2048);
        // Clamped below the ACPI area in either branch at 512 MiB.
        assert_eq!(h.initrd_max(512 * MIB), 0x1FFD_7FFF);
        // Above 2 GiB the XLF branch (u32::MAX) and initrd_addr_max (2 GiB - 1) differ.
        assert_eq!(h.initrd_max(2560 * MIB), 0x9FFD_7FFF);
        let old = SetupHeader::parse(&header(0x20B, 3, 2, 4096)).unwrap();
        assert_eq!(old.initrd_max(2560 * MIB), 0x7FFF_FFFF);
        assert_eq!(old.initrd_max(4096 * MIB), 0x7FFD_7FFF);
        let ancient = SetupHeader::parse(&header(0x202, 0, 0, 4096)).unwrap();
        assert_eq!(ancient.setup_bytes, 2560);
        assert_eq!(ancient.initrd_max(2048 * MIB), LEGACY_INITRD_MAX);
    }

    #[test]
    fn cmdline_checks() {
        assert_eq!(check_cmdline("console=ttyS0\tquiet vga=791"), Ok(()));
        assert_eq!(
            check_cmdline("a\u{e9}"),
            Err(DirectBootError::CmdlineByte {
                offset: 1,
                byte: 0xC3
            })
        );
        assert!(matches!(
            check_cmdline("a\0b"),
            Err(DirectBootError::CmdlineByte { offset: 1, byte: 0 })
        ));
    }
}
