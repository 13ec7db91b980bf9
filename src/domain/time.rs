//! Timestamps: cassa keeps instants in UTC at whole seconds and writes them as ISO 8601
//! with the Europe/Rome offset and no fractional seconds, as the Opencity events do.

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Europe::Rome;
use serde::{Deserialize, Deserializer, Serializer};

/// The wall clock at the first reading, and the monotonic instant it corresponds to.
static ANCHOR: std::sync::OnceLock<(DateTime<Utc>, std::time::Instant)> =
    std::sync::OnceLock::new();

/// The current instant, to the millisecond: the wall clock at the first reading plus
/// tokio's monotonic time since. It follows tokio's paused clock in tests, so timers
/// and the due decisions they lead to use one and the same time.
pub fn precise_now() -> DateTime<Utc> {
    let (wall, mono) = ANCHOR.get_or_init(|| (Utc::now(), std::time::Instant::now()));
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(*mono);
    *wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
}

/// The current instant, truncated to whole seconds (what every stored timestamp uses).
pub fn now() -> DateTime<Utc> {
    precise_now().trunc_subsecs(0)
}

/// How far ahead a timestamp from outside may be (a payment's `expire_at`): ten years.
/// Far enough for any debt, and far from the end of what `format` writes as four-digit
/// years, which `parse` (RFC 3339) reads back.
pub const MAX_AHEAD_MONTHS: u32 = 120;

/// The latest instant accepted from outside at `now` (`MAX_AHEAD_MONTHS` later).
pub fn latest_accepted(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_months(chrono::Months::new(MAX_AHEAD_MONTHS))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Formats an instant as `2026-11-22T10:00:00+01:00` (Europe/Rome offset).
pub fn format(at: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Offset, Timelike};
    let local = at.with_timezone(&Rome);
    let offset = local.offset().fix().local_minus_utc();
    // By hand: chrono's `format` parses its pattern again on every call, and every
    // document and event carries several timestamps. chrono keeps what this does not
    // cover: years of other than four digits, Rome's mean time before 1893 (an offset of
    // seconds, which `%:z` rounds) and leap seconds.
    if !(0..=9999).contains(&local.year())
        || offset % 60 != 0
        || local.nanosecond() >= 1_000_000_000
    {
        return local.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
    }
    let (sign, offset) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
        offset / 3600,
        offset / 60 % 60
    )
}

/// A text that is not a timestamp with an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be an ISO 8601 timestamp with offset, like 2026-12-31T23:59:59+01:00")]
pub struct NotATimestamp;

/// Parses an ISO 8601 / RFC 3339 timestamp that carries an offset.
pub fn parse(text: &str) -> Result<DateTime<Utc>, NotATimestamp> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
        .map_err(|_| NotATimestamp)
}

/// serde `with` module for a required timestamp.
pub mod rome {
    use super::*;

    /// Serializes with the Europe/Rome offset.
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(at))
    }

    /// Deserializes any RFC 3339 timestamp with offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

/// serde `with` module for an optional timestamp (`null` when absent).
pub mod rome_opt {
    use super::*;

    /// Serializes with the Europe/Rome offset, or `null`.
    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&format(at)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes an RFC 3339 timestamp with offset, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn formats_with_rome_offset_winter_and_summer() {
        let winter = Utc.with_ymd_and_hms(2026, 1, 15, 9, 30, 0).unwrap();
        assert_eq!(format(&winter), "2026-01-15T10:30:00+01:00");
        let summer = Utc.with_ymd_and_hms(2026, 7, 15, 9, 30, 0).unwrap();
        assert_eq!(format(&summer), "2026-07-15T11:30:00+02:00");
    }

    #[test]
    fn formats_as_the_iso_pattern_across_a_year_and_its_clock_changes() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 7).unwrap();
        for hours in (0..24 * 366).step_by(7) {
            let at = start + chrono::Duration::hours(hours) + chrono::Duration::minutes(hours);
            let expected = at
                .with_timezone(&Rome)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string();
            assert_eq!(format(&at), expected);
        }
        let chrono = |at: DateTime<Utc>| {
            at.with_timezone(&Rome)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        };
        let far = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
        let mean_time = Utc.with_ymd_and_hms(1890, 6, 1, 12, 0, 0).unwrap();
        let leap = Utc
            .with_ymd_and_hms(2016, 12, 31, 23, 59, 59)
            .unwrap()
            .with_nanosecond(1_000_000_000)
            .unwrap();
        for at in [far, mean_time, leap] {
            assert_eq!(format(&at), chrono(at));
        }
    }

    /// The range every timestamp cassa writes lies in: from Rome's first whole-minute
    /// offset (1893) to the last instant whose Rome year has four digits.
    fn writable() -> std::ops::RangeInclusive<i64> {
        let first = Utc.with_ymd_and_hms(1893, 11, 1, 0, 0, 0).unwrap();
        let last = Utc.with_ymd_and_hms(9999, 12, 31, 22, 59, 59).unwrap();
        first.timestamp()..=last.timestamp()
    }

    proptest::proptest! {
        /// Issue 25 point 2: every instant cassa may write reads back as itself through
        /// the documents' format (and the accepted window ends well inside that range).
        #[test]
        fn every_writable_instant_reads_back(seconds in writable()) {
            let at = DateTime::from_timestamp(seconds, 0).unwrap();
            let text = format(&at);
            proptest::prop_assert_eq!(parse(&text), Ok(at), "{}", text);
            let json = serde_json::to_string(&Wrapped { at }).unwrap();
            let back: Wrapped = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back.at, at);
        }

        /// The accepted window, from now until `latest_accepted`, is writable.
        #[test]
        fn the_accepted_window_is_writable(ahead in 0..=(10 * 366 * 86_400_i64)) {
            let now = super::now();
            let latest = latest_accepted(now);
            let at = (now + chrono::Duration::seconds(ahead)).min(latest);
            proptest::prop_assert!(writable().contains(&at.timestamp()));
            proptest::prop_assert_eq!(parse(&format(&at)), Ok(at));
        }
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Wrapped {
        #[serde(with = "rome")]
        at: DateTime<Utc>,
    }

    #[test]
    fn the_year_ten_thousand_is_beyond_what_is_accepted() {
        let attack = parse("9999-12-31T23:30:00Z").unwrap();
        assert!(attack > latest_accepted(super::now()));
        // Written in Rome time it would be year 10000, which RFC 3339 cannot read back.
        assert!(parse(&format(&attack)).is_err());
    }

    #[test]
    fn parse_requires_offset_and_round_trips() {
        let t = parse("2026-07-15T11:30:00+02:00").unwrap();
        assert_eq!(format(&t), "2026-07-15T11:30:00+02:00");
        assert!(parse("2026-07-15T11:30:00").is_err());
        assert!(parse("yesterday").is_err());
    }
}
