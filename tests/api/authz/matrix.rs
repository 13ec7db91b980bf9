//! The matrix: every route of the OpenAPI document × anonymous/admin/operator/citizen/
//! system × own/other tenant → the expected status; lists narrowed to the caller.

use cassa::auth::Role;
use cassa::seed::{DEMO_ACCOUNT, DEMO_CITIZEN, DEMO_SERVICE, DEMO_TENANT};
use cassa::store::Account;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{expect_status, put_body_of, service_body, tenant_body};
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
        // A payment's history: whoever may read it.
        row(
            M::GET,
            "/v1/payments/{id}/events",
            p(&own, "/events"),
            [401, 200, 200, 200, 200],
        ),
        row(
            M::GET,
            "/v1/payments/{id}/events",
            p(&other_user, "/events"),
            [401, 200, 200, 404, 200],
        ),
        row(
            M::GET,
            "/v1/payments/{id}/events",
            p(&other, "/events"),
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
    let openapi: Value = serde_json::from_str(include_str!("../../../openapi.json")).unwrap();
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
