//! `PaymentActor`: one open payment. It caches the payment's row, arms its timer from
//! `next_check_at`, and runs the saga steps of `flow` one message at a time
//! (`AtomicResponse`), so nothing interleaves on the payment's state. It is rebuilt
//! from the row whenever it (re)starts; its `Drop` tells the registry when it dies,
//! panics included. Its timer is an entry in its arbiter's shared `Timers` wheel.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use super::flow::{self, Work};
use super::pacing::Pacer;
use super::shard::Shard;
use super::timers::{TimerFired, TimerKey};
use super::{Deps, PaymentError};
use crate::domain::payment::Payment;
use crate::store::{PaymentTiming, StoredPayment};

/// Bounded mailbox: senders wait (`send().await`) instead of piling up messages.
pub const MAILBOX_CAPACITY: usize = 32;
/// Longest single timer; longer waits re-arm after it (the row decides). A paced start
/// (see `Pacer`) may wait longer: its slot, not the row, decides when it runs.
const MAX_TIMER: Duration = Duration::from_secs(3600);
/// An actor whose payment ended stays this long after its last message, so commands
/// already queued are answered from the final row instead of finding it gone.
const FINAL_LINGER: Duration = Duration::from_millis(200);
/// Pause after a drive that failed (the database did not answer).
const FAILED_DRIVE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause after drives that keep failing for a lasting reason (a row cannot be
/// read): doubled from `FAILED_DRIVE_BACKOFF` per failure, so such an actor logs a few
/// times and then about once an hour instead of every second forever.
const LASTING_FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// The pause after the `failures`-th drive in a row that failed for a lasting reason.
fn lasting_failure_backoff(failures: u8) -> Duration {
    let doubled = FAILED_DRIVE_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(LASTING_FAILURE_BACKOFF_MAX)
}
/// Overdue work found at start-up is spread over this long when no call rate paces it.
const START_SPREAD_MS: u64 = 500;
/// Work due longer ago than this when an actor starts was missed while no actor ran.
const START_OVERDUE: chrono::Duration = chrono::Duration::seconds(2);

/// What can be asked of a payment from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Check at the intermediary now (update link, push notification, landing).
    CheckNow,
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
    pub generation: u32,
    /// `false` when the actor died without stopping (a panic, a failed load).
    pub clean: bool,
    /// It stopped because its next work is far away (the timer wheel wakes it).
    pub passivated: bool,
}

/// What the actor does when its timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnTimer {
    /// Do whatever is due.
    Drive,
    /// Stop: the payment ended, or a transient actor answered. Until then it lingers, so
    /// commands already queued are answered from the final row.
    Stop,
    /// Stop because the next work is far away (the durable wheel wakes it).
    Passivate,
}

/// How an actor ended on purpose (anything else is a crash the registry restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Clean,
    /// Its next work is far away: the timer wheel wakes it.
    Passivated,
}

/// What the actor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Starting: its timing is being read from the row.
    Loading,
    /// Its timer is armed: `then` happens when it fires.
    Armed { key: TimerKey, then: OnTimer },
    /// No timer: its timer fired and the drive it asked for runs, or a drive failed
    /// without a row to arm from.
    Unarmed,
    /// Stopping on purpose.
    Stopping(Exit),
}

/// Whose payment it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This instance owns the payment: the actor polls it.
    Owner,
    /// Another instance owns it: the actor runs one command, then stops (no timers).
    Transient,
}

/// Where the actor's row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Just created: its first check is fresh work, never paced.
    Created,
    /// Already stored (a restart, a rebalance, a wake-up, a command).
    Stored,
}

/// What the actor keeps of its row between operations.
#[derive(Debug, Clone, Copy)]
struct Timing {
    next_check_at: Option<chrono::DateTime<Utc>>,
    /// The row's version last seen.
    version: i64,
    work: Work,
}

/// One open payment. It keeps only its timing between operations: the row itself is
/// read fresh at the start of every operation (a primary-key read, minutes apart; the
/// first check after a create uses the row the create returned), so a resident
/// payment costs little memory and never works on a stale row. Its end is
/// reported from `Drop`, which also runs while a panic unwinds.
pub struct PaymentActor {
    id: Uuid,
    shard: Arc<Shard>,
    generation: u32,
    role: Role,
    origin: Origin,
    phase: Phase,
    /// `None` until read from the row.
    timing: Option<Timing>,
    /// Its intermediary's pacer, until it has started (see `arm`).
    pacer: Option<Arc<Pacer>>,
    /// Drives in a row that failed for a reason retrying soon will not fix.
    lasting_failures: u8,
}

impl Drop for PaymentActor {
    fn drop(&mut self) {
        self.disarm();
        self.shard.fresh.take(self.id);
        let exit = match self.phase {
            Phase::Stopping(exit) => Some(exit),
            _ => None,
        };
        self.shard.exits.do_send(ActorExited {
            id: self.id,
            generation: self.generation,
            clean: exit.is_some(),
            passivated: exit == Some(Exit::Passivated),
        });
    }
}

impl PaymentActor {
    /// An actor for payment `id`; unless its `timing` is given (read in bulk at start-up,
    /// with its intermediary's `pacer`) it reads it when it starts.
    pub fn new(
        id: Uuid,
        shard: Arc<Shard>,
        generation: u32,
        role: Role,
        timing: Option<(PaymentTiming, Option<Arc<Pacer>>)>,
        origin: Origin,
    ) -> Self {
        let mut actor = PaymentActor {
            id,
            shard,
            generation,
            role,
            origin,
            phase: Phase::Loading,
            timing: None,
            pacer: None,
            lasting_failures: 0,
        };
        if let Some((timing, pacer)) = timing {
            actor.remember_timing(timing);
            actor.pacer = pacer;
        }
        actor
    }

    fn deps(&self) -> &Arc<Deps> {
        &self.shard.deps
    }

    /// Disarms the timer, if armed.
    fn disarm(&mut self) {
        if let Phase::Armed { key, .. } = self.phase {
            self.shard.timers.cancel(key);
            self.phase = Phase::Unarmed;
        }
    }

    /// (Re)arms the timer: `then` happens after `delay`.
    fn set_timer(&mut self, ctx: &mut Context<Self>, delay: Duration, then: OnTimer) {
        self.disarm();
        let key = self.shard.timers.arm(delay, ctx.address().downgrade());
        self.phase = Phase::Armed { key, then };
    }

    /// Arms the timer for the row's next work, or (shortly) stops when the payment has ended.
    fn arm(&mut self, ctx: &mut Context<Self>, spread: bool) {
        self.disarm();
        // Needed once, when the actor starts.
        let pacer = self.pacer.take();
        let Some(timing) = self.timing else {
            return;
        };
        if self.role == Role::Transient || timing.work == Work::Done {
            self.set_timer(ctx, FINAL_LINGER, OnTimer::Stop);
            return;
        }
        let now = crate::domain::time::precise_now();
        let due = timing.next_check_at.unwrap_or(now);
        let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
        if self
            .deps()
            .passivate_after
            .is_some_and(|limit| wait > limit)
        {
            // Nothing to do for a long while: no resident actor needed. Linger first, so
            // commands already queued (the reason a passivated payment was woken) are
            // answered; each handled message re-arms this.
            self.set_timer(ctx, FINAL_LINGER, OnTimer::Passivate);
            return;
        }
        let delay = if spread && self.origin == Origin::Stored && due < now - START_OVERDUE {
            // Work missed while no actor ran (restart, rebalance, crash) is paced under
            // the intermediary call rate when it calls the intermediary (an open
            // payment), or spread over half a second; fresh work is not.
            match pacer {
                Some(pacer) if timing.work == Work::Open => pacer.next_slot(),
                _ => Duration::from_millis(rand::random::<u64>() % START_SPREAD_MS),
            }
        } else {
            wait.min(MAX_TIMER)
        };
        self.set_timer(ctx, delay, OnTimer::Drive);
    }

    /// Stops on purpose. Any other end (a panic, a failed load) is a crash: actix's
    /// `ContextFut::drop` runs `stopped()` even while a panic unwinds, so only a
    /// deliberate stop may mark the exit clean.
    fn stop(&mut self, ctx: &mut Context<Self>, exit: Exit) {
        self.disarm();
        self.phase = Phase::Stopping(exit);
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
            version: row.version,
            work: Work::of_row(self.deps(), row),
        });
    }

    fn remember_timing(&mut self, timing: PaymentTiming) {
        self.timing = Some(Timing {
            next_check_at: timing.next_check_at,
            version: timing.version,
            work: Work::of(self.deps(), timing.open, timing.notify_pending),
        });
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // The actor lives until it stops itself (or panics), not until its last strong
        // address is dropped: the registry keeps only a weak one. A pending zero-sized
        // future does that without an allocation.
        ctx.spawn(actix::fut::wrap_future(std::future::pending::<()>()));
        if self.timing.is_some() {
            self.arm(ctx, true);
            return;
        }
        let deps = self.deps().clone();
        let pacers = self.shard.pacers.clone();
        let id = self.id;
        ctx.wait(
            async move {
                let timing = deps.store.payment_timing(id).await?;
                let pacer = match (&timing, &pacers) {
                    (Some(timing), Some(pacers)) if timing.open => Some(
                        pacers
                            .for_service(&deps.intermediaries, timing.service_id)
                            .await,
                    ),
                    _ => None,
                };
                Ok::<_, crate::store::StoreError>(timing.map(|timing| (timing, pacer)))
            }
            .into_actor(self)
            .map(|loaded, act, ctx| match loaded {
                Ok(Some((timing, pacer))) => {
                    act.remember_timing(timing);
                    act.pacer = pacer;
                    act.arm(ctx, true);
                }
                Ok(None) => {
                    tracing::warn!(payment_id = %act.id, "no such payment; actor stops");
                    act.stop(ctx, Exit::Clean);
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

impl Handler<TimerFired> for PaymentActor {
    type Result = ();

    fn handle(&mut self, TimerFired(key): TimerFired, ctx: &mut Context<Self>) {
        let Phase::Armed { key: armed, then } = self.phase else {
            return; // disarmed since
        };
        if armed != key {
            return; // re-armed since
        }
        self.phase = Phase::Unarmed;
        match then {
            OnTimer::Drive => ctx.notify(Drive),
            OnTimer::Stop => self.stop(ctx, Exit::Clean),
            OnTimer::Passivate => self.stop(ctx, Exit::Passivated),
        }
    }
}

/// The row may have changed elsewhere (an event was seen): reload it and re-arm, unless
/// the event's version (when known) is one this actor has seen already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload(pub Option<i64>);

impl Handler<Reload> for PaymentActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, Reload(seen): Reload, _ctx: &mut Context<Self>) -> Self::Result {
        let known = self.timing.map(|timing| timing.version);
        if known.zip(seen).is_some_and(|(known, seen)| seen <= known) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        self.shard.fresh.take(self.id);
        let store = self.deps().store.clone();
        let id = self.id;
        AtomicResponse::new(Box::pin(
            async move { store.payment_timing(id).await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok(Some(timing)) => {
                        act.remember_timing(timing);
                        act.arm(ctx, false);
                    }
                    Ok(None) => act.stop(ctx, Exit::Clean),
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
        self.stop(ctx, Exit::Clean);
    }
}

impl Handler<Drive> for PaymentActor {
    type Result = AtomicResponse<Self, ()>;

    #[tracing::instrument(name = "payment.drive", skip_all, fields(payment_id = %self.id))]
    fn handle(&mut self, _: Drive, _ctx: &mut Context<Self>) -> Self::Result {
        if let (Some(lag), Some(due)) = (
            &self.deps().timer_lag,
            self.timing.and_then(|timing| timing.next_check_at),
        ) {
            let late = (crate::domain::time::precise_now() - due).num_milliseconds();
            if late >= 0 {
                lag.record(u32::try_from(late).unwrap_or(u32::MAX));
            }
        }
        let deps = self.deps().clone();
        let id = self.id;
        let fresh = self.shard.fresh.take(id);
        AtomicResponse::new(Box::pin(
            async move {
                let read = match fresh {
                    Some(row) => Ok(Some(row)),
                    None => deps.store.payment(id).await,
                };
                // With a failure, whether it lasts (a row that cannot be read).
                let row = match read {
                    Ok(row) => row.ok_or(false)?,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the payment");
                        return Err(!e.is_transient());
                    }
                };
                let result = flow::with_reload(&deps, row, async |deps, row| {
                    Ok(flow::advance(deps, row, flow::FirstCheck::WhenDue).await?)
                })
                .await;
                result.map_err(|e| {
                    tracing::error!(error = %e, "payment step failed");
                    false
                })
            }
            .into_actor(self)
            .map(|row, act, ctx| {
                let lasting = match row {
                    Ok(row) => {
                        act.lasting_failures = 0;
                        act.settle(Some(row), ctx);
                        return;
                    }
                    Err(lasting) => lasting,
                };
                // The step failed: database trouble is tried again in a second, not at
                // once; a lasting failure waits longer each time.
                let pause = if lasting {
                    act.lasting_failures = act.lasting_failures.saturating_add(1);
                    lasting_failure_backoff(act.lasting_failures)
                } else {
                    FAILED_DRIVE_BACKOFF
                };
                act.set_timer(ctx, pause, OnTimer::Drive);
            }),
        ))
    }
}

impl Handler<Command> for PaymentActor {
    type Result = AtomicResponse<Self, Result<CommandReply, PaymentError>>;

    #[tracing::instrument(name = "payment.command", skip_all, fields(payment_id = %self.id, command = ?command.0))]
    fn handle(&mut self, command: Command, _ctx: &mut Context<Self>) -> Self::Result {
        let deps = self.deps().clone();
        let id = self.id;
        // A command reads the row itself (see `FreshRows`).
        self.shard.fresh.take(id);
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
                    PaymentCommand::CheckNow => {
                        flow::with_reload(&deps, row, async |deps, row| {
                            Ok((flow::advance(deps, row, flow::FirstCheck::Now).await?, None))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 25 point 2: an actor whose row cannot be read waits longer after each
    /// failed drive (about twelve logs in the first hour, then one an hour), not a second.
    #[test]
    fn lasting_failures_back_off_to_an_hour() {
        let pauses: Vec<u64> = (1..=14)
            .map(|n| lasting_failure_backoff(n).as_secs())
            .collect();
        assert_eq!(
            pauses,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
        assert_eq!(
            lasting_failure_backoff(u8::MAX),
            LASTING_FAILURE_BACKOFF_MAX
        );
        let first_hour: u64 = pauses.iter().take(12).sum();
        assert!(first_hour < 3600 * 2, "{first_hour}");
    }
}
