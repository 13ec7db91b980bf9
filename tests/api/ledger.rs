//! Money integrity (issue 24, and the wallet rule of issue 25): only the platform
//! credits a wallet directly; a citizen tops up by paying, credited exactly once in the
//! transaction that records the payment COMPLETE; every movement is a journal entry that
//! `cassa ledger check` adds up; citizens pay the service's fee; tenants' wallet limits;
//! only the owner's own citizen token spends a wallet. On both databases.

use std::sync::Arc;

use cassa::auth::Role;
use cassa::domain::payment::Payment;
use cassa::domain::status::PaymentStatus;
use cassa::domain::time;
use cassa::seed::{DEMO_ACCOUNT, DEMO_CITIZEN, DEMO_SERVICE, DEMO_TENANT, DEMO_TOP_UP_SERVICE};
use cassa::store::{
    self, Account, Change, Created, DepositRequest, Deposited, HoldAction, HoldRequest, NewPayment,
    Store,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;
use crate::restart::{free_port, start_cassa_with, wait_ready};

const PAYER: &str = r#"{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}"#;

fn citizen() -> reqwest::Client {
    client_with(Some(&citizen_token()))
}

fn system() -> reqwest::Client {
    client_with(Some(&token(Role::System, None, "platform")))
}

fn operator_of(tenant: Uuid) -> reqwest::Client {
    client_with(Some(&token(Role::Operator, Some(tenant), "operator")))
}

fn top_up_body(amount: &str) -> Value {
    json!({"amount": amount, "payer": serde_json::from_str::<Value>(PAYER).unwrap()})
}

async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(client: &reqwest::Client, base: &str, path: &str, body: &Value) -> (u16, Value) {
    status_and_body(
        client
            .post(format!("{base}{path}"))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A 400 naming `field`.
fn assert_refused(status: u16, problem: &Value, field: &str) {
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some(field)),
        "{problem}"
    );
}

/// A merge patch of a demo service by the demo tenant's operator: status and answer.
async fn patch_service(app: &TestApp, service: Uuid, doc: Value) -> (u16, Value) {
    let r = operator_of(DEMO_TENANT)
        .patch(app.url(&format!("/v1/services/{service}")))
        .json(&doc)
        .send()
        .await
        .unwrap();
    status_and_body(r).await
}

/// The demo wallet's balance and held money, in cents, as the store has them.
async fn wallet(store: &dyn Store) -> (i64, i64) {
    let a = store.account(DEMO_ACCOUNT).await.unwrap().unwrap();
    (a.balance_cents, a.held_cents)
}

/// The demo wallet's movements, newest first, all pages.
async fn movements(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/accounts/{DEMO_ACCOUNT}/movements?limit=2");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return all,
        }
    }
}

async fn assert_ledger_agrees(store: &dyn Store) {
    let mismatches = store.ledger_mismatches().await.unwrap();
    assert!(
        mismatches.is_empty(),
        "row and journal disagree: {mismatches:?}"
    );
    let stale = store.stale_holds().await.unwrap();
    assert!(stale.is_empty(), "holds outlived their payments: {stale:?}");
}

/// `cassa ledger check` on a database: its exit status and what it printed.
fn ledger_check(db_url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cassa"))
        .args(["ledger", "check", "--database-url", db_url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

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

// --- Deposits: the platform's, never a citizen's ---------------------------------------

async fn deposits_are_the_platforms(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = format!("/v1/accounts/{DEMO_ACCOUNT}/deposits");
    // The attack: a citizen mints money into their own wallet.
    let (status, problem) = post(
        &citizen(),
        &app.base,
        &path,
        &json!({"amount": "999999999.99", "reason": "free money"}),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(wallet(app.store.as_ref()).await, (100_000, 0));

    // The platform credits with a key and a reason; the key credits once.
    let deposit = |key: &'static str, body: Value, client: reqwest::Client| {
        let url = app.url(&path);
        async move {
            let mut r = client.post(url).json(&body);
            if !key.is_empty() {
                r = r.header("Idempotency-Key", key);
            }
            status_and_body(r.send().await.unwrap()).await
        }
    };
    let refund = json!({"amount": "10.50", "reason": "Rimborso TARI 2025"});
    let (status, problem) = deposit("", refund.clone(), admin_client()).await;
    assert_refused(status, &problem, "Idempotency-Key");
    let (status, _) = deposit("k1", json!({"amount": "10.50"}), admin_client()).await;
    assert_eq!(status, 400, "the reason is mandatory");
    let (status, problem) = deposit(
        "k1",
        json!({"amount": "1.00", "reason": "  "}),
        admin_client(),
    )
    .await;
    assert_refused(status, &problem, "reason");
    assert_eq!(
        wallet(app.store.as_ref()).await,
        (100_000, 0),
        "refusals credit nothing"
    );
    // Eight at once with one key (a retrying client): all answered, credited once.
    let racing = (0..8).map(|_| deposit("k1", refund.clone(), admin_client()));
    for (status, account) in futures::future::join_all(racing).await {
        assert_eq!(status, 200, "{account}");
        assert_eq!(account["balance"], json!(1010.5));
    }
    let (status, _) = deposit(
        "k1",
        json!({"amount": "99.00", "reason": "x"}),
        admin_client(),
    )
    .await;
    assert_eq!(status, 422, "a key reused for another deposit");
    let (status, _) = deposit(
        "k1",
        json!({"amount": "2.00", "reason": "Correzione"}),
        system(),
    )
    .await;
    assert_eq!(status, 200, "keys are per caller");
    let other_tenant_system = client_with(Some(&token(Role::System, Some(Uuid::new_v4()), "p")));
    let (status, _) = deposit(
        "k2",
        json!({"amount": "2.00", "reason": "x"}),
        other_tenant_system,
    )
    .await;
    assert_eq!(
        status, 404,
        "a system token of another tenant does not see the wallet"
    );
    assert_eq!(wallet(app.store.as_ref()).await, (101_250, 0));

    let moves = movements(&citizen(), &app.base).await;
    let kinds: Vec<(&str, f64, Option<&str>)> = moves
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap(),
                m["amount"].as_f64().unwrap(),
                m["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("credit", 2.0, Some("Correzione")),
            ("credit", 10.5, Some("Rimborso TARI 2025")),
            ("credit", 1000.0, Some("opening balance")),
        ]
    );
    assert_eq!(moves[0]["balance_after"], json!(1012.5));
    assert_ledger_agrees(app.store.as_ref()).await;
}

on_both_databases!(deposits_are_the_platforms);

// --- Top-ups: paid, credited once -----------------------------------------------------

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

// --- Limits -----------------------------------------------------------------------------

async fn wallet_limits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = format!("/v1/accounts/{DEMO_ACCOUNT}/top-ups");
    let top_up = |amount: &str| {
        let (base, path, body) = (app.base.clone(), path.clone(), top_up_body(amount));
        async move { post(&citizen(), &base, &path, &body).await }
    };
    // Bad bodies: a 400 naming the field.
    for (body, field) in [
        (top_up_body("0.00"), "amount"),
        (top_up_body("1.234"), "amount"),
        (json!({"amount": "1.00"}), "payer"),
        (
            json!({"amount": "1.00", "payer": {"type": "human", "tax_identification_number": "X", "name": "M"}}),
            "payer.tax_identification_number",
        ),
    ] {
        let (status, problem) = post(&citizen(), &app.base, &path, &body).await;
        assert_refused(status, &problem, field);
    }
    // Default: 5 000.00 per top-up.
    let (status, problem) = top_up("5000.01").await;
    assert_refused(status, &problem, "amount");
    assert!(
        problem["detail"].as_str().unwrap().contains("5000.00"),
        "{problem}"
    );
    // Default: 10 000.00 balance (1 000.00 + 8 500.00 deposited = 9 500.00).
    let r = app
        .client
        .post(app.url(&format!("/v1/accounts/{DEMO_ACCOUNT}/deposits")))
        .header("Idempotency-Key", "limits")
        .json(&json!({"amount": "8500.00", "reason": "Rimborso"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The platform's credits keep to the limit too: 600.00 more would make 10 100.00.
    let deposit = |key: &'static str, amount: &'static str| {
        let url = app.url(&format!("/v1/accounts/{DEMO_ACCOUNT}/deposits"));
        let client = app.client.clone();
        async move {
            let r = client
                .post(url)
                .header("Idempotency-Key", key)
                .json(&json!({"amount": amount, "reason": "Rimborso"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, problem) = deposit("over", "600.00").await;
    assert_refused(status, &problem, "amount");
    assert!(
        problem["detail"].as_str().unwrap().contains("10000.00"),
        "{problem}"
    );
    assert_eq!(wallet(app.store.as_ref()).await, (950_000, 0));
    // A deposit already made is still answered as made, at the limit or not.
    let (status, account) = deposit("limits", "8500.00").await;
    assert_eq!(status, 200, "{account}");
    let (status, problem) = top_up("500.01").await;
    assert_refused(status, &problem, "amount");
    assert!(
        problem["detail"].as_str().unwrap().contains("10000.00"),
        "{problem}"
    );
    let listed = |app: &TestApp| {
        let url = app.url(&format!("/v1/payments?service_id={DEMO_TOP_UP_SERVICE}"));
        let client = app.client.clone();
        async move {
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(listed(&app).await, 0, "refused top-ups write nothing");
    let (status, open) = top_up("500.00").await;
    assert_eq!(status, 202);
    // Open top-ups count: paying them all must not take the wallet past the limit.
    let (status, problem) = top_up("0.01").await;
    assert_refused(status, &problem, "amount");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("open top-ups add 500.00"),
        "{problem}"
    );
    let id = open["id"].as_str().unwrap();
    let r = citizen()
        .post(app.url(&format!("/v1/payments/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    app.wait_for(id, "CANCELED", 15).await;
    // Per tenant: its operator sets the limits on the top-up service.
    let (status, service) =
        patch_service(&app, DEMO_TOP_UP_SERVICE, json!({"top_up_max": "100.00"})).await;
    assert_eq!(status, 200, "{service}");
    let (status, problem) = top_up("100.01").await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"].as_str().unwrap().contains("100.00"),
        "{problem}"
    );
    let (status, _) = top_up("100.00").await;
    assert_eq!(status, 202);
    assert_eq!(listed(&app).await, 2);
    // Limits only on a top-up service, which takes PAGOPA only.
    let (status, problem) = patch_service(&app, DEMO_SERVICE, json!({"balance_max": "1.00"})).await;
    assert_refused(status, &problem, "balance_max");
    // Only the owner tops up.
    for client in [admin_client(), system(), operator_of(DEMO_TENANT)] {
        let (status, _) = post(&client, &app.base, &path, &top_up_body("1.00")).await;
        assert_eq!(status, 403);
    }
    let stranger = client_with(Some(&token(
        Role::Citizen,
        Some(DEMO_TENANT),
        &Uuid::new_v4().to_string(),
    )));
    let (status, _) = post(&stranger, &app.base, &path, &top_up_body("1.00")).await;
    assert_eq!(status, 404);
    // The top-up service takes no ordinary payments.
    let mut body = citizen_body("10.00");
    body["service_id"] = json!(DEMO_TOP_UP_SERVICE);
    let (status, problem) = post(&citizen(), &app.base, "/v1/payments", &body).await;
    assert_refused(status, &problem, "service_id");
}

on_both_databases!(wallet_limits);

// --- Fees the service decides -----------------------------------------------------------

async fn fees_the_service_decides(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let patch = |doc: Value| {
        let app = &app;
        async move {
            let (status, service) = patch_service(app, DEMO_SERVICE, doc).await;
            assert_eq!(status, 200, "{service}");
        }
    };
    let create = |client: reqwest::Client, amount: &str| {
        let body = citizen_body(amount);
        let base = app.base.clone();
        async move { post(&client, &base, "/v1/payments", &body).await }
    };
    let count = || {
        let url = app.url("/v1/payments?limit=500");
        let client = app.client.clone();
        async move {
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            page["items"].as_array().unwrap().len()
        }
    };
    // The attack: a fixed fee of 45.00, the citizen pays 0.05.
    patch(json!({"amount": "45.00"})).await;
    let (status, problem) = create(citizen(), "0.05").await;
    assert_refused(status, &problem, "payment.amount");
    assert!(problem["detail"].as_str().unwrap().contains("45.00"));
    assert_eq!(count().await, 0, "nothing written");
    let (status, payment) = create(citizen(), "45.00").await;
    assert_eq!(status, 202, "{payment}");
    // The platform's application, operators and the admin decide other amounts.
    for client in [system(), admin_client(), operator_of(DEMO_TENANT)] {
        let (status, payment) = create(client, "0.05").await;
        assert_eq!(status, 202, "{payment}");
        assert_eq!(payment["payment"]["amount"], json!(0.05));
    }
    // Variable fees: a range instead.
    patch(json!({"amount": null, "amount_min": "10.00", "amount_max": "20.00"})).await;
    for (amount, ok) in [
        ("9.99", false),
        ("10.00", true),
        ("20.00", true),
        ("20.01", false),
    ] {
        let (status, problem) = create(citizen(), amount).await;
        if ok {
            assert_eq!(status, 202, "{amount}: {problem}");
        } else {
            assert_refused(status, &problem, "payment.amount");
        }
    }
    let (status, _) = create(operator_of(DEMO_TENANT), "99.00").await;
    assert_eq!(status, 202);
    assert_eq!(count().await, 7);
    // A fixed fee and a range together are refused, naming the field.
    let (status, problem) = patch_service(&app, DEMO_SERVICE, json!({"amount": "5.00"})).await;
    assert_refused(status, &problem, "amount_min");
}

on_both_databases!(fees_the_service_decides);

// --- Only the owner spends a wallet (issue 25, point 1) ---------------------------------

async fn only_the_owner_spends_a_wallet(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // A second tenant with its own WALLET service.
    let other = Uuid::new_v4();
    let r = app
        .post_json(
            "/v1/tenants",
            &json!({"id": other, "name": "Comune di Altrove", "tax_identification_number": "02438750586"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let service = Uuid::new_v4();
    let r = app
        .post_json(
            "/v1/services",
            &json!({
                "id": service, "tenant_id": other, "payment_type": ["PAGOPA", "WALLET"],
                "reason": "Mensa scolastica",
                "receiver": {"tax_identification_number": "02438750586", "name": "Comune di Altrove"},
                "intermediary": {"kind": "simulator", "url": app.sim.base}
            }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // The attack: the other tenant's operator charges the demo citizen's wallet on its
    // own service, naming the victim's user id.
    let mut attack = wallet_body("100.00");
    attack["tenant_id"] = json!(other);
    attack["service_id"] = json!(service);
    let (status, problem) = post(&operator_of(other), &app.base, "/v1/payments", &attack).await;
    assert_refused(status, &problem, "wallet_account_id");
    // Nobody but the owner's own citizen token, in the wallet's tenant, spends it.
    let mut in_tenant = Vec::new();
    for client in [operator_of(DEMO_TENANT), admin_client(), system()] {
        in_tenant.push(post(&client, &app.base, "/v1/payments", &wallet_body("100.00")).await);
    }
    let victim_elsewhere = client_with(Some(&token(
        Role::Citizen,
        Some(other),
        &DEMO_CITIZEN.to_string(),
    )));
    in_tenant.push(post(&victim_elsewhere, &app.base, "/v1/payments", &attack).await);
    for (status, problem) in in_tenant {
        assert_refused(status, &problem, "wallet_account_id");
    }
    assert_eq!(
        wallet(app.store.as_ref()).await,
        (100_000, 0),
        "nothing held or spent"
    );
    let page: Value = app.get("/v1/payments").await.json().await.unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "nothing written"
    );
    // The owner still can.
    let (status, payment) =
        post(&citizen(), &app.base, "/v1/payments", &wallet_body("25.00")).await;
    assert_eq!(status, 202, "{payment}");
    app.wait_for(payment["id"].as_str().unwrap(), "COMPLETE", 15)
        .await;
    assert_eq!(wallet(app.store.as_ref()).await, (97_500, 0));
    let kinds: Vec<String> = movements(&citizen(), &app.base)
        .await
        .iter()
        .map(|m| m["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["capture", "hold", "credit"]);
    assert_ledger_agrees(app.store.as_ref()).await;
}

on_both_databases!(only_the_owner_spends_a_wallet);

/// A foreign event on `payments`, as another system would publish it.
fn foreign_event(body: &mut Value) -> Uuid {
    let id = Uuid::new_v4();
    let now = time::format(&time::now());
    let event = body.as_object_mut().unwrap();
    for (field, value) in [
        ("id", json!(id)),
        ("created_at", json!(now)),
        ("updated_at", json!(now)),
        ("status", json!("CREATION_PENDING")),
        ("event_id", json!(Uuid::new_v4())),
        ("event_version", json!("2.0")),
        ("event_created_at", json!(now)),
        ("app_id", json!("payment-dispatcher:1.4.0")),
    ] {
        event.insert(field.into(), value);
    }
    event
        .entry("user_id")
        .or_insert_with(|| json!(Uuid::new_v4()));
    event["payment"]["iud"] = json!(id.simple().to_string());
    event.insert("links".into(), json!({}));
    id
}

/// A WALLET payment published on Kafka names the demo wallet and its owner: the
/// platform spends no citizen's wallet either. A PAGOPA event after it on the same
/// partition shows it was read.
async fn a_wallet_payment_from_kafka_is_not_adopted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut forged = wallet_body("50.00");
    let forged_id = foreign_event(&mut forged);
    let mut probe = citizen_body("31.00");
    let probe_id = foreign_event(&mut probe);
    for event in [&forged, &probe] {
        let bytes = event.to_string();
        crate::kafka::produce(
            app.kafka.bootstrap(),
            "payments",
            "one-partition",
            bytes.as_bytes(),
        )
        .await;
    }
    app.wait_for(&probe_id.to_string(), "PAYMENT_PENDING", 20)
        .await;
    assert_eq!(
        app.get(&format!("/v1/payments/{forged_id}")).await.status(),
        404
    );
    assert_eq!(wallet(app.store.as_ref()).await, (100_000, 0));
}

on_both_databases!(a_wallet_payment_from_kafka_is_not_adopted);

// --- `cassa ledger check` ---------------------------------------------------------------

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

// --- The property: balance = credits − captures, held = open holds ----------------------

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
