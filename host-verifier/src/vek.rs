//! The VCEK / VLEK certificate and its AMD extensions (VCEK spec, AMD pub. 57230, "VCEK
//! Certificate Extensions"; arc 1.3.6.1.4.1.3704.1). SPLs are DER INTEGERs (ucodeSPL 217 is
//! `02 02 00 D9`), hwID is the bare chip id (64 bytes; 8 on Turin) or, leniently, an OCTET STRING
//! around it. Everything here is untrusted input: every value is parsed strictly and every
//! anomaly is a typed [`Failure`].

use crate::check::{CertRole, Failure, SplName};
use crate::x509::{CertDecodeError, ParsedCert, OID_EC_PUBLIC_KEY, OID_SECP384R1};
use der::asn1::{Ia5StringRef, ObjectIdentifier};
use der::Decode;
use svsm_abi::snp::{Product, TcbLayout, TcbVersion};

/// AMD's VEK extension arc.
pub const AMD_ARC: &str = "1.3.6.1.4.1.3704.1";

/// One of AMD's VEK extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AmdExtension {
    /// .1 structVersion (INTEGER).
    StructVersion,
    /// .2 productName (IA5String).
    ProductName,
    /// .3.N an SPL (INTEGER): 1 bl, 2 tee, 3 snp, 4..7 spl_4..spl_7, 8 ucode, 9 fmc.
    Spl(u8),
    /// .4 hwID (bare bytes).
    HwId,
    /// .5 cspID (IA5String).
    CspId,
}

impl AmdExtension {
    /// Classifies an OID; `None` for anything outside the known AMD extensions.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        let s = oid.to_string();
        let tail = s.strip_prefix(AMD_ARC)?.strip_prefix('.')?;
        Some(match tail {
            "1" => AmdExtension::StructVersion,
            "2" => AmdExtension::ProductName,
            "4" => AmdExtension::HwId,
            "5" => AmdExtension::CspId,
            t => {
                let n = t.strip_prefix("3.")?.parse::<u8>().ok()?;
                if !(1..=9).contains(&n) {
                    return None;
                }
                AmdExtension::Spl(n)
            }
        })
    }

    /// The dotted OID.
    pub fn oid(self) -> String {
        match self {
            AmdExtension::StructVersion => format!("{AMD_ARC}.1"),
            AmdExtension::ProductName => format!("{AMD_ARC}.2"),
            AmdExtension::Spl(n) => format!("{AMD_ARC}.3.{n}"),
            AmdExtension::HwId => format!("{AMD_ARC}.4"),
            AmdExtension::CspId => format!("{AMD_ARC}.5"),
        }
    }
}

/// A parsed extension value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionValue {
    /// An INTEGER (structVersion).
    Integer(u32),
    /// An SPL (INTEGER 0..=255).
    Spl(u8),
    /// A string (productName, cspID).
    Text(String),
    /// hwID bytes.
    Bytes(Vec<u8>),
}

/// Parses one AMD extension value strictly.
pub fn parse_extension_value(ext: AmdExtension, value: &[u8]) -> Result<ExtensionValue, Failure> {
    let malformed = |detail: String| Failure::ExtensionMalformed {
        oid: ext.oid(),
        detail,
    };
    match ext {
        AmdExtension::StructVersion => u32::from_der(value)
            .map(ExtensionValue::Integer)
            .map_err(|e| malformed(format!("not a DER INTEGER 0..2^32: {e}"))),
        AmdExtension::Spl(_) => u8::from_der(value)
            .map(ExtensionValue::Spl)
            .map_err(|e| malformed(format!("not a DER INTEGER 0..=255: {e}"))),
        AmdExtension::ProductName | AmdExtension::CspId => Ia5StringRef::from_der(value)
            .map(|s| ExtensionValue::Text(s.as_str().to_owned()))
            .map_err(|e| malformed(format!("not a DER IA5String: {e}"))),
        AmdExtension::HwId => {
            // Tagged OCTET STRING (04 40 / 04 08) is accepted in case AMD fixes the encoding;
            // the lengths keep it unambiguous with the bare 64- or 8-byte form.
            let bytes = match value {
                [0x04, 0x40, rest @ ..] if rest.len() == 64 => rest,
                [0x04, 0x08, rest @ ..] if rest.len() == 8 => rest,
                raw if raw.len() == 64 || raw.len() == 8 => raw,
                raw => return Err(malformed(format!("{} bytes, expected 64 or 8", raw.len()))),
            };
            Ok(ExtensionValue::Bytes(bytes.to_vec()))
        }
    }
}

/// The AMD extensions of a VEK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VekExtensions {
    /// structVersion (0 Milan/Genoa/VLEK, 1 Turin).
    pub struct_version: Option<u32>,
    /// productName ("Milan-B0", "Genoa", "Turin", VLEK "Milan").
    pub product_name: Option<String>,
    /// blSPL.
    pub bootloader: Option<u8>,
    /// teeSPL.
    pub tee: Option<u8>,
    /// snpSPL.
    pub snp: Option<u8>,
    /// spl_4..spl_7.
    pub reserved: [Option<u8>; 4],
    /// ucodeSPL.
    pub microcode: Option<u8>,
    /// fmcSPL (Turin).
    pub fmc: Option<u8>,
    /// hwID (VCEK).
    pub hw_id: Option<Vec<u8>>,
    /// cspID (VLEK).
    pub csp_id: Option<String>,
}

impl VekExtensions {
    /// Parses the extensions of a certificate: AMD's strictly, duplicates refused, unknown
    /// critical extensions refused, unknown non-critical ones ignored.
    pub fn parse<'a>(
        exts: impl IntoIterator<Item = (&'a ObjectIdentifier, bool, &'a [u8])>,
    ) -> Result<Self, Failure> {
        let mut out = VekExtensions::default();
        let mut seen: Vec<ObjectIdentifier> = Vec::new();
        for (oid, critical, value) in exts {
            if seen.contains(oid) {
                return Err(Failure::ExtensionDuplicate(oid.to_string()));
            }
            seen.push(*oid);
            let Some(ext) = AmdExtension::from_oid(oid) else {
                if critical {
                    return Err(Failure::ExtensionCritical(oid.to_string()));
                }
                continue;
            };
            match (ext, parse_extension_value(ext, value)?) {
                (AmdExtension::StructVersion, ExtensionValue::Integer(v)) => {
                    out.struct_version = Some(v)
                }
                (AmdExtension::ProductName, ExtensionValue::Text(s)) => out.product_name = Some(s),
                (AmdExtension::CspId, ExtensionValue::Text(s)) => out.csp_id = Some(s),
                (AmdExtension::HwId, ExtensionValue::Bytes(b)) => out.hw_id = Some(b),
                (AmdExtension::Spl(n), ExtensionValue::Spl(v)) => {
                    let slot = match n {
                        1 => &mut out.bootloader,
                        2 => &mut out.tee,
                        3 => &mut out.snp,
                        8 => &mut out.microcode,
                        9 => &mut out.fmc,
                        n => match out.reserved.get_mut(usize::from(n).saturating_sub(4)) {
                            Some(slot) => slot,
                            None => continue,
                        },
                    };
                    *slot = Some(v);
                }
                _ => {}
            }
        }
        if out.product_name.is_none() {
            return Err(Failure::ExtensionMissing("productName"));
        }
        Ok(out)
    }

    /// The product line named by productName.
    pub fn product(&self) -> Option<Product> {
        self.product_name
            .as_deref()
            .and_then(Product::from_kds_name)
    }

    /// Checks that every SPL equals `tcb` decoded with `layout` (REPORTED_TCB binding).
    pub fn check_tcb(&self, tcb: TcbVersion, layout: TcbLayout) -> Result<(), Failure> {
        let c = tcb.decode(layout);
        let need = |v: Option<u8>, name: &'static str| v.ok_or(Failure::ExtensionMissing(name));
        let pairs = [
            (
                SplName::BootLoader,
                need(self.bootloader, "blSPL")?,
                c.bootloader,
            ),
            (SplName::Tee, need(self.tee, "teeSPL")?, c.tee),
            (SplName::Snp, need(self.snp, "snpSPL")?, c.snp),
            (
                SplName::Microcode,
                need(self.microcode, "ucodeSPL")?,
                c.microcode,
            ),
        ];
        for (spl, cert, report) in pairs {
            if cert != report {
                return Err(Failure::SplMismatch { spl, cert, report });
            }
        }
        match (layout, self.fmc, c.fmc) {
            (TcbLayout::Turin, None, _) => return Err(Failure::ExtensionMissing("fmcSPL")),
            (TcbLayout::Turin, Some(cert), Some(report)) if cert != report => {
                return Err(Failure::SplMismatch {
                    spl: SplName::Fmc,
                    cert,
                    report,
                })
            }
            (TcbLayout::MilanGenoa, Some(_), _) => {
                return Err(Failure::ExtensionUnexpected("fmcSPL"))
            }
            _ => {}
        }
        // Reserved SPLs (spl_4..spl_7 on Milan/Genoa; Turin has no spl_4 and maps spl_5..7 to
        // its three reserved bytes): present ones equal the reserved TCB bytes.
        let reserved_pairs: [(u8, Option<u8>, u8); 4] = match layout {
            TcbLayout::MilanGenoa => [
                (4, self.reserved[0], c.reserved[0]),
                (5, self.reserved[1], c.reserved[1]),
                (6, self.reserved[2], c.reserved[2]),
                (7, self.reserved[3], c.reserved[3]),
            ],
            TcbLayout::Turin => [
                (4, self.reserved[0], 0),
                (5, self.reserved[1], c.reserved[0]),
                (6, self.reserved[2], c.reserved[1]),
                (7, self.reserved[3], c.reserved[2]),
            ],
        };
        for (n, cert, report) in reserved_pairs {
            let cert = cert.unwrap_or(0);
            if cert != report {
                return Err(Failure::SplMismatch {
                    spl: SplName::Reserved(n),
                    cert,
                    report,
                });
            }
        }
        Ok(())
    }
}

/// What the certificate subject says the key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VekKind {
    /// CN=SEV-VCEK.
    Vcek,
    /// CN=SEV-VLEK.
    Vlek,
}

/// A VCEK or VLEK certificate, parsed.
#[derive(Clone, Debug)]
pub struct VekCert {
    pub(crate) cert: ParsedCert,
    kind: Option<VekKind>,
    key: Result<p384::AffinePoint, Failure>,
    extensions: Result<VekExtensions, Failure>,
}

impl VekCert {
    /// Parses PEM or DER certificate bytes (the first certificate of a PEM bundle).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertDecodeError> {
        Self::from_der(&pem_or_der(bytes)?)
    }

    /// Parses DER certificate bytes. Only the X.509 structure must be sound here; the key and
    /// the AMD extensions are parsed too, and their problems become check failures.
    pub fn from_der(der: &[u8]) -> Result<Self, CertDecodeError> {
        let cert = ParsedCert::from_der(der)?;
        let kind = match cert.subject_cn.as_str() {
            "SEV-VCEK" => Some(VekKind::Vcek),
            "SEV-VLEK" => Some(VekKind::Vlek),
            _ => None,
        };
        let key = ec_key(&cert);
        let tbs = &cert.cert.tbs_certificate;
        let extensions = VekExtensions::parse(
            tbs.extensions
                .iter()
                .flatten()
                .map(|e| (&e.extn_id, e.critical, e.extn_value.as_bytes())),
        );
        Ok(VekCert {
            cert,
            kind,
            key,
            extensions,
        })
    }

    /// The subject's kind, when the CN is SEV-VCEK or SEV-VLEK.
    pub fn kind(&self) -> Option<VekKind> {
        self.kind
    }

    /// Subject CN.
    pub fn subject_cn(&self) -> &str {
        &self.cert.subject_cn
    }

    /// Issuer CN.
    pub fn issuer_cn(&self) -> &str {
        &self.cert.issuer_cn
    }

    /// The AMD extensions, or why they are malformed.
    pub fn extensions(&self) -> &Result<VekExtensions, Failure> {
        &self.extensions
    }

    /// The P-384 public key, or why there is none.
    pub fn public_key(&self) -> &Result<p384::AffinePoint, Failure> {
        &self.key
    }

    /// notBefore / notAfter in Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        (self.cert.not_before, self.cert.not_after)
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.cert.der
    }
}

fn ec_key(cert: &ParsedCert) -> Result<p384::AffinePoint, Failure> {
    let spki = &cert.cert.tbs_certificate.subject_public_key_info;
    let bad = |detail: String| Failure::PublicKey {
        role: CertRole::Vek,
        detail,
    };
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(bad(format!(
            "algorithm {} is not id-ecPublicKey",
            spki.algorithm.oid
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(OID_SECP384R1) {
        return Err(bad("curve is not secp384r1".into()));
    }
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("key BIT STRING has unused bits".into()))?;
    p384::PublicKey::from_sec1_bytes(bytes)
        .map(|k| *k.as_affine())
        .map_err(|_| bad("not a valid P-384 point".into()))
}

/// DER from PEM (the first `CERTIFICATE` block) or DER as given.
pub fn pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, CertDecodeError> {
    pem_certs(bytes).map(|mut v| v.swap_remove(0))
}

/// Every certificate of a PEM bundle, or the single DER certificate.
pub fn pem_certs(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertDecodeError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let trimmed = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| bytes.get(i..))
        .unwrap_or(&[]);
    if !trimmed.starts_with(b"-----BEGIN") {
        if trimmed.is_empty() {
            return Err(CertDecodeError::Empty);
        }
        return Ok(vec![bytes.to_vec()]);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| CertDecodeError::Encoding(e.to_string()))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = rest.get(start..).unwrap_or("");
        let end = after
            .find(END)
            .ok_or_else(|| CertDecodeError::Encoding("PEM block without END line".into()))?;
        let block = after.get(..end + END.len()).unwrap_or("");
        let (label, der) = der::pem::decode_vec(block.as_bytes())
            .map_err(|e| CertDecodeError::Encoding(e.to_string()))?;
        if label != "CERTIFICATE" {
            return Err(CertDecodeError::Encoding(format!("PEM label {label}")));
        }
        out.push(der);
        rest = after.get(end + END.len()..).unwrap_or("");
    }
    if out.is_empty() {
        return Err(CertDecodeError::Empty);
    }
    Ok(out)
}
