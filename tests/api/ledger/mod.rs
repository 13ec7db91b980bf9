//! Money integrity (issue 24, and the wallet rule of issue 25): only the platform
//! credits a wallet directly; a citizen tops up by paying, credited exactly once in the
//! transaction that records the payment COMPLETE; every movement is a journal entry that
//! `cassa ledger check` adds up; citizens pay the service's fee; tenants' wallet limits;
//! only the owner's own citizen token spends a wallet. On both databases. The shared
//! clients and readings are here; the tests are in a module per subject.

use cassa::auth::Role;
use cassa::seed::{DEMO_ACCOUNT, DEMO_TENANT};
use cassa::store::Store;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

mod deposits;
mod fees;
mod journal;
mod limits;
mod spending;
mod top_ups;

const PAYER: &str = r#"{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}"#;

pub(super) fn citizen() -> reqwest::Client {
    client_with(Some(&citizen_token()))
}

pub(super) fn system() -> reqwest::Client {
    client_with(Some(&token(Role::System, None, "platform")))
}

pub(super) fn operator_of(tenant: Uuid) -> reqwest::Client {
    client_with(Some(&token(Role::Operator, Some(tenant), "operator")))
}

pub(super) fn top_up_body(amount: &str) -> Value {
    json!({"amount": amount, "payer": serde_json::from_str::<Value>(PAYER).unwrap()})
}

pub(super) async fn status_and_body(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(super) async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    status_and_body(
        client
            .post(format!("{base}{path}"))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A 400 naming `field`.
pub(super) fn assert_refused(status: u16, problem: &Value, field: &str) {
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some(field)),
        "{problem}"
    );
}

/// A merge patch of a demo service by the demo tenant's operator: status and answer.
pub(super) async fn patch_service(app: &TestApp, service: Uuid, doc: Value) -> (u16, Value) {
    let r = operator_of(DEMO_TENANT)
        .patch(app.url(&format!("/v1/services/{service}")))
        .json(&doc)
        .send()
        .await
        .unwrap();
    status_and_body(r).await
}

/// The demo wallet's balance and held money, in cents, as the store has them.
pub(super) async fn wallet(store: &dyn Store) -> (i64, i64) {
    let a = store.account(DEMO_ACCOUNT).await.unwrap().unwrap();
    (a.balance_cents, a.held_cents)
}

/// The demo wallet's movements, newest first, all pages.
pub(super) async fn movements(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/accounts/{DEMO_ACCOUNT}/movements?limit=2");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return all,
        }
    }
}

pub(super) async fn assert_ledger_agrees(store: &dyn Store) {
    let mismatches = store.ledger_mismatches().await.unwrap();
    assert!(
        mismatches.is_empty(),
        "row and journal disagree: {mismatches:?}"
    );
    let stale = store.stale_holds().await.unwrap();
    assert!(stale.is_empty(), "holds outlived their payments: {stale:?}");
}

/// `cassa ledger check` on a database: its exit status and what it printed.
pub(super) fn ledger_check(db_url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cassa"))
        .args(["ledger", "check", "--database-url", db_url])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
