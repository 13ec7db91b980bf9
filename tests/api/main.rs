//! Integration tests: one binary (link once), a module per area. Every test talks HTTP
//! to a real cassa on port 0, backed by a real SQLite file or PostgreSQL database, with
//! the simulator on its own port over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apache_kafka;
mod authz;
mod bench;
mod config_api;
mod hardening;
mod helpers;
mod idempotency;
mod kafka;
mod ledger;
mod metrics;
mod outbound;
mod payments;
mod restart;
mod scale_out;
mod schedule;
mod simulator;
mod store_suite;
mod supervision;
mod timers;
mod validation;
mod wallet;
