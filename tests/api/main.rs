//! Integration tests: one binary (link once), a module per area. Every test talks HTTP
//! to a real cassa on port 0, backed by a real SQLite file or PostgreSQL database, with
//! the simulator on its own port over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Tests `$name::sqlite` and `$name::postgres`, each running `$name(backend)`. The
/// PostgreSQL one passes with a note on the terminal when `TEST_PG_URL` is unset (libtest
/// has no skipped state; `bash .ci/run` always sets it).
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            use crate::helpers::Backend;

            #[actix_rt::test]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await;
            }

            #[actix_rt::test]
            async fn postgres() {
                if crate::helpers::postgres_skipped(concat!(module_path!(), "::postgres")) {
                    return;
                }
                super::$name(Backend::Postgres).await;
            }
        }
    };
}

mod apache_kafka;
mod authz;
mod bench;
mod config_api;
mod demo;
mod fuzz;
mod hardening;
mod helpers;
mod idempotency;
mod kafka;
mod ledger;
mod memory_store;
mod metrics;
mod notice;
mod outage;
mod outbound;
mod payments;
mod restart;
mod scale_out;
mod schedule;
mod simulator;
mod store_suite;
mod structure;
mod supervision;
mod timers;
mod validation;
mod wallet;
