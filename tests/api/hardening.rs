//! Issue 25's attacks by ordinary tokens, replayed over real HTTP: each must now fail
//! with the right status and leave nothing written, spent or cancelled. Storage-related
//! ones run on both databases.

use cassa::auth::Role;
use cassa::seed::{DEMO_SERVICE, DEMO_TENANT};
use serde_json::{json, Value};
use std::time::Duration;

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

/// A token of the demo tenant's operator.
fn demo_operator() -> String {
    token(Role::Operator, Some(DEMO_TENANT), "op-demo")
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

    let mut body_b = citizen_body("3.00");
    body_b["tenant_id"] = json!(tenant_b);
    body_b["service_id"] = json!(service_b);
    body_b["remote_id"] = json!(application);
    let (status, b) = post_payment(&app, &platform_b, &body_b).await;
    assert_eq!(status, 202, "{b}");

    let mut body_a = citizen_body("4.00");
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

on_both_databases!(another_tenant_cannot_take_an_application_id);

/// Point 6 over Kafka: tenant B's payment for application id X does not make the
/// dispatcher take tenant A's application X as already dispatched; A gets its payment.
#[actix_rt::test]
async fn another_tenants_application_id_does_not_swallow_an_application_from_kafka() {
    use crate::kafka::{application, payments_of, produce};

    let (app, topics) = TestApp::spawn_on(Backend::Sqlite, Broker::Embedded).await;
    let (tenant_b, service_b) = other_tenant(&app).await;
    let id = Uuid::new_v4();
    let mut body_b = citizen_body("3.00");
    body_b["tenant_id"] = json!(tenant_b);
    body_b["service_id"] = json!(service_b);
    body_b["remote_id"] = json!(id);
    let platform_b = token(Role::System, Some(tenant_b), "platform-b");
    let (status, b) = post_payment(&app, &platform_b, &body_b).await;
    assert_eq!(status, 202, "{b}");

    let event = application(id, json!(16.5)).to_string();
    produce(
        app.kafka.bootstrap(),
        &topics.applications,
        "a",
        event.as_bytes(),
    )
    .await;
    eventually(
        "a payment for tenant A's application",
        Duration::from_secs(15),
        || async { payments_of(&app, id).await.len() >= 2 },
    )
    .await;
    let payments = payments_of(&app, id).await;
    let a = payments
        .iter()
        .find(|p| p["tenant_id"] == json!(DEMO_TENANT))
        .unwrap();
    assert_eq!(a["payment"]["amount"], json!(16.5));
}

/// Point 4: an operator's 250.00 fine in the citizen's name cannot be cancelled by the
/// citizen (403, still pending, the debt position still open); the citizen cancels what
/// they created. Who created each is kept with the payment (and in its events).
async fn a_debtor_cannot_cancel_the_municipalitys_fine(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operator = demo_operator();
    let citizen = citizen_token();
    let mut fine = citizen_body("250.00");
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
    let (status, own) = post_payment(&app, &citizen, &citizen_body("3.00")).await;
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

on_both_databases!(a_debtor_cannot_cancel_the_municipalitys_fine);

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
    let mut fine = citizen_body("487.00");
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
    let operator = demo_operator();
    let (status, by_operator) = post_payment(&app, &operator, &with_debtor).await;
    assert_eq!(status, 202, "{by_operator}");
    assert_eq!(payment_count(&app).await, 2);
}

on_both_databases!(a_citizen_cannot_create_debts_in_anyones_name);

/// Writes `document` (plain JSON text, which the store reads as it reads packed text)
/// as payment `id`'s stored document, behind cassa's back.
async fn overwrite_document(db_url: &str, backend: Backend, id: &str, document: &Value) {
    use sqlx::Connection;
    let id = Uuid::parse_str(id).unwrap();
    let text = document.to_string();
    // A new version too: an actor holding the row it read before fails to write over it.
    let sql = "UPDATE payments SET document = $1, version = version + 1 WHERE id = $2";
    let updated = match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
            let done = sqlx::query(sql)
                .bind(text)
                .bind(id)
                .execute(&mut conn)
                .await;
            done.unwrap().rows_affected()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
            let done = sqlx::query(sql)
                .bind(text.into_bytes())
                .bind(id)
                .execute(&mut conn)
                .await;
            done.unwrap().rows_affected()
        }
    };
    assert_eq!(updated, 1);
}

/// The ids of a listing's page, as `token` sees it at `query`, and its next cursor.
async fn page(app: &TestApp, token: &str, query: &str) -> (Vec<String>, Option<String>) {
    let r = client_with(Some(token))
        .get(app.url(&format!("/v1/payments{query}")))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {body}");
    let ids = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    (ids, body["next_cursor"].as_str().map(str::to_string))
}

/// Point 2: `expire_at` in year 10000 (Rome time) is refused naming the field; a row
/// that holds one anyway (written by SQL) is left out of every listing, which serves the
/// rest, is counted in `/metrics`, and its own `GET` is a 500 problem, not a crash.
async fn an_unreadable_timestamp_never_takes_a_listing_down(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let citizen = citizen_token();
    for expire_at in [
        "9999-12-31T23:30:00Z",
        "+10000-01-01T00:30:00+01:00",
        "2040-01-01T00:00:00+01:00",
    ] {
        let mut body = citizen_body("9.99");
        body["payment"]["expire_at"] = json!(expire_at);
        let (status, problem) = post_payment(&app, &citizen, &body).await;
        assert_eq!(status, 400, "{expire_at}: {problem}");
        assert_eq!(problem["field"], "payment.expire_at", "{problem}");
    }
    assert_eq!(payment_count(&app).await, 0, "nothing written");
    let mut in_nine_years = citizen_body("9.98");
    in_nine_years["payment"]["expire_at"] = json!(cassa::domain::time::format(
        &(chrono::Utc::now() + chrono::Duration::days(9 * 365))
    ));
    let (status, _) = post_payment(&app, &citizen, &in_nine_years).await;
    assert_eq!(status, 202, "within the window");

    // A row written in a form cassa cannot read, between readable ones.
    let (mut ids, _) = page(&app, &citizen, "").await;
    for amount in ["1.00", "2.00", "3.00"] {
        let (status, p) = post_payment(&app, &citizen, &citizen_body(amount)).await;
        assert_eq!(status, 202, "{p}");
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let bad = ids[2].clone();
    let mut document = app.wait_for(&bad, "PAYMENT_PENDING", 15).await;
    document["payment"]["expire_at"] = json!("+10000-01-01T00:30:00+01:00");
    overwrite_document(&app._db.url, backend, &bad, &document).await;

    let operator = demo_operator();
    let system = token(Role::System, None, "platform");
    let mut readable = ids.clone();
    readable.retain(|id| *id != bad);
    readable.sort();
    for (token, query) in [
        (&citizen, ""),
        (&operator, ""),
        (&admin_token(), ""),
        (&system, "?status=open"),
    ] {
        let (mut seen, _) = page(&app, token, query).await;
        seen.sort();
        assert_eq!(seen, readable, "{query}");
    }
    // Pages of two are full, and paging goes on past the bad row to every other one.
    let (mut seen, mut cursor) = page(&app, &citizen, "?limit=2").await;
    assert_eq!(seen.len(), 2);
    while let Some(next) = cursor {
        let (more, after) = page(&app, &citizen, &format!("?limit=2&cursor={next}")).await;
        seen.extend(more);
        cursor = after;
    }
    seen.sort();
    assert_eq!(seen, readable);
    let r = app.get(&format!("/v1/payments/{bad}")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cassa_unreadable_payments_total "))
        .unwrap();
    assert!(counted.parse::<u64>().unwrap() >= 1, "{counted}");
    // The rest is served as before.
    assert_eq!(app.get_payment(&ids[1]).await["type"], "PAGOPA");
}

on_both_databases!(an_unreadable_timestamp_never_takes_a_listing_down);

/// Point 2, after a restart: a `cassa` process started over a database holding an
/// unreadable row serves every listing without it, logs the row's id (for an operator
/// to repair) and counts it, and the row's actor does not fail in a loop: its retries
/// back off, so a few seconds bring a few warnings, not one a second.
async fn an_unreadable_row_is_reported_after_a_restart_and_the_rest_served(backend: Backend) {
    use crate::restart::{free_port, start_cassa, start_cassa_logging, wait_ready};
    let db = TestDatabase::new(backend).await;
    let sim = TestSimulator::start();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let citizen = client_with(Some(&citizen_token()));
    let first = start_cassa(&db.url, port, &sim.base);
    wait_ready(&citizen, &base).await;
    let mut ids = Vec::new();
    for amount in ["1.00", "2.00", "3.00"] {
        let (status, made) = send_json(
            &citizen,
            &format!("{base}/v1/payments"),
            &citizen_body(amount),
        )
        .await;
        assert_eq!(status, 202, "{made}");
        ids.push(made["id"].as_str().unwrap().to_string());
    }
    let mut documents = Vec::new();
    for id in &ids {
        documents.push(wait_for_status(&citizen, &base, id, "PAYMENT_PENDING", 20).await);
    }
    drop(first); // kill -9
    let bad = ids[1].clone();
    let mut document = documents[1].clone();
    document["payment"]["expire_at"] = json!("+10000-01-01T00:30:00+01:00");
    overwrite_document(&db.url, backend, &bad, &document).await;

    let log = tempfile::NamedTempFile::new().unwrap();
    let _second = start_cassa_logging(&db.url, port, &sim.base, log.path());
    wait_ready(&citizen, &base).await;
    let observed_from = std::time::Instant::now();
    let listing = get_json(&citizen, &format!("{base}/v1/payments")).await;
    let mut seen: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    seen.sort();
    let mut readable = vec![ids[0].as_str(), ids[2].as_str()];
    readable.sort();
    assert_eq!(seen, readable);
    let r = citizen
        .get(format!("{base}/v1/payments/{bad}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let metrics = admin_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cassa_unreadable_payments_total "))
        .unwrap();
    assert!(counted.parse::<u64>().unwrap() >= 1, "{counted}");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("a stored payment cannot be read") && l.contains(&bad)),
        "{text}"
    );
    // A window of observation: what is asserted is how often the bad row fails.
    let window = Duration::from_secs(6);
    tokio::time::sleep(window.saturating_sub(observed_from.elapsed())).await;
    let text = std::fs::read_to_string(log.path()).unwrap();
    let failures = text
        .lines()
        .filter(|l| l.contains("cannot read the payment"))
        .count();
    assert!(
        failures <= 4,
        "{failures} failures of the bad row in {window:?}, a loop:\n{text}"
    );
    // The readable payments are still served and followed.
    wait_for_status(&citizen, &base, &ids[2], "PAYMENT_PENDING", 20).await;
}

on_both_databases!(an_unreadable_row_is_reported_after_a_restart_and_the_rest_served);

/// Point 12: amounts with more than two decimals, even ones `f64` rounds to two; control
/// and bidirectional characters in free text; payer fields beyond pagoPA's lengths: each
/// a 400 naming the field, and nothing written or called.
async fn amounts_free_text_and_payer_lengths_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operator = demo_operator();
    let with = |pointer: &str, value: Value| {
        let mut body = citizen_body("12.34");
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[key] = value;
        body
    };
    // The number exactly as the attacker wrote it (a `Value` would print it as 12.34).
    let text = citizen_body("0")
        .to_string()
        .replace(r#""amount":"0""#, r#""amount":12.339999999999999"#);
    assert!(text.contains("12.339999999999999"));
    let r = client_with(Some(&operator))
        .post(app.url("/v1/payments"))
        .header("Content-Type", "application/json")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "payment.amount");
    let long_name = "M".repeat(71);
    let cases = [
        (with("/reason", json!("TARI\u{0} 2026")), "reason"),
        (with("/reason", json!("Rimborso \u{202E}00.052")), "reason"),
        (with("/reason", json!("TARI\n2026")), "reason"),
        (with("/payer/name", json!("Mario\u{2066}")), "payer.name"),
        (
            with("/payer/family_name", json!("Rossi\u{7}")),
            "payer.family_name",
        ),
        (with("/payer/name", json!(long_name)), "payer.name"),
        (with("/payer/name", json!("N".repeat(60_000))), "payer.name"),
        (
            // 40 + 1 + 40: each part fits, the full name does not.
            with("/payer", {
                let mut payer = citizen_body("1")["payer"].clone();
                payer["name"] = json!("M".repeat(40));
                payer["family_name"] = json!("R".repeat(40));
                payer
            }),
            "payer.name",
        ),
        (
            with("/payer/street_name", json!("S".repeat(71))),
            "payer.street_name",
        ),
        (
            with("/payer/postal_code", json!("0".repeat(17))),
            "payer.postal_code",
        ),
        (
            with("/payer/town_name", json!("T".repeat(36))),
            "payer.town_name",
        ),
        (with("/payer/country", json!("ITA")), "payer.country"),
    ];
    for (i, (body, field)) in cases.iter().enumerate() {
        let (status, problem) = post_payment(&app, &operator, body).await;
        assert_eq!(status, 400, "case {i}: {problem}");
        assert_eq!(problem["field"], *field, "case {i}: {problem}");
    }
    assert_eq!(payment_count(&app).await, 0, "nothing written");
    assert_eq!(app.sim.stats().await.positions_created, 0, "nothing called");
    // Accents, a euro sign and pagoPA's full lengths are fine.
    let mut fine = with("/payer/name", json!("Niccolò"));
    fine["payer"]["family_name"] = json!("R".repeat(70 - "Niccolò".chars().count() - 1));
    fine["reason"] = json!("Città di Forlì — mensa €");
    let (status, created) = post_payment(&app, &operator, &fine).await;
    assert_eq!(status, 202, "{created}");
}

on_both_databases!(amounts_free_text_and_payer_lengths_are_checked);

/// Point 12: an operator cannot learn whether a service id exists in another tenant:
/// a chosen id is refused alike whether it is free or taken there, and nothing changes.
async fn an_operator_cannot_probe_service_ids_of_other_tenants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (their_tenant, theirs) = other_tenant(&app).await;
    let operator = client_with(Some(&demo_operator()));
    let body = |id: Option<Uuid>| {
        let mut body = json!({
            "tenant_id": DEMO_TENANT, "payment_type": "PAGOPA", "reason": "Mensa scolastica",
            "receiver": {"tax_identification_number": "02438750586", "name": "Comune di Prova"},
            "collection_data": "9/0101108TS/",
            "intermediary": {"kind": "simulator", "url": app.sim.base}
        });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        body
    };
    let mut answers = Vec::new();
    for id in [theirs, Uuid::new_v4()] {
        let r = operator
            .post(app.url("/v1/services"))
            .json(&body(Some(id)))
            .send()
            .await
            .unwrap();
        answers.push((r.status().as_u16(), r.json::<Value>().await.unwrap()));
    }
    assert_eq!(answers[0].0, 400, "{:?}", answers[0]);
    assert_eq!(answers[0], answers[1], "the same answer either way");
    assert_eq!(answers[0].1["field"], "id");
    let theirs_now = app.get(&format!("/v1/services/{theirs}")).await;
    assert_eq!(
        theirs_now.json::<Value>().await.unwrap()["tenant_id"],
        json!(their_tenant),
        "their service is untouched"
    );
    // Without an id, cassa chooses one.
    let r = operator
        .post(app.url("/v1/services"))
        .json(&body(None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

on_both_databases!(an_operator_cannot_probe_service_ids_of_other_tenants);

/// Point 2, over Kafka: an application whose `expire_at` is year 9999 (10000 in Rome
/// time) is dead-lettered naming `payment.expire_at`; no payment is made for it.
async fn an_application_expiring_in_year_ten_thousand_is_dead_lettered(backend: Backend) {
    use crate::kafka::{application, produce, read_until, reader};
    let app = TestApp::spawn(backend).await;
    let bootstrap = app.kafka.bootstrap().to_string();
    let key = "applications-under-test";
    let far = Uuid::new_v4();
    let mut event = application(far, json!("5.00"));
    event["payment_data"]["expire_at"] = json!("9999-12-31T23:30:00Z");
    produce(
        &bootstrap,
        "applications",
        key,
        event.to_string().as_bytes(),
    )
    .await;
    let dead = read_until(&reader(&bootstrap, "cassa-dead-letter"), 20, |seen| {
        !seen.is_empty()
    })
    .await;
    let reason = dead[0]
        .2
        .iter()
        .find(|(k, _)| k == "cassa-reason")
        .unwrap()
        .1
        .clone();
    assert!(reason.contains("payment.expire_at"), "{reason}");
    let listed = app.get(&format!("/v1/payments?remote_id={far}")).await;
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["items"], json!([]), "no payment for it");
}

on_both_databases!(an_application_expiring_in_year_ten_thousand_is_dead_lettered);

/// Point 4, over Kafka: a foreign CREATION_PENDING event claiming that the demo citizen
/// created it is adopted as the platform's, so that citizen cannot cancel it (403).
async fn an_adopted_payment_is_never_its_citizens_to_cancel(backend: Backend) {
    use crate::kafka::{foreign_payment, produce};
    let app = TestApp::spawn(backend).await;
    let id = Uuid::new_v4();
    let mut event = foreign_payment(id, cassa::seed::DEMO_CITIZEN, "31.00");
    // The forged claim: the victim citizen made it, so may cancel it.
    event["created_by"] = json!({"role": "citizen", "sub": cassa::seed::DEMO_CITIZEN});
    let key = id.to_string();
    produce(
        app.kafka.bootstrap(),
        "payments",
        &key,
        event.to_string().as_bytes(),
    )
    .await;
    let adopted = app.wait_for(&key, "PAYMENT_PENDING", 20).await;
    assert_eq!(
        adopted["created_by"],
        json!({"role": "system", "sub": "kafka:adopted"})
    );
    let r = client_with(Some(&citizen_token()))
        .post(app.url(&format!("/v1/payments/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(app.get_payment(&key).await["status"], "PAYMENT_PENDING");
}

on_both_databases!(an_adopted_payment_is_never_its_citizens_to_cancel);
