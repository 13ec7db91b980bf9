//! Free text from outside (a payment's reason, names, addresses): which characters it
//! may not carry, and pagoPA's lengths for a payer's fields.

/// The longest full name (name and family name together) pagoPA takes for a payer.
pub const FULL_NAME_MAX: usize = 70;
/// pagoPA's longest street name.
pub const STREET_NAME_MAX: usize = 70;
/// pagoPA's longest building (civic) number.
pub const BUILDING_NUMBER_MAX: usize = 16;
/// pagoPA's longest postal code.
pub const POSTAL_CODE_MAX: usize = 16;
/// pagoPA's longest town name.
pub const TOWN_NAME_MAX: usize = 35;
/// pagoPA's longest province or region.
pub const COUNTRY_SUBDIVISION_MAX: usize = 35;

/// Whether `c` may not appear in free text: control characters (NUL, line breaks, DEL,
/// C1) and the invisible bidirectional formatting characters, which make a text read
/// differently from what it holds (a reason that shows another amount or payee).
pub fn is_refused(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// A refused character found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must not contain control or bidirectional formatting characters (found U+{:04X})", u32::from(*.0))]
pub struct RefusedCharacter(pub char);

/// The first refused character of `text`, if any (named by its code point).
pub fn check(text: &str) -> Result<(), RefusedCharacter> {
    match text.chars().find(|c| is_refused(*c)) {
        Some(c) => Err(RefusedCharacter(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidirectional_characters_are_refused() {
        for text in [
            "TARI\u{0}",
            "TARI\nrata",
            "TARI\r",
            "TARI\t1",
            "\u{7F}",
            "\u{85}",
            "Pay \u{202E}00.001",
            "\u{2066}x\u{2069}",
            "a\u{200F}b",
            "\u{061C}",
        ] {
            assert!(check(text).is_err(), "{text:?}");
        }
        for text in [
            "TARI 2026 rata 1",
            "Città di Forlì — mensa",
            "Ünïcødé €",
            "",
        ] {
            assert!(check(text).is_ok(), "{text:?}");
        }
        assert_eq!(
            check("x\u{202E}").unwrap_err().to_string(),
            "must not contain control or bidirectional formatting characters (found U+202E)"
        );
    }
}
