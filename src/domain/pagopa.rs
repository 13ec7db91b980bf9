//! pagoPA's codes: the IUV (identificativo univoco di versamento) a creditor gives each
//! debt position, the notice code (NAV) a citizen pays by, and the identifiers a GPD
//! configuration carries (the creditor's fiscal code, its segregation code, the IBAN of
//! the transfer), each checked as pagoPA's specifications define it.

use std::fmt;

/// The aux digit of notice codes whose IUV the creditor builds with a segregation code
/// (the multi-intermediary case pagoPA's GPD uses).
pub const AUX_DIGIT: char = '3';
/// Largest base a segregation code's IUVs can carry (13 digits).
pub const IUV_BASE_MAX: u64 = 9_999_999_999_999;

/// Why a pagoPA code or identifier is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("must be {0} digits")]
    Digits(usize),
    #[error("has wrong check digits")]
    CheckDigits,
    #[error("the IUV base must be at most {IUV_BASE_MAX}")]
    BaseTooLarge,
    #[error("must be an IBAN: a country code, 2 check digits and up to 30 letters or digits")]
    IbanShape,
    #[error("an Italian IBAN has 27 characters")]
    ItalianIbanLength,
}

fn all_digits(text: &str, len: usize) -> Result<(), CodeError> {
    if text.len() == len && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(CodeError::Digits(len))
    }
}

/// The creditor's segregation code: two digits, assigned by pagoPA per intermediary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegregationCode(u8);

impl SegregationCode {
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        all_digits(text, 2)?;
        text.parse()
            .map(SegregationCode)
            .map_err(|_| CodeError::Digits(2))
    }
}

impl fmt::Display for SegregationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

/// The two check digits of an IUV: `(aux digit, segregation code, base) mod 93`.
fn check_digits(segregation: SegregationCode, base: u64) -> u64 {
    // "3" + 2 + 13 digits = 16 digits, well inside u64.
    let number = 3 * 10u64.pow(15) + u64::from(segregation.0) * 10u64.pow(13) + base;
    number % 93
}

/// A 17-digit IUV: segregation code (2), base (13), check digits (2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Iuv(String);

impl Iuv {
    /// The IUV of `base` (a number from the creditor's sequence) under `segregation`.
    pub fn new(segregation: SegregationCode, base: u64) -> Result<Self, CodeError> {
        if base > IUV_BASE_MAX {
            return Err(CodeError::BaseTooLarge);
        }
        let check = check_digits(segregation, base);
        Ok(Iuv(format!("{segregation}{base:013}{check:02}")))
    }

    /// An IUV read back (from a position, a row): 17 digits whose check digits hold.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        all_digits(text, 17)?;
        let segregation = SegregationCode::parse(&text[..2])?;
        let base: u64 = text[2..15].parse().map_err(|_| CodeError::Digits(17))?;
        let iuv = Iuv::new(segregation, base)?;
        if iuv.0 == text {
            Ok(iuv)
        } else {
            Err(CodeError::CheckDigits)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The notice code a citizen pays it by: the aux digit, then the IUV.
    pub fn notice_code(&self) -> NoticeCode {
        NoticeCode(format!("{AUX_DIGIT}{}", self.0))
    }
}

impl fmt::Display for Iuv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An 18-digit notice code (numero avviso, NAV): aux digit 3 and the IUV.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoticeCode(String);

impl NoticeCode {
    /// A notice code of aux digit 3 whose IUV's check digits hold.
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        all_digits(text, 18)?;
        if !text.starts_with(AUX_DIGIT) {
            return Err(CodeError::CheckDigits);
        }
        Iuv::parse(&text[1..]).map(|iuv| iuv.notice_code())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// In groups of four, as a notice prints it (`3010 0000 0000 0099 49`).
    pub fn grouped(&self) -> String {
        in_groups_of_four(&self.0)
    }
}

impl fmt::Display for NoticeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A code in groups of four characters, as notices print codes.
pub fn in_groups_of_four(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    chars
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An amount as Italian notices print it: thousands by `.`, cents after `,`
/// (`1.020,99`).
pub fn italian_amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let euros = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped},{:02}", cents % 100)
}

/// The text of a notice's QR code (pagoPA's notice model): `PAGOPA|002|<notice code,
/// 18 digits>|<creditor fiscal code, 11 digits>|<amount in cents>`. `None` when the
/// codes are not of those lengths: no QR code is better than one nobody can pay by.
pub fn qr_payload(notice_code: &str, creditor: &str, cents: i64) -> Option<String> {
    let usable = all_digits(notice_code, 18).is_ok() && all_digits(creditor, 11).is_ok();
    (usable && cents > 0).then(|| format!("PAGOPA|002|{notice_code}|{creditor}|{cents}"))
}

/// A legal person's fiscal code (codice fiscale / partita IVA): 11 digits, the last a
/// check digit (odd places summed, even places doubled and reduced below 10).
pub fn check_organization_fiscal_code(text: &str) -> Result<(), CodeError> {
    all_digits(text, 11)?;
    let digits: Vec<u32> = text.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = digits[..10]
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                d
            } else {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            }
        })
        .sum();
    if (10 - sum % 10) % 10 == digits[10] {
        Ok(())
    } else {
        Err(CodeError::CheckDigits)
    }
}

/// An IBAN (ISO 13616): its check digits hold (mod 97), and an Italian one has 27
/// characters. Spaces are allowed between groups; the result is compact, upper case.
pub fn check_iban(text: &str) -> Result<String, CodeError> {
    let compact: String = text
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_ascii_uppercase();
    let bytes = compact.as_bytes();
    let shaped = (15..=34).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes[4..].iter().all(u8::is_ascii_alphanumeric);
    if !shaped {
        return Err(CodeError::IbanShape);
    }
    if compact.starts_with("IT") && bytes.len() != 27 {
        return Err(CodeError::ItalianIbanLength);
    }
    // The country and check digits move to the end; letters count as 10..=35.
    let rearranged = compact[4..].bytes().chain(compact[..4].bytes());
    let remainder = rearranged.fold(0u32, |acc, b| {
        if b.is_ascii_digit() {
            (acc * 10 + u32::from(b - b'0')) % 97
        } else {
            (acc * 100 + u32::from(b - b'A') + 10) % 97
        }
    });
    if remainder == 1 {
        Ok(compact)
    } else {
        Err(CodeError::CheckDigits)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn seg(text: &str) -> SegregationCode {
        SegregationCode::parse(text).unwrap()
    }

    /// The worked example of the IUV rule: segregation 01, base 99.
    #[test]
    fn the_worked_example_gives_its_iuv_and_notice_code() {
        let iuv = Iuv::new(seg("01"), 99).unwrap();
        assert_eq!(iuv.as_str(), "01000000000009949");
        assert_eq!(iuv.notice_code().as_str(), "301000000000009949");
        assert_eq!(iuv.notice_code().grouped(), "3010 0000 0000 0099 49");
        assert_eq!(Iuv::parse("01000000000009949").unwrap(), iuv);
        assert_eq!(
            NoticeCode::parse("301000000000009949").unwrap(),
            iuv.notice_code()
        );
    }

    #[test]
    fn codes_with_wrong_digits_are_refused() {
        assert_eq!(Iuv::parse("01000000000009948"), Err(CodeError::CheckDigits));
        assert_eq!(Iuv::parse("0100000000000994"), Err(CodeError::Digits(17)));
        assert_eq!(
            NoticeCode::parse("001000000000009949"),
            Err(CodeError::CheckDigits),
            "another aux digit"
        );
        assert_eq!(
            Iuv::new(seg("01"), IUV_BASE_MAX + 1),
            Err(CodeError::BaseTooLarge)
        );
        assert!(SegregationCode::parse("1").is_err());
        assert!(SegregationCode::parse("a1").is_err());
    }

    #[test]
    fn organization_fiscal_codes_carry_their_check_digit() {
        // Published codes of Italian public bodies.
        for good in ["02438750586", "80016350821", "00514490010"] {
            assert_eq!(check_organization_fiscal_code(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_organization_fiscal_code("02438750587"),
            Err(CodeError::CheckDigits)
        );
        assert_eq!(
            check_organization_fiscal_code("0243875058"),
            Err(CodeError::Digits(11))
        );
    }

    #[test]
    fn ibans_carry_their_check_digits() {
        // ISO 13616's and the Italian banks' example IBANs.
        assert_eq!(
            check_iban("IT60 X054 2811 1010 0000 0123 456"),
            Ok("IT60X0542811101000000123456".to_string())
        );
        assert!(check_iban("GB82WEST12345698765432").is_ok());
        assert_eq!(
            check_iban("IT61X0542811101000000123456"),
            Err(CodeError::CheckDigits)
        );
        assert_eq!(
            check_iban("IT60X054281110100000012345"),
            Err(CodeError::ItalianIbanLength)
        );
        assert_eq!(check_iban("not an iban"), Err(CodeError::IbanShape));
    }

    #[test]
    fn amounts_print_the_italian_way() {
        assert_eq!(italian_amount(102_099), "1.020,99");
        assert_eq!(italian_amount(5), "0,05");
        assert_eq!(italian_amount(100), "1,00");
        assert_eq!(italian_amount(123_456_789), "1.234.567,89");
        assert_eq!(italian_amount(-1234), "-12,34");
    }

    #[test]
    fn the_qr_payload_follows_the_notice_model() {
        assert_eq!(
            qr_payload("301000000000009949", "02438750586", 102_099).as_deref(),
            Some("PAGOPA|002|301000000000009949|02438750586|102099")
        );
        assert_eq!(qr_payload("3010000000000099", "02438750586", 1), None);
        assert_eq!(
            qr_payload("301000000000009949", "RSSMRA80A01H501U", 1),
            None
        );
        assert_eq!(qr_payload("301000000000009949", "02438750586", 0), None);
    }

    proptest! {
        /// Every IUV cassa can generate gives an 18-digit notice code that reads back with
        /// valid check digits, and two bases never share one.
        #[test]
        fn every_generated_notice_code_reads_back(
            segregation in 0u8..100,
            base in 0u64..=IUV_BASE_MAX,
            other in 0u64..=IUV_BASE_MAX,
        ) {
            let segregation = SegregationCode(segregation);
            let iuv = Iuv::new(segregation, base).unwrap();
            let nav = iuv.notice_code();
            prop_assert_eq!(nav.as_str().len(), 18);
            prop_assert_eq!(NoticeCode::parse(nav.as_str()).unwrap(), nav.clone());
            prop_assert_eq!(Iuv::parse(iuv.as_str()).unwrap(), iuv);
            if other != base {
                prop_assert_ne!(Iuv::new(segregation, other).unwrap().notice_code(), nav);
            }
        }
    }
}
