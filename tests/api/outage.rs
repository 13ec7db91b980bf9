//! The database goes away and comes back (issue 21). cassa reaches this test's
//! PostgreSQL database through a loopback TCP relay; the outage is the relay dropping
//! every connection and refusing new ones, as a database host that went down would, with
//! the rest of the cluster untouched. Meanwhile cassa answers 503 problems quickly and
//! `/readyz` says not ready; once the relay is back, everything resumes without a
//! restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cassa::server::Overrides;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

/// A TCP relay to PostgreSQL that can be taken down (every connection dropped, new ones
/// closed at once) and brought back.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Relay {
    async fn to(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (accepting, epochs) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed
                }
                let target = target.clone();
                let mut down = epochs.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.changed() => {}
                    }
                });
            }
        });
        Relay {
            port,
            up,
            generation,
        }
    }

    fn take_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn bring_back(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[actix_rt::test]
async fn a_database_outage_answers_503_and_everything_resumes_after_it() {
    if postgres_skipped(concat!(
        module_path!(),
        "::a_database_outage_answers_503_and_everything_resumes_after_it"
    )) {
        return;
    }
    let admin = std::env::var("TEST_PG_URL").unwrap();
    let host = admin
        .split_once('@')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let relay = Relay::to(host.clone()).await;
    let relayed = format!("@127.0.0.1:{}/", relay.port);
    let app = TestApp::spawn_with(
        Backend::Postgres,
        |s| {
            s.database.database_url = s
                .database
                .database_url
                .replace(&format!("@{host}/"), &relayed)
        },
        Overrides::default(),
    )
    .await;
    let before = app.create_id(&pagopa_body("4.00")).await;
    let pending = app.wait_for(&before, "PAYMENT_PENDING", 10).await;
    let iuv = pending["payment"]["iuv"].as_str().unwrap();

    relay.take_down();
    // Paid while cassa cannot write it down: the actor backs off and records it later.
    app.sim.pay(iuv).await;
    // A hang is a failure too: no answer may take longer than this.
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", admin_token());
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .default_headers(headers)
        .build()
        .unwrap();
    let create_body = pagopa_body("5.00");
    for (what, request) in [
        ("/readyz", impatient.get(app.url("/readyz"))),
        (
            "a read",
            impatient.get(app.url(&format!("/v1/payments/{before}"))),
        ),
        (
            "a create",
            impatient.post(app.url("/v1/payments")).json(&create_body),
        ),
    ] {
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(answer.status(), 503, "{what} while the database is down");
        assert_eq!(
            answer.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
    }

    relay.bring_back();
    eventually("ready again", Duration::from_secs(20), || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    let after = eventually(
        "a create accepted again",
        Duration::from_secs(20),
        || async {
            let r = app.post_json("/v1/payments", &pagopa_body("6.00")).await;
            if r.status() == 202 {
                Ok(r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string())
            } else {
                Err(r.status().to_string())
            }
        },
    )
    .await;
    app.wait_for(&after, "PAYMENT_PENDING", 20).await;
    app.wait_for(&before, "COMPLETE", 30).await;
}
