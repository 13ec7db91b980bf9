//! Documents and events stored packed, by every write path, and text stored before
//! packing read back through the migration.

use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::store::{self, Change, Created, HoldAction, IdempotencyKey};
use uuid::Uuid;

use super::{new_payment, open_store, sample, unpublished_when};
use crate::helpers::*;

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
