//! The payment life cycle: statuses and the transitions allowed between them.
//!
//! ```text
//! CREATION_PENDING → PAYMENT_PENDING | CREATION_FAILED | CANCELED
//! PAYMENT_PENDING  → PAYMENT_STARTED | COMPLETE | EXPIRED | CANCELED | PAYMENT_FAILED
//! PAYMENT_STARTED  → COMPLETE | EXPIRED | PAYMENT_FAILED | PAYMENT_PENDING
//! ```
//!
//! COMPLETE, CREATION_FAILED, PAYMENT_FAILED, EXPIRED and CANCELED are final.

use std::fmt;
use std::str::FromStr;

/// The status of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// The payment is being registered with the intermediary.
    CreationPending,
    /// The payment is registered and waiting to be paid.
    PaymentPending,
    /// The payer has started paying.
    PaymentStarted,
    /// The payment has been paid (final).
    Complete,
    /// The payment could not be registered (final).
    CreationFailed,
    /// The payment attempt failed for good (final).
    PaymentFailed,
    /// The payment was not paid before its expiry (final).
    Expired,
    /// The payment was canceled (final).
    Canceled,
}

/// A transition refused by [`PaymentStatus::transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {from} -> {to}")]
pub struct IllegalTransition {
    /// The current status.
    pub from: PaymentStatus,
    /// The requested status.
    pub to: PaymentStatus,
}

/// A string that is not the exact name of a [`PaymentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status \"{0}\": must be one of CREATION_PENDING, PAYMENT_PENDING, \
     PAYMENT_STARTED, COMPLETE, CREATION_FAILED, PAYMENT_FAILED, EXPIRED, CANCELED"
)]
pub struct UnknownPaymentStatus(pub String);

impl PaymentStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [PaymentStatus; 8] = [
        PaymentStatus::CreationPending,
        PaymentStatus::PaymentPending,
        PaymentStatus::PaymentStarted,
        PaymentStatus::Complete,
        PaymentStatus::CreationFailed,
        PaymentStatus::PaymentFailed,
        PaymentStatus::Expired,
        PaymentStatus::Canceled,
    ];

    /// The non-final statuses.
    pub const OPEN: [PaymentStatus; 3] = [
        PaymentStatus::CreationPending,
        PaymentStatus::PaymentPending,
        PaymentStatus::PaymentStarted,
    ];

    /// Whether no further transition is possible from this status.
    pub fn is_final(self) -> bool {
        !Self::OPEN.contains(&self)
    }

    /// Whether moving from `self` to `next` is allowed.
    pub fn can_transition_to(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (CreationPending, PaymentPending | CreationFailed | Canceled)
                | (
                    PaymentPending,
                    PaymentStarted | Complete | Expired | Canceled | PaymentFailed
                )
                | (
                    PaymentStarted,
                    Complete | Expired | PaymentFailed | PaymentPending
                )
        )
    }

    /// Returns `next` if moving there from `self` is allowed.
    pub fn transition(self, next: PaymentStatus) -> Result<PaymentStatus, IllegalTransition> {
        if self.can_transition_to(next) {
            Ok(next)
        } else {
            Err(IllegalTransition {
                from: self,
                to: next,
            })
        }
    }

    /// The upper-case wire name, e.g. `"CREATION_PENDING"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::CreationPending => "CREATION_PENDING",
            PaymentStatus::PaymentPending => "PAYMENT_PENDING",
            PaymentStatus::PaymentStarted => "PAYMENT_STARTED",
            PaymentStatus::Complete => "COMPLETE",
            PaymentStatus::CreationFailed => "CREATION_FAILED",
            PaymentStatus::PaymentFailed => "PAYMENT_FAILED",
            PaymentStatus::Expired => "EXPIRED",
            PaymentStatus::Canceled => "CANCELED",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = UnknownPaymentStatus;

    /// Parses the exact upper-case name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownPaymentStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    fn allowed(from: PaymentStatus) -> &'static [PaymentStatus] {
        match from {
            CreationPending => &[PaymentPending, CreationFailed, Canceled],
            PaymentPending => &[PaymentStarted, Complete, Expired, Canceled, PaymentFailed],
            PaymentStarted => &[Complete, Expired, PaymentFailed, PaymentPending],
            Complete | CreationFailed | PaymentFailed | Expired | Canceled => &[],
        }
    }

    #[test]
    fn full_transition_table() {
        let mut allowed_count = 0;
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                let expected = allowed(from).contains(&to);
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
                match from.transition(to) {
                    Ok(next) => {
                        assert!(expected, "{from} -> {to}");
                        assert_eq!(next, to);
                    }
                    Err(e) => {
                        assert!(!expected, "{from} -> {to}");
                        assert_eq!(e, IllegalTransition { from, to });
                    }
                }
                allowed_count += usize::from(expected);
            }
        }
        assert_eq!(allowed_count, 12);
    }

    #[test]
    fn finals_have_no_outgoing_transitions() {
        let finals = [Complete, CreationFailed, PaymentFailed, Expired, Canceled];
        for from in PaymentStatus::ALL {
            assert_eq!(from.is_final(), finals.contains(&from), "{from}");
        }
        for from in finals {
            for to in PaymentStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
        for open in PaymentStatus::OPEN {
            assert!(!open.is_final());
            assert!(PaymentStatus::ALL
                .iter()
                .any(|&to| open.can_transition_to(to)));
        }
    }

    #[test]
    fn self_transitions_refused() {
        for s in PaymentStatus::ALL {
            assert!(!s.can_transition_to(s), "{s}");
            assert!(s.transition(s).is_err());
        }
    }

    #[test]
    fn all_is_complete_and_distinct() {
        let set: std::collections::HashSet<_> = PaymentStatus::ALL.into_iter().collect();
        assert_eq!(set.len(), 8);
        let names: std::collections::HashSet<_> =
            PaymentStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn names_round_trip() {
        let expected = [
            "CREATION_PENDING",
            "PAYMENT_PENDING",
            "PAYMENT_STARTED",
            "COMPLETE",
            "CREATION_FAILED",
            "PAYMENT_FAILED",
            "EXPIRED",
            "CANCELED",
        ];
        for (s, name) in PaymentStatus::ALL.into_iter().zip(expected) {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<PaymentStatus>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<PaymentStatus>(&format!("\"{name}\"")).unwrap(),
                s
            );
        }
    }

    #[test]
    fn from_str_is_exact() {
        for bad in ["complete", "Complete", " COMPLETE", "COMPLETE ", "", "PAID"] {
            let err = bad.parse::<PaymentStatus>().unwrap_err();
            assert_eq!(err, UnknownPaymentStatus(bad.to_owned()));
            let msg = err.to_string();
            for s in PaymentStatus::ALL {
                assert!(msg.contains(s.as_str()), "{msg}");
            }
        }
    }

    #[test]
    fn illegal_transition_message() {
        let e = Complete.transition(PaymentPending).unwrap_err();
        assert_eq!(
            e.to_string(),
            "illegal transition COMPLETE -> PAYMENT_PENDING"
        );
    }
}
