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
            tenant_id: Some(other_tenant),
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
    let own = create(citizen.clone(), citizen_body("3.00")).await;
    let cancel_own = create(citizen.clone(), citizen_body("4.00")).await;
    let other_user = create(admin.clone(), pagopa_body("5.00")).await;
    let other = create(admin.clone(), other_tenant_body("6.00")).await;
    let cancel_other = create(admin.clone(), other_tenant_body("7.00")).await;
    // A fine the operator put in the citizen's name: visible to them, not theirs to cancel.
    let operator = client_with(Some(&token(Role::Operator, Some(DEMO_TENANT), "op-demo")));
    let mut fine_body = pagopa_body("8.00");
    fine_body["user_id"] = json!(DEMO_CITIZEN);
    let fine = create(operator, fine_body).await;
    for id in [&own, &cancel_own, &other_user, &other, &cancel_other, &fine] {
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
        // The citizen's own payment has no landing (its service names none): cassa's page.
        row(
            M::GET,
            "/v1/payments/{id}/landing",
            p(&own, "/landing"),
            [200; 5],
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
            || citizen_body("8.00"),
        ),
        // Links (URLs cassa calls or sends the citizen to): Caller::may_set_links.
        with_body(
            row(
                M::POST,
                "/v1/payments",
                "/v1/payments".into(),
                [401, 202, 202, 400, 202],
            ),
            || pagopa_body("8.10"),
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
        row(
            M::POST,
            "/v1/payments/{id}/cancel",
            p(&fine, "/cancel"),
            [401, 200, 200, 403, 403],
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
        row(
            M::GET,
            "/v1/accounts/{id}/movements",
            format!("/v1/accounts/{DEMO_ACCOUNT}/movements"),
            [401, 200, 403, 200, 403],
        ),
        row(
            M::GET,
            "/v1/accounts/{id}/movements",
            format!("/v1/accounts/{other_account}/movements"),
            [401, 200, 403, 404, 403],
        ),
        // Deposits are the platform's (a missing Idempotency-Key is the 400 past the
        // role check); a citizen tops up by paying, the owner only.
        with_body(
            row(
                M::POST,
                "/v1/accounts/{id}/deposits",
                format!("/v1/accounts/{DEMO_ACCOUNT}/deposits"),
                [401, 400, 403, 403, 400],
            ),
            || json!({"amount": "1.00", "reason": "Rimborso"}),
        ),
        with_body(
            row(
                M::POST,
                "/v1/accounts/{id}/deposits",
                format!("/v1/accounts/{other_account}/deposits"),
                [401, 400, 403, 403, 400],
            ),
            || json!({"amount": "1.00", "reason": "Rimborso"}),
        ),
        with_body(
            row(
                M::POST,
                "/v1/accounts/{id}/top-ups",
                format!("/v1/accounts/{DEMO_ACCOUNT}/top-ups"),
                [401, 403, 403, 202, 403],
            ),
            || json!({"amount": "1.00", "payer": json!({"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario"})}),
        ),
        with_body(
            row(
                M::POST,
                "/v1/accounts/{id}/top-ups",
                format!("/v1/accounts/{other_account}/top-ups"),
                [401, 403, 403, 404, 403],
            ),
            || json!({"amount": "1.00", "payer": json!({"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario"})}),
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
                // No id: cassa chooses it (only the admin may).
                move || {
                    let mut body = service_body(Uuid::new_v4(), DEMO_TENANT, &sim);
                    body.as_object_mut().unwrap().remove("id");
                    body
                }
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
        |s| s.security.keys.jwt_public_key = Some(public_pem.to_string()),
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
    // An admin token with these times.
    let now = chrono::Utc::now().timestamp();
    let timed = |times: Value| {
        let mut claims = json!({"sub": "x", "role": "admin"});
        claims
            .as_object_mut()
            .unwrap()
            .extend(times.as_object().unwrap().clone());
        Some(format!("Bearer {}", sign(Algorithm::HS256, &hs, &claims)))
    };
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
        // Issue 25 point 11: lifetimes beyond the maximum, tokens not valid yet.
        ("never expires", timed(json!({"exp": i64::MAX})), "maximum"),
        (
            "a week long",
            timed(json!({"iat": now, "exp": now + 7 * 86_400})),
            "maximum",
        ),
        (
            "not before the future",
            timed(json!({"nbf": now + 600, "exp": now + 900})),
            "not valid yet",
        ),
        (
            "issued in the future",
            timed(json!({"iat": now + 600, "exp": now + 900})),
            "not valid yet",
        ),
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
        let text = problem["detail"].as_str().unwrap();
        assert!(text.contains(detail), "{what}: {problem}");
        // cassa's own words, not the JWT or JSON parser's.
        for internal in [
            "variant", "expected", "line ", "column", "Base64", "Json", "Error(",
        ] {
            assert!(!text.contains(internal), "{what}: {problem}");
        }
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
