//! The parsers of outside input, fed anything (issue 21's fuzzing): none panics, and
//! what one accepts prints back to text it accepts again as the same value.

use proptest::prelude::*;

use super::money::Money;
use super::payment::Payment;
use super::schedule::PollSchedule;
use super::tax_code::TaxCode;

/// Text near what the parsers expect (digits, letters, separators) and anything at all.
fn inputs() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9.,+ e-]{0,16}",
        "[A-Za-z0-9]{0,20}",
        "([0-9]{1,3}[smhd]?:[0-9]{1,3}[smhd]?,?){0,4}(\\*:[0-9]{1,3}[smh])?",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn money_parses_anything_and_round_trips(text in inputs()) {
        if let Ok(money) = Money::parse(&text) {
            prop_assert_eq!(Money::parse(&money.to_string()), Ok(money));
        }
    }

    #[test]
    fn tax_codes_parse_anything_and_round_trip(text in inputs()) {
        if let Ok(code) = TaxCode::parse(&text) {
            prop_assert_eq!(TaxCode::parse(code.as_str()), Ok(code));
        }
    }

    #[test]
    fn poll_schedules_parse_anything_and_round_trip(text in inputs()) {
        if let Ok(schedule) = text.parse::<PollSchedule>() {
            prop_assert_eq!(schedule.to_string().parse::<PollSchedule>(), Ok(schedule));
        }
    }

    /// Payment events: random bytes, and the documented event with one byte changed.
    #[test]
    fn payment_events_parse_anything_and_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        at in 0usize..4096,
        byte in any::<u8>(),
    ) {
        let _ = serde_json::from_slice::<Payment>(&bytes);
        let mut mutated = super::payment::tests::EXAMPLE.as_bytes().to_vec();
        let at = at % mutated.len();
        mutated[at] = byte;
        if let Ok(payment) = serde_json::from_slice::<Payment>(&mutated) {
            let printed = serde_json::to_vec(&payment).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again: Payment = serde_json::from_slice(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, payment);
        }
    }
}
