//! Paused time: the poll schedule drives a payment actor's checks — dense at first,
//! sparse later, never past expiry, then EXPIRED with the position cancelled. An
//! in-memory store keeps every await on the paused runtime, so virtual time only moves
//! when the actor waits for its timer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::Actor;
use async_trait::async_trait;
use cassa::actors::{
    Deps, Ensure, Forward, GetStats, Ownership, PartitionsAssigned, PartitionsRevoked,
    PaymentCommand, PaymentRegistry, RearmOpen, TouchSeen, Wheel,
};
use cassa::domain::payment::{NotifyLink, Payment};
use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::intake::{ConfigCache, Intake};
use cassa::intermediary::*;
use cassa::store::*;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::helpers::{eventually_every, pagopa_body};
use crate::memory_store::MemoryStore;

/// Reports the (virtual) time of every status check and cancellation.
struct Watched {
    calls: mpsc::UnboundedSender<(&'static str, DateTime<Utc>)>,
}

fn pending() -> Position {
    Position {
        iuv: "01234567890123456".into(),
        notice_code: "301234567890123456".into(),
        status: PositionState::Pending,
        checkout_url: "http://sim/checkout".into(),
        paid_at: None,
        transaction_id: None,
    }
}

#[async_trait]
impl Intermediary for Watched {
    async fn create_position(&self, _: &PositionRequest) -> Result<Position, IntermediaryError> {
        Ok(pending())
    }
    async fn position(&self, _: &str) -> Result<Position, IntermediaryError> {
        let _ = self.calls.send(("check", time::precise_now()));
        Ok(pending())
    }
    async fn cancel_position(&self, _: &str) -> Result<(), IntermediaryError> {
        let _ = self.calls.send(("cancel", time::precise_now()));
        Ok(())
    }
    async fn execute_payment(
        &self,
        _: &GatewayRequest,
    ) -> Result<GatewayResult, IntermediaryError> {
        Err(IntermediaryError::Refused("not a wallet test".into()))
    }
}

/// A PAGOPA payment in PAYMENT_PENDING created at `created`, with a position.
fn pending_payment(id: Uuid, created: DateTime<Utc>, expire_at: Option<DateTime<Utc>>) -> Payment {
    let mut json = pagopa_body("10.00");
    let object = json.as_object_mut().unwrap();
    object.insert("id".into(), id.to_string().into());
    object.insert("user_id".into(), Uuid::new_v4().to_string().into());
    object.insert("created_at".into(), time::format(&created).into());
    object.insert("updated_at".into(), time::format(&created).into());
    object.insert("status".into(), "PAYMENT_PENDING".into());
    object["payment"]["iud"] = Payment::iud_for(id).into();
    object["payment"]["iuv"] = "01234567890123456".into();
    if let Some(at) = expire_at {
        object["payment"]["expire_at"] = time::format(&at).into();
    }
    object["links"] = serde_json::json!({});
    serde_json::from_value(json).unwrap()
}

/// Actor dependencies on `store` with the poll `schedule`, and the intermediary calls
/// they make, as they happen.
fn watched_deps(
    store: Arc<MemoryStore>,
    schedule: &str,
) -> (
    Arc<Deps>,
    mpsc::UnboundedReceiver<(&'static str, DateTime<Utc>)>,
) {
    let (calls, seen) = mpsc::unbounded_channel();
    let store: Arc<dyn Store> = store;
    let deps = Arc::new(Deps {
        intermediaries: Intermediaries::fixed(store.clone(), Arc::new(Watched { calls })),
        store,
        schedule: schedule.parse().unwrap(),
        public_url: "http://cassa.test".into(),
        notify_platform: false,
        outbound: Arc::new(cassa::outbound::Outbound::new(
            Default::default(),
            cassa::outbound::DEFAULT_TIMEOUT,
        )),
        passivate_after: None,
        timer_lag: None,
    });
    (deps, seen)
}

#[actix_rt::test]
async fn the_poll_schedule_drives_an_actors_checks_in_paused_time() {
    tokio::time::pause();
    let created = time::now();
    let id = Uuid::new_v4();
    let payment = pending_payment(id, created, Some(created + Duration::minutes(30)));
    let store = Arc::new(MemoryStore::default());
    let first = created + Duration::minutes(1);
    store.rows.lock().unwrap().insert(
        id,
        StoredPayment {
            payment,
            version: 1,
            saga: Default::default(),
            next_check_at: Some(first),
        },
    );

    // Every minute for the first 3 minutes, then every 10 minutes.
    let (deps, mut seen) = watched_deps(store.clone(), "3m:1m,*:10m");
    let registry = PaymentRegistry::new(deps, 0, Ownership::All).start();
    registry.send(RearmOpen).await.unwrap().unwrap();

    let mut checks = Vec::new();
    let cancelled = loop {
        match seen.recv().await.unwrap() {
            ("check", at) => checks.push(at),
            (_, at) => break at,
        }
    };
    let minutes = |at: DateTime<Utc>| (at - created).num_milliseconds() as f64 / 60_000.0;
    let offsets: Vec<f64> = checks.iter().map(|at| minutes(*at)).collect();
    assert_eq!(checks.len(), 6, "checks at {offsets:?} minutes");
    // First check when it was due.
    assert!((offsets[0] - 1.0).abs() < 0.02, "{offsets:?}");
    // Then +1 min (jitter ≤ 10 %) while younger than 3 minutes, +10 min after; measured
    // from the last check as stored, in whole seconds, so up to a second less.
    let gaps: Vec<f64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, (low, high)) in
        gaps.iter()
            .zip([(0.98, 1.11), (0.98, 1.11), (9.98, 11.01), (9.98, 11.01)])
    {
        assert!(
            (low..=high).contains(gap),
            "gap {gap} not in {low}..{high}: {offsets:?}"
        );
    }
    // Never past expiry: the last check is at expiry, then the position is cancelled.
    assert!((offsets[5] - 30.0).abs() < 0.02, "{offsets:?}");
    assert!((minutes(cancelled) - 30.0).abs() < 0.02);
    let mut status = None;
    for _ in 0..100 {
        status = store
            .rows
            .lock()
            .unwrap()
            .get(&id)
            .map(|r| r.payment.status);
        if status == Some(PaymentStatus::Expired) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, Some(PaymentStatus::Expired));
}

/// Inserts a PAYMENT_PENDING payment created two hours before `now`, due at `due`.
fn insert_pending(store: &MemoryStore, now: DateTime<Utc>, due: DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    store.rows.lock().unwrap().insert(
        id,
        StoredPayment {
            payment: pending_payment(id, now - Duration::hours(2), None),
            version: 1,
            saga: Default::default(),
            next_check_at: Some(due),
        },
    );
    id
}

/// After a restart, the checks missed meanwhile are paced under the intermediary's call
/// rate (80 % of it), not all started within half a second to queue at its limit
/// (100 000 of them held about 1.9 GB while they waited). Finished payments with only
/// the platform left to tell (not this instance's role here) take no slot, and payments
/// not due yet are not checked early.
#[actix_rt::test]
async fn overdue_checks_found_at_start_up_are_paced_under_the_call_rate() {
    tokio::time::pause();
    let now = time::now();
    let store = Arc::new(MemoryStore::default());
    for i in 0..100 {
        insert_pending(&store, now, now - Duration::minutes(60 + i));
    }
    for _ in 0..20 {
        insert_pending(&store, now, now + Duration::hours(1));
    }
    for _ in 0..20 {
        // Older than every open one: re-armed first.
        let id = insert_pending(&store, now, now - Duration::hours(3));
        let mut rows = store.rows.lock().unwrap();
        let row = rows.get_mut(&id).unwrap();
        row.payment
            .transition(PaymentStatus::Complete, now)
            .unwrap();
        row.payment.links.notify.push(NotifyLink {
            url: "http://platform.test/outcome".into(),
            method: "POST".into(),
            sent_at: None,
            refused: None,
        });
        assert!(row.payment.notify_pending());
    }
    let (deps, mut seen) = watched_deps(store.clone(), "*:2h");
    let registry = paced_registry(deps);
    let started = time::precise_now();
    registry.send(RearmOpen).await.unwrap().unwrap();
    let checks = checks_after(&mut seen, started, 100).await;
    // 8 per second: one every 125 ms, the last after 99 × 125 ms.
    let closest = checks.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0);
    assert!(closest >= 120, "two checks {closest} ms apart: {checks:?}");
    let last = checks.last().copied().unwrap_or(0);
    assert!(
        (12_300..=12_500).contains(&last),
        "last check after {last} ms"
    );
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert!(
        seen.try_recv().is_err(),
        "no check of a payment not due yet"
    );
}

/// A PAGOPA service whose payments call the intermediary at `url`.
fn service_at(url: &str) -> ServiceConfig {
    let now = time::now();
    ServiceConfig {
        id: Uuid::new_v4(),
        tenant_id: Uuid::new_v4(),
        payment_types: vec![cassa::domain::payment::PaymentType::Pagopa],
        intermediary_kind: "simulator".into(),
        intermediary_url: url.into(),
        active: true,
        document: serde_json::json!({}),
        credentials: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// `per_intermediary` overdue payments at each of two intermediaries (two services).
fn overdue_at_two_intermediaries(store: &MemoryStore, per_intermediary: i64) -> Vec<Uuid> {
    let now = time::now();
    let mut ids = Vec::new();
    for url in ["http://one.test", "http://two.test"] {
        let service = service_at(url);
        for i in 0..per_intermediary {
            let id = insert_pending(store, now, now - Duration::minutes(60 + i));
            let mut rows = store.rows.lock().unwrap();
            rows.get_mut(&id).unwrap().payment.service_id = service.id;
            ids.push(id);
        }
        store.services.lock().unwrap().insert(service.id, service);
    }
    ids
}

/// A registry pacing overdue checks at 8 per second (80 % of 10) to each intermediary.
fn paced_registry(deps: Arc<Deps>) -> actix::Addr<PaymentRegistry> {
    PaymentRegistry::new(deps, 0, Ownership::All)
        .with_call_rate(10.0)
        .start()
}

/// The next `count` checks, in milliseconds from `since`.
async fn checks_after(
    seen: &mut mpsc::UnboundedReceiver<(&'static str, DateTime<Utc>)>,
    since: DateTime<Utc>,
    count: usize,
) -> Vec<i64> {
    let mut checks = Vec::new();
    while checks.len() < count {
        if let ("check", at) = seen.recv().await.unwrap() {
            checks.push((at - since).num_milliseconds());
        }
    }
    checks
}

/// Each of the first `slots` slots (125 ms apart) was taken by one payment of each
/// intermediary; one pacer for both would have spread them over twice as many slots.
fn two_checks_per_slot(checks: &[i64], slots: i64) {
    for slot in 0..slots {
        let at = slot * 125;
        let taken = checks.iter().filter(|&&c| (c - at).abs() < 20).count();
        assert_eq!(taken, 2, "slot at {at} ms: {checks:?}");
    }
}

/// Each intermediary has its own rate limit, so the overdue checks are paced per
/// intermediary: the payments of two intermediaries are checked side by side, each at the
/// paced rate, not one backlog behind the other's.
#[actix_rt::test]
async fn overdue_checks_are_paced_per_intermediary() {
    tokio::time::pause();
    let store = Arc::new(MemoryStore::default());
    overdue_at_two_intermediaries(&store, 10);
    let (deps, mut seen) = watched_deps(store.clone(), "*:2h");
    let registry = paced_registry(deps);
    let started = time::precise_now();
    registry.send(RearmOpen).await.unwrap().unwrap();
    two_checks_per_slot(&checks_after(&mut seen, started, 20).await, 10);
}

/// An actor that reads its own timing when it starts (woken by an event or a command, or
/// restarted after a crash) is paced by its intermediary too.
#[actix_rt::test]
async fn actors_that_load_their_own_timing_are_paced_per_intermediary() {
    tokio::time::pause();
    let store = Arc::new(MemoryStore::default());
    let ids = overdue_at_two_intermediaries(&store, 5);
    let (deps, mut seen) = watched_deps(store.clone(), "*:2h");
    let registry = paced_registry(deps);
    let started = time::precise_now();
    for id in ids {
        registry.send(Ensure(id, None)).await.unwrap();
    }
    let checks = checks_after(&mut seen, started, 10).await;
    assert_eq!(store.timing_reads.load(Ordering::SeqCst), 10);
    two_checks_per_slot(&checks, 5);
}

/// Assigns the one partition of the `payments` topic to this instance.
async fn assign_the_partition(registry: &actix::Addr<PaymentRegistry>) {
    registry
        .send(PartitionsAssigned {
            count: 1,
            partitions: vec![0],
        })
        .await
        .unwrap();
}

/// Milliseconds from `since` to the next check at the intermediary.
async fn next_check_after(
    seen: &mut mpsc::UnboundedReceiver<(&'static str, DateTime<Utc>)>,
    since: DateTime<Utc>,
) -> i64 {
    loop {
        if let ("check", at) = seen.recv().await.unwrap() {
            return (at - since).num_milliseconds();
        }
    }
}

/// Overdue payments of the instance's partitions, re-armed when they are assigned.
async fn paced_on_assignment(
    count: usize,
    per_sec: f64,
) -> (
    Arc<MemoryStore>,
    mpsc::UnboundedReceiver<(&'static str, DateTime<Utc>)>,
    actix::Addr<PaymentRegistry>,
) {
    let now = time::now();
    let store = Arc::new(MemoryStore::default());
    for i in 0..count {
        insert_pending(&store, now, now - Duration::minutes(60 + i as i64));
    }
    let (deps, seen) = watched_deps(store.clone(), "*:2h");
    let ownership = Ownership::Partitions {
        count: 1,
        owned: Default::default(),
    };
    let registry = PaymentRegistry::new(deps, 0, ownership)
        .with_call_rate(per_sec)
        .start();
    assign_the_partition(&registry).await;
    spawned(&registry, count as u64).await;
    (store, seen, registry)
}

/// A rebalance revokes the partitions (their actors stop, with the slots they took) and
/// assigns them again: the new actors are paced from then on, not behind the slots of
/// the stopped ones.
#[actix_rt::test]
async fn a_rebalance_paces_overdue_checks_from_the_reassignment() {
    tokio::time::pause();
    // 100 slots 125 ms apart: the last at 12.4 s.
    let (_store, mut seen, registry) = paced_on_assignment(100, 10.0).await;
    registry.send(PartitionsRevoked(vec![0])).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    while seen.try_recv().is_ok() {}
    let reassigned = time::precise_now();
    assign_the_partition(&registry).await;
    let first = next_check_after(&mut seen, reassigned).await;
    assert!(
        first < 1000,
        "first check {first} ms after the reassignment"
    );
}

/// A payment just created is fresh work even when its actor starts late (a busy
/// registry): it is checked at once, not behind the paced backlog.
#[actix_rt::test]
async fn a_created_payment_is_not_paced_behind_overdue_ones() {
    tokio::time::pause();
    // 10 slots 1.25 s apart: the last after 11.25 s.
    let (store, mut seen, registry) = paced_on_assignment(10, 1.0).await;
    let now = time::now();
    let id = insert_pending(&store, now, now - Duration::seconds(5));
    let row = store.rows.lock().unwrap().get(&id).cloned().unwrap();
    while seen.try_recv().is_ok() {}
    let created = time::precise_now();
    registry
        .send(Ensure(id, Some(Box::new(row))))
        .await
        .unwrap();
    let first = next_check_after(&mut seen, created).await;
    assert!(first < 1000, "checked {first} ms after its creation");
}

/// The timer wheel (with passivation) finds what is due soon and hands each actor it wakes
/// its timing: no actor reads it again (at start-up, 100 000 such reads queued at once).
/// Each payment is still checked when due: the overdue one at once, the others on time.
#[actix_rt::test]
async fn the_timer_wheel_hands_woken_actors_their_timing() {
    tokio::time::pause();
    let now = time::now();
    let store = Arc::new(MemoryStore::default());
    for due in [
        now - Duration::hours(1),
        now + Duration::minutes(1),
        now + Duration::hours(1),
    ] {
        insert_pending(&store, now, due);
    }
    let (deps, mut seen) = watched_deps(store.clone(), "*:2h");
    let registry = PaymentRegistry::new(deps, 0, Ownership::All)
        .with_wheel(Wheel::for_passivation(
            std::time::Duration::from_secs(600),
            100,
        ))
        .start();
    let started = time::precise_now();
    // Due within the lookahead (5 minutes): the overdue one and the one in a minute.
    assert_eq!(registry.send(RearmOpen).await.unwrap().unwrap(), 2);
    // Checks in seconds from the start (the next ones are two hours later).
    let mut checks = Vec::new();
    while checks.len() < 3 {
        if let ("check", at) = seen.recv().await.unwrap() {
            checks.push((at - started).num_seconds());
        }
    }
    assert_eq!(checks[0], 0, "the overdue one at once: {checks:?}");
    assert!((58..=61).contains(&checks[1]), "{checks:?}");
    // The wheel woke the third within its lookahead; it was checked when due.
    assert!((3598..=3601).contains(&checks[2]), "{checks:?}");
    assert_eq!(registry.send(GetStats).await.unwrap().woken, 1);
    assert_eq!(store.timing_reads.load(Ordering::SeqCst), 0);
}

/// Events the owner wrote itself come back from Kafka with the version it already has:
/// no reload. An event of a newer version (another instance's write) makes it reload and
/// act on the new row at once.
#[actix_rt::test]
async fn an_owner_reloads_only_for_versions_it_has_not_seen() {
    tokio::time::pause();
    let created = time::now();
    let id = Uuid::new_v4();
    let payment = pending_payment(id, created, None);
    let store = Arc::new(MemoryStore::default());
    store.rows.lock().unwrap().insert(
        id,
        StoredPayment {
            payment,
            version: 3,
            saga: Default::default(),
            next_check_at: Some(created + Duration::hours(1)),
        },
    );
    let (deps, mut seen) = watched_deps(store.clone(), "*:1h");
    let registry = PaymentRegistry::new(deps, 0, Ownership::All).start();
    registry.send(RearmOpen).await.unwrap().unwrap();
    // Re-arming spawns in chunks (paused time: sleeping only lets it run).
    spawned(&registry, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let reads = store.timing_reads.load(Ordering::SeqCst);

    // Its own version (and an older one): handled, nothing read.
    assert_eq!(
        registry
            .send(TouchSeen(vec![(id, 3), (id, 2)]))
            .await
            .unwrap(),
        [true, true]
    );
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    assert_eq!(store.timing_reads.load(Ordering::SeqCst), reads);
    // No resident actor: the caller must go the long way.
    assert_eq!(
        registry
            .send(TouchSeen(vec![(Uuid::new_v4(), 1), (id, 3)]))
            .await
            .unwrap(),
        [false, true]
    );

    // Another instance wrote version 4, due now: reloaded, checked at once (not in an hour).
    {
        let mut rows = store.rows.lock().unwrap();
        let row = rows.get_mut(&id).unwrap();
        row.version = 4;
        row.next_check_at = Some(time::precise_now());
    }
    assert_eq!(
        registry.send(TouchSeen(vec![(id, 4)])).await.unwrap(),
        [true]
    );
    let (what, at) = seen.recv().await.unwrap();
    assert_eq!(what, "check");
    assert!(at - created < Duration::minutes(1), "checked at {at}");
    assert_eq!(store.timing_reads.load(Ordering::SeqCst), reads + 1);
}

/// A payment created at `created` whose first check is due at `first`, handed to a new
/// actor with its row (as a create does): the payment id, the store, the intermediary's
/// calls and the registry.
async fn handed_over(
    created: DateTime<Utc>,
    first: DateTime<Utc>,
) -> (
    Uuid,
    Arc<MemoryStore>,
    mpsc::UnboundedReceiver<(&'static str, DateTime<Utc>)>,
    actix::Addr<PaymentRegistry>,
) {
    let id = Uuid::new_v4();
    let row = StoredPayment {
        payment: pending_payment(id, created, None),
        version: 1,
        saga: Default::default(),
        next_check_at: Some(first),
    };
    let store = Arc::new(MemoryStore::default());
    store.rows.lock().unwrap().insert(id, row.clone());
    let (deps, seen) = watched_deps(store.clone(), "*:1m");
    let registry = PaymentRegistry::new(deps, 0, Ownership::All).start();
    registry
        .send(Ensure(id, Some(Box::new(row))))
        .await
        .unwrap();
    (id, store, seen, registry)
}

/// Waits (paused time: sleeping only lets the actors run) until payment `id` is at
/// `version`; asserts it got there.
async fn wait_for_version(store: &MemoryStore, id: Uuid, version: i64) {
    let reached = format!("payment {id} at version {version}");
    let at = || async { store.rows.lock().unwrap()[&id].version };
    eventually_every(&reached, PAUSED_WAIT, PAUSED_STEP, || async {
        at().await >= version
    })
    .await;
    assert_eq!(at().await, version);
}

/// How long the paused-time waits give the actors (virtual time), in steps of
/// [`PAUSED_STEP`]: each sleep lets them run and moves the clock on by that much only
/// (tokio's timer rounds it up to the next millisecond: a hundred steps take 1.1 s).
const PAUSED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const PAUSED_STEP: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits (paused time) until the registry has spawned exactly `count` actors.
async fn spawned(registry: &actix::Addr<PaymentRegistry>, count: u64) {
    let stats = || async { registry.send(GetStats).await.unwrap() };
    let spawned = format!("{count} actors spawned");
    eventually_every(&spawned, PAUSED_WAIT, PAUSED_STEP, || async {
        let spawned = stats().await.spawned;
        if spawned == count {
            Ok(())
        } else {
            Err(spawned)
        }
    })
    .await;
}

/// A payment just created is handed to its new actor with the row the creation returned:
/// the first check works on it without reading it back; the next one reads it fresh.
#[actix_rt::test]
async fn a_new_actor_starts_from_the_created_row() {
    tokio::time::pause();
    let created = time::now();
    let (id, store, mut seen, _registry) = handed_over(created, created).await;
    assert_eq!(seen.recv().await.unwrap().0, "check");
    // The check's outcome is written.
    wait_for_version(&store, id, 2).await;
    assert_eq!(store.row_reads.load(Ordering::SeqCst), 0);
    assert_eq!(seen.recv().await.unwrap().0, "check");
    assert_eq!(store.row_reads.load(Ordering::SeqCst), 1);
}

/// A command on a payment just created reads the row itself, and the hand-over is gone
/// after it: the next check reads the row too (the command may have changed it).
#[actix_rt::test]
async fn a_command_drops_the_created_row() {
    tokio::time::pause();
    let created = time::now();
    let (id, store, mut seen, registry) =
        handed_over(created, created + Duration::seconds(30)).await;
    let reply = registry
        .send(Forward {
            id,
            command: PaymentCommand::CheckNow,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.payment.id, id);
    assert_eq!(seen.recv().await.unwrap().0, "check");
    assert_eq!(store.row_reads.load(Ordering::SeqCst), 1);
    // The scheduled check (the row's next_check_at is now a minute after the command)
    // works on the row the command wrote: one call, no conflict, no second try.
    assert_eq!(seen.recv().await.unwrap().0, "check");
    wait_for_version(&store, id, 3).await;
    assert_eq!(store.row_reads.load(Ordering::SeqCst), 2);
    assert!(
        seen.try_recv().is_err(),
        "the check ran twice: it started from the handed-over row, which the command had made stale"
    );
}

/// A create that finds the registry's mailbox full waits for room: the new payment still
/// gets its actor, which checks it.
#[actix_rt::test]
async fn a_create_waits_for_room_in_a_full_registry() {
    let store = Arc::new(MemoryStore::default());
    let (deps, mut seen) = watched_deps(store.clone(), "*:1m");
    let registry = PaymentRegistry::new(deps, 0, Ownership::All).start();
    // This task does not yield until the create: the registry takes none of these.
    let mut queued = 0;
    while registry.try_send(GetStats).is_ok() {
        queued += 1;
    }
    assert!(queued > 0);
    let configs = ConfigCache::default();
    let intake = Intake {
        store: store.as_ref(),
        registry: &registry,
        public_url: "http://cassa.test",
        configs: &configs,
    };
    let id = Uuid::new_v4();
    let created = intake
        .store_new(pending_payment(id, time::now(), None), None)
        .await
        .unwrap();
    assert!(matches!(created, Created::New(row) if row.payment.id == id));
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
        .await
        .expect("the new payment got no actor: its Ensure was dropped");
    assert_eq!(first.unwrap().0, "check");
}
