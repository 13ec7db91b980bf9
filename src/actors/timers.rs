//! `Timers`: the pending timers of one arbiter's payment actors in one ordered map,
//! driven by one tokio task, instead of a boxed tokio `Sleep` (and an actix future slot)
//! per actor. An armed timer costs a map entry (a 16-byte key and value); when it is due
//! the driver sends the actor a `TimerFired` message with the key, and the actor acts
//! only if that key is still the one it armed. The driver sleeps with tokio's clock, so
//! paused time (tests) moves it like any other timer.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::PaymentActor;

/// Bits of a key that hold the sequence number; the rest hold the due time in ms since
/// the wheel started (2^44 ms: about 557 years).
const SEQ_BITS: u32 = 20;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// An armed timer: ordered by due time, unique within its wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey(NonZeroU64);

impl TimerKey {
    fn due_ms(self) -> u64 {
        self.0.get() >> SEQ_BITS
    }
}

/// A timer of the actor fired.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct TimerFired(pub TimerKey);

/// One arbiter's timer wheel.
pub struct Timers {
    start: Instant,
    state: Mutex<State>,
    /// Wakes the driver when a timer earlier than all others was armed.
    earlier: Notify,
}

#[derive(Default)]
struct State {
    armed: BTreeMap<TimerKey, WeakAddr<PaymentActor>>,
    seq: u64,
}

impl Timers {
    /// An empty wheel; `run` must be spawned for it to fire.
    pub fn new() -> Arc<Self> {
        Arc::new(Timers {
            start: Instant::now(),
            state: Mutex::new(State::default()),
            earlier: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms a timer that sends `actor` a `TimerFired` after `delay` (never earlier;
    /// rounded up to the millisecond).
    pub fn arm(&self, delay: Duration, actor: WeakAddr<PaymentActor>) -> TimerKey {
        // A delay past the clock's end (a paced slot at an absurd rate) is "never".
        let since_start = Instant::now()
            .checked_add(delay)
            .map_or(Duration::MAX, |due| {
                due.saturating_duration_since(self.start)
            });
        let due_ms = since_start.as_nanos().div_ceil(1_000_000);
        let due_ms = u64::try_from(due_ms)
            .unwrap_or(u64::MAX)
            .min(u64::MAX >> SEQ_BITS);
        let mut state = self.state();
        let key = loop {
            state.seq = (state.seq % SEQ_MASK) + 1;
            let Some(key) = NonZeroU64::new((due_ms << SEQ_BITS) | state.seq).map(TimerKey) else {
                continue;
            };
            if !state.armed.contains_key(&key) {
                break key;
            }
        };
        state.armed.insert(key, actor);
        let earliest = state.armed.first_key_value().map(|(k, _)| *k) == Some(key);
        drop(state);
        if earliest {
            self.earlier.notify_one();
        }
        key
    }

    /// Disarms a timer (a no-op when it already fired).
    pub fn cancel(&self, key: TimerKey) {
        self.state().armed.remove(&key);
    }

    /// Timers armed now.
    pub fn len(&self) -> usize {
        self.state().armed.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fires timers as they fall due; runs as long as its arbiter.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = self.state().armed.first_key_value().map(|(k, _)| *k);
            let Some(next) = next else {
                self.earlier.notified().await;
                continue;
            };
            let at = self.start + Duration::from_millis(next.due_ms());
            if at > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.earlier.notified() => continue,
                }
            }
            self.fire_due();
        }
    }

    /// Sends `TimerFired` for every timer due by now.
    fn fire_due(&self) {
        let now_ms = u64::try_from(
            Instant::now()
                .saturating_duration_since(self.start)
                .as_millis(),
        )
        .unwrap_or(u64::MAX >> SEQ_BITS);
        let fired = {
            let mut state = self.state();
            match NonZeroU64::new((now_ms + 1) << SEQ_BITS) {
                Some(limit) => {
                    let later = state.armed.split_off(&TimerKey(limit));
                    std::mem::replace(&mut state.armed, later)
                }
                None => std::mem::take(&mut state.armed),
            }
        };
        for (key, actor) in fired {
            if let Some(addr) = actor.upgrade() {
                // One message per armed timer: bounded by the number of actors.
                addr.do_send(TimerFired(key));
            }
        }
    }
}
