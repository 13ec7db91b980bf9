//! Timers at scale: passivated payments (no resident actor) are woken by the durable
//! timer wheel in time for their next check.

use std::time::Duration;

use cassa::server::Overrides;

use crate::helpers::*;

#[actix_rt::test]
async fn passivated_payments_wake_on_time_and_complete_by_polling() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |s| {
            s.actors.poll_schedule = "*:3s".parse().unwrap();
            s.actors.passivate_after = Duration::from_secs(1);
        },
        Overrides::default(),
    )
    .await;
    let id = app.create(&pagopa_body("6.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    let planned = cassa::domain::time::parse(
        pending["links"]["update"]["next_check_at"]
            .as_str()
            .unwrap(),
    )
    .unwrap();

    // Its next check is 3 s away, beyond the 1 s limit: no actor stays resident.
    eventually("passivated", Duration::from_secs(5), || async {
        let stats = app.registry_stats().await;
        if stats.passivated >= 1 && stats.resident == 0 {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    })
    .await;

    // The wheel wakes it for its planned poll, without any other trigger.
    let polled = eventually("polled", Duration::from_secs(15), || async {
        let p = app.get_payment(&id).await;
        match p["links"]["update"]["last_check_at"].as_str() {
            Some(at) => Ok(cassa::domain::time::parse(at).unwrap()),
            None => Err(p),
        }
    })
    .await;
    assert!(polled >= planned, "polled at {polled}, planned {planned}");
    assert!(
        polled - planned <= chrono::Duration::seconds(3),
        "woken late: polled at {polled}, planned {planned}"
    );
    assert!(app.registry_stats().await.woken >= 1);

    // A command for a passivated payment wakes it and is answered (not 503).
    eventually("passivated again", Duration::from_secs(5), || async {
        app.registry_stats().await.resident == 0
    })
    .await;
    let r = app.post(&format!("/v1/payments/{id}/update")).await;
    assert_eq!(r.status(), 200);
    let r = app.get(&format!("/v1/payments/{id}/online-payment")).await;
    assert_eq!(
        r.status(),
        302,
        "the citizen can start paying a passivated payment"
    );

    app.sim
        .pay(pending["payment"]["iuv"].as_str().unwrap())
        .await;
    app.wait_for(&id, "COMPLETE", 15).await;
}

#[actix_rt::test]
async fn a_hanging_intermediary_call_does_not_delay_another_payment() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Partitions assigned and the intermediary client warm.
    let warm = app.create(&pagopa_body("5.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.wait_for(&warm, "PAYMENT_PENDING", 15).await;
    // .02: the simulator holds these calls past the client's 1 s timeout, every time.
    let mut hanging = Vec::new();
    for i in 0..6 {
        hanging.push(
            app.create(&pagopa_body(&format!("{i}.02"))).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let quick = app.create(&pagopa_body("7.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Sooner than one hanging call gives up (1 s timeout, three attempts: ~3.6 s).
    app.wait_for(&quick, "PAYMENT_PENDING", 3).await;
    for id in &hanging {
        assert_eq!(app.get_payment(id).await["status"], "CREATION_PENDING");
    }
}

fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[actix_rt::test]
async fn the_circuit_opens_while_the_intermediary_is_down_and_closes_when_it_is_back() {
    // The intermediary's port is reserved but not served: calls time out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sim_base = format!("http://{}/sim", listener.local_addr().unwrap());
    let configured = sim_base.clone();
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        move |s| {
            s.intermediaries.simulator_url = Some(configured);
            s.intermediaries.timeout = Duration::from_millis(300);
            s.intermediaries.circuit_failures = 3;
            s.intermediaries.circuit_open_for = Duration::from_secs(2);
        },
        Overrides::default(),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.create(&pagopa_body(&format!("{}.00", 40 + i))).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let name = cassa::intermediary::label(&sim_base);
    let open = format!("cassa_intermediary_circuit_open{{intermediary=\"{name}\"}} ");
    let rejected = format!(
        "cassa_intermediary_rejected_total{{intermediary=\"{name}\",reason=\"circuit_open\"}} "
    );
    let metrics = || async { app.get("/metrics").await.text().await.unwrap() };
    eventually("the circuit open", Duration::from_secs(20), || async {
        let text = metrics().await;
        if metric(&text, &open) == Some(1) {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    // Open: checks are postponed, not failed.
    for id in &ids {
        assert_eq!(app.get_payment(id).await["status"], "CREATION_PENDING");
    }
    let sim = TestSimulator::serve(listener);
    for id in &ids {
        app.wait_for(id, "PAYMENT_PENDING", 30).await;
    }
    let text = metrics().await;
    assert_eq!(metric(&text, &open), Some(0), "closed again: {text}");
    assert!(
        metric(&text, &rejected).unwrap_or(0) >= 1,
        "some calls were postponed while open: {text}"
    );
    assert_eq!(sim.stats().await.positions_created, 4);
}
