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
            s.poll_schedule = "*:3s".parse().unwrap();
            s.passivate_after = Duration::from_secs(1);
        },
        Overrides::default(),
    )
    .await;
    let id = app.create(&pagopa_body("6.00")).await["id"].as_str().unwrap().to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 15).await;
    let planned = cassa::domain::time::parse(pending["links"]["update"]["next_check_at"].as_str().unwrap()).unwrap();

    // Its next check is 3 s away, beyond the 1 s limit: no actor stays resident.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = app.registry_stats().await;
        if stats.passivated >= 1 && stats.resident == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never passivated: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.sim.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    let done = app.wait_for(&id, "COMPLETE", 15).await;
    let checked = cassa::domain::time::parse(done["links"]["update"]["last_check_at"].as_str().unwrap()).unwrap();
    assert!(checked >= planned, "checked at {checked}, planned {planned}");
    assert!(checked - planned <= chrono::Duration::seconds(3), "woken late: checked at {checked}, planned {planned}");
    let stats = app.registry_stats().await;
    assert!(stats.woken >= 1, "the wheel woke it: {stats:?}");
}
