//! `PaymentRegistry`: finds, spawns and supervises payment actors. Actors are spread
//! over one arbiter per core by a hash of the payment id. Every actor death is
//! reported from the actor's `Drop` (panics included, which actix itself does not
//! restart); an unclean death is followed by a restart from the row, with backoff and a
//! restart budget. At start-up it re-arms every open payment, a chunk at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use uuid::Uuid;

use std::collections::HashSet;

use super::pacing::Pacers;
use super::payment::{
    ActorExited, Command, CommandReply, Origin, Passivate, PaymentCommand, Reload, Role,
};
use super::shard::Shard;
use super::timers::Timers;
use super::{Deps, PaymentActor, PaymentError};
use crate::domain::partition::partition_for;
use crate::store::{DuePayment, PaymentTiming, StoredPayment};

/// Restarts allowed per payment within `RESTART_WINDOW` before the registry gives up.
const RESTART_BUDGET: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// First restart delay (doubled per restart within the window).
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// Open payments re-armed per tick at start-up.
const REARM_CHUNK: usize = 1000;
const REARM_TICK: Duration = Duration::from_millis(5);
/// Payments woken per wheel turn at most.
const WHEEL_BATCH: usize = 5000;
/// Share of the intermediary call rate that checks missed while no actor ran may take,
/// oldest first; the rest is left to fresh work (creates, due checks, commands).
const PACED_SHARE_OF_RATE: f64 = 0.8;

/// Counters of the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Actors resident now.
    pub resident: usize,
    /// Actors spawned since start.
    pub spawned: u64,
    /// Unclean deaths (panics, failed loads) seen.
    pub crashes: u64,
    /// Restarts carried out after a crash.
    pub restarts: u64,
    /// Payments whose restart budget ran out (they wait for the next start-up or command).
    pub gave_up: u64,
    /// Partitions of `payments` this instance owns (`None`: it owns every payment).
    pub owned_partitions: Option<usize>,
    /// Actors that stopped because their next work was far away.
    pub passivated: u64,
    /// Actors woken by the timer wheel.
    pub woken: u64,
    /// Timers armed now in the actors' wheels (one per resident actor once it loaded its row).
    pub armed_timers: usize,
}

/// Timer-wheel settings: how often the wheel looks, how far ahead it wakes payments,
/// and how many actors may be resident at once.
#[derive(Debug, Clone, Copy)]
pub struct Wheel {
    pub tick: Duration,
    pub lookahead: Duration,
    pub max_resident: usize,
}

impl Wheel {
    /// A wheel for actors that passivate beyond `passivate_after`: it looks every
    /// quarter of that (at most 10 s) and wakes what is due within half of it.
    pub fn for_passivation(passivate_after: Duration, max_resident: usize) -> Self {
        Wheel {
            tick: (passivate_after / 4).min(Duration::from_secs(10)),
            lookahead: passivate_after / 2,
            max_resident,
        }
    }
}

/// Asks which partitions this instance owns (`None`: every payment).
#[derive(Message)]
#[rtype(result = "Option<Vec<i32>>")]
pub struct GetOwnedPartitions;

impl Handler<GetOwnedPartitions> for PaymentRegistry {
    type Result = MessageResult<GetOwnedPartitions>;

    fn handle(&mut self, _: GetOwnedPartitions, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(match &self.ownership {
            Ownership::All => None,
            Ownership::Partitions { owned, .. } => {
                let mut owned: Vec<i32> = owned.iter().copied().collect();
                owned.sort_unstable();
                Some(owned)
            }
        })
    }
}

/// A resident actor: a weak address (8 bytes; a strong one costs two allocations, and
/// the actor keeps itself alive until it stops), which spawn of the payment it is, and
/// whether it is transient. Kept small: one per resident payment.
struct Resident {
    addr: WeakAddr<PaymentActor>,
    generation: u32,
    transient: bool,
}

/// Which payments this instance owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// All of them (a single instance without Kafka ownership).
    All,
    /// Those whose key falls in an assigned partition of the `payments` topic.
    Partitions { count: i32, owned: HashSet<i32> },
}

impl Ownership {
    /// The partition of a payment's events (key = the payment id as text).
    pub fn partition_of(id: Uuid, count: i32) -> i32 {
        partition_for(id.to_string().as_bytes(), count)
    }

    /// Whether this instance owns payment `id`.
    pub fn owns(&self, id: Uuid) -> bool {
        match self {
            Ownership::All => true,
            Ownership::Partitions { count, owned } => {
                owned.contains(&Self::partition_of(id, *count))
            }
        }
    }
}

/// Supervisor and directory of payment actors.
pub struct PaymentRegistry {
    deps: Arc<Deps>,
    arbiters: Vec<ArbiterHandle>,
    /// Per arbiter: what its actors share (built when the registry starts).
    shards: Vec<Arc<Shard>>,
    actors: HashMap<Uuid, Resident>,
    restarts: HashMap<Uuid, VecDeque<Instant>>,
    next_generation: u32,
    stats: RegistryStats,
    ownership: Ownership,
    wheel: Option<Wheel>,
    /// A wheel query is running (ticks never overlap).
    wheel_busy: bool,
    /// Where the wheel's next page starts (after a full page).
    wheel_cursor: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
    /// Pace the overdue checks actors find when they start under each intermediary's
    /// call rate (set by `with_call_rate`); all shards share them.
    pacers: Option<Arc<Pacers>>,
    /// How long the previous owner of a partition may still be finishing a step on one
    /// of its payments after losing it (set by `with_handover`).
    handover: Option<Duration>,
    /// Partitions just assigned, until when their payments are left to the previous
    /// owner's step in flight.
    settling: HashMap<i32, tokio::time::Instant>,
    /// Stopping: nothing new is spawned for owned payments.
    draining: bool,
}

impl PaymentRegistry {
    /// A registry spreading actors over `arbiters` new arbiter threads (0: the current
    /// arbiter), owning the payments `ownership` says.
    pub fn new(deps: Arc<Deps>, arbiters: usize, ownership: Ownership) -> Self {
        // 0: the current arbiter (tests in paused time keep every actor on their runtime).
        let arbiters = if arbiters == 0 {
            vec![Arbiter::current()]
        } else {
            (0..arbiters).map(|_| Arbiter::new().handle()).collect()
        };
        PaymentRegistry {
            deps,
            arbiters,
            shards: Vec::new(),
            actors: HashMap::new(),
            restarts: HashMap::new(),
            next_generation: 0,
            stats: RegistryStats::default(),
            ownership,
            wheel: None,
            wheel_busy: false,
            wheel_cursor: None,
            pacers: None,
            handover: None,
            settling: HashMap::new(),
            draining: false,
        }
    }

    /// A rebalance revokes a partition without waiting for its actors to finish the step
    /// they are in (an intermediary call, then its write): the new owner leaves the
    /// partition's payments alone for `grace` (one call's time limit and its write)
    /// after the assignment, so it does not call the intermediary a second time for the
    /// same step. Payments this instance creates itself start at once.
    pub fn with_handover(mut self, grace: Duration) -> Self {
        self.handover = Some(grace);
        self
    }

    /// How much longer payment `id`'s partition is settling after its assignment.
    fn settling_for(&mut self, id: Uuid) -> Option<Duration> {
        let Ownership::Partitions { count, .. } = &self.ownership else {
            return None;
        };
        let partition = Ownership::partition_of(id, *count);
        let until = *self.settling.get(&partition)?;
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            self.settling.remove(&partition);
            return None;
        }
        Some(left)
    }

    /// Paces the checks missed while no actor ran (found at start-up, when partitions are
    /// assigned, after a crash) under `per_sec` calls per second to each intermediary,
    /// oldest first, instead of starting them all within half a second only to queue at
    /// the rate limit. Not positive, not a number or infinite: no pacing.
    pub fn with_call_rate(mut self, per_sec: f64) -> Self {
        self.pacers = (per_sec.is_finite() && per_sec > 0.0)
            .then(|| Arc::new(Pacers::per_sec(per_sec * PACED_SHARE_OF_RATE)));
        self
    }

    /// Turns on the durable timer wheel (with passivating actors).
    pub fn with_wheel(mut self, wheel: Wheel) -> Self {
        self.wheel = Some(wheel);
        self
    }

    /// One turn of the wheel: wake the owned payments due within the lookahead that have
    /// no actor, up to the resident cap.
    fn turn_wheel(&mut self, ctx: &mut Context<Self>) {
        let Some(wheel) = self.wheel else { return };
        if self.draining {
            return;
        }
        let room = wheel.max_resident.saturating_sub(self.actors.len());
        if self.wheel_busy || room == 0 {
            return;
        }
        self.wheel_busy = true;
        let store = self.deps.store.clone();
        let include_notify = self.deps.notify_platform;
        let until = crate::domain::time::precise_now()
            + chrono::Duration::from_std(wheel.lookahead).unwrap_or(chrono::Duration::zero());
        let after = self.wheel_cursor;
        let (deps, pacers) = (self.deps.clone(), self.pacers.clone());
        ctx.spawn(
            async move {
                let due = store
                    .due_payments(until, after, include_notify, WHEEL_BATCH as i64)
                    .await?;
                if let Some(pacers) = pacers {
                    let timings = due.iter().map(|d| d.timing);
                    pacers.resolve(&deps.intermediaries, timings).await;
                }
                Ok::<_, crate::store::StoreError>(due)
            }
            .into_actor(self)
            .map(move |due, act, ctx| {
                act.wheel_busy = false;
                let due = match due {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::warn!(error = %e, "timer wheel query failed");
                        return;
                    }
                };
                // A full page continues there next tick; a short one starts over, so
                // rows that are not ours or already resident never starve the rest.
                act.wheel_cursor = if due.len() == WHEEL_BATCH {
                    due.last().map(|last| (last.due, last.id))
                } else {
                    None
                };
                for DuePayment { id, timing, .. } in due {
                    if act.actors.len() >= wheel.max_resident {
                        break;
                    }
                    if act.ownership.owns(id)
                        && !act.actors.contains_key(&id)
                        && act.settling_for(id).is_none()
                    {
                        act.stats.woken += 1;
                        act.ensure_with(id, Some(timing), None, ctx);
                    }
                }
            }),
        );
    }

    /// The actor of payment `id`, spawned if not resident. A payment this instance does
    /// not own gets a transient actor that answers and stops.
    fn ensure(&mut self, id: Uuid, ctx: &mut Context<Self>) -> Addr<PaymentActor> {
        self.ensure_with(id, None, None, ctx)
    }

    /// `ensure`, handing a new actor its timing when it is known already, and the row
    /// for its first check when it was just created.
    fn ensure_with(
        &mut self,
        id: Uuid,
        timing: Option<PaymentTiming>,
        fresh: Option<Box<StoredPayment>>,
        ctx: &mut Context<Self>,
    ) -> Addr<PaymentActor> {
        let owned = self.ownership.owns(id);
        if let Some(resident) = self.actors.get(&id) {
            if resident.transient != owned {
                if let Some(addr) = resident.addr.upgrade() {
                    return addr;
                }
            }
        }
        let transient = !owned;
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        if self.shards.is_empty() {
            self.start_shards(ctx);
        }
        let index = (id.as_u128() % self.arbiters.len() as u128) as usize;
        let shard = self.shards[index].clone();
        let origin = if fresh.is_some() {
            Origin::Created
        } else {
            Origin::Stored
        };
        let role = if transient {
            Role::Transient
        } else {
            Role::Owner
        };
        if let Some(row) = fresh {
            shard.fresh.put(*row);
        }
        // Its intermediary's pacer, resolved by whoever read the timing (start-up, wheel).
        let timing = timing.map(|timing| {
            let pacers = self.pacers.as_ref();
            (timing, pacers.map(|p| p.resolved(timing.service_id)))
        });
        let addr = PaymentActor::start_in_arbiter(&self.arbiters[index], move |_| {
            PaymentActor::new(id, shard, generation, role, timing, origin)
        });
        self.stats.spawned += 1;
        self.actors.insert(
            id,
            Resident {
                addr: addr.downgrade(),
                generation,
                transient,
            },
        );
        addr
    }
}

impl PaymentRegistry {
    /// One timer wheel per arbiter, its driver running on that arbiter.
    fn start_shards(&mut self, ctx: &mut Context<Self>) {
        let exits: Recipient<ActorExited> = ctx.address().recipient();
        // Shared: the rate is the intermediary's, whatever the arbiter.
        let pacers = self.pacers.clone();
        self.shards = self
            .arbiters
            .iter()
            .map(|arbiter| {
                let timers = Timers::new();
                arbiter.spawn(timers.clone().run());
                Arc::new(Shard {
                    deps: self.deps.clone(),
                    timers,
                    exits: exits.clone(),
                    fresh: Default::default(),
                    pacers: pacers.clone(),
                })
            })
            .collect();
    }
}

impl Actor for PaymentRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.start_shards(ctx);
        if let Some(wheel) = self.wheel {
            ctx.run_interval(wheel.tick, |act, ctx| act.turn_wheel(ctx));
        }
    }
}

/// Makes sure the payment has a resident actor (after creation, or to wake it). The
/// sender of a payment just created hands over the row: a new actor starts with its
/// timing and its first check works on it instead of reading it back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ensure(pub Uuid, pub Option<Box<StoredPayment>>);

impl Handler<Ensure> for PaymentRegistry {
    type Result = ();

    fn handle(&mut self, Ensure(id, row): Ensure, ctx: &mut Context<Self>) {
        // The owner picks up payments it does not own from their events.
        if self.ownership.owns(id) && !self.draining {
            let timing = row.as_deref().map(PaymentTiming::from);
            self.ensure_with(id, timing, row, ctx);
        }
    }
}

/// An event about payment `id` was seen on the `payments` topic: the owner makes sure
/// its actor runs and has the latest row (a non-owner may have changed it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Touch(pub Uuid);

impl Handler<Touch> for PaymentRegistry {
    type Result = ();

    fn handle(&mut self, Touch(id): Touch, ctx: &mut Context<Self>) {
        if !self.ownership.owns(id) || self.draining {
            return;
        }
        let fresh = !self
            .actors
            .get(&id)
            .is_some_and(|r| !r.transient && r.addr.upgrade().is_some());
        if fresh {
            if let Some(left) = self.settling_for(id) {
                // The previous owner may be in a step of this payment: look again later.
                ctx.notify_later(Touch(id), left);
                return;
            }
        }
        let addr = self.ensure(id, ctx);
        if !fresh {
            if let Err(e) = addr.try_send(Reload(None)) {
                tracing::debug!(payment_id = %id, error = %e, "reload not queued; the actor is busy and will see the new version on its next write");
            }
        }
    }
}

/// Events cassa wrote were seen on the `payments` topic: (payment id, row version) each.
/// Answers, per event, whether that is all handled: not ours, or our resident actor was
/// told (it reloads only if it has not seen that version: usually the event of its own
/// write). `false`: no resident actor, the caller goes the long way (`Touch`).
#[derive(Message)]
#[rtype(result = "Vec<bool>")]
pub struct TouchSeen(pub Vec<(Uuid, i64)>);

impl Handler<TouchSeen> for PaymentRegistry {
    type Result = Vec<bool>;

    fn handle(&mut self, TouchSeen(seen): TouchSeen, _ctx: &mut Context<Self>) -> Vec<bool> {
        seen.into_iter()
            .map(|(id, version)| self.touch_seen(id, version))
            .collect()
    }
}

impl PaymentRegistry {
    fn touch_seen(&mut self, id: Uuid, version: i64) -> bool {
        if !self.ownership.owns(id) {
            return true;
        }
        let Some(addr) = self
            .actors
            .get(&id)
            .filter(|r| !r.transient)
            .and_then(|r| r.addr.upgrade())
        else {
            return false;
        };
        match addr.try_send(Reload(Some(version))) {
            Ok(()) => true,
            Err(e) => {
                // Full mailbox or an actor just gone: the caller takes the long way
                // rather than counting the event as handled.
                tracing::debug!(payment_id = %id, error = %e, "reload not queued; the event goes the long way");
                false
            }
        }
    }
}

/// Partitions of the `payments` topic assigned to this instance (a rebalance).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PartitionsAssigned {
    pub count: i32,
    pub partitions: Vec<i32>,
}

impl Handler<PartitionsAssigned> for PaymentRegistry {
    type Result = ();

    fn handle(&mut self, msg: PartitionsAssigned, ctx: &mut Context<Self>) {
        let owned = match &mut self.ownership {
            Ownership::Partitions { count, owned } => {
                *count = msg.count;
                owned
            }
            Ownership::All => return,
        };
        let gained: Vec<i32> = msg
            .partitions
            .iter()
            .copied()
            .filter(|p| !owned.contains(p))
            .collect();
        owned.extend(msg.partitions.iter().copied());
        match self.handover {
            Some(grace) if !gained.is_empty() => {
                let until = tokio::time::Instant::now() + grace;
                self.settling.extend(gained.iter().map(|p| (*p, until)));
                tracing::info!(partitions = ?msg.partitions, ?grace, "partitions assigned; loading their open payments once the previous owner's steps are done");
                ctx.notify_later(RearmOpen, grace);
            }
            _ => {
                tracing::info!(partitions = ?msg.partitions, "partitions assigned; loading their open payments");
                ctx.notify(RearmOpen);
            }
        }
    }
}

/// Partitions taken away from this instance: their actors stop (rows are durable).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PartitionsRevoked(pub Vec<i32>);

impl Handler<PartitionsRevoked> for PaymentRegistry {
    type Result = ();

    fn handle(
        &mut self,
        PartitionsRevoked(partitions): PartitionsRevoked,
        _ctx: &mut Context<Self>,
    ) {
        let Ownership::Partitions { count, owned } = &mut self.ownership else {
            return;
        };
        for p in &partitions {
            owned.remove(p);
            self.settling.remove(p);
        }
        let count = *count;
        let revoked: HashSet<i32> = partitions.iter().copied().collect();
        // Out of the map at once: a re-assignment must spawn fresh actors, not reuse
        // stopping ones (their late exits are ignored by generation).
        let leaving: Vec<Uuid> = self
            .actors
            .iter()
            .filter(|(id, r)| {
                !r.transient && revoked.contains(&Ownership::partition_of(**id, count))
            })
            .map(|(id, _)| *id)
            .collect();
        let stopped = leaving.len();
        for id in leaving {
            if let Some(resident) = self.actors.remove(&id) {
                if let Some(addr) = resident.addr.upgrade() {
                    addr.do_send(Passivate);
                }
            }
        }
        // The slots the stopped actors took are free again: a re-assignment (a
        // rebalance revokes every partition first) paces its checks from now, not behind
        // a backlog nobody will check. Actors of partitions still owned keep theirs, so
        // for a while both may take the rate: the intermediary's limit still holds.
        if stopped > 0 {
            if let Some(pacers) = &self.pacers {
                pacers.reset();
            }
        }
        tracing::info!(
            ?partitions,
            stopped,
            "partitions revoked; their actors stop"
        );
    }
}

/// A command for a payment, routed to its actor (spawned if needed).
#[derive(Message)]
#[rtype(result = "Result<CommandReply, PaymentError>")]
pub struct Forward {
    pub id: Uuid,
    pub command: PaymentCommand,
}

impl Handler<Forward> for PaymentRegistry {
    type Result = ResponseFuture<Result<CommandReply, PaymentError>>;

    fn handle(&mut self, forward: Forward, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.ensure(forward.id, ctx);
        let registry = ctx.address();
        Box::pin(async move {
            match addr.send(Command(forward.command)).await {
                Ok(reply) => reply,
                // The actor stopped with the command queued (its payment just ended,
                // or it crashed): once more, on a fresh actor that loads the row.
                Err(_) => match registry.send(Retry(forward)).await {
                    Ok(reply) => reply,
                    Err(e) => Err(PaymentError::Unavailable(format!(
                        "the payment registry is not answering: {e}"
                    ))),
                },
            }
        })
    }
}

/// A `Forward` whose actor stopped before answering: tried once more, not again.
#[derive(Message)]
#[rtype(result = "Result<CommandReply, PaymentError>")]
struct Retry(Forward);

impl Handler<Retry> for PaymentRegistry {
    type Result = ResponseFuture<Result<CommandReply, PaymentError>>;

    fn handle(&mut self, Retry(forward): Retry, ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.ensure(forward.id, ctx);
        Box::pin(async move {
            addr.send(Command(forward.command))
                .await
                .unwrap_or_else(|e| {
                    Err(PaymentError::Unavailable(format!(
                        "the payment's actor is restarting ({e}); retry"
                    )))
                })
        })
    }
}

impl Handler<ActorExited> for PaymentRegistry {
    type Result = ();

    fn handle(&mut self, exit: ActorExited, ctx: &mut Context<Self>) {
        if self
            .actors
            .get(&exit.id)
            .is_some_and(|r| r.generation == exit.generation)
        {
            self.actors.remove(&exit.id);
        }
        if exit.passivated {
            self.stats.passivated += 1;
        }
        if exit.clean {
            // A clean end forgets past crashes (the map stays as small as the trouble).
            self.restarts.remove(&exit.id);
            return;
        }
        self.stats.crashes += 1;
        let now = Instant::now();
        let history = self.restarts.entry(exit.id).or_default();
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            history.pop_front();
        }
        if history.len() >= RESTART_BUDGET {
            self.stats.gave_up += 1;
            tracing::error!(payment_id = %exit.id, "payment actor keeps crashing; restart budget spent, left for the next start-up or command");
            return;
        }
        history.push_back(now);
        let delay = RESTART_BACKOFF * 2u32.pow(history.len() as u32 - 1);
        tracing::warn!(payment_id = %exit.id, ?delay, "payment actor died; restarting from its row");
        ctx.run_later(delay, move |act, ctx| {
            act.stats.restarts += 1;
            act.ensure(exit.id, ctx);
        });
    }
}

/// Re-arms every open payment this instance owns that has no actor (start-up, partition
/// assignment): answers how many; the actors are spawned a chunk per tick afterwards.
#[derive(Message)]
#[rtype(result = "Result<usize, PaymentError>")]
pub struct RearmOpen;

impl Handler<RearmOpen> for PaymentRegistry {
    type Result = ResponseActFuture<Self, Result<usize, PaymentError>>;

    fn handle(&mut self, _: RearmOpen, _ctx: &mut Context<Self>) -> Self::Result {
        let (deps, pacers) = (self.deps.clone(), self.pacers.clone());
        let store = self.deps.store.clone();
        let wheel = self.wheel;
        let include_notify = self.deps.notify_platform;
        Box::pin(
            async move {
                let timings: Vec<(Uuid, Option<PaymentTiming>)> = match wheel {
                    // Passivating: only what is due soon; the wheel wakes the rest in time.
                    Some(wheel) => {
                        let until = crate::domain::time::precise_now()
                            + chrono::Duration::from_std(wheel.lookahead)
                                .unwrap_or(chrono::Duration::zero());
                        let due = store
                            .due_payments(until, None, include_notify, wheel.max_resident as i64)
                            .await?;
                        due.into_iter().map(|d| (d.id, Some(d.timing))).collect()
                    }
                    None => store.open_payment_timings().await?,
                };
                // The overdue checks are paced by intermediary: find each one's pacer.
                if let Some(pacers) = pacers {
                    let known = timings.iter().filter_map(|(_, timing)| *timing);
                    pacers.resolve(&deps.intermediaries, known).await;
                }
                Ok::<_, crate::store::StoreError>(timings)
            }
            .into_actor(self)
            .map(|ids, act, ctx| {
                let mut ids: Vec<(Uuid, Option<PaymentTiming>)> = ids.inspect_err(|e| {
                    tracing::error!(error = %e, "cannot re-arm the open payments");
                })?;
                if act.draining {
                    ids.clear();
                }
                ids.retain(|(id, _)| act.ownership.owns(*id) && !act.actors.contains_key(id));
                let count = ids.len();
                for (tick, chunk) in ids.chunks(REARM_CHUNK).enumerate() {
                    let chunk = chunk.to_vec();
                    ctx.run_later(REARM_TICK * tick as u32, move |act, ctx| {
                        for (id, timing) in chunk {
                            act.ensure_with(id, timing, None, ctx);
                        }
                    });
                }
                tracing::info!(
                    open_payments = count,
                    "re-arming the open payments of the owned partitions"
                );
                Ok(count)
            }),
        )
    }
}

/// Asks for the registry's counters.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct GetStats;

impl Handler<GetStats> for PaymentRegistry {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _ctx: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.resident = self.actors.len();
        stats.armed_timers = self.shards.iter().map(|s| s.timers.len()).sum();
        stats.owned_partitions = match &self.ownership {
            Ownership::All => None,
            Ownership::Partitions { owned, .. } => Some(owned.len()),
        };
        MessageResult(stats)
    }
}

/// The instance is stopping: every resident actor finishes the step it is in (the
/// `Passivate` queues behind it) and stops, and nothing new is spawned for owned
/// payments. Answers how many actors were stopped, once all have. Until the consumers
/// leave the group, no other instance owns these payments, so none repeats a step.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

impl Handler<Drain> for PaymentRegistry {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let resident: Vec<Addr<PaymentActor>> = self
            .actors
            .values()
            .filter_map(|r| r.addr.upgrade())
            .collect();
        Box::pin(async move {
            let count = resident.len();
            futures::future::join_all(resident.iter().map(|addr| addr.send(Passivate))).await;
            count
        })
    }
}
