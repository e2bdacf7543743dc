//! Money as integers: [`Usd`] amounts in nano-dollars and [`Rate`]s in micro-dollars per
//! million tokens. Decimal strings are parsed exactly; nothing is ever summed in `f64`.

use std::fmt;
use std::str::FromStr;

/// An amount of US dollars in nano-dollars (1e-9 USD): a `u64` holds up to about
/// $18 billion, and a single token of the cheapest listed model ($0.0025 per million) is
/// 2.5 nano-dollars, so per-call costs keep their precision when summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub u64);

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0);

    /// The amount in nano-dollars.
    pub fn nanos(self) -> u64 {
        self.0
    }

    /// Whole dollars.
    pub fn dollars(d: u64) -> Usd {
        Usd(d.saturating_mul(1_000_000_000))
    }

    /// The amount as `f64` dollars, for display and metrics only.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self - other`, or zero.
    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0.saturating_add(o.0))
    }
}

impl From<Usd> for ai_core::Cost {
    fn from(u: Usd) -> Self {
        ai_core::Cost { nano_usd: u.0 }
    }
}

/// The error of parsing a decimal dollar amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoneyError(pub String);

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MoneyError {}

/// Parses a non-negative decimal (`"12"`, `"0.125"`, `"$1,000.50"` is refused: write
/// `"1000.50"`) into an integer count of `10^-scale` units, exactly.
fn parse_decimal(s: &str, scale: u32, what: &str) -> Result<u64, MoneyError> {
    let t = s.trim().trim_start_matches('$');
    let err = || {
        MoneyError(format!(
            "{what} {s:?} is not a decimal number of dollars (e.g. \"12.50\")"
        ))
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(err());
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    if frac.len() > scale as usize {
        return Err(MoneyError(format!(
            "{what} {s:?} has more than {scale} decimal places"
        )));
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err())?
    };
    let mut f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| err())?
    };
    f *= 10u64.pow(scale - frac.len() as u32);
    whole
        .checked_mul(10u64.pow(scale))
        .and_then(|w| w.checked_add(f))
        .ok_or_else(|| MoneyError(format!("{what} {s:?} is too large")))
}

/// Writes `units / 10^scale` with at least two and at most `scale` decimals.
fn write_decimal(f: &mut fmt::Formatter<'_>, units: u64, scale: u32) -> fmt::Result {
    let div = 10u64.pow(scale);
    let whole = units / div;
    let mut frac = format!("{:0width$}", units % div, width = scale as usize);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    write!(f, "{whole}.{frac}")
}

impl FromStr for Usd {
    type Err = MoneyError;
    /// Up to nine decimal places: `"100"`, `"0.05"`, `"12.345678901"`.
    fn from_str(s: &str) -> Result<Usd, MoneyError> {
        parse_decimal(s, 9, "amount").map(Usd)
    }
}

impl fmt::Display for Usd {
    /// Dollars with two to nine decimals, no sign: `12.50`, `0.000123`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.0, 9)
    }
}

/// A price in micro-dollars per million tokens, which is also pico-dollars (1e-12 USD)
/// per token: `$3` per million is `Rate(3_000_000)`, `$0.0025` is `Rate(2_500)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(pub u64);

impl Rate {
    /// Pico-dollars for `tokens` tokens.
    pub fn pico(self, tokens: u64) -> u128 {
        u128::from(self.0) * u128::from(tokens)
    }
}

impl FromStr for Rate {
    type Err = MoneyError;
    /// Dollars per million tokens with up to six decimals: `"3"`, `"0.30"`, `"0.0625"`.
    fn from_str(s: &str) -> Result<Rate, MoneyError> {
        parse_decimal(s, 6, "price").map(Rate)
    }
}

impl fmt::Display for Rate {
    /// Dollars per million tokens: `3.00`, `0.0625`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_decimal(f, self.0, 6)
    }
}

/// Pico-dollars to nano-dollars, rounded up: a call never costs less than its tokens.
pub(crate) fn pico_to_usd(pico: u128) -> Usd {
    Usd(u64::try_from(pico.div_ceil(1000)).unwrap_or(u64::MAX))
}

impl<'de> serde::Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_string(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_string(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A TOML or JSON number or string, as the decimal text it was written as (a float is
/// printed in its shortest exact form, so `0.3` stays `0.3`).
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a dollar amount, as a number or a decimal string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            if !v.is_finite() {
                return Err(E::custom("a dollar amount must be finite"));
            }
            Ok(format!("{v}"))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!("3".parse::<Rate>(), Ok(Rate(3_000_000)));
        assert_eq!("0.30".parse::<Rate>(), Ok(Rate(300_000)));
        assert_eq!("0.0025".parse::<Rate>(), Ok(Rate(2_500)));
        assert_eq!(".5".parse::<Rate>(), Ok(Rate(500_000)));
        assert!("0.0000001".parse::<Rate>().is_err());
        assert!("-1".parse::<Rate>().is_err());
        assert!("1e3".parse::<Rate>().is_err());
        assert!("".parse::<Rate>().is_err());
        assert_eq!("100.00".parse::<Usd>(), Ok(Usd(100_000_000_000)));
        assert_eq!("$0.000000001".parse::<Usd>(), Ok(Usd(1)));
        assert!("99999999999999999999".parse::<Usd>().is_err());
    }

    #[test]
    fn amounts_display_as_dollars() {
        assert_eq!(Usd(100_000_000_000).to_string(), "100.00");
        assert_eq!(Usd(123_000).to_string(), "0.000123");
        assert_eq!(Usd(1).to_string(), "0.000000001");
        assert_eq!(Rate(62_500).to_string(), "0.0625");
    }

    #[test]
    fn floats_from_config_keep_their_written_value() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Rate,
            b: Rate,
            c: Usd,
        }
        let t: T = toml::from_str("a = 0.3\nb = 15\nc = \"12.5\"").expect("toml");
        assert_eq!(
            (t.a, t.b, t.c),
            (Rate(300_000), Rate(15_000_000), Usd(12_500_000_000))
        );
    }

    #[test]
    fn rounding_is_up_to_the_nano_dollar() {
        assert_eq!(pico_to_usd(0), Usd(0));
        assert_eq!(pico_to_usd(1), Usd(1));
        assert_eq!(pico_to_usd(1000), Usd(1));
        assert_eq!(pico_to_usd(1001), Usd(2));
    }
}
