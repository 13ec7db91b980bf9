//! An actor that panics inside a handler is noticed by the registry, restarted from its
//! row, and its payment still completes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use cassa::intermediary::http::{HttpIntermediary, HttpIntermediaryConfig};
use cassa::server::Overrides;

use crate::helpers::*;

#[actix_rt::test]
async fn a_panicking_actor_is_restarted_from_its_row_and_completes() {
    let sim = TestSimulator::start();
    let outbound = cassa::outbound::Outbound::new(Default::default(), Duration::from_secs(5));
    let real = HttpIntermediary::new(
        HttpIntermediaryConfig::new(sim.base.clone()),
        outbound.client(None).unwrap(),
    );
    let panicky = Arc::new(PanicOnce {
        inner: Arc::new(real),
        fired: AtomicBool::new(false),
    });
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        |_| {},
        Overrides {
            intermediary: Some(panicky.clone()),
            ..Default::default()
        },
    )
    .await;
    let id = app.create(&pagopa_body("15.00")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.wait_for(&id, "PAYMENT_PENDING", 10).await;
    assert!(
        panicky.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the panic happened"
    );
    let stats = app.registry_stats().await;
    assert_eq!(stats.crashes, 1, "{stats:?}");
    assert_eq!(stats.restarts, 1, "{stats:?}");

    sim.pay(pending["payment"]["iuv"].as_str().unwrap()).await;
    app.wait_for(&id, "COMPLETE", 10).await;
    assert_eq!(sim.stats().await.positions_created, 1);
}
