//! The outbox on PostgreSQL: events committed late, held back by an open transaction, or
//! in a database copied from a server further ahead are still published, in order.

use std::time::Duration;

use cassa::domain::time;
use cassa::store::{self, Created};
use uuid::Uuid;

use super::{new_payment, open_store, sample, unpublished_when};
use crate::helpers::*;

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
