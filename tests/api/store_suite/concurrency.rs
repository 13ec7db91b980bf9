//! Concurrent writes (on SQLite, committed together by the group commit): each answers
//! its own caller and lands with its own event; a failed group is retried write by write.

use cassa::domain::status::PaymentStatus;
use cassa::store::{Change, Created, IdempotencyKey, Store, StoreError};
use uuid::Uuid;

use super::{create_new, made_pending, new_payment, open_store, sample, unpublished_when};
use crate::helpers::*;

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
