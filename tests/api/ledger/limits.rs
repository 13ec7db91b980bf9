//! Tenants' wallet limits.

use cassa::auth::Role;
use cassa::seed::{DEMO_ACCOUNT, DEMO_SERVICE, DEMO_TENANT, DEMO_TOP_UP_SERVICE};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    assert_refused, citizen, operator_of, patch_service, post, system, top_up_body, wallet,
};
use crate::helpers::*;

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
