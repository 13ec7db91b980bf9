//! Deposits: the platform's, never a citizen's.

use cassa::auth::Role;
use cassa::seed::DEMO_ACCOUNT;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    assert_ledger_agrees, assert_refused, citizen, movements, post, status_and_body, system, wallet,
};
use crate::helpers::*;

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
