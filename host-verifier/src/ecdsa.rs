//! ECDSA P-384 / SHA-384 verification of SNP report signatures (SNP ABI spec, "ECDSA Signature
//! Format"; FIPS 186-5 §6.4.2), on the group arithmetic of RustCrypto's `p384`.
//!
//! The verification equation is the textbook one, computed on public data only (so variable
//! time is fine): `u1 = z·s⁻¹`, `u2 = r·s⁻¹`, `R = u1·G + u2·Q`, accept iff `R ≠ O` and
//! `x(R) mod n = r`. `r` and `s` are range-checked (`1..n`) by `p384::ecdsa::Signature`.
//! What differs from `p384::ecdsa::VerifyingKey` is only how `u1·G + u2·Q` is evaluated:
//!
//! * one-shot ([`verify_prehash`]): interleaved (Straus) radix-16 signed-digit evaluation, one
//!   doubling chain for both products instead of two separate constant-time multiplications;
//! * repeated ([`PreparedKey`]): fixed-base comb tables for `G` (built once per process) and for
//!   the VEK's `Q` (built once per cached VEK), so a verification is 2×49 point additions and no
//!   doublings; a one-shot verification uses the generator's table too once it exists.
//!
//! Both are cross-checked against `p384::ecdsa::VerifyingKey` in this module's tests (random keys,
//! valid and corrupted signatures) and on every real report in the integration tests.

use p384::elliptic_curve::group::Group;
use p384::elliptic_curve::ops::{Invert, Reduce};
use p384::elliptic_curve::point::AffineCoordinates;
use p384::{AffinePoint, ProjectivePoint, Scalar, U384};
use std::sync::OnceLock;

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcdsaError {
    /// R or S is zero or not below the group order.
    #[error("signature R or S is out of range (must be 1..n)")]
    ScalarRange,
    /// The equation does not hold.
    #[error("ECDSA P-384 signature does not verify")]
    Mismatch,
}

/// Comb window width: digits in `[-128, 128)`, 49 windows cover 384 bits plus a carry. A table
/// is 49×128 projective points (about 900 KB) and takes about 6,700 point operations to build.
const W: usize = 8;
const WINDOWS: usize = 384usize.div_ceil(W) + 1;
const HALF: usize = 1 << (W - 1);

/// Fixed-base comb table: `table[i*HALF + j] = (j+1)·2^(W·i)·P`. Kept projective: p384's
/// complete mixed addition saves one multiplication of twelve, not worth 2,080 inversions.
pub(crate) struct Comb {
    table: Vec<ProjectivePoint>,
}

impl Comb {
    pub(crate) fn new(point: &ProjectivePoint) -> Self {
        let mut table = Vec::with_capacity(WINDOWS * HALF);
        let mut base = *point;
        for _ in 0..WINDOWS {
            let mut acc = base;
            table.push(acc);
            for _ in 1..HALF {
                acc += base;
                table.push(acc);
            }
            for _ in 0..W {
                base = base.double();
            }
        }
        Comb { table }
    }

    /// Adds `k·P` to `acc`.
    fn mul_add(&self, k: &Scalar, acc: &mut ProjectivePoint) {
        for (i, digit) in signed_digits::<W, WINDOWS>(k).into_iter().enumerate() {
            if digit == 0 {
                continue;
            }
            let idx = i * HALF + usize::from(digit.unsigned_abs()) - 1;
            if let Some(p) = self.table.get(idx) {
                if digit > 0 {
                    *acc += p;
                } else {
                    *acc += -*p;
                }
            }
        }
    }
}

static GENERATOR_COMB: OnceLock<Comb> = OnceLock::new();

fn generator_comb() -> &'static Comb {
    GENERATOR_COMB.get_or_init(|| Comb::new(&ProjectivePoint::GENERATOR))
}

/// A verifying key with a comb table: for a VEK that signs many reports.
pub struct PreparedKey {
    comb: Comb,
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedKey")
    }
}

impl PreparedKey {
    /// Builds the table for `q` (about 2,400 point operations, once).
    pub fn new(q: &AffinePoint) -> Self {
        PreparedKey {
            comb: Comb::new(&ProjectivePoint::from(*q)),
        }
    }

    /// Verifies `(r, s)` (big-endian) over the SHA-384 digest `z`.
    pub fn verify_prehash(
        &self,
        z: &[u8; 48],
        r: &[u8; 48],
        s: &[u8; 48],
    ) -> Result<(), EcdsaError> {
        let (r, u1, u2) = prepare(z, r, s)?;
        let mut acc = ProjectivePoint::IDENTITY;
        generator_comb().mul_add(&u1, &mut acc);
        self.comb.mul_add(&u2, &mut acc);
        finish(&acc, &r)
    }
}

fn prepare(
    z: &[u8; 48],
    r: &[u8; 48],
    s: &[u8; 48],
) -> Result<(Scalar, Scalar, Scalar), EcdsaError> {
    let sig = p384::ecdsa::Signature::from_scalars(*r, *s).map_err(|_| EcdsaError::ScalarRange)?;
    let (r, s) = sig.split_scalars();
    let z = <Scalar as Reduce<U384>>::reduce_bytes(&(*z).into());
    let s_inv = *s.invert_vartime();
    Ok((*r, z * s_inv, *r * s_inv))
}

fn finish(point: &ProjectivePoint, r: &Scalar) -> Result<(), EcdsaError> {
    if bool::from(point.is_identity()) {
        return Err(EcdsaError::Mismatch);
    }
    let x = point.to_affine().x();
    if <Scalar as Reduce<U384>>::reduce_bytes(&x) == *r {
        Ok(())
    } else {
        Err(EcdsaError::Mismatch)
    }
}

/// One-shot verification of `(r, s)` (big-endian) over the SHA-384 digest `z` with key `q`.
pub fn verify_prehash(
    q: &AffinePoint,
    z: &[u8; 48],
    r: &[u8; 48],
    s: &[u8; 48],
) -> Result<(), EcdsaError> {
    let (r, u1, u2) = prepare(z, r, s)?;
    // Radix-16 signed digits in [-8, 8): tables of 1..=8 multiples.
    let q_proj = ProjectivePoint::from(*q);
    let mut q_table = [q_proj; 8];
    for j in 1..8 {
        let (done, rest) = q_table.split_at_mut(j);
        if let (Some(prev), Some(slot)) = (done.last(), rest.first_mut()) {
            *slot = *prev + q_proj;
        }
    }
    let d2 = signed_digits::<4, 97>(&u2);
    let mut acc = ProjectivePoint::IDENTITY;
    if let Some(g) = GENERATOR_COMB.get() {
        // The generator's comb table exists (a cached VEK was used): u1·G costs 49 additions.
        for b in d2.iter().rev() {
            for _ in 0..4 {
                acc = acc.double();
            }
            if let Some(p) = lookup(&q_table, *b) {
                acc += if *b > 0 { *p } else { -*p };
            }
        }
        g.mul_add(&u1, &mut acc);
        return finish(&acc, &r);
    }
    // Straus: one doubling chain for both products.
    let g_table = small_table_g();
    let d1 = signed_digits::<4, 97>(&u1);
    for (a, b) in d1.iter().zip(d2.iter()).rev() {
        for _ in 0..4 {
            acc = acc.double();
        }
        if let Some(p) = lookup(g_table, *a) {
            acc += if *a > 0 { *p } else { -*p };
        }
        if let Some(p) = lookup(&q_table, *b) {
            acc += if *b > 0 { *p } else { -*p };
        }
    }
    finish(&acc, &r)
}

fn lookup<T>(table: &[T], digit: i8) -> Option<&T> {
    if digit == 0 {
        None
    } else {
        table.get(usize::from(digit.unsigned_abs()) - 1)
    }
}

fn small_table_g() -> &'static [ProjectivePoint; 8] {
    static T: OnceLock<[ProjectivePoint; 8]> = OnceLock::new();
    T.get_or_init(|| {
        let g = ProjectivePoint::GENERATOR;
        let mut p = [g; 8];
        for j in 1..8 {
            let (done, rest) = p.split_at_mut(j);
            if let (Some(prev), Some(slot)) = (done.last(), rest.first_mut()) {
                *slot = *prev + g;
            }
        }
        p
    })
}

/// The scalar in radix 2^B with digits in `[-2^(B-1), 2^(B-1))`, least significant first;
/// `N` windows must cover 384 bits plus one carry window.
fn signed_digits<const B: usize, const N: usize>(k: &Scalar) -> [i8; N] {
    let be = k.to_bytes();
    let mut le = [0u8; 49];
    for (dst, src) in le.iter_mut().zip(be.iter().rev()) {
        *dst = *src;
    }
    let mut out = [0i8; N];
    let mut carry: i16 = 0;
    let full: i16 = 1 << B;
    let half: i16 = 1 << (B - 1);
    for (i, slot) in out.iter_mut().enumerate() {
        let bit = i * B;
        let byte = bit / 8;
        let lo = u16::from(le.get(byte).copied().unwrap_or(0));
        let hi = u16::from(le.get(byte + 1).copied().unwrap_or(0));
        let raw = ((lo | (hi << 8)) >> (bit % 8)) & ((1u16 << B) - 1);
        let mut d = raw as i16 + carry;
        if d >= half {
            d -= full;
            carry = 1;
        } else {
            carry = 0;
        }
        *slot = d as i8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

    fn key(seed: u64) -> SigningKey {
        let mut bytes = [0u8; 48];
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in bytes.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        bytes[0] &= 0x7F;
        SigningKey::from_bytes(&bytes.into()).unwrap()
    }

    fn split(sig: &Signature) -> ([u8; 48], [u8; 48]) {
        let b = sig.to_bytes();
        (b[..48].try_into().unwrap(), b[48..].try_into().unwrap())
    }

    #[test]
    fn digits_reconstruct_the_scalar() {
        for seed in 0..50u64 {
            let k = *key(seed).as_nonzero_scalar().as_ref();
            for_digits::<4, 97>(&k);
            for_digits::<6, 65>(&k);
            for_digits::<8, 49>(&k);
        }
        for_digits::<6, 65>(&-Scalar::ONE);
        for_digits::<8, 49>(&-Scalar::ONE);
        for_digits::<4, 97>(&-Scalar::ONE);
        for_digits::<6, 65>(&Scalar::ZERO);
    }

    fn for_digits<const B: usize, const N: usize>(k: &Scalar) {
        let d = signed_digits::<B, N>(k);
        let mut acc = Scalar::ZERO;
        let radix = Scalar::from(1u64 << B);
        for digit in d.iter().rev() {
            acc *= radix;
            let v = Scalar::from(u64::from(digit.unsigned_abs()));
            acc = if *digit < 0 { acc - v } else { acc + v };
            let d16 = i16::from(*digit);
            assert!(d16 >= -(1i16 << (B - 1)) && d16 < (1i16 << (B - 1)));
        }
        assert_eq!(acc, *k);
    }

    #[test]
    fn agrees_with_p384_on_valid_and_corrupted_signatures() {
        for seed in 1..25u64 {
            let sk = key(seed);
            let vk = VerifyingKey::from(&sk);
            let q = *vk.as_affine();
            let prepared = PreparedKey::new(&q);
            let mut z = [0u8; 48];
            z[0] = seed as u8;
            z[47] = 0xA5;
            let sig: Signature = sk.sign_prehash(&z).unwrap();
            let (r, s) = split(&sig);
            assert!(vk.verify_prehash(&z, &sig).is_ok());
            assert_eq!(verify_prehash(&q, &z, &r, &s), Ok(()));
            assert_eq!(prepared.verify_prehash(&z, &r, &s), Ok(()));
            // Any corrupted input is refused by all three.
            let mut z2 = z;
            z2[(seed % 48) as usize] ^= 1 << (seed % 8);
            assert!(vk.verify_prehash(&z2, &sig).is_err());
            assert!(verify_prehash(&q, &z2, &r, &s).is_err());
            assert!(prepared.verify_prehash(&z2, &r, &s).is_err());
            let mut r2 = r;
            r2[47] ^= 2;
            assert!(verify_prehash(&q, &z, &r2, &s).is_err());
            assert!(prepared.verify_prehash(&z, &r2, &s).is_err());
            let mut s2 = s;
            s2[10] ^= 0x80;
            assert!(verify_prehash(&q, &z, &r, &s2).is_err());
            assert!(prepared.verify_prehash(&z, &r, &s2).is_err());
            // Swapped components, wrong key.
            assert!(verify_prehash(&q, &z, &s, &r).is_err());
            let other = *VerifyingKey::from(&key(seed + 1000)).as_affine();
            assert!(verify_prehash(&other, &z, &r, &s).is_err());
            assert!(PreparedKey::new(&other).verify_prehash(&z, &r, &s).is_err());
            // -s also verifies in textbook ECDSA (no low-s rule); both agree with p384.
            let neg_s = (-*sig.s().as_ref()).to_bytes();
            let neg: [u8; 48] = neg_s.into();
            let p384_neg = Signature::from_scalars(r, neg).unwrap();
            assert_eq!(
                vk.verify_prehash(&z, &p384_neg).is_ok(),
                verify_prehash(&q, &z, &r, &neg).is_ok()
            );
        }
    }

    #[test]
    fn one_shot_paths_agree() {
        // Straus before the generator table exists, comb+window after; both match p384.
        let sk = key(77);
        let vk = VerifyingKey::from(&sk);
        let q = *vk.as_affine();
        let z = [9u8; 48];
        let sig: Signature = sk.sign_prehash(&z).unwrap();
        let (r, s) = split(&sig);
        assert_eq!(verify_prehash(&q, &z, &r, &s), Ok(()));
        let _ = generator_comb();
        assert_eq!(verify_prehash(&q, &z, &r, &s), Ok(()));
        let mut z2 = z;
        z2[3] ^= 4;
        assert_eq!(verify_prehash(&q, &z2, &r, &s), Err(EcdsaError::Mismatch));
    }

    #[test]
    fn range_checks() {
        let q = *VerifyingKey::from(&key(3)).as_affine();
        let z = [1u8; 48];
        assert_eq!(
            verify_prehash(&q, &z, &[0; 48], &[1; 48]),
            Err(EcdsaError::ScalarRange)
        );
        assert_eq!(
            verify_prehash(&q, &z, &[1; 48], &[0xFF; 48]),
            Err(EcdsaError::ScalarRange)
        );
    }
}
