//! `PaymentActor`: one open payment. It caches the payment's row, arms its timer from
//! `next_check_at`, and runs the saga steps of `flow` one message at a time
//! (`AtomicResponse`), so nothing interleaves on the payment's state. It is rebuilt
//! from the row whenever it (re)starts; a `DeathWatch` tells the registry when it dies,
//! panics included.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use super::{flow, Deps, PaymentError};
use crate::domain::payment::Payment;
use crate::store::StoredPayment;

/// Bounded mailbox: senders wait (`send().await`) instead of piling up messages.
pub const MAILBOX_CAPACITY: usize = 32;
/// Longest single timer; longer waits re-arm after it (the row decides).
const MAX_TIMER: Duration = Duration::from_secs(3600);
/// An actor whose payment ended stays this long after its last message, so commands
/// already queued are answered from the final row instead of finding it gone.
const FINAL_LINGER: Duration = Duration::from_millis(200);
/// Pause after a drive that failed (the database did not answer).
const FAILED_DRIVE_BACKOFF: Duration = Duration::from_secs(1);
/// Overdue work found at start-up is spread over up to this long.
const START_SPREAD_MS: u64 = 500;

/// What can be asked of a payment from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Check at the intermediary now (update link, push notification, landing).
    CheckNow { citizen_returned: bool },
    /// Cancel (runs compensations).
    Cancel,
    /// The citizen opens the online payment.
    StartCheckout,
}

/// A command for one payment actor.
#[derive(Message)]
#[rtype(result = "Result<CommandReply, PaymentError>")]
pub struct Command(pub PaymentCommand);

/// The payment after a command, and the checkout URL for `StartCheckout`.
#[derive(Debug, Clone)]
pub struct CommandReply {
    pub payment: Payment,
    pub checkout_url: Option<String>,
}

/// Timer fired (or start-up): do whatever is due.
#[derive(Message)]
#[rtype(result = "()")]
struct Drive;

/// Sent to the registry when an actor ends, however it ends.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ActorExited {
    pub id: Uuid,
    pub generation: u64,
    /// `false` when the actor died without stopping (a panic, a failed load).
    pub clean: bool,
    /// It stopped because its next work is far away (the timer wheel wakes it).
    pub passivated: bool,
}

/// Reports the actor's end from `Drop`, which also runs while a panic unwinds.
pub struct DeathWatch {
    pub id: Uuid,
    pub generation: u64,
    pub registry: Recipient<ActorExited>,
    pub clean: bool,
    pub passivated: bool,
}

impl Drop for DeathWatch {
    fn drop(&mut self) {
        self.registry.do_send(ActorExited {
            id: self.id,
            generation: self.generation,
            clean: self.clean,
            passivated: self.passivated,
        });
    }
}

/// What the actor keeps between operations: only its timing. The row itself is read
/// fresh at the start of every operation (a primary-key read, minutes apart), so a
/// resident payment costs little memory and never works on a stale row.
#[derive(Debug, Clone, Copy)]
struct Timing {
    next_check_at: Option<chrono::DateTime<Utc>>,
    has_work: bool,
}

/// One open payment.
pub struct PaymentActor {
    id: Uuid,
    deps: Arc<Deps>,
    timing: Option<Timing>,
    timer: Option<SpawnHandle>,
    watch: DeathWatch,
    /// Runs one command for a payment this instance does not own, then stops (no timers:
    /// the owner polls).
    transient: bool,
}

impl PaymentActor {
    /// An actor for payment `id`; it loads its row when it starts.
    pub fn new(id: Uuid, deps: Arc<Deps>, watch: DeathWatch, transient: bool) -> Self {
        PaymentActor {
            id,
            deps,
            timing: None,
            timer: None,
            watch,
            transient,
        }
    }

    /// Arms the timer for the row's next work, or (shortly) stops when the payment has ended.
    fn arm(&mut self, ctx: &mut Context<Self>, spread: bool) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        let Some(timing) = self.timing else { return };
        if self.transient || !timing.has_work {
            self.timer = Some(ctx.run_later(FINAL_LINGER, |act, ctx| act.stop_cleanly(ctx)));
            return;
        }
        let now = crate::domain::time::precise_now();
        let due = timing.next_check_at.unwrap_or(now);
        let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
        if self.deps.passivate_after.is_some_and(|limit| wait > limit) {
            // Nothing to do for a long while: no resident actor needed. Linger first, so
            // commands already queued (the reason a passivated payment was woken) are
            // answered; each handled message re-arms this.
            self.timer = Some(ctx.run_later(FINAL_LINGER, |act, ctx| {
                act.watch.passivated = true;
                act.stop_cleanly(ctx);
            }));
            return;
        }
        let mut delay = wait.min(MAX_TIMER);
        // Work missed while no actor ran (restart) is spread out; fresh work is not.
        if spread && due < now - chrono::Duration::seconds(2) {
            delay = Duration::from_millis(rand::random::<u64>() % START_SPREAD_MS);
        }
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            ctx.notify(Drive);
        }));
    }

    /// Stops on purpose. Any other end (a panic, a failed load) is a crash: actix's
    /// `ContextFut::drop` runs `stopped()` even while a panic unwinds, so only a
    /// deliberate stop may mark the exit clean.
    fn stop_cleanly(&mut self, ctx: &mut Context<Self>) {
        self.watch.clean = true;
        ctx.stop();
    }

    /// Stores the outcome of an operation and re-arms.
    fn settle(&mut self, row: Option<StoredPayment>, ctx: &mut Context<Self>) {
        if let Some(row) = row {
            self.remember(&row);
        }
        self.arm(ctx, false);
    }

    fn remember(&mut self, row: &StoredPayment) {
        self.timing = Some(Timing {
            next_check_at: row.next_check_at,
            has_work: flow::has_work(&self.deps, row),
        });
    }

    fn remember_timing(&mut self, timing: crate::store::PaymentTiming) {
        self.timing = Some(Timing {
            next_check_at: timing.next_check_at,
            has_work: timing.open || (self.deps.notify_platform && timing.notify_pending),
        });
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let store = self.deps.store.clone();
        let id = self.id;
        ctx.wait(
            async move { store.payment_timing(id).await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok(Some(timing)) => {
                        act.remember_timing(timing);
                        act.arm(ctx, true);
                    }
                    Ok(None) => {
                        tracing::warn!(payment_id = %act.id, "no such payment; actor stops");
                        act.stop_cleanly(ctx);
                    }
                    Err(e) => {
                        // Unclean: the registry restarts us with backoff.
                        tracing::error!(payment_id = %act.id, error = %e, "cannot load payment");
                        ctx.stop();
                    }
                }),
        );
    }
}

/// The row changed elsewhere (an event was seen): reload it and re-arm.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

impl Handler<Reload> for PaymentActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Reload, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.deps.store.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move { store.payment_timing(id).await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok(Some(timing)) => {
                        act.remember_timing(timing);
                        act.arm(ctx, false);
                    }
                    Ok(None) => act.stop_cleanly(ctx),
                    Err(e) => {
                        tracing::warn!(payment_id = %act.id, error = %e, "cannot reload payment")
                    }
                }),
        ))
    }
}

/// Stop now, cleanly (the partition moved to another instance); the row is durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Passivate;

impl Handler<Passivate> for PaymentActor {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Context<Self>) {
        self.stop_cleanly(ctx);
    }
}

impl Handler<Drive> for PaymentActor {
    type Result = AtomicResponse<Self, ()>;

    #[tracing::instrument(name = "payment.drive", skip_all, fields(payment_id = %self.id))]
    fn handle(&mut self, _: Drive, _ctx: &mut Context<Self>) -> Self::Result {
        if let (Some(lag), Some(due)) = (
            &self.deps.timer_lag,
            self.timing.and_then(|t| t.next_check_at),
        ) {
            let late = (crate::domain::time::precise_now() - due).num_milliseconds();
            if late >= 0 {
                lag.record(u32::try_from(late).unwrap_or(u32::MAX));
            }
        }
        let deps = self.deps.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move {
                let row = match deps.store.payment(id).await {
                    Ok(row) => row?,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the payment");
                        return None;
                    }
                };
                let result = flow::with_reload(&deps, row, async |deps, row| {
                    Ok(flow::advance(deps, row, false, false).await?)
                })
                .await;
                match result {
                    Ok(row) => Some(row),
                    Err(e) => {
                        tracing::error!(error = %e, "payment step failed");
                        None
                    }
                }
            }
            .into_actor(self)
            .map(|row, act, ctx| {
                if row.is_some() {
                    act.settle(row, ctx);
                    return;
                }
                // The step failed (database trouble): try again in a second, not at once.
                if let Some(timer) = act.timer.take() {
                    ctx.cancel_future(timer);
                }
                act.timer = Some(ctx.run_later(FAILED_DRIVE_BACKOFF, |act, ctx| {
                    act.timer = None;
                    ctx.notify(Drive);
                }));
            }),
        ))
    }
}

impl Handler<Command> for PaymentActor {
    type Result = AtomicResponse<Self, Result<CommandReply, PaymentError>>;

    #[tracing::instrument(name = "payment.command", skip_all, fields(payment_id = %self.id, command = ?command.0))]
    fn handle(&mut self, command: Command, _ctx: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move {
                let row = match deps.store.payment(id).await {
                    Ok(Some(row)) => row,
                    Ok(None) => {
                        return (
                            None,
                            Err(PaymentError::Unavailable(format!("payment {id} is gone"))),
                        )
                    }
                    Err(e) => return (None, Err(e.into())),
                };
                let result = match command.0 {
                    PaymentCommand::CheckNow { citizen_returned } => {
                        flow::with_reload(&deps, row, async |deps, row| {
                            Ok((
                                flow::advance(deps, row, true, citizen_returned).await?,
                                None,
                            ))
                        })
                        .await
                    }
                    PaymentCommand::Cancel => {
                        flow::with_reload(&deps, row, async |deps, row| {
                            Ok((flow::cancel(deps, row).await?, None))
                        })
                        .await
                    }
                    PaymentCommand::StartCheckout => {
                        flow::with_reload(&deps, row, async |deps, row| {
                            let (row, url) = flow::start_checkout(deps, row).await?;
                            Ok((row, Some(url)))
                        })
                        .await
                    }
                };
                match result {
                    Ok((row, checkout_url)) => {
                        let reply = CommandReply {
                            payment: row.payment.clone(),
                            checkout_url,
                        };
                        (Some(row), Ok(reply))
                    }
                    Err(e) => (None, Err(e)),
                }
            }
            .into_actor(self)
            .map(|(row, reply), act, ctx| {
                act.settle(row, ctx);
                reply
            }),
        ))
    }
}
