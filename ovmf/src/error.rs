//! Typed errors. Every variant names the field or structure that was refused and carries the
//! values that made it wrong; none carries free text.

use svsm_abi::Guid;

/// Why a firmware image (OVMF footer table, SEV metadata) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirmwareError {
    /// The image is empty, not a whole number of 4 KiB pages, or larger than 4 GiB (it is
    /// mapped to end at 4 GiB).
    #[error("firmware image is {len} bytes: expected a non-zero multiple of 4096 up to 4 GiB")]
    Size {
        /// Image length in bytes.
        len: usize,
    },
    /// The 16 bytes where the footer-table GUID belongs (50..34 bytes before the end) hold
    /// something else: not an OVMF image with a GUID table.
    #[error("footer table GUID is {found}, expected 96b582de-1fb2-45f7-baea-a366c55a082d")]
    FooterGuid {
        /// What the image holds there.
        found: Guid,
    },
    /// The footer's total table length is shorter than its own header or reaches before the
    /// start of the image.
    #[error("footer table length {length:#x} is invalid ({available:#x} bytes available)")]
    FooterLength {
        /// The u16 table length.
        length: u16,
        /// Bytes between the image start and the footer entry.
        available: usize,
    },
    /// A table entry's length is shorter than its 18-byte header or runs past the table start.
    #[error("footer table entry at offset {offset:#x}: length {length:#x} is invalid ({available:#x} bytes left)")]
    EntryLength {
        /// File offset where the entry's header starts.
        offset: usize,
        /// The entry's u16 length.
        length: u16,
        /// Bytes of table left before the entry's end.
        available: usize,
    },
    /// Fewer than 18 bytes remain in the table: a partial entry header.
    #[error("footer table has {left} stray bytes before its first entry")]
    EntryTruncated {
        /// Bytes left.
        left: usize,
    },
    /// The same GUID appears twice in the table.
    #[error("footer table lists {guid} twice")]
    DuplicateEntry {
        /// The repeated GUID.
        guid: Guid,
    },
    /// An entry's data is shorter than the fields read from it.
    #[error("footer table entry {guid}: {len} data bytes, need {need}")]
    EntryData {
        /// The entry.
        guid: Guid,
        /// Its data length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An entry the measurement needs is absent.
    #[error("footer table has no {name} entry ({guid})")]
    MissingEntry {
        /// Entry name (a fixed label).
        name: &'static str,
        /// Its GUID.
        guid: Guid,
    },
    /// The SEV metadata offset (from the image end) points outside the image or leaves no room
    /// for the 16-byte header.
    #[error("SEV metadata offset {offset:#x} from the end is outside a {image_len:#x}-byte image")]
    MetadataOffset {
        /// Offset from the end of the image.
        offset: u32,
        /// Image length.
        image_len: usize,
    },
    /// The metadata block does not start with "ASEV".
    #[error("SEV metadata signature is {found:02x?}, expected \"ASEV\"")]
    MetadataSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// Unknown metadata version (only 1 is defined).
    #[error("SEV metadata version {0}, expected 1")]
    MetadataVersion(u32),
    /// The metadata length is not 16 + 12 × sections, overflows, or runs past the image end.
    #[error("SEV metadata length {length:#x} does not fit {sections} sections in the image")]
    MetadataLength {
        /// The u32 total length.
        length: u32,
        /// The u32 section count.
        sections: u32,
    },
    /// More sections than any firmware uses (a bound against hostile counts).
    #[error("SEV metadata lists {count} sections (at most {max} accepted)")]
    TooManySections {
        /// Sections declared.
        count: u32,
        /// The bound.
        max: u32,
    },
    /// A section type the SEV metadata does not define.
    #[error("SEV metadata section {index}: unknown type {kind:#x}")]
    SectionKind {
        /// Section index in table order.
        index: usize,
        /// The type value.
        kind: u32,
    },
    /// A section is empty or not 4 KiB aligned in address or size.
    #[error("SEV metadata section {index}: gpa {gpa:#x} size {size:#x} is not a non-empty 4 KiB-aligned range")]
    SectionAlignment {
        /// Section index.
        index: usize,
        /// Its gpa.
        gpa: u32,
        /// Its size.
        size: u32,
    },
    /// A section ends above 4 GiB.
    #[error("SEV metadata section {index}: gpa {gpa:#x} + size {size:#x} passes 4 GiB")]
    SectionRange {
        /// Section index.
        index: usize,
        /// Its gpa.
        gpa: u32,
        /// Its size.
        size: u32,
    },
    /// A single-page section (secrets, CPUID, kernel hashes) is not exactly one page; the
    /// measuring tools disagree on larger ones, so they are refused.
    #[error("SEV metadata section {index} ({kind:?}): size {size:#x}, expected 0x1000")]
    SectionSize {
        /// Section index.
        index: usize,
        /// Its type.
        kind: crate::SectionKind,
        /// Its size.
        size: u32,
    },
    /// Two sections cover the same page.
    #[error("SEV metadata sections {first} and {second} overlap")]
    SectionOverlap {
        /// Lower table index.
        first: usize,
        /// Higher table index.
        second: usize,
    },
    /// A section overlaps the firmware image's own pages below 4 GiB.
    #[error("SEV metadata section {index} overlaps the firmware at {firmware_gpa:#x}")]
    SectionOverlapsFirmware {
        /// Section index.
        index: usize,
        /// Firmware start gpa.
        firmware_gpa: u64,
    },
}

/// Why a launch digest could not be computed for a firmware image and launch parameters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// The firmware image was refused.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// The image has a footer table but no SEV metadata: it cannot launch as SNP (for example
    /// Debian's 4M CODE images).
    #[error("firmware has no SEV metadata (ASEV): it cannot be launched as an SNP guest")]
    NoSevMetadata,
    /// Zero vCPUs.
    #[error("at least one vCPU is required")]
    NoVcpus,
    /// A kernel was given but the firmware has no SNP_KERNEL_HASHES section (no measured
    /// direct boot, e.g. Debian bookworm's OVMF).
    #[error("a kernel was given but the firmware's SEV metadata has no SNP_KERNEL_HASHES section (no measured direct boot)")]
    NoKernelHashesSection,
    /// The footer's SEV hash-table entry is zero, smaller than the table, or places the table
    /// across a page boundary.
    #[error("SEV hash-table area base {base:#x} size {size:#x} cannot hold the {need}-byte table in one page")]
    HashTableArea {
        /// Area base gpa.
        base: u32,
        /// Area size.
        size: u32,
        /// Bytes the padded table needs.
        need: usize,
    },
}

/// Why an IGVM file could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IgvmError {
    /// The IGVM fixed header is short, has the wrong magic or version, or sizes that do not
    /// fit the file.
    #[error("IGVM fixed header: {field} = {value:#x} is invalid")]
    FixedHeader {
        /// The field (or `length` for a file shorter than the header).
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The `igvm` crate's parser panicked on this input (caught; a bug in that crate).
    #[error("the igvm parser failed on this file (it panicked): the file is malformed")]
    ParserPanicked,
    /// The `igvm` crate refused the file.
    #[error("IGVM file refused by the parser: {0}")]
    Parse(#[source] igvm::Error),
    /// No SUPPORTED_PLATFORM header for SEV-SNP.
    #[error("IGVM file declares no SEV-SNP platform")]
    NoSnpPlatform,
    /// The `igvm-crate` flavour needs a GUEST_POLICY initialization header for the platform (the
    /// crate's measurement refuses files without one).
    #[error("IGVM file has no SNP guest policy for compatibility mask {mask:#x}")]
    MissingGuestPolicy {
        /// The SNP compatibility mask.
        mask: u32,
    },
    /// A PARAMETER_INSERT names an index no PARAMETER_AREA declared.
    #[error("PARAMETER_INSERT at {gpa:#x} names undeclared parameter area {index}")]
    ParameterArea {
        /// Parameter area index.
        index: u32,
        /// Insert gpa.
        gpa: u64,
    },
    /// A page range's address is unaligned or its end overflows 64 bits.
    #[error(
        "{what} at gpa {gpa:#x}, {bytes:#x} bytes: unaligned or past the end of the address space"
    )]
    Range {
        /// Which directive.
        what: &'static str,
        /// Start gpa.
        gpa: u64,
        /// Length in bytes.
        bytes: u64,
    },
    /// Page data longer than the page it describes.
    #[error("PAGE_DATA at {gpa:#x}: {len} data bytes for a {page}-byte page")]
    PageDataSize {
        /// Page gpa.
        gpa: u64,
        /// Data length.
        len: usize,
        /// Page size.
        page: u64,
    },
    /// A page data type the SNP launch does not define.
    #[error("PAGE_DATA at {gpa:#x}: unknown data type {kind:#x}")]
    PageDataType {
        /// Page gpa.
        gpa: u64,
        /// The type value.
        kind: u16,
    },
    /// More pages than a launch can measure (a bound against hostile sizes).
    #[error("IGVM file would measure more than {max} pages")]
    TooManyPages {
        /// The bound.
        max: u64,
    },
    /// The `qemu` flavour: KVM places the VMSA at 0xFFFFFFFFF000; an SNP VP context elsewhere
    /// would be measured at a different address than the file says.
    #[error("SNP VP context at gpa {gpa:#x}: QEMU/KVM measure the VMSA at 0xFFFFFFFFF000")]
    VmsaGpa {
        /// The directive's gpa.
        gpa: u64,
    },
    /// The `qemu` flavour: QEMU/KVM set the VMSA of the first vCPU only.
    #[error("{count} SNP VP contexts: QEMU/KVM accept one (vp_index 0)")]
    VmsaCount {
        /// VP contexts in the file.
        count: usize,
    },
    /// The `qemu` flavour: without a VP context KVM measures its own reset VMSA, which this
    /// crate does not model for IGVM launches.
    #[error("IGVM file has no SNP VP context")]
    NoVmsa,
}

/// Why a vCPU type name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VcpuTypeError {
    /// Not one of [`crate::VcpuType::ALL`].
    #[error("unknown vCPU type {0:?} (known: EPYC, EPYC-v1..v4, EPYC-IBPB, EPYC-Rome[-v1..v3], EPYC-Milan[-v1,-v2], EPYC-Genoa[-v1], EPYC-Turin[-v1,-v2])")]
    Unknown(String),
}

/// Why a hex launch digest was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestHexError {
    /// Not 96 hex digits.
    #[error("a launch digest is 96 hex digits, got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("launch digest: {0:?} is not a hex digit")]
    Digit(char),
}

/// Why an IGVM file could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IgvmBuildError {
    /// The SVSM image is empty or too large.
    #[error("the SVSM image is {0} bytes (1 to 64 MiB)")]
    ImageSize(usize),
    /// The firmware is empty, too large or not whole pages.
    #[error("the firmware is {0} bytes (whole 4 KiB pages, at most 16 MiB)")]
    FirmwareSize(usize),
    /// The SVSM's base or size is not page aligned, or its region wraps.
    #[error("the SVSM base and size must be 4 KiB aligned and not wrap")]
    Misaligned,
    /// SEV_FEATURES without SNP (bit 0).
    #[error("SEV_FEATURES {0:#x} does not have SNP (bit 0) set")]
    SevFeatures(u64),
    /// The SVSM's region cannot hold the image and its three boot pages.
    #[error("the SVSM region needs {needed:#x} bytes for the image and its boot pages, it has {size:#x}")]
    RegionTooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes given.
        size: u64,
    },
    /// The entry point is not inside the image (below 4 GiB).
    #[error("the SVSM entry point {0:#x} is not inside the image")]
    Entry(u64),
    /// The SVSM's region overlaps the firmware.
    #[error("the SVSM region overlaps the firmware below 4 GiB")]
    Overlap,
    /// The VMSA does not convert (a layout mismatch with the igvm crate).
    #[error("the boot VMSA does not fit the igvm crate's VMSA layout")]
    Vmsa,
    /// The igvm crate refused the file.
    #[error("igvm: {0}")]
    Igvm(#[source] igvm::Error),
    /// The firmware image does not parse.
    #[error("the firmware: {0}")]
    Firmware(#[source] FirmwareError),
    /// The firmware lacks a section an SVSM needs to start it.
    #[error("the firmware has no {0} section (an SVSM needs OVMF's SNP_SECRETS, CPUID and SVSM_CAA metadata; OVMF has SVSM_CAA from edk2-stable202405)")]
    FirmwareSection(&'static str),
    /// The boot information would not pass the SVSM's own check.
    #[error("boot information: {0}")]
    BootInfo(#[source] svsm_abi::igvm_boot::BootInfoError),
    /// The SVSM ELF file cannot be loaded.
    #[error("the SVSM ELF file: {0}")]
    Elf(&'static str),
}
