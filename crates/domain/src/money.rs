//! Amounts in minor units with an ISO 4217 currency. One exponent table for the
//! whole code base: providers that speak major units convert through it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 alphabetic code, upper case, three ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be a three-letter ISO 4217 code, got {0:?}")]
    InvalidCurrency(String),
    #[error("amount must not be negative, got {0}")]
    NegativeAmount(i64),
    #[error("{amount:?} is not an amount in {currency} (a decimal with at most {exponent} decimals)")]
    InvalidMajorAmount {
        amount: String,
        currency: Currency,
        exponent: u32,
    },
}

/// Currencies whose minor unit is not 1/100 of the major unit.
/// Source: ISO 4217 list of minor units; everything not listed here has two decimals.
const EXPONENTS: &[(&str, u32)] = &[
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
];

/// Active ISO 4217 currencies money can be paid in: the list, less precious metals,
/// fund codes used only for accounting (CLF, UYW, XDR, …) and test codes (XTS, XXX).
const PAYABLE: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLP",
    "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD",
    "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK",
    "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
    "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR",
    "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF",
    "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

impl Currency {
    /// Whether this is a currency a payment can be asked in (see `PAYABLE`). Parsing
    /// accepts any three letters, so stored and provider-sent codes always load.
    pub fn is_payable(&self) -> bool {
        PAYABLE.contains(&self.code())
    }

    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_alphabetic) => Ok(Self([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
                c.to_ascii_uppercase(),
            ])),
            _ => Err(MoneyError::InvalidCurrency(code.to_owned())),
        }
    }

    pub fn code(&self) -> &str {
        // The constructor only admits ASCII letters, so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Number of decimals between the major and the minor unit (USD 2, JPY 0, KWD 3).
    pub fn exponent(&self) -> u32 {
        EXPONENTS
            .iter()
            .find(|(code, _)| *code == self.code())
            .map_or(2, |(_, exp)| *exp)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

/// A non-negative amount in minor units (cents, rupiah sen, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::NegativeAmount(amount_minor));
        }
        Ok(Self { amount_minor, currency })
    }

    /// Parses an amount written in major units (`"150000"`, `"10.5"`), as providers such
    /// as Xendit send them, exactly: decimal text, never a float. More decimals than the
    /// currency has, a sign, an exponent or an overflow is an error.
    pub fn from_major(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let exponent = currency.exponent();
        let invalid = || MoneyError::InvalidMajorAmount {
            amount: amount.to_owned(),
            currency,
            exponent,
        };
        let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(invalid());
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > exponent as usize {
            return Err(invalid());
        }
        let scale = 10i64.checked_pow(exponent).ok_or_else(invalid)?;
        let whole: i64 = whole.parse().map_err(|_| invalid())?;
        let padded = format!("{fraction:0<width$}", width = exponent as usize);
        let fraction: i64 = if padded.is_empty() {
            0
        } else {
            padded.parse().map_err(|_| invalid())?
        };
        let minor = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(invalid)?;
        Self::new(minor, currency)
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn payable_currencies_are_real_ones() {
        for code in ["USD", "IDR", "MNT", "BRL", "JPY", "EUR", "XOF"] {
            assert!(Currency::parse(code).unwrap().is_payable(), "{code}");
        }
        for code in ["XXX", "XTS", "XAU", "ZZZ", "ABC"] {
            assert!(!Currency::parse(code).unwrap().is_payable(), "{code}");
        }
    }

    use super::*;

    #[test]
    fn currency_is_normalized_to_upper_case() {
        assert_eq!(Currency::parse("usd").map(|c| c.to_string()), Ok("USD".to_owned()));
    }

    #[test]
    fn currency_rejects_anything_but_three_letters() {
        for bad in ["", "US", "USDD", "U5D", "€€€"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn exponents_follow_iso_4217() {
        let exp = |c: &str| Currency::parse(c).map(|c| c.exponent());
        assert_eq!(exp("USD"), Ok(2));
        assert_eq!(exp("IDR"), Ok(2));
        assert_eq!(exp("MNT"), Ok(2));
        assert_eq!(exp("BRL"), Ok(2));
        assert_eq!(exp("JPY"), Ok(0));
        assert_eq!(exp("KWD"), Ok(3));
    }

    #[test]
    fn major_amounts_convert_exactly_by_currency_exponent() {
        let c = |code: &str| Currency::parse(code).unwrap();
        let minor = |a: &str, code: &str| Money::from_major(a, c(code)).map(|m| m.amount_minor());
        assert_eq!(minor("150000", "IDR"), Ok(15_000_000));
        assert_eq!(minor("10.5", "USD"), Ok(1050));
        assert_eq!(minor("10.50", "USD"), Ok(1050));
        assert_eq!(minor("0.07", "USD"), Ok(7));
        assert_eq!(minor("1500", "JPY"), Ok(1500));
        assert_eq!(minor("1.234", "KWD"), Ok(1234));
        for (bad, code) in [
            ("10.005", "USD"),
            ("1.5", "JPY"),
            ("-1", "USD"),
            ("1e3", "USD"),
            ("", "USD"),
            (".5", "USD"),
            ("99999999999999999999", "USD"),
            ("1.2.3", "USD"),
        ] {
            assert!(minor(bad, code).is_err(), "{bad:?} {code} was accepted");
        }
    }

    #[test]
    fn money_rejects_negative_amounts() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(Money::new(-1, usd), Err(MoneyError::NegativeAmount(-1)));
        assert_eq!(Money::new(0, usd).map(|m| m.amount_minor()), Ok(0));
    }
}
