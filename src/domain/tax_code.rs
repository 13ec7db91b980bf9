//! Italian tax codes: the 16-character *codice fiscale* of a person or the
//! 11-digit *partita IVA* of a company, both with their checksum verified.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a tax code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TaxCodeError {
    /// Neither 16 nor 11 characters long.
    #[error("must be a 16-character codice fiscale or an 11-digit partita IVA")]
    WrongLength,
    /// Characters in the wrong places (or not ASCII letters and digits).
    #[error("has an invalid format")]
    InvalidFormat,
    /// The birth-month letter of a codice fiscale is not one of `ABCDEHLMPRST`.
    #[error("has an invalid birth month letter")]
    InvalidMonth,
    /// The birth day of a codice fiscale is not in 1–31 or 41–71.
    #[error("has an invalid birth day")]
    InvalidDay,
    /// The last character of a codice fiscale does not match its checksum.
    #[error("has an invalid check character")]
    InvalidCheckCharacter,
    /// The last digit of a partita IVA does not match its checksum.
    #[error("has an invalid check digit")]
    InvalidCheckDigit,
}

/// A validated Italian codice fiscale (person) or partita IVA (company), upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaxCode(String);

/// Month letters of a codice fiscale, January to December.
const MONTH_LETTERS: &[u8] = b"ABCDEHLMPRST";
/// Letters that replace digits 0–9 in an omocodia codice fiscale.
const OMOCODIA_LETTERS: &[u8] = b"LMNPQRSTUV";
/// 0-based positions of a codice fiscale that hold digits (or omocodia letters).
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Check-character values of characters in odd (1-based) positions, indexed by
/// the character value (digits 0–9 and letters A–Z both map to 0–25).
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

impl TaxCode {
    /// Validates a codice fiscale or partita IVA; lower case is accepted and
    /// normalised to upper case, surrounding whitespace is not.
    pub fn parse(s: &str) -> Result<TaxCode, TaxCodeError> {
        let len = s.chars().count();
        if len != 16 && len != 11 {
            return Err(TaxCodeError::WrongLength);
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TaxCodeError::InvalidFormat);
        }
        let upper = s.to_ascii_uppercase();
        if len == 16 {
            check_codice_fiscale(upper.as_bytes())?;
        } else {
            check_partita_iva(upper.as_bytes())?;
        }
        Ok(TaxCode(upper))
    }

    /// The normalised (upper-case) code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a partita IVA (a company) rather than a codice fiscale.
    pub fn is_company(&self) -> bool {
        self.0.len() == 11
    }
}

/// Decodes a digit position of a codice fiscale: a digit or an omocodia letter.
fn omocodia_digit(c: u8) -> Option<u32> {
    if c.is_ascii_digit() {
        Some(u32::from(c - b'0'))
    } else {
        OMOCODIA_LETTERS
            .iter()
            .position(|&l| l == c)
            .and_then(|p| u32::try_from(p).ok())
    }
}

/// Value of an upper-case ASCII letter or digit for the check character (0–25).
fn char_value(c: u8) -> u32 {
    if c.is_ascii_digit() {
        u32::from(c - b'0')
    } else {
        u32::from(c.saturating_sub(b'A'))
    }
}

/// Computes the check character of the first 15 characters of a codice fiscale
/// (upper-case ASCII letters and digits).
fn check_character(first15: &[u8]) -> u8 {
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let v = char_value(c);
            if i % 2 == 0 {
                // 1-based odd position.
                ODD_VALUES.get(v as usize).copied().unwrap_or(0)
            } else {
                v
            }
        })
        .sum();
    // sum % 26 < 26, so the cast cannot truncate.
    b'A' + (sum % 26) as u8
}

fn check_codice_fiscale(b: &[u8]) -> Result<(), TaxCodeError> {
    let is_letter_pos = |i: usize| !DIGIT_POSITIONS.contains(&i);
    for (i, &c) in b.iter().enumerate() {
        let ok = if is_letter_pos(i) {
            c.is_ascii_uppercase()
        } else {
            omocodia_digit(c).is_some()
        };
        if !ok {
            return Err(TaxCodeError::InvalidFormat);
        }
    }
    if !MONTH_LETTERS.contains(&b[8]) {
        return Err(TaxCodeError::InvalidMonth);
    }
    let day = match (omocodia_digit(b[9]), omocodia_digit(b[10])) {
        (Some(t), Some(u)) => t * 10 + u,
        _ => return Err(TaxCodeError::InvalidFormat),
    };
    if !((1..=31).contains(&day) || (41..=71).contains(&day)) {
        return Err(TaxCodeError::InvalidDay);
    }
    if check_character(&b[..15]) != b[15] {
        return Err(TaxCodeError::InvalidCheckCharacter);
    }
    Ok(())
}

/// Computes the check digit (0–9) of the first 10 digits of a partita IVA.
fn check_digit(first10: &[u8]) -> u32 {
    let sum: u32 = first10
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 {
                d
            } else if d * 2 > 9 {
                d * 2 - 9
            } else {
                d * 2
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn check_partita_iva(b: &[u8]) -> Result<(), TaxCodeError> {
    if !b.iter().all(u8::is_ascii_digit) || b.iter().all(|&c| c == b'0') {
        return Err(TaxCodeError::InvalidFormat);
    }
    if check_digit(&b[..10]) != u32::from(b[10] - b'0') {
        return Err(TaxCodeError::InvalidCheckDigit);
    }
    Ok(())
}

impl fmt::Display for TaxCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TaxCode {
    type Err = TaxCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaxCode::parse(s)
    }
}

impl Serialize for TaxCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaxCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TaxCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_CF: &str = "RSSMRA80A01H501U";

    /// Replaces the first 15 characters and recomputes the check character.
    fn with_check(first15: &str) -> String {
        assert_eq!(first15.len(), 15);
        let c = check_character(first15.as_bytes());
        format!("{first15}{}", c as char)
    }

    /// Builds a partita IVA from 10 digits plus its check digit.
    fn piva(first10: &str) -> String {
        assert_eq!(first10.len(), 10);
        format!("{first10}{}", check_digit(first10.as_bytes()))
    }

    #[test]
    fn known_codice_fiscale_is_valid() {
        let t = TaxCode::parse(VALID_CF).unwrap();
        assert_eq!(t.as_str(), VALID_CF);
        assert_eq!(t.to_string(), VALID_CF);
        assert!(!t.is_company());
        assert_eq!(check_character(&VALID_CF.as_bytes()[..15]), b'U');
    }

    #[test]
    fn lowercase_is_normalised() {
        let t = TaxCode::parse("rssmra80a01h501u").unwrap();
        assert_eq!(t.as_str(), VALID_CF);
        let t = TaxCode::parse("RssMra80A01h501U").unwrap();
        assert_eq!(t.as_str(), VALID_CF);
    }

    #[test]
    fn wrong_check_character_refused() {
        for c in b'A'..=b'Z' {
            if c == b'U' {
                continue;
            }
            let code = format!("RSSMRA80A01H501{}", c as char);
            assert_eq!(
                TaxCode::parse(&code),
                Err(TaxCodeError::InvalidCheckCharacter),
                "{code}"
            );
        }
        // A transposition changes the check character.
        assert_eq!(
            TaxCode::parse("SRSMRA80A01H501U"),
            Err(TaxCodeError::InvalidCheckCharacter)
        );
    }

    #[test]
    fn omocodia_variants_accepted() {
        // Last digit of the town code (1) replaced by its letter M.
        let code = with_check("RSSMRA80A01H50M");
        assert_ne!(code, VALID_CF);
        assert_eq!(TaxCode::parse(&code).unwrap().as_str(), code);
        // All seven digit positions replaced.
        let code = with_check("RSSMRAULALMHRLM");
        assert_eq!(TaxCode::parse(&code).unwrap().as_str(), code);
        // Same code with the original check character is refused.
        assert_eq!(
            TaxCode::parse("RSSMRA80A01H50MU"),
            Err(TaxCodeError::InvalidCheckCharacter)
        );
        // A letter outside LMNPQRSTUV in a digit position is a format error.
        assert_eq!(
            TaxCode::parse(&with_check("RSSMRA80A01H50A")),
            Err(TaxCodeError::InvalidFormat)
        );
        assert_eq!(
            TaxCode::parse(&with_check("RSSMRA8OA01H501")),
            Err(TaxCodeError::InvalidFormat)
        );
    }

    #[test]
    fn format_errors() {
        // Digit in a letter position.
        assert_eq!(
            TaxCode::parse(&with_check("R5SMRA80A01H501")),
            Err(TaxCodeError::InvalidFormat)
        );
        // Digit in the town letter position.
        assert_eq!(
            TaxCode::parse(&with_check("RSSMRA80A011501")),
            Err(TaxCodeError::InvalidFormat)
        );
        // Digit as check character.
        assert_eq!(
            TaxCode::parse("RSSMRA80A01H5011"),
            Err(TaxCodeError::InvalidFormat)
        );
        // Punctuation and non-ASCII.
        assert_eq!(
            TaxCode::parse("RSSMRA80A01H501-"),
            Err(TaxCodeError::InvalidFormat)
        );
        assert_eq!(
            TaxCode::parse("RSSMRA80A01H501É"),
            Err(TaxCodeError::InvalidFormat)
        );
    }

    #[test]
    fn bad_month_refused() {
        for m in b'A'..=b'Z' {
            let code = with_check(&format!("RSSMRA80{}01H501", m as char));
            let res = TaxCode::parse(&code);
            if b"ABCDEHLMPRST".contains(&m) {
                assert!(res.is_ok(), "{code}");
            } else {
                assert_eq!(res, Err(TaxCodeError::InvalidMonth), "{code}");
            }
        }
    }

    #[test]
    fn day_ranges() {
        for day in 0..=99u32 {
            let code = with_check(&format!("RSSMRA80A{day:02}H501"));
            let ok = (1..=31).contains(&day) || (41..=71).contains(&day);
            let res = TaxCode::parse(&code);
            if ok {
                assert!(res.is_ok(), "{code}");
            } else {
                assert_eq!(res, Err(TaxCodeError::InvalidDay), "{code}");
            }
        }
        // Omocodia in the day is decoded before the range check: "LN" = 02, "RM" = 51.
        assert!(TaxCode::parse(&with_check("RSSMRA80ALNH501")).is_ok());
        assert!(TaxCode::parse(&with_check("RSSMRA80ARMH501")).is_ok());
        // "VV" = 99.
        assert_eq!(
            TaxCode::parse(&with_check("RSSMRA80AVVH501")),
            Err(TaxCodeError::InvalidDay)
        );
    }

    #[test]
    fn partita_iva() {
        let real = TaxCode::parse("00743110157").unwrap();
        assert!(real.is_company());
        assert_eq!(real.as_str(), "00743110157");
        for first10 in ["1234567890", "0000000001", "9999999999", "0123456789"] {
            let code = piva(first10);
            let t = TaxCode::parse(&code).unwrap();
            assert!(t.is_company());
            // Every other last digit is refused.
            let good = code.as_bytes()[10];
            for d in b'0'..=b'9' {
                if d == good {
                    continue;
                }
                let bad = format!("{first10}{}", d as char);
                assert_eq!(
                    TaxCode::parse(&bad),
                    Err(TaxCodeError::InvalidCheckDigit),
                    "{bad}"
                );
            }
        }
        // Doubling with the minus-9 rule: 0000000005 → 5*2-9 = 1 → check 9.
        assert_eq!(piva("0000000005"), "00000000059");
        // Odd positions are not doubled: 5000000000 → check 5.
        assert_eq!(piva("5000000000"), "50000000005");
        assert_eq!(
            TaxCode::parse("00743110158"),
            Err(TaxCodeError::InvalidCheckDigit)
        );
        assert_eq!(
            TaxCode::parse("00000000000"),
            Err(TaxCodeError::InvalidFormat)
        );
        assert_eq!(
            TaxCode::parse("0074311015A"),
            Err(TaxCodeError::InvalidFormat)
        );
    }

    #[test]
    fn wrong_lengths_refused() {
        for s in [
            "",
            "RSSMRA80A01H501",
            "RSSMRA80A01H501UX",
            "0074311015",
            "007431101570",
            " RSSMRA80A01H501U",
            "RSSMRA80A01H501U ",
            " 00743110157",
        ] {
            assert_eq!(TaxCode::parse(s), Err(TaxCodeError::WrongLength), "{s:?}");
        }
        // Whitespace that keeps the length at 16 is a format error.
        assert_eq!(
            TaxCode::parse(" SSMRA80A01H501U"),
            Err(TaxCodeError::InvalidFormat)
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            TaxCodeError::WrongLength.to_string(),
            "must be a 16-character codice fiscale or an 11-digit partita IVA"
        );
        assert_eq!(
            TaxCodeError::InvalidCheckCharacter.to_string(),
            "has an invalid check character"
        );
        assert_eq!(
            TaxCodeError::InvalidFormat.to_string(),
            "has an invalid format"
        );
        assert_eq!(
            TaxCodeError::InvalidCheckDigit.to_string(),
            "has an invalid check digit"
        );
    }

    #[test]
    fn serde() {
        let t: TaxCode = serde_json::from_str(r#""rssmra80a01h501u""#).unwrap();
        assert_eq!(t.as_str(), VALID_CF);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{VALID_CF}\"")
        );
        let err = serde_json::from_str::<TaxCode>(r#""RSSMRA80A01H501X""#).unwrap_err();
        assert!(err.to_string().contains("has an invalid check character"));
        assert!(serde_json::from_str::<TaxCode>("12345678901").is_err());
        let t: TaxCode = "00743110157".parse().unwrap();
        assert!(t.is_company());
    }
}
