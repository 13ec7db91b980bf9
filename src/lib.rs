//! cassa: a payment orchestrator for e-government platforms. One supervised actor per
//! open payment; see `docs/architecture.md`.

pub mod actors;
pub mod auth;
pub mod bench;
pub mod config;
pub mod domain;
pub mod http;
pub mod intake;
pub mod intermediary;
pub mod kafka;
pub mod outbound;
pub mod secrets;
pub mod seed;
pub mod server;
pub mod simulator;
pub mod store;
pub mod tenancy;
