//! The appraisal policy, read from TOML (`examples/policy.toml` documents every key). Unknown keys
//! are an error, so a policy can never ask for a check this verifier silently lacks. Absent keys
//! take the defaults below; a check whose key is absent reports "not-applicable".

use serde::Deserialize;
use std::collections::BTreeMap;
use svsm_abi::snp::{PlatformInfo, Product, SigningKey};

/// Why a policy was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not valid TOML, an unknown key, or a wrong type.
    #[error("policy TOML: {0}")]
    Toml(String),
    /// Not a JSON object of the policy's keys, an unknown key, or a wrong type.
    #[error("policy JSON: {0}")]
    Json(String),
    /// A value is out of range or malformed.
    #[error("policy key `{field}`: {detail}")]
    Field {
        /// The key.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

/// Minimum SPLs; `None` components are not constrained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinTcb {
    /// Boot loader SPL.
    pub bootloader: Option<u8>,
    /// TEE SPL.
    pub tee: Option<u8>,
    /// SNP firmware SPL.
    pub snp: Option<u8>,
    /// Microcode SPL.
    pub microcode: Option<u8>,
    /// FMC SPL (Turin only).
    pub fmc: Option<u8>,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Accept a guest policy with DEBUG set (default false).
    pub allow_debug: bool,
    /// Accept MIGRATE_MA and an associated migration agent (default false).
    pub allow_migration_agent: bool,
    /// Accept SMT enabled on the host (default true).
    pub allow_smt: bool,
    /// Minimum firmware ABI (major, minor) for CURRENT and COMMITTED.
    pub min_abi: Option<(u8, u8)>,
    /// Minimum ABI (major, minor) the guest policy itself demands.
    pub min_guest_policy_abi: Option<(u8, u8)>,
    /// Required VMPL.
    pub vmpl: Option<u32>,
    /// Allowed MEASUREMENTs.
    pub measurements: Option<Vec<[u8; 48]>>,
    /// Minimum TCB for every product without its own entry.
    pub min_tcb_default: Option<MinTcb>,
    /// Minimum TCB per product.
    pub min_tcb_product: Vec<(Product, MinTcb)>,
    /// Minimum LAUNCH_TCB for every product without its own entry.
    pub min_launch_tcb_default: Option<MinTcb>,
    /// Minimum LAUNCH_TCB per product.
    pub min_launch_tcb_product: Vec<(Product, MinTcb)>,
    /// Allowed CHIP_IDs (an 8-byte Turin id is stored zero-extended).
    pub chip_ids: Option<Vec<[u8; 64]>>,
    /// Allowed signer kinds (default VCEK and VLEK).
    pub signing_keys: Vec<SigningKey>,
    /// Allowed VLEK cspIDs.
    pub vlek_csp_ids: Option<Vec<String>>,
    /// Expected FAMILY_ID.
    pub family_id: Option<[u8; 16]>,
    /// Expected IMAGE_ID.
    pub image_id: Option<[u8; 16]>,
    /// Expected HOST_DATA.
    pub host_data: Option<[u8; 32]>,
    /// Expected REPORT_DATA.
    pub report_data: Option<[u8; 64]>,
    /// PLATFORM_INFO bits that must be set.
    pub platform_info_required: PlatformInfo,
    /// PLATFORM_INFO bits that must be clear.
    pub platform_info_forbidden: PlatformInfo,
    /// Minimum GUEST_SVN.
    pub min_guest_svn: Option<u32>,
    /// Allowed ID_KEY_DIGESTs.
    pub id_key_digests: Option<Vec<[u8; 48]>>,
    /// Allowed AUTHOR_KEY_DIGESTs.
    pub author_key_digests: Option<Vec<[u8; 48]>>,
    /// Allowed products.
    pub products: Option<Vec<Product>>,
    /// The oldest ATTESTATION_REPORT version accepted (`None`: not checked).
    pub min_report_version: Option<u32>,
    /// Require REPORTED_TCB == CURRENT_TCB (default false).
    pub require_reported_equals_current: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_debug: false,
            allow_migration_agent: false,
            allow_smt: true,
            min_abi: None,
            min_guest_policy_abi: None,
            vmpl: None,
            measurements: None,
            min_tcb_default: None,
            min_tcb_product: Vec::new(),
            min_launch_tcb_default: None,
            min_launch_tcb_product: Vec::new(),
            chip_ids: None,
            signing_keys: vec![SigningKey::Vcek, SigningKey::Vlek],
            vlek_csp_ids: None,
            family_id: None,
            image_id: None,
            host_data: None,
            report_data: None,
            platform_info_required: PlatformInfo::empty(),
            platform_info_forbidden: PlatformInfo::empty(),
            min_guest_svn: None,
            id_key_digests: None,
            author_key_digests: None,
            products: None,
            min_report_version: None,
            require_reported_equals_current: false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    allow_debug: Option<bool>,
    allow_migration_agent: Option<bool>,
    allow_smt: Option<bool>,
    min_abi: Option<String>,
    min_guest_policy_abi: Option<String>,
    vmpl: Option<u32>,
    measurements: Option<Vec<String>>,
    min_tcb: Option<BTreeMap<String, MinTcb>>,
    min_launch_tcb: Option<BTreeMap<String, MinTcb>>,
    chip_ids: Option<Vec<String>>,
    signing_keys: Option<Vec<String>>,
    vlek_csp_ids: Option<Vec<String>>,
    family_id: Option<String>,
    image_id: Option<String>,
    host_data: Option<String>,
    report_data: Option<String>,
    platform_info_required: Option<Vec<String>>,
    platform_info_forbidden: Option<Vec<String>>,
    min_guest_svn: Option<u32>,
    min_report_version: Option<u32>,
    require_reported_equals_current: Option<bool>,
    id_key_digests: Option<Vec<String>>,
    author_key_digests: Option<Vec<String>>,
    products: Option<Vec<String>>,
}

fn policy_file_from_json(value: &serde_json::Value) -> Result<PolicyFile, PolicyError> {
    PolicyFile::deserialize(value).map_err(|e| PolicyError::Json(e.to_string()))
}

fn field_err(field: &str, detail: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: field.to_owned(),
        detail: detail.into(),
    }
}

/// Parses hex of exactly `N` bytes (an optional `0x` prefix is accepted).
pub fn parse_hex<const N: usize>(field: &str, s: &str) -> Result<[u8; N], PolicyError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(s).map_err(|e| field_err(field, format!("not hex: {e}")))?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| field_err(field, format!("{} bytes, expected {N}", bytes.len())))
}

fn hex_list<const N: usize>(
    field: &str,
    v: Option<Vec<String>>,
) -> Result<Option<Vec<[u8; N]>>, PolicyError> {
    v.map(|list| list.iter().map(|s| parse_hex::<N>(field, s)).collect())
        .transpose()
}

fn version(field: &str, s: &str) -> Result<(u8, u8), PolicyError> {
    let (a, b) = s
        .split_once('.')
        .ok_or_else(|| field_err(field, "expected MAJOR.MINOR"))?;
    let num = |x: &str| {
        x.parse::<u8>()
            .map_err(|_| field_err(field, format!("{x:?} is not 0..=255")))
    };
    Ok((num(a)?, num(b)?))
}

/// PLATFORM_INFO bit by policy name: `smt`, `tsme`, `ecc`, `rapl_disabled`,
/// `ciphertext_hiding`, `alias_check_complete`, `iommu_write_safe` (bit 6), `tio`, or `bitN`.
pub fn platform_info_bit(name: &str) -> Option<PlatformInfo> {
    Some(match name {
        "smt" => PlatformInfo::SMT_EN,
        "tsme" => PlatformInfo::TSME_EN,
        "ecc" => PlatformInfo::ECC_EN,
        "rapl_disabled" => PlatformInfo::RAPL_DIS,
        "ciphertext_hiding" => PlatformInfo::CIPHERTEXT_HIDING_EN,
        "alias_check_complete" => PlatformInfo::ALIAS_CHECK_COMPLETE,
        "iommu_write_safe" => PlatformInfo::IOMMU_WRITE_SAFE,
        "tio" => PlatformInfo::TIO_EN,
        other => {
            let n: u32 = other.strip_prefix("bit")?.parse().ok()?;
            PlatformInfo::from_bits_retain(1u64.checked_shl(n).filter(|_| n < 64)?)
        }
    })
}

/// The policy names of the bits set in `info` (named ones, then `bitN`).
pub fn platform_info_names(info: PlatformInfo) -> Vec<String> {
    (0..64u32)
        .filter(|n| info.bits() & (1u64 << n) != 0)
        .map(|n| {
            let bit = PlatformInfo::from_bits_retain(1u64 << n);
            [
                "smt",
                "tsme",
                "ecc",
                "rapl_disabled",
                "ciphertext_hiding",
                "alias_check_complete",
                "iommu_write_safe",
                "tio",
            ]
            .into_iter()
            .find(|name| platform_info_bit(name) == Some(bit))
            .map_or_else(|| format!("bit{n}"), str::to_owned)
        })
        .collect()
}

fn bits(field: &str, v: Option<Vec<String>>) -> Result<PlatformInfo, PolicyError> {
    let mut out = PlatformInfo::empty();
    for name in v.unwrap_or_default() {
        out |= platform_info_bit(&name)
            .ok_or_else(|| field_err(field, format!("unknown PLATFORM_INFO bit {name:?}")))?;
    }
    Ok(out)
}

fn product(field: &str, name: &str) -> Result<Product, PolicyError> {
    Product::from_kds_name(name).ok_or_else(|| {
        field_err(
            field,
            format!("unknown product {name:?} (Milan, Genoa, Turin)"),
        )
    })
}

/// A table of minimum TCBs keyed by `default` or a product name: the default, and the
/// per-product entries (an `fmc` minimum only for Turin).
type TcbTables = (Option<MinTcb>, Vec<(Product, MinTcb)>);

fn tcb_tables(
    field: &str,
    tables: Option<BTreeMap<String, MinTcb>>,
) -> Result<TcbTables, PolicyError> {
    let mut default = None;
    let mut per_product = Vec::new();
    for (key, tcb) in tables.unwrap_or_default() {
        if key == "default" {
            default = Some(tcb);
            continue;
        }
        let p = product(field, &key)?;
        if tcb.fmc.is_some() && p != Product::Turin {
            return Err(field_err(
                &format!("{field}.{key}.fmc"),
                "only Turin has an FMC SPL",
            ));
        }
        per_product.push((p, tcb));
    }
    Ok((default, per_product))
}

fn min_for(
    default: Option<MinTcb>,
    per_product: &[(Product, MinTcb)],
    p: Product,
) -> Option<MinTcb> {
    per_product
        .iter()
        .find(|(q, _)| *q == p)
        .map(|(_, t)| *t)
        .or(default)
}

impl Policy {
    /// Parses and validates a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Toml(e.to_string()))?;
        Policy::from_file(f)
    }

    /// Parses and validates a policy given as a JSON object with the same keys and values as
    /// the TOML form (the key broker keeps release policies as JSON).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, PolicyError> {
        let f: PolicyFile = policy_file_from_json(value)?;
        Policy::from_file(f)
    }

    fn from_file(f: PolicyFile) -> Result<Self, PolicyError> {
        let d = Policy::default();
        let (min_tcb_default, min_tcb_product) = tcb_tables("min_tcb", f.min_tcb)?;
        let (min_launch_tcb_default, min_launch_tcb_product) =
            tcb_tables("min_launch_tcb", f.min_launch_tcb)?;
        let signing_keys = match f.signing_keys {
            None => d.signing_keys,
            Some(list) => list
                .iter()
                .map(|k| match k.to_ascii_lowercase().as_str() {
                    "vcek" => Ok(SigningKey::Vcek),
                    "vlek" => Ok(SigningKey::Vlek),
                    other => Err(field_err(
                        "signing_keys",
                        format!("{other:?} is not vcek or vlek"),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        let chip_ids = f
            .chip_ids
            .map(|list| {
                list.iter()
                    .map(|s| {
                        if s.trim().trim_start_matches("0x").len() == 16 {
                            let short = parse_hex::<8>("chip_ids", s)?;
                            let mut full = [0u8; 64];
                            full[..8].copy_from_slice(&short);
                            Ok(full)
                        } else {
                            parse_hex::<64>("chip_ids", s)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Policy {
            allow_debug: f.allow_debug.unwrap_or(d.allow_debug),
            allow_migration_agent: f.allow_migration_agent.unwrap_or(d.allow_migration_agent),
            allow_smt: f.allow_smt.unwrap_or(d.allow_smt),
            min_abi: f.min_abi.map(|s| version("min_abi", &s)).transpose()?,
            min_guest_policy_abi: f
                .min_guest_policy_abi
                .map(|s| version("min_guest_policy_abi", &s))
                .transpose()?,
            vmpl: match f.vmpl {
                Some(v) if v > 3 => return Err(field_err("vmpl", "must be 0..=3")),
                v => v,
            },
            measurements: hex_list::<48>("measurements", f.measurements)?,
            min_tcb_default,
            min_tcb_product,
            min_launch_tcb_default,
            min_launch_tcb_product,
            chip_ids,
            signing_keys,
            vlek_csp_ids: f.vlek_csp_ids,
            family_id: f
                .family_id
                .map(|s| parse_hex("family_id", &s))
                .transpose()?,
            image_id: f.image_id.map(|s| parse_hex("image_id", &s)).transpose()?,
            host_data: f
                .host_data
                .map(|s| parse_hex("host_data", &s))
                .transpose()?,
            report_data: f
                .report_data
                .map(|s| parse_hex("report_data", &s))
                .transpose()?,
            platform_info_required: bits("platform_info_required", f.platform_info_required)?,
            platform_info_forbidden: bits("platform_info_forbidden", f.platform_info_forbidden)?,
            min_guest_svn: f.min_guest_svn,
            min_report_version: match f.min_report_version {
                Some(v) if !(2..=5).contains(&v) => {
                    return Err(field_err("min_report_version", "must be 2..=5"))
                }
                v => v,
            },
            require_reported_equals_current: f
                .require_reported_equals_current
                .unwrap_or(d.require_reported_equals_current),
            id_key_digests: hex_list::<48>("id_key_digests", f.id_key_digests)?,
            author_key_digests: hex_list::<48>("author_key_digests", f.author_key_digests)?,
            products: f
                .products
                .map(|l| l.iter().map(|p| product("products", p)).collect())
                .transpose()?,
        })
    }

    /// The minimum TCB that applies to a product.
    pub fn min_tcb_for(&self, product: Product) -> Option<MinTcb> {
        min_for(self.min_tcb_default, &self.min_tcb_product, product)
    }

    /// The minimum LAUNCH_TCB that applies to a product.
    pub fn min_launch_tcb_for(&self, product: Product) -> Option<MinTcb> {
        min_for(
            self.min_launch_tcb_default,
            &self.min_launch_tcb_product,
            product,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_policy_parses() {
        let p = Policy::from_toml(include_str!("../examples/policy.toml")).unwrap();
        assert!(!p.allow_debug);
        assert!(p.measurements.is_some());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(matches!(
            Policy::from_toml("allow_debugg = true"),
            Err(PolicyError::Toml(_))
        ));
        assert!(matches!(
            Policy::from_toml("measurements = [\"abcd\"]"),
            Err(PolicyError::Field { .. })
        ));
        assert!(Policy::from_toml("vmpl = 4").is_err());
        assert!(Policy::from_toml("[min_tcb.Milan]\nfmc = 1").is_err());
        assert!(Policy::from_toml("[min_tcb.Siena]\nsnp = 1").is_err());
        assert!(Policy::from_toml("[min_tcb.default]\nsnpp = 1").is_err());
        assert!(Policy::from_toml("[min_launch_tcb.Genoa]\nfmc = 1").is_err());
        assert!(Policy::from_toml("[min_launch_tcb.Siena]\nsnp = 1").is_err());
        assert!(Policy::from_toml("require_reported_equals_current = 1").is_err());
        assert!(Policy::from_toml("platform_info_required = [\"smtt\"]").is_err());
        assert!(Policy::from_toml("signing_keys = [\"none\"]").is_err());
        assert!(Policy::from_toml("min_abi = \"1\"").is_err());
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());
    }

    #[test]
    fn platform_info_names_round_trip() {
        let info = PlatformInfo::from_bits_retain(0x65 | 1 << 9);
        let names = platform_info_names(info);
        assert_eq!(
            names,
            [
                "smt",
                "ecc",
                "alias_check_complete",
                "iommu_write_safe",
                "bit9"
            ]
        );
        let mut back = PlatformInfo::empty();
        for n in &names {
            back |= platform_info_bit(n).unwrap();
        }
        assert_eq!(back, info);
    }
}
