//! The outside world a payment talks to: a pagoPA-style intermediary (debt positions)
//! and a payment-system gateway (wallet charges), behind one trait so actors can be
//! tested with a mock. `http` is the real adapter for the simulator's API.

pub mod http;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What cassa asks the intermediary to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionRequest {
    /// Idempotency key at the intermediary: the same iud returns the same position.
    pub iud: String,
    pub amount_cents: i64,
    pub reason: String,
    pub debtor_tax_code: String,
    pub debtor_name: Option<String>,
    #[serde(with = "crate::domain::time::rome_opt")]
    pub expire_at: Option<DateTime<Utc>>,
    /// Where the checkout sends the citizen back.
    pub return_url: Option<String>,
    /// Where the intermediary pushes the outcome.
    pub notify_url: Option<String>,
}

/// The state of a debt position at the intermediary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PositionState {
    Pending,
    Paid,
    Failed,
    Canceled,
}

/// A debt position as the intermediary reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Position {
    pub iuv: String,
    pub notice_code: String,
    pub status: PositionState,
    pub checkout_url: String,
    #[serde(default, with = "crate::domain::time::rome_opt")]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub transaction_id: Option<String>,
}

/// What cassa asks the gateway to execute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayRequest {
    pub payment_id: Uuid,
    pub account_id: Option<Uuid>,
    pub amount_cents: i64,
}

/// The gateway's decision (the WALLET pivot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayOutcome {
    Approved,
    Rejected,
}

/// The gateway's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GatewayResult {
    pub outcome: GatewayOutcome,
    pub transaction_id: String,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntermediaryError {
    /// Worth retrying later: timeout, connection refused, 5xx, 429.
    #[error("temporarily unavailable: {0}")]
    Transient(String),
    /// Retrying will not help: the intermediary refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The position was already paid (a cancel came too late).
    #[error("already paid")]
    AlreadyPaid,
    /// No such position.
    #[error("not found")]
    NotFound,
}

/// A pagoPA-style intermediary and payment-system gateway.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Intermediary: Send + Sync + 'static {
    /// Creates (idempotently by iud) a debt position.
    async fn create_position(&self, request: &PositionRequest) -> Result<Position, IntermediaryError>;
    /// Reads a position's current state.
    async fn position(&self, iuv: &str) -> Result<Position, IntermediaryError>;
    /// Cancels a position (idempotent; `AlreadyPaid` if it was paid).
    async fn cancel_position(&self, iuv: &str) -> Result<(), IntermediaryError>;
    /// Executes a wallet payment at the gateway (idempotent by payment id).
    async fn execute_payment(&self, request: &GatewayRequest) -> Result<GatewayResult, IntermediaryError>;
}
