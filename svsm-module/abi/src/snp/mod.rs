//! AMD SEV-SNP structures from the "SEV Secure Nested Paging Firmware ABI Specification"
//! (AMD pub. 56860) and the GHCB specification (AMD pub. 56421). Table names are cited per type;
//! byte offsets were cross-checked against real reports from Milan, Genoa and Turin parts.

pub mod certs;
pub mod cpuid;
pub mod ghcb;
pub mod guest_msg;
pub mod msg;
pub mod policy;
pub mod report;
pub mod secrets;
pub mod tcb;
pub mod vmsa;

pub use policy::{GuestPolicy, KeyInfo, PlatformInfo, SigningKey};
pub use report::{AttestationReport, RawReport, ReportError, ReportVersion, REPORT_SIZE};
pub use tcb::{Product, TcbComponents, TcbLayout, TcbVersion};
