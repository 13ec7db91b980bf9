//! Issue 23, end to end: nobody can make cassa call, or send citizens to, a URL the
//! outbound policy does not allow. Every target is on this machine: loopback trap
//! servers (127.0.0.1 and [::1]) that count what reaches them, and test host names the
//! instance's resolver maps to 127.0.0.1 (no DNS at all). The instance allows only
//! `http://*.trap.test` and `*.secure.test` (wildcards: public addresses only) and its
//! seeded simulator, so each URL below must be refused at write time (400 naming the
//! field) and, planted in the database, at call time, with the traps receiving nothing.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cassa::actors::Ensure;
use cassa::auth::Role;
use cassa::domain::payment::Payment;
use cassa::domain::saga::SagaState;
use cassa::seed::{DEMO_SERVICE, DEMO_TENANT};
use cassa::server::Overrides;
use cassa::store::{NewPayment, ServiceConfig, StoredPayment};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// A loopback listener that counts connections and answers 200 to each.
pub struct Trap {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
}

pub async fn trap(addr: &str) -> Option<Trap> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    let port = listener.local_addr().ok()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Some(Trap { port, hits })
}

/// The guarded instance, its traps (the [::1] one when this machine has IPv6).
struct Guarded {
    app: TestApp,
    v4: Trap,
    v6: Option<Trap>,
}

impl Guarded {
    async fn start(backend: Backend) -> Self {
        let v4 = trap("127.0.0.1:0").await.unwrap();
        let v6 = trap("[::1]:0").await;
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let names = [
            "loop.trap.test",
            "ok.trap.test",
            "sim.trap.test",
            "a.secure.test",
        ]
        .into_iter()
        .chain(["elsewhere.test", "localhost"])
        .map(|n| (n.to_string(), loopback))
        .collect();
        let app = TestApp::spawn_with(
            backend,
            |s| {
                s.security.outbound_allow =
                    cassa::outbound::parse_allow_setting("http://*.trap.test,*.secure.test")
                        .unwrap()
            },
            Overrides {
                resolve: Some(names),
                ..Default::default()
            },
        )
        .await;
        Guarded { app, v4, v6 }
    }

    /// What must never be called: (what it is, URL).
    fn refused_urls(&self) -> Vec<(&'static str, String)> {
        let p = self.v4.port;
        let p6 = self.v6.as_ref().map_or(p, |t| t.port);
        vec![
            ("loopback by IP", format!("http://127.0.0.1:{p}/trap")),
            ("IPv6 loopback", format!("http://[::1]:{p6}/trap")),
            ("unspecified", format!("http://0.0.0.0:{p}/trap")),
            (
                "a name resolving to loopback",
                format!("http://loop.trap.test:{p}/trap"),
            ),
            ("localhost", format!("http://localhost:{p}/trap")),
            ("plain http", format!("http://a.secure.test:{p}/trap")),
            (
                "outside the allow-list",
                format!("https://elsewhere.test:{p}/trap"),
            ),
            (
                "credentials",
                format!("https://user:pass@a.secure.test:{p}/trap"),
            ),
        ]
    }

    fn hits(&self) -> usize {
        self.v4.hits.load(Ordering::SeqCst)
            + self
                .v6
                .as_ref()
                .map_or(0, |t| t.hits.load(Ordering::SeqCst))
    }

    /// Stores `payment` as is (as a foreign system or a hand-edited row could) and wakes
    /// its actor.
    async fn plant(&self, payment: Payment, saga: SagaState) -> Uuid {
        let id = payment.id;
        self.app
            .store
            .create_payment(NewPayment {
                next_check_at: Some(cassa::domain::time::now()),
                payment,
                saga,
                idempotency: None,
                hold: None,
            })
            .await
            .unwrap();
        self.app.registry.send(Ensure(id, None)).await.unwrap();
        id
    }

    /// A payment like one the API made, under a new id, with `change` applied to its JSON.
    async fn planted_like(&self, change: impl FnOnce(&mut Value), saga: SagaState) -> Uuid {
        let made = self.app.create(&citizen_body("3.00")).await;
        let mut doc = made.clone();
        let id = Uuid::new_v4();
        doc["id"] = json!(id);
        doc["payment"]["iud"] = json!(Payment::iud_for(id));
        change(&mut doc);
        self.plant(serde_json::from_value(doc).unwrap(), saga).await
    }

    async fn row(&self, id: Uuid) -> StoredPayment {
        self.app.store.payment(id).await.unwrap().unwrap()
    }

    /// Waits until the payment's saga error says `what`; fails after 15 s.
    async fn wait_for_error(&self, id: Uuid, what: &str) -> String {
        let failed = format!("payment {id} failing with {what:?}");
        eventually(&failed, Duration::from_secs(15), || async {
            let saga = self.row(id).await.saga;
            match saga.last_error.as_deref().filter(|e| e.contains(what)) {
                Some(error) => Ok(error.to_string()),
                None => Err(format!("{saga:?}")),
            }
        })
        .await
    }
}

/// Sends `body` with `method` to `url`.
async fn send(
    client: &reqwest::Client,
    method: Method,
    url: String,
    body: &Value,
) -> reqwest::Response {
    client.request(method, url).json(body).send().await.unwrap()
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A service of the demo tenant at `url` (its id chosen by cassa: operators send none).
fn service_at(url: &str) -> Value {
    json!({
        "tenant_id": DEMO_TENANT, "payment_type": ["PAGOPA", "WALLET"], "reason": "Mensa",
        "receiver": {"tax_identification_number": "00743110157", "name": "Comune di Demo"},
        "intermediary": {"kind": "simulator", "url": url}
    })
}

/// Each refused URL as a notify link, a landing link, an intermediary URL and a
/// service's landing: 400 naming the field, nothing stored, the traps untouched.
async fn refused_urls_are_400_when_written(backend: Backend) {
    let g = Guarded::start(backend).await;
    let system = client_with(Some(&token(Role::System, None, "platform")));
    let operator = client_with(Some(&token(Role::Operator, Some(DEMO_TENANT), "op")));
    for (what, url) in g.refused_urls() {
        let mut body = citizen_body("5.00");
        body["links"] = json!({"notify": [{"url": url, "method": "POST"}]});
        let p = problem(g.app.post_json("/v1/payments", &body).await, 400).await;
        assert_eq!(p["field"], "links.notify[0].url", "{what}: {p}");
        body["links"] = json!({"online_payment_landing": {"url": url}});
        let r = send(&system, Method::POST, g.app.url("/v1/payments"), &body).await;
        let p = problem(r, 400).await;
        assert_eq!(
            p["field"], "links.online_payment_landing.url",
            "{what}: {p}"
        );
        let r = send(
            &operator,
            Method::POST,
            g.app.url("/v1/services"),
            &service_at(&url),
        )
        .await;
        let p = problem(r, 400).await;
        assert_eq!(p["field"], "intermediary.url", "{what}: {p}");
        let mut service = service_at(&g.app.sim.base);
        service["landing_url"] = json!(format!("{url}/{{payment_id}}"));
        let r = send(&operator, Method::POST, g.app.url("/v1/services"), &service).await;
        let p = problem(r, 400).await;
        assert_eq!(p["field"], "landing_url", "{what}: {p}");
    }
    let listed: Value = g.app.get("/v1/payments").await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]), "nothing half-written");
    let services: Value = g.app.get("/v1/services").await.json().await.unwrap();
    assert!(
        services["items"].as_array().unwrap().iter().all(|s| [
            json!(cassa::seed::DEMO_SERVICE),
            json!(cassa::seed::DEMO_TOP_UP_SERVICE)
        ]
        .contains(&s["id"])),
        "only the demo's: {services}"
    );
    assert_eq!(g.hits(), 0, "a refused URL reached a trap");
}

on_both_databases!(refused_urls_are_400_when_written);

/// The same URLs planted in the database (a foreign payment adopted from Kafka, a row
/// edited by hand): notify fails visibly, intermediaries are never called, /landing
/// does not redirect, and the traps receive nothing.
async fn planted_urls_are_refused_when_called(backend: Backend) {
    let g = Guarded::start(backend).await;
    let urls = g.refused_urls();

    // Notify: every link refused, each named in the saga's error; retried, not dropped.
    let links: Vec<Value> = urls
        .iter()
        .map(|(_, url)| json!({"url": url, "method": "POST"}))
        .collect();
    let notified = g
        .planted_like(
            |doc| {
                doc["status"] = json!("COMPLETE");
                doc["links"]["notify"] = json!(links);
            },
            SagaState::default(),
        )
        .await;
    let error = g
        .wait_for_error(notified, "refused by the outbound policy")
        .await;
    // Every link is tried in one round: wait for the round that names them all.
    let names_all = |error: &str| urls.iter().all(|(_, url)| error.contains(url.as_str()));
    let error = if names_all(&error) {
        error
    } else {
        eventually(
            "an error naming every link",
            Duration::from_secs(15),
            || async {
                let error = g.row(notified).await.saga.last_error.unwrap_or_default();
                if names_all(&error) {
                    Ok(error)
                } else {
                    Err(error)
                }
            },
        )
        .await
    };
    assert!(
        error.contains("loop.trap.test resolves to 127.0.0.1 (loopback)"),
        "{error}"
    );
    let row = g.row(notified).await;
    assert!(
        row.payment.links.notify.iter().all(|l| l.sent_at.is_none()),
        "{:?}",
        row.payment.links.notify
    );

    // Intermediaries: a service row written around the API, a payment for it.
    let mut planted_services = Vec::new();
    for (what, url) in &urls {
        let id = Uuid::new_v4();
        let now = cassa::domain::time::now();
        g.app
            .store
            .insert_service(&ServiceConfig {
                id,
                tenant_id: DEMO_TENANT,
                payment_types: vec![cassa::domain::payment::PaymentType::Pagopa],
                intermediary_kind: "simulator".into(),
                intermediary_url: url.clone(),
                active: true,
                document: json!({}),
                credentials: None,
                created_at: now,
                updated_at: now,
                version: 0,
            })
            .await
            .unwrap();
        let mut body = citizen_body("6.00");
        body["service_id"] = json!(id);
        let payment = g.app.create(&body).await;
        planted_services.push((*what, payment["id"].as_str().unwrap().to_string()));
    }
    for (what, id) in &planted_services {
        let id = Uuid::parse_str(id).unwrap();
        let error = g.wait_for_error(id, "refused by the outbound policy").await;
        assert_eq!(
            g.row(id).await.payment.status.as_str(),
            "CREATION_PENDING",
            "{what}: {error}"
        );
    }

    // Landing: cassa's own page instead of a redirect off the allow-lists.
    for (what, url) in urls.iter().map(|(w, u)| (*w, u.clone())).chain([(
        "the phishing example",
        "https://evil.test/phish".to_string(),
    )]) {
        let id = g
            .planted_like(
                |doc| {
                    doc["status"] = json!("COMPLETE");
                    doc["links"]["online_payment_landing"]["url"] = json!(url);
                },
                SagaState::default(),
            )
            .await;
        let r = g.app.get(&format!("/v1/payments/{id}/landing")).await;
        assert_eq!(r.status(), 200, "{what}: {url}");
        assert!(r.headers().get("location").is_none(), "{what}");
    }

    // Online payment: a checkout address off the allow-lists (as an intermediary could
    // answer one) is not redirected to.
    for url in ["https://evil.test/checkout".to_string(), urls[0].1.clone()] {
        let saga = SagaState {
            checkout_url: Some(url.clone()),
            ..Default::default()
        };
        let id = g
            .planted_like(|doc| doc["status"] = json!("PAYMENT_PENDING"), saga)
            .await;
        let r = g
            .app
            .get(&format!("/v1/payments/{id}/online-payment"))
            .await;
        assert_eq!(r.status(), 503, "{url}");
        assert!(r.headers().get("location").is_none(), "{url}");
    }

    let metrics = g.app.get("/metrics").await.text().await.unwrap();
    for reason in ["url", "dns", "redirect"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "cassa_outbound_refused_total{{reason=\"{reason}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no {reason} counter: {metrics}"));
        assert_ne!(line.rsplit(' ').next(), Some("0"), "{line}");
    }
    assert_eq!(g.hits(), 0, "a refused URL reached a trap");
}

on_both_databases!(planted_urls_are_refused_when_called);

/// Hosts an admin opens for the tenant work end to end, through the guard's resolver:
/// a notify link and an intermediary on names that resolve to loopback, named exactly
/// in `allowed_hosts`; the service's landing for citizens. Citizens may not set links.
#[actix_rt::test]
async fn hosts_an_admin_allows_for_the_tenant_work_end_to_end() {
    let g = Guarded::start(Backend::Sqlite).await;
    let sim_port = g
        .app
        .sim
        .base
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let operator = client_with(Some(&token(Role::Operator, Some(DEMO_TENANT), "op")));
    let citizen = client_with(Some(&citizen_token()));
    let ok_notify = format!("http://ok.trap.test:{}/notify", g.v4.port);

    // Only admins change a tenant (allowed_hosts included).
    let opened = json!({"allowed_hosts": [
        format!("http://ok.trap.test:{}", g.v4.port),
        format!("http://sim.trap.test:{sim_port}"),
        "https://pay.comune.test"
    ]});
    let r = send(
        &operator,
        Method::PATCH,
        g.app.url(&format!("/v1/tenants/{DEMO_TENANT}")),
        &opened,
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = send(
        &g.app.client,
        Method::PATCH,
        g.app.url(&format!("/v1/tenants/{DEMO_TENANT}")),
        &opened,
    )
    .await;
    let tenant = problem(r, 200).await;
    assert_eq!(tenant["allowed_hosts"][2], "https://pay.comune.test");
    let r = send(
        &g.app.client,
        Method::PATCH,
        g.app.url(&format!("/v1/tenants/{DEMO_TENANT}")),
        &json!({"allowed_hosts": ["*.it"]}),
    )
    .await;
    assert_eq!(problem(r, 400).await["field"], "allowed_hosts[0]");

    // A citizen cannot hand cassa links, allowed or not.
    let mut body = citizen_body("7.00");
    body["links"] = json!({"notify": [{"url": ok_notify}]});
    let r = send(&citizen, Method::POST, g.app.url("/v1/payments"), &body).await;
    assert_eq!(problem(r, 400).await["field"], "links.notify");
    body["links"] = json!({"online_payment_landing": {"url": "https://pay.comune.test/x"}});
    let r = send(&citizen, Method::POST, g.app.url("/v1/payments"), &body).await;
    assert_eq!(
        problem(r, 400).await["field"],
        "links.online_payment_landing"
    );
    assert_eq!(g.hits(), 0);

    // The platform's notify link on the opened host is told.
    let mut platforms = citizen_body("8.00");
    platforms["links"] = json!({"notify": [{"url": ok_notify, "method": "POST"}]});
    let paid = g.app.create(&platforms).await;
    let id = paid["id"].as_str().unwrap();
    let pending = g.app.wait_for(id, "PAYMENT_PENDING", 15).await;
    g.app
        .sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    g.app.wait_for(id, "COMPLETE", 15).await;
    eventually("the platform told", Duration::from_secs(15), || async {
        let p = g.app.get_payment(id).await;
        if p["links"]["notify"][0]["sent_at"].is_null() {
            Err(p)
        } else {
            Ok(())
        }
    })
    .await;
    assert!(g.hits() >= 1);

    // An intermediary on an opened name, and the service's landing for citizens.
    let mut config = service_at(&format!("http://sim.trap.test:{sim_port}/sim"));
    config["landing_url"] = json!("https://pay.comune.test/ritorno/{payment_id}");
    let r = send(&operator, Method::POST, g.app.url("/v1/services"), &config).await;
    let service = problem(r, 201).await["id"].clone();
    let mut body = citizen_body("9.00");
    body["service_id"] = json!(service);
    let r = send(&citizen, Method::POST, g.app.url("/v1/payments"), &body).await;
    let made = problem(r, 202).await;
    let id = made["id"].as_str().unwrap();
    g.app.wait_for(id, "PAYMENT_PENDING", 15).await;
    let r = g.app.get(&format!("/v1/payments/{id}/landing")).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("https://pay.comune.test/ritorno/{id}").as_str()
    );
    // The demo service names no landing: cassa's own page.
    let r = send(
        &citizen,
        Method::POST,
        g.app.url("/v1/payments"),
        &citizen_body("9.10"),
    )
    .await;
    let own = problem(r, 202).await;
    let r = g
        .app
        .get(&format!(
            "/v1/payments/{}/landing",
            own["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(DEMO_SERVICE.to_string(), own["service_id"]);
}

/// Every HTML route of the router (`cassa::server::route_list`, the list the server
/// mounts, the simulator's included) sends the strict headers; every route sends
/// `nosniff` and `no-referrer`; `/v1/` answers are `no-store`. A new page is in that list
/// the moment it is mounted, so it is checked too.
#[actix_rt::test]
async fn every_html_page_and_personal_answer_carries_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let made = app.create(&citizen_body("4.00")).await;
    let id = made["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    let iuv = pending["payment"]["iuv"].as_str().unwrap().to_string();
    let openapi: Value = serde_json::from_str(cassa::http::OPENAPI).unwrap();
    let mut html_routes = Vec::new();
    let routes = cassa::server::route_list();
    assert!(routes.len() > 30, "{routes:?}");
    for (_, route) in routes.iter().filter(|(m, _)| m.as_str() == "GET") {
        let path = route
            .replace(
                "{id}",
                if route.starts_with("/v1/payments") {
                    &id
                } else {
                    "00000000-0000-4000-8000-000000000002"
                },
            )
            .replace("{name}", "sim")
            .replace("{iuv}", &iuv);
        let r = app.get(&path).await;
        let headers = r.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{route}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{route}");
        if route.starts_with("/v1/") {
            assert_eq!(headers["cache-control"], "no-store", "{route}");
        }
        let html = headers
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("text/html"));
        let documented_html = openapi["paths"][route.as_str()]["get"]["responses"]
            .as_object()
            .is_some_and(|answers| {
                answers
                    .values()
                    .any(|r| r["content"].get("text/html").is_some())
            });
        if html || documented_html {
            assert!(html, "{route} is documented as HTML but answered otherwise");
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{route}: {csp}");
            assert!(csp.contains("default-src 'none'"), "{route}: {csp}");
            html_routes.push(route.clone());
        }
    }
    for page in ["/v1/payments/{id}/landing", "/sim/checkout/{iuv}"] {
        assert!(html_routes.contains(&page.to_string()), "{html_routes:?}");
    }
    // The simulator's checkout page, where the citizen pays.
    let r = app.get(&format!("/v1/payments/{id}/online-payment")).await;
    assert_eq!(r.status(), 302);
    let checkout = r.headers()["location"].to_str().unwrap().to_string();
    let r = client_with(None).get(&checkout).send().await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
}

/// The router and `openapi.json` describe the same routes: each mounted route is
/// documented with its method, and each documented one is mounted.
#[test]
fn the_router_and_the_openapi_document_list_the_same_routes() {
    let openapi: Value = serde_json::from_str(cassa::http::OPENAPI).unwrap();
    let mut documented = Vec::new();
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let mut mounted: Vec<String> = cassa::server::route_list()
        .into_iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    documented.sort();
    mounted.sort();
    let undocumented: Vec<_> = mounted.iter().filter(|r| !documented.contains(r)).collect();
    let unmounted: Vec<_> = documented.iter().filter(|r| !mounted.contains(r)).collect();
    assert!(
        undocumented.is_empty() && unmounted.is_empty(),
        "mounted but not in openapi.json: {undocumented:?}; documented but not mounted: {unmounted:?}"
    );
}
