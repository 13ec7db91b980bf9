//! The built-in simulator's mount (issue 25 point 10): `/sim` is served only when
//! `CASSA_SIMULATOR` is on, which is the default of the embedded demo alone (the
//! default elsewhere is a unit test of `Settings::simulator_mounted`).

use crate::helpers::*;

/// Whether a cassa on `backend` with `CASSA_SIMULATOR` = `setting` answers the
/// simulator's `/sim/stats`.
async fn serves_sim(backend: Backend, setting: Option<bool>) -> bool {
    let app = TestApp::spawn_with(
        backend,
        |s| s.intermediaries.simulator = setting,
        Default::default(),
    )
    .await;
    match app.get("/sim/stats").await.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("/sim/stats answered {other}"),
    }
}

/// Embedded (SQLite, no brokers): mounted by default (the demo), and it can be turned off.
#[actix_rt::test]
async fn the_embedded_demo_mounts_the_simulator_unless_told_not_to() {
    assert!(serves_sim(Backend::Sqlite, None).await);
    assert!(!serves_sim(Backend::Sqlite, Some(false)).await);
}
