//! `Idempotency-Key`: same key and body → the same payment; same key, other body → 422;
//! concurrent duplicates → exactly one payment. `remote_id` is unique too.

use serde_json::{json, Value};

use crate::helpers::*;

async fn count_payments(app: &TestApp) -> usize {
    let page: Value = app
        .get("/v1/payments?limit=500")
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().len()
}

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/payments"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn same_key_same_payment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = pagopa_body("20.00");
    let first: Value = post_with_key(&app, "key-1", &body)
        .await
        .json()
        .await
        .unwrap();
    let second = post_with_key(&app, "key-1", &body).await;
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(count_payments(&app).await, 1);

    let mut other = body.clone();
    other["payment"]["amount"] = json!("21.00");
    let r = post_with_key(&app, "key-1", &other).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(count_payments(&app).await, 1);

    // Concurrent duplicates of a new key: one payment, every caller gets its id.
    let body = pagopa_body("22.00");
    let answers =
        futures::future::join_all((0..10).map(|_| post_with_key(&app, "key-2", &body))).await;
    let mut ids = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 202);
        ids.push(
            answer.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "all duplicates answered with the same payment"
    );
    assert_eq!(count_payments(&app).await, 2);
    app.wait_for(&ids[0], "PAYMENT_PENDING", 15).await;
    app.wait_for(first["id"].as_str().unwrap(), "PAYMENT_PENDING", 15)
        .await;
    assert_eq!(app.sim.stats().await.positions_created, 2);
}

on_both_databases!(same_key_same_payment);

#[actix_rt::test]
async fn one_payment_per_remote_id() {
    if crate::helpers::postgres_skipped(concat!(module_path!(), "::one_payment_per_remote_id")) {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let mut body = pagopa_body("5.00");
    body["remote_id"] = json!(uuid::Uuid::new_v4());
    let first = app.create(&body).await;
    let answers =
        futures::future::join_all((0..5).map(|_| app.post_json("/v1/payments", &body))).await;
    for answer in answers {
        assert_eq!(answer.status(), 409);
        let problem: Value = answer.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(first["id"].as_str().unwrap()),
            "{problem}"
        );
    }
    assert_eq!(count_payments(&app).await, 1);
}
