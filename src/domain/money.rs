//! Payment amounts in integer euro cents.
//!
//! [`Money`] is a strictly positive amount bounded by [`MAX_CENTS`]. Amounts are
//! parsed from their decimal text form (`"12.34"`) without ever going through
//! floating point, and are serialized as JSON numbers with exactly two decimals
//! (`12.30`). [`cents_as_decimal`] offers the same wire format for plain `i64`
//! cent fields that may be zero or negative (balances).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The largest accepted amount in cents: 999 999 999.99 euro.
pub const MAX_CENTS: i64 = 99_999_999_999;

/// Why an amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a plain decimal number (`12`, `12.3`, `12.34`).
    #[error("must be a decimal number like 12.34")]
    NotADecimal,
    /// The number has more than two digits after the decimal point.
    #[error("must have at most 2 decimal places")]
    TooManyDecimals,
    /// The amount is zero or negative.
    #[error("must be greater than 0")]
    NotPositive,
    /// The amount is above [`MAX_CENTS`] (or below `-MAX_CENTS` for balances).
    #[error("must not exceed 999999999.99")]
    TooLarge,
}

/// A positive payment amount in integer euro cents (`1..=MAX_CENTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    /// Builds an amount from cents; it must be greater than 0 and at most [`MAX_CENTS`].
    pub fn from_cents(cents: i64) -> Result<Money, MoneyError> {
        if cents <= 0 {
            Err(MoneyError::NotPositive)
        } else if cents > MAX_CENTS {
            Err(MoneyError::TooLarge)
        } else {
            Ok(Money(cents))
        }
    }

    /// Parses a decimal amount such as `"12"`, `"12.3"` or `"12.34"`.
    ///
    /// No sign, exponent, whitespace, thousands separator or comma is accepted,
    /// and at most two decimal places are allowed.
    pub fn parse(s: &str) -> Result<Money, MoneyError> {
        match parse_cents(s) {
            // A negative number is refused as such, whatever its magnitude.
            Err(MoneyError::TooLarge) if s.starts_with('-') => Err(MoneyError::NotPositive),
            Err(e) => Err(e),
            Ok(cents) => Money::from_cents(cents),
        }
    }

    /// The amount in cents.
    pub fn cents(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_cents(self.0))
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

/// Formats any number of cents as a decimal with two places (`-5` → `-0.05`).
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses an optionally negative decimal with at most two places into cents,
/// bounded in magnitude by [`MAX_CENTS`].
fn parse_cents(s: &str) -> Result<i64, MoneyError> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) {
        return Err(MoneyError::NotADecimal);
    }
    let frac_cents = match frac_part {
        None => 0,
        Some(f) if !all_digits(f) => return Err(MoneyError::NotADecimal),
        Some(f) if f.len() > 2 => return Err(MoneyError::TooManyDecimals),
        Some(f) => {
            let mut v = 0i64;
            for b in f.bytes() {
                v = v * 10 + i64::from(b - b'0');
            }
            if f.len() == 1 {
                v * 10
            } else {
                v
            }
        }
    };
    let mut units = 0i64;
    for b in int_part.bytes() {
        units = units
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or(MoneyError::TooLarge)?;
    }
    let cents = units
        .checked_mul(100)
        .and_then(|v| v.checked_add(frac_cents))
        .ok_or(MoneyError::TooLarge)?;
    if cents > MAX_CENTS {
        return Err(MoneyError::TooLarge);
    }
    Ok(if negative { -cents } else { cents })
}

/// Serializes cents as a JSON number with exactly two decimals.
fn serialize_cents<S: Serializer>(cents: i64, serializer: S) -> Result<S::Ok, S::Error> {
    let raw = RawValue::from_string(format_cents(cents)).map_err(ser::Error::custom)?;
    raw.serialize(serializer)
}

/// The name under which serde_json hands a value over as its text, as written (what
/// [`RawValue`]'s own `Deserialize` asks for); other deserializers (serde's buffer of a
/// `#[serde(flatten)]` struct) treat it as an ordinary newtype and give the value.
const RAW_TEXT: &str = "$serde_json::private::RawValue";

/// Reads a JSON string or number and parses its own text into cents (never through
/// `f64`, which would turn `12.339999999999999` into 12.34); with `positive` set, the
/// [`Money`] rules apply.
fn deserialize_cents<'de, D: Deserializer<'de>>(
    deserializer: D,
    positive: bool,
) -> Result<i64, D::Error> {
    deserializer.deserialize_newtype_struct(RAW_TEXT, CentsVisitor { positive })
}

/// Cents from a value's text (a JSON string's content, or a number as written).
fn cents_of(text: &str, positive: bool) -> Result<i64, MoneyError> {
    if positive {
        Money::parse(text).map(Money::cents)
    } else {
        parse_cents(text)
    }
}

/// Cents from the raw JSON text of a value: a string or a number, nothing else.
fn cents_of_raw(raw: &str, positive: bool) -> Result<i64, MoneyError> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        // A string literal whose escapes do not decode is no decimal either.
        let text = serde_json::from_str::<String>(raw).map_err(|_| MoneyError::NotADecimal)?;
        cents_of(&text, positive)
    } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        cents_of(raw, positive)
    } else {
        Err(MoneyError::NotADecimal)
    }
}

struct CentsVisitor {
    positive: bool,
}

impl<'de> Visitor<'de> for CentsVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal number like 12.34")
    }

    /// serde_json's raw text: one entry, whose value is the text as written.
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<i64, A::Error> {
        if map.next_key::<String>()?.as_deref() != Some(RAW_TEXT) {
            return Err(de::Error::custom(MoneyError::NotADecimal));
        }
        let raw: String = map.next_value()?;
        cents_of_raw(&raw, self.positive).map_err(de::Error::custom)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        cents_of(v, self.positive).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        self.visit_str(&v.to_string())
    }

    /// Reached only from a deserializer that already read the number as `f64` (serde's
    /// buffer of a flattened struct: events cassa reads, never a request's body).
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.visit_str(&n.to_string()),
            None => Err(E::custom(MoneyError::NotADecimal)),
        }
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_cents(self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_cents(deserializer, true).map(Money)
    }
}

/// Serde `with` module for `i64` cent fields that may be zero or negative
/// (balances): written as a JSON number with two decimals, read from a JSON
/// string or number with at most two decimals and magnitude at most
/// [`MAX_CENTS`].
///
/// ```text
/// #[serde(with = "cents_as_decimal")]
/// balance: i64,
/// ```
pub mod cents_as_decimal {
    use serde::{Deserializer, Serializer};

    /// Serializes `cents` as a JSON number with exactly two decimals.
    pub fn serialize<S: Serializer>(cents: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        super::serialize_cents(*cents, serializer)
    }

    /// Deserializes cents from a decimal JSON string or number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        super::deserialize_cents(deserializer, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_plain_decimals() {
        assert_eq!(Money::parse("12").unwrap().cents(), 1200);
        assert_eq!(Money::parse("12.3").unwrap().cents(), 1230);
        assert_eq!(Money::parse("12.34").unwrap().cents(), 1234);
        assert_eq!(Money::parse("0.01").unwrap().cents(), 1);
        assert_eq!(Money::parse("0.5").unwrap().cents(), 50);
        assert_eq!(Money::parse("999999999.99").unwrap().cents(), MAX_CENTS);
        assert_eq!("7.05".parse::<Money>().unwrap().cents(), 705);
    }

    #[test]
    fn parse_refuses_bad_input() {
        use MoneyError::*;
        let cases = [
            ("12.345", TooManyDecimals),
            ("0.001", TooManyDecimals),
            ("0", NotPositive),
            ("0.00", NotPositive),
            ("-1", NotPositive),
            ("-0.01", NotPositive),
            ("-99999999999999999999999", NotPositive),
            ("-1.234", TooManyDecimals),
            ("", NotADecimal),
            ("abc", NotADecimal),
            ("1e3", NotADecimal),
            (" 12", NotADecimal),
            ("12 ", NotADecimal),
            ("12.", NotADecimal),
            (".5", NotADecimal),
            ("+1", NotADecimal),
            ("1,50", NotADecimal),
            ("1.2.3", NotADecimal),
            ("12.3a", NotADecimal),
            ("-", NotADecimal),
            ("--1", NotADecimal),
            ("١٢", NotADecimal),
            ("1000000000.00", TooLarge),
            ("1000000000", TooLarge),
            ("9223372036854775807", TooLarge),
            ("92233720368547758.07", TooLarge),
            ("99999999999999999999999999999999999999", TooLarge),
        ];
        for (input, expected) in cases {
            assert_eq!(Money::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn from_cents_bounds() {
        assert_eq!(Money::from_cents(0), Err(MoneyError::NotPositive));
        assert_eq!(Money::from_cents(-5), Err(MoneyError::NotPositive));
        assert_eq!(Money::from_cents(i64::MIN), Err(MoneyError::NotPositive));
        assert_eq!(Money::from_cents(1).unwrap().cents(), 1);
        assert_eq!(Money::from_cents(MAX_CENTS).unwrap().cents(), MAX_CENTS);
        assert_eq!(Money::from_cents(MAX_CENTS + 1), Err(MoneyError::TooLarge));
    }

    #[test]
    fn display_always_two_decimals() {
        assert_eq!(Money::parse("12.3").unwrap().to_string(), "12.30");
        assert_eq!(Money::from_cents(5).unwrap().to_string(), "0.05");
        assert_eq!(Money::from_cents(1200).unwrap().to_string(), "12.00");
        assert_eq!(
            Money::from_cents(MAX_CENTS).unwrap().to_string(),
            "999999999.99"
        );
    }

    #[test]
    fn format_cents_any_value() {
        assert_eq!(format_cents(0), "0.00");
        assert_eq!(format_cents(-5), "-0.05");
        assert_eq!(format_cents(-1234), "-12.34");
        assert_eq!(format_cents(100), "1.00");
        assert_eq!(format_cents(i64::MIN), "-92233720368547758.08");
        assert_eq!(format_cents(i64::MAX), "92233720368547758.07");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            MoneyError::NotADecimal.to_string(),
            "must be a decimal number like 12.34"
        );
        assert_eq!(
            MoneyError::TooManyDecimals.to_string(),
            "must have at most 2 decimal places"
        );
        assert_eq!(
            MoneyError::NotPositive.to_string(),
            "must be greater than 0"
        );
        assert_eq!(
            MoneyError::TooLarge.to_string(),
            "must not exceed 999999999.99"
        );
    }

    fn de(json: &str) -> Result<Money, String> {
        serde_json::from_str::<Money>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn deserialize_from_string_and_number() {
        assert_eq!(de(r#""12.34""#).unwrap().cents(), 1234);
        assert_eq!(de("12.34").unwrap().cents(), 1234);
        assert_eq!(de("12").unwrap().cents(), 1200);
        assert_eq!(de("12.3").unwrap().cents(), 1230);
        assert_eq!(de("0.01").unwrap().cents(), 1);
        assert_eq!(de("0.1").unwrap().cents(), 10);
        assert_eq!(de("999999999.99").unwrap().cents(), MAX_CENTS);
    }

    /// Issue 25 point 12: a JSON number is read from its own text, so one that rounds to
    /// two decimals in `f64` is still refused for its extra decimals.
    #[test]
    fn json_numbers_are_read_from_their_text_not_through_f64() {
        for text in [
            "12.339999999999999",
            "12.340000000000001",
            "0.015",
            "12.340",
        ] {
            let err = de(text).unwrap_err();
            assert!(err.contains("at most 2 decimal places"), "{text}: {err}");
        }
        assert!(de("1.5e2").unwrap_err().contains("decimal number like"));
        #[derive(Deserialize)]
        struct Wrapper {
            amount: Money,
        }
        assert!(serde_json::from_str::<Wrapper>(r#"{"amount": 12.339999999999999}"#).is_err());
        let read: Wrapper = serde_json::from_str(r#"{"amount": 12.34}"#).unwrap();
        assert_eq!(read.amount.cents(), 1234);
        // From a `Value` too (the text it prints).
        let value = serde_json::json!({"amount": 12.5});
        assert_eq!(
            serde_json::from_value::<Wrapper>(value)
                .unwrap()
                .amount
                .cents(),
            1250
        );
    }

    #[test]
    fn deserialize_refusals() {
        assert!(de("12.345")
            .unwrap_err()
            .contains("at most 2 decimal places"));
        assert!(de(r#""12.345""#)
            .unwrap_err()
            .contains("at most 2 decimal places"));
        assert!(de(r#""1e3""#).unwrap_err().contains("decimal number like"));
        assert!(de("0").unwrap_err().contains("greater than 0"));
        assert!(de("0.0").unwrap_err().contains("greater than 0"));
        assert!(de("-1").unwrap_err().contains("greater than 0"));
        assert!(de("-1.5").unwrap_err().contains("greater than 0"));
        assert!(de("1000000000").unwrap_err().contains("must not exceed"));
        assert!(de("18446744073709551615")
            .unwrap_err()
            .contains("must not exceed"));
        assert!(de("-9223372036854775808")
            .unwrap_err()
            .contains("greater than 0"));
        assert!(de("1e30").is_err());
        assert!(de("true")
            .unwrap_err()
            .contains("decimal number like 12.34"));
        assert!(de("null").is_err());
        assert!(de(r#""""#).unwrap_err().contains("decimal number like"));
    }

    #[test]
    fn serialize_as_number_with_two_decimals() {
        let m = Money::parse("12.3").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "12.30");
        let m = Money::from_cents(5).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "0.05");
        #[derive(Serialize)]
        struct Wrapper {
            amount: Money,
        }
        let w = Wrapper {
            amount: Money::from_cents(1000).unwrap(),
        };
        assert_eq!(serde_json::to_string(&w).unwrap(), r#"{"amount":10.00}"#);
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["amount"].as_f64(), Some(10.0));
    }

    #[test]
    fn serde_round_trip() {
        for cents in [1, 5, 10, 99, 100, 1234, MAX_CENTS] {
            let m = Money::from_cents(cents).unwrap();
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Balance {
        #[serde(with = "cents_as_decimal")]
        total: i64,
    }

    #[test]
    fn cents_as_decimal_serializes_any_value() {
        for (cents, expected) in [(0, "0.00"), (-5, "-0.05"), (1230, "12.30")] {
            let json = serde_json::to_string(&Balance { total: cents }).unwrap();
            assert_eq!(json, format!(r#"{{"total":{expected}}}"#));
        }
    }

    #[test]
    fn cents_as_decimal_deserializes_zero_and_negatives() {
        let de = |json: &str| serde_json::from_str::<Balance>(json).map(|b| b.total);
        assert_eq!(de(r#"{"total":0}"#).unwrap(), 0);
        assert_eq!(de(r#"{"total":0.00}"#).unwrap(), 0);
        assert_eq!(de(r#"{"total":"0"}"#).unwrap(), 0);
        assert_eq!(de(r#"{"total":-5}"#).unwrap(), -500);
        assert_eq!(de(r#"{"total":-0.05}"#).unwrap(), -5);
        assert_eq!(de(r#"{"total":"-12.34"}"#).unwrap(), -1234);
        assert_eq!(de(r#"{"total":12.3}"#).unwrap(), 1230);
        assert!(de(r#"{"total":1.234}"#)
            .unwrap_err()
            .to_string()
            .contains("at most 2 decimal places"));
        assert!(de(r#"{"total":"abc"}"#).is_err());
        assert!(de(r#"{"total":"+1"}"#).is_err());
        assert!(de(r#"{"total":-1000000000}"#)
            .unwrap_err()
            .to_string()
            .contains("must not exceed"));
    }

    #[test]
    fn cents_as_decimal_round_trip() {
        for cents in [0, 1, -1, 99, -99, 100, -100, MAX_CENTS, -MAX_CENTS] {
            let json = serde_json::to_string(&Balance { total: cents }).unwrap();
            assert_eq!(
                serde_json::from_str::<Balance>(&json).unwrap(),
                Balance { total: cents }
            );
        }
    }
}
