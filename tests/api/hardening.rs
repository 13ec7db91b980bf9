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
