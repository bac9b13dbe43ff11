//! The guest-message crypto (SNP ABI spec "Guest Messages"): AES-256-GCM under a VMPCK, the
//! IV taken from MSG_SEQNO, the AAD the header's bytes 0x30..0x60, the 16-byte tag in AUTHTAG.
//! [`seal`] builds a request in private memory; [`open`] checks a response header against the
//! request it answers and then authenticates and decrypts the payload in place. Sequence-number
//! bookkeeping and what to do on failure belong to [`crate::messenger`].

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use svsm_abi::snp::guest_msg::{
    EnvelopeError, ExpectedResponse, GuestMessage, MessageHeader, MAX_MSG_PAYLOAD,
};
use zeroize::Zeroizing;

/// A VMPCK: a 32-byte AES-256-GCM key. Wiped on drop; never printed.
pub struct VmpckKey(Zeroizing<[u8; 32]>);

impl VmpckKey {
    /// Wraps a key. An all-zero key is absent (the secrets page marks a disabled VMPCK so).
    pub fn new(key: &[u8; 32]) -> Option<Self> {
        key.iter()
            .any(|&b| b != 0)
            .then(|| VmpckKey(Zeroizing::new(*key)))
    }

    fn cipher(&self) -> Result<Aes256Gcm, CryptoError> {
        Aes256Gcm::new_from_slice(self.0.as_slice()).map_err(|_| CryptoError::Key)
    }
}

impl core::fmt::Debug for VmpckKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VmpckKey(..)")
    }
}

/// Why sealing or opening a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The payload does not fit a message page.
    #[error("guest message payload of {0} bytes exceeds {MAX_MSG_PAYLOAD}")]
    PayloadTooLarge(usize),
    /// The key could not be loaded.
    #[error("the VMPCK could not be loaded as an AES-256 key")]
    Key,
    /// AES-GCM refused to encrypt.
    #[error("AES-GCM encryption failed")]
    Encrypt,
    /// The header does not answer the request.
    #[error("response header: {0}")]
    Header(#[from] EnvelopeError),
    /// The tag did not verify: the header or payload was altered, or another key was used.
    #[error("response failed authentication")]
    Authentication,
}

/// Encrypts `payload` into `out` under `key` with `header` (MSG_SIZE is set from the payload).
/// The unused rest of the payload area is zeroed.
pub fn seal(
    key: &VmpckKey,
    mut header: MessageHeader,
    payload: &[u8],
    out: &mut GuestMessage,
) -> Result<(), CryptoError> {
    let len = payload.len();
    let size = u16::try_from(len)
        .ok()
        .filter(|_| len <= MAX_MSG_PAYLOAD)
        .ok_or(CryptoError::PayloadTooLarge(len))?;
    header.auth.msg_size = size.into();
    header.authtag = [0; 32];
    out.payload.fill(0);
    let (body, _) = out.payload.split_at_mut(len);
    body.copy_from_slice(payload);
    let tag = key
        .cipher()?
        .encrypt_in_place_detached(&Nonce::from(header.iv()), header.aad(), body)
        .map_err(|_| CryptoError::Encrypt)?;
    header.set_tag(&tag.into());
    out.header = header;
    Ok(())
}

/// Checks `msg`'s header against `expected`, then authenticates and decrypts its payload in
/// place; returns the plaintext.
pub fn open<'a>(
    key: &VmpckKey,
    msg: &'a mut GuestMessage,
    expected: &ExpectedResponse,
) -> Result<&'a [u8], CryptoError> {
    msg.header.check_response(expected)?;
    let header = msg.header;
    let len = header.payload_len();
    let body = msg
        .payload
        .get_mut(..len)
        .ok_or(EnvelopeError::PayloadTooLarge(header.auth.msg_size.get()))?;
    key.cipher()?
        .decrypt_in_place_detached(
            &Nonce::from(header.iv()),
            header.aad(),
            body,
            &Tag::from(header.tag()),
        )
        .map_err(|_| CryptoError::Authentication)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use svsm_abi::snp::msg::{KeySelect, ReportRequest};
    use zerocopy::{FromBytes, FromZeros, IntoBytes};

    fn kat_key() -> VmpckKey {
        VmpckKey::new(&core::array::from_fn(|i| i as u8)).unwrap()
    }

    fn sha256(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }

    fn hex(s: &str) -> std::vec::Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn known_answer_vector() {
        // Known answer (AES-256-GCM per AMD 56860 "SNP Guest Message" envelope, computed
        // independently): key 00..1f, seqno 1, MSG_REPORT_REQ with REPORT_DATA 64×0xAA,
        // VMPL 0, KEY_SEL 0.
        let req = ReportRequest::new([0xAA; 64], 0, KeySelect::Default);
        let mut msg = GuestMessage::new_zeroed();
        seal(
            &kat_key(),
            MessageHeader::new(1, 5, 1, 0, 0),
            req.as_bytes(),
            &mut msg,
        )
        .unwrap();
        assert_eq!(
            msg.header.tag().to_vec(),
            hex("582d641d7dd0818c2e4338551ced2a6c")
        );
        assert_eq!(
            msg.payload[..16].to_vec(),
            hex("488628950e0546ade0aeaf69966b2261")
        );
        assert_eq!(
            sha256(&msg.payload[..0x60]).to_vec(),
            hex("9ce7961e02683a69f73d8f078e7d670e3cdd0d55161b8a763607b0f194e0b0fc")
        );
        assert_eq!(msg.header.auth.msg_size.get(), 0x60);
        assert!(msg.payload[0x60..].iter().all(|&b| b == 0));
    }

    fn response(seqno: u64, payload: &[u8]) -> GuestMessage {
        let mut msg = GuestMessage::new_zeroed();
        seal(
            &kat_key(),
            MessageHeader::new(seqno, 6, 1, 0, 0),
            payload,
            &mut msg,
        )
        .unwrap();
        msg
    }

    const EXPECTED: ExpectedResponse = ExpectedResponse {
        seqno: 2,
        msg_type: 6,
        msg_version: 1,
        vmpck: 0,
        msg_size: 8,
    };

    #[test]
    fn open_round_trip_and_every_tampered_byte() {
        let good = response(2, b"response");
        let mut m = good.clone();
        assert_eq!(open(&kat_key(), &mut m, &EXPECTED).unwrap(), b"response");
        // Any change in the tag, the AAD or the ciphertext fails authentication (or the
        // header checks, which run first).
        let bytes = good.as_bytes();
        for i in (0..16).chain(0x30..0x60).chain(0x60..0x68) {
            let mut t = bytes.to_vec();
            t[i] ^= 0x01;
            let mut m = GuestMessage::read_from_bytes(&t).unwrap();
            assert!(open(&kat_key(), &mut m, &EXPECTED).is_err(), "byte {i:#x}");
        }
        // The reserved bytes outside the AAD and the payload area past MSG_SIZE are not
        // authenticated and not checked.
        for i in (0x28..0x30).chain(0x68..0x70) {
            let mut t = bytes.to_vec();
            t[i] ^= 0x01;
            let mut m = GuestMessage::read_from_bytes(&t).unwrap();
            assert!(open(&kat_key(), &mut m, &EXPECTED).is_ok(), "byte {i:#x}");
        }
        // Another key fails.
        let mut m = good.clone();
        let other = VmpckKey::new(&[9; 32]).unwrap();
        assert_eq!(
            open(&other, &mut m, &EXPECTED),
            Err(CryptoError::Authentication)
        );
        // A replayed response (older sequence number) fails the header check.
        let mut m = response(0x10, b"response");
        assert_eq!(
            open(&kat_key(), &mut m, &EXPECTED),
            Err(CryptoError::Header(EnvelopeError::Sequence {
                actual: 0x10,
                expected: 2
            }))
        );
    }

    #[test]
    fn limits() {
        assert!(VmpckKey::new(&[0; 32]).is_none());
        let mut msg = GuestMessage::new_zeroed();
        let big = std::vec![0u8; MAX_MSG_PAYLOAD + 1];
        assert_eq!(
            seal(
                &kat_key(),
                MessageHeader::new(1, 5, 1, 0, 0),
                &big,
                &mut msg
            ),
            Err(CryptoError::PayloadTooLarge(MAX_MSG_PAYLOAD + 1))
        );
        seal(
            &kat_key(),
            MessageHeader::new(1, 5, 1, 0, 0),
            &big[..MAX_MSG_PAYLOAD],
            &mut msg,
        )
        .unwrap();
        assert_eq!(std::format!("{:?}", kat_key()), "VmpckKey(..)");
    }
}
