//! What the matrix cannot show: wallets, idempotency keys, remote ids and services do
//! not cross callers.

use cassa::auth::Role;
use cassa::seed::{DEMO_ACCOUNT, DEMO_CITIZEN, DEMO_SERVICE, DEMO_TENANT};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{put_body_of, service_body, tenant_body};
use crate::helpers::*;

/// What the matrix cannot show: objects that must not cross callers — wallets,
/// idempotency keys, remote ids, a service moved to another tenant — and a 404 that says
/// the same whether the object is another tenant's or does not exist.
async fn wallets_keys_remote_ids_and_services_do_not_cross_callers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let citizen = client_with(Some(&citizen_token()));
    // Another user with the same tax code (a second account of one person): the user id,
    // not the tax code, is what tells callers apart.
    let neighbour = client_with(Some(&citizen_token_for(
        Uuid::new_v4(),
        Some("RSSMRA80A01H501U"),
    )));
    let system = client_with(Some(&token(Role::System, None, "platform")));
    let operator = client_with(Some(&token(Role::Operator, Some(DEMO_TENANT), "op-demo")));
    let post = |client: &reqwest::Client, body: &Value, key: Option<&str>| {
        let mut request = client.post(app.url("/v1/payments")).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };

    // Wallets: only the payment's user's own; the same answer when it does not exist.
    let mut wallet = citizen_body("2.00");
    wallet["type"] = json!("WALLET");
    wallet["wallet_account_id"] = json!(DEMO_ACCOUNT);
    let r = post(&neighbour, &wallet, None).await.unwrap();
    assert_eq!(r.status(), 400);
    let not_theirs: Value = r.json().await.unwrap();
    assert_eq!(not_theirs["field"], "wallet_account_id");
    let mut missing = wallet.clone();
    missing["wallet_account_id"] = json!(Uuid::new_v4());
    let r = post(&neighbour, &missing, None).await.unwrap();
    let no_such: Value = r.json().await.unwrap();
    assert_eq!(no_such["detail"], not_theirs["detail"]);
    for client in [&system, &operator] {
        assert_eq!(post(client, &wallet, None).await.unwrap().status(), 400);
    }
    let mut for_the_owner = wallet.clone();
    for_the_owner["user_id"] = json!(DEMO_CITIZEN);
    // Naming the owner is not enough: only the owner's own citizen token spends a wallet.
    for client in [&system, &operator] {
        let r = post(client, &for_the_owner, None).await.unwrap();
        assert_eq!(r.status(), 400);
    }
    assert_eq!(post(&citizen, &wallet, None).await.unwrap().status(), 202);
    let r = post(&neighbour, &for_the_owner, None).await.unwrap();
    assert_eq!(r.status(), 400, "a citizen pays for themselves only");

    // The same Idempotency-Key and body from two callers: two payments, no replay.
    let body = citizen_body("2.10");
    let mut ids = Vec::new();
    for client in [&citizen, &neighbour, &citizen] {
        let r = post(client, &body, Some("shared-key")).await.unwrap();
        assert_eq!(r.status(), 202);
        ids.push(r.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2], "the same caller replays its own");

    // remote_id belongs to the platform; a clash elsewhere names no payment.
    let remote = Uuid::new_v4();
    let mut claimed = citizen_body("2.20");
    claimed["remote_id"] = json!(remote);
    for client in [&citizen, &operator] {
        let r = post(client, &claimed, None).await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["field"], "remote_id");
    }
    let first = post(&system, &claimed, None).await.unwrap();
    assert_eq!(first.status(), 202);
    let first_id = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(&system, &claimed, None).await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(
        r.text().await.unwrap().contains(&first_id),
        "its own platform is told where"
    );

    // Another tenant's payment and no payment at all answer alike.
    let other_tenant = Uuid::new_v4();
    let admin = admin_client();
    let r = admin
        .post(app.url("/v1/tenants"))
        .json(&tenant_body(other_tenant, "Comune di Altrove"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let other_service = Uuid::new_v4();
    let r = admin
        .post(app.url("/v1/services"))
        .json(&service_body(other_service, other_tenant, &app.sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A platform scoped to another tenant using the same remote_id gets a payment of its
    // own (application ids are unique per tenant) and learns nothing of the other.
    let elsewhere = client_with(Some(&token(
        Role::System,
        Some(other_tenant),
        "other-platform",
    )));
    let mut clash = claimed.clone();
    clash["tenant_id"] = json!(other_tenant);
    clash["service_id"] = json!(other_service);
    let r = post(&elsewhere, &clash, None).await.unwrap();
    assert_eq!(r.status(), 202);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&first_id), "{text}");
    let mut theirs = citizen_body("2.30");
    theirs["tenant_id"] = json!(other_tenant);
    theirs["service_id"] = json!(other_service);
    let theirs = post(&admin, &theirs, None)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let nobody = Uuid::new_v4();
    let mut answers = Vec::new();
    for id in [
        theirs["id"].as_str().unwrap().to_string(),
        nobody.to_string(),
    ] {
        let r = operator
            .get(app.url(&format!("/v1/payments/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let problem: Value = r.json().await.unwrap();
        answers.push((
            problem["type"].clone(),
            problem["title"].clone(),
            problem["detail"].as_str().unwrap().replace(&id, "<id>"),
        ));
    }
    assert_eq!(answers[0], answers[1]);
    // Filters cannot reach past the scope either.
    let r = citizen
        .get(app.url(&format!("/v1/payments?user_id={}", Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = operator
        .get(app.url(&format!("/v1/payments?service_id={other_service}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["items"], json!([]));

    // An operator cannot move its service to another tenant.
    let mut doc = put_body_of(&app, DEMO_SERVICE).await;
    doc["tenant_id"] = json!(other_tenant);
    let r = operator
        .put(app.url(&format!("/v1/services/{DEMO_SERVICE}")))
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = operator
        .patch(app.url(&format!("/v1/services/{DEMO_SERVICE}")))
        .json(&json!({"tenant_id": other_tenant}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        put_body_of(&app, DEMO_SERVICE).await["tenant_id"],
        json!(DEMO_TENANT)
    );
}

on_both_databases!(wallets_keys_remote_ids_and_services_do_not_cross_callers);
