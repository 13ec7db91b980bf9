//! Unit tests of the simulator, through actix-web's test service and (once) over
//! real HTTP with reqwest.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::test::{call_service, init_service, read_body, read_body_json, TestRequest};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use uuid::Uuid;

use super::routes::{escape_html, format_euros};
use super::*;

const HANG: Duration = Duration::from_millis(200);

fn sim() -> Simulator {
    Simulator::new(SimulatorConfig {
        hang_for: HANG,
        notify_url: None,
        push: true,
        api_key: None,
        cassa_url: Some(CASSA.into()),
        push_secret: None,
    })
}

/// The cassa the simulator of these tests sends citizens back to.
const CASSA: &str = "http://127.0.0.1:9";

macro_rules! app {
    ($sim:expr) => {{
        let sim = $sim.clone();
        init_service(App::new().configure(move |c| sim.configure(c))).await
    }};
}

fn position_body(iud: &str, amount_cents: i64) -> Value {
    json!({
        "iud": iud,
        "amount_cents": amount_cents,
        "reason": "TARI 2024 <rata 1>",
        "debtor_tax_code": "RSSMRA80A01H501U",
        "debtor_name": "Mario Rossi",
        "expire_at": "2030-01-01T00:00:00Z",
        "return_url": null,
        "notify_url": null,
        "unknown_field": 42
    })
}

/// Creates a position: evaluates to a future of the `ServiceResponse`.
macro_rules! create {
    ($app:expr, $body:expr $(,)?) => {{
        let req = TestRequest::post()
            .uri("/sim/positions")
            .set_json($body)
            .to_request();
        async { call_service($app, req).await }
    }};
}

/// Sends a request: evaluates to a future of `(StatusCode, Value)` (Null if not JSON).
macro_rules! send {
    ($app:expr, $req:expr $(,)?) => {{
        let req = $req.to_request();
        async {
            let resp = call_service($app, req).await;
            let status = resp.status();
            let body = read_body(resp).await;
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (status, value)
        }
    }};
}

async fn json_of(resp: ServiceResponse) -> Value {
    read_body_json(resp).await
}

#[actix_web::test]
async fn create_is_idempotent_by_iud() {
    let sim = sim();
    let app = app!(sim);
    let resp = create!(&app, &position_body("iud-1", 1234)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let first = json_of(resp).await;
    let iuv = first["iuv"].as_str().unwrap().to_owned();
    assert_eq!(iuv.len(), 17);
    assert!(iuv.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(first["notice_code"], format!("3{iuv}"));
    assert_eq!(first["iud"], "iud-1");
    assert_eq!(first["amount_cents"], 1234);
    assert_eq!(first["status"], "PENDING");
    assert_eq!(first["paid_at"], Value::Null);
    assert_eq!(first["transaction_id"], Value::Null);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        first["checkout_url"],
        format!("http://localhost:8080/sim/checkout/{iuv}")
    );

    let resp = create!(&app, &position_body("iud-1", 1234)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let second = json_of(resp).await;
    assert_eq!(second["iuv"], first["iuv"]);
    assert_eq!(second["notice_code"], first["notice_code"]);

    let resp = create!(&app, &position_body("iud-2", 1234)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_ne!(json_of(resp).await["iuv"], first["iuv"]);

    let stats = sim.stats();
    assert_eq!(stats.positions_created, 2);
    assert_eq!(stats.duplicate_creates, 1);
}

#[actix_web::test]
async fn create_rejects_invalid_bodies() {
    let app = app!(sim());
    for body in [
        position_body("iud", 0),
        position_body("iud", -5),
        position_body("", 100),
        json!({"iud": "x"}),
    ] {
        let (status, v) = send!(
            &app,
            TestRequest::post().uri("/sim/positions").set_json(&body)
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(v["error"].is_string(), "{v}");
    }
    let req = TestRequest::post()
        .uri("/sim/positions")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload("{not json");
    let (status, v) = send!(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].is_string());
}

#[actix_web::test]
async fn status_calls_are_counted() {
    let sim = sim();
    let app = app!(sim);
    let iuv = json_of(create!(&app, &position_body("a", 500)).await).await["iuv"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = send!(
        &app,
        TestRequest::get().uri(&format!("/sim/positions/{iuv}"))
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["iuv"], iuv.as_str());
    let (status, v) = send!(&app, TestRequest::get().uri("/sim/positions/000")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(v["error"].is_string());
    assert_eq!(sim.stats().status_calls, 2);

    let (status, v) = send!(&app, TestRequest::get().uri("/sim/stats")).await;
    assert_eq!(status, StatusCode::OK);
    let stats: SimulatorStats = serde_json::from_value(v).unwrap();
    assert_eq!(stats, sim.stats());
}

#[actix_web::test]
async fn flaky_position_answers_503_twice_per_iud() {
    let sim = sim();
    let app = app!(sim);
    for _ in 0..2 {
        let (status, v) = send!(
            &app,
            TestRequest::post()
                .uri("/sim/positions")
                .set_json(position_body("flaky", 1003)),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(v["error"].is_string());
    }
    let resp = create!(&app, &position_body("flaky", 1003)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let iuv = json_of(resp).await["iuv"].as_str().unwrap().to_owned();
    let (status, _) = send!(
        &app,
        TestRequest::get().uri(&format!("/sim/positions/{iuv}"))
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.stats().positions_created, 1);
}

#[actix_web::test]
async fn hanging_position_does_not_block_other_requests() {
    let sim = sim();
    let app = app!(sim);
    let started = Instant::now();
    let resp = create!(&app, &position_body("hang", 702)).await;
    assert!(started.elapsed() >= HANG);
    assert_eq!(resp.status(), StatusCode::CREATED);
    let iuv = json_of(resp).await["iuv"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let (slow, fast) = tokio::join!(
        async {
            let r = send!(
                &app,
                TestRequest::get().uri(&format!("/sim/positions/{iuv}"))
            )
            .await;
            (r, started.elapsed())
        },
        async {
            let r = send!(&app, TestRequest::get().uri("/sim/stats")).await;
            (r, started.elapsed())
        }
    );
    assert_eq!((slow.0).0, StatusCode::OK);
    assert!(slow.1 >= HANG);
    assert_eq!((fast.0).0, StatusCode::OK);
    assert!(
        fast.1 < HANG,
        "stats blocked by a hanging call: {:?}",
        fast.1
    );
}

#[actix_web::test]
async fn cancel_transitions() {
    let app = app!(sim());
    let new_iuv = |v: Value| v["iuv"].as_str().unwrap().to_owned();

    // PENDING -> CANCELED, idempotent, cannot be paid afterwards.
    let iuv = new_iuv(json_of(create!(&app, &position_body("c1", 100)).await).await);
    let uri = format!("/sim/positions/{iuv}");
    for _ in 0..2 {
        let (status, v) = send!(&app, TestRequest::delete().uri(&uri)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["status"], "CANCELED");
    }
    let (status, _) = send!(&app, TestRequest::post().uri(&format!("{uri}/pay"))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // PAID -> 409.
    let iuv = new_iuv(json_of(create!(&app, &position_body("c2", 100)).await).await);
    let uri = format!("/sim/positions/{iuv}");
    send!(&app, TestRequest::post().uri(&format!("{uri}/pay"))).await;
    let (status, v) = send!(&app, TestRequest::delete().uri(&uri)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(v["error"].is_string());

    // FAILED -> CANCELED.
    let iuv = new_iuv(json_of(create!(&app, &position_body("c3", 100)).await).await);
    let uri = format!("/sim/positions/{iuv}");
    let (status, v) = send!(&app, TestRequest::post().uri(&format!("{uri}/fail"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "FAILED");
    let (status, v) = send!(&app, TestRequest::delete().uri(&uri)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "CANCELED");

    let (status, _) = send!(&app, TestRequest::delete().uri("/sim/positions/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn pay_and_fail_transitions() {
    let app = app!(sim());
    let iuv = json_of(create!(&app, &position_body("p1", 100)).await).await["iuv"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = format!("/sim/positions/{iuv}");
    let (status, first) = send!(&app, TestRequest::post().uri(&format!("{uri}/pay"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["status"], "PAID");
    assert!(first["paid_at"].is_string());
    let tx = first["transaction_id"].as_str().unwrap();
    assert!(Uuid::parse_str(tx).is_ok());

    let (status, second) = send!(&app, TestRequest::post().uri(&format!("{uri}/pay"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second, first);

    let (status, _) = send!(&app, TestRequest::post().uri(&format!("{uri}/fail"))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, v) = send!(&app, TestRequest::get().uri(&uri)).await;
    assert_eq!(v["status"], "PAID");

    let (status, _) = send!(&app, TestRequest::post().uri("/sim/positions/nope/pay")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send!(&app, TestRequest::post().uri("/sim/positions/nope/fail")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn checkout_page_shows_escaped_details_and_forms() {
    let app = app!(sim());
    let mut body = position_body("ck", 1234);
    body["return_url"] = json!("http://127.0.0.2/back?x=1&y=2");
    let v = json_of(create!(&app, &body).await).await;
    let iuv = v["iuv"].as_str().unwrap();
    let notice = v["notice_code"].as_str().unwrap();

    let resp = call_service(
        &app,
        TestRequest::get()
            .uri(&format!("/sim/checkout/{iuv}"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers().get(header::CONTENT_TYPE).unwrap();
    assert!(ct.to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(read_body(resp).await.to_vec()).unwrap();
    assert!(html.contains("TARI 2024 &lt;rata 1&gt;"), "{html}");
    assert!(!html.contains("<rata"));
    assert!(html.contains("12.34 EUR"));
    assert!(html.contains(notice));
    assert!(html.contains(&format!("action=\"/sim/checkout/{iuv}/pay\"")));
    assert!(html.contains(&format!("action=\"/sim/checkout/{iuv}/fail\"")));
    assert!(html.contains(">Pay<") && html.contains(">Fail<"));
    // Neither the position's return_url nor one in the query makes it into the page.
    assert!(
        !html.contains("return_url") && !html.contains("127.0.0.2"),
        "{html}"
    );
    let resp = call_service(
        &app,
        TestRequest::get()
            .uri(&format!(
                "/sim/checkout/{iuv}?return_url=http%3A%2F%2F127.0.0.3%2F%22q"
            ))
            .to_request(),
    )
    .await;
    let html = String::from_utf8(read_body(resp).await.to_vec()).unwrap();
    assert!(!html.contains("127.0.0.3"), "{html}");

    let resp = call_service(
        &app,
        TestRequest::get().uri("/sim/checkout/unknown").to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Issue 25 point 10: the checkout sends the citizen back only to cassa's landing of
/// the position's payment, whatever return URL the position or the form names (no open
/// redirect); without a cassa URL, or for a position that is not a cassa payment, a
/// "done" page.
#[actix_web::test]
async fn checkout_forms_redirect_only_to_cassas_landing_or_show_done_page() {
    let app = app!(sim());
    let payment = Uuid::new_v4();
    let mut body = position_body(&payment.simple().to_string(), 100);
    body["return_url"] = json!("http://127.0.0.2/elsewhere");
    let iuv = json_of(create!(&app, &body).await).await["iuv"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = call_service(
        &app,
        TestRequest::post()
            .uri(&format!("/sim/checkout/{iuv}/pay"))
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .set_payload("return_url=http%3A%2F%2F127.0.0.3%2Fdone")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers().get(header::LOCATION).unwrap(),
        &format!("{CASSA}/v1/payments/{payment}/landing")
    );
    let (_, v) = send!(
        &app,
        TestRequest::get().uri(&format!("/sim/positions/{iuv}"))
    )
    .await;
    assert_eq!(v["status"], "PAID");

    let iuv = json_of(create!(&app, &position_body("f2", 100)).await).await["iuv"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = call_service(
        &app,
        TestRequest::post()
            .uri(&format!("/sim/checkout/{iuv}/fail"))
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .set_payload("return_url=")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = String::from_utf8(read_body(resp).await.to_vec()).unwrap();
    assert!(html.contains("Payment failed"));
    let (_, v) = send!(
        &app,
        TestRequest::get().uri(&format!("/sim/positions/{iuv}"))
    )
    .await;
    assert_eq!(v["status"], "FAILED");

    // Canceled position: paying from the checkout is refused.
    send!(
        &app,
        TestRequest::delete().uri(&format!("/sim/positions/{iuv}"))
    )
    .await;
    let resp = call_service(
        &app,
        TestRequest::post()
            .uri(&format!("/sim/checkout/{iuv}/pay"))
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .set_payload("return_url=")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}

fn exec_body(payment_id: Uuid, amount_cents: i64) -> Value {
    json!({"payment_id": payment_id, "account_id": Uuid::new_v4(), "amount_cents": amount_cents})
}

#[actix_web::test]
async fn gateway_outcomes_and_idempotency() {
    let sim = sim();
    let app = app!(sim);
    let exec = |id, amount| {
        TestRequest::post()
            .uri("/sim/payments")
            .set_json(exec_body(id, amount))
    };

    let ok = Uuid::new_v4();
    let (status, first) = send!(&app, exec(ok, 1000)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["outcome"], "APPROVED");
    assert_eq!(first["payment_id"], ok.to_string());
    assert!(first["transaction_id"].is_string());
    let (status, again) = send!(&app, exec(ok, 1000)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first);

    let ko = Uuid::new_v4();
    let (_, v) = send!(&app, exec(ko, 1001)).await;
    assert_eq!(v["outcome"], "REJECTED");
    let (_, v2) = send!(&app, exec(ko, 1001)).await;
    assert_eq!(v2, v);

    let stats = sim.stats();
    assert_eq!(stats.gateway_executions, 2);
    assert_eq!(stats.duplicate_executions, 2);

    let (status, v) = send!(&app, exec(Uuid::new_v4(), 0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].is_string());
    let req = TestRequest::post()
        .uri("/sim/payments")
        .set_json(json!({"payment_id": "not-a-uuid", "amount_cents": 100}));
    let (status, v) = send!(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].is_string());
}

#[actix_web::test]
async fn gateway_flaky_and_hanging() {
    let sim = sim();
    let app = app!(sim);
    let exec = |id, amount| {
        TestRequest::post()
            .uri("/sim/payments")
            .set_json(exec_body(id, amount))
    };

    let flaky = Uuid::new_v4();
    for _ in 0..2 {
        let (status, v) = send!(&app, exec(flaky, 503)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(v["error"].is_string());
    }
    let (status, v) = send!(&app, exec(flaky, 503)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["outcome"], "APPROVED");
    assert_eq!(sim.stats().gateway_executions, 1);
    assert_eq!(sim.stats().duplicate_executions, 0);

    let stuck = Uuid::new_v4();
    let started = Instant::now();
    let (slow, fast) = tokio::join!(
        async {
            let r = send!(&app, exec(stuck, 202)).await;
            (r, started.elapsed())
        },
        async {
            let r = send!(&app, exec(Uuid::new_v4(), 200)).await;
            (r, started.elapsed())
        }
    );
    assert_eq!((slow.0).0, StatusCode::OK);
    assert_eq!((slow.0).1["outcome"], "APPROVED");
    assert!(slow.1 >= HANG);
    assert_eq!((fast.0).0, StatusCode::OK);
    assert!(
        fast.1 < HANG,
        "gateway blocked by a stuck call: {:?}",
        fast.1
    );
}

#[test]
fn helpers() {
    assert_eq!(format_euros(1234), "12.34 EUR");
    assert_eq!(format_euros(5), "0.05 EUR");
    assert_eq!(format_euros(100_000), "1000.00 EUR");
    assert_eq!(
        escape_html("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
    let d = SimulatorConfig::default();
    assert_eq!(d.hang_for, Duration::from_secs(30));
    assert!(d.notify_url.is_none());
}

/// Over real HTTP: create, checkout form with redirect (followed by reqwest), and
/// the push notifications (per-position URL and configured fallback).
#[actix_web::test]
async fn works_over_real_http() {
    // A receiver for push notifications.
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = Arc::clone(&received);
    let hook_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    let hook = HttpServer::new(move || {
        let sink = Arc::clone(&sink);
        App::new().route(
            "/hook/{name}",
            web::post().to(move |name: web::Path<String>, body: web::Json<Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    sink.lock()
                        .unwrap()
                        .push((name.into_inner(), body.into_inner()));
                    HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(hook_listener)
    .unwrap()
    .run();
    let hook_handle = hook.handle();
    actix_web::rt::spawn(hook);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = server(
        listener,
        SimulatorConfig {
            hang_for: HANG,
            notify_url: Some(format!("http://{hook_addr}/hook/default")),
            push: true,
            api_key: None,
            cassa_url: None,
            push_secret: None,
        },
    )
    .unwrap();
    let handle = srv.handle();
    actix_web::rt::spawn(srv);

    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    // Position with its own notify_url, paid through the checkout form.
    let mut body = position_body("http-1", 1234);
    body["notify_url"] = json!(format!("http://{hook_addr}/hook/own"));
    body["return_url"] = json!(format!("{base}/sim/stats"));
    let resp = client
        .post(format!("{base}/sim/positions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let pos: Value = resp.json().await.unwrap();
    let iuv = pos["iuv"].as_str().unwrap().to_owned();
    let checkout = pos["checkout_url"].as_str().unwrap().to_owned();
    assert_eq!(checkout, format!("{base}/sim/checkout/{iuv}"));

    let html = client
        .get(&checkout)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("12.34 EUR"));

    // No cassa URL configured: the position's return_url is not followed, the form
    // answers a "done" page.
    let resp = client
        .post(format!("{checkout}/pay"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("return_url=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.url().path(), format!("/sim/checkout/{iuv}/pay"));
    assert!(resp.text().await.unwrap().contains("Payment done"));

    // Position without notify_url: notified at the configured URL.
    let resp = client
        .post(format!("{base}/sim/positions"))
        .json(&position_body("http-2", 500))
        .send()
        .await
        .unwrap();
    let iuv2 = resp.json::<Value>().await.unwrap()["iuv"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid: Value = client
        .post(format!("{base}/sim/positions/{iuv2}/pay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["status"], "PAID");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if received.lock().unwrap().len() >= 2 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = received.lock().unwrap().clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                "default".to_owned(),
                json!({"iuv": iuv2, "iud": "http-2", "status": "PAID"})
            ),
            (
                "own".to_owned(),
                json!({"iuv": iuv, "iud": "http-1", "status": "PAID"})
            ),
        ]
    );

    handle.stop(true).await;
    hook_handle.stop(true).await;
}

/// Issue 25 point 10: with an API key, the hooks that pay or fail a position need it as
/// the intermediary calls do; without it nothing changes.
#[actix_web::test]
async fn pay_and_fail_hooks_honour_the_api_key() {
    let keyed = Simulator::new(SimulatorConfig {
        api_key: Some("k-123".into()),
        ..SimulatorConfig::default()
    });
    let app = app!(keyed);
    let req = TestRequest::post()
        .uri("/sim/positions")
        .insert_header(("X-Api-Key", "k-123"))
        .set_json(position_body("keyed", 100))
        .to_request();
    let iuv = json_of(call_service(&app, req).await).await["iuv"]
        .as_str()
        .unwrap()
        .to_owned();
    for action in ["pay", "fail"] {
        for key in [None, Some("wrong")] {
            let mut req = TestRequest::post().uri(&format!("/sim/positions/{iuv}/{action}"));
            if let Some(key) = key {
                req = req.insert_header(("X-Api-Key", key));
            }
            let (status, _) = send!(&app, req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{action} with {key:?}");
        }
    }
    let (_, v) = send!(
        &app,
        TestRequest::get()
            .uri(&format!("/sim/positions/{iuv}"))
            .insert_header(("X-Api-Key", "k-123"))
    )
    .await;
    assert_eq!(v["status"], "PENDING");
    let (status, v) = send!(
        &app,
        TestRequest::post()
            .uri(&format!("/sim/positions/{iuv}/pay"))
            .insert_header(("X-Api-Key", "k-123"))
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "PAID");
}

/// Issue 25 point 10: a position's `notify_url` must be on a loopback address (an
/// http(s) URL); anything else is refused and no position is created.
#[actix_web::test]
async fn a_notify_url_off_loopback_is_refused() {
    let sim = sim();
    let app = app!(sim);
    for url in ["ftp://127.0.0.1/hook", "not a url", "http:///nohost"] {
        let mut body = position_body(&format!("n-{url}"), 100);
        body["notify_url"] = json!(url);
        let resp = create!(&app, &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{url}");
    }
    assert_eq!(sim.stats().positions_created, 0);
    let mut body = position_body("n-ok", 100);
    body["notify_url"] = json!("http://127.0.0.1:9/hook");
    assert_eq!(create!(&app, &body).await.status(), StatusCode::CREATED);
}

/// Which push addresses count as loopback (classified only: nothing is called).
#[test]
fn only_loopback_addresses_are_push_targets() {
    for url in [
        "http://127.0.0.1:8080/v1/intermediaries/sim/notify",
        "https://127.1.2.3/x",
        "http://[::1]:9/x",
        "http://localhost/x",
        "http://LOCALHOST:1/x",
    ] {
        assert!(is_loopback_url(url), "{url}");
    }
    for url in [
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.1/x",
        "http://0.0.0.0/x",
        "http://[::2]/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://example.org/x",
        "http://localhost.example.org/x",
        "http://127.0.0.1.nip.io/x",
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "127.0.0.1/x",
    ] {
        assert!(!is_loopback_url(url), "{url}");
    }
}
