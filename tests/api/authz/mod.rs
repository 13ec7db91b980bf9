//! Authorisation: a table of role × own/other tenant × route → status over real HTTP,
//! checked against the OpenAPI document so a new route without a row fails; tokens
//! that must be refused; the per-caller create limit. The shared bodies and readings are
//! here; the tests are in a module per subject.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

mod callers;
mod isolation;
mod matrix;
mod tokens;

pub(super) fn tenant_body(id: Uuid, name: &str) -> Value {
    json!({"id": id, "name": name, "tax_identification_number": "02438750586"})
}

pub(super) fn service_body(id: Uuid, tenant: Uuid, sim: &str) -> Value {
    json!({
        "id": id, "tenant_id": tenant, "payment_type": "PAGOPA", "reason": "Mensa scolastica",
        "receiver": {"tax_identification_number": "02438750586", "name": "Comune di Altrove"},
        "collection_data": "9/0101108TS/",
        "intermediary": {"kind": "simulator", "url": sim}
    })
}

pub(super) async fn expect_status(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A service's document as a PUT body (what GET shows, without the timestamps).
pub(super) async fn put_body_of(app: &TestApp, id: Uuid) -> Value {
    let mut doc = expect_status(app.get(&format!("/v1/services/{id}")).await, 200).await;
    let map = doc.as_object_mut().unwrap();
    map.remove("created_at");
    map.remove("updated_at");
    doc
}

pub(super) fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}
