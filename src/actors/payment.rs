//! `PaymentActor`: one open payment. It caches the payment's row, arms its timer from
//! `next_check_at`, and runs the saga steps of `flow` one message at a time
//! (`AtomicResponse`), so nothing interleaves on the payment's state. It is rebuilt
//! from the row whenever it (re)starts; its `Drop` tells the registry when it dies,
//! panics included. Its timer is an entry in its arbiter's shared `Timers` wheel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use super::timers::{TimerFired, TimerKey, Timers};
use super::{flow, Deps, PaymentError};
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

/// What the actors of one arbiter share: one `Arc` per actor instead of a copy of each
/// of these (an actix `Recipient` clone alone costs three allocations).
pub struct Shard {
    pub deps: Arc<Deps>,
    /// The arbiter's timer wheel.
    pub timers: Arc<Timers>,
    /// Where actors report their end.
    pub exits: Recipient<ActorExited>,
    /// Rows just created, for their new actor's first check.
    pub fresh: FreshRows,
    /// Paces overdue work under each intermediary's call rate (shared by all arbiters).
    pub pacers: Option<Arc<Pacers>>,
}

/// Hands out start times one `interval` apart, from now on: the checks that actors find
/// overdue when they start (after a restart, a rebalance, a crash) take one each, in the
/// order the actors start (the registry re-arms the oldest first), so they reach the
/// intermediary at its rate instead of all at once. On tokio's clock.
pub struct Pacer {
    interval: Duration,
    next: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// The widest gap between two slots, whatever the rate (slower is no rate at all).
const MAX_PACE_INTERVAL: Duration = Duration::from_secs(3600);

impl Pacer {
    /// `per_sec` slots per second (not positive, not a number or infinite: every slot is
    /// now; at most an hour apart).
    pub fn per_sec(per_sec: f64) -> Self {
        let interval = if per_sec.is_finite() && per_sec > 0.0 {
            Duration::try_from_secs_f64(1.0 / per_sec).map_or(MAX_PACE_INTERVAL, |interval| {
                interval.min(MAX_PACE_INTERVAL)
            })
        } else {
            Duration::ZERO
        };
        Pacer {
            interval,
            next: Default::default(),
        }
    }

    /// Takes the next free slot: how long until it.
    pub fn next_slot(&self) -> Duration {
        let now = tokio::time::Instant::now();
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = next.map_or(now, |next| next.max(now));
        *next = Some(slot.checked_add(self.interval).unwrap_or(slot));
        slot - now
    }

    /// Gives back every slot taken: the actors that took them stopped (their partitions
    /// were revoked), and the next ones start from now.
    pub fn reset(&self) {
        *self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// One `Pacer` per intermediary, as its guard has one rate limit: the overdue checks of
/// payments at different intermediaries do not wait for each other's slots. A service
/// whose configuration cannot be read shares the pacer of the unknown intermediary.
pub struct Pacers {
    per_sec: f64,
    state: std::sync::Mutex<PacersState>,
}

#[derive(Default)]
struct PacersState {
    /// By intermediary URL (`None`: unknown).
    by_intermediary: HashMap<Option<String>, Arc<Pacer>>,
    /// Services resolved so far.
    by_service: HashMap<Uuid, Arc<Pacer>>,
}

impl Pacers {
    /// Pacers handing out `per_sec` slots per second each.
    pub fn per_sec(per_sec: f64) -> Self {
        Pacers {
            per_sec,
            state: Default::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PacersState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pacer of a service resolved before (`resolve`), or else the one of unknown
    /// intermediaries (the checks are paced either way).
    pub fn resolved(&self, service_id: Uuid) -> Arc<Pacer> {
        let mut state = self.state();
        match state.by_service.get(&service_id) {
            Some(pacer) => pacer.clone(),
            None => self.of_intermediary(&mut state, None),
        }
    }

    fn of_intermediary(&self, state: &mut PacersState, url: Option<String>) -> Arc<Pacer> {
        state
            .by_intermediary
            .entry(url)
            .or_insert_with(|| Arc::new(Pacer::per_sec(self.per_sec)))
            .clone()
    }

    /// The pacer of a service's intermediary (its configuration read once).
    pub async fn for_service(
        &self,
        intermediaries: &crate::intermediary::Intermediaries,
        service_id: Uuid,
    ) -> Arc<Pacer> {
        if let Some(pacer) = self.state().by_service.get(&service_id) {
            return pacer.clone();
        }
        let intermediary = intermediaries.intermediary_of(service_id).await;
        let mut state = self.state();
        let pacer = self.of_intermediary(&mut state, intermediary);
        state.by_service.insert(service_id, pacer.clone());
        pacer
    }

    /// Resolves the pacers of the open payments' services among `timings`, so that
    /// `resolved` finds them.
    pub async fn resolve(
        &self,
        intermediaries: &crate::intermediary::Intermediaries,
        timings: impl IntoIterator<Item = PaymentTiming>,
    ) {
        let open = timings.into_iter().filter(|timing| timing.open);
        let services: std::collections::HashSet<Uuid> = open.map(|t| t.service_id).collect();
        for service_id in services {
            self.for_service(intermediaries, service_id).await;
        }
    }

    /// Resets every pacer (see `Pacer::reset`), and reads the services' intermediaries
    /// again when next asked (a service may have moved to another one).
    pub fn reset(&self) {
        let mut state = self.state();
        for pacer in state.by_intermediary.values() {
            pacer.reset();
        }
        state.by_service.clear();
    }
}

/// Rows just created, each handed to the first check of its new actor (due at once),
/// which would otherwise read back what the creation has just returned. Only for a
/// second, and dropped when the actor runs a command, reloads or ends first: a command
/// may call the intermediary before a stale row would show as a version conflict.
#[derive(Default)]
pub struct FreshRows(std::sync::Mutex<HashMap<Uuid, (std::time::Instant, StoredPayment)>>);

/// How long a row just created may stand in for a read.
const FRESH_FOR: Duration = Duration::from_secs(1);

impl FreshRows {
    pub fn put(&self, row: StoredPayment) {
        self.rows()
            .insert(row.payment.id, (std::time::Instant::now(), row));
    }

    /// The row, if it is still fresh; dropped either way.
    pub fn take(&self, id: Uuid) -> Option<StoredPayment> {
        let (at, row) = self.rows().remove(&id)?;
        (at.elapsed() < FRESH_FOR).then_some(row)
    }

    fn rows(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, (std::time::Instant, StoredPayment)>> {
        // The map stays whole whatever a panicking holder did: a plain insert or remove.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the actor does when its timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnTimer {
    /// Do whatever is due.
    Drive,
    /// Stop (the payment ended, or a transient actor answered).
    Stop,
    /// Stop because the next work is far away (the durable wheel wakes it).
    Passivate,
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
    /// The row's `next_check_at` (valid once `loaded`).
    next_check_at: Option<chrono::DateTime<Utc>>,
    /// The row's version last seen (valid once `loaded`).
    version: i64,
    timer: Option<TimerKey>,
    on_timer: OnTimer,
    /// The timing was read from the row.
    loaded: bool,
    /// The payment has work left (open, or the platform still to be told).
    has_work: bool,
    /// Runs one command for a payment this instance does not own, then stops (no timers:
    /// the owner polls).
    transient: bool,
    /// It stopped on purpose (anything else is a crash the registry restarts).
    clean: bool,
    /// It stopped because its next work is far away (the timer wheel wakes it).
    passivated: bool,
    /// Not in a final status (valid once `loaded`): its checks call the intermediary.
    open: bool,
    /// Started for a row just created: its first check is fresh work, never paced.
    fresh: bool,
    /// Its intermediary's pacer, until it has started (see `arm`).
    pacer: Option<Arc<Pacer>>,
    /// Drives in a row that failed for a reason retrying soon will not fix.
    lasting_failures: u8,
}

impl Drop for PaymentActor {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            self.shard.timers.cancel(key);
        }
        self.shard.fresh.take(self.id);
        self.shard.exits.do_send(ActorExited {
            id: self.id,
            generation: self.generation,
            clean: self.clean,
            passivated: self.passivated,
        });
    }
}

impl PaymentActor {
    /// An actor for payment `id`; unless its `timing` is given (read in bulk at start-up,
    /// with its intermediary's `pacer`) it reads it when it starts. `fresh`: the row was
    /// just created.
    pub fn new(
        id: Uuid,
        shard: Arc<Shard>,
        generation: u32,
        transient: bool,
        timing: Option<(PaymentTiming, Option<Arc<Pacer>>)>,
        fresh: bool,
    ) -> Self {
        let mut actor = PaymentActor {
            id,
            shard,
            generation,
            next_check_at: None,
            version: 0,
            timer: None,
            on_timer: OnTimer::Drive,
            loaded: false,
            has_work: false,
            transient,
            clean: false,
            passivated: false,
            open: false,
            fresh,
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
        if let Some(key) = self.timer.take() {
            self.shard.timers.cancel(key);
        }
    }

    /// (Re)arms the timer: `then` happens after `delay`.
    fn set_timer(&mut self, ctx: &mut Context<Self>, delay: Duration, then: OnTimer) {
        self.disarm();
        self.timer = Some(self.shard.timers.arm(delay, ctx.address().downgrade()));
        self.on_timer = then;
    }

    /// Arms the timer for the row's next work, or (shortly) stops when the payment has ended.
    fn arm(&mut self, ctx: &mut Context<Self>, spread: bool) {
        self.disarm();
        // Needed once, when the actor starts.
        let pacer = self.pacer.take();
        if !self.loaded {
            return;
        }
        if self.transient || !self.has_work {
            self.set_timer(ctx, FINAL_LINGER, OnTimer::Stop);
            return;
        }
        let now = crate::domain::time::precise_now();
        let due = self.next_check_at.unwrap_or(now);
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
        let mut delay = wait.min(MAX_TIMER);
        // Work missed while no actor ran (restart, rebalance, crash) is paced under the
        // intermediary call rate when it calls the intermediary (an open payment), or
        // spread over half a second; fresh work is not.
        if spread && !self.fresh && due < now - chrono::Duration::seconds(2) {
            delay = match pacer {
                Some(pacer) if self.open => pacer.next_slot(),
                _ => Duration::from_millis(rand::random::<u64>() % START_SPREAD_MS),
            };
        }
        self.set_timer(ctx, delay, OnTimer::Drive);
    }

    /// Stops on purpose. Any other end (a panic, a failed load) is a crash: actix's
    /// `ContextFut::drop` runs `stopped()` even while a panic unwinds, so only a
    /// deliberate stop may mark the exit clean.
    fn stop_cleanly(&mut self, ctx: &mut Context<Self>) {
        self.clean = true;
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
        self.next_check_at = row.next_check_at;
        self.version = row.version;
        self.has_work = flow::has_work(self.deps(), row);
        self.open = !row.payment.status.is_final();
        self.loaded = true;
    }

    fn remember_timing(&mut self, timing: PaymentTiming) {
        self.next_check_at = timing.next_check_at;
        self.version = timing.version;
        self.has_work = timing.open || (self.deps().notify_platform && timing.notify_pending);
        self.open = timing.open;
        self.loaded = true;
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
        if self.loaded {
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

impl Handler<TimerFired> for PaymentActor {
    type Result = ();

    fn handle(&mut self, TimerFired(key): TimerFired, ctx: &mut Context<Self>) {
        if self.timer != Some(key) {
            return; // disarmed or re-armed since
        }
        self.timer = None;
        match self.on_timer {
            OnTimer::Drive => ctx.notify(Drive),
            OnTimer::Stop => self.stop_cleanly(ctx),
            OnTimer::Passivate => {
                self.passivated = true;
                self.stop_cleanly(ctx);
            }
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
        if self.loaded && seen.is_some_and(|v| v <= self.version) {
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
        if let (Some(lag), Some(due)) = (&self.deps().timer_lag, self.next_check_at) {
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
                    Ok(flow::advance(deps, row, false).await?)
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
                            Ok((flow::advance(deps, row, true).await?, None))
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

    #[tokio::test(start_paused = true)]
    async fn a_pacer_hands_out_slots_at_its_rate_from_now_on() {
        let pacer = Pacer::per_sec(4.0);
        let slots: Vec<u128> = (0..4).map(|_| pacer.next_slot().as_millis()).collect();
        assert_eq!(slots, [0, 250, 500, 750]);
        // Time passes: the next slot follows the last one taken.
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(pacer.next_slot().as_millis(), 400);
        // Idle past every slot taken: the next one is now.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(pacer.next_slot(), Duration::ZERO);
        assert_eq!(pacer.next_slot().as_millis(), 250);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_without_a_usable_rate_never_delays() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let pacer = Pacer::per_sec(rate);
            assert_eq!(pacer.next_slot(), Duration::ZERO, "{rate}");
            assert_eq!(pacer.next_slot(), Duration::ZERO, "{rate}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_at_an_absurdly_low_rate_hands_out_a_slot_an_hour() {
        for rate in [1e-19, 1e-300, f64::MIN_POSITIVE] {
            let pacer = Pacer::per_sec(rate);
            let slots: Vec<u64> = (0..3).map(|_| pacer.next_slot().as_secs()).collect();
            assert_eq!(slots, [0, 3600, 7200], "{rate}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_pacer_starts_over_from_now() {
        let pacer = Pacer::per_sec(2.0);
        for _ in 0..10 {
            pacer.next_slot();
        }
        pacer.reset();
        assert_eq!(pacer.next_slot(), Duration::ZERO);
        assert_eq!(pacer.next_slot().as_millis(), 500);
    }
}
