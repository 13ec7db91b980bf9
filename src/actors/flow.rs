//! The saga steps of both flows, as functions from the current payment row to the next
//! one. Each step decides through the domain rules, talks to the intermediary, and
//! persists the result (with its outbox event when the status changes) in one
//! transaction. The actor runs these one at a time, so they never interleave.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Deps, PaymentError};
use crate::domain::payment::{Payment, PaymentType};
use crate::domain::saga::{undo_before_pivot, Compensation, WindDown};
use crate::domain::schedule;
use crate::domain::status::PaymentStatus;
use crate::domain::time;
use crate::intermediary::{
    GatewayOutcome, GatewayRequest, Intermediary, IntermediaryError, PositionRequest, PositionState,
};
use crate::store::{Change, HoldAction, StoreError, StoredPayment};

/// At most this many steps per drive, so one actor never loops forever.
const MAX_STEPS_PER_DRIVE: usize = 8;

/// When `advance` checks the payment first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstCheck {
    /// When `next_check_at` says (a timer fired).
    WhenDue,
    /// At once, whatever `next_check_at` says (someone asked: a landing, a push, an
    /// operator).
    Now,
}

/// Runs every step that is due, until the payment ends or waits for its next check.
pub async fn advance(
    deps: &Deps,
    mut row: StoredPayment,
    first: FirstCheck,
) -> Result<StoredPayment, StoreError> {
    let mut check_now = first == FirstCheck::Now;
    for _ in 0..MAX_STEPS_PER_DRIVE {
        let now = time::now();
        // next_check_at carries millisecond jitter: compare with the precise clock.
        let precise = time::precise_now();
        let due = check_now || row.next_check_at.is_none_or(|at| at <= precise);
        if Work::of_row(deps, &row) == Work::Done || !due {
            break;
        }
        check_now = false;
        let next = step(deps, &row, now).await?;
        let progressed =
            next.payment.status != row.payment.status || next.saga.wind_down != row.saga.wind_down;
        row = next;
        if !progressed {
            break;
        }
    }
    Ok(row)
}

/// Whether the payment still has work: it is open, or (updater role) the platform has
/// not been told its outcome yet.
/// What is left to do for a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// It is open: its checks call the intermediary.
    Open,
    /// It ended, and the platform is still to be told (the updater role).
    Notify,
    /// Nothing: its actor stops.
    Done,
}

impl Work {
    /// From whether the payment is open and whether the platform is still to be told.
    pub fn of(deps: &Deps, open: bool, notify_pending: bool) -> Work {
        if open {
            Work::Open
        } else if deps.notify_platform && notify_pending {
            Work::Notify
        } else {
            Work::Done
        }
    }

    pub fn of_row(deps: &Deps, row: &StoredPayment) -> Work {
        Work::of(
            deps,
            !row.payment.status.is_final(),
            row.payment.notify_pending(),
        )
    }
}

/// Runs an operation on a row; when the row changed underneath (optimistic
/// concurrency), reloads it and tries again, a few times.
pub async fn with_reload<T>(
    deps: &Deps,
    mut row: StoredPayment,
    op: impl AsyncFn(&Deps, StoredPayment) -> Result<T, PaymentError>,
) -> Result<T, PaymentError> {
    for _ in 0..3 {
        match op(deps, row.clone()).await {
            Err(PaymentError::Store(StoreError::Conflict(id))) => {
                tracing::debug!(payment_id = %id, "row changed concurrently, reloading");
                row =
                    deps.store.payment(id).await?.ok_or_else(|| {
                        PaymentError::Unavailable(format!("payment {id} vanished"))
                    })?;
            }
            other => return other,
        }
    }
    Err(PaymentError::Unavailable(
        "the payment keeps changing concurrently; retry".into(),
    ))
}

/// The next step for the payment's flow and status.
async fn step(
    deps: &Deps,
    row: &StoredPayment,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    let status = row.payment.status;
    if status.is_final() {
        return notify_platform(deps, row, now).await;
    }
    if let Some(reason) = row.saga.wind_down {
        // Cancel applies before the checkout; expiry also while the citizen is at it
        // (PAYMENT_STARTED → EXPIRED is legal).
        let applies = matches!(
            status,
            PaymentStatus::CreationPending | PaymentStatus::PaymentPending
        ) || (status == PaymentStatus::PaymentStarted && reason == WindDown::Expire);
        if applies {
            return wind_down(deps, row, reason, now).await;
        }
    }
    match (row.payment.kind, status) {
        (PaymentType::Pagopa, PaymentStatus::CreationPending) => {
            create_position(deps, row, now).await
        }
        (PaymentType::Pagopa, PaymentStatus::PaymentPending | PaymentStatus::PaymentStarted) => {
            check_position(deps, row, now).await
        }
        // The funds were held in the transaction that created the payment.
        (PaymentType::Wallet, PaymentStatus::CreationPending) => {
            move_to(deps, row, PaymentStatus::PaymentPending, now).await
        }
        // Recorded before the gateway is called, so a crash cannot hide the call.
        (PaymentType::Wallet, PaymentStatus::PaymentPending) => {
            move_to(deps, row, PaymentStatus::PaymentStarted, now).await
        }
        (PaymentType::Wallet, PaymentStatus::PaymentStarted) => {
            execute_gateway(deps, row, now).await
        }
        _ => Ok(row.clone()),
    }
}

/// Persists `payment`/`saga` as the successor of `row`, with `next_check_at`.
async fn save(
    deps: &Deps,
    row: &StoredPayment,
    mut payment: Payment,
    saga: crate::domain::saga::SagaState,
    next_check_at: Option<DateTime<Utc>>,
    hold: Option<HoldAction>,
) -> Result<StoredPayment, StoreError> {
    // The update link tells when the intermediary is checked next: never once final
    // (the row's next_check_at may still time the platform notification).
    payment.links.update.next_check_at = if payment.status.is_final() {
        None
    } else {
        next_check_at
    };
    let mut change = Change::of(row, payment, saga);
    change.next_check_at = next_check_at;
    change.hold = hold;
    deps.store.update_payment(row.version, change).await
}

/// Records a failed attempt and the time of the retry (no status change).
async fn retry_later(
    deps: &Deps,
    row: &StoredPayment,
    error: String,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    tracing::warn!(payment_id = %row.payment.id, attempts = row.saga.attempts + 1, %error, "step failed, will retry");
    let mut saga = row.saga.clone();
    let retry_at = saga.failed(error, now);
    let mut payment = row.payment.clone();
    payment.updated_at = now;
    save(deps, row, payment, saga, Some(retry_at), None).await
}

/// Runs a step that talks to the payment's intermediary; when there is none to be had
/// (its service's configuration cannot be read), the step is retried later.
async fn with_intermediary(
    deps: &Deps,
    row: &StoredPayment,
    now: DateTime<Utc>,
    op: impl AsyncFnOnce(Arc<dyn Intermediary>) -> Result<StoredPayment, StoreError>,
) -> Result<StoredPayment, StoreError> {
    match deps
        .intermediaries
        .for_service(row.payment.service_id)
        .await
    {
        Ok(intermediary) => op(intermediary).await,
        Err(e) => retry_later(deps, row, e.to_string(), now).await,
    }
}

/// Moves to `next` and continues at once.
async fn move_to(
    deps: &Deps,
    row: &StoredPayment,
    next: PaymentStatus,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    let mut payment = row.payment.clone();
    transition(&mut payment, next, now)?;
    save(deps, row, payment, row.saga.clone(), Some(now), None).await
}

/// Applies a transition; an illegal one is a bug, reported and not applied.
fn transition(
    payment: &mut Payment,
    next: PaymentStatus,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    payment.transition(next, now).map_err(|e| {
        tracing::error!(payment_id = %payment.id, error = %e, "refused illegal transition");
        StoreError::Unexpected(anyhow::Error::new(e))
    })
}

/// How a payment ends: its final status, a message for people, and what becomes of
/// its hold (WALLET), all in the transaction that ends it.
struct Ending {
    status: PaymentStatus,
    message: Option<String>,
    hold: Option<HoldAction>,
}

impl Ending {
    fn new(status: PaymentStatus) -> Self {
        Ending {
            status,
            message: None,
            hold: None,
        }
    }

    fn because(mut self, message: Option<String>) -> Self {
        self.message = message;
        self
    }

    fn with_hold(mut self, hold: HoldAction) -> Self {
        self.hold = Some(hold);
        self
    }
}

/// Ends the payment (its changes in `payment`) as `ending` says.
async fn finish(
    deps: &Deps,
    row: &StoredPayment,
    mut payment: Payment,
    ending: Ending,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    let Ending {
        status,
        message,
        hold,
    } = ending;
    transition(&mut payment, status, now)?;
    if message.is_some() {
        payment.status_message = message;
    }
    let mut saga = row.saga.clone();
    saga.succeeded();
    // Telling the platform is the next (retriable) step, due at once.
    let next = payment.notify_pending().then_some(now);
    save(deps, row, payment, saga, next, hold).await
}

/// Ends the payment as its row stands (nothing else changed by the step).
async fn end_as_is(
    deps: &Deps,
    row: &StoredPayment,
    ending: Ending,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    finish(deps, row, row.payment.clone(), ending, now).await
}

/// The body POSTed to the platform's notify URLs (docs/kafka.md).
fn outcome(payment: &Payment) -> serde_json::Value {
    let ok = payment.status == PaymentStatus::Complete;
    let message = payment
        .status_message
        .clone()
        .unwrap_or_else(|| match payment.status {
            PaymentStatus::Complete => "payment completed".to_string(),
            s => format!("payment ended {s}"),
        });
    serde_json::json!({
        "status": if ok { "OK" } else { "KO" },
        "status_code": payment.status.as_str(),
        "status_message": message,
        "data": payment,
    })
}

/// Updater (retriable step): POSTs the outcome to every notify link not yet told; a
/// 2xx records `sent_at`, a 4xx is final and recorded, anything else is retried with
/// backoff. Bookkeeping only: no status change, so no event is published.
async fn notify_platform(
    deps: &Deps,
    row: &StoredPayment,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    let mut payment = row.payment.clone();
    let mut saga = row.saga.clone();
    let body = outcome(&row.payment);
    let mut failures = Vec::new();
    // Every link is checked again here, whoever wrote it (an API caller, the platform,
    // a row planted in the database): a refused one fails the step, it is never called.
    let allowed =
        crate::outbound::tenant_allow_list(deps.store.as_ref(), row.payment.tenant_id).await?;
    for link in payment.links.notify.iter_mut() {
        if link.sent_at.is_some() || link.refused.is_some() {
            continue;
        }
        let (url, client) = match deps.outbound.admit("notify", &link.url, &allowed) {
            Ok(admitted) => admitted,
            Err(reason) => {
                failures.push(reason.0);
                continue;
            }
        };
        let method =
            reqwest::Method::from_bytes(link.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let answer = client
            .request(method, url)
            .timeout(std::time::Duration::from_secs(10))
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => link.sent_at = Some(now),
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(payment_id = %payment.id, url = %link.url, status = %r.status(), "platform refused the outcome; not retried");
                link.refused = Some(crate::domain::payment::NotifyRefusal {
                    status: r.status().as_u16(),
                    at: now,
                });
            }
            Ok(r) => failures.push(format!("{}: {}", link.url, r.status())),
            Err(e) => failures.push(format!("{}: {}", link.url, crate::outbound::describe(&e))),
        }
    }
    payment.updated_at = now;
    if failures.is_empty() {
        saga.succeeded();
        save(deps, row, payment, saga, None, None).await
    } else {
        let retry_at = saga.failed(format!("notify platform: {}", failures.join("; ")), now);
        tracing::warn!(payment_id = %payment.id, attempts = saga.attempts, "platform notification failed, will retry");
        save(deps, row, payment, saga, Some(retry_at), None).await
    }
}

/// When the next poll is due after a check at `now`.
fn next_poll(deps: &Deps, payment: &Payment, now: DateTime<Utc>) -> DateTime<Utc> {
    let interval = deps.schedule.interval_at(now - payment.created_at);
    let jitter = schedule::jitter(interval, &mut rand::thread_rng());
    deps.schedule
        .next_check(payment.created_at, now, payment.expires_at(), jitter)
}

fn position_request(deps: &Deps, payment: &Payment) -> PositionRequest {
    let debtor = payment.debtor.as_ref().unwrap_or(&payment.payer);
    PositionRequest {
        iud: payment.payment.iud.clone(),
        amount_cents: payment.payment.amount.cents(),
        reason: payment.reason.clone(),
        debtor_tax_code: debtor.tax_identification_number.as_str().to_string(),
        debtor_name: Some(
            [Some(debtor.name.as_str()), debtor.family_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        expire_at: Some(payment.expires_at()),
        return_url: Some(format!(
            "{}/v1/payments/{}/landing",
            deps.public_url, payment.id
        )),
        // The intermediary is named by the service whose configuration holds it (and its
        // push secret).
        notify_url: Some(format!(
            "{}/v1/intermediaries/{}/notify",
            deps.public_url, payment.service_id
        )),
    }
}

/// PAGOPA step 1 (compensatable): create the debt position.
async fn create_position(
    deps: &Deps,
    row: &StoredPayment,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    if now >= row.payment.expires_at() {
        let mut saga = row.saga.clone();
        saga.wind_down = Some(WindDown::Expire);
        return save(deps, row, row.payment.clone(), saga, Some(now), None).await;
    }
    with_intermediary(deps, row, now, async |intermediary| {
        match intermediary
            .create_position(&position_request(deps, &row.payment))
            .await
        {
            Ok(position) => {
                let mut payment = row.payment.clone();
                payment.payment.iuv = Some(position.iuv);
                payment.payment.notice_code = Some(position.notice_code);
                transition(&mut payment, PaymentStatus::PaymentPending, now)?;
                let mut saga = row.saga.clone();
                saga.succeeded();
                saga.checkout_url = Some(position.checkout_url);
                let next = next_poll(deps, &payment, now);
                save(deps, row, payment, saga, Some(next), None).await
            }
            Err(IntermediaryError::Transient(e)) => retry_later(deps, row, e, now).await,
            Err(e) => {
                let message = format!("the intermediary refused the debt position: {e}");
                finish(
                    deps,
                    row,
                    row.payment.clone(),
                    Ending::new(PaymentStatus::CreationFailed).because(Some(message)),
                    now,
                )
                .await
            }
        }
    })
    .await
}

/// PAGOPA pivot: ask the intermediary whether the citizen paid.
async fn check_position(
    deps: &Deps,
    row: &StoredPayment,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    let Some(iuv) = row.payment.payment.iuv.clone() else {
        return retry_later(deps, row, "the payment has no iuv".into(), now).await;
    };
    with_intermediary(deps, row, now, async |intermediary| {
    let mut payment = row.payment.clone();
    payment.links.update.last_check_at = Some(now);
    match intermediary.position(&iuv).await {
        Ok(position) => match position.status {
            PositionState::Paid => {
                payment.payment.paid_at = Some(position.paid_at.unwrap_or(now));
                payment.payment.transaction_id = position.transaction_id;
                finish(deps, row, payment, Ending::new(PaymentStatus::Complete), now).await
            }
            PositionState::Failed => {
                let message = Some("the payment failed at the intermediary".to_string());
                finish(deps, row, payment, Ending::new(PaymentStatus::PaymentFailed).because(message), now)
                .await
            }
            PositionState::Canceled => {
                let status = if payment.status.can_transition_to(PaymentStatus::Canceled) {
                    PaymentStatus::Canceled
                } else {
                    PaymentStatus::PaymentFailed
                };
                let message =
                    Some("the debt position was cancelled at the intermediary".to_string());
                finish(deps, row, payment, Ending::new(status).because(message), now).await
            }
            PositionState::Pending => {
                let mut saga = row.saga.clone();
                saga.succeeded();
                if saga.checkout_url.is_none() {
                    // An adopted position: its checkout address comes with its status.
                    saga.checkout_url = Some(position.checkout_url.clone());
                }
                if now >= payment.expires_at() {
                    saga.wind_down = Some(WindDown::Expire);
                    return save(deps, row, payment, saga, Some(now), None).await;
                }
                if payment.status == PaymentStatus::PaymentStarted
                    && !checkout_in_progress(&payment, now)
                {
                    // The checkout was left without paying, as the intermediary says, and
                    // long enough ago that the citizen is not at it any more. Never
                    // sooner, whoever asks for the check (a landing link proves nothing).
                    transition(&mut payment, PaymentStatus::PaymentPending, now)?;
                } else {
                    payment.updated_at = now;
                }
                let next = next_poll(deps, &payment, now);
                save(deps, row, payment, saga, Some(next), None).await
            }
        },
        Err(e) if now >= payment.expires_at() => {
            // Past expiry the intermediary may have dropped the position: wind down
            // (cancelling it is idempotent; a paid one still turns COMPLETE).
            tracing::warn!(payment_id = %payment.id, error = %e, "status check failed after expiry; winding down");
            let mut saga = row.saga.clone();
            saga.wind_down = Some(WindDown::Expire);
            save(deps, row, payment, saga, Some(now), None).await
        }
        Err(e) => retry_later(deps, row, format!("status check failed: {e}"), now).await,
    }
    })
    .await
}

/// Runs the compensations of a payment being cancelled or expiring, then ends it.
async fn wind_down(
    deps: &Deps,
    row: &StoredPayment,
    reason: WindDown,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    let creating = row.payment.status == PaymentStatus::CreationPending;
    let (status, message) = match (reason, creating) {
        (WindDown::Cancel, _) => (PaymentStatus::Canceled, "cancelled on request"),
        (WindDown::Expire, true) => (
            PaymentStatus::CreationFailed,
            "expired before the debt position could be created",
        ),
        (WindDown::Expire, false) => (PaymentStatus::Expired, "expired unpaid"),
    };
    let message = Some(message.to_string());
    // What to undo is the saga's declaration (domain/saga.rs); each flow has one
    // compensation before its pivot, which ends the payment when it succeeds.
    match undo_before_pivot(row.payment.kind).first() {
        Some(Compensation::ReleaseHold) => {
            // The ledger is local: releasing the hold and ending are one transaction.
            let payment = row.payment.clone();
            finish(
                deps,
                row,
                payment,
                Ending::new(status)
                    .because(message)
                    .with_hold(HoldAction::Release),
                now,
            )
            .await
        }
        Some(Compensation::CancelPosition) => {
            cancel_position(deps, row, status, message, now).await
        }
        None => end_as_is(deps, row, Ending::new(status).because(message), now).await,
    }
}

/// The compensation of a created debt position: cancelled at the intermediary, then the
/// payment ends as `status` (or, paid meanwhile, is checked at once to record that).
async fn cancel_position(
    deps: &Deps,
    row: &StoredPayment,
    status: PaymentStatus,
    message: Option<String>,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    with_intermediary(deps, row, now, async |intermediary| {
        let iuv = match &row.payment.payment.iuv {
            Some(iuv) => iuv.clone(),
            // A creation may have reached the intermediary unanswered: creating is
            // idempotent by iud, so ask again to learn the position before cancelling it.
            None => match intermediary
                .create_position(&position_request(deps, &row.payment))
                .await
            {
                Ok(position) => position.iuv,
                Err(IntermediaryError::Transient(e)) => {
                    return retry_later(deps, row, format!("compensation pending: {e}"), now).await
                }
                Err(_) => {
                    return end_as_is(deps, row, Ending::new(status).because(message), now).await
                }
            },
        };
        match intermediary.cancel_position(&iuv).await {
            Ok(()) | Err(IntermediaryError::NotFound) => {
                end_as_is(deps, row, Ending::new(status).because(message), now).await
            }
            Err(IntermediaryError::AlreadyPaid) => {
                // Too late to cancel: the citizen paid. Check at once to record it.
                let mut saga = row.saga.clone();
                saga.wind_down = None;
                save(deps, row, row.payment.clone(), saga, Some(now), None).await
            }
            Err(e) => {
                retry_later(
                    deps,
                    row,
                    format!("compensation (cancel the debt position) failed: {e}"),
                    now,
                )
                .await
            }
        }
    })
    .await
}

/// WALLET pivot: the gateway executes; then the hold is captured or released in the
/// same transaction as the final status.
async fn execute_gateway(
    deps: &Deps,
    row: &StoredPayment,
    now: DateTime<Utc>,
) -> Result<StoredPayment, StoreError> {
    with_intermediary(deps, row, now, async |intermediary| {
        let request = GatewayRequest {
            payment_id: row.payment.id,
            account_id: row.payment.wallet_account_id,
            amount_cents: row.payment.payment.amount.cents(),
        };
        let mut payment = row.payment.clone();
        // The pivot's outcome: complete and capture, or fail and release.
        let (status, message, hold) = match intermediary.execute_payment(&request).await {
            Ok(result) => {
                payment.payment.transaction_id = Some(result.transaction_id);
                match result.outcome {
                    GatewayOutcome::Approved => {
                        payment.payment.paid_at = Some(now);
                        (PaymentStatus::Complete, None, HoldAction::Capture)
                    }
                    GatewayOutcome::Rejected => (
                        PaymentStatus::PaymentFailed,
                        Some("rejected by the payment-system gateway".to_string()),
                        HoldAction::Release,
                    ),
                }
            }
            Err(IntermediaryError::Transient(e)) => {
                return retry_later(deps, row, format!("gateway: {e}"), now).await
            }
            // "Already executed" / "unknown" say nothing about the outcome: ask again (the
            // execution is idempotent by payment id) rather than release money that moved.
            Err(e @ (IntermediaryError::AlreadyPaid | IntermediaryError::NotFound)) => {
                return retry_later(deps, row, format!("gateway outcome unclear: {e}"), now).await
            }
            Err(e) => (
                PaymentStatus::PaymentFailed,
                Some(format!("the gateway refused the payment: {e}")),
                HoldAction::Release,
            ),
        };
        finish(
            deps,
            row,
            payment,
            Ending::new(status).because(message).with_hold(hold),
            now,
        )
        .await
    })
    .await
}

/// Asks to cancel a payment: runs its compensations, then ends it CANCELED.
pub async fn cancel(deps: &Deps, row: StoredPayment) -> Result<StoredPayment, PaymentError> {
    match row.payment.status {
        PaymentStatus::Canceled => Ok(row),
        PaymentStatus::PaymentStarted => Err(PaymentError::Conflict(match row.payment.kind {
            PaymentType::Pagopa => "the citizen is paying at the checkout (PAYMENT_STARTED): it cannot be cancelled now".into(),
            PaymentType::Wallet => "the gateway is executing the payment (PAYMENT_STARTED): it cannot be cancelled".into(),
        })),
        s if s.is_final() => Err(PaymentError::Conflict(format!("the payment is already {s}"))),
        _ => {
            let now = time::now();
            let row = if row.saga.wind_down == Some(WindDown::Cancel) {
                row
            } else {
                let mut saga = row.saga.clone();
                saga.wind_down = Some(WindDown::Cancel);
                let mut payment = row.payment.clone();
                payment.updated_at = now;
                // Durable before any compensation runs: a crash still cancels.
                save(deps, &row, payment, saga, Some(now), None).await?
            };
            Ok(advance(deps, row, FirstCheck::WhenDue).await?)
        }
    }
}

/// How long a citizen is taken to be at the checkout after opening it: the payment stays
/// PAYMENT_STARTED (no cancel) while the intermediary has no outcome, and opening it
/// again meanwhile writes nothing.
pub const CHECKOUT_SESSION: chrono::Duration = chrono::Duration::minutes(5);

/// Whether the online payment was opened less than `CHECKOUT_SESSION` ago.
fn checkout_in_progress(payment: &Payment, now: DateTime<Utc>) -> bool {
    payment
        .links
        .online_payment_begin
        .last_opened_at
        .is_some_and(|at| now - at < CHECKOUT_SESSION)
}

/// The citizen opens the online payment: PAYMENT_PENDING → PAYMENT_STARTED; returns the
/// row and the intermediary's checkout URL. Opened again within `CHECKOUT_SESSION`, it
/// writes nothing.
pub async fn start_checkout(
    deps: &Deps,
    row: StoredPayment,
) -> Result<(StoredPayment, String), PaymentError> {
    if row.payment.kind != PaymentType::Pagopa {
        return Err(PaymentError::Conflict(
            "only PAGOPA payments have an online checkout".into(),
        ));
    }
    match row.payment.status {
        PaymentStatus::CreationPending => Err(PaymentError::NotReady(
            "the debt position is still being created at the intermediary; retry in a moment"
                .into(),
        )),
        PaymentStatus::PaymentPending | PaymentStatus::PaymentStarted
            if row.saga.wind_down.is_some() =>
        {
            Err(PaymentError::Conflict(
                "the payment is being cancelled".into(),
            ))
        }
        PaymentStatus::PaymentPending | PaymentStatus::PaymentStarted => {
            let url = row.saga.checkout_url.clone().ok_or_else(|| {
                PaymentError::NotReady("the intermediary gave no checkout address yet".into())
            })?;
            let now = time::now();
            if row.payment.status == PaymentStatus::PaymentStarted
                && checkout_in_progress(&row.payment, now)
            {
                return Ok((row, url));
            }
            let mut payment = row.payment.clone();
            payment.links.online_payment_begin.last_opened_at = Some(now);
            if payment.status == PaymentStatus::PaymentPending {
                transition(&mut payment, PaymentStatus::PaymentStarted, now)?;
            } else {
                payment.updated_at = now;
            }
            let next = row.next_check_at;
            let row = save(deps, &row, payment, row.saga.clone(), next, None).await?;
            Ok((row, url))
        }
        s => Err(PaymentError::Conflict(format!("the payment is {s}"))),
    }
}

#[cfg(test)]
mod tests;
