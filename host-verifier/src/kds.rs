//! AMD Key Distribution Service URLs (VCEK spec, AMD pub. 57230, "KDS Interface"). The verifier
//! never fetches anything; it prints these so an operator can.

use svsm_abi::snp::{Product, TcbLayout, TcbVersion};

/// The KDS host.
pub const KDS_BASE: &str = "https://kdsintf.amd.com";

/// The URL of the VCEK for a chip at a TCB. Milan/Genoa use the 64-byte chip id and
/// bl/tee/snp/ucode SPLs; Turin uses the first 8 bytes of the chip id and adds fmcSPL first.
/// SPLs are decimal, zero-padded to two digits (as `snpguest` prints them; KDS accepts both).
pub fn vcek_url(product: Product, chip_id: &[u8; 64], reported_tcb: TcbVersion) -> String {
    let c = reported_tcb.decode(product.tcb_layout());
    let name = product.kds_name();
    match product.tcb_layout() {
        TcbLayout::Turin => format!(
            "{KDS_BASE}/vcek/v1/{name}/{}?fmcSPL={:02}&blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            hex::encode(chip_id.get(..8).unwrap_or(&[])),
            c.fmc.unwrap_or(0),
            c.bootloader,
            c.tee,
            c.snp,
            c.microcode
        ),
        TcbLayout::MilanGenoa => format!(
            "{KDS_BASE}/vcek/v1/{name}/{}?blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            hex::encode(chip_id),
            c.bootloader,
            c.tee,
            c.snp,
            c.microcode
        ),
    }
}

/// `/vcek/v1/<Product>/cert_chain` (ASK then ARK) or `/vlek/v1/<Product>/cert_chain`.
pub fn cert_chain_url(product: Product, vlek: bool) -> String {
    format!(
        "{KDS_BASE}/{}/v1/{}/cert_chain",
        if vlek { "vlek" } else { "vcek" },
        product.kds_name()
    )
}

/// `/vcek/v1/<Product>/crl` or `/vlek/v1/<Product>/crl` (DER, signed by the ARK).
pub fn crl_url(product: Product, vlek: bool) -> String {
    format!(
        "{KDS_BASE}/{}/v1/{}/crl",
        if vlek { "vlek" } else { "vcek" },
        product.kds_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turin_url_uses_8_byte_chip_id_and_fmc() {
        let mut chip = [0u8; 64];
        chip[..8].copy_from_slice(&hex::decode("59790fb1c39f35c1").unwrap());
        assert_eq!(
            vcek_url(Product::Turin, &chip, TcbVersion::from_raw(0x5100_0000_0401_0101)),
            "https://kdsintf.amd.com/vcek/v1/Turin/59790fb1c39f35c1?fmcSPL=01&blSPL=01&teeSPL=01&snpSPL=04&ucodeSPL=81"
        );
    }

    #[test]
    fn milan_url_uses_64_byte_chip_id() {
        let chip = [0xABu8; 64];
        let url = vcek_url(
            Product::Milan,
            &chip,
            TcbVersion::from_raw(0xDB18_0000_0000_0004),
        );
        assert_eq!(
            url,
            format!(
                "https://kdsintf.amd.com/vcek/v1/Milan/{}?blSPL=04&teeSPL=00&snpSPL=24&ucodeSPL=219",
                "ab".repeat(64)
            )
        );
        assert_eq!(
            cert_chain_url(Product::Genoa, true),
            "https://kdsintf.amd.com/vlek/v1/Genoa/cert_chain"
        );
        assert_eq!(
            crl_url(Product::Milan, false),
            "https://kdsintf.amd.com/vcek/v1/Milan/crl"
        );
    }
}
