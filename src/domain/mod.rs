//! Pure types and rules of cassa: no I/O, no clock reads except where a function says so.
//! Everything else in the crate depends on this module; it depends on nothing else.

pub mod field;
pub mod money;
pub mod pagopa;
pub mod partition;
pub mod payment;
pub mod saga;
pub mod schedule;
pub mod status;
pub mod tax_code;
pub mod text;
pub mod time;

#[cfg(test)]
mod tests;
