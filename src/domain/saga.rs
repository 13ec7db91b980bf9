//! Saga step definitions for both payment flows, and the saga bookkeeping kept with the
//! payment row. Steps run in order; a compensatable step has a compensation that undoes
//! it, the pivot is the point of no return, retriable steps are retried until done.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::payment::PaymentType;

/// What kind of saga step a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Can be undone by its compensation.
    Compensatable,
    /// The point of no return: once it succeeded, the saga only goes forward.
    Pivot,
    /// Always succeeds eventually; retried (idempotently) until it does.
    Retriable,
}

/// A saga step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// PAGOPA: create the debt position at the intermediary.
    CreatePosition,
    /// PAGOPA: the citizen pays (learnt by polling, push or the citizen's return).
    AwaitPayment,
    /// PAGOPA: record the receipt and tell the platform.
    RecordReceipt,
    /// WALLET: hold the funds in the ledger.
    HoldFunds,
    /// WALLET: the gateway executes the payment (APPROVED or REJECTED).
    ExecuteGateway,
    /// WALLET: capture the hold on APPROVED, release it on REJECTED.
    SettleHold,
}

/// What undoes a compensatable step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compensation {
    /// Cancel the debt position at the intermediary.
    CancelPosition,
    /// Release the wallet hold.
    ReleaseHold,
}

impl Step {
    /// The kind of this step.
    pub fn kind(self) -> StepKind {
        match self {
            Step::CreatePosition | Step::HoldFunds => StepKind::Compensatable,
            Step::AwaitPayment | Step::ExecuteGateway => StepKind::Pivot,
            Step::RecordReceipt | Step::SettleHold => StepKind::Retriable,
        }
    }

    /// The compensation of a compensatable step.
    pub fn compensation(self) -> Option<Compensation> {
        match self {
            Step::CreatePosition => Some(Compensation::CancelPosition),
            Step::HoldFunds => Some(Compensation::ReleaseHold),
            _ => None,
        }
    }
}

/// The steps of a flow, in order.
pub fn steps(kind: PaymentType) -> &'static [Step] {
    match kind {
        PaymentType::Pagopa => &[
            Step::CreatePosition,
            Step::AwaitPayment,
            Step::RecordReceipt,
        ],
        PaymentType::Wallet => &[Step::HoldFunds, Step::ExecuteGateway, Step::SettleHold],
    }
}

/// The compensations to run, in reverse order of the steps done so far (`done` = how
/// many steps of the flow completed).
pub fn compensations(kind: PaymentType, done: usize) -> Vec<Compensation> {
    steps(kind)
        .iter()
        .take(done)
        .rev()
        .take_while(|s| s.kind() != StepKind::Pivot)
        .filter_map(|s| s.compensation())
        .collect()
}

/// What undoes a flow wound down before its pivot (a cancel, an expiry), in order.
pub fn undo_before_pivot(kind: PaymentType) -> Vec<Compensation> {
    let pivot = steps(kind)
        .iter()
        .position(|s| s.kind() == StepKind::Pivot)
        .unwrap_or(0);
    compensations(kind, pivot)
}

/// Why a payment is being wound down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindDown {
    /// Someone asked to cancel it: ends CANCELED.
    Cancel,
    /// Its expiry passed unpaid: ends EXPIRED.
    Expire,
}

/// Saga bookkeeping stored with the payment row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SagaState {
    /// Consecutive failed attempts of the current step or compensation.
    #[serde(default)]
    pub attempts: u32,
    /// The last error, for people and dashboards.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Set when compensations must run before the payment can end.
    #[serde(default)]
    pub wind_down: Option<WindDown>,
    /// The intermediary's checkout page for this payment (PAGOPA).
    #[serde(default)]
    pub checkout_url: Option<String>,
}

impl SagaState {
    /// Records a failed attempt and returns when to try again (exponential backoff
    /// from 1 s, capped at 5 minutes).
    pub fn failed(&mut self, error: String, now: DateTime<Utc>) -> DateTime<Utc> {
        self.attempts = self.attempts.saturating_add(1);
        self.last_error = Some(error);
        now + backoff(self.attempts)
    }

    /// Clears the failure count after a success.
    pub fn succeeded(&mut self) {
        self.attempts = 0;
        self.last_error = None;
    }
}

/// Backoff before attempt `n + 1` after `n` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(9);
    Duration::seconds((1_i64 << exp).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flow_has_compensatable_then_pivot_then_retriable() {
        for kind in [PaymentType::Pagopa, PaymentType::Wallet] {
            let kinds: Vec<_> = steps(kind).iter().map(|s| s.kind()).collect();
            assert_eq!(
                kinds,
                [
                    StepKind::Compensatable,
                    StepKind::Pivot,
                    StepKind::Retriable
                ]
            );
        }
    }

    #[test]
    fn compensations_run_in_reverse_and_stop_at_the_pivot() {
        assert_eq!(compensations(PaymentType::Pagopa, 0), vec![]);
        assert_eq!(
            compensations(PaymentType::Pagopa, 1),
            vec![Compensation::CancelPosition]
        );
        assert_eq!(
            compensations(PaymentType::Wallet, 1),
            vec![Compensation::ReleaseHold]
        );
        // past the pivot nothing is undone
        assert_eq!(compensations(PaymentType::Wallet, 2), vec![]);
        assert_eq!(
            undo_before_pivot(PaymentType::Pagopa),
            vec![Compensation::CancelPosition]
        );
        assert_eq!(
            undo_before_pivot(PaymentType::Wallet),
            vec![Compensation::ReleaseHold]
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::seconds(1));
        assert_eq!(backoff(2), Duration::seconds(2));
        assert_eq!(backoff(5), Duration::seconds(16));
        assert_eq!(backoff(40), Duration::seconds(300));
        let mut s = SagaState::default();
        let now = chrono::Utc::now();
        assert_eq!(s.failed("x".into(), now), now + Duration::seconds(1));
        assert_eq!(s.failed("y".into(), now), now + Duration::seconds(2));
        s.succeeded();
        assert_eq!(s.attempts, 0);
        assert!(s.last_error.is_none());
    }
}
