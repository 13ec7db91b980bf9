//! The `Store` contract, run against both backends: creation with its outbox event,
//! optimistic concurrency, holds captured/released once, open payments, remote_id
//! uniqueness, idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use cassa::domain::payment::Payment;
use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::seed::DEMO_ACCOUNT;
use cassa::store::{
    self, Change, Created, HoldAction, HoldRequest, IdempotencyKey, NewPayment, OutboxRecord,
    Store, StoreError,
};
use uuid::Uuid;

use crate::helpers::*;

async fn open_store(backend: Backend) -> (Arc<dyn Store>, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    let store = store::open(&db.url).await.unwrap();
    cassa::seed::demo(store.as_ref(), "http://127.0.0.1:9/sim")
        .await
        .unwrap();
    // Seeding twice is harmless.
    cassa::seed::demo(store.as_ref(), "http://127.0.0.1:9/sim")
        .await
        .unwrap();
    (store, db)
}

/// The unpublished events once `ready` holds for them (at most 10 s; then the last read,
/// for the assertions to report). On PostgreSQL an event shows only once every
/// transaction older than its own has ended, in any database of the cluster, and other
/// tests write at the same time.
async fn unpublished_when(
    store: &dyn Store,
    ready: impl Fn(&[OutboxRecord]) -> bool,
) -> Vec<OutboxRecord> {
    let ready = &ready;
    poll(Duration::from_secs(10), POLL_EVERY, || async move {
        let events = store.unpublished_events(10_000).await.unwrap();
        if ready(&events) {
            Ok(events)
        } else {
            Err(events)
        }
    })
    .await
    .unwrap_or_else(|last| last)
}

fn sample(kind: &str, amount: &str) -> Payment {
    let now = time::now();
    let id = Uuid::new_v4();
    let mut json = if kind == "WALLET" {
        wallet_body(amount)
    } else {
        pagopa_body(amount)
    };
    let obj = json.as_object_mut().unwrap();
    obj.insert("id".into(), id.to_string().into());
    obj.insert("user_id".into(), Uuid::new_v4().to_string().into());
    obj.insert("created_at".into(), time::format(&now).into());
    obj.insert("updated_at".into(), time::format(&now).into());
    obj.insert("status".into(), "CREATION_PENDING".into());
    obj["payment"]["iud"] = Payment::iud_for(id).into();
    obj.insert("links".into(), serde_json::json!({}));
    serde_json::from_value(json).unwrap()
}

fn new_payment(payment: Payment, hold: bool) -> NewPayment {
    let hold = hold.then(|| HoldRequest {
        account_id: DEMO_ACCOUNT,
        amount_cents: payment.payment.amount.cents(),
    });
    NewPayment {
        next_check_at: Some(payment.created_at),
        payment,
        saga: Default::default(),
        idempotency: None,
        hold,
    }
}

/// Stores `new`, which must be a new payment: its row.
async fn create_new(store: &dyn Store, new: NewPayment) -> store::StoredPayment {
    match store.create_payment(new).await.unwrap() {
        Created::New(row) => row,
        other => panic!("expected a new payment, got {other:?}"),
    }
}

/// Moves `row` to PAYMENT_PENDING (a status change, with its event): the new row.
async fn made_pending(store: &dyn Store, row: &store::StoredPayment) -> store::StoredPayment {
    let mut pending = row.payment.clone();
    pending
        .transition(PaymentStatus::PaymentPending, time::now())
        .unwrap();
    store
        .update_payment(row.version, Change::of(row, pending, row.saga.clone()))
        .await
        .unwrap()
}

/// The demo account's (balance, held) in cents.
async fn demo_account(store: &dyn Store) -> (i64, i64) {
    let account = store.account(DEMO_ACCOUNT).await.unwrap().unwrap();
    (account.balance_cents, account.held_cents)
}

/// Create: the row at version 1, read back as written, one outbox event, open.
async fn a_created_payment_is_stored_with_one_event(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let payment = sample("PAGOPA", "12.34");
    let row = create_new(store.as_ref(), new_payment(payment.clone(), false)).await;
    assert_eq!(row.version, 1);
    let read = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(read.payment, payment);
    assert_eq!(store.payment_events(payment.id).await.unwrap().len(), 1);
    assert_eq!(store.open_payment_ids().await.unwrap(), vec![payment.id]);
}

on_both_databases!(a_created_payment_is_stored_with_one_event);

/// A status change writes the row and an event; a stale version is refused, writing no
/// event.
async fn a_status_change_writes_an_event_and_a_stale_one_is_refused(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let payment = sample("PAGOPA", "12.34");
    create_new(store.as_ref(), new_payment(payment.clone(), false)).await;
    let read = store.payment(payment.id).await.unwrap().unwrap();
    let mut next = read.payment.clone();
    next.transition(PaymentStatus::PaymentPending, time::now())
        .unwrap();
    let changed = store
        .update_payment(1, Change::of(&read, next.clone(), read.saga.clone()))
        .await
        .unwrap();
    assert_eq!(changed.version, 2);
    let stale = store
        .update_payment(1, Change::of(&read, next.clone(), read.saga.clone()))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(id)) if id == payment.id));
    let events = store.payment_events(payment.id).await.unwrap();
    assert_eq!(events.len(), 2, "the refused change wrote no event");
    assert_eq!(events[1]["status"], "PAYMENT_PENDING");
    assert_ne!(events[0]["event_id"], events[1]["event_id"]);
}

on_both_databases!(a_status_change_writes_an_event_and_a_stale_one_is_refused);

/// Bookkeeping-only changes (no status change) write no event.
async fn a_bookkeeping_change_writes_no_event(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let created = create_new(
        store.as_ref(),
        new_payment(sample("PAGOPA", "12.34"), false),
    )
    .await;
    let changed = made_pending(store.as_ref(), &created).await;
    let mut touched = changed.payment.clone();
    touched.links.update.last_check_at = Some(time::now());
    let touched = store
        .update_payment(2, Change::of(&changed, touched, changed.saga.clone()))
        .await
        .unwrap();
    assert_eq!(touched.version, 3);
    assert_eq!(
        store
            .payment_events(created.payment.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

on_both_databases!(a_bookkeeping_change_writes_no_event);

/// A final payment is no longer open.
async fn a_final_payment_is_no_longer_open(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let created = create_new(
        store.as_ref(),
        new_payment(sample("PAGOPA", "12.34"), false),
    )
    .await;
    let pending = made_pending(store.as_ref(), &created).await;
    assert_eq!(
        store.open_payment_ids().await.unwrap(),
        vec![created.payment.id]
    );
    let mut done = pending.payment.clone();
    done.transition(PaymentStatus::Complete, time::now())
        .unwrap();
    store
        .update_payment(2, Change::of(&pending, done, pending.saga.clone()))
        .await
        .unwrap();
    assert!(store.open_payment_ids().await.unwrap().is_empty());
}

on_both_databases!(a_final_payment_is_no_longer_open);

/// Holds: placed at creation, captured once even if asked twice.
async fn a_hold_is_captured_once_even_if_asked_twice(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let wallet = sample("WALLET", "100.00");
    let row = create_new(store.as_ref(), new_payment(wallet.clone(), true)).await;
    assert_eq!(demo_account(store.as_ref()).await, (100_000, 10_000));
    let mut approved = row.payment.clone();
    approved
        .transition(PaymentStatus::PaymentPending, time::now())
        .unwrap();
    let mut change = Change::of(&row, approved, row.saga.clone());
    change.hold = Some(HoldAction::Capture);
    let row = store.update_payment(1, change.clone()).await.unwrap();
    let mut again = change;
    again.emit_event = false;
    store.update_payment(row.version, again).await.unwrap();
    assert_eq!(
        demo_account(store.as_ref()).await,
        (90_000, 0),
        "captured exactly once"
    );
}

on_both_databases!(a_hold_is_captured_once_even_if_asked_twice);

/// A released hold gives the money back, once.
async fn a_released_hold_gives_the_money_back_once(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let row = create_new(store.as_ref(), new_payment(sample("WALLET", "30.00"), true)).await;
    assert_eq!(demo_account(store.as_ref()).await, (100_000, 3_000));
    let mut change = Change::of(&row, row.payment.clone(), row.saga.clone());
    change.hold = Some(HoldAction::Release);
    let row = store.update_payment(1, change.clone()).await.unwrap();
    store.update_payment(row.version, change).await.unwrap();
    assert_eq!(demo_account(store.as_ref()).await, (100_000, 0));
}

on_both_databases!(a_released_hold_gives_the_money_back_once);

/// Insufficient funds: stored CREATION_FAILED, nothing held.
async fn insufficient_funds_store_a_failed_creation_holding_nothing(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let poor = sample("WALLET", "5000.00");
    let row = create_new(store.as_ref(), new_payment(poor, true)).await;
    assert_eq!(row.payment.status, PaymentStatus::CreationFailed);
    assert_eq!(
        store
            .account(DEMO_ACCOUNT)
            .await
            .unwrap()
            .unwrap()
            .held_cents,
        0
    );
}

on_both_databases!(insufficient_funds_store_a_failed_creation_holding_nothing);

/// remote_id is unique: a second payment naming it is answered with the first.
async fn a_remote_id_is_taken_once(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let mut first = sample("PAGOPA", "1.00");
    let remote = Uuid::new_v4();
    first.remote_id = Some(remote);
    let mut second = sample("PAGOPA", "2.00");
    second.remote_id = Some(remote);
    assert!(matches!(
        store
            .create_payment(new_payment(first.clone(), false))
            .await
            .unwrap(),
        Created::New(_)
    ));
    match store
        .create_payment(new_payment(second, false))
        .await
        .unwrap()
    {
        Created::RemoteIdTaken(existing) => assert_eq!(existing.payment.id, first.id),
        other => panic!("expected RemoteIdTaken, got {other:?}"),
    }
}

on_both_databases!(a_remote_id_is_taken_once);

/// Idempotency keys: the same body replays the payment, another body is refused naming it.
async fn an_idempotency_key_replays_or_refuses_another_body(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let key = |hash: &str| IdempotencyKey {
        scope: "tenant:x".into(),
        key: "k".into(),
        request_hash: hash.into(),
    };
    let mut keyed = new_payment(sample("PAGOPA", "3.00"), false);
    keyed.idempotency = Some(key("h1"));
    let Created::New(original) = store.create_payment(keyed).await.unwrap() else {
        panic!()
    };
    let mut replay = new_payment(sample("PAGOPA", "3.00"), false);
    replay.idempotency = Some(key("h1"));
    match store.create_payment(replay).await.unwrap() {
        Created::Replayed(row) => assert_eq!(row.payment.id, original.payment.id),
        other => panic!("expected Replayed, got {other:?}"),
    }
    let mut reuse = new_payment(sample("PAGOPA", "4.00"), false);
    reuse.idempotency = Some(key("h2"));
    assert!(
        matches!(store.create_payment(reuse).await.unwrap(), Created::KeyReused { payment_id } if payment_id == original.payment.id)
    );
}

on_both_databases!(an_idempotency_key_replays_or_refuses_another_body);

async fn due_payments_page_in_order(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let now = time::now();
    let mut expected = Vec::new();
    for seconds_ago in [30, 20, 10] {
        let payment = sample("PAGOPA", "1.00");
        let mut new = new_payment(payment.clone(), false);
        new.next_check_at = Some(now - chrono::Duration::seconds(seconds_ago));
        store.create_payment(new).await.unwrap();
        expected.push(payment.id);
    }
    // Not due yet.
    let mut later = new_payment(sample("PAGOPA", "1.00"), false);
    later.next_check_at = Some(now + chrono::Duration::seconds(600));
    store.create_payment(later).await.unwrap();

    let first = store.due_payments(now, None, true, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|due| due.id).collect::<Vec<_>>(),
        expected[..2]
    );
    // Each with its timing, for its actor to arm without reading it again.
    for due in &first {
        assert_eq!(due.timing.next_check_at, Some(due.due));
        assert!(due.timing.open);
        assert_eq!(due.timing.version, 1);
    }
    let after = first.last().map(|last| (last.due, last.id));
    let rest = store.due_payments(now, after, true, 2).await.unwrap();
    assert_eq!(
        rest.iter().map(|due| due.id).collect::<Vec<_>>(),
        expected[2..]
    );
    let all = store
        .due_payments(now + chrono::Duration::seconds(601), None, true, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
}

on_both_databases!(due_payments_page_in_order);

/// Start-up re-arms every open payment from `open_payment_timings`: all of them, soonest
/// check first, finished ones left out. More rows than sqlx passes from SQLite's thread at
/// a time (50), since the rows are read as a stream.
async fn open_payments_are_listed_soonest_first(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let now = time::now();
    // Checks due in a scrambled order: i * 37 mod 131 runs through 0..131 once.
    let payments: Vec<NewPayment> = (0..131)
        .map(|i| {
            let mut new = new_payment(sample("PAGOPA", "1.00"), false);
            new.next_check_at = Some(now + chrono::Duration::seconds((i * 37 % 131) as i64));
            new
        })
        .collect();
    store.import_payments(&payments).await.unwrap();
    // Every tenth one is cancelled.
    for new in payments.iter().step_by(10) {
        let row = store.payment(new.payment.id).await.unwrap().unwrap();
        let mut done = row.payment.clone();
        done.transition(PaymentStatus::Canceled, time::now())
            .unwrap();
        store
            .update_payment(row.version, Change::of(&row, done, row.saga.clone()))
            .await
            .unwrap();
    }
    let mut open: Vec<&NewPayment> = payments
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, new)| new)
        .collect();
    open.sort_by_key(|new| new.next_check_at);
    let expected: Vec<Uuid> = open.iter().map(|new| new.payment.id).collect();

    let timings = store.open_payment_timings().await.unwrap();
    assert_eq!(
        timings.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        expected
    );
    for ((_, timing), new) in timings.iter().zip(&open) {
        let timing = timing.as_ref().unwrap();
        assert!(timing.open);
        assert_eq!(timing.version, 1);
        assert_eq!(timing.next_check_at, new.next_check_at);
    }
    assert_eq!(store.open_payment_ids().await.unwrap(), expected);
}

on_both_databases!(open_payments_are_listed_soonest_first);

/// The listing pages newest first, and payments created in the same instant are ordered
/// by id: a page boundary between them neither repeats nor skips one.
async fn the_listing_pages_through_equal_timestamps(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let now = time::now();
    // Three instants, four payments in each.
    let payments: Vec<NewPayment> = (0..12)
        .map(|i| {
            let mut payment = sample("PAGOPA", "1.00");
            payment.created_at = now - chrono::Duration::seconds(i / 4);
            new_payment(payment, false)
        })
        .collect();
    store.import_payments(&payments).await.unwrap();
    let mut expected: Vec<(chrono::DateTime<chrono::Utc>, Uuid)> = payments
        .iter()
        .map(|new| (new.payment.created_at, new.payment.id))
        .collect();
    expected.sort_by(|a, b| b.cmp(a));
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_payments(&store::PaymentFilter::default(), 3, cursor)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(store::Cursor {
            created_at: last.payment.created_at,
            id: last.payment.id,
        });
        listed.extend(
            page.iter()
                .map(|row| (row.payment.created_at, row.payment.id)),
        );
        assert!(listed.len() <= expected.len(), "listed again: {listed:?}");
    }
    assert_eq!(listed, expected);
}

on_both_databases!(the_listing_pages_through_equal_timestamps);

/// Concurrent writes (on SQLite, committed together by the group commit): a refused
/// create (remote_id taken, idempotency key replayed or reused), a version conflict or a
/// failed hold answers only its own caller; every other write lands with its event.
async fn concurrent_writes_answer_each_alone(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let remote = Uuid::new_v4();
    let key = |hash: &str| IdempotencyKey {
        scope: "tenant:concurrent".into(),
        key: "same-key".into(),
        request_hash: hash.into(),
    };
    let existing = match store
        .create_payment(new_payment(sample("PAGOPA", "1.00"), false))
        .await
        .unwrap()
    {
        Created::New(row) => row,
        other => panic!("expected New, got {other:?}"),
    };
    let mut writes = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let existing = existing.clone();
        writes.push(tokio::spawn(async move {
            let mut new = new_payment(sample("PAGOPA", "2.00"), false);
            match i % 5 {
                0 => new.payment.remote_id = Some(remote),
                1 => new.idempotency = Some(key("same-body")),
                2 => new.idempotency = Some(key(if i == 2 { "same-body" } else { "other" })),
                3 => {
                    // A stale version: a conflict for all but (at most) one.
                    let mut payment = existing.payment.clone();
                    payment.reason = format!("update {i}");
                    let change = Change::of(&existing, payment, existing.saga.clone());
                    return (i, Err(store.update_payment(existing.version, change).await));
                }
                _ => {}
            }
            (i, Ok(store.create_payment(new).await))
        }));
    }
    let mut new_ids = Vec::new();
    let (mut remote_new, mut remote_taken, mut updated, mut conflicts) = (0, 0, 0, 0);
    let mut keyed = Vec::new();
    for write in writes {
        match write.await.unwrap() {
            (i, Ok(created)) => match created.unwrap() {
                Created::New(row) => {
                    if i % 5 == 0 {
                        remote_new += 1;
                    }
                    if i % 5 == 1 || i % 5 == 2 {
                        keyed.push((i, "new", row.payment.id));
                    }
                    new_ids.push(row.payment.id);
                }
                Created::RemoteIdTaken(row) => {
                    assert_eq!(row.payment.remote_id, Some(remote));
                    remote_taken += 1;
                }
                Created::Replayed(row) => keyed.push((i, "replayed", row.payment.id)),
                Created::KeyReused { payment_id } => keyed.push((i, "reused", payment_id)),
            },
            (_, Err(result)) => match result {
                Ok(_) => updated += 1,
                Err(StoreError::Conflict(id)) => {
                    assert_eq!(id, existing.payment.id);
                    conflicts += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            },
        }
    }
    assert_eq!((remote_new, remote_taken), (1, 7));
    assert_eq!((updated, conflicts), (1, 7));
    // One keyed create made the payment; the others with the same body replay it, and
    // the ones with another body are refused, all pointing at it.
    let made: Vec<_> = keyed.iter().filter(|k| k.1 == "new").collect();
    assert_eq!(made.len(), 1, "{keyed:?}");
    assert!(keyed.iter().all(|k| k.2 == made[0].2), "{keyed:?}");
    assert_eq!(keyed.len(), 16);
    // 8 plain + 1 remote + 1 keyed payment, each with its creation event.
    assert_eq!(new_ids.len(), 10);
    for &id in &new_ids {
        assert!(store.payment(id).await.unwrap().is_some());
        assert_eq!(store.payment_events(id).await.unwrap().len(), 1);
    }
    assert_eq!(
        store
            .payment_events(existing.payment.id)
            .await
            .unwrap()
            .len(),
        1,
        "a change without a status change writes no event"
    );
}

on_both_databases!(concurrent_writes_answer_each_alone);

/// `count` new payments (CREATION_PENDING, version 1, one event each), made one by one.
async fn created_payments(store: &dyn Store, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let new = new_payment(sample("PAGOPA", "2.00"), false);
        ids.push(create_new(store, new).await.payment.id);
    }
    ids
}

/// Status changes of distinct payments at once (on SQLite: one multi-row UPDATE in a
/// group): each lands with its event, recorded at the version it wrote; a stale version
/// among them is refused alone.
async fn concurrent_status_changes_land_with_their_events(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let new_ids = created_payments(store.as_ref(), 10).await;
    let mut rows = Vec::new();
    for id in &new_ids {
        rows.push(store.payment(*id).await.unwrap().unwrap());
    }
    let mut changes = Vec::new();
    for (i, row) in rows.iter().cloned().enumerate() {
        let store = store.clone();
        changes.push(tokio::spawn(async move {
            let mut payment = row.payment.clone();
            payment.status = PaymentStatus::PaymentPending;
            let change = Change::of(&row, payment, row.saga.clone());
            let expected = if i == 0 { row.version + 5 } else { row.version };
            (row.payment.id, store.update_payment(expected, change).await)
        }));
    }
    let stale = rows[0].payment.id;
    for change in changes {
        match change.await.unwrap() {
            (id, Err(StoreError::Conflict(conflict))) => {
                assert_eq!((id, conflict), (stale, stale));
            }
            (id, Ok(row)) => {
                assert_ne!(id, stale, "a stale version was written");
                assert_eq!(
                    (row.version, row.payment.status),
                    (2, PaymentStatus::PaymentPending)
                );
                let stored = store.payment(id).await.unwrap().unwrap();
                assert_eq!(
                    (stored.version, stored.payment.status),
                    (2, PaymentStatus::PaymentPending)
                );
            }
            (id, Err(e)) => panic!("update of {id}: {e}"),
        }
    }
    let stored = store.payment(stale).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.payment.status),
        (1, PaymentStatus::CreationPending)
    );
    let expected_events = |id: &Uuid| if *id == stale { 1 } else { 2 };
    let events = unpublished_when(store.as_ref(), |events| {
        new_ids
            .iter()
            .all(|id| events.iter().filter(|e| e.payment_id == *id).count() == expected_events(id))
    })
    .await;
    for id in &new_ids {
        let versions: Vec<Option<i64>> = events
            .iter()
            .filter(|e| e.payment_id == *id)
            .map(|e| e.version)
            .collect();
        let expected = if *id == stale {
            vec![Some(1)]
        } else {
            vec![Some(1), Some(2)]
        };
        assert_eq!(versions, expected, "events of {id}");
        // Each event shows its own payment, in the status it wrote (a group derives them
        // from its documents' texts).
        let shown: Vec<(serde_json::Value, serde_json::Value)> = store
            .payment_events(*id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e["id"].clone(), e["status"].clone()))
            .collect();
        let statuses: &[&str] = if *id == stale {
            &["CREATION_PENDING"]
        } else {
            &["CREATION_PENDING", "PAYMENT_PENDING"]
        };
        let expected: Vec<_> = statuses
            .iter()
            .map(|status| (id.to_string().into(), (*status).into()))
            .collect();
        assert_eq!(shown, expected, "events of {id}");
    }
}

on_both_databases!(concurrent_status_changes_land_with_their_events);

/// Creates, status changes and outbox marks at once (on SQLite they share groups, written
/// as batches of statements): each lands with its own event, the marks only on the events
/// they name.
async fn concurrent_creates_changes_and_marks_land_alone(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    // Nine payments at PAYMENT_PENDING (version 2), two events each.
    let mut rows = Vec::new();
    for id in created_payments(store.as_ref(), 9).await {
        let row = store.payment(id).await.unwrap().unwrap();
        rows.push(made_pending(store.as_ref(), &row).await);
    }
    let events = unpublished_when(store.as_ref(), |events| {
        rows.iter().all(|row| {
            events
                .iter()
                .filter(|e| e.payment_id == row.payment.id)
                .count()
                == 2
        })
    })
    .await;
    let (mark, keep) = events.split_at(events.len() / 2);
    let mark: Vec<i64> = mark.iter().map(|e| e.seq).collect();
    let mut writes = Vec::new();
    for row in rows.iter().cloned() {
        let updating = store.clone();
        writes.push(tokio::spawn(async move {
            let store = updating;
            let row = store.payment(row.payment.id).await.unwrap().unwrap();
            let mut payment = row.payment.clone();
            payment.status = PaymentStatus::PaymentStarted;
            let change = Change::of(&row, payment, row.saga.clone());
            store.update_payment(row.version, change).await.unwrap();
            row.payment.id
        }));
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            match store
                .create_payment(new_payment(sample("PAGOPA", "3.00"), false))
                .await
                .unwrap()
            {
                Created::New(row) => row.payment.id,
                other => panic!("expected New, got {other:?}"),
            }
        }));
    }
    let marking = {
        let store = store.clone();
        let mark = mark.clone();
        tokio::spawn(async move { store.mark_published(&mark).await })
    };
    let mut written = Vec::new();
    for write in writes {
        written.push(write.await.unwrap());
    }
    marking.await.unwrap().unwrap();
    // What was left unmarked, and one new event per write.
    let unpublished = unpublished_when(store.as_ref(), |events| {
        events.len() >= keep.len() + written.len()
    })
    .await;
    let seqs: Vec<i64> = unpublished.iter().map(|e| e.seq).collect();
    assert!(
        mark.iter().all(|seq| !seqs.contains(seq)),
        "a marked event is unpublished"
    );
    assert!(
        keep.iter().all(|e| seqs.contains(&e.seq)),
        "an unmarked event was marked"
    );
    for (i, id) in written.iter().enumerate() {
        let versions: Vec<Option<i64>> = unpublished
            .iter()
            .filter(|e| e.payment_id == *id)
            .map(|e| e.version)
            .collect();
        let started = i % 2 == 0;
        let row = store.payment(*id).await.unwrap().unwrap();
        let events = store.payment_events(*id).await.unwrap().len();
        if started {
            assert_eq!(row.payment.status, PaymentStatus::PaymentStarted);
            assert!(
                versions.ends_with(&[Some(3)]),
                "events of {id}: {versions:?}"
            );
            assert_eq!(events, 3, "created, pending, started: one event each");
        } else {
            assert_eq!((row.version, versions, events), (1, vec![Some(1)], 1));
        }
    }
}

on_both_databases!(concurrent_creates_changes_and_marks_land_alone);

/// A group that fails (one create reuses a taken id) is rolled back and retried write by
/// write: only that create fails, the taken payment is untouched, and the writer goes on.
async fn a_failed_group_is_retried_write_by_write(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let [id] = created_payments(store.as_ref(), 1).await[..] else {
        unreachable!()
    };
    let created = store.payment(id).await.unwrap().unwrap();
    made_pending(store.as_ref(), &created).await;
    let taken = store.payment(id).await.unwrap().unwrap();
    let taken_events = store.payment_events(taken.payment.id).await.unwrap().len();
    let mut creates = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let mut new = new_payment(sample("PAGOPA", "4.00"), false);
        if i == 5 {
            new.payment.id = taken.payment.id;
        }
        creates.push(tokio::spawn(
            async move { (i, store.create_payment(new).await) },
        ));
    }
    for create in creates {
        match create.await.unwrap() {
            (5, Err(_)) => {}
            (5, Ok(created)) => panic!("a taken id was created again: {created:?}"),
            (_, Ok(Created::New(row))) => {
                assert_eq!(store.payment_events(row.payment.id).await.unwrap().len(), 1);
            }
            (i, other) => panic!("create {i}: {other:?}"),
        }
    }
    let after = store.payment(taken.payment.id).await.unwrap().unwrap();
    assert_eq!(
        (after.version, after.payment.payment.amount),
        (taken.version, taken.payment.payment.amount)
    );
    assert_eq!(
        store.payment_events(taken.payment.id).await.unwrap().len(),
        taken_events
    );
    match store
        .create_payment(new_payment(sample("PAGOPA", "5.00"), false))
        .await
        .unwrap()
    {
        Created::New(_) => {}
        other => panic!("expected New, got {other:?}"),
    }
}

on_both_databases!(a_failed_group_is_retried_write_by_write);

/// PostgreSQL draws an event's `seq` before its transaction commits, so a later `seq` can
/// commit first. The relay must not pass an event still being written: it would never
/// publish it. An event waits until every transaction older than its own has ended.
#[actix_rt::test]
async fn an_event_committed_late_is_still_published_on_postgres() {
    use sqlx::Connection;
    let (store, db) = open_store(Backend::Postgres).await;
    // A write that began first (it has its transaction id) and commits last.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let late = Uuid::new_v4();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO outbox (event_id, payment_id, topic, payload, created_at, version) \
         VALUES ($1, $2, 'payments', '{}', now(), 1)",
    )
    .bind(Uuid::new_v4())
    .bind(late)
    .execute(&mut conn)
    .await
    .unwrap();
    let Created::New(row) = store
        .create_payment(new_payment(sample("PAGOPA", "1.00"), false))
        .await
        .unwrap()
    else {
        panic!("expected a new payment")
    };
    let early = store.unpublished_events(100).await.unwrap();
    assert!(
        early.is_empty(),
        "an event offered while an older write is still open: {early:?}"
    );
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    let both = unpublished_when(store.as_ref(), |events| events.len() == 2).await;
    let order: Vec<Uuid> = both.iter().map(|e| e.payment_id).collect();
    assert_eq!(order, vec![late, row.payment.id], "in the order written");
    // Marking a prefix moves past it only.
    store.mark_published(&[both[0].seq]).await.unwrap();
    let rest = unpublished_when(store.as_ref(), |events| events.len() == 1).await;
    assert_eq!(
        rest.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![both[1].seq]
    );
    store.mark_published(&[both[1].seq]).await.unwrap();
    assert!(store.unpublished_events(100).await.unwrap().is_empty());
    // A relay that lost its lease and marks late never moves the cursor back.
    store.mark_published(&[both[0].seq]).await.unwrap();
    assert!(store.unpublished_events(100).await.unwrap().is_empty());
}

/// A writing transaction left open holds the relay back: the store says how many events
/// wait, since when, and which session holds them; nothing once it has ended.
#[actix_rt::test]
async fn events_held_back_by_an_open_transaction_are_reported_on_postgres() {
    use sqlx::Connection;
    let (store, db) = open_store(Backend::Postgres).await;
    assert_eq!(store.held_back_events().await.unwrap(), None);
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    // Writing takes a transaction id, older than the event's that follows.
    sqlx::query("SELECT txid_current()")
        .execute(&mut blocker)
        .await
        .unwrap();
    let before = time::now();
    store
        .create_payment(new_payment(sample("PAGOPA", "1.00"), false))
        .await
        .unwrap();
    // Other tests' transactions may be older for a moment; the blocker stays.
    let holder = format!("session pid {pid} ");
    // At most 10 s; then the last reading, for the assertions to report.
    let held = poll(Duration::from_secs(10), POLL_EVERY, || async {
        let held = store.held_back_events().await.unwrap();
        let by_blocker = held
            .as_ref()
            .is_some_and(|h| h.holder.as_deref().is_some_and(|d| d.starts_with(&holder)));
        if by_blocker {
            Ok(held)
        } else {
            Err(held)
        }
    })
    .await
    .unwrap_or_else(|last| last);
    let held = held.expect("the event is held back");
    assert_eq!(held.events, 1, "{held:?}");
    assert!(
        held.oldest >= before - chrono::TimeDelta::seconds(1),
        "{held:?}"
    );
    let description = held.holder.unwrap_or_default();
    assert!(description.starts_with(&holder), "{description}");
    assert!(
        description.contains("SELECT txid_current()"),
        "{description}"
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    // At most 10 s; the assertion below reports what is still held.
    let _ = poll(Duration::from_secs(10), POLL_EVERY, || async {
        match store.held_back_events().await.unwrap() {
            None => Ok(()),
            Some(_) => Err(()),
        }
    })
    .await;
    assert_eq!(store.held_back_events().await.unwrap(), None);
    assert_eq!(
        unpublished_when(store.as_ref(), |e| e.len() == 1)
            .await
            .len(),
        1
    );
}

/// A database copied from a server whose transaction ids run ahead of this one's (a dump
/// restored elsewhere): what the relay had not published is published first, and new
/// events are not stuck behind a cursor this server's ids never reach.
#[actix_rt::test]
async fn a_database_copied_from_a_server_further_ahead_still_publishes_on_postgres() {
    use sqlx::Connection;
    let (store, db) = open_store(Backend::Postgres).await;
    let mut ids = Vec::new();
    for amount in ["1.00", "2.00"] {
        match store
            .create_payment(new_payment(sample("PAGOPA", amount), false))
            .await
            .unwrap()
        {
            Created::New(row) => ids.push(row.payment.id),
            other => panic!("expected New, got {other:?}"),
        }
    }
    let events = unpublished_when(store.as_ref(), |events| events.len() == 2).await;
    store.mark_published(&[events[0].seq]).await.unwrap();
    drop(store);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for copied in [
        "UPDATE outbox SET txid = txid + 1000000000000",
        "UPDATE outbox_cursor SET txid = txid + 1000000000000",
    ] {
        sqlx::query(copied).execute(&mut conn).await.unwrap();
    }
    let store = store::open(&db.url).await.unwrap();
    let Created::New(row) = store
        .create_payment(new_payment(sample("PAGOPA", "3.00"), false))
        .await
        .unwrap()
    else {
        panic!("expected a new payment")
    };
    let rest = unpublished_when(store.as_ref(), |events| events.len() == 2).await;
    assert_eq!(
        rest.iter().map(|e| e.payment_id).collect::<Vec<_>>(),
        vec![events[1].payment_id, row.payment.id],
        "the unpublished copy first, then the new event; the published one not again"
    );
    assert_eq!(events[1].payment_id, ids[1]);
}

/// Every stored document and every stored event, as bytes.
async fn stored_documents_and_events(backend: Backend, url: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use sqlx::{Connection, Row};
    const DOCUMENTS: &str = "SELECT document FROM payments";
    const EVENTS: &str = "SELECT payload FROM outbox";
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let documents = sqlx::query(DOCUMENTS).fetch_all(&mut conn).await.unwrap();
            let events = sqlx::query(EVENTS).fetch_all(&mut conn).await.unwrap();
            let bytes = |rows: Vec<sqlx::postgres::PgRow>| -> Vec<Vec<u8>> {
                rows.iter().map(|r| r.get(0)).collect()
            };
            (bytes(documents), bytes(events))
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            let documents = sqlx::query(DOCUMENTS).fetch_all(&mut conn).await.unwrap();
            let events = sqlx::query(EVENTS).fetch_all(&mut conn).await.unwrap();
            let bytes = |rows: Vec<sqlx::sqlite::SqliteRow>| -> Vec<Vec<u8>> {
                rows.iter().map(|r| r.get(0)).collect()
            };
            (bytes(documents), bytes(events))
        }
    }
}

/// Payments' documents and events are stored packed, in a fraction of their text, by
/// every write path (grouped creates and updates, a keyed create, a wallet hold and its
/// settlement), and read back whole: the payment, its event history and the relay's
/// records.
async fn documents_and_events_are_stored_packed(backend: Backend) {
    let (store, db) = open_store(backend).await;
    let mut payment = sample("PAGOPA", "12.34");
    payment.reason = "Refezione scolastica, marzo".into();
    let Created::New(row) = store
        .create_payment(new_payment(payment.clone(), false))
        .await
        .unwrap()
    else {
        panic!("expected a new payment")
    };
    let id = row.payment.id;
    let text = serde_json::to_string(&payment).unwrap();
    let (documents, events) = stored_documents_and_events(backend, &db.url).await;
    for (what, stored) in [("document", &documents[0]), ("event", &events[0])] {
        assert!(
            stored.len() * 2 < text.len(),
            "the {what} takes {} bytes for a {}-byte document",
            stored.len(),
            text.len()
        );
    }
    let read = store.payment(id).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&read.payment).unwrap(),
        serde_json::to_value(&payment).unwrap()
    );
    let history = store.payment_events(id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["id"], id.to_string());
    assert_eq!(history[0]["reason"], "Refezione scolastica, marzo");
    assert_eq!(history[0]["payment"]["amount"], 12.34);
    let records = unpublished_when(store.as_ref(), |events| {
        events.iter().any(|e| e.payment_id == id)
    })
    .await;
    let record = records.iter().find(|e| e.payment_id == id).unwrap();
    let published: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
    assert_eq!(published, history[0]);

    // The other write paths: a grouped update, a keyed create and its update settling a
    // hold, a wallet create placing one.
    let mut pending = read.payment.clone();
    pending
        .transition(PaymentStatus::PaymentPending, time::now())
        .unwrap();
    let pending = store
        .update_payment(1, Change::of(&read, pending, read.saga.clone()))
        .await
        .unwrap();
    let mut keyed = new_payment(sample("PAGOPA", "5.00"), false);
    keyed.idempotency = Some(IdempotencyKey {
        scope: "tenant:packed".into(),
        key: "k".into(),
        request_hash: "h".into(),
    });
    let Created::New(keyed) = store.create_payment(keyed).await.unwrap() else {
        panic!("expected a new keyed payment")
    };
    let mut canceled = keyed.payment.clone();
    canceled
        .transition(PaymentStatus::Canceled, time::now())
        .unwrap();
    let mut settling = Change::of(&keyed, canceled, keyed.saga.clone());
    settling.hold = Some(HoldAction::Release);
    store.update_payment(1, settling).await.unwrap();
    let Created::New(_) = store
        .create_payment(new_payment(sample("WALLET", "2.00"), true))
        .await
        .unwrap()
    else {
        panic!("expected a new wallet payment")
    };
    let (documents, events) = stored_documents_and_events(backend, &db.url).await;
    assert_eq!((documents.len(), events.len()), (3, 5));
    for stored in documents.iter().chain(&events) {
        let start = String::from_utf8_lossy(&stored[..stored.len().min(40)]);
        assert_eq!(stored.first(), Some(&1), "stored as text: {start}…");
    }
    let read = store.payment(id).await.unwrap().unwrap();
    assert_eq!(read.payment.status, pending.payment.status);
    let history = store.payment_events(keyed.payment.id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["status"], "CANCELED");
}

on_both_databases!(documents_and_events_are_stored_packed);

/// A document and an event stored as JSON text, before they were packed, come through the
/// migration that turns their columns into bytes and read as they were.
#[actix_rt::test]
async fn text_stored_before_packing_survives_the_migration_on_postgres() {
    use sqlx::Connection;
    const PACKING: &str = "20261129000008_packed_documents.sql";
    let db = TestDatabase::new(Backend::Postgres).await;
    // The schema as it was before: every migration up to the one that packs.
    let before = tempfile::tempdir().unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut names: Vec<String> = std::fs::read_dir(&migrations)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().any(|name| name == PACKING));
    for name in names.iter().take_while(|name| name.as_str() < PACKING) {
        std::fs::copy(migrations.join(name), before.path().join(name)).unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::migrate::Migrator::new(before.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let mut payment = sample("PAGOPA", "7.50");
    // What a careless conversion would mangle: quotes, a backslash, a non-ASCII letter.
    payment.reason = r#"Tassa "rifiuti" \ 2026, città"#.into();
    let document = serde_json::to_string(&payment).unwrap();
    sqlx::query(
        "INSERT INTO payments (id, tenant_id, service_id, user_id, payment_type, status, \
         created_at, updated_at, next_check_at, version, document, saga) \
         VALUES ($1, $2, $3, $4, 'PAGOPA', 'CREATION_PENDING', now(), now(), now(), 1, $5, $6)",
    )
    .bind(payment.id)
    .bind(payment.tenant_id)
    .bind(payment.service_id)
    .bind(payment.user_id)
    .bind(&document)
    .bind(serde_json::to_string(&cassa::domain::saga::SagaState::default()).unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outbox (event_id, payment_id, topic, payload, created_at, version) \
         VALUES ($1, $2, 'payments', $3, now(), 1)",
    )
    .bind(Uuid::new_v4())
    .bind(payment.id)
    .bind(&document)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = store::open(&db.url).await.unwrap();
    let read = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&read.payment).unwrap(),
        serde_json::to_value(&payment).unwrap()
    );
    let history = store.payment_events(payment.id).await.unwrap();
    assert_eq!(history, vec![serde_json::to_value(&payment).unwrap()]);
    let records = unpublished_when(store.as_ref(), |events| !events.is_empty()).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload, document);
}

/// The plan PostgreSQL picks for `query` with sequential scans priced out: which indexes
/// can serve it.
async fn plan_without_seqscan(conn: &mut sqlx::PgConnection, query: &str) -> String {
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {query}"))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    lines.join("\n")
}

/// The listing's orders and status filters stay index reads with the cheaper indexes:
/// newest first from ascending indexes read backwards, a finished status from the
/// finished payments' index, an open one from the open payments' index.
#[actix_rt::test]
async fn the_listing_is_served_by_indexes_on_postgres() {
    use sqlx::Connection;
    let (store, db) = open_store(Backend::Postgres).await;
    for status in [PaymentStatus::Expired, PaymentStatus::PaymentPending] {
        let mut payment = sample("PAGOPA", "1.00");
        payment.status = status;
        store
            .create_payment(new_payment(payment, false))
            .await
            .unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("ANALYZE payments")
        .execute(&mut conn)
        .await
        .unwrap();
    let newest = "SELECT id FROM payments ORDER BY created_at DESC, id DESC LIMIT 50";
    let plans = [
        (
            newest.to_string(),
            "Index Only Scan Backward using payments_created_idx",
        ),
        (
            format!(
                "SELECT id FROM payments WHERE tenant_id = '{}' \
                 ORDER BY created_at DESC, id DESC LIMIT 50",
                Uuid::new_v4()
            ),
            "Backward using payments_tenant_created_idx",
        ),
        (
            "SELECT id FROM payments WHERE status IN ('EXPIRED', 'CANCELED')".into(),
            "payments_finished_status_idx",
        ),
        (
            "SELECT id FROM payments WHERE status = 'PAYMENT_PENDING'".into(),
            "payments_open_next_check_idx",
        ),
    ];
    for (query, expected) in plans {
        let plan = plan_without_seqscan(&mut conn, &query).await;
        assert!(plan.contains(expected), "{query}: {plan}");
    }
}

/// Issue 25 point 2: every timestamp creation accepts (from now to 10 years ahead, the
/// window's edges and sampled instants between) is written by the store — in the
/// document and in the `next_check_at` column — and read back as itself, by `payment`
/// and by the listing. Sampled with proptest's generator (no shrinking: each sample is
/// a database round trip).
async fn every_accepted_timestamp_reads_back_from_the_store(backend: Backend) {
    use proptest::strategy::{Strategy, ValueTree};
    let (store, _db) = open_store(backend).await;
    let now = time::now();
    let latest = time::latest_accepted(now);
    let window = (latest - now).num_seconds();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut offsets = vec![1, window];
    for _ in 0..40 {
        offsets.push((1..=window).new_tree(&mut runner).unwrap().current());
    }
    for offset in offsets {
        let at = now + chrono::Duration::seconds(offset);
        let mut payment = sample("PAGOPA", "1.00");
        payment.payment.expire_at = Some(at);
        let mut new = new_payment(payment.clone(), false);
        new.next_check_at = Some(at);
        assert!(matches!(
            store.create_payment(new).await.unwrap(),
            Created::New(_)
        ));
        let row = store.payment(payment.id).await.unwrap().unwrap();
        assert_eq!(row.payment.payment.expire_at, Some(at), "{at}");
        assert_eq!(row.next_check_at, Some(at), "{at}");
        assert_eq!(row.payment, payment);
    }
    let listed = store
        .list_payments(&Default::default(), 500, None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 42, "every one listed, none left out");
}

on_both_databases!(every_accepted_timestamp_reads_back_from_the_store);

/// Issue 25 point 6, migration `20261201000030`: a database holding a payment with a
/// `remote_id` from before it (SQLite rebuilds the table) keeps that payment whole, and
/// afterwards the id is taken in its tenant only.
async fn remote_ids_become_per_tenant_keeping_what_is_stored(backend: Backend) {
    use sqlx::Connection;
    const PER_TENANT: i64 = 20261201000030;
    let db = TestDatabase::new(backend).await;
    let mut payment = sample("PAGOPA", "4.00");
    let remote = Uuid::new_v4();
    payment.remote_id = Some(remote);
    let document = serde_json::to_string(&payment).unwrap();
    let insert = "INSERT INTO payments (id, tenant_id, service_id, user_id, remote_id, payment_type, \
                  status, created_at, updated_at, next_check_at, version, document, saga) \
                  VALUES ($1, $2, $3, $4, $5, 'PAGOPA', 'CREATION_PENDING', $6, $6, $6, 1, $7, '{}')";
    // The schema just before the migration, and a payment stored in it.
    macro_rules! before_and_insert {
        ($conn:ty, $migrator:expr, $document:expr) => {{
            let mut migrator = $migrator;
            migrator.migrations = migrator
                .migrations
                .iter()
                .filter(|m| m.version < PER_TENANT)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            // `mode=rwc`: SQLite creates the file, as the store would.
            let url = match backend {
                Backend::Sqlite => format!("{}?mode=rwc", db.url),
                Backend::Postgres => db.url.clone(),
            };
            let mut conn = <$conn>::connect(&url).await.unwrap();
            migrator.run(&mut conn).await.unwrap();
            sqlx::query(insert)
                .bind(payment.id)
                .bind(payment.tenant_id)
                .bind(payment.service_id)
                .bind(payment.user_id)
                .bind(remote)
                .bind(payment.created_at)
                .bind($document)
                .execute(&mut conn)
                .await
                .unwrap();
        }};
    }
    match backend {
        Backend::Sqlite => before_and_insert!(
            sqlx::SqliteConnection,
            sqlx::migrate!("migrations/sqlite"),
            document.clone()
        ),
        Backend::Postgres => before_and_insert!(
            sqlx::PgConnection,
            sqlx::migrate!("migrations/postgres"),
            document.clone().into_bytes()
        ),
    }
    let store = store::open(&db.url).await.unwrap();
    let row = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(row.payment, payment, "kept whole through the migration");
    // The same application id in another tenant is another payment; in its own, taken.
    let mut elsewhere = sample("PAGOPA", "5.00");
    elsewhere.tenant_id = Uuid::new_v4();
    elsewhere.remote_id = Some(remote);
    assert!(matches!(
        store
            .create_payment(new_payment(elsewhere, false))
            .await
            .unwrap(),
        Created::New(_)
    ));
    let mut again = sample("PAGOPA", "6.00");
    again.tenant_id = payment.tenant_id;
    again.remote_id = Some(remote);
    match store
        .create_payment(new_payment(again, false))
        .await
        .unwrap()
    {
        Created::RemoteIdTaken(existing) => assert_eq!(existing.payment.id, payment.id),
        other => panic!("expected RemoteIdTaken, got {other:?}"),
    }
}

on_both_databases!(remote_ids_become_per_tenant_keeping_what_is_stored);

/// Issue 25 point 3: a payment's iuv and notice code are recorded when the intermediary
/// gives them (the update that sets them) and found by `payment_with_code`; a new
/// payment that names a code another holds (an adoption that lost the race with the
/// check) fails whole: no row, no event.
async fn codes_are_recorded_and_never_shared(backend: Backend) {
    let (store, _db) = open_store(backend).await;
    let victim = match store
        .create_payment(new_payment(sample("PAGOPA", "25.00"), false))
        .await
        .unwrap()
    {
        Created::New(row) => row,
        other => panic!("{other:?}"),
    };
    let iuv = format!("RF{}", Uuid::new_v4().simple());
    let mut pending = victim.payment.clone();
    pending.payment.iuv = Some(iuv.clone());
    pending.payment.notice_code = Some(format!("3{iuv}"));
    pending.status = PaymentStatus::PaymentPending;
    let change = Change::of(&victim, pending, victim.saga.clone());
    assert!(change.new_codes && !change.is_plain());
    store.update_payment(victim.version, change).await.unwrap();
    let codes = cassa::store::PaymentCodes {
        iuv: Some(iuv.clone()),
        notice_code: None,
    };
    assert_eq!(
        store.payment_with_code(&codes).await.unwrap(),
        Some(("payment.iuv", victim.payment.id))
    );
    let only_notice = cassa::store::PaymentCodes {
        iuv: Some("unused".into()),
        notice_code: Some(format!("3{iuv}")),
    };
    assert_eq!(
        store.payment_with_code(&only_notice).await.unwrap(),
        Some(("payment.notice_code", victim.payment.id))
    );

    let mut squatter = sample("PAGOPA", "1.00");
    squatter.status = PaymentStatus::PaymentPending;
    squatter.payment.iuv = Some(iuv.clone());
    let squatter_id = squatter.id;
    let refused = store.create_payment(new_payment(squatter, false)).await;
    assert!(
        matches!(&refused, Err(StoreError::Unexpected(e)) if e.to_string().contains("payment.iuv")),
        "{refused:?}"
    );
    assert!(store.payment(squatter_id).await.unwrap().is_none());
    assert!(store.payment_events(squatter_id).await.unwrap().is_empty());
}

on_both_databases!(codes_are_recorded_and_never_shared);
