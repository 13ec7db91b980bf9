//! Reading payments back in order: due checks, open payments soonest first, the listing's
//! pages and, on PostgreSQL, the indexes that serve it.

use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::store::{self, Change, NewPayment};
use uuid::Uuid;

use super::{new_payment, open_store, sample};
use crate::helpers::*;

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
