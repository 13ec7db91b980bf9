//! Authorisation: a table of role × own/other tenant × route → status over real HTTP,
//! checked against the OpenAPI document so a new route without a row fails; tokens
//! that must be refused; the per-caller create limit.

use std::time::Duration;

use cassa::auth::Role;
use cassa::seed::{DEMO_ACCOUNT, DEMO_CITIZEN, DEMO_SERVICE, DEMO_TENANT};
use cassa::store::Account;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// The callers of the matrix, in the order of each row's expectations.
const CALLERS: [&str; 5] = ["anonymous", "admin", "operator", "citizen", "system"];

struct Row {
    method: Method,
    /// The route as the OpenAPI document names it.
    route: &'static str,
    path: String,
    body: Option<Box<dyn Fn() -> Value>>,
    /// anonymous, admin, operator (demo tenant), citizen (demo citizen), system.
    expect: [u16; 5],
}

fn row(method: Method, route: &'static str, path: String, expect: [u16; 5]) -> Row {
    Row {
        method,
        route,
        path,
        body: None,
        expect,
    }
}

fn with_body(mut row: Row, body: impl Fn() -> Value + 'static) -> Row {
    row.body = Some(Box::new(body));
    row
}

fn tenant_body(id: Uuid, name: &str) -> Value {
    json!({"id": id, "name": name, "tax_identification_number": "02438750586"})
}

fn service_body(id: Uuid, tenant: Uuid, sim: &str) -> Value {
    json!({
        "id": id, "tenant_id": tenant, "payment_type": "PAGOPA", "reason": "Mensa scolastica",
        "receiver": {"tax_identification_number": "02438750586", "name": "Comune di Altrove"},
        "collection_data": "9/0101108TS/",
        "intermediary": {"kind": "simulator", "url": sim}
    })
}

async fn expect_status(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A service's document as a PUT body (what GET shows, without the timestamps).
async fn put_body_of(app: &TestApp, id: Uuid) -> Value {
    let mut doc = expect_status(app.get(&format!("/v1/services/{id}")).await, 200).await;
    let map = doc.as_object_mut().unwrap();
    map.remove("created_at");
    map.remove("updated_at");
    doc
}

#[actix_rt::test]
async fn every_route_answers_each_role_and_tenant_as_the_matrix_says() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let sim = app.sim.base.clone();
    let admin = admin_client();
    let citizen = client_with(Some(&citizen_token()));

    // Another tenant with its own service; spare tenants and services to delete.
    let other_tenant = Uuid::new_v4();
    let spare_tenant = Uuid::new_v4();
    for (id, name) in [
        (other_tenant, "Comune di Altrove"),
        (spare_tenant, "Comune da togliere"),
    ] {
        expect_status(
            app.post_json("/v1/tenants", &tenant_body(id, name)).await,
            201,
        )
        .await;
    }
    let other_service = Uuid::new_v4();
    let spare_own_service = Uuid::new_v4();
    let spare_other_service = Uuid::new_v4();
    for (id, tenant) in [
        (other_service, other_tenant),
        (spare_own_service, DEMO_TENANT),
        (spare_other_service, other_tenant),
    ] {
        let r = app
            .post_json("/v1/services", &service_body(id, tenant, &sim))
            .await;
        expect_status(r, 201).await;
    }
    let other_account = Uuid::new_v4();
    app.store
        .ensure_account(&Account {
            id: other_account,
            owner_id: Uuid::new_v4(),
            currency: "EUR".into(),
            balance_cents: 1000,
            held_cents: 0,
        })
        .await
        .unwrap();

    // Payments: the citizen's own, another payer's in the same tenant, another tenant's.
    let other_tenant_body = move |amount: &str| {
        let mut body = pagopa_body(amount);
        body["tenant_id"] = json!(other_tenant);
        body["service_id"] = json!(other_service);
        body
    };
    let create = |client: reqwest::Client, body: Value| {
        let base = app.base.clone();
        async move {
            let r = client
                .post(format!("{base}/v1/payments"))
                .json(&body)
                .send()
                .await
                .unwrap();
            expect_status(r, 202).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let own = create(citizen.clone(), pagopa_body("3.00")).await;
    let cancel_own = create(citizen.clone(), pagopa_body("4.00")).await;
    let other_user = create(admin.clone(), pagopa_body("5.00")).await;
    let other = create(admin.clone(), other_tenant_body("6.00")).await;
    let cancel_other = create(admin.clone(), other_tenant_body("7.00")).await;
    for id in [&own, &cancel_own, &other_user, &other, &cancel_other] {
        app.wait_for(id, "PAYMENT_PENDING", 15).await;
    }
    let demo_service_doc = put_body_of(&app, DEMO_SERVICE).await;
    let other_service_doc = put_body_of(&app, other_service).await;

    use Method as M;
    let p = |id: &str, rest: &str| format!("/v1/payments/{id}{rest}");
    let rows = vec![
        // Public: health, the description, the citizen's links, the intermediary's push.
        row(M::GET, "/healthz", "/healthz".into(), [200; 5]),
        row(M::GET, "/readyz", "/readyz".into(), [200; 5]),
        row(M::GET, "/openapi.json", "/openapi.json".into(), [200; 5]),
        row(
            M::GET,
            "/v1/payments/{id}/online-payment",
            p(&own, "/online-payment"),
            [302; 5],
        ),
        row(
            M::GET,
            "/v1/payments/{id}/landing",
            p(&own, "/landing"),
            [302; 5],
        ),
        row(
            M::GET,
            "/v1/payments/{id}/notice",
            p(&own, "/notice"),
            [200; 5],
        ),
        row(
            M::GET,
            "/v1/payments/{id}/receipt",
            p(&own, "/receipt"),
            [409; 5],
        ),
        with_body(
            row(
                M::POST,
                "/v1/intermediaries/{name}/notify",
                format!("/v1/intermediaries/{DEMO_SERVICE}/notify"),
                // Unsigned: refused whoever sends it (tokens do not count).
                [401; 5],
            ),
            {
                let own = own.clone();
                move || json!({"iud": own})
            },
        ),
        // Operations.
        row(
            M::GET,
            "/metrics",
            "/metrics".into(),
            [401, 200, 403, 403, 200],
        ),
        // Payments.
        with_body(
            row(
                M::POST,
                "/v1/payments",
                "/v1/payments".into(),
                [401, 202, 202, 202, 202],
            ),
            || pagopa_body("8.00"),
        ),
        with_body(
            row(
                M::POST,
                "/v1/payments",
                "/v1/payments".into(),
                [401, 202, 403, 403, 202],
            ),
            move || other_tenant_body("9.00"),
        ),
        row(
            M::GET,
            "/v1/payments",
            "/v1/payments".into(),
            [401, 200, 200, 200, 200],
        ),
        row(
            M::GET,
            "/v1/payments",
            format!("/v1/payments?tenant_id={other_tenant}"),
            [401, 200, 403, 403, 200],
        ),
        row(
            M::GET,
            "/v1/payments/{id}",
            p(&own, ""),
            [401, 200, 200, 200, 200],
        ),
        row(
            M::GET,
            "/v1/payments/{id}",
            p(&other_user, ""),
            [401, 200, 200, 404, 200],
        ),
        row(
            M::GET,
            "/v1/payments/{id}",
            p(&other, ""),
            [401, 200, 404, 404, 200],
        ),
        row(
            M::POST,
            "/v1/payments/{id}/update",
            p(&own, "/update"),
            [401, 200, 200, 403, 200],
        ),
        row(
            M::POST,
            "/v1/payments/{id}/update",
            p(&other, "/update"),
            [401, 200, 404, 404, 200],
        ),
        row(
            M::POST,
            "/v1/payments/{id}/cancel",
            p(&cancel_own, "/cancel"),
            [401, 200, 200, 200, 403],
        ),
        row(
            M::POST,
            "/v1/payments/{id}/cancel",
            p(&cancel_other, "/cancel"),
            [401, 200, 404, 404, 403],
        ),
        // Wallets.
        row(
            M::GET,
            "/v1/accounts/{id}",
            format!("/v1/accounts/{DEMO_ACCOUNT}"),
            [401, 200, 403, 200, 403],
        ),
        row(
            M::GET,
            "/v1/accounts/{id}",
            format!("/v1/accounts/{other_account}"),
            [401, 200, 403, 404, 403],
        ),
        with_body(
            row(
                M::POST,
                "/v1/accounts/{id}/deposits",
                format!("/v1/accounts/{DEMO_ACCOUNT}/deposits"),
                [401, 200, 403, 200, 403],
            ),
            || json!({"amount": "1.00"}),
        ),
        with_body(
            row(
                M::POST,
                "/v1/accounts/{id}/deposits",
                format!("/v1/accounts/{other_account}/deposits"),
                [401, 200, 403, 404, 403],
            ),
            || json!({"amount": "1.00"}),
        ),
        // Tenants.
        row(
            M::GET,
            "/v1/tenants/schema",
            "/v1/tenants/schema".into(),
            [401, 200, 200, 403, 403],
        ),
        with_body(
            row(
                M::POST,
                "/v1/tenants",
                "/v1/tenants".into(),
                [401, 201, 403, 403, 403],
            ),
            || tenant_body(Uuid::new_v4(), "Comune nuovo"),
        ),
        row(
            M::GET,
            "/v1/tenants",
            "/v1/tenants".into(),
            [401, 200, 200, 403, 403],
        ),
        row(
            M::GET,
            "/v1/tenants/{id}",
            format!("/v1/tenants/{DEMO_TENANT}"),
            [401, 200, 200, 403, 403],
        ),
        row(
            M::GET,
            "/v1/tenants/{id}",
            format!("/v1/tenants/{other_tenant}"),
            [401, 200, 404, 403, 403],
        ),
        with_body(
            row(
                M::PUT,
                "/v1/tenants/{id}",
                format!("/v1/tenants/{DEMO_TENANT}"),
                [401, 200, 403, 403, 403],
            ),
            || json!({"name": "Comune di Demo", "tax_identification_number": "00743110157"}),
        ),
        with_body(
            row(
                M::PATCH,
                "/v1/tenants/{id}",
                format!("/v1/tenants/{other_tenant}"),
                [401, 200, 403, 403, 403],
            ),
            || json!({"name": "Comune di Altrove"}),
        ),
        row(
            M::DELETE,
            "/v1/tenants/{id}",
            format!("/v1/tenants/{spare_tenant}"),
            [401, 204, 403, 403, 403],
        ),
        // Services.
        row(
            M::GET,
            "/v1/services/schema",
            "/v1/services/schema".into(),
            [401, 200, 200, 403, 403],
        ),
        with_body(
            row(
                M::POST,
                "/v1/services",
                "/v1/services".into(),
                [401, 201, 201, 403, 403],
            ),
            {
                let sim = sim.clone();
                move || service_body(Uuid::new_v4(), DEMO_TENANT, &sim)
            },
        ),
        with_body(
            row(
                M::POST,
                "/v1/services",
                "/v1/services".into(),
                [401, 201, 403, 403, 403],
            ),
            {
                let sim = sim.clone();
                move || service_body(Uuid::new_v4(), other_tenant, &sim)
            },
        ),
        row(
            M::GET,
            "/v1/services",
            "/v1/services".into(),
            [401, 200, 200, 403, 403],
        ),
        row(
            M::GET,
            "/v1/services",
            format!("/v1/services?tenant_id={other_tenant}"),
            [401, 200, 403, 403, 403],
        ),
        row(
            M::GET,
            "/v1/services/{id}",
            format!("/v1/services/{DEMO_SERVICE}"),
            [401, 200, 200, 403, 403],
        ),
        row(
            M::GET,
            "/v1/services/{id}",
            format!("/v1/services/{other_service}"),
            [401, 200, 404, 403, 403],
        ),
        with_body(
            row(
                M::PUT,
                "/v1/services/{id}",
                format!("/v1/services/{DEMO_SERVICE}"),
                [401, 200, 200, 403, 403],
            ),
            move || demo_service_doc.clone(),
        ),
        with_body(
            row(
                M::PUT,
                "/v1/services/{id}",
                format!("/v1/services/{other_service}"),
                [401, 200, 404, 403, 403],
            ),
            move || other_service_doc.clone(),
        ),
        with_body(
            row(
                M::PATCH,
                "/v1/services/{id}",
                format!("/v1/services/{DEMO_SERVICE}"),
                [401, 200, 200, 403, 403],
            ),
            || json!({"reason": "Servizi comunali (demo)"}),
        ),
        with_body(
            row(
                M::PATCH,
                "/v1/services/{id}",
                format!("/v1/services/{other_service}"),
                [401, 200, 404, 403, 403],
            ),
            || json!({"reason": "Mensa scolastica"}),
        ),
        row(
            M::DELETE,
            "/v1/services/{id}",
            format!("/v1/services/{spare_own_service}"),
            [401, 204, 204, 403, 403],
        ),
        row(
            M::DELETE,
            "/v1/services/{id}",
            format!("/v1/services/{spare_other_service}"),
            [401, 204, 404, 403, 403],
        ),
    ];

    // Every route of the API (the simulator's aside) has at least one row.
    let openapi: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    for (route, operations) in openapi["paths"].as_object().unwrap() {
        if route.starts_with("/sim") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            if method == "parameters" {
                continue;
            }
            assert!(
                rows.iter()
                    .any(|r| r.route == route && r.method.as_str().eq_ignore_ascii_case(method)),
                "the matrix has no row for {} {route}",
                method.to_uppercase()
            );
        }
    }

    let clients = [
        client_with(None),
        admin,
        client_with(Some(&token(Role::Operator, Some(DEMO_TENANT), "op-demo"))),
        citizen,
        client_with(Some(&token(Role::System, None, "platform"))),
    ];
    let mut wrong = Vec::new();
    for row in &rows {
        for (who, (client, expected)) in CALLERS.iter().zip(clients.iter().zip(row.expect)) {
            let mut request = client.request(row.method.clone(), app.url(&row.path));
            if let Some(body) = &row.body {
                request = request.json(&body());
            }
            let response = request.send().await.unwrap();
            let got = response.status().as_u16();
            if got != expected {
                let text = response.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{} {} as {who}: expected {expected}, got {got}: {text}",
                    row.method, row.path
                ));
            } else if got == 401 {
                assert!(response.headers().contains_key("www-authenticate"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // Lists are narrowed to the caller's scope.
    let listed = |client: reqwest::Client, path: &'static str| {
        let url = app.url(path);
        async move {
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            page["items"].as_array().unwrap().clone()
        }
    };
    let operator = clients[2].clone();
    let items = listed(operator.clone(), "/v1/payments?limit=500").await;
    assert!(!items.is_empty());
    assert!(items.iter().all(|p| p["tenant_id"] == json!(DEMO_TENANT)));
    let items = listed(clients[3].clone(), "/v1/payments?limit=500").await;
    assert!(items.iter().any(|p| p["id"] == json!(own)));
    assert!(items.iter().all(|p| p["user_id"] == json!(DEMO_CITIZEN)));
    let items = listed(operator.clone(), "/v1/tenants").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], json!(DEMO_TENANT));
    let items = listed(operator, "/v1/services").await;
    assert!(items.len() >= 2);
    assert!(items.iter().all(|s| s["tenant_id"] == json!(DEMO_TENANT)));
    let all = listed(clients[1].clone(), "/v1/tenants").await;
    assert!(all.len() >= 3);
}

fn claims(role: &str, exp_in: i64) -> Value {
    json!({"sub": "platform", "role": role, "exp": chrono::Utc::now().timestamp() + exp_in})
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

#[actix_rt::test]
async fn tokens_that_are_expired_unsigned_forged_or_confused_are_refused() {
    let public_pem = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt-rs256-public.pem"
    );
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.keys.jwt_public_key = Some(public_pem.to_string()),
        Default::default(),
    )
    .await;
    let hs = EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes());
    let private =
        EncodingKey::from_rsa_pem(include_bytes!("../fixtures/jwt-rs256-private.pem")).unwrap();
    let public_text = std::fs::read(public_pem).unwrap();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good = sign(Algorithm::HS256, &hs, &claims("system", 60));
    let mut tampered = good.clone();
    tampered.replace_range(good.len() - 4.., "AAAA");
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "missing bearer token"),
        (
            "another scheme",
            Some(format!("Basic {}", b64(&json!("a:b")))),
            "missing bearer token",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &hs, &claims("system", -3600))
            )),
            "expired",
        ),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &EncodingKey::from_secret(b"not-the-secret-at-all"),
                    &claims("system", 60)
                )
            )),
            "signature",
        ),
        (
            "tampered signature",
            Some(format!("Bearer {tampered}")),
            "invalid token",
        ),
        (
            "unsigned",
            Some(format!("Bearer {}.", good.rsplit_once('.').unwrap().0)),
            "invalid token",
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims("admin", 60))
            )),
            "invalid token",
        ),
        (
            "HS256 keyed with the RSA public key",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &EncodingKey::from_secret(&public_text),
                    &claims("admin", 60)
                )
            )),
            "signature",
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &hs, &json!({"sub": "x", "role": "admin"}))
            )),
            "exp",
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, &hs, &claims("root", 60))
            )),
            "invalid token",
        ),
        ("garbage", Some("Bearer not-a-jwt".into()), "invalid token"),
    ];
    let client = client_with(None);
    for (what, header, detail) in refused {
        let mut request = client.get(app.url("/v1/payments"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{what}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:cassa:problem:unauthorized", "{what}");
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{what}: {problem}"
        );
    }
    // The same keys accept good tokens of both algorithms.
    for good in [
        good,
        sign(Algorithm::RS256, &private, &claims("system", 60)),
    ] {
        let r = client
            .get(app.url("/v1/payments"))
            .bearer_auth(good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[actix_rt::test]
async fn creating_beyond_the_per_caller_rate_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.create_rate_limit = 1,
        Default::default(),
    )
    .await;
    let citizen = client_with(Some(&citizen_token()));
    let post = |client: &reqwest::Client| {
        client
            .post(app.url("/v1/payments"))
            .json(&pagopa_body("2.50"))
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = post(&citizen).await.unwrap().status();
        if status == 202 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "never let through again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the matrix cannot show: objects that must not cross callers — wallets,
/// idempotency keys, remote ids, a service moved to another tenant — and a 404 that says
/// the same whether the object is another tenant's or does not exist.
#[actix_rt::test]
async fn wallets_keys_remote_ids_and_services_do_not_cross_callers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let citizen = client_with(Some(&citizen_token()));
    let neighbour = client_with(Some(&token(
        Role::Citizen,
        Some(DEMO_TENANT),
        &Uuid::new_v4().to_string(),
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
    let mut wallet = pagopa_body("2.00");
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
    assert_eq!(
        post(&system, &for_the_owner, None).await.unwrap().status(),
        202
    );
    assert_eq!(post(&citizen, &wallet, None).await.unwrap().status(), 202);
    let r = post(&neighbour, &for_the_owner, None).await.unwrap();
    assert_eq!(r.status(), 400, "a citizen pays for themselves only");

    // The same Idempotency-Key and body from two callers: two payments, no replay.
    let body = pagopa_body("2.10");
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
    let mut claimed = pagopa_body("2.20");
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
    // A platform scoped to another tenant clashing on the remote_id learns nothing.
    let elsewhere = client_with(Some(&token(
        Role::System,
        Some(other_tenant),
        "other-platform",
    )));
    let mut clash = claimed.clone();
    clash["tenant_id"] = json!(other_tenant);
    clash["service_id"] = json!(other_service);
    let r = post(&elsewhere, &clash, None).await.unwrap();
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&first_id), "{text}");
    let mut theirs = pagopa_body("2.30");
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
