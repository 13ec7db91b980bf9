//! Hostile input (issue 21), seeded so a failure replays: mutated create bodies and
//! random bytes over real HTTP, garbage on the Kafka topics, clients that never finish
//! a request. cassa answers each with a problem or a dead letter, never a 5xx or a
//! stalled consumer, and keeps working afterwards.

use std::time::Duration;

use cassa::server::Overrides;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::helpers::*;

/// Fixed: the same mutations every run (printed with each failure).
const SEED: u64 = 20_261_202;
const CASES: usize = 300;

/// The body's places a mutation may hit, as JSON pointers.
const PLACES: &[&str] = &[
    "/type",
    "/tenant_id",
    "/service_id",
    "/remote_id",
    "/reason",
    "/payment",
    "/payment/amount",
    "/payment/currency",
    "/payment/expire_at",
    "/payment/split",
    "/payer",
    "/payer/type",
    "/payer/tax_identification_number",
    "/payer/name",
    "/payer/family_name",
    "/payer/email",
    "/links",
    "/links/notify",
    "/links/online_payment_landing",
    "/wallet_account_id",
];

fn random_text(rng: &mut StdRng) -> String {
    let len = rng.gen_range(0..40);
    (0..len)
        .map(|_| match rng.gen_range(0..4) {
            0 => char::from(rng.gen_range(b'0'..=b'9')),
            1 => char::from(rng.gen_range(b'a'..=b'z')),
            2 => ['\u{0}', '\u{202E}', '"', '\\', '€', 'ß', ' ', '-', '.'][rng.gen_range(0..9)],
            _ => char::from_u32(rng.gen_range(0x20..0x2FFF)).unwrap_or('x'),
        })
        .collect()
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen_range(-1000.0..1e12)),
        4 => json!(
            [
                "12.34",
                "0",
                "-1",
                "1e3",
                "999999999.999",
                "2026-13-40T00:00:00Z"
            ][rng.gen_range(0..6)]
        ),
        5 | 6 => json!(random_text(rng)),
        7 if depth < 2 => Value::Array(
            (0..rng.gen_range(0..3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ if depth < 2 => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..3) {
                object.insert(random_text(rng), random_value(rng, depth + 1));
            }
            Value::Object(object)
        }
        _ => json!(random_text(rng)),
    }
}

/// A valid body with one to three places replaced, removed or joined by a stranger.
fn mutated(rng: &mut StdRng) -> Value {
    let mut body = pagopa_body("12.34");
    for _ in 0..rng.gen_range(1..=3) {
        let place = PLACES[rng.gen_range(0..PLACES.len())];
        let (parent, key) = place.rsplit_once('/').unwrap_or(("", place));
        let Some(Value::Object(object)) = body.pointer_mut(parent) else {
            continue;
        };
        let key = key.to_string();
        match rng.gen_range(0..4) {
            0 => {
                object.remove(&key);
            }
            1 => {
                object.insert(format!("{key}_x"), random_value(rng, 0));
            }
            _ => {
                object.insert(key, random_value(rng, 0));
            }
        }
    }
    body
}

#[actix_rt::test]
async fn mutated_create_bodies_get_a_problem_or_a_payment_never_a_server_error() {
    // No create rate limit: the cases arrive faster than a caller may create.
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.http.create_rate_limit = 0,
        Overrides::default(),
    )
    .await;
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut created, mut refused) = (0, 0);
    for case in 0..CASES {
        let raw = if case % 10 == 9 {
            // Not even JSON, now and then.
            (0..rng.gen_range(0..64))
                .map(|_| rng.gen::<u8>())
                .collect::<Vec<u8>>()
        } else {
            serde_json::to_vec(&mutated(&mut rng)).unwrap()
        };
        let response = app
            .client
            .post(app.url("/v1/payments"))
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let sent = String::from_utf8_lossy(&raw).into_owned();
        assert!(
            !status.is_server_error(),
            "case {case} (seed {SEED}): {status} for {sent}"
        );
        if status.is_success() {
            created += 1;
            continue;
        }
        refused += 1;
        assert!(status.is_client_error(), "case {case}: {status} for {sent}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(kind, "application/problem+json", "case {case}: {sent}");
        let problem: Value = response.json().await.unwrap();
        if problem["type"] == "urn:cassa:problem:invalid-field" {
            assert!(
                problem["field"].is_string(),
                "case {case}: {problem} for {sent}"
            );
        }
    }
    assert!(
        refused > CASES / 2,
        "most mutations are refused: {refused} of {CASES}"
    );
    assert!(
        created > 0,
        "some mutations stay valid: {created} of {CASES}"
    );
    // cassa is still itself.
    let good = app.post_json("/v1/payments", &pagopa_body("7.00")).await;
    assert_eq!(good.status(), 202);
}

/// Random bytes and valid events with a byte changed, in a burst on both topics cassa
/// consumes: the consumers keep going (the next good application becomes a payment, the
/// next good foreign payment is adopted) and every unreadable application is
/// dead-lettered with its reason.
#[actix_rt::test]
async fn a_burst_of_garbage_on_the_topics_stops_no_consumer() {
    use crate::kafka::{
        application, foreign_payment, produce, read_until, reader, wait_for_payment_of,
        wait_until_adopted,
    };
    use uuid::Uuid;

    let (app, topics) = TestApp::spawn_on(Backend::Sqlite, Broker::Embedded).await;
    let bootstrap = app.kafka.bootstrap().to_string();
    let mut rng = StdRng::seed_from_u64(SEED);
    // One key per topic: one partition each, handled in order.
    let (applications_key, payments_key) = ("fuzzed-applications", "fuzzed-payments");
    let mut garbage = 0;
    for case in 0..60 {
        let payload = if case % 3 == 0 {
            garbage += 1;
            // Never JSON: a lone continuation byte first.
            std::iter::once(0x80u8)
                .chain((0..rng.gen_range(0..64)).map(|_| rng.gen::<u8>()))
                .collect()
        } else {
            let mut event = application(Uuid::new_v4(), json!("3.00"))
                .to_string()
                .into_bytes();
            let at = rng.gen_range(0..event.len());
            event[at] = rng.gen();
            event
        };
        produce(&bootstrap, &topics.applications, applications_key, &payload).await;
        let bytes: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen::<u8>()).collect();
        produce(&bootstrap, &topics.payments, payments_key, &bytes).await;
    }
    let last = Uuid::new_v4();
    let good = application(last, json!("7.25")).to_string();
    produce(
        &bootstrap,
        &topics.applications,
        applications_key,
        good.as_bytes(),
    )
    .await;
    let foreign = Uuid::new_v4();
    let event = foreign_payment(foreign, Uuid::new_v4(), "31.00").to_string();
    produce(&bootstrap, &topics.payments, payments_key, event.as_bytes()).await;

    let later = wait_for_payment_of(&app, last).await;
    assert_eq!(later["payment"]["amount"], json!(7.25));
    wait_until_adopted(&app, foreign).await;
    let dead = read_until(&reader(&bootstrap, &topics.dead_letter), 20, |seen| {
        seen.len() >= garbage
    })
    .await;
    assert!(
        dead.len() >= garbage,
        "{} dead letters for {garbage} unreadable",
        dead.len()
    );
    for (_, _, headers) in &dead {
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "cassa-reason" && !v.is_empty()),
            "each dead letter names its reason: {headers:?}"
        );
    }
}

/// Slow-loris clients: 100 connections that never finish their request head hold
/// nothing. A normal request is answered meanwhile, and each stalled connection is cut
/// off (a 408, or closed) once the request timeout has passed.
#[actix_rt::test]
async fn clients_that_never_finish_a_request_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let answered = app.get("/healthz").await;
    assert_eq!(answered.status(), 200, "served while 100 clients stall");
    let limit = cassa::server::CLIENT_REQUEST_TIMEOUT + Duration::from_secs(5);
    for mut stream in stalled {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
        let cut_off = match read {
            Ok(Ok(_)) | Ok(Err(_)) => true,
            Err(_) => false,
        };
        assert!(
            cut_off,
            "a stalled connection was still open after {limit:?}"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
}
