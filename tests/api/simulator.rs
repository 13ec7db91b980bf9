//! The built-in simulator's mount (issue 25 point 10): `/sim` is served only when
//! `CASSA_SIMULATOR` is on, which is the default of the embedded demo alone.

use crate::helpers::*;

/// Whether this cassa answers the simulator's `/sim/stats`.
async fn serves_sim(app: &TestApp) -> bool {
    match app.get("/sim/stats").await.status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("/sim/stats answered {other}"),
    }
}

#[actix_rt::test]
async fn the_simulator_is_mounted_only_when_asked() {
    // Embedded (SQLite, no brokers): the demo's default, and it can be turned off.
    let demo = TestApp::spawn(Backend::Sqlite).await;
    assert!(serves_sim(&demo).await);
    let off = TestApp::spawn_with(
        Backend::Sqlite,
        |s| s.simulator = Some(false),
        Default::default(),
    )
    .await;
    assert!(!serves_sim(&off).await);
    // Not embedded: never by default, only when asked.
    let production = TestApp::spawn(Backend::Postgres).await;
    assert!(!serves_sim(&production).await);
    let asked = TestApp::spawn_with(
        Backend::Postgres,
        |s| s.simulator = Some(true),
        Default::default(),
    )
    .await;
    assert!(serves_sim(&asked).await);
}
