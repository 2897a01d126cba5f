//! Exact sums of doubles, so that every volume, delta and notional sum is the same however the
//! trades were grouped and merged (serial or parallel plans, rollups, both storage paths, a
//! distributed engine).
//!
//! Floating-point addition is not associative: adding the same sizes in another order changes
//! the last digits (0.1 + 0.2 + 0.3 ≠ 0.3 + 0.2 + 0.1). An [`ExactSum`] is a 192-bit two's
//! complement fixed-point number in units of 2^−112 ([`FRACTION_BITS`]), so adding is integer
//! addition: exact, associative and commutative. Reading one gives the **correctly rounded**
//! double of the exact value (round to nearest, ties to even), which depends only on the
//! value, never on how it was reached.
//!
//! # Scale and range
//!
//! * Every double of magnitude at least 2^−60 (≈ 8.7e−19) is held exactly: its lowest bit is at
//!   least 2^−112. Smaller magnitudes (no real size or notional) are rounded to the nearest
//!   multiple of 2^−112, ties to even; that rounding depends on the term alone, so sums stay
//!   independent of order.
//! * Magnitudes must stay below 2^79 ≈ 6.0e23 ([`MAX_MAGNITUDE`]), about a billion times the
//!   yearly notional traded on any venue. Conversions and additions beyond it return
//!   [`SumOverflow`] instead of wrapping or losing bits.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Bits after the binary point: one unit is 2^−112.
pub const FRACTION_BITS: u32 = 112;

/// Magnitudes must stay below this (2^79).
pub const MAX_MAGNITUDE: f64 = 604_462_909_807_314_587_353_088.0;

/// A sum beyond the exact range ([`MAX_MAGNITUDE`]), or a term that is not a finite number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SumOverflow;

impl fmt::Display for SumOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exact sums hold finite magnitudes below 2^79 (about 6.0e23)")
    }
}

impl std::error::Error for SumOverflow {}

/// An exact fixed-point sum; see the module documentation.
///
/// Stored as three 64-bit words, least significant first, the top word signed, so the type is
/// 24 bytes and `Copy`. Equality and order are those of the values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExactSum {
    lo: u64,
    mid: u64,
    hi: i64,
}

/// 2^e, for exponents of normal doubles.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

impl ExactSum {
    pub const ZERO: ExactSum = ExactSum { lo: 0, mid: 0, hi: 0 };

    /// The exact value of `x` (rounded to 2^−112 when `|x| < 2^−60`); `Err` when `x` is not
    /// finite or `|x| >= 2^79`.
    #[inline]
    pub fn from_f64(x: f64) -> Result<ExactSum, SumOverflow> {
        let bits = x.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        // A normal double of 2^-60 <= |x| < 2^79 (every real size and notional) is its 53-bit
        // mantissa shifted left by 0 to 138 bits: into the low two words up to 75, else into
        // the high two.
        let shift = biased - 1075 + FRACTION_BITS as i32;
        if (0..=138).contains(&shift) {
            let m = u128::from(fraction | (1 << 52));
            let s = if shift <= 75 {
                let v = m << shift;
                ExactSum { lo: v as u64, mid: (v >> 64) as u64, hi: 0 }
            } else {
                let v = m << (shift - 64);
                ExactSum { lo: 0, mid: v as u64, hi: (v >> 64) as i64 }
            };
            return Ok(if x.is_sign_negative() { s.neg_unchecked() } else { s });
        }
        if biased == 0x7ff {
            return Err(SumOverflow);
        }
        // x = m × 2^e with m an integer of at most 53 bits.
        let (m, e) = if biased == 0 { (fraction, -1074) } else { (fraction | (1 << 52), biased - 1075) };
        if m == 0 {
            return Ok(ExactSum::ZERO);
        }
        let shift = e + FRACTION_BITS as i32;
        let magnitude = if shift >= 0 {
            let shift = shift as u32;
            // m < 2^53 shifted must stay below 2^191 (the sign bit).
            if 64 - m.leading_zeros() + shift > 191 {
                return Err(SumOverflow);
            }
            U192::from_u64(m).shl(shift)
        } else {
            let r = (-shift) as u32;
            if r > 54 {
                U192::ZERO
            } else {
                // Round m / 2^r to nearest, ties to even.
                let (q, rem) = (m >> r, m & ((1u64 << r) - 1));
                let half = 1u64 << (r - 1);
                let up = rem > half || (rem == half && q & 1 == 1);
                U192::from_u64(q + u64::from(up))
            }
        };
        let s = ExactSum::from_magnitude(magnitude);
        Ok(if x.is_sign_negative() { s.neg_unchecked() } else { s })
    }

    /// The correctly rounded double (round to nearest, ties to even) of the exact value.
    #[inline]
    pub fn to_f64(self) -> f64 {
        let negative = self.hi < 0;
        let U192([lo, mid, hi]) = if negative { self.neg_unchecked().magnitude() } else { self.magnitude() };
        // The top 63 bits of the magnitude and the power of two they count in, with every bit
        // below them folded into the lowest one (a sticky bit): converting those bits rounds to
        // nearest, ties to even, as the whole number would, since the round bit is far above the
        // sticky one. 63 bits, so the conversion is of a non-negative i64 (one instruction);
        // scaling by a power of two is exact (nothing here is subnormal). `w` is the magnitude's
        // top 128 bits shifted up to bit 127; `below` says whether a lower word is nonzero.
        let top63 =
            |w: u128, below: bool| (w >> 65) as u64 | u64::from(w as u64 != 0 || (w >> 64) & 1 != 0 || below);
        let (top, scale) = if hi != 0 {
            let lz = hi.leading_zeros();
            (top63(((u128::from(hi) << 64) | u128::from(mid)) << lz, lo != 0), 129 - lz as i32)
        } else if mid != 0 {
            let lz = mid.leading_zeros();
            (top63(((u128::from(mid) << 64) | u128::from(lo)) << lz, false), 65 - lz as i32)
        } else if lo >> 63 != 0 {
            (lo >> 1 | lo & 1, 1)
        } else {
            (lo, 0)
        };
        let value = top as i64 as f64 * pow2(scale - FRACTION_BITS as i32);
        if negative {
            -value
        } else {
            value
        }
    }

    /// `self + other`, exactly; `Err` beyond the range.
    #[inline]
    pub fn checked_add(self, o: ExactSum) -> Result<ExactSum, SumOverflow> {
        let (sum, overflow) = self.overflowing_add(o);
        // The one 192-bit value outside the range is −2^191.
        if overflow || (sum.hi == i64::MIN && sum.mid == 0 && sum.lo == 0) {
            return Err(SumOverflow);
        }
        Ok(sum)
    }

    /// `self − other`, exactly; `Err` beyond the range.
    pub fn checked_sub(self, o: ExactSum) -> Result<ExactSum, SumOverflow> {
        self.checked_add(o.checked_neg()?)
    }

    /// `−self`; `Err` for the one value whose negation is out of range.
    pub fn checked_neg(self) -> Result<ExactSum, SumOverflow> {
        if self.hi == i64::MIN && self.mid == 0 && self.lo == 0 {
            return Err(SumOverflow);
        }
        Ok(self.neg_unchecked())
    }

    /// Adds `o`, where the caller has already checked that the result is in range (a larger
    /// sum of the same terms was added with [`ExactSum::checked_add`]).
    #[inline]
    pub fn add_in_range(&mut self, o: ExactSum) {
        let (sum, overflow) = self.overflowing_add(o);
        debug_assert!(!overflow, "exact sum out of range");
        *self = sum;
    }

    /// `self − o` where the result is known to be in range (both terms are parts of one sum).
    #[inline]
    pub fn sub_in_range(self, o: ExactSum) -> ExactSum {
        let (sum, overflow) = self.overflowing_add(o.neg_unchecked());
        debug_assert!(!overflow, "exact difference out of range");
        sum
    }

    pub fn is_zero(self) -> bool {
        self == ExactSum::ZERO
    }

    #[inline]
    pub fn is_negative(self) -> bool {
        self.hi < 0
    }

    /// True when the double [`ExactSum::to_f64`] gives is the exact value.
    pub fn is_exact_f64(self) -> bool {
        ExactSum::from_f64(self.to_f64()) == Ok(self)
    }

    #[inline]
    fn overflowing_add(self, o: ExactSum) -> (ExactSum, bool) {
        let (lo, c0) = self.lo.overflowing_add(o.lo);
        let (mid, c1) = self.mid.overflowing_add(o.mid);
        let (mid, c2) = mid.overflowing_add(u64::from(c0));
        let (hi, o1) = self.hi.overflowing_add(o.hi);
        let (hi, o2) = hi.overflowing_add(i64::from(c1 | c2));
        // The carry is 0 or 1, so the sum overflowed iff exactly one step did.
        (ExactSum { lo, mid, hi }, o1 != o2)
    }

    #[inline]
    fn neg_unchecked(self) -> ExactSum {
        let (lo, c0) = (!self.lo).overflowing_add(1);
        let (mid, c1) = (!self.mid).overflowing_add(u64::from(c0));
        let hi = (!self.hi).wrapping_add(i64::from(c1));
        ExactSum { lo, mid, hi }
    }

    /// The words of a non-negative value.
    fn magnitude(self) -> U192 {
        U192([self.lo, self.mid, self.hi as u64])
    }

    fn from_magnitude(m: U192) -> ExactSum {
        ExactSum { lo: m.0[0], mid: m.0[1], hi: m.0[2] as i64 }
    }

    // -----------------------------------------------------------------------------------------
    // Binary form
    // -----------------------------------------------------------------------------------------

    /// Appends the compact binary form: a byte holding the sign (bit 7) and the number `n` of
    /// significant bytes of the magnitude (0 for zero); when `n > 0`, the position of the lowest
    /// significant byte, then those `n` bytes little-endian. Sums of real sizes have most of
    /// their 24 bytes zero (an integer volume has no fraction bits, a decimal size none below
    /// 2^−80 or so), so a sum usually takes 6 to 12 bytes. The form is canonical: one value,
    /// one encoding, which [`ExactSum::read`] insists on.
    pub fn write(self, out: &mut Vec<u8>) {
        let negative = self.is_negative();
        let m = if negative { self.neg_unchecked().magnitude() } else { self.magnitude() };
        let bytes = m.to_le_bytes();
        let Some(first) = bytes.iter().position(|&b| b != 0) else {
            out.push(0);
            return;
        };
        let last = bytes.iter().rposition(|&b| b != 0).expect("a nonzero byte exists");
        out.push(((last - first + 1) as u8) | if negative { 0x80 } else { 0 });
        out.push(first as u8);
        out.extend_from_slice(&bytes[first..=last]);
    }

    /// Reads [`ExactSum::write`] output at `b[*at..]`, moving `at` past it. Errors name what is
    /// wrong: truncated input, a non-canonical encoding, a value beyond the range.
    pub fn read(b: &[u8], at: &mut usize) -> Result<ExactSum, String> {
        let head = *b.get(*at).ok_or("exact sum: input ends before it")?;
        let (negative, n) = (head & 0x80 != 0, usize::from(head & 0x7f));
        if n == 0 {
            if negative {
                return Err("exact sum: negative zero is not canonical".into());
            }
            *at += 1;
            return Ok(ExactSum::ZERO);
        }
        let first = usize::from(*b.get(*at + 1).ok_or("exact sum: input ends in its header")?);
        if first + n > 24 {
            return Err(format!("exact sum: {n} bytes from byte {first} do not fit 24"));
        }
        let payload = b.get(*at + 2..*at + 2 + n).ok_or("exact sum: input ends inside it")?;
        if payload[0] == 0 || payload[n - 1] == 0 {
            return Err("exact sum: leading or trailing zero bytes are not canonical".into());
        }
        let mut bytes = [0u8; 24];
        bytes[first..first + n].copy_from_slice(payload);
        // Magnitudes below 2^191 only: the range of checked sums.
        if bytes[23] & 0x80 != 0 {
            return Err("exact sum: magnitude beyond the range".into());
        }
        let s = ExactSum::from_magnitude(U192::from_le_bytes(bytes));
        *at += 2 + n;
        Ok(if negative { s.neg_unchecked() } else { s })
    }
}

impl PartialOrd for ExactSum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ExactSum {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.hi, self.mid, self.lo).cmp(&(o.hi, o.mid, o.lo))
    }
}

impl fmt::Debug for ExactSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExactSum({self} ≈ {})", self.to_f64())
    }
}

/// The exact value in hexadecimal fixed point, `[-]0x<integer>[.<fraction>]`, with no leading
/// zeros in the integer part and no trailing zeros in the fraction: `0x5b.91687` is
/// 91 + 0x91687 / 16^5. One value has one spelling.
impl fmt::Display for ExactSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.is_negative();
        let m = if negative { self.neg_unchecked().magnitude() } else { self.magnitude() };
        let integer = m.shr(FRACTION_BITS).low_u128();
        let fraction = m.low_u128() & ((1u128 << FRACTION_BITS) - 1);
        let sign = if negative { "-" } else { "" };
        if fraction == 0 {
            return write!(f, "{sign}0x{integer:x}");
        }
        let digits = format!("{fraction:028x}");
        write!(f, "{sign}0x{integer:x}.{}", digits.trim_end_matches('0'))
    }
}

impl FromStr for ExactSum {
    type Err = String;

    /// Reads the [`fmt::Display`] form (leading and trailing zeros are accepted); errors name
    /// the text.
    fn from_str(s: &str) -> Result<ExactSum, String> {
        let bad =
            || format!("{s:?} is not an exact sum (expected hexadecimal fixed point such as 0x5b.9168)");
        let (negative, rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let rest = rest.strip_prefix("0x").ok_or_else(bad)?;
        let (int_part, frac_part) = rest.split_once('.').unwrap_or((rest, ""));
        let hex = |t: &str| t.chars().all(|c| c.is_ascii_hexdigit());
        if int_part.is_empty() || !hex(int_part) || !hex(frac_part) || frac_part.len() > 28 {
            return Err(bad());
        }
        let int_part = int_part.trim_start_matches('0');
        // Below 2^79: at most 20 hex digits, the 20th under 8.
        if int_part.len() > 20 || (int_part.len() == 20 && int_part.as_bytes()[0] > b'7') {
            return Err(format!("{s:?}: {SumOverflow}"));
        }
        let integer =
            if int_part.is_empty() { 0 } else { u128::from_str_radix(int_part, 16).map_err(|_| bad())? };
        let fraction = if frac_part.is_empty() {
            0
        } else {
            u128::from_str_radix(&format!("{frac_part:0<28}"), 16).map_err(|_| bad())?
        };
        let m = U192::from_u128(integer).shl(FRACTION_BITS).or_low(fraction);
        let v = ExactSum::from_magnitude(m);
        Ok(if negative { v.neg_unchecked() } else { v })
    }
}

/// An unsigned 192-bit integer, least significant word first; only what the conversions need.
#[derive(Clone, Copy, PartialEq, Eq)]
struct U192([u64; 3]);

impl U192 {
    const ZERO: U192 = U192([0; 3]);

    fn from_u64(x: u64) -> U192 {
        U192([x, 0, 0])
    }

    fn from_u128(x: u128) -> U192 {
        U192([x as u64, (x >> 64) as u64, 0])
    }

    fn low_u128(self) -> u128 {
        u128::from(self.0[0]) | (u128::from(self.0[1]) << 64)
    }

    fn or_low(mut self, x: u128) -> U192 {
        self.0[0] |= x as u64;
        self.0[1] |= (x >> 64) as u64;
        self
    }

    fn shl(self, n: u32) -> U192 {
        debug_assert!(n < 192);
        let (words, bits) = ((n / 64) as usize, n % 64);
        let mut out = [0u64; 3];
        for i in (words..3).rev() {
            let src = i - words;
            out[i] = self.0[src] << bits;
            if bits > 0 && src > 0 {
                out[i] |= self.0[src - 1] >> (64 - bits);
            }
        }
        U192(out)
    }

    fn shr(self, n: u32) -> U192 {
        debug_assert!(n < 192);
        let (words, bits) = ((n / 64) as usize, n % 64);
        let mut out = [0u64; 3];
        for (i, slot) in out.iter_mut().enumerate().take(3 - words) {
            let src = i + words;
            *slot = self.0[src] >> bits;
            if bits > 0 && src + 1 < 3 {
                *slot |= self.0[src + 1] << (64 - bits);
            }
        }
        U192(out)
    }

    fn to_le_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        for (i, w) in self.0.iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn from_le_bytes(b: [u8; 24]) -> U192 {
        let w = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        U192([w(0), w(1), w(2)])
    }
}

#[cfg(test)]
mod tests;
