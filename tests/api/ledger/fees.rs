//! Fees the service decides.

use cassa::seed::{DEMO_SERVICE, DEMO_TENANT};
use serde_json::{json, Value};

use super::{assert_refused, citizen, operator_of, patch_service, post, system};
use crate::helpers::*;

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
