//! The `Store` contract, run against both backends: creation with its outbox event,
//! optimistic concurrency, holds captured/released once, open payments, remote_id
//! uniqueness, idempotency keys. The shared set-up (a seeded store, sample payments) is
//! here; the tests are in a module per subject.

use std::sync::Arc;
use std::time::Duration;

use cassa::domain::payment::Payment;
use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::seed::DEMO_ACCOUNT;
use cassa::store::{self, Change, Created, HoldRequest, NewPayment, OutboxRecord, Store};
use uuid::Uuid;

use crate::helpers::*;

mod concurrency;
mod listing;
mod outbox;
mod packing;
mod payments;
mod uniqueness;

pub(super) async fn open_store(backend: Backend) -> (Arc<dyn Store>, TestDatabase) {
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
pub(super) async fn unpublished_when(
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

pub(super) fn sample(kind: &str, amount: &str) -> Payment {
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

pub(super) fn new_payment(payment: Payment, hold: bool) -> NewPayment {
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
pub(super) async fn create_new(store: &dyn Store, new: NewPayment) -> store::StoredPayment {
    match store.create_payment(new).await.unwrap() {
        Created::New(row) => row,
        other => panic!("expected a new payment, got {other:?}"),
    }
}

/// Moves `row` to PAYMENT_PENDING (a status change, with its event): the new row.
pub(super) async fn made_pending(
    store: &dyn Store,
    row: &store::StoredPayment,
) -> store::StoredPayment {
    let mut pending = row.payment.clone();
    pending
        .transition(PaymentStatus::PaymentPending, time::now())
        .unwrap();
    store
        .update_payment(row.version, Change::of(row, pending, row.saga.clone()))
        .await
        .unwrap()
}
