//! What is taken once: remote ids (per tenant, also through their migration),
//! idempotency keys, a payment's iuv and notice code, a creditor's IUV bases.

use cassa::domain::status::PaymentStatus;
use cassa::store::{self, Change, Created, IdempotencyKey, StoreError};
use uuid::Uuid;

use super::{new_payment, open_store, sample};
use crate::helpers::*;

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

/// A creditor's IUV sequence hands each base out once: 60 concurrent takers get 60
/// different bases, another creditor has a sequence of its own, and a store opened
/// again on the same database carries on after the last base.
async fn iuv_bases_are_never_handed_out_twice(backend: Backend) {
    let (store, db) = open_store(backend).await;
    let takers = (0..60).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.next_iuv_base("02438750586").await })
    });
    let mut bases: Vec<u64> = futures::future::join_all(takers)
        .await
        .into_iter()
        .map(|taken| taken.unwrap().unwrap())
        .collect();
    bases.sort_unstable();
    assert_eq!(bases, (1..=60).collect::<Vec<u64>>());
    assert_eq!(store.next_iuv_base("00514490010").await.unwrap(), 1);
    drop(store);
    let reopened = store::open(&db.url).await.unwrap();
    assert_eq!(reopened.next_iuv_base("02438750586").await.unwrap(), 61);
}

on_both_databases!(iuv_bases_are_never_handed_out_twice);
