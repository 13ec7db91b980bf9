//! Pacing of the overdue checks actors find when they start (after a restart, a
//! rebalance, a crash): one slot each, at the intermediary's call rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::store::PaymentTiming;

/// Hands out start times one `interval` apart, from now on: the checks that actors find
/// overdue when they start (after a restart, a rebalance, a crash) take one each, in the
/// order the actors start (the registry re-arms the oldest first), so they reach the
/// intermediary at its rate instead of all at once. On tokio's clock.
pub struct Pacer {
    interval: Duration,
    next: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// The widest gap between two slots, whatever the rate (slower is no rate at all).
const MAX_PACE_INTERVAL: Duration = Duration::from_secs(3600);

impl Pacer {
    /// `per_sec` slots per second (not positive, not a number or infinite: every slot is
    /// now; at most an hour apart).
    pub fn per_sec(per_sec: f64) -> Self {
        let interval = if per_sec.is_finite() && per_sec > 0.0 {
            Duration::try_from_secs_f64(1.0 / per_sec).map_or(MAX_PACE_INTERVAL, |interval| {
                interval.min(MAX_PACE_INTERVAL)
            })
        } else {
            Duration::ZERO
        };
        Pacer {
            interval,
            next: Default::default(),
        }
    }

    /// Takes the next free slot: how long until it.
    pub fn next_slot(&self) -> Duration {
        let now = tokio::time::Instant::now();
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = next.map_or(now, |next| next.max(now));
        *next = Some(slot.checked_add(self.interval).unwrap_or(slot));
        slot - now
    }

    /// Gives back every slot taken: the actors that took them stopped (their partitions
    /// were revoked), and the next ones start from now.
    pub fn reset(&self) {
        *self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// One `Pacer` per intermediary, as its guard has one rate limit: the overdue checks of
/// payments at different intermediaries do not wait for each other's slots. A service
/// whose configuration cannot be read shares the pacer of the unknown intermediary.
pub struct Pacers {
    per_sec: f64,
    state: std::sync::Mutex<PacersState>,
}

#[derive(Default)]
struct PacersState {
    /// By intermediary URL (`None`: unknown).
    by_intermediary: HashMap<Option<String>, Arc<Pacer>>,
    /// Services resolved so far.
    by_service: HashMap<Uuid, Arc<Pacer>>,
}

impl Pacers {
    /// Pacers handing out `per_sec` slots per second each.
    pub fn per_sec(per_sec: f64) -> Self {
        Pacers {
            per_sec,
            state: Default::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PacersState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pacer of a service resolved before (`resolve`), or else the one of unknown
    /// intermediaries (the checks are paced either way).
    pub fn resolved(&self, service_id: Uuid) -> Arc<Pacer> {
        let mut state = self.state();
        match state.by_service.get(&service_id) {
            Some(pacer) => pacer.clone(),
            None => self.of_intermediary(&mut state, None),
        }
    }

    fn of_intermediary(&self, state: &mut PacersState, url: Option<String>) -> Arc<Pacer> {
        state
            .by_intermediary
            .entry(url)
            .or_insert_with(|| Arc::new(Pacer::per_sec(self.per_sec)))
            .clone()
    }

    /// The pacer of a service's intermediary (its configuration read once).
    pub async fn for_service(
        &self,
        intermediaries: &crate::intermediary::Intermediaries,
        service_id: Uuid,
    ) -> Arc<Pacer> {
        if let Some(pacer) = self.state().by_service.get(&service_id) {
            return pacer.clone();
        }
        let intermediary = intermediaries.intermediary_of(service_id).await;
        let mut state = self.state();
        let pacer = self.of_intermediary(&mut state, intermediary);
        state.by_service.insert(service_id, pacer.clone());
        pacer
    }

    /// Resolves the pacers of the open payments' services among `timings`, so that
    /// `resolved` finds them.
    pub async fn resolve(
        &self,
        intermediaries: &crate::intermediary::Intermediaries,
        timings: impl IntoIterator<Item = PaymentTiming>,
    ) {
        let open = timings.into_iter().filter(|timing| timing.open);
        let services: std::collections::HashSet<Uuid> = open.map(|t| t.service_id).collect();
        for service_id in services {
            self.for_service(intermediaries, service_id).await;
        }
    }

    /// Resets every pacer (see `Pacer::reset`), and reads the services' intermediaries
    /// again when next asked (a service may have moved to another one).
    pub fn reset(&self) {
        let mut state = self.state();
        for pacer in state.by_intermediary.values() {
            pacer.reset();
        }
        state.by_service.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pacer_hands_out_slots_at_its_rate_from_now_on() {
        let pacer = Pacer::per_sec(4.0);
        let slots: Vec<u128> = (0..4).map(|_| pacer.next_slot().as_millis()).collect();
        assert_eq!(slots, [0, 250, 500, 750]);
        // Time passes: the next slot follows the last one taken.
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(pacer.next_slot().as_millis(), 400);
        // Idle past every slot taken: the next one is now.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(pacer.next_slot(), Duration::ZERO);
        assert_eq!(pacer.next_slot().as_millis(), 250);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_without_a_usable_rate_never_delays() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let pacer = Pacer::per_sec(rate);
            assert_eq!(pacer.next_slot(), Duration::ZERO, "{rate}");
            assert_eq!(pacer.next_slot(), Duration::ZERO, "{rate}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_at_an_absurdly_low_rate_hands_out_a_slot_an_hour() {
        for rate in [1e-19, 1e-300, f64::MIN_POSITIVE] {
            let pacer = Pacer::per_sec(rate);
            let slots: Vec<u64> = (0..3).map(|_| pacer.next_slot().as_secs()).collect();
            assert_eq!(slots, [0, 3600, 7200], "{rate}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_pacer_starts_over_from_now() {
        let pacer = Pacer::per_sec(2.0);
        for _ in 0..10 {
            pacer.next_slot();
        }
        pacer.reset();
        assert_eq!(pacer.next_slot(), Duration::ZERO);
        assert_eq!(pacer.next_slot().as_millis(), 500);
    }
}
