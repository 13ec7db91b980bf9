//! Issue 25's attacks by ordinary tokens, replayed over real HTTP: each must now fail
//! with the right status and leave nothing written, spent or cancelled. Storage-related
//! ones run on both databases.

use cassa::auth::Role;
use cassa::seed::{DEMO_SERVICE, DEMO_TENANT};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// A second tenant with a PAGOPA service of its own, created by the admin.
async fn other_tenant(app: &TestApp) -> (Uuid, Uuid) {
    let (tenant, service) = (Uuid::new_v4(), Uuid::new_v4());
    let r = app
        .post_json(
            "/v1/tenants",
            &json!({"id": tenant, "name": "Comune di Altrove", "tax_identification_number": "02438750586"}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = app
        .post_json(
            "/v1/services",
            &json!({
                "id": service, "tenant_id": tenant, "payment_type": "PAGOPA", "reason": "Mensa scolastica",
                "receiver": {"tax_identification_number": "02438750586", "name": "Comune di Altrove"},
                "collection_data": "9/0101108TS/",
                "intermediary": {"kind": "simulator", "url": app.sim.base}
            }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    (tenant, service)
}

/// `body` posted to `/v1/payments` with `token`: (status, JSON answer).
async fn post_payment(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let r = client_with(Some(token))
        .post(app.url("/v1/payments"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Point 6: tenant B's platform claims tenant A's application id first; A still gets
/// its payment, and nothing in A's answer names B's.
async fn another_tenant_cannot_take_an_application_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant_b, service_b) = other_tenant(&app).await;
    let application = Uuid::new_v4();
    let platform_b = token(Role::System, Some(tenant_b), "platform-b");
    let platform_a = token(Role::System, Some(DEMO_TENANT), "platform-a");

    let mut body_b = pagopa_body("3.00");
    body_b["tenant_id"] = json!(tenant_b);
    body_b["service_id"] = json!(service_b);
    body_b["remote_id"] = json!(application);
    let (status, b) = post_payment(&app, &platform_b, &body_b).await;
    assert_eq!(status, 202, "{b}");

    let mut body_a = pagopa_body("4.00");
    body_a["remote_id"] = json!(application);
    let (status, a) = post_payment(&app, &platform_a, &body_a).await;
    assert_eq!(
        status, 202,
        "tenant A's application still gets its payment: {a}"
    );
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["tenant_id"], json!(DEMO_TENANT));
    assert_eq!(a["service_id"], json!(DEMO_SERVICE));
    assert!(!a.to_string().contains(b["id"].as_str().unwrap()));
    // Each tenant's application id still yields one payment only.
    let (status, again) = post_payment(&app, &platform_a, &body_a).await;
    assert_eq!(status, 409, "{again}");
    assert!(again.to_string().contains(a["id"].as_str().unwrap()));
    assert!(!again.to_string().contains(b["id"].as_str().unwrap()));
}

#[actix_rt::test]
async fn another_tenant_cannot_take_an_application_id_on_sqlite() {
    another_tenant_cannot_take_an_application_id(Backend::Sqlite).await;
}

#[actix_rt::test]
async fn another_tenant_cannot_take_an_application_id_on_postgres() {
    another_tenant_cannot_take_an_application_id(Backend::Postgres).await;
}

/// Point 4: an operator's 250.00 fine in the citizen's name cannot be cancelled by the
/// citizen (403, still pending, the debt position still open); the citizen cancels what
/// they created. Who created each is kept with the payment (and in its events).
async fn a_debtor_cannot_cancel_the_municipalitys_fine(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operator = token(Role::Operator, Some(DEMO_TENANT), "op-demo");
    let citizen = citizen_token();
    let mut fine = pagopa_body("250.00");
    fine["reason"] = json!("Sanzione amministrativa");
    fine["user_id"] = json!(cassa::seed::DEMO_CITIZEN);
    let (status, fine) = post_payment(&app, &operator, &fine).await;
    assert_eq!(status, 202, "{fine}");
    let id = fine["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    assert_eq!(
        pending["created_by"],
        json!({"role": "operator", "sub": "op-demo"})
    );
    let iuv = pending["payment"]["iuv"].as_str().unwrap().to_string();

    let r = client_with(Some(&citizen))
        .post(app.url(&format!("/v1/payments/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap());
    assert_eq!(app.get_payment(&id).await["status"], "PAYMENT_PENDING");
    assert_eq!(app.sim.position(&iuv).await["status"], "PENDING");
    let events = app.events(&id).await;
    assert!(events.iter().all(|e| e["status"] != "CANCELED"));
    assert_eq!(events[0]["created_by"]["role"], "operator");

    // The citizen's own payment is theirs to cancel.
    let (status, own) = post_payment(&app, &citizen, &pagopa_body("3.00")).await;
    assert_eq!(status, 202, "{own}");
    let own_id = own["id"].as_str().unwrap().to_string();
    assert_eq!(
        own["created_by"],
        json!({"role": "citizen", "sub": cassa::seed::DEMO_CITIZEN})
    );
    app.wait_for(&own_id, "PAYMENT_PENDING", 15).await;
    let r = client_with(Some(&citizen))
        .post(app.url(&format!("/v1/payments/{own_id}/cancel")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    app.wait_for(&own_id, "CANCELED", 15).await;
    // And the operator cancels the fine.
    let r = client_with(Some(&operator))
        .post(app.url(&format!("/v1/payments/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[actix_rt::test]
async fn a_debtor_cannot_cancel_the_municipalitys_fine_on_sqlite() {
    a_debtor_cannot_cancel_the_municipalitys_fine(Backend::Sqlite).await;
}

#[actix_rt::test]
async fn a_debtor_cannot_cancel_the_municipalitys_fine_on_postgres() {
    a_debtor_cannot_cancel_the_municipalitys_fine(Backend::Postgres).await;
}

/// Payments stored in the database now.
async fn payment_count(app: &TestApp) -> usize {
    let page = app.get("/v1/payments?limit=500").await;
    page.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .len()
}

/// Point 5: a citizen cannot create a 487.00 fine naming another person's tax code,
/// name a debtor, or create a PAGOPA payment with a token without a tax code claim;
/// nothing is written. With their own tax code it works.
async fn a_citizen_cannot_create_debts_in_anyones_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let citizen = citizen_token();
    let mut fine = pagopa_body("487.00");
    fine["reason"] = json!("Sanzione amministrativa");
    let mut someone_else = fine.clone();
    someone_else["payer"]["tax_identification_number"] = json!("VRDGPP85M10F205V");
    someone_else["payer"]["name"] = json!("Giuseppe");
    someone_else["payer"]["family_name"] = json!("Verdi");
    let mut with_debtor = fine.clone();
    with_debtor["debtor"] = someone_else["payer"].clone();
    let no_claim = citizen_token_for(cassa::seed::DEMO_CITIZEN, None);
    let cases = [
        (&citizen, &someone_else, "payer.tax_identification_number"),
        (&citizen, &with_debtor, "debtor"),
        (&no_claim, &fine, "payer.tax_identification_number"),
    ];
    for (token, body, field) in cases {
        let (status, problem) = post_payment(&app, token, body).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    assert_eq!(payment_count(&app).await, 0, "nothing written");
    assert_eq!(app.sim.stats().await.positions_created, 0, "nothing called");

    // Their own tax code: created. An operator may name a debtor.
    let (status, own) = post_payment(&app, &citizen, &fine).await;
    assert_eq!(status, 202, "{own}");
    let operator = token(Role::Operator, Some(DEMO_TENANT), "op-demo");
    let (status, by_operator) = post_payment(&app, &operator, &with_debtor).await;
    assert_eq!(status, 202, "{by_operator}");
    assert_eq!(payment_count(&app).await, 2);
}

#[actix_rt::test]
async fn a_citizen_cannot_create_debts_in_anyones_name_on_sqlite() {
    a_citizen_cannot_create_debts_in_anyones_name(Backend::Sqlite).await;
}

#[actix_rt::test]
async fn a_citizen_cannot_create_debts_in_anyones_name_on_postgres() {
    a_citizen_cannot_create_debts_in_anyones_name(Backend::Postgres).await;
}
