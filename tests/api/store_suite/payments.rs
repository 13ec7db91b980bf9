//! Writing a payment: creation with its event, status and bookkeeping changes, holds
//! captured or released once, timestamps read back as written.

use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::seed::DEMO_ACCOUNT;
use cassa::store::{Change, Created, HoldAction, Store, StoreError};

use super::{create_new, made_pending, new_payment, open_store, sample};
use crate::helpers::*;

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
