//! Bad input: each gets a clear 4xx problem+json naming the field, and writes nothing.

use serde_json::{json, Value};

use crate::helpers::*;

fn with(mut body: Value, pointer: &str, value: Value) -> Value {
    *body.pointer_mut(pointer).unwrap() = value;
    body
}

#[actix_rt::test]
async fn bad_bodies_are_refused_naming_the_field_and_write_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ok = pagopa_body("12.34");
    let mut unknown = ok.clone();
    unknown["colour"] = json!("red");
    let mut nested_unknown = ok.clone();
    nested_unknown["payment"]["discount"] = json!(1);
    let mut no_reason = ok.clone();
    no_reason.as_object_mut().unwrap().remove("reason");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative amount",
            with(ok.clone(), "/payment/amount", json!("-5.00")),
            "payment.amount",
        ),
        (
            "zero amount",
            with(ok.clone(), "/payment/amount", json!(0)),
            "payment.amount",
        ),
        (
            "three decimals",
            with(ok.clone(), "/payment/amount", json!("12.345")),
            "payment.amount",
        ),
        (
            "three decimals as number",
            with(ok.clone(), "/payment/amount", json!(12.345)),
            "payment.amount",
        ),
        (
            "too large",
            with(ok.clone(), "/payment/amount", json!("1000000000.00")),
            "payment.amount",
        ),
        (
            "not a number",
            with(ok.clone(), "/payment/amount", json!("twelve")),
            "payment.amount",
        ),
        (
            "bad tax code",
            with(
                ok.clone(),
                "/payer/tax_identification_number",
                json!("RSSMRA80A01H501X"),
            ),
            "payer.tax_identification_number",
        ),
        ("unknown field", unknown, "colour"),
        ("unknown nested field", nested_unknown, "payment.discount"),
        ("missing reason", no_reason, "reason"),
        (
            "empty reason",
            with(ok.clone(), "/reason", json!("  ")),
            "reason",
        ),
        (
            "long reason",
            with(ok.clone(), "/reason", json!("x".repeat(141))),
            "reason",
        ),
        ("bad type", with(ok.clone(), "/type", json!("CASH")), "type"),
        (
            "bad tenant id",
            with(ok.clone(), "/tenant_id", json!("nope")),
            "tenant_id",
        ),
        (
            "unknown service",
            with(ok.clone(), "/service_id", json!(uuid::Uuid::new_v4())),
            "service_id",
        ),
        (
            "other currency",
            with(ok.clone(), "/payment/currency", json!("USD")),
            "payment.currency",
        ),
        (
            "past expiry",
            with(
                ok.clone(),
                "/payment/expire_at",
                json!("2020-01-01T00:00:00+01:00"),
            ),
            "payment.expire_at",
        ),
        (
            "expiry without offset",
            with(
                ok.clone(),
                "/payment/expire_at",
                json!("2030-01-01T00:00:00"),
            ),
            "payment.expire_at",
        ),
        (
            "split not adding up",
            with(
                ok.clone(),
                "/payment/split",
                json!([{"code": "a", "amount": "1.00", "meta": {}}]),
            ),
            "payment.split",
        ),
        (
            "bad notify url",
            with(
                ok.clone(),
                "/links/notify",
                json!([{"url": "ftp://x", "method": "POST"}]),
            ),
            "links.notify[0].url",
        ),
        (
            "wallet without account",
            with(ok.clone(), "/type", json!("WALLET")),
            "wallet_account_id",
        ),
    ];
    for (name, body, field) in cases {
        let r = app.post_json("/v1/payments", &body).await;
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["status"], 400, "{name}");
        assert_eq!(problem["field"], field, "{name}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "{name}: {problem}"
        );
    }

    let malformed = app
        .client
        .post(app.url("/v1/payments"))
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let problem: Value = malformed.json().await.unwrap();
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let oversized = format!("{{\"reason\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = app
        .client
        .post(app.url("/v1/payments"))
        .header("content-type", "application/json")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let r = app
        .client
        .post(app.url("/v1/payments"))
        .header("content-type", "text/plain")
        .body(ok.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    for path in [
        "/v1/payments/not-a-uuid",
        "/v1/payments/123/cancel",
        "/v1/accounts/xyz",
    ] {
        let r = if path.ends_with("cancel") {
            app.post(path).await
        } else {
            app.get(path).await
        };
        assert_eq!(r.status(), 400, "{path}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["field"], "id");
    }
    let r = app
        .get(&format!("/v1/payments/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status(), 404);

    let page: Value = app.get("/v1/payments").await.json().await.unwrap();
    assert!(
        page["items"].as_array().unwrap().is_empty(),
        "nothing was written: {page}"
    );
    assert_eq!(app.sim.stats().await.positions_created, 0);
    let account = app.account().await;
    assert_eq!(account["held"].as_f64().unwrap(), 0.0);

    // The same valid body is accepted, so the refusals above were about the fields.
    app.create(&ok).await;
}

#[actix_rt::test]
async fn health_and_readiness() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["database"], "sqlite");
    let r = app.get("/no/such/route").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(
        spec["paths"]["/v1/payments"].is_object(),
        "the OpenAPI document describes the API"
    );
}
