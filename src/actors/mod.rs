//! The actors: one `PaymentActor` per open payment, supervised and placed by the
//! `PaymentRegistry`. `flow` holds the saga steps they run.

pub mod flow;
pub mod pacing;
pub mod payment;
pub mod registry;
pub mod shard;
pub mod timers;

use std::sync::Arc;

use crate::domain::schedule::PollSchedule;
use crate::intermediary::Intermediaries;
use crate::store::{Store, StoreError};

pub use payment::{CommandReply, PaymentActor, PaymentCommand};
pub use registry::{
    Drain, Ensure, Forward, GetOwnedPartitions, GetStats, Ownership, PartitionsAssigned,
    PartitionsRevoked, PaymentRegistry, RearmOpen, RegistryStats, Touch, TouchSeen, Wheel,
};

/// What every payment actor needs from the outside world.
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub intermediaries: Intermediaries,
    pub schedule: PollSchedule,
    /// Base of the links that point back at cassa, without trailing `/`.
    pub public_url: String,
    /// The updater role: tell the platform the outcome at `links.notify[]`.
    pub notify_platform: bool,
    /// The outbound policy and its clients (the platform's notify endpoints).
    pub outbound: Arc<crate::outbound::Outbound>,
    /// An actor whose next work is further away than this stops (passivates); the
    /// registry's timer wheel wakes it in time. `None`: actors stay resident.
    pub passivate_after: Option<std::time::Duration>,
    /// Benchmarks: records how late each timer fired.
    pub timer_lag: Option<Arc<TimerLag>>,
}

/// How late payment timers fire (benchmarks): milliseconds past `next_check_at`.
#[derive(Debug, Default)]
pub struct TimerLag {
    samples: std::sync::Mutex<Vec<u32>>,
}

impl TimerLag {
    /// Records one firing `late_ms` after it was due.
    pub fn record(&self, late_ms: u32) {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(late_ms);
    }

    /// How many firings were recorded.
    pub fn count(&self) -> usize {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The `q` quantile (0..=1) of the recorded lateness, in ms.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let index = ((samples.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        samples.get(index).copied()
    }
}

/// Why a command to a payment could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The payment's state does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// Not possible yet; retry shortly (409).
    #[error("{0}")]
    NotReady(String),
    /// Temporarily impossible (503).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
