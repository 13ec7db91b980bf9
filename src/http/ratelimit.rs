//! A per-caller token bucket (`CASSA_CREATE_RATE_LIMIT`): each token subject may create
//! `rate` payments per second, with a burst of one second's worth. Excess gets 429 with
//! `Retry-After`. Idle buckets are forgotten, so the map stays as small as the set of
//! callers active in the last few seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by caller.
#[derive(Debug)]
pub struct RateLimiter {
    /// Requests per second per caller; `0` disables the limit.
    rate: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` per second per caller (`0`: unlimited).
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes a token for `caller`, or says how long to wait for one.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        self.check_at(caller, Instant::now())
    }

    /// `check` as an answer: a 429 with `Retry-After` when `caller` has no token left.
    pub fn admit(&self, caller: &str) -> Result<(), super::problem::ApiError> {
        self.check(caller)
            .map_err(|wait| super::problem::ApiError::TooManyRequests {
                limit: self.rate.to_string(),
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
    }

    fn check_at(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            // A bucket idle for a second is full again: forgetting it changes nothing.
            buckets.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(1));
        }
        let bucket = buckets.entry(caller.to_string()).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// At most one event per key per `every` (e.g. one check of a payment per few seconds
/// from unauthenticated triggers); keys idle for longer are forgotten.
#[derive(Debug)]
pub struct Cooldown {
    every: Duration,
    last: Mutex<HashMap<uuid::Uuid, Instant>>,
}

impl Cooldown {
    /// One per `every` per key.
    pub fn new(every: Duration) -> Self {
        Cooldown {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may act now (and if so, its time starts again).
    pub fn ready(&self, key: uuid::Uuid) -> bool {
        self.ready_at(key, Instant::now())
    }

    fn ready_at(&self, key: uuid::Uuid, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() > SWEEP_ABOVE {
            last.retain(|_, at| now.duration_since(*at) < self.every);
        }
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < self.every => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let limiter = RateLimiter::new(5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        let wait = limiter.check_at("a", t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another caller has its own bucket.
        assert!(limiter.check_at("b", t0).is_ok());
        // A fifth of a second later, one more token.
        assert!(limiter
            .check_at("a", t0 + Duration::from_millis(200))
            .is_ok());
        assert!(limiter
            .check_at("a", t0 + Duration::from_millis(200))
            .is_err());
    }

    #[test]
    fn a_cooldown_lets_one_through_per_period_and_key() {
        let cooldown = Cooldown::new(Duration::from_secs(5));
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let t0 = Instant::now();
        assert!(cooldown.ready_at(a, t0));
        assert!(!cooldown.ready_at(a, t0 + Duration::from_secs(4)));
        assert!(cooldown.ready_at(b, t0 + Duration::from_secs(4)));
        assert!(cooldown.ready_at(a, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = RateLimiter::new(0);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| limiter.check_at("a", t0).is_ok()));
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = RateLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            let _ = limiter.check_at(&i.to_string(), t0);
        }
        let _ = limiter.check_at("late", t0 + Duration::from_secs(2));
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
