//! In-memory state of the intermediary/gateway simulator: debt positions, gateway
//! executions, failure-injection counters and statistics, plus the rules that
//! decide how each call behaves.
//!
//! Every method here is synchronous and holds the mutex only for the duration of
//! the call, so handlers never keep the lock across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SimulatorConfig, SimulatorStats};

/// How many calls answer 503 before a "flaky" (cents == 3) resource behaves normally.
pub(crate) const UNAVAILABLE_CALLS: u32 = 2;

/// Cents value selecting the "rejected" (gateway) behaviour.
pub(crate) const CENTS_REJECT: i64 = 1;
/// Cents value selecting the "hang" behaviour.
pub(crate) const CENTS_HANG: i64 = 2;
/// Cents value selecting the "503 twice, then normal" behaviour.
pub(crate) const CENTS_FLAKY: i64 = 3;

/// The behaviour selector: the cents part of an amount.
pub(crate) fn cents(amount_cents: i64) -> i64 {
    amount_cents.rem_euclid(100)
}

/// Errors produced by the simulator's operations.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum SimError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The debt position does not exist.
    #[error("debt position not found")]
    NotFound,
    /// The requested transition is not allowed from the current status.
    #[error("{0}")]
    Conflict(String),
    /// The caller did not present the configured API key.
    #[error("missing or wrong X-Api-Key")]
    Unauthorized,
    /// Injected failure: the service is temporarily unavailable.
    #[error("service temporarily unavailable (simulated)")]
    Unavailable,
}

/// Lifecycle status of a debt position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum PositionStatus {
    /// Waiting to be paid.
    Pending,
    /// Paid by the citizen.
    Paid,
    /// The citizen's last payment attempt failed.
    Failed,
    /// Canceled by the creditor.
    Canceled,
}

/// Body of `POST /sim/positions`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct NewPosition {
    pub iud: String,
    pub amount_cents: i64,
    pub reason: String,
    pub debtor_tax_code: String,
    #[serde(default)]
    pub debtor_name: Option<String>,
    #[serde(default)]
    pub expire_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub notify_url: Option<String>,
}

/// A stored debt position.
#[derive(Debug, Clone)]
#[allow(dead_code)] // debtor data and expiry are stored for completeness only
pub(crate) struct Position {
    pub iuv: String,
    pub iud: String,
    pub notice_code: String,
    pub amount_cents: i64,
    pub reason: String,
    pub debtor_tax_code: String,
    pub debtor_name: Option<String>,
    pub expire_at: Option<DateTime<Utc>>,
    pub notify_url: Option<String>,
    pub status: PositionStatus,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub transaction_id: Option<String>,
}

/// Gateway outcome of a payment execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Outcome {
    /// The payment was approved.
    Approved,
    /// The payment was rejected.
    Rejected,
}

/// Body of `POST /sim/payments`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ExecuteRequest {
    pub payment_id: Uuid,
    #[serde(default)]
    #[allow(dead_code)] // accepted for realism, not used
    pub account_id: Option<Uuid>,
    pub amount_cents: i64,
}

/// A stored gateway execution.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Execution {
    pub payment_id: Uuid,
    pub outcome: Outcome,
    pub transaction_id: String,
    #[serde(skip)]
    pub amount_cents: i64,
}

#[derive(Default)]
struct Inner {
    /// Positions by iuv.
    positions: HashMap<String, Position>,
    /// iud -> iuv.
    by_iud: HashMap<String, String>,
    /// Injected 503s already served, per iud.
    position_unavailable: HashMap<String, u32>,
    /// Executions by payment id.
    executions: HashMap<Uuid, Execution>,
    /// Injected 503s already served, per payment id.
    execution_unavailable: HashMap<Uuid, u32>,
    stats: SimulatorStats,
}

/// Shared simulator state.
pub(crate) struct State {
    pub config: SimulatorConfig,
    pub http: reqwest::Client,
    inner: Mutex<Inner>,
}

/// Increments the 503 counter for `key`; true if this call must answer 503.
fn take_unavailable<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K) -> bool {
    let served = map.entry(key).or_insert(0);
    if *served < UNAVAILABLE_CALLS {
        *served += 1;
        true
    } else {
        false
    }
}

impl State {
    /// Creates an empty state.
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            config,
            // Pushes go to loopback only: a redirect must not take them anywhere else.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current counters.
    pub fn stats(&self) -> SimulatorStats {
        self.lock().stats
    }

    /// Creates (or returns the existing, by iud) debt position.
    /// Returns the position and whether it was newly created.
    pub fn create_position(&self, req: NewPosition) -> Result<(Position, bool), SimError> {
        if req.iud.trim().is_empty() {
            return Err(SimError::BadRequest("iud must not be empty".into()));
        }
        if req.amount_cents <= 0 {
            return Err(SimError::BadRequest("amount_cents must be > 0".into()));
        }
        let mut inner = self.lock();
        if cents(req.amount_cents) == CENTS_FLAKY
            && take_unavailable(&mut inner.position_unavailable, req.iud.clone())
        {
            return Err(SimError::Unavailable);
        }
        if let Some(existing) = inner
            .by_iud
            .get(&req.iud)
            .and_then(|iuv| inner.positions.get(iuv))
            .cloned()
        {
            inner.stats.duplicate_creates += 1;
            return Ok((existing, false));
        }
        let mut rng = rand::thread_rng();
        let iuv = loop {
            let candidate = rng.gen_range(10_000_000_000_000_000u64..100_000_000_000_000_000u64);
            let candidate = candidate.to_string();
            if !inner.positions.contains_key(&candidate) {
                break candidate;
            }
        };
        let position = Position {
            notice_code: format!("3{iuv}"),
            iuv: iuv.clone(),
            iud: req.iud.clone(),
            amount_cents: req.amount_cents,
            reason: req.reason,
            debtor_tax_code: req.debtor_tax_code,
            debtor_name: req.debtor_name,
            expire_at: req.expire_at,
            notify_url: req.notify_url.filter(|u| !u.is_empty()),
            status: PositionStatus::Pending,
            created_at: Utc::now(),
            paid_at: None,
            transaction_id: None,
        };
        inner.by_iud.insert(req.iud, iuv.clone());
        inner.positions.insert(iuv, position.clone());
        inner.stats.positions_created += 1;
        Ok((position, true))
    }

    /// Looks a position up without side effects.
    pub fn get_position(&self, iuv: &str) -> Option<Position> {
        self.lock().positions.get(iuv).cloned()
    }

    /// A status call: counts it and applies the 503 rule.
    pub fn status_call(&self, iuv: &str) -> Result<Position, SimError> {
        let mut inner = self.lock();
        inner.stats.status_calls += 1;
        let position = inner
            .positions
            .get(iuv)
            .cloned()
            .ok_or(SimError::NotFound)?;
        if cents(position.amount_cents) == CENTS_FLAKY
            && take_unavailable(&mut inner.position_unavailable, position.iud.clone())
        {
            return Err(SimError::Unavailable);
        }
        Ok(position)
    }

    /// Cancels a position (idempotent; a paid one cannot be canceled).
    pub fn cancel(&self, iuv: &str) -> Result<Position, SimError> {
        let mut inner = self.lock();
        let position = inner.positions.get_mut(iuv).ok_or(SimError::NotFound)?;
        match position.status {
            PositionStatus::Paid => Err(SimError::Conflict(
                "debt position already paid, cannot be canceled".into(),
            )),
            _ => {
                position.status = PositionStatus::Canceled;
                Ok(position.clone())
            }
        }
    }

    /// Pays a position. Returns the position and whether it just became PAID.
    pub fn pay(&self, iuv: &str) -> Result<(Position, bool), SimError> {
        let mut inner = self.lock();
        let position = inner.positions.get_mut(iuv).ok_or(SimError::NotFound)?;
        match position.status {
            PositionStatus::Paid => Ok((position.clone(), false)),
            PositionStatus::Canceled => Err(SimError::Conflict(
                "debt position canceled, cannot be paid".into(),
            )),
            PositionStatus::Pending | PositionStatus::Failed => {
                position.status = PositionStatus::Paid;
                position.paid_at = Some(Utc::now());
                position.transaction_id = Some(Uuid::new_v4().to_string());
                Ok((position.clone(), true))
            }
        }
    }

    /// Marks the citizen's payment attempt as failed.
    pub fn fail(&self, iuv: &str) -> Result<Position, SimError> {
        let mut inner = self.lock();
        let position = inner.positions.get_mut(iuv).ok_or(SimError::NotFound)?;
        match position.status {
            PositionStatus::Paid => Err(SimError::Conflict(
                "debt position already paid, cannot fail".into(),
            )),
            PositionStatus::Canceled => Err(SimError::Conflict(
                "debt position canceled, cannot fail".into(),
            )),
            PositionStatus::Pending | PositionStatus::Failed => {
                position.status = PositionStatus::Failed;
                Ok(position.clone())
            }
        }
    }

    /// Gateway execution, idempotent by payment id.
    pub fn execute(&self, req: &ExecuteRequest) -> Result<Execution, SimError> {
        if req.amount_cents <= 0 {
            return Err(SimError::BadRequest("amount_cents must be > 0".into()));
        }
        let mut inner = self.lock();
        if let Some(existing) = inner.executions.get(&req.payment_id).cloned() {
            inner.stats.duplicate_executions += 1;
            return Ok(existing);
        }
        let c = cents(req.amount_cents);
        if c == CENTS_FLAKY && take_unavailable(&mut inner.execution_unavailable, req.payment_id) {
            return Err(SimError::Unavailable);
        }
        let outcome = if c == CENTS_REJECT {
            Outcome::Rejected
        } else {
            Outcome::Approved
        };
        let execution = Execution {
            payment_id: req.payment_id,
            outcome,
            transaction_id: Uuid::new_v4().to_string(),
            amount_cents: req.amount_cents,
        };
        inner.executions.insert(req.payment_id, execution.clone());
        inner.stats.gateway_executions += 1;
        Ok(execution)
    }
}
