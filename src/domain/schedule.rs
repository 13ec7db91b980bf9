//! The poll schedule of an open payment.
//!
//! Intervals are measured from the payment's `created_at` and evaluated at the
//! last check: given the payment's age at its last check, the first row whose
//! threshold is greater than that age gives the interval to the next check.
//!
//! The text form is a comma-separated list of `threshold:interval` rows ending
//! with a `*:interval` catch-all row, e.g. the default
//! `5m:1m,15m:5m,7d:1h,30d:6h,*:24h`. Durations are a positive integer followed
//! by `s`, `m`, `h` or `d`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

/// Why a schedule text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The text has no rows.
    #[error("must not be empty; use a form like 5m:1m,15m:5m,*:1h")]
    Empty,
    /// A row is not `threshold:interval`.
    #[error("row \"{0}\" must have the form threshold:interval, like 5m:1m")]
    MissingColon(String),
    /// A duration is not a positive integer followed by `s`, `m`, `h` or `d`.
    #[error("\"{0}\" is not a valid duration: use a positive integer followed by s, m, h or d, like 90s or 2d")]
    BadDuration(String),
    /// A row has a zero interval.
    #[error("row \"{0}\" has a zero interval; intervals must be greater than 0")]
    ZeroInterval(String),
    /// A threshold is not greater than the one before it.
    #[error("row \"{0}\" must have a greater threshold than the row before it")]
    NotIncreasing(String),
    /// The last row is not the `*` catch-all.
    #[error("must end with a catch-all row like *:24h")]
    MissingCatchAll,
    /// A `*` row appears before the end.
    #[error("the catch-all row \"{0}\" must be the last row")]
    CatchAllNotLast(String),
}

/// One row: applies while the age is below `threshold` (always, if `None`).
type Row = (Option<Duration>, Duration);

/// An ordered list of `(threshold, interval)` rows, the last one a catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSchedule {
    rows: Vec<Row>,
}

/// The longest jitter ever added to a check.
const MAX_JITTER_SECONDS: i64 = 30;

impl PollSchedule {
    /// The rows as `(threshold, interval)`; the last row has no threshold.
    pub fn rows(&self) -> &[(Option<Duration>, Duration)] {
        &self.rows
    }

    /// The interval to the next check for a payment that was `age` old at its
    /// last check (a negative age counts as 0).
    pub fn interval_at(&self, age: Duration) -> Duration {
        let age = age.max(Duration::zero());
        self.rows
            .iter()
            .find(|(threshold, _)| threshold.is_none_or(|t| t > age))
            .or(self.rows.last())
            .map_or_else(|| Duration::hours(24), |&(_, interval)| interval)
    }

    /// When to check next: `last_check + interval_at(last_check − created_at) + jitter`,
    /// but never after `expire_at`.
    pub fn next_check(
        &self,
        created_at: DateTime<Utc>,
        last_check: DateTime<Utc>,
        expire_at: DateTime<Utc>,
        jitter: Duration,
    ) -> DateTime<Utc> {
        let interval = self.interval_at(last_check.signed_duration_since(created_at));
        last_check
            .checked_add_signed(interval)
            .and_then(|t| t.checked_add_signed(jitter))
            .map_or(expire_at, |t| t.min(expire_at))
    }
}

impl Default for PollSchedule {
    /// `5m:1m,15m:5m,7d:1h,30d:6h,*:24h`.
    fn default() -> Self {
        PollSchedule {
            rows: vec![
                (Some(Duration::minutes(5)), Duration::minutes(1)),
                (Some(Duration::minutes(15)), Duration::minutes(5)),
                (Some(Duration::days(7)), Duration::hours(1)),
                (Some(Duration::days(30)), Duration::hours(6)),
                (None, Duration::hours(24)),
            ],
        }
    }
}

/// Parses `90s`, `5m`, `1h`, `2d` into a duration (zero allowed here).
fn parse_duration(s: &str) -> Option<Duration> {
    let unit_start = s.len().checked_sub(1)?;
    let (digits, unit) = (s.get(..unit_start)?, s.get(unit_start..)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    let n: i64 = digits.parse().ok()?;
    Duration::try_seconds(n.checked_mul(multiplier)?)
}

/// Formats a duration in the largest unit that represents it exactly, except
/// that exactly one day prints as `24h` (as in the default table's text form).
fn format_duration(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs > 86_400 && secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs != 0 && secs % 3_600 == 0 {
        format!("{}h", secs / 3_600)
    } else if secs != 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

impl FromStr for PollSchedule {
    type Err = ScheduleError;

    /// Parses the text form, e.g. `5m:1m,15m:5m,7d:1h,30d:6h,*:24h`; spaces
    /// around rows and durations are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(ScheduleError::Empty);
        }
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let mut rows: Vec<Row> = Vec::with_capacity(parts.len());
        for (i, row) in parts.iter().enumerate() {
            let (threshold, interval) = row
                .split_once(':')
                .ok_or_else(|| ScheduleError::MissingColon((*row).to_owned()))?;
            let (threshold, interval) = (threshold.trim(), interval.trim());
            let threshold = if threshold == "*" {
                if i + 1 != parts.len() {
                    return Err(ScheduleError::CatchAllNotLast((*row).to_owned()));
                }
                None
            } else {
                match parse_duration(threshold) {
                    Some(t) if t > Duration::zero() => Some(t),
                    _ => return Err(ScheduleError::BadDuration(threshold.to_owned())),
                }
            };
            let interval = parse_duration(interval)
                .ok_or_else(|| ScheduleError::BadDuration(interval.to_owned()))?;
            if interval.is_zero() {
                return Err(ScheduleError::ZeroInterval((*row).to_owned()));
            }
            if let (Some(t), Some((Some(prev), _))) = (threshold, rows.last()) {
                if t <= *prev {
                    return Err(ScheduleError::NotIncreasing((*row).to_owned()));
                }
            }
            rows.push((threshold, interval));
        }
        match rows.last() {
            Some((None, _)) => Ok(PollSchedule { rows }),
            _ => Err(ScheduleError::MissingCatchAll),
        }
    }
}

impl fmt::Display for PollSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (threshold, interval)) in self.rows.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match threshold {
                Some(t) => f.write_str(&format_duration(*t))?,
                None => f.write_str("*")?,
            }
            write!(f, ":{}", format_duration(*interval))?;
        }
        Ok(())
    }
}

/// A random delay in `[0, min(interval / 10, 30 s)]` at millisecond resolution,
/// to spread checks over time (0 if the interval is not positive).
pub fn jitter(interval: Duration, rng: &mut impl rand::Rng) -> Duration {
    let max = (interval / 10).min(Duration::seconds(MAX_JITTER_SECONDS));
    let max_ms = max.num_milliseconds();
    if max_ms <= 0 {
        return Duration::zero();
    }
    Duration::milliseconds(rng.gen_range(0..=max_ms))
}

/// The expiry of a payment created without one: one year (365 days) after creation.
pub fn default_expiry(created_at: DateTime<Utc>) -> DateTime<Utc> {
    created_at
        .checked_add_signed(Duration::days(365))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
    }

    fn min(m: i64) -> Duration {
        Duration::minutes(m)
    }

    #[test]
    fn default_table_boundaries() {
        let s = PollSchedule::default();
        let cases = [
            (Duration::zero(), min(1)),
            (min(4) + Duration::seconds(59), min(1)),
            (min(5) - Duration::milliseconds(1), min(1)),
            (min(5), min(5)),
            (min(14) + Duration::seconds(59), min(5)),
            (min(15), Duration::hours(1)),
            (Duration::days(6) + Duration::hours(23), Duration::hours(1)),
            (Duration::days(7), Duration::hours(6)),
            (
                Duration::days(30) - Duration::seconds(1),
                Duration::hours(6),
            ),
            (Duration::days(30), Duration::hours(24)),
            (Duration::days(3650), Duration::hours(24)),
        ];
        for (age, expected) in cases {
            assert_eq!(s.interval_at(age), expected, "age {age}");
        }
    }

    #[test]
    fn negative_age_counts_as_zero() {
        let s = PollSchedule::default();
        assert_eq!(s.interval_at(-Duration::days(40)), min(1));
        let s: PollSchedule = "1m:5s,*:30s".parse().unwrap();
        assert_eq!(s.interval_at(-Duration::seconds(1)), Duration::seconds(5));
    }

    #[test]
    fn default_text_form() {
        let s = PollSchedule::default();
        assert_eq!(s.to_string(), "5m:1m,15m:5m,7d:1h,30d:6h,*:24h");
        assert_eq!(
            "5m:1m,15m:5m,7d:1h,30d:6h,*:24h"
                .parse::<PollSchedule>()
                .unwrap(),
            s
        );
        assert_eq!(s.rows().len(), 5);
        assert_eq!(s.rows()[4], (None, Duration::hours(24)));
    }

    #[test]
    fn next_check_uses_age_at_last_check() {
        let s = PollSchedule::default();
        let created = t0();
        let expire = default_expiry(created);
        let last = created + min(3);
        assert_eq!(
            s.next_check(created, last, expire, Duration::zero()),
            last + min(1)
        );
        let last = created + min(10);
        assert_eq!(
            s.next_check(created, last, expire, Duration::seconds(7)),
            last + min(5) + Duration::seconds(7)
        );
        let last = created + Duration::days(8);
        assert_eq!(
            s.next_check(created, last, expire, Duration::zero()),
            last + Duration::hours(6)
        );
    }

    #[test]
    fn next_check_capped_at_expiry() {
        let s = PollSchedule::default();
        let created = t0();
        let expire = created + min(30);
        // Would be created + 20m + 1h.
        let last = created + min(20);
        assert_eq!(
            s.next_check(created, last, expire, Duration::zero()),
            expire
        );
        // Exactly at expiry is allowed.
        let expire = last + Duration::hours(1);
        assert_eq!(
            s.next_check(created, last, expire, Duration::zero()),
            expire
        );
        // Jitter cannot push past expiry either.
        assert_eq!(
            s.next_check(created, last, expire, Duration::seconds(10)),
            expire
        );
        // Already expired: the check is due at expiry.
        let expire = created + min(1);
        assert_eq!(
            s.next_check(created, last, expire, Duration::zero()),
            expire
        );
        // Never later than expiry over a range of ages.
        let expire = created + Duration::days(2);
        for h in 0..72 {
            let last = created + Duration::hours(h);
            let next = s.next_check(created, last, expire, Duration::seconds(30));
            assert!(next <= expire);
            assert!(next > last || last >= expire);
        }
    }

    #[test]
    fn next_check_does_not_overflow() {
        let s: PollSchedule = "*:100000000d".parse().unwrap();
        let far = DateTime::<Utc>::MAX_UTC;
        let last = far - Duration::days(1);
        assert_eq!(s.next_check(t0(), last, far, Duration::zero()), far);
    }

    #[test]
    fn two_second_schedule() {
        let s: PollSchedule = "*:2s".parse().unwrap();
        for age in [
            Duration::zero(),
            Duration::seconds(1),
            Duration::days(1),
            Duration::days(400),
        ] {
            assert_eq!(s.interval_at(age), Duration::seconds(2));
        }
        assert_eq!(s.to_string(), "*:2s");
    }

    #[test]
    fn format_duration_units() {
        let cases = [
            (Duration::seconds(1), "1s"),
            (Duration::seconds(59), "59s"),
            (Duration::seconds(60), "1m"),
            (Duration::seconds(90), "90s"),
            (min(90), "90m"),
            (min(120), "2h"),
            (Duration::hours(24), "24h"),
            (Duration::hours(25), "25h"),
            (Duration::hours(48), "2d"),
            (Duration::days(30), "30d"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Some(d));
        }
    }

    #[test]
    fn two_row_schedule() {
        let s: PollSchedule = "1m:5s,*:30s".parse().unwrap();
        assert_eq!(s.interval_at(Duration::seconds(59)), Duration::seconds(5));
        assert_eq!(s.interval_at(min(1)), Duration::seconds(30));
        assert_eq!(s.to_string(), "1m:5s,*:30s");
    }

    #[test]
    fn display_round_trips_in_largest_unit() {
        let s: PollSchedule = "90s:60s,120m:7200s,48h:86400s,*:1440m".parse().unwrap();
        assert_eq!(s.to_string(), "90s:1m,2h:2h,2d:24h,*:24h");
        assert_eq!(s.to_string().parse::<PollSchedule>().unwrap(), s);
        for text in [
            "*:2s",
            "1m:5s,*:30s",
            "5m:1m,15m:5m,7d:1h,30d:6h,*:24h",
            "61s:59s,*:3d",
        ] {
            let s: PollSchedule = text.parse().unwrap();
            assert_eq!(s.to_string().parse::<PollSchedule>().unwrap(), s, "{text}");
        }
        let d = PollSchedule::default();
        assert_eq!(d.to_string().parse::<PollSchedule>().unwrap(), d);
    }

    #[test]
    fn whitespace_around_rows_is_ignored() {
        let s: PollSchedule = " 1m : 5s , *:30s ".parse().unwrap();
        assert_eq!(s, "1m:5s,*:30s".parse().unwrap());
    }

    #[test]
    fn parse_errors() {
        use ScheduleError::*;
        let p = |s: &str| s.parse::<PollSchedule>().unwrap_err();
        assert_eq!(p(""), Empty);
        assert_eq!(p("   "), Empty);
        assert_eq!(p("5m"), MissingColon("5m".into()));
        assert_eq!(p("5m:1m,*"), MissingColon("*".into()));
        assert_eq!(p("5m:1m,,*:1h"), MissingColon("".into()));
        assert_eq!(p("5x:1m,*:1h"), BadDuration("5x".into()));
        assert_eq!(p("*:1"), BadDuration("1".into()));
        assert_eq!(p("*:m"), BadDuration("m".into()));
        assert_eq!(p("*:-1m"), BadDuration("-1m".into()));
        assert_eq!(p("*:+1m"), BadDuration("+1m".into()));
        assert_eq!(p("*:1.5h"), BadDuration("1.5h".into()));
        assert_eq!(p("*:1M"), BadDuration("1M".into()));
        assert_eq!(p("*:1w"), BadDuration("1w".into()));
        assert_eq!(p("*:"), BadDuration("".into()));
        assert_eq!(p("*:é"), BadDuration("é".into()));
        assert_eq!(p("*:1 m"), BadDuration("1 m".into()));
        assert_eq!(
            p("*:99999999999999999999d"),
            BadDuration("99999999999999999999d".into())
        );
        assert_eq!(
            p("*:999999999999999d"),
            BadDuration("999999999999999d".into())
        );
        assert_eq!(p("0m:1m,*:1h"), BadDuration("0m".into()));
        assert_eq!(p("*:0s"), ZeroInterval("*:0s".into()));
        assert_eq!(p("5m:0m,*:1h"), ZeroInterval("5m:0m".into()));
        assert_eq!(p("5m:1m,5m:2m,*:1h"), NotIncreasing("5m:2m".into()));
        assert_eq!(p("5m:1m,300s:2m,*:1h"), NotIncreasing("300s:2m".into()));
        assert_eq!(p("15m:1m,5m:2m,*:1h"), NotIncreasing("5m:2m".into()));
        assert_eq!(p("5m:1m"), MissingCatchAll);
        assert_eq!(p("5m:1m,15m:5m"), MissingCatchAll);
        assert_eq!(p("*:1m,5m:1m"), CatchAllNotLast("*:1m".into()));
        assert_eq!(p("*:1m,*:2m"), CatchAllNotLast("*:1m".into()));
    }

    #[test]
    fn error_messages_are_helpful() {
        assert!(ScheduleError::BadDuration("5x".into())
            .to_string()
            .contains("positive integer followed by s, m, h or d"));
        assert!(ScheduleError::MissingCatchAll.to_string().contains("*:"));
    }

    #[test]
    fn jitter_bounds() {
        let mut rng = StdRng::seed_from_u64(42);
        // interval / 10 is the bound below 5 minutes.
        let interval = min(1);
        let samples: Vec<Duration> = (0..1000).map(|_| jitter(interval, &mut rng)).collect();
        assert!(samples
            .iter()
            .all(|j| *j >= Duration::zero() && *j <= Duration::seconds(6)));
        assert!(samples.iter().any(|j| *j != samples[0]));
        assert!(samples.iter().any(|j| *j > Duration::seconds(5)));
        // Millisecond resolution.
        assert!(samples.iter().all(|j| j.subsec_nanos() % 1_000_000 == 0));
        // 30 s cap for long intervals.
        let samples: Vec<Duration> = (0..1000)
            .map(|_| jitter(Duration::hours(24), &mut rng))
            .collect();
        assert!(samples
            .iter()
            .all(|j| *j >= Duration::zero() && *j <= Duration::seconds(30)));
        assert!(samples.iter().any(|j| *j > Duration::seconds(25)));
        assert!(samples.iter().any(|j| *j != samples[0]));
        // Small intervals.
        for _ in 0..100 {
            assert!(jitter(Duration::seconds(2), &mut rng) <= Duration::milliseconds(200));
        }
    }

    #[test]
    fn jitter_zero_for_zero_or_negative_interval() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            assert_eq!(jitter(Duration::zero(), &mut rng), Duration::zero());
            assert_eq!(jitter(-min(5), &mut rng), Duration::zero());
            assert_eq!(
                jitter(Duration::milliseconds(9), &mut rng),
                Duration::zero()
            );
        }
    }

    #[test]
    fn default_expiry_is_365_days() {
        let created = t0();
        assert_eq!(
            default_expiry(created),
            Utc.with_ymd_and_hms(2024, 12, 31, 0, 0, 0).unwrap()
        );
        assert_eq!(default_expiry(created) - created, Duration::days(365));
        assert_eq!(
            default_expiry(DateTime::<Utc>::MAX_UTC),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
