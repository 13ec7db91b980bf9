//! The PAGOPA life of a payment over HTTP, on both databases: create, position at the
//! intermediary, checkout, pay, COMPLETE; polling alone; cancel with compensation;
//! expiry; the list view with filters and cursor pagination.

use std::time::Duration;

use cassa::server::Overrides;

use serde_json::{json, Value};

use crate::helpers::*;

async fn pagopa_round_trip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.post_json("/v1/payments", &pagopa_body("12.34")).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/payments/{id}"));
    assert_eq!(created["status"], "CREATION_PENDING");
    assert_eq!(created["payment"]["amount"], json!(12.34));
    assert_eq!(created["payment"]["iud"], id.replace('-', ""));

    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    let iuv = pending["payment"]["iuv"].as_str().unwrap().to_string();
    assert_eq!(
        pending["payment"]["notice_code"].as_str().unwrap().len(),
        18
    );
    assert!(pending["links"]["update"]["next_check_at"].is_string());

    // The printable notice (what it carries: notice.rs).
    let notice = app.get(&format!("/v1/payments/{id}/notice")).await;
    assert_eq!(notice.status(), 200);
    assert_eq!(notice.headers()["content-type"], "application/pdf");
    assert!(notice.bytes().await.unwrap().starts_with(b"%PDF-"));

    // The citizen opens the online payment: 302 to the checkout, PAYMENT_STARTED.
    let r = app.get(&format!("/v1/payments/{id}/online-payment")).await;
    assert_eq!(r.status(), 302);
    let checkout = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        checkout.starts_with(&app.sim.base) && checkout.ends_with(&iuv),
        "{checkout}"
    );
    let started = app.get_payment(&id).await;
    assert_eq!(started["status"], "PAYMENT_STARTED");
    assert!(started["links"]["online_payment_begin"]["last_opened_at"].is_string());

    // No receipt before the payment is complete.
    let r = app.get(&format!("/v1/payments/{id}/receipt")).await;
    assert_eq!(r.status(), 409);

    app.sim.pay(&iuv).await;
    let r = app.post(&format!("/v1/payments/{id}/update")).await;
    let status = r.status();
    let done: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "COMPLETE", "{done}");
    assert!(done["payment"]["paid_at"].is_string());
    assert!(done["payment"]["transaction_id"].is_string());
    let receipt: Value = app
        .get_accepting(&format!("/v1/payments/{id}/receipt"), "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["transaction_id"], done["payment"]["transaction_id"]);

    // Every state change wrote one outbox event, each with its own event_id.
    let events = app.events(&id).await;
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "CREATION_PENDING",
            "PAYMENT_PENDING",
            "PAYMENT_STARTED",
            "COMPLETE"
        ]
    );
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert!(events.iter().all(
        |e| e["event_version"] == "2.0" && e["app_id"].as_str().unwrap().starts_with("cassa:")
    ));

    let stats = app.sim.stats().await;
    assert_eq!(stats.positions_created, 1);
    assert_eq!(stats.duplicate_creates, 0);
}

on_both_databases!(pagopa_round_trip);

#[actix_rt::test]
async fn a_payment_paid_at_the_intermediary_is_found_by_polling_alone() {
    let app = TestApp::spawn_polling_only(Backend::Sqlite).await;
    let id = app.create(&pagopa_body("7.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    let done = app.wait_for(&id, "COMPLETE", 10).await;
    assert!(done["links"]["update"]["last_check_at"].is_string());
    assert!(done["links"]["update"]["next_check_at"].is_null());
}

#[actix_rt::test]
async fn the_intermediary_push_alone_completes_a_payment() {
    // Hourly polls: only the simulator's "paid" push can finish it within the test.
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.actors.poll_schedule = "*:1h".parse().unwrap(),
        cassa::server::Overrides::default(),
    )
    .await;
    let id = app.create(&pagopa_body("8.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    app.wait_for(&id, "COMPLETE", 10).await;
}

/// Issue 25 point 8: 300 pushes that are unsigned, wrongly signed or for a name that is
/// not a configured intermediary are all refused alike (401) and make no intermediary
/// call; signed pushes answer 202 whether the payment exists or not, and a burst of them
/// makes one check.
#[actix_rt::test]
async fn only_signed_pushes_trigger_checks_and_at_most_one_per_few_seconds() {
    let (app, id, pending) = quiet_pending_payment("8.00").await;
    let calls_before = app.sim.stats().await.status_calls;
    let push = |name: String, body: String, signature: Option<String>| {
        let mut request = reqwest::Client::new()
            .post(app.url(&format!("/v1/intermediaries/{name}/notify")))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Cassa-Signature", signature);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let service = cassa::seed::DEMO_SERVICE.to_string();
    let known = json!({"iud": id}).to_string();
    let unknown = json!({"iud": uuid::Uuid::new_v4()}).to_string();
    let sign = |body: &str| cassa::intermediary::sign_push(TEST_PUSH_SECRET, body.as_bytes());
    let mut answers = std::collections::HashSet::new();
    for i in 0..300 {
        let body = if i % 2 == 0 { &known } else { &unknown };
        let (status, text) = match i % 5 {
            0 => push("anything".into(), body.clone(), None).await,
            1 => push(service.clone(), body.clone(), None).await,
            2 => push(service.clone(), body.clone(), Some(sign("another body"))).await,
            3 => {
                let wrong = cassa::intermediary::sign_push("not the secret", body.as_bytes());
                push(service.clone(), body.clone(), Some(wrong)).await
            }
            // Signed, but for another name.
            _ => {
                push(
                    uuid::Uuid::new_v4().to_string(),
                    body.clone(),
                    Some(sign(body)),
                )
                .await
            }
        };
        assert_eq!(status, 401, "{text}");
        answers.insert(text);
    }
    assert_eq!(
        answers.len(),
        1,
        "one answer for every refusal: {answers:?}"
    );
    assert_eq!(
        app.sim.stats().await.status_calls,
        calls_before,
        "no intermediary call"
    );
    assert_eq!(app.get_payment(&id).await["status"], "PAYMENT_PENDING");

    // Signed: the same answer for a payment that exists and one that does not.
    let (status, for_unknown) = push(service.clone(), unknown.clone(), Some(sign(&unknown))).await;
    assert_eq!(status, 202);
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    for _ in 0..20 {
        let (status, text) = push(service.clone(), known.clone(), Some(sign(&known))).await;
        assert_eq!((status, &text), (202, &for_unknown));
    }
    app.wait_for(&id, "COMPLETE", 10).await;
    assert_eq!(
        app.sim.stats().await.status_calls - calls_before,
        1,
        "twenty pushes, one check"
    );
}

#[actix_rt::test]
async fn transient_intermediary_errors_are_retried_until_created() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // .03: the simulator answers 503 twice, then creates.
    let id = app.create(&pagopa_body("9.03")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    assert_eq!(app.sim.stats().await.positions_created, 1);
}

#[actix_rt::test]
async fn cancel_runs_the_compensation_and_is_idempotent() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create(&pagopa_body("12.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    let iuv = pending["payment"]["iuv"].as_str().unwrap();

    let r = app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(r.status(), 200);
    let canceled: Value = r.json().await.unwrap();
    assert_eq!(canceled["status"], "CANCELED");
    assert_eq!(
        app.sim.position(iuv).await["status"],
        "CANCELED",
        "the debt position was cancelled"
    );

    let again = app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(again.status(), 200);
    let checkout = app.get(&format!("/v1/payments/{id}/online-payment")).await;
    assert_eq!(checkout.status(), 409);
    let events = app.events(&id).await;
    assert_eq!(events.last().unwrap()["status"], "CANCELED");
    assert_eq!(
        events.iter().filter(|e| e["status"] == "CANCELED").count(),
        1
    );
}

#[actix_rt::test]
async fn cancelling_a_paid_position_records_the_payment_instead() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create(&pagopa_body("12.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    let r = app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(r.status(), 409, "a paid payment cannot be cancelled");
    assert_eq!(app.get_payment(&id).await["status"], "COMPLETE");
}

#[actix_rt::test]
async fn an_unpaid_payment_expires_and_its_position_is_cancelled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut body = pagopa_body("3.00");
    let expire_at = (chrono::Utc::now() + chrono::Duration::seconds(8)).to_rfc3339();
    body["payment"]["expire_at"] = json!(expire_at);
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    let expired = app.wait_for(&id, "EXPIRED", 15).await;
    assert_eq!(expired["status_message"], "expired unpaid");
    let iuv = pending["payment"]["iuv"].as_str().unwrap();
    assert_eq!(app.sim.position(iuv).await["status"], "CANCELED");
}

/// A cassa whose intermediary never pushes and that polls hourly (only what a test
/// triggers checks a payment), with a PAGOPA payment of `amount` already PAYMENT_PENDING:
/// the app, the payment's id and the payment.
async fn quiet_pending_payment(amount: &str) -> (TestApp, String, Value) {
    let app = TestApp::spawn_full(
        Backend::Sqlite,
        |s| s.actors.poll_schedule = "*:1h".parse().unwrap(),
        cassa::server::Overrides::default(),
        false,
    )
    .await;
    let id = app.create(&pagopa_body(amount)).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    (app, id, pending)
}

#[actix_rt::test]
async fn landing_redirects_to_the_platform_and_checks() {
    // No push and hourly polls: only the citizen's return can trigger the check.
    let (app, id, pending) = quiet_pending_payment("4.00").await;
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    let before = app.sim.stats().await.status_calls;
    let r = app.get(&format!("/v1/payments/{id}/landing")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://platform.example/landing");
    app.wait_for(&id, "COMPLETE", 5).await;
    assert!(app.sim.stats().await.status_calls > before);
}

/// Issue 25 point 7: 25 rounds of `/online-payment` + `/landing` by anyone holding the
/// links. The checkout opened again writes nothing, the landing never moves
/// PAYMENT_STARTED back (the citizen is at the checkout: no cancel sneaks in), both are
/// rate-limited per payment (429), and the landings trigger at most one check per few
/// seconds: one status event in all, a couple of intermediary calls.
#[actix_rt::test]
async fn reopening_the_checkout_and_landing_write_nothing_new() {
    let (app, id, _) = quiet_pending_payment("4.00").await;
    let events_before = app.events(&id).await.len();
    let calls_before = app.sim.stats().await.status_calls;
    let (mut redirects, mut limited) = (0, 0);
    for _ in 0..25 {
        for link in ["online-payment", "landing"] {
            match app
                .get(&format!("/v1/payments/{id}/{link}"))
                .await
                .status()
                .as_u16()
            {
                302 => redirects += 1,
                429 => limited += 1,
                other => panic!("{link}: {other}"),
            }
        }
    }
    assert!(
        redirects >= 2 && limited > 0,
        "{redirects} 302, {limited} 429"
    );
    let events = app.events(&id).await;
    let new: Vec<&str> = events[events_before..]
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(new, ["PAYMENT_STARTED"]);
    assert_eq!(app.get_payment(&id).await["status"], "PAYMENT_STARTED");
    let calls = app.sim.stats().await.status_calls - calls_before;
    assert!(calls <= 2, "{calls} intermediary calls");
}

async fn list_filters_and_paginates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = pagopa_body(&format!("{}.00", i + 1));
        body["remote_id"] = json!(uuid::Uuid::new_v4());
        ids.push(app.create(&body).await["id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut url = app.url("/v1/payments?limit=2");
    loop {
        let page: Value = app
            .client
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => url = app.url(&format!("/v1/payments?limit=2&cursor={cursor}")),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "every payment exactly once across pages");

    let remote = app.get_payment(&ids[2]).await["remote_id"]
        .as_str()
        .unwrap()
        .to_string();
    let page: Value = app
        .get(&format!("/v1/payments?remote_id={remote}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], ids[2].as_str());

    let page: Value = app
        .get("/v1/payments?status=COMPLETE")
        .await
        .json()
        .await
        .unwrap();
    assert!(page["items"].as_array().unwrap().is_empty());
    let page: Value = app
        .get("/v1/payments?status=open&limit=500")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 5);

    for bad in [
        "limit=501",
        "limit=0",
        "status=PAID",
        "cursor=zzz",
        "tenant_id=1",
        "colour=red",
    ] {
        let r = app.get(&format!("/v1/payments?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

on_both_databases!(list_filters_and_paginates);

/// Why a payment is stuck: while its intermediary cannot be reached, its history shows
/// the failed attempts, the last error and when it is tried again.
#[actix_rt::test]
async fn the_history_of_a_stuck_payment_says_why() {
    // Nothing listens on the discard port: every call to the intermediary fails.
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.intermediaries.simulator_url = Some("http://127.0.0.1:9/sim".into()),
        Overrides::default(),
    )
    .await;
    let id = app.create_id(&pagopa_body("9.00")).await;
    let path = format!("/v1/payments/{id}/events");
    let stuck = eventually(
        "a failed attempt in the history",
        Duration::from_secs(20),
        || async {
            let history: Value = app.get(&path).await.json().await.unwrap();
            (history["saga"]["attempts"].as_u64() >= Some(1)).then_some(history)
        },
    )
    .await;
    assert_eq!(stuck["status"], "CREATION_PENDING", "{stuck}");
    assert!(stuck["saga"]["last_error"].is_string(), "{stuck}");
    assert!(
        stuck["next_check_at"].is_string(),
        "the retry is timed: {stuck}"
    );
    let listed: Vec<&Value> = stuck["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["status"])
        .collect();
    assert_eq!(listed, [&json!("CREATION_PENDING")]);
}

/// A payment's history lists every state change, oldest first, as its outbox events
/// recorded them, and a saga that succeeded carries no error.
#[actix_rt::test]
async fn the_history_lists_every_state_change_in_order() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // No notify links: nothing is left to tell a platform once it is COMPLETE.
    let id = app.create_id(&citizen_body("9.00")).await;
    app.pay_and_check(&id).await;

    let history: Value = app
        .get(&format!("/v1/payments/{id}/events"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history["status"], "COMPLETE", "{history}");
    assert_eq!(history["saga"]["attempts"], 0, "{history}");
    assert!(history["saga"]["last_error"].is_null(), "{history}");
    let events = history["events"].as_array().unwrap();
    let listed: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["CREATION_PENDING", "PAYMENT_PENDING", "COMPLETE"]);
    let stored = app.events(&id).await;
    assert_eq!(
        events.iter().map(|e| &e["event_id"]).collect::<Vec<_>>(),
        stored.iter().map(|e| &e["event_id"]).collect::<Vec<_>>()
    );
}
