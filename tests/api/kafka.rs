//! The Kafka bridge over the real protocol: applications → exactly one payment, dead
//! letters, events on `payments`, adoption of foreign payments, platform notifications,
//! a broker outage. Each test body runs twice: on librdkafka's mock cluster (embedded
//! per test) and on the shared Apache Kafka cluster (`TEST_KAFKA_BROKERS`, topics of
//! its own per test).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

pub async fn produce(bootstrap: &str, topic: &str, key: &str, payload: &[u8]) {
    producer(bootstrap)
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// A consumer reading every partition of `topic` from the beginning. It assigns the
/// partitions itself rather than joining a group: on a real cluster a new group's first
/// join costs seconds, and the test owns what it reads anyway.
pub fn reader(bootstrap: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

/// Reads records until `done` says so; fails after `seconds`.
pub async fn read_until(
    consumer: &StreamConsumer,
    seconds: u64,
    mut done: impl FnMut(&[(Option<String>, Vec<u8>, Vec<(String, String)>)]) -> bool,
) -> Vec<(Option<String>, Vec<u8>, Vec<(String, String)>)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            !left.is_zero(),
            "timed out after {seconds}s; read {} records",
            seen.len()
        );
        if let Ok(Ok(m)) = tokio::time::timeout(left, consumer.recv()).await {
            let key = m.key().map(|k| String::from_utf8_lossy(k).to_string());
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            seen.push((key, m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    seen
}

pub fn application(id: Uuid, amount: Value) -> Value {
    json!({
        "id": id,
        "event_id": Uuid::new_v4(),
        "event_version": "2.0",
        "tenant_id": cassa::seed::DEMO_TENANT,
        "service_id": cassa::seed::DEMO_SERVICE,
        "user": Uuid::new_v4(),
        "status_name": "status_payment_pending",
        "payment_data": {
            "amount": amount, "reason": "Occupazione suolo pubblico",
            "notify": {"url": "http://127.0.0.1:9/applications/notify", "method": "POST"},
            "landing": {"url": "http://platform.example/back", "method": "GET"}
        },
        "data": {
            "applicant.data.completename.data.name": "Mario",
            "applicant.data.completename.data.surname": "Rossi",
            "applicant.data.fiscal_code.data.fiscal_code": "RSSMRA80A01H501U",
            "applicant.data.email_address": "mario@example.org"
        }
    })
}

/// A CREATION_PENDING payment another system published on `payments` (for `user`).
pub fn foreign_payment(id: Uuid, user: Uuid, amount: &str) -> Value {
    let now = cassa::domain::time::format(&cassa::domain::time::now());
    let mut event = pagopa_body(amount);
    for (key, value) in [
        ("id", json!(id)),
        ("user_id", json!(user)),
        ("created_at", json!(now)),
        ("updated_at", json!(now)),
        ("status", json!("CREATION_PENDING")),
        ("event_id", json!(Uuid::new_v4())),
        ("event_version", json!("2.0")),
        ("event_created_at", json!(now)),
        ("app_id", json!("payment-dispatcher:1.4.0")),
        (
            "links",
            json!({"notify": [{"url": "http://127.0.0.1:9/n", "method": "POST", "sent_at": null}]}),
        ),
    ] {
        event[key] = value;
    }
    event["payment"]["iud"] = json!(id.simple().to_string());
    event
}

pub async fn payments_of(app: &TestApp, remote_id: Uuid) -> Vec<Value> {
    let page: Value = app
        .get(&format!("/v1/payments?remote_id={remote_id}"))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

pub async fn wait_for_payment_of(app: &TestApp, remote_id: Uuid) -> Value {
    let what = format!("a payment for application {remote_id}");
    eventually(&what, Duration::from_secs(20), || async {
        payments_of(app, remote_id).await.first().cloned()
    })
    .await
}

async fn applications_become_exactly_one_payment_and_bad_ones_are_dead_lettered(broker: Broker) {
    let (app, topics) = TestApp::spawn_on(Backend::Sqlite, broker).await;
    let bootstrap = app.kafka.bootstrap().to_string();
    // One key: every record lands on one partition, so they are handled in order.
    let key = "applications-under-test";
    let first = Uuid::new_v4();
    let event = application(first, json!(16.5));
    produce(
        &bootstrap,
        &topics.applications,
        key,
        event.to_string().as_bytes(),
    )
    .await;
    // Redelivered as is, and re-sent with a new event_id.
    produce(
        &bootstrap,
        &topics.applications,
        key,
        event.to_string().as_bytes(),
    )
    .await;
    let mut resent = event.clone();
    resent["event_id"] = json!(Uuid::new_v4());
    produce(
        &bootstrap,
        &topics.applications,
        key,
        resent.to_string().as_bytes(),
    )
    .await;
    // Garbage, schema-invalid, invalid field, unsupported version, another status.
    produce(&bootstrap, &topics.applications, key, b"{not json").await;
    let mut no_tax_code = application(Uuid::new_v4(), json!(5));
    no_tax_code["data"]
        .as_object_mut()
        .unwrap()
        .remove("applicant.data.fiscal_code.data.fiscal_code");
    produce(
        &bootstrap,
        &topics.applications,
        key,
        no_tax_code.to_string().as_bytes(),
    )
    .await;
    let three_decimals = application(Uuid::new_v4(), json!("1.234"));
    produce(
        &bootstrap,
        &topics.applications,
        key,
        three_decimals.to_string().as_bytes(),
    )
    .await;
    let old = Uuid::new_v4();
    let mut old_version = application(old, json!(5));
    old_version["event_version"] = json!(1);
    produce(
        &bootstrap,
        &topics.applications,
        key,
        old_version.to_string().as_bytes(),
    )
    .await;
    let draft = Uuid::new_v4();
    let mut not_pending = application(draft, json!(5));
    not_pending["status_name"] = json!("status_draft");
    produce(
        &bootstrap,
        &topics.applications,
        key,
        not_pending.to_string().as_bytes(),
    )
    .await;
    // The platform's links are checked against the outbound policy too (issue 23).
    let mut off_the_list = application(Uuid::new_v4(), json!(5));
    off_the_list["payment_data"]["notify"]["url"] = json!("https://127.0.0.2:9/notify");
    produce(
        &bootstrap,
        &topics.applications,
        key,
        off_the_list.to_string().as_bytes(),
    )
    .await;
    // The next good event is still processed.
    let last = Uuid::new_v4();
    produce(
        &bootstrap,
        &topics.applications,
        key,
        application(last, json!("7.25")).to_string().as_bytes(),
    )
    .await;

    let later = wait_for_payment_of(&app, last).await;
    assert_eq!(later["payment"]["amount"], json!(7.25));
    let payments = payments_of(&app, first).await;
    assert_eq!(
        payments.len(),
        1,
        "one payment per application however often it is sent"
    );
    let payment = &payments[0];
    assert_eq!(payment["payer"]["family_name"], "Rossi");
    assert_eq!(
        payment["links"]["notify"][0]["url"],
        "http://127.0.0.1:9/applications/notify"
    );
    assert_eq!(
        payment["links"]["online_payment_landing"]["url"],
        "http://platform.example/back"
    );
    app.wait_for(payment["id"].as_str().unwrap(), "PAYMENT_PENDING", 15)
        .await;
    assert!(
        payments_of(&app, old).await.is_empty(),
        "unsupported version skipped"
    );
    assert!(
        payments_of(&app, draft).await.is_empty(),
        "other statuses skipped"
    );

    let dead = read_until(&reader(&bootstrap, &topics.dead_letter), 20, |seen| {
        seen.len() >= 4
    })
    .await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, _, headers)| {
            headers
                .iter()
                .find(|(k, _)| k == "cassa-reason")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("fiscal_code"), "{reasons:?}");
    assert!(reasons[2].contains("2 decimal places"), "{reasons:?}");
    assert!(
        reasons[3].contains("links.notify[0].url") && reasons[3].contains("allow-list"),
        "{reasons:?}"
    );
    assert_eq!(
        dead[0].1,
        b"{not json".to_vec(),
        "the original record is kept"
    );
}

async fn every_state_change_is_published_on_payments_with_its_own_event_id(broker: Broker) {
    let (app, topics) = TestApp::spawn_on(Backend::Sqlite, broker).await;
    let id = app.create(&wallet_body("12.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&id, "COMPLETE", 15).await;
    let records = read_until(
        &reader(app.kafka.bootstrap(), &topics.payments),
        20,
        |seen| {
            seen.iter()
                .filter(|(k, _, _)| k.as_deref() == Some(&id))
                .count()
                >= 4
        },
    )
    .await;
    let events: Vec<Value> = records
        .iter()
        .filter(|(k, _, _)| k.as_deref() == Some(&id))
        .map(|(_, payload, _)| serde_json::from_slice(payload).unwrap())
        .collect();
    // Each record names the row version it was written with, rising (owners skip the
    // reload for versions they have seen).
    let versions: Vec<i64> = records
        .iter()
        .filter(|(k, _, _)| k.as_deref() == Some(&id))
        .map(|(_, _, headers)| {
            let (_, v) = headers
                .iter()
                .find(|(k, _)| k == cassa::kafka::VERSION_HEADER)
                .expect("a cassa-version header");
            v.parse().unwrap()
        })
        .collect();
    assert_eq!(versions[0], 1, "{versions:?}");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
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
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert!(events
        .iter()
        .all(|e| e["event_version"] == "2.0" && e["payment"]["amount"] == json!(12.0)));
    assert!(events
        .iter()
        .all(|e| e["event_created_at"].as_str().unwrap().ends_with(":00")));
}

/// A payment another system publishes on `payments`: `body` (a create request) as a
/// v2 event of a payment in `status`, with a fresh id.
fn foreign_event(mut body: Value, status: &str) -> (Uuid, Value) {
    let id = Uuid::new_v4();
    let now = cassa::domain::time::format(&cassa::domain::time::now());
    let event = body.as_object_mut().unwrap();
    event.insert("id".into(), json!(id));
    event
        .entry("user_id")
        .or_insert_with(|| json!(Uuid::new_v4()));
    event.insert("created_at".into(), json!(now));
    event.insert("updated_at".into(), json!(now));
    event.insert("status".into(), json!(status));
    event.insert("event_id".into(), json!(Uuid::new_v4()));
    event.insert("event_version".into(), json!("2.0"));
    event.insert("event_created_at".into(), json!(now));
    event.insert("app_id".into(), json!("payment-dispatcher:1.4.0"));
    event["payment"]["iud"] = json!(id.simple().to_string());
    event.insert(
        "links".into(),
        json!({"notify": [{"url": "http://127.0.0.1:9/n", "method": "POST", "sent_at": null}]}),
    );
    (id, body)
}

/// Waits until payment `id` can be read.
pub async fn wait_until_adopted(app: &TestApp, id: Uuid) {
    eventually(
        "the foreign payment adopted",
        Duration::from_secs(20),
        || async { app.get(&format!("/v1/payments/{id}")).await.status() == 200 },
    )
    .await;
}

async fn a_foreign_creation_pending_payment_is_adopted(broker: Broker) {
    let (app, topics) = TestApp::spawn_on(Backend::Sqlite, broker).await;
    let id = Uuid::new_v4();
    let event = foreign_payment(id, Uuid::new_v4(), "31.00");
    produce(
        app.kafka.bootstrap(),
        &topics.payments,
        &id.to_string(),
        event.to_string().as_bytes(),
    )
    .await;
    wait_until_adopted(&app, id).await;
    let adopted = app.wait_for(&id.to_string(), "PAYMENT_PENDING", 15).await;
    assert!(adopted["payment"]["notice_code"].is_string());
    assert!(adopted["links"]["online_payment_begin"]["url"]
        .as_str()
        .unwrap()
        .starts_with(&app.base));
    assert_eq!(app.sim.stats().await.positions_created, 1);
}

/// Publishes `events` on `payments` under one key (one partition: handled in order),
/// then waits until the last one, `last` (a good payment), is adopted.
async fn publish_then_adopt(app: &TestApp, key: &str, events: &[&Value], last: Uuid) {
    for event in events {
        produce(
            app.kafka.bootstrap(),
            "payments",
            key,
            event.to_string().as_bytes(),
        )
        .await;
    }
    wait_until_adopted(app, last).await;
}

/// The dead-lettered records (reason, payload), once there are `count`.
async fn dead_letters(app: &TestApp, count: usize) -> Vec<(String, Vec<u8>)> {
    let dead = read_until(
        &reader(app.kafka.bootstrap(), "cassa-dead-letter"),
        20,
        |seen| seen.len() >= count,
    )
    .await;
    dead.into_iter()
        .map(|(_, payload, headers)| {
            let reason = headers
                .into_iter()
                .find(|(k, _)| k == "cassa-reason")
                .unwrap()
                .1;
            (reason, payload)
        })
        .collect()
}

/// The reasons of the dead-lettered records, once there are `count`.
async fn dead_letter_reasons(app: &TestApp, count: usize) -> Vec<String> {
    dead_letters(app, count)
        .await
        .into_iter()
        .map(|(reason, _)| reason)
        .collect()
}

/// Issue 25 point 3: a forged foreign WALLET payment naming the demo citizen's wallet
/// (any `user_id`, even the owner's) and one that breaks a field rule of
/// `POST /v1/payments` are refused and dead-lettered with the reason; the wallet keeps
/// its money, neither payment exists, and the next good event is still adopted.
async fn forged_foreign_payments_are_refused_and_dead_lettered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = app.account().await;
    // One key: one partition, handled in order.
    let key = "forged-under-test";
    let mut wallet = wallet_body("50.00");
    wallet["user_id"] = json!(Uuid::new_v4());
    let (wallet_id, wallet) = foreign_event(wallet, "CREATION_PENDING");
    let mut owners = wallet_body("50.00");
    owners["user_id"] = json!(cassa::seed::DEMO_CITIZEN);
    let (owners_id, owners) = foreign_event(owners, "CREATION_PENDING");
    let (bad_url_id, mut bad_url) = foreign_event(pagopa_body("5.00"), "CREATION_PENDING");
    bad_url["links"]["notify"][0]["url"] = json!("javascript:alert(1)");
    // Nor is a negative amount or a payer without a tax code's shape adopted (refused by
    // the field, as the API would), nor a service cassa does not know (another system's
    // payment: skipped); the next event is still handled.
    let (bad_amount_id, mut bad_amount) = foreign_event(pagopa_body("5.00"), "CREATION_PENDING");
    bad_amount["payment"]["amount"] = json!(-5.0);
    let (bad_payer_id, mut bad_payer) = foreign_event(pagopa_body("5.00"), "CREATION_PENDING");
    bad_payer["payer"]["tax_identification_number"] = json!("NOT-A-TAX-CODE");
    let (no_service_id, mut no_service) = foreign_event(pagopa_body("5.00"), "CREATION_PENDING");
    no_service["service_id"] = json!(Uuid::new_v4());
    let (good_id, good) = foreign_event(pagopa_body("6.00"), "CREATION_PENDING");
    publish_then_adopt(
        &app,
        key,
        &[
            &wallet,
            &owners,
            &bad_url,
            &bad_amount,
            &bad_payer,
            &no_service,
            &good,
        ],
        good_id,
    )
    .await;
    for id in [
        wallet_id,
        owners_id,
        bad_url_id,
        bad_amount_id,
        bad_payer_id,
        no_service_id,
    ] {
        assert_eq!(app.get(&format!("/v1/payments/{id}")).await.status(), 404);
    }
    let after = app.account().await;
    assert_eq!(after["balance"], before["balance"], "{after}");
    assert_eq!(after["available"], before["available"], "{after}");
    let reasons = dead_letter_reasons(&app, 5).await;
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[0].starts_with("type: a WALLET payment"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("type: a WALLET payment"),
        "{reasons:?}"
    );
    assert!(reasons[2].starts_with("links.notify[0].url"), "{reasons:?}");
    assert!(reasons[3].starts_with("payment.amount"), "{reasons:?}");
    assert!(
        reasons[4].starts_with("payer.tax_identification_number"),
        "{reasons:?}"
    );
}

on_both_databases!(forged_foreign_payments_are_refused_and_dead_lettered);

/// Issue 25 point 3: a forged foreign PAYMENT_PENDING payment reusing a victim's iuv and
/// notice code is refused and dead-lettered (so nobody can cancel the victim's debt
/// position through it), and an event naming the victim's own id only triggers a check:
/// it changes nothing of the victim's payment.
async fn a_foreign_payment_cannot_take_another_payments_iuv(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let victim = app.create(&pagopa_body("120.00")).await;
    let victim_id = victim["id"].as_str().unwrap().to_string();
    let victim = app.wait_for(&victim_id, "PAYMENT_PENDING", 15).await;
    let iuv = victim["payment"]["iuv"].as_str().unwrap().to_string();
    let notice = victim["payment"]["notice_code"]
        .as_str()
        .unwrap()
        .to_string();
    let key = "iuv-under-test";
    let mut squatter = pagopa_body("1.00");
    squatter["payment"]["iuv"] = json!(iuv);
    squatter["payment"]["notice_code"] = json!(notice);
    let (squatter_id, squatter) = foreign_event(squatter, "PAYMENT_PENDING");
    // Only the notice code: refused as well.
    let mut notice_only = pagopa_body("1.00");
    notice_only["payment"]["iuv"] = json!(format!("X{}", Uuid::new_v4().simple()));
    notice_only["payment"]["notice_code"] = json!(notice);
    let (notice_only_id, notice_only) = foreign_event(notice_only, "PAYMENT_PENDING");
    // The victim's own id with another iuv and amount: a trigger, never applied.
    let mut rewrite = victim.clone();
    rewrite["payment"]["iuv"] = json!("SQUATTED");
    rewrite["payment"]["amount"] = json!(1.0);
    rewrite["event_id"] = json!(Uuid::new_v4());
    rewrite["event_version"] = json!("2.0");
    rewrite["event_created_at"] = rewrite["updated_at"].clone();
    rewrite["app_id"] = json!("payment-dispatcher:1.4.0");
    let (good_id, good) = foreign_event(pagopa_body("6.00"), "CREATION_PENDING");
    publish_then_adopt(
        &app,
        key,
        &[&squatter, &notice_only, &rewrite, &good],
        good_id,
    )
    .await;
    for id in [squatter_id, notice_only_id] {
        assert_eq!(app.get(&format!("/v1/payments/{id}")).await.status(), 404);
    }
    let reasons = dead_letter_reasons(&app, 2).await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(
        reasons[0], "payment.iuv: is already used by another payment",
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1], "payment.notice_code: is already used by another payment",
        "{reasons:?}"
    );
    let now = app.get_payment(&victim_id).await;
    assert_eq!(now["payment"]["iuv"], json!(iuv));
    assert_eq!(now["payment"]["amount"], json!(120.0));
    assert_eq!(now["status"], "PAYMENT_PENDING");
    assert_eq!(app.sim.position(&iuv).await["status"], "PENDING");
}

on_both_databases!(a_foreign_payment_cannot_take_another_payments_iuv);

/// A platform endpoint recording what it receives.
struct Platform {
    base: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn platform() -> Platform {
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let flaky_calls = Arc::new(Mutex::new(0));
    let state = (received.clone(), flaky_calls);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().route(
            "/{kind}",
            web::post().to(move |kind: web::Path<String>, body: web::Json<Value>| {
                let (received, flaky) = state.clone();
                async move {
                    received
                        .lock()
                        .unwrap()
                        .push((kind.to_string(), body.into_inner()));
                    match kind.as_str() {
                        "ok" => HttpResponse::Ok().finish(),
                        "gone" => HttpResponse::UnprocessableEntity().finish(),
                        _ => {
                            let mut calls = flaky.lock().unwrap();
                            *calls += 1;
                            if *calls <= 2 {
                                HttpResponse::ServiceUnavailable().finish()
                            } else {
                                HttpResponse::Ok().finish()
                            }
                        }
                    }
                }
            }),
        )
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .run();
    actix_rt::spawn(server);
    Platform { base, received }
}

async fn the_platform_is_told_the_outcome_with_retries_and_a_4xx_is_final(broker: Broker) {
    let (app, _topics) = TestApp::spawn_on(Backend::Sqlite, broker).await;
    let platform = platform().await;
    // The platform's payment (links are the platform's, not a citizen's), paid at the
    // intermediary.
    let mut body = pagopa_body("8.00");
    body["links"]["notify"] = json!([
        {"url": format!("{}/ok", platform.base), "method": "POST"},
        {"url": format!("{}/flaky", platform.base), "method": "POST"},
        {"url": format!("{}/gone", platform.base), "method": "POST"}
    ]);
    let id = app.create(&body).await["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    app.wait_for(&id, "COMPLETE", 15).await;
    let sent = "flaky endpoint recorded as sent";
    let payment = eventually(sent, Duration::from_secs(20), || async {
        let p = app.get_payment(&id).await;
        if p["links"]["notify"][1]["sent_at"].is_string() {
            Ok(p)
        } else {
            Err(p)
        }
    })
    .await;
    let notify = &payment["links"]["notify"];
    assert!(notify[0]["sent_at"].is_string());
    assert!(notify[2]["sent_at"].is_null());
    assert_eq!(notify[2]["refused"]["status"], 422);
    let received = platform.received.lock().unwrap().clone();
    let count = |kind: &str| received.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("ok"), 1, "told once");
    assert_eq!(count("flaky"), 3, "retried until a 2xx");
    assert_eq!(count("gone"), 1, "a 4xx is final");
    let (_, outcome) = received.iter().find(|(k, _)| k == "ok").unwrap();
    assert_eq!(outcome["status"], "OK");
    assert_eq!(outcome["status_code"], "COMPLETE");
    assert_eq!(outcome["data"]["id"], id.as_str());
}

#[actix_rt::test]
async fn a_broker_outage_loses_no_event() {
    if crate::helpers::postgres_skipped(concat!(module_path!(), "::a_broker_outage_loses_no_event"))
    {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let broker = app.kafka.setup.embedded.0.clone().unwrap();
    let up = broker.clone();
    a_broker_outage_loses_no_event_on(
        &app,
        "payments",
        async move { broker.broker_down().unwrap() },
        async move { up.broker_up().unwrap() },
    )
    .await;
}

/// Payments completed while every broker is down: their events wait in the outbox and
/// all reach `topic`, in order, once the brokers are back.
pub async fn a_broker_outage_loses_no_event_on(
    app: &TestApp,
    topic: &str,
    down: impl std::future::Future<Output = ()>,
    up: impl std::future::Future<Output = ()>,
) {
    // Owned partitions first (the group's first assignment).
    let warm = app.create(&wallet_body("1.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&warm, "COMPLETE", 15).await;
    down.await;
    let mut ids = Vec::new();
    for amount in ["2.00", "3.00", "4.00"] {
        let id = app.create(&wallet_body(amount)).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        app.wait_for(&id, "COMPLETE", 15).await;
        ids.push(id);
    }
    // On PostgreSQL an event shows once every older transaction of the cluster has ended
    // (other tests write too): waited for, not read once.
    let unpublished = || async { app.store.unpublished_events(100).await.unwrap().len() };
    eventually(
        "events waiting in the outbox",
        Duration::from_secs(10),
        || async { unpublished().await > 0 },
    )
    .await;
    up.await;
    eventually("the outbox drained", Duration::from_secs(40), || async {
        match unpublished().await {
            0 => Ok(()),
            waiting => Err(format!("{waiting} events waiting")),
        }
    })
    .await;
    let records = read_until(&reader(app.kafka.bootstrap(), topic), 30, |seen| {
        ids.iter().all(|id| {
            seen.iter()
                .filter(|(k, _, _)| k.as_deref() == Some(id))
                .count()
                >= 4
        })
    })
    .await;
    for id in &ids {
        let statuses: Vec<String> = records
            .iter()
            .filter(|(k, _, _)| k.as_deref() == Some(id))
            .map(|(_, p, _)| {
                serde_json::from_slice::<Value>(p).unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            statuses,
            [
                "CREATION_PENDING",
                "PAYMENT_PENDING",
                "PAYMENT_STARTED",
                "COMPLETE"
            ],
            "{id}"
        );
    }
}

/// Runs a test body once per broker: the embedded mock cluster and Apache Kafka.
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod on_the_embedded_broker {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(crate::helpers::Broker::Embedded).await
                }
            )*
        }
        mod on_apache_kafka {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(crate::helpers::Broker::Apache).await
                }
            )*
        }
    };
}

on_both_brokers!(
    applications_become_exactly_one_payment_and_bad_ones_are_dead_lettered,
    every_state_change_is_published_on_payments_with_its_own_event_id,
    a_foreign_creation_pending_payment_is_adopted,
    the_platform_is_told_the_outcome_with_retries_and_a_4xx_is_final,
);
