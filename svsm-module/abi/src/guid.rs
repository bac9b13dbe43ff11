//! GUIDs as they travel on the SVSM wire: the "little-endian" (mixed-endian, Microsoft) encoding,
//! where the first three fields of the text form are byte-swapped (SVSM spec §7.1 Table 12;
//! Linux `export_guid`). The SNP extended-report certificate table instead stores the text form's
//! bytes in order (GHCB spec §4.1.8.1); see [`Guid::from_text_order_bytes`].

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A GUID in SVSM wire encoding (first three fields little-endian).
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(transparent)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Builds the wire encoding from the fields of the text form
    /// `aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee` (`d` = the first two bytes of `tail`).
    pub const fn from_fields(a: u32, b: u16, c: u16, tail: [u8; 8]) -> Self {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], tail[0], tail[1], tail[2], tail[3],
            tail[4], tail[5], tail[6], tail[7],
        ])
    }

    /// Reads a GUID stored with the text form's bytes in order (big-endian fields), as the SNP
    /// certificate table stores them, and returns its SVSM wire encoding.
    pub const fn from_text_order_bytes(b: [u8; 16]) -> Self {
        Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }

    /// The bytes of the text form in order (big-endian fields).
    pub const fn to_text_order_bytes(&self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    /// True for the all-zero GUID (table terminators).
    pub fn is_nil(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.to_text_order_bytes().iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn services_manifest_guid_wire_bytes_match_spec() {
        // SVSM spec §7.1: 63849ebb-3d92-4670-a1ff-58f9c94b87bb, LE-encoded on the wire.
        let g = Guid::from_fields(
            0x6384_9ebb,
            0x3d92,
            0x4670,
            [0xa1, 0xff, 0x58, 0xf9, 0xc9, 0x4b, 0x87, 0xbb],
        );
        assert_eq!(
            g.0,
            [
                0xbb, 0x9e, 0x84, 0x63, 0x92, 0x3d, 0x70, 0x46, 0xa1, 0xff, 0x58, 0xf9, 0xc9, 0x4b,
                0x87, 0xbb
            ]
        );
        assert_eq!(g.to_string(), "63849ebb-3d92-4670-a1ff-58f9c94b87bb");
        assert_eq!(Guid::from_text_order_bytes(g.to_text_order_bytes()), g);
    }
}
