//! The journal: `cassa ledger check` finds a tampered account, and the property
//! balance = credits − captures, held = open holds over random histories.

use std::sync::Arc;

use cassa::domain::payment::Payment;
use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::seed::{DEMO_ACCOUNT, DEMO_CITIZEN, DEMO_TENANT};
use cassa::store::{
    self, Account, Change, Created, DepositRequest, Deposited, HoldAction, HoldRequest, NewPayment,
    Store,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use super::ledger_check;
use crate::helpers::*;

async fn ledger_check_finds_a_tampered_account(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = store::open(&db.url).await.unwrap();
    cassa::seed::demo(store.as_ref(), "http://127.0.0.1:9/sim")
        .await
        .unwrap();
    let (ok, out) = ledger_check(&db.url);
    assert!(ok, "{out}");
    // Money that did not come through the journal.
    let sql = "UPDATE accounts SET balance_cents = balance_cents + 1";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
    let (ok, out) = ledger_check(&db.url);
    assert!(!ok, "{out}");
    assert!(out.contains(&DEMO_ACCOUNT.to_string()), "{out}");
    assert!(
        out.contains("balance 1000.01 but the journal says 1000.00"),
        "{out}"
    );
    // A hold left behind by a payment that ended without settling it.
    let payment = payment_for(DEMO_ACCOUNT, 500, true);
    let id = payment.id;
    let hold = HoldRequest {
        account_id: DEMO_ACCOUNT,
        amount_cents: 500,
    };
    let Created::New(row) = store
        .create_payment(new(payment, Some(hold)))
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    drive(
        store.as_ref(),
        row,
        &[PaymentStatus::PaymentPending, PaymentStatus::Canceled],
        None,
    )
    .await;
    let (ok, out) = ledger_check(&db.url);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "5.00 still held for payment {id}, which is CANCELED"
        )),
        "{out}"
    );
}

on_both_databases!(ledger_check_finds_a_tampered_account);

/// One step of a wallet's life.
#[derive(Debug, Clone)]
enum Op {
    /// A top-up of `cents` that completes (seen twice), expires or is cancelled.
    TopUp(i64, TopUpEnd),
    /// A WALLET payment of `cents`: approved, rejected, cancelled or left open (its hold
    /// stays); short of money it is CREATION_FAILED.
    Spend(i64, SpendEnd),
    /// An admin credit.
    Credit(i64),
    /// The oldest open WALLET payment is approved.
    SettleOldest,
}

#[derive(Debug, Clone, Copy)]
enum TopUpEnd {
    Paid,
    Expired,
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
enum SpendEnd {
    Approved,
    Rejected,
    Cancelled,
    Open,
}

fn op() -> impl Strategy<Value = Op> {
    let cents = 1i64..60_000;
    prop_oneof![
        (
            cents.clone(),
            prop_oneof![
                Just(TopUpEnd::Paid),
                Just(TopUpEnd::Expired),
                Just(TopUpEnd::Cancelled)
            ]
        )
            .prop_map(|(c, e)| Op::TopUp(c, e)),
        (
            cents.clone(),
            prop_oneof![
                Just(SpendEnd::Approved),
                Just(SpendEnd::Rejected),
                Just(SpendEnd::Cancelled),
                Just(SpendEnd::Open)
            ]
        )
            .prop_map(|(c, e)| Op::Spend(c, e)),
        cents.prop_map(Op::Credit),
        Just(Op::SettleOldest),
    ]
}

/// A payment for `account` in the demo tenant, as intake would build it.
fn payment_for(account: Uuid, cents: i64, wallet: bool) -> Payment {
    let now = time::now();
    let id = Uuid::new_v4();
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let mut json = if wallet {
        wallet_body(&amount)
    } else {
        citizen_body(&amount)
    };
    let obj = json.as_object_mut().unwrap();
    obj.insert("id".into(), id.to_string().into());
    obj.insert("user_id".into(), json!(DEMO_CITIZEN));
    obj.insert("created_at".into(), time::format(&now).into());
    obj.insert("updated_at".into(), time::format(&now).into());
    obj.insert("status".into(), "CREATION_PENDING".into());
    obj["payment"]["iud"] = Payment::iud_for(id).into();
    obj.insert("links".into(), json!({}));
    obj["wallet_account_id"] = if wallet { json!(account) } else { Value::Null };
    if !wallet {
        obj.insert("top_up_account_id".into(), json!(account));
    }
    serde_json::from_value(json).unwrap()
}

/// Moves a stored payment through `statuses`, settling its hold with the last one.
async fn drive(
    store: &dyn Store,
    mut row: cassa::store::StoredPayment,
    statuses: &[PaymentStatus],
    hold: Option<HoldAction>,
) -> cassa::store::StoredPayment {
    for (i, status) in statuses.iter().enumerate() {
        let mut payment = row.payment.clone();
        if payment.status != *status {
            payment.transition(*status, time::now()).unwrap();
        }
        let mut change = Change::of(&row, payment, row.saga.clone());
        if i + 1 == statuses.len() {
            change.hold = hold;
        }
        row = store.update_payment(row.version, change).await.unwrap();
    }
    row
}

/// The model: what the journal must say.
#[derive(Default)]
struct Model {
    balance: i64,
    /// Open WALLET payments and their held amounts, oldest first.
    open: Vec<(cassa::store::StoredPayment, i64)>,
}

async fn run_ops(store: &dyn Store, db_url: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    use PaymentStatus::*;
    let account = Account {
        id: Uuid::new_v4(),
        owner_id: DEMO_CITIZEN,
        tenant_id: Some(DEMO_TENANT),
        currency: "EUR".into(),
        balance_cents: 10_000,
        held_cents: 0,
    };
    store.ensure_account(&account).await.unwrap();
    let mut model = Model {
        balance: 10_000,
        ..Model::default()
    };
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::TopUp(cents, end) => {
                let payment = payment_for(account.id, cents, false);
                let Created::New(row) = store.create_payment(new(payment, None)).await.unwrap()
                else {
                    panic!("not created")
                };
                let path: &[PaymentStatus] = match end {
                    // COMPLETE written, then a bookkeeping update of the COMPLETE row.
                    TopUpEnd::Paid => &[PaymentPending, Complete, Complete],
                    TopUpEnd::Expired => &[PaymentPending, Expired],
                    TopUpEnd::Cancelled => &[PaymentPending, Canceled],
                };
                drive(store, row, path, None).await;
                if matches!(end, TopUpEnd::Paid) {
                    model.balance += cents;
                }
            }
            Op::Spend(cents, end) => {
                let payment = payment_for(account.id, cents, true);
                let hold = HoldRequest {
                    account_id: account.id,
                    amount_cents: cents,
                };
                let Created::New(row) = store
                    .create_payment(new(payment, Some(hold)))
                    .await
                    .unwrap()
                else {
                    panic!("not created")
                };
                let held: i64 = model.open.iter().map(|(_, c)| c).sum();
                if model.balance - held < cents {
                    prop_assert_eq!(
                        row.payment.status,
                        CreationFailed,
                        "step {}: insufficient",
                        step
                    );
                    continue;
                }
                match end {
                    SpendEnd::Approved => {
                        drive(
                            store,
                            row,
                            &[PaymentPending, PaymentStarted, Complete],
                            Some(HoldAction::Capture),
                        )
                        .await;
                        model.balance -= cents;
                    }
                    SpendEnd::Rejected => {
                        drive(
                            store,
                            row,
                            &[PaymentPending, PaymentStarted, PaymentFailed],
                            Some(HoldAction::Release),
                        )
                        .await;
                    }
                    SpendEnd::Cancelled => {
                        drive(
                            store,
                            row,
                            &[PaymentPending, Canceled],
                            Some(HoldAction::Release),
                        )
                        .await;
                    }
                    SpendEnd::Open => {
                        let row = drive(store, row, &[PaymentPending], None).await;
                        model.open.push((row, cents));
                    }
                }
            }
            Op::Credit(cents) => {
                let deposited = store
                    .deposit(&DepositRequest {
                        account_id: account.id,
                        amount_cents: cents,
                        reason: "Correzione".into(),
                        scope: "admin:test".into(),
                        key: format!("{}-{step}", account.id),
                        balance_max_cents: None,
                    })
                    .await
                    .unwrap();
                prop_assert!(matches!(deposited, Deposited::Credited(_)));
                model.balance += cents;
            }
            Op::SettleOldest => {
                if model.open.is_empty() {
                    continue;
                }
                let (row, cents) = model.open.remove(0);
                let row = drive(
                    store,
                    row,
                    &[PaymentStarted, Complete],
                    Some(HoldAction::Capture),
                )
                .await;
                model.balance -= cents;
                // Settling again (a redelivered outcome) takes nothing more.
                let mut again = Change::of(&row, row.payment.clone(), row.saga.clone());
                again.hold = Some(HoldAction::Capture);
                store.update_payment(row.version, again).await.unwrap();
            }
        }
        let a = store.account(account.id).await.unwrap().unwrap();
        let held: i64 = model.open.iter().map(|(_, c)| c).sum();
        prop_assert_eq!(a.balance_cents, model.balance, "step {}: {:?}", step, op);
        prop_assert_eq!(a.held_cents, held, "step {}: {:?}", step, op);
        let mismatches = store.ledger_mismatches().await.unwrap();
        prop_assert!(mismatches.is_empty(), "step {}: {:?}", step, mismatches);
        let stale = store.stale_holds().await.unwrap();
        prop_assert!(stale.is_empty(), "step {}: {:?}", step, stale);
        // The journal's own running figures end where the row is.
        let last = store.movements(account.id, None, 1).await.unwrap();
        prop_assert_eq!(
            (last[0].balance_after_cents, last[0].held_after_cents),
            (a.balance_cents, a.held_cents)
        );
    }
    let (ok, out) = ledger_check(db_url);
    prop_assert!(ok, "cassa ledger check: {}", out);
    Ok(())
}

fn new(payment: Payment, hold: Option<HoldRequest>) -> NewPayment {
    NewPayment {
        next_check_at: None,
        payment,
        saga: Default::default(),
        idempotency: None,
        hold,
    }
}

fn ledger_property(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (store, db): (Arc<dyn Store>, TestDatabase) = rt.block_on(async {
        let db = TestDatabase::new(backend).await;
        let store = store::open(&db.url).await.unwrap();
        cassa::seed::demo(store.as_ref(), "http://127.0.0.1:9/sim")
            .await
            .unwrap();
        (store, db)
    });
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..16), |ops| {
        rt.block_on(run_ops(store.as_ref(), &db.url, &ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn the_journal_adds_up_over_random_histories_on_sqlite() {
    ledger_property(Backend::Sqlite);
}

#[test]
fn the_journal_adds_up_over_random_histories_on_postgres() {
    ledger_property(Backend::Postgres);
}
