//! cassa: a payment orchestrator for e-government platforms. One supervised actor per
//! open payment; see `ARCHITECTURE.md` in the design folder.

pub mod domain;
pub mod intermediary;
pub mod simulator;
pub mod store;
