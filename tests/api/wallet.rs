//! WALLET payments: hold → gateway (pivot) → capture or release, with the ledger
//! checked after each outcome, on both databases.

use serde_json::{json, Value};

use crate::helpers::*;

fn money(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

async fn wallet_outcomes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let start = app.account().await;
    assert_eq!(money(&start["balance"]), 1000.0);

    // APPROVED: the hold is captured.
    let approved = app.create(&wallet_body("25.00")).await;
    let id = approved["id"].as_str().unwrap();
    let done = app.wait_for(id, "COMPLETE", 10).await;
    assert!(done["payment"]["transaction_id"].is_string());
    let account = app.account().await;
    assert_eq!(money(&account["balance"]), 975.0);
    assert_eq!(money(&account["held"]), 0.0);
    let statuses: Vec<String> = app
        .events(id)
        .await
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        [
            "CREATION_PENDING",
            "PAYMENT_PENDING",
            "PAYMENT_STARTED",
            "COMPLETE"
        ]
    );

    // REJECTED (.01): the hold is released, nothing taken.
    let rejected = app.create(&wallet_body("10.01")).await;
    let failed = app
        .wait_for(rejected["id"].as_str().unwrap(), "PAYMENT_FAILED", 10)
        .await;
    assert!(failed["status_message"]
        .as_str()
        .unwrap()
        .contains("rejected"));
    let account = app.account().await;
    assert_eq!(money(&account["balance"]), 975.0);
    assert_eq!(money(&account["held"]), 0.0);
    assert_eq!(money(&account["available"]), 975.0);

    // Insufficient funds: 202 with the payment already CREATION_FAILED, no hold.
    let poor = app.create(&wallet_body("5000.00")).await;
    assert_eq!(poor["status"], "CREATION_FAILED");
    assert!(poor["status_message"]
        .as_str()
        .unwrap()
        .contains("insufficient funds"));
    let account = app.account().await;
    assert_eq!(money(&account["balance"]), 975.0);
    assert_eq!(money(&account["held"]), 0.0);

    // Unknown account, or someone else's: one 400 for both (nothing leaks), nothing held.
    let mut unknown = wallet_body("1.00");
    unknown["wallet_account_id"] = json!(uuid::Uuid::new_v4());
    let mut not_theirs = wallet_body("1.00");
    not_theirs["user_id"] = json!(uuid::Uuid::new_v4());
    let mut details = Vec::new();
    for body in [unknown, not_theirs] {
        let r = app.post_json("/v1/payments", &body).await;
        assert_eq!(r.status(), 400);
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["field"], "wallet_account_id");
        details.push(problem["detail"].clone());
    }
    assert_eq!(details[0], details[1]);
    assert_eq!(money(&app.account().await["held"]), 0.0);

    // Flaky gateway (.03): retried, executed once, approved.
    let flaky = app.create(&wallet_body("3.03")).await;
    app.wait_for(flaky["id"].as_str().unwrap(), "COMPLETE", 15)
        .await;
    let account = app.account().await;
    assert_eq!(money(&account["balance"]), 971.97);
    let stats = app.sim.stats().await;
    assert_eq!(
        stats.gateway_executions, 3,
        "approved, rejected and flaky: one execution each"
    );
}

on_both_databases!(wallet_outcomes);

#[actix_rt::test]
async fn deposits_top_up_the_balance() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let account = app.account().await;
    let id = account["id"].as_str().unwrap();
    let deposit = |path: String, body: Value, key: &'static str| {
        let request = app
            .client
            .post(app.url(&path))
            .header("Idempotency-Key", key);
        async move { request.json(&body).send().await.unwrap() }
    };
    let r = deposit(
        format!("/v1/accounts/{id}/deposits"),
        json!({"amount": "10.50", "reason": "Rimborso"}),
        "d1",
    )
    .await;
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    assert_eq!(money(&after["balance"]), 1010.5);
    let bad = deposit(
        format!("/v1/accounts/{id}/deposits"),
        json!({"amount": "-1", "reason": "Rimborso"}),
        "d2",
    )
    .await;
    assert_eq!(bad.status(), 400);
    let missing = deposit(
        format!("/v1/accounts/{}/deposits", uuid::Uuid::new_v4()),
        json!({"amount": "1", "reason": "Rimborso"}),
        "d3",
    )
    .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(money(&app.account().await["balance"]), 1010.5);
}
