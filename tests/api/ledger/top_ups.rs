//! Top-ups: paid, credited once (also across a `kill -9`); unpaid ones credit nothing.

use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::seed::{DEMO_ACCOUNT, DEMO_TOP_UP_SERVICE};
use cassa::store::{self, Change};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{assert_ledger_agrees, citizen, ledger_check, movements, post, top_up_body, wallet};
use crate::helpers::*;
use crate::restart::{free_port, start_cassa_with, wait_ready};

/// Creates a top-up of the demo wallet as its owner and waits until its debt position
/// exists; the payment.
async fn top_up_pending(app: &TestApp, amount: &str) -> Value {
    let (status, payment) = post(
        &citizen(),
        &app.base,
        &format!("/v1/accounts/{DEMO_ACCOUNT}/top-ups"),
        &top_up_body(amount),
    )
    .await;
    assert_eq!(status, 202, "{payment}");
    assert_eq!(payment["type"], "PAGOPA");
    assert_eq!(payment["service_id"], json!(DEMO_TOP_UP_SERVICE));
    assert_eq!(payment["top_up_account_id"], json!(DEMO_ACCOUNT));
    app.wait_for(payment["id"].as_str().unwrap(), "PAYMENT_PENDING", 15)
        .await
}

async fn a_paid_top_up_credits_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pending = top_up_pending(&app, "50.00").await;
    let id = pending["id"].as_str().unwrap().to_string();
    assert_eq!(
        wallet(app.store.as_ref()).await,
        (100_000, 0),
        "nothing before it is paid"
    );
    // Paid: the simulator pushes, and at the same moment the platform asks for checks
    // (polls): COMPLETE is seen several times, the wallet credited once.
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    let checks: Vec<_> = (0..4)
        .map(|_| {
            let url = app.url(&format!("/v1/payments/{id}/update"));
            let client = app.client.clone();
            actix_rt::spawn(async move { client.post(url).send().await.unwrap().status() })
        })
        .collect();
    for check in checks {
        assert!(check.await.unwrap().is_success());
    }
    app.wait_for(&id, "COMPLETE", 15).await;
    for _ in 0..3 {
        assert!(app
            .post(&format!("/v1/payments/{id}/update"))
            .await
            .status()
            .is_success());
        app.get(&format!("/v1/payments/{id}/landing")).await;
    }
    assert_eq!(wallet(app.store.as_ref()).await, (105_000, 0));
    let completes = app
        .events(&id)
        .await
        .iter()
        .filter(|e| e["status"] == "COMPLETE")
        .count();
    assert_eq!(completes, 1);
    // The movement names its payment; the owner and the admin see it.
    for client in [citizen(), admin_client()] {
        let moves = movements(&client, &app.base).await;
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert_eq!(moves[0]["kind"], "credit");
        assert_eq!(moves[0]["payment_id"], json!(id));
        assert_eq!(moves[0]["amount"], json!(50.0));
        assert_eq!(moves[0]["balance_after"], json!(1050.0));
    }
    assert_ledger_agrees(app.store.as_ref()).await;
}

on_both_databases!(a_paid_top_up_credits_once);

async fn unpaid_top_ups_credit_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Cancelled by the citizen.
    let cancelled = top_up_pending(&app, "20.00").await;
    let id = cancelled["id"].as_str().unwrap();
    let r = citizen()
        .post(app.url(&format!("/v1/payments/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    app.wait_for(id, "CANCELED", 15).await;
    // Expired: its expiry is brought forward (as the service's expiry would make it),
    // the position is cancelled; paying it afterwards is refused by the intermediary.
    let expiring = top_up_pending(&app, "30.00").await;
    let id = Uuid::parse_str(expiring["id"].as_str().unwrap()).unwrap();
    let row = app.store.payment(id).await.unwrap().unwrap();
    let mut payment = row.payment.clone();
    payment.payment.expire_at = Some(time::now() + chrono::Duration::seconds(1));
    let change = Change::of(&row, payment, row.saga.clone());
    app.store.update_payment(row.version, change).await.unwrap();
    app.wait_for(&id.to_string(), "EXPIRED", 20).await;
    assert_eq!(wallet(app.store.as_ref()).await, (100_000, 0));
    assert_eq!(
        movements(&citizen(), &app.base).await.len(),
        1,
        "the opening balance only"
    );
    assert_ledger_agrees(app.store.as_ref()).await;
}

on_both_databases!(unpaid_top_ups_credit_nothing);

/// The real binary, killed with SIGKILL after the intermediary recorded the payment and
/// before cassa committed it (no push, checks an hour apart: cassa cannot have seen it),
/// then restarted twice: the wallet is credited once.
async fn a_top_up_survives_kill_9(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let sim =
        TestSimulator::serve_without_push(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [("CASSA_POLL_SCHEDULE", "*:1h")];
    let admin = admin_client();
    let mut cassa = start_cassa_with(&db.url, port, &sim.base, &env);
    wait_ready(&admin, &base).await;
    let (status, payment) = post(
        &citizen(),
        &base,
        &format!("/v1/accounts/{DEMO_ACCOUNT}/top-ups"),
        &top_up_body("75.00"),
    )
    .await;
    assert_eq!(status, 202, "{payment}");
    let id = payment["id"].as_str().unwrap().to_string();
    let pending = wait_for_status(&admin, &base, &id, "PAYMENT_PENDING", 20).await;
    sim.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    cassa.kill().unwrap(); // SIGKILL
    cassa.wait().unwrap();
    {
        let store = store::open(&db.url).await.unwrap();
        let row = store
            .payment(Uuid::parse_str(&id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.payment.status,
            PaymentStatus::PaymentPending,
            "killed before the commit"
        );
        assert_eq!(wallet(store.as_ref()).await, (100_000, 0));
    }
    for round in 0..2 {
        let mut cassa = start_cassa_with(&db.url, port, &sim.base, &env);
        wait_ready(&admin, &base).await;
        for _ in 0..3 {
            let r = admin
                .post(format!("{base}/v1/payments/{id}/update"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "round {round}: {}", r.status());
        }
        wait_for_status(&admin, &base, &id, "COMPLETE", 20).await;
        cassa.kill().unwrap();
        cassa.wait().unwrap();
        let store = store::open(&db.url).await.unwrap();
        assert_eq!(wallet(store.as_ref()).await, (107_500, 0), "round {round}");
        assert_ledger_agrees(store.as_ref()).await;
    }
    let (ok, out) = ledger_check(&db.url);
    assert!(ok, "{out}");
}

on_both_databases!(a_top_up_survives_kill_9);
