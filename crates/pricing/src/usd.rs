//! Money as an exact integer: picodollars (10^-12 USD).
//!
//! Provider prices go down to fractions of a cent per million tokens
//! ($0.01875 / 1M tokens is 18,750 picodollars a token), so a per-token rate
//! and every cost built from it are whole picodollars: sums over a ledger are
//! exact, and the total of the costs clients were told equals the ledger's
//! total to the last digit. An `i64` holds ±9.2 million dollars, far above
//! any single request or budget window.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Picodollars in one dollar.
const PICO: i64 = 1_000_000_000_000;

/// An amount of US dollars, exact to 10^-12.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub const fn from_pico(pico: i64) -> Self {
        Usd(pico)
    }

    pub const fn pico(self) -> i64 {
        self.0
    }

    /// Whole dollars (config literals such as `limit: 50`).
    pub const fn from_dollars(d: i64) -> Self {
        Usd(d.saturating_mul(PICO))
    }

    /// Nearest picodollar of a float (prices typed in a data file). Values
    /// written with at most 12 decimals come out exact.
    pub fn from_f64(v: f64) -> Self {
        Usd((v * PICO as f64).round() as i64)
    }

    /// For metrics and display only: never sum floats for money.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / PICO as f64
    }

    /// `self × n`, saturating.
    pub fn times(self, n: u64) -> Self {
        Usd(self.0.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)))
    }

    /// `self × num / den`, rounded half away from zero (multipliers such as
    /// an off-peak 50% or a batch discount).
    pub fn scale(self, num: i64, den: i64) -> Self {
        if den == 0 {
            return self;
        }
        let p = i128::from(self.0) * i128::from(num);
        let d = i128::from(den);
        let q = (p + p.signum() * d.abs() / 2) / d;
        Usd(i64::try_from(q).unwrap_or(if q > 0 { i64::MAX } else { i64::MIN }))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// A rate written per million tokens (how providers publish prices) as
    /// the exact rate per token; `None` when it is not a whole number of
    /// picodollars a token (more than 6 decimals of a dollar per 1M), since
    /// rounding there would make every cost built from it inexact.
    pub const fn per_million_to_per_token(self) -> Option<Usd> {
        if self.0 % 1_000_000 == 0 {
            Some(Usd(self.0 / 1_000_000))
        } else {
            None
        }
    }

    /// The inverse of [`Usd::per_million_to_per_token`], for display.
    pub const fn per_token_to_per_million(self) -> Usd {
        Usd(self.0.saturating_mul(1_000_000))
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        *self = *self + o;
    }
}

impl Sub for Usd {
    type Output = Usd;
    fn sub(self, o: Usd) -> Usd {
        Usd(self.0.saturating_sub(o.0))
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// A plain decimal with no trailing zeros: `0.000123`, `12`, `-0.5`.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / PICO as u64;
        let frac = abs % PICO as u64;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:012}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an amount of dollars (a decimal number with at most 12 decimals)")]
pub struct ParseUsdError(String);

/// Parses a decimal exactly (no float on the way): `12`, `0.5`, `$3.25`.
impl FromStr for Usd {
    type Err = ParseUsdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseUsdError(s.to_owned());
        let t = s.trim();
        let t = t.strip_prefix('$').unwrap_or(t);
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if (whole.is_empty() && frac.is_empty())
            || frac.len() > 12
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac_pico: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<12}").parse().map_err(|_| bad())?
        };
        let v = whole
            .checked_mul(PICO)
            .and_then(|w| w.checked_add(frac_pico))
            .ok_or_else(bad)?;
        Ok(Usd(if neg { -v } else { v }))
    }
}

/// Serialized as a decimal string (exact); read from a string or a number.
impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) => Ok(Usd::from_dollars(i)),
            // A YAML/JSON number: its shortest decimal form is what the
            // user typed, so parse that rather than trusting the float.
            Raw::Float(f) => format!("{f}")
                .parse()
                .or_else(|_| Ok(Usd::from_f64(f)))
                .map_err(|e: ParseUsdError| serde::de::Error::custom(e)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, pico) in [
            ("0", 0),
            ("12", 12 * PICO),
            ("0.5", PICO / 2),
            ("$3.25", 3_250_000_000_000),
            ("0.000000018750", 18_750),
            ("-0.01", -10_000_000_000),
        ] {
            let u: Usd = text.parse().unwrap();
            assert_eq!(u.pico(), pico, "{text}");
        }
        assert_eq!(Usd::from_pico(18_750).to_string(), "0.00000001875");
        assert_eq!(Usd::from_dollars(7).to_string(), "7");
        assert_eq!(Usd::from_pico(-10_000_000_000).to_string(), "-0.01");
        for bad in ["", ".", "1.2.3", "abc", "0.0000000000001", "1e5"] {
            assert!(bad.parse::<Usd>().is_err(), "{bad}");
        }
    }

    #[test]
    fn floats_from_data_files_are_exact() {
        let u: Usd = serde_json::from_str("0.01875").unwrap();
        assert_eq!(u.pico(), 18_750_000_000);
        let u: Usd = serde_json::from_str("\"2.5\"").unwrap();
        assert_eq!(u, "2.5".parse().unwrap());
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"2.5\"");
    }

    #[test]
    fn scale_rounds_half_away_from_zero() {
        assert_eq!(Usd::from_pico(3).scale(1, 2), Usd::from_pico(2));
        assert_eq!(Usd::from_pico(-3).scale(1, 2), Usd::from_pico(-2));
        assert_eq!(Usd::from_pico(10).scale(3, 4), Usd::from_pico(8));
    }
}
