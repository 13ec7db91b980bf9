//! The group commit on SQLite, and its background checkpoints.

use super::sqlite::CHECKPOINT_EVERY;
use super::*;
use crate::store::ConfigStore;

/// The writer leaves checkpoints to the background connection: what is written
/// reaches the database file without any commit doing it.
#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(CHECKPOINT_EVERY * 2).await;
    let before = size();
    let now = time::now();
    for i in 0..300 {
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: format!("Comune {i} {}", "x".repeat(200)),
            tax_identification_number: "80016350821".into(),
            active: true,
            allowed_hosts: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        };
        assert!(store.insert_tenant(&tenant).await.unwrap());
    }
    let started = std::time::Instant::now();
    while size() <= before {
        assert!(
            started.elapsed() < CHECKPOINT_EVERY * 20,
            "the database file never grew: no checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A payment for the demo tenant: PAGOPA, or WALLET charging the demo account.
fn demo_payment(wallet: bool) -> Payment {
    use crate::seed::*;
    let id = Uuid::new_v4();
    let now = time::format(&time::now());
    let (kind, account, user) = if wallet {
        ("WALLET", serde_json::json!(DEMO_ACCOUNT), DEMO_CITIZEN)
    } else {
        ("PAGOPA", serde_json::Value::Null, Uuid::new_v4())
    };
    let json = serde_json::json!({
        "id": id, "user_id": user, "type": kind, "tenant_id": DEMO_TENANT,
        "service_id": DEMO_SERVICE, "remote_id": null, "reason": "TARI 2026 rata 1",
        "status": "CREATION_PENDING", "created_at": now, "updated_at": now,
        "payment": {"amount": "12.00", "currency": "EUR", "expire_at": null, "split": [],
                    "iud": Payment::iud_for(id)},
        "payer": {"type": "human", "tax_identification_number": "RSSMRA80A01H501U",
                  "name": "Mario", "family_name": "Rossi", "email": null},
        "links": {}, "wallet_account_id": account
    });
    match serde_json::from_value(json) {
        Ok(payment) => payment,
        Err(e) => panic!("demo payment: {e}"),
    }
}

/// A SQLite store in a temporary directory (kept while the first is alive), seeded
/// with the demo tenant, service and wallet.
async fn demo_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    crate::seed::demo(&store, "http://127.0.0.1:9/sim")
        .await
        .unwrap();
    (dir, store)
}

fn new_payment(payment: Payment, hold: Option<HoldRequest>) -> NewPayment {
    NewPayment {
        next_check_at: Some(payment.created_at),
        payment,
        saga: Default::default(),
        idempotency: None,
        hold,
    }
}

async fn created(store: &SqliteStore, new: NewPayment) -> StoredPayment {
    match store.create_payment(new).await.unwrap() {
        Created::New(row) => row,
        other => panic!("expected New, got {other:?}"),
    }
}

fn with_status(row: &StoredPayment, status: PaymentStatus) -> Change {
    let mut payment = row.payment.clone();
    payment.status = status;
    Change::of(row, payment, row.saga.clone())
}

/// Marks the connection (a temporary table lives and dies with it) and has SQLite
/// roll back, by itself, any transaction that writes an event.
async fn mark_and_refuse(conn: &mut sqlx::SqliteConnection) {
    for sql in [
        "CREATE TEMP TABLE this_connection (x)",
        "CREATE TRIGGER refuse BEFORE INSERT ON outbox \
         BEGIN SELECT RAISE(ROLLBACK, 'refused by a trigger'); END",
    ] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
}

/// Whether this is the connection `mark_and_refuse` marked.
async fn is_marked(conn: &mut sqlx::SqliteConnection) -> bool {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM sqlite_temp_master WHERE name = 'this_connection'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
        > 0
}

/// A group SQLite rolled back by itself (here a trigger's `RAISE(ROLLBACK)`) leaves
/// no transaction to roll back: nothing of it is written, and its connection is
/// closed rather than reused in a state nobody can tell; the next group gets a fresh
/// connection and is written.
#[tokio::test]
async fn a_group_whose_transaction_is_gone_closes_its_connection_on_sqlite() {
    let (_dir, store) = demo_store().await;
    let mut conn = store.write.acquire().await.unwrap();
    mark_and_refuse(&mut conn).await;
    let refused = new_payment(demo_payment(false), None);
    let written = SqliteStore::write_plain_group(&mut conn, &[&refused], &[], &[]).await;
    let error = written.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("refused by a trigger"), "{error}");
    drop(conn);
    assert!(store.payment(refused.payment.id).await.unwrap().is_none());

    let mut conn = store.write.acquire().await.unwrap();
    assert!(!is_marked(&mut conn).await, "the connection was reused");
    sqlx::query("DROP TRIGGER refuse")
        .execute(&mut *conn)
        .await
        .unwrap();
    let accepted = new_payment(demo_payment(false), None);
    SqliteStore::write_plain_group(&mut conn, &[&accepted], &[], &[])
        .await
        .unwrap();
    drop(conn);
    assert!(store.payment(accepted.payment.id).await.unwrap().is_some());
}

/// The same through a group that is not only plain writes, in a transaction sqlx
/// opened: its ROLLBACK fails too, and sqlx, still counting that transaction open,
/// would open the next group's as a savepoint inside it.
#[tokio::test]
async fn a_mixed_group_whose_transaction_is_gone_closes_its_connection_on_sqlite() {
    let (_dir, store) = demo_store().await;
    let mut pool = store.write.clone();
    let mut conn = pool.acquire().await.unwrap();
    mark_and_refuse(&mut conn).await;
    drop(conn);
    // A wallet payment places a hold: not a plain write.
    let hold = HoldRequest {
        account_id: crate::seed::DEMO_ACCOUNT,
        amount_cents: 1200,
    };
    let refused = new_payment(demo_payment(true), Some(hold));
    let id = refused.payment.id;
    let (reply, _) = oneshot::channel();
    let jobs = [Job::Create(refused, reply)];
    let written = GroupWriter::try_group(&mut pool, &jobs).await;
    let error = written.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("refused by a trigger"), "{error}");
    assert!(store.payment(id).await.unwrap().is_none());
    let mut conn = pool.acquire().await.unwrap();
    assert!(!is_marked(&mut conn).await, "the connection was reused");
}

/// One group mixing every kind of write, built by hand (so it is one group whatever
/// the timing): each is answered as if it ran alone and in order — a plain update
/// of a payment after its hold was settled in the same group sees that write.
#[tokio::test]
async fn a_mixed_group_answers_each_write_in_order() {
    let (_dir, store) = demo_store().await;
    let hold = HoldRequest {
        account_id: crate::seed::DEMO_ACCOUNT,
        amount_cents: 1200,
    };
    let wallet = created(&store, new_payment(demo_payment(true), Some(hold))).await;
    let other = created(&store, new_payment(demo_payment(false), None)).await;
    let published = store.unpublished_events(10).await.unwrap();

    let mut capture = with_status(&wallet, PaymentStatus::Complete);
    capture.hold = Some(HoldAction::Capture);
    let after_capture = StoredPayment {
        payment: capture.payment.clone(),
        version: 2,
        saga: capture.saga.clone(),
        next_check_at: capture.next_check_at,
    };
    let mut bookkeeping = Change::of(
        &after_capture,
        after_capture.payment.clone(),
        Default::default(),
    );
    bookkeeping.next_check_at = None;
    let fresh = new_payment(demo_payment(false), None);
    let fresh_id = fresh.payment.id;
    let (a, _) = oneshot::channel();
    let (b, _) = oneshot::channel();
    let (c, _) = oneshot::channel();
    let (d, _) = oneshot::channel();
    let (e, _) = oneshot::channel();
    let jobs = vec![
        Job::Update(1, capture, a),
        Job::Update(2, bookkeeping, b),
        Job::Create(fresh, c),
        Job::Update(1, with_status(&other, PaymentStatus::PaymentPending), d),
        Job::MarkPublished(published.iter().map(|e| e.seq).collect(), e),
    ];
    let done = SqliteStore::try_group(&mut store.write.acquire().await.unwrap(), &jobs)
        .await
        .unwrap();
    let versions: Vec<Option<i64>> = done
        .iter()
        .map(|d| match d {
            Done::Updated(Ok(row)) => Some(row.version),
            Done::Created(Created::New(row)) => Some(row.version),
            Done::Marked => None,
            Done::Updated(Err(e)) => panic!("update refused: {e}"),
            Done::Created(other) => panic!("create answered {other:?}"),
        })
        .collect();
    assert_eq!(versions, [Some(2), Some(3), Some(1), Some(2), None]);

    let stored = store.payment(wallet.payment.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.next_check_at), (3, None));
    let account = store
        .account(crate::seed::DEMO_ACCOUNT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (account.balance_cents, account.held_cents),
        (crate::seed::DEMO_BALANCE_CENTS - 1200, 0)
    );
    assert!(store.payment(fresh_id).await.unwrap().is_some());
    let unpublished = store.unpublished_events(10).await.unwrap();
    let mut left: Vec<(Uuid, Option<i64>)> = unpublished
        .iter()
        .map(|e| (e.payment_id, e.version))
        .collect();
    left.sort();
    let mut expected = vec![
        (wallet.payment.id, Some(2)),
        (other.payment.id, Some(2)),
        (fresh_id, Some(1)),
    ];
    expected.sort();
    assert_eq!(
        left, expected,
        "the marked events are gone, each write left one"
    );
}
