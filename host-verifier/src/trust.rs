//! The trust anchors: AMD's ARK, ASK and ASVK for Milan, Genoa and Turin, pinned in the binary
//! (`certs/*.pem`, the certificates AMD's KDS serves at `/vcek/v1/<Product>/cert_chain` and
//! `/vlek/v1/<Product>/cert_chain`). Each link (ARK self-signature, ARK→ASK, ARK→ASVK) is
//! verified once per trust store, on first use, and the result kept.

use crate::check::{CertRole, Failure};
use crate::x509::{CertDecodeError, ParsedCert, RsaPssKey};
use std::sync::{Arc, OnceLock};
use svsm_abi::snp::Product;

/// One product's pinned PEMs: (product, ARK, ASK, ASVK).
pub type PinnedPems = (Product, &'static [u8], &'static [u8], &'static [u8]);

/// The pinned PEMs of every product.
pub const PINNED_PEMS: [PinnedPems; 3] = [
    (
        Product::Milan,
        include_bytes!("../certs/ark-milan.pem"),
        include_bytes!("../certs/ask-milan.pem"),
        include_bytes!("../certs/asvk-milan.pem"),
    ),
    (
        Product::Genoa,
        include_bytes!("../certs/ark-genoa.pem"),
        include_bytes!("../certs/ask-genoa.pem"),
        include_bytes!("../certs/asvk-genoa.pem"),
    ),
    (
        Product::Turin,
        include_bytes!("../certs/ark-turin.pem"),
        include_bytes!("../certs/ask-turin.pem"),
        include_bytes!("../certs/asvk-turin.pem"),
    ),
];

/// A trust store could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A CA certificate does not decode.
    #[error("{product:?} {role} certificate: {source}")]
    Decode {
        /// Product.
        product: Product,
        /// Which certificate.
        role: CertRole,
        /// Why.
        source: CertDecodeError,
    },
    /// A CA certificate's key is not RSA.
    #[error("{product:?} {role} key: {reason}")]
    Key {
        /// Product.
        product: Product,
        /// Which certificate.
        role: CertRole,
        /// Why.
        reason: Failure,
    },
}

/// One pinned CA certificate with its RSA key.
#[derive(Debug)]
pub(crate) struct CaCert {
    pub cert: ParsedCert,
    pub key: RsaPssKey,
    pub subject_der: Vec<u8>,
}

impl CaCert {
    fn load(product: Product, role: CertRole, bytes: &[u8]) -> Result<Self, TrustError> {
        let der = crate::vek::pem_or_der(bytes).map_err(|source| TrustError::Decode {
            product,
            role,
            source,
        })?;
        let cert = ParsedCert::from_der(&der).map_err(|source| TrustError::Decode {
            product,
            role,
            source,
        })?;
        let key = RsaPssKey::from_cert(&cert, role).map_err(|reason| TrustError::Key {
            product,
            role,
            reason,
        })?;
        let subject_der = cert.subject_der();
        Ok(CaCert {
            cert,
            key,
            subject_der,
        })
    }
}

/// The ARK, ASK and ASVK of one product, and the cached results of their links.
#[derive(Debug)]
pub struct ProductAnchors {
    pub(crate) product: Product,
    pub(crate) ark: CaCert,
    pub(crate) ask: CaCert,
    pub(crate) asvk: CaCert,
    ark_ok: OnceLock<Result<(), Failure>>,
    ask_ok: OnceLock<Result<(), Failure>>,
    asvk_ok: OnceLock<Result<(), Failure>>,
}

impl ProductAnchors {
    /// Loads a product's anchors from PEM or DER bytes (links are checked on first use).
    pub fn load(product: Product, ark: &[u8], ask: &[u8], asvk: &[u8]) -> Result<Self, TrustError> {
        Ok(ProductAnchors {
            product,
            ark: CaCert::load(product, CertRole::Ark, ark)?,
            ask: CaCert::load(product, CertRole::Ask, ask)?,
            asvk: CaCert::load(product, CertRole::Asvk, asvk)?,
            ark_ok: OnceLock::new(),
            ask_ok: OnceLock::new(),
            asvk_ok: OnceLock::new(),
        })
    }

    /// The product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The ARK is self-issued, self-signed (RSA-PSS SHA-384) and a CA.
    pub fn ark_status(&self) -> &Result<(), Failure> {
        self.ark_ok.get_or_init(|| {
            let ark = &self.ark;
            if ark.cert.issuer_der() != ark.subject_der {
                return Err(Failure::IssuerName {
                    role: CertRole::Ark,
                    expected: ark.cert.subject_cn.clone(),
                    found: ark.cert.issuer_cn.clone(),
                });
            }
            ark.key
                .verify_cert(&ark.cert, CertRole::Ark, CertRole::Ark)?;
            ark.cert.check_ca(CertRole::Ark)
        })
    }

    /// The ASK or ASVK is issued and signed by the ARK and is a CA.
    pub fn intermediate_status(&self, role: CertRole) -> &Result<(), Failure> {
        let (slot, ca) = match role {
            CertRole::Asvk => (&self.asvk_ok, &self.asvk),
            _ => (&self.ask_ok, &self.ask),
        };
        slot.get_or_init(|| {
            if ca.cert.issuer_der() != self.ark.subject_der {
                return Err(Failure::IssuerName {
                    role,
                    expected: self.ark.cert.subject_cn.clone(),
                    found: ca.cert.issuer_cn.clone(),
                });
            }
            self.ark.key.verify_cert(&ca.cert, role, CertRole::Ark)?;
            ca.cert.check_ca(role)
        })
    }

    /// True when the ARK and the `role` link have been verified already.
    pub fn links_ready(&self, role: CertRole) -> bool {
        let slot = match role {
            CertRole::Asvk => &self.asvk_ok,
            _ => &self.ask_ok,
        };
        self.ark_ok.get().is_some() && slot.get().is_some()
    }

    pub(crate) fn intermediate(&self, role: CertRole) -> &CaCert {
        match role {
            CertRole::Asvk => &self.asvk,
            _ => &self.ask,
        }
    }
}

/// The set of trusted products.
#[derive(Debug)]
pub struct TrustStore {
    products: Vec<ProductAnchors>,
}

impl TrustStore {
    /// A trust store of the given anchors.
    pub fn new(products: Vec<ProductAnchors>) -> Self {
        TrustStore { products }
    }

    /// Builds a fresh store from the certificates pinned in this binary.
    pub fn load_pinned() -> Result<Self, TrustError> {
        PINNED_PEMS
            .iter()
            .map(|(p, ark, ask, asvk)| ProductAnchors::load(*p, ark, ask, asvk))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustStore::new)
    }

    /// A store of custom roots (for example the simulator's TEST chain) for every product:
    /// the report's CPUID picks the product. Without an ASVK the ASK fills its slot, and
    /// VLEK-signed reports are then refused by the chain check.
    pub fn custom(ark: &[u8], ask: &[u8], asvk: Option<&[u8]>) -> Result<Self, TrustError> {
        let asvk = asvk.unwrap_or(ask);
        [Product::Milan, Product::Genoa, Product::Turin]
            .into_iter()
            .map(|p| ProductAnchors::load(p, ark, ask, asvk))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustStore::new)
    }

    /// The process-wide store of pinned AMD certificates (loaded once).
    pub fn pinned() -> Result<Arc<TrustStore>, TrustError> {
        static PINNED: OnceLock<Result<Arc<TrustStore>, TrustError>> = OnceLock::new();
        PINNED
            .get_or_init(|| TrustStore::load_pinned().map(Arc::new))
            .clone()
    }

    /// The anchors of a product.
    pub fn product(&self, product: Product) -> Option<&ProductAnchors> {
        self.products.iter().find(|a| a.product == product)
    }

    /// True when `der` is byte-for-byte one of the store's ARK, ASK or ASVK certificates.
    pub fn contains_der(&self, der: &[u8]) -> bool {
        self.products
            .iter()
            .any(|a| [&a.ark, &a.ask, &a.asvk].iter().any(|c| c.cert.der == der))
    }

    /// Every product, in store order.
    pub fn products(&self) -> impl Iterator<Item = &ProductAnchors> {
        self.products.iter()
    }
}
