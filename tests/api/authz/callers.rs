//! Who counts as one caller: the per-caller create limit, one UUID spelling per
//! citizen, rate buckets per tenant.

use std::time::Duration;

use cassa::auth::Role;
use cassa::seed::DEMO_TENANT;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{sign, tenant_body};
use crate::helpers::*;

#[actix_rt::test]
async fn creating_beyond_the_per_caller_rate_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.http.create_rate_limit = 1,
        Default::default(),
    )
    .await;
    let citizen = client_with(Some(&citizen_token()));
    let post = |client: &reqwest::Client| {
        client
            .post(app.url("/v1/payments"))
            .json(&citizen_body("2.50"))
            .send()
    };
    assert_eq!(post(&citizen).await.unwrap().status(), 202);
    let limited = post(&citizen).await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["type"], "urn:cassa:problem:too-many-requests");
    // Another caller has its own allowance; the limited one is let through again later.
    let system = client_with(Some(&token(Role::System, None, "platform")));
    assert_eq!(post(&system).await.unwrap().status(), 202);
    eventually_every(
        "let through again",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async {
            let status = post(&citizen).await.unwrap().status();
            if status != 202 {
                assert_eq!(status, 429);
            }
            status == 202
        },
    )
    .await;
}

/// Issue 25 point 11: one user is one caller whatever the spelling of their UUID (one
/// idempotency scope), and the create limit is kept per tenant, so one subject in two
/// tenants has two allowances.
#[actix_rt::test]
async fn one_uuid_spelling_per_citizen_and_rate_buckets_per_tenant() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.http.create_rate_limit = 1,
        Default::default(),
    )
    .await;
    let user = Uuid::new_v4();
    let spelled = |sub: String| {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"sub": sub, "role": "citizen", "tenant_id": DEMO_TENANT,
            "tax_code": "RSSMRA80A01H501U", "iat": now, "exp": now + 600});
        client_with(Some(&sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
            &claims,
        )))
    };
    let post = |client: reqwest::Client, key: &'static str| {
        client
            .post(app.url("/v1/payments"))
            .header("Idempotency-Key", key)
            .json(&citizen_body("2.60"))
            .send()
    };
    let first = post(spelled(user.to_string()), "one-user").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    // The same user in capitals: the same rate bucket (limited), not a fresh one.
    let upper = post(spelled(user.to_string().to_uppercase()), "one-user")
        .await
        .unwrap();
    assert_eq!(
        upper.status(),
        429,
        "another spelling is not another caller"
    );
    let replay = eventually_every(
        "let through",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || async {
            let r = post(spelled(user.simple().to_string()), "one-user")
                .await
                .unwrap();
            (r.status() != 429).then_some(r)
        },
    )
    .await;
    assert_eq!(replay.status(), 202);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"], "one idempotency scope per user");
    assert_eq!(replay["user_id"], json!(user));

    // An operator subject "op" of the demo tenant uses its allowance; the same subject
    // of another tenant still has its own.
    let other = Uuid::new_v4();
    let r = app
        .post_json("/v1/tenants", &tenant_body(other, "Comune di Altrove"))
        .await;
    assert_eq!(r.status(), 201);
    let op_here = client_with(Some(&token(Role::Operator, Some(DEMO_TENANT), "op")));
    let op_there = client_with(Some(&token(Role::Operator, Some(other), "op")));
    let here = |client: &reqwest::Client| {
        client
            .post(app.url("/v1/payments"))
            .json(&citizen_body("2.70"))
            .send()
    };
    assert_eq!(here(&op_here).await.unwrap().status(), 202);
    assert_eq!(here(&op_here).await.unwrap().status(), 429);
    // Not its tenant's payment (403), but past the limiter: a bucket of its own.
    assert_eq!(here(&op_there).await.unwrap().status(), 403);
}
