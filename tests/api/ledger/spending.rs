//! Only the owner spends a wallet (issue 25, point 1): no other caller over HTTP, no
//! payment adopted from Kafka.

use cassa::auth::Role;
use cassa::domain::time;
use cassa::seed::{DEMO_CITIZEN, DEMO_TENANT};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    assert_ledger_agrees, assert_refused, citizen, movements, operator_of, post, system, wallet,
};
use crate::helpers::*;

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
