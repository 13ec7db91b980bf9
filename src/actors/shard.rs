//! What the payment actors of one arbiter share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::pacing::Pacers;
use super::payment::ActorExited;
use super::timers::Timers;
use super::Deps;
use crate::store::StoredPayment;

/// What the actors of one arbiter share: one `Arc` per actor instead of a copy of each
/// of these (an actix `Recipient` clone alone costs three allocations).
pub struct Shard {
    pub deps: Arc<Deps>,
    /// The arbiter's timer wheel.
    pub timers: Arc<Timers>,
    /// Where actors report their end.
    pub exits: Recipient<ActorExited>,
    /// Rows just created, for their new actor's first check.
    pub fresh: FreshRows,
    /// Paces overdue work under each intermediary's call rate (shared by all arbiters).
    pub pacers: Option<Arc<Pacers>>,
}

/// Rows just created, each handed to the first check of its new actor (due at once),
/// which would otherwise read back what the creation has just returned. Only for a
/// second, and dropped when the actor runs a command, reloads or ends first: a command
/// may call the intermediary before a stale row would show as a version conflict.
#[derive(Default)]
pub struct FreshRows(std::sync::Mutex<HashMap<Uuid, (std::time::Instant, StoredPayment)>>);

/// How long a row just created may stand in for a read.
const FRESH_FOR: Duration = Duration::from_secs(1);

impl FreshRows {
    pub fn put(&self, row: StoredPayment) {
        self.rows()
            .insert(row.payment.id, (std::time::Instant::now(), row));
    }

    /// The row, if it is still fresh; dropped either way.
    pub fn take(&self, id: Uuid) -> Option<StoredPayment> {
        let (at, row) = self.rows().remove(&id)?;
        (at.elapsed() < FRESH_FOR).then_some(row)
    }

    fn rows(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, (std::time::Instant, StoredPayment)>> {
        // The map stays whole whatever a panicking holder did: a plain insert or remove.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
