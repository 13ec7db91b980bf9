//! A protective decorator around an [`Intermediary`], shared by every payment actor
//! that talks to the same intermediary.
//!
//! [`GuardedIntermediary`] enforces, for all four calls alike:
//!
//! 1. a **rate limit** (token bucket of `rate_per_sec` with burst `burst`): a call
//!    reserves the next token and sleeps asynchronously until it is due; if that is
//!    further away than `max_wait`, it fails at once with
//!    `IntermediaryError::Transient("rate limit: ...")`;
//! 2. a **concurrency cap** of `max_in_flight` calls inside the inner intermediary;
//!    waiting for a slot counts against the same `max_wait`;
//! 3. a **circuit breaker**: after `failure_threshold` consecutive transient failures
//!    the circuit opens for `open_for` and calls fail immediately with
//!    `IntermediaryError::Transient("circuit open: ...")` without reaching the inner
//!    intermediary; then exactly one probe goes through (half-open): a success closes
//!    the circuit, a transient failure re-opens it. Any non-transient answer (`Ok`,
//!    `Refused`, `AlreadyPaid`, `NotFound`) counts as a success: the intermediary
//!    answered.
//!
//! Every rejection is `Transient`, so actors simply postpone their work instead of
//! piling up behind a struggling intermediary. Time is `tokio::time`, so the guard
//! follows a paused tokio clock.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{
    GatewayRequest, GatewayResult, Intermediary, IntermediaryError, Position, PositionRequest,
};

/// Settings of a [`GuardedIntermediary`].
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Sustained calls per second; `0` (or not a positive finite number) disables the
    /// rate limit.
    pub rate_per_sec: f64,
    /// Calls that may go through back to back after a quiet period (at least 1).
    pub burst: u32,
    /// Calls allowed inside the inner intermediary at once; `0` means no cap.
    pub max_in_flight: usize,
    /// Longest a call waits for a rate token plus a concurrency slot before it is
    /// rejected as transient.
    pub max_wait: Duration,
    /// Consecutive transient failures that open the circuit; `0` disables the breaker.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for GuardConfig {
    /// 50 calls/s with burst 50, 32 in flight, 2 s max wait, opens after 5
    /// consecutive transient failures for 30 s.
    fn default() -> Self {
        GuardConfig {
            rate_per_sec: 50.0,
            burst: 50,
            max_in_flight: 32,
            max_wait: Duration::from_secs(2),
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The state of the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are rejected without reaching the intermediary.
    Open,
    /// `open_for` has elapsed: the next call (only one at a time) is a probe.
    HalfOpen,
}

/// A point-in-time view of a guard, for metrics and health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSnapshot {
    /// The circuit's state now (an open circuit whose `open_for` elapsed is reported
    /// as half-open).
    pub state: CircuitState,
    /// Transient failures in a row (reset when a call succeeds or the circuit closes).
    pub consecutive_failures: u32,
    /// Calls rejected because the circuit was open (or a probe was already running).
    pub rejected_open: u64,
    /// Calls rejected because no rate token or concurrency slot came within `max_wait`.
    pub rejected_rate: u64,
    /// Calls forwarded to the inner intermediary.
    pub calls: u64,
}

/// The breaker's internal state.
#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Breaker {
    circuit: Circuit,
    consecutive_failures: u32,
}

#[derive(Debug)]
struct Bucket {
    /// May go negative: tokens reserved by calls that are sleeping until they are due.
    tokens: f64,
    last: Instant,
}

/// How a call was admitted past the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

/// An [`Intermediary`] decorator adding a rate limit, a concurrency cap and a circuit
/// breaker; share one (in an `Arc`) among all the actors of one intermediary.
pub struct GuardedIntermediary {
    inner: Arc<dyn Intermediary>,
    shared: Arc<GuardState>,
}

/// The limits' state, shared by every client of one intermediary (e.g. several services
/// with their own credentials at the same URL).
pub struct GuardState {
    config: GuardConfig,
    bucket: Mutex<Bucket>,
    slots: Option<Semaphore>,
    breaker: Mutex<Breaker>,
    rejected_open: AtomicU64,
    rejected_rate: AtomicU64,
    calls: AtomicU64,
}

impl std::ops::Deref for GuardedIntermediary {
    type Target = GuardState;

    fn deref(&self) -> &GuardState {
        &self.shared
    }
}

impl std::fmt::Debug for GuardedIntermediary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedIntermediary")
            .field("config", &self.config)
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// Frees the half-open probe slot if a probe is dropped (cancelled) before it reports.
struct ProbeSlot<'a> {
    guard: &'a GuardedIntermediary,
    armed: bool,
}

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut breaker = self.guard.breaker();
            if let Circuit::HalfOpen { probing: true } = breaker.circuit {
                breaker.circuit = Circuit::HalfOpen { probing: false };
            }
        }
    }
}

impl GuardedIntermediary {
    /// Wraps `inner`; the bucket starts full and the circuit closed.
    pub fn new(inner: Arc<dyn Intermediary>, config: GuardConfig) -> Self {
        let slots = (config.max_in_flight > 0)
            .then(|| Semaphore::new(config.max_in_flight.min(Semaphore::MAX_PERMITS)));
        let shared = Arc::new(GuardState {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(config.burst.max(1)),
                last: Instant::now(),
            }),
            slots,
            breaker: Mutex::new(Breaker {
                circuit: Circuit::Closed,
                consecutive_failures: 0,
            }),
            rejected_open: AtomicU64::new(0),
            rejected_rate: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            config,
        });
        GuardedIntermediary { inner, shared }
    }

    /// Another client of the same intermediary (other credentials), under the same
    /// limits and circuit.
    pub fn sharing_limits(&self, inner: Arc<dyn Intermediary>) -> GuardedIntermediary {
        GuardedIntermediary {
            inner,
            shared: self.shared.clone(),
        }
    }

    /// The breaker's state and the guard's counters now.
    pub fn snapshot(&self) -> GuardSnapshot {
        let (state, consecutive_failures) = {
            let breaker = self.breaker();
            let state = match breaker.circuit {
                Circuit::Closed => CircuitState::Closed,
                Circuit::Open { until } if Instant::now() < until => CircuitState::Open,
                Circuit::Open { .. } | Circuit::HalfOpen { .. } => CircuitState::HalfOpen,
            };
            (state, breaker.consecutive_failures)
        };
        GuardSnapshot {
            state,
            consecutive_failures,
            rejected_open: self.rejected_open.load(Ordering::Relaxed),
            rejected_rate: self.rejected_rate.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rate_limited(&self) -> bool {
        self.config.rate_per_sec.is_finite() && self.config.rate_per_sec > 0.0
    }

    fn reject_open(&self, op: &str, why: String) -> IntermediaryError {
        self.rejected_open.fetch_add(1, Ordering::Relaxed);
        IntermediaryError::Transient(format!("circuit open: {op} not attempted, {why}"))
    }

    fn reject_rate(&self, why: String) -> IntermediaryError {
        self.rejected_rate.fetch_add(1, Ordering::Relaxed);
        IntermediaryError::Transient(format!("rate limit: {why}"))
    }

    /// Fails fast while the circuit is open, before spending a token or a slot.
    fn precheck(&self, op: &str) -> Result<(), IntermediaryError> {
        let circuit = self.breaker().circuit;
        match circuit {
            Circuit::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(self.reject_open(op, format!("retry in {:?}", until - now)));
                }
                Ok(())
            }
            Circuit::HalfOpen { probing: true } => {
                Err(self.reject_open(op, "a probe call is in progress".to_string()))
            }
            Circuit::Closed | Circuit::HalfOpen { probing: false } => Ok(()),
        }
    }

    /// Decides, right before calling the inner intermediary, whether the call may go
    /// and whether it is the half-open probe.
    fn admit(&self, op: &str) -> Result<Admission, IntermediaryError> {
        let mut breaker = self.breaker();
        match breaker.circuit {
            Circuit::Closed => Ok(Admission::Normal),
            Circuit::Open { until } => {
                let now = Instant::now();
                if now < until {
                    drop(breaker);
                    return Err(self.reject_open(op, format!("retry in {:?}", until - now)));
                }
                breaker.circuit = Circuit::HalfOpen { probing: true };
                Ok(Admission::Probe)
            }
            Circuit::HalfOpen { probing: false } => {
                breaker.circuit = Circuit::HalfOpen { probing: true };
                Ok(Admission::Probe)
            }
            Circuit::HalfOpen { probing: true } => {
                drop(breaker);
                Err(self.reject_open(op, "a probe call is in progress".to_string()))
            }
        }
    }

    /// Updates the breaker with a call's outcome.
    fn record(&self, admission: Admission, transient: bool) {
        let threshold = self.config.failure_threshold;
        let mut breaker = self.breaker();
        if !transient {
            breaker.consecutive_failures = 0;
            if admission == Admission::Probe {
                breaker.circuit = Circuit::Closed;
                tracing::info!("intermediary circuit closed: probe call succeeded");
            }
            return;
        }
        breaker.consecutive_failures = breaker.consecutive_failures.saturating_add(1);
        let failures = breaker.consecutive_failures;
        let open = match (admission, breaker.circuit) {
            (Admission::Probe, _) => true,
            (Admission::Normal, Circuit::Closed) => threshold > 0 && failures >= threshold,
            // A call admitted before the circuit opened: the breaker already reacted.
            (Admission::Normal, _) => false,
        };
        if open {
            breaker.circuit = Circuit::Open {
                until: Instant::now() + self.config.open_for,
            };
            tracing::warn!(
                consecutive_failures = failures,
                open_for = ?self.config.open_for,
                probe = admission == Admission::Probe,
                "intermediary circuit opened: calls are rejected until it recovers"
            );
        }
    }

    /// Reserves a rate token; returns how long to sleep before it is due, or an error
    /// if that is beyond `budget`.
    fn reserve_token(&self, budget: Duration) -> Result<Duration, IntermediaryError> {
        let rate = self.config.rate_per_sec;
        let burst = f64::from(self.config.burst.max(1));
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        let wait = if bucket.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(((1.0 - bucket.tokens) / rate).max(0.0))
        };
        if wait > budget {
            drop(bucket);
            return Err(self.reject_rate(format!(
                "next call slot in {wait:?}, beyond the {:?} limit",
                self.config.max_wait
            )));
        }
        bucket.tokens -= 1.0;
        Ok(wait)
    }

    /// Runs one inner call through the rate limit, the concurrency cap and the breaker.
    async fn guarded<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, IntermediaryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, IntermediaryError>>,
    {
        self.precheck(op)?;
        let deadline = Instant::now() + self.config.max_wait;

        if self.rate_limited() {
            let wait = self.reserve_token(self.config.max_wait)?;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }

        let _permit = match &self.slots {
            None => None,
            Some(slots) => match tokio::time::timeout_at(deadline, slots.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                Ok(Err(_closed)) => {
                    return Err(self.reject_rate("concurrency limiter closed".to_string()))
                }
                Err(_elapsed) => {
                    return Err(self.reject_rate(format!(
                        "{} calls already in flight, no slot within {:?}",
                        self.config.max_in_flight, self.config.max_wait
                    )))
                }
            },
        };

        let admission = self.admit(op)?;
        let mut probe = ProbeSlot {
            guard: self,
            armed: admission == Admission::Probe,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = call().await;
        probe.armed = false;
        self.record(
            admission,
            matches!(result, Err(IntermediaryError::Transient(_))),
        );
        result
    }
}

#[async_trait]
impl Intermediary for GuardedIntermediary {
    async fn create_position(
        &self,
        request: &PositionRequest,
    ) -> Result<Position, IntermediaryError> {
        self.guarded("create_position", || self.inner.create_position(request))
            .await
    }

    async fn position(&self, iuv: &str) -> Result<Position, IntermediaryError> {
        self.guarded("position", || self.inner.position(iuv)).await
    }

    async fn cancel_position(&self, iuv: &str) -> Result<(), IntermediaryError> {
        self.guarded("cancel_position", || self.inner.cancel_position(iuv))
            .await
    }

    async fn execute_payment(
        &self,
        request: &GatewayRequest,
    ) -> Result<GatewayResult, IntermediaryError> {
        self.guarded("execute_payment", || self.inner.execute_payment(request))
            .await
    }
}

#[cfg(test)]
mod tests {
    //! These tests run on real (short) time: the crate's tokio has no `test-util`
    //! feature, so `tokio::time::pause` is not available. Timing assertions are lower
    //! bounds only (which a real clock cannot violate), or generous upper bounds.

    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::intermediary::{GatewayOutcome, PositionState};

    /// How the fake answers one call.
    #[derive(Debug, Clone)]
    enum Answer {
        Ok,
        Err(IntermediaryError),
    }

    fn transient() -> Answer {
        Answer::Err(IntermediaryError::Transient("503".into()))
    }

    /// A scripted inner intermediary that counts calls and concurrent calls.
    struct Fake {
        script: Mutex<VecDeque<Answer>>,
        /// Time each call spends inside; `None` hangs forever.
        delay: Option<Duration>,
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl Fake {
        fn new(script: impl IntoIterator<Item = Answer>) -> Arc<Self> {
            Self::with_delay(script, Some(Duration::ZERO))
        }

        fn with_delay(
            script: impl IntoIterator<Item = Answer>,
            delay: Option<Duration>,
        ) -> Arc<Self> {
            Arc::new(Fake {
                script: Mutex::new(script.into_iter().collect()),
                delay,
                calls: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
            })
        }

        fn push(&self, answer: Answer) {
            self.script.lock().unwrap().push_back(answer);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        async fn answer(&self) -> Result<(), IntermediaryError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            match self.delay {
                Some(d) if d.is_zero() => tokio::task::yield_now().await,
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Answer::Ok)
            {
                Answer::Ok => Ok(()),
                Answer::Err(e) => Err(e),
            }
        }
    }

    fn position() -> Position {
        Position {
            iuv: "01".into(),
            notice_code: "301".into(),
            status: PositionState::Pending,
            checkout_url: "http://checkout".into(),
            paid_at: None,
            transaction_id: None,
        }
    }

    #[async_trait]
    impl Intermediary for Fake {
        async fn create_position(
            &self,
            _: &PositionRequest,
        ) -> Result<Position, IntermediaryError> {
            self.answer().await.map(|()| position())
        }
        async fn position(&self, _: &str) -> Result<Position, IntermediaryError> {
            self.answer().await.map(|()| position())
        }
        async fn cancel_position(&self, _: &str) -> Result<(), IntermediaryError> {
            self.answer().await
        }
        async fn execute_payment(
            &self,
            _: &GatewayRequest,
        ) -> Result<GatewayResult, IntermediaryError> {
            self.answer().await.map(|()| GatewayResult {
                outcome: GatewayOutcome::Approved,
                transaction_id: "t".into(),
            })
        }
    }

    /// No rate limit, no cap: only the breaker.
    fn breaker_only(threshold: u32, open_for: Duration) -> GuardConfig {
        GuardConfig {
            rate_per_sec: 0.0,
            burst: 1,
            max_in_flight: 0,
            max_wait: Duration::from_secs(1),
            failure_threshold: threshold,
            open_for,
        }
    }

    fn is_transient_with(result: Result<(), IntermediaryError>, prefix: &str) -> bool {
        matches!(result, Err(IntermediaryError::Transient(m)) if m.starts_with(prefix))
    }

    #[tokio::test]
    async fn circuit_opens_rejects_probes_once_and_closes() {
        let open_for = Duration::from_millis(40);
        let fake = Fake::new([transient(), transient(), transient()]);
        let guard = GuardedIntermediary::new(fake.clone(), breaker_only(3, open_for));

        for i in 1..=3 {
            assert!(is_transient_with(guard.cancel_position("x").await, "503"));
            assert_eq!(guard.snapshot().consecutive_failures, i);
        }
        assert_eq!(guard.snapshot().state, CircuitState::Open);
        assert_eq!(fake.calls(), 3);

        // Open: every call is rejected without reaching the inner intermediary.
        for _ in 0..5 {
            assert!(is_transient_with(
                guard.cancel_position("x").await,
                "circuit open"
            ));
        }
        assert!(guard.position("x").await.is_err());
        assert_eq!(fake.calls(), 3);
        assert_eq!(guard.snapshot().rejected_open, 6);

        // Half-open: one probe; it fails and the circuit re-opens.
        tokio::time::sleep(open_for + Duration::from_millis(10)).await;
        assert_eq!(guard.snapshot().state, CircuitState::HalfOpen);
        fake.push(transient());
        assert!(is_transient_with(guard.cancel_position("x").await, "503"));
        assert_eq!(fake.calls(), 4);
        assert_eq!(guard.snapshot().state, CircuitState::Open);
        assert!(is_transient_with(
            guard.cancel_position("x").await,
            "circuit open"
        ));
        assert_eq!(fake.calls(), 4);

        // A successful probe closes it and resets the counter.
        tokio::time::sleep(open_for + Duration::from_millis(10)).await;
        assert!(guard.cancel_position("x").await.is_ok());
        let snap = guard.snapshot();
        assert_eq!(snap.state, CircuitState::Closed);
        assert_eq!(snap.consecutive_failures, 0);
        assert_eq!(snap.calls, 5);
        assert!(guard.cancel_position("x").await.is_ok());
        assert_eq!(fake.calls(), 6);
    }

    #[tokio::test]
    async fn half_open_lets_exactly_one_probe_through() {
        let open_for = Duration::from_millis(20);
        let fake = Fake::with_delay([transient()], Some(Duration::from_millis(50)));
        let guard = Arc::new(GuardedIntermediary::new(
            fake.clone(),
            breaker_only(1, open_for),
        ));
        assert!(guard.cancel_position("x").await.is_err());
        assert_eq!(guard.snapshot().state, CircuitState::Open);
        tokio::time::sleep(open_for + Duration::from_millis(10)).await;

        let probe = tokio::spawn({
            let guard = guard.clone();
            async move { guard.cancel_position("x").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The probe is inside the inner intermediary: others are turned away.
        assert!(is_transient_with(
            guard.cancel_position("y").await,
            "circuit open"
        ));
        assert!(probe.await.unwrap().is_ok());
        assert_eq!(fake.calls(), 2);
        assert_eq!(guard.snapshot().state, CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_cancelled_probe_frees_the_probe_slot() {
        let open_for = Duration::from_millis(20);
        let fake = Fake::with_delay([], None);
        let guard = Arc::new(GuardedIntermediary::new(
            fake.clone(),
            breaker_only(1, open_for),
        ));
        // Open the circuit as a failed call would.
        guard.record(Admission::Normal, true);
        assert_eq!(guard.snapshot().state, CircuitState::Open);
        tokio::time::sleep(open_for + Duration::from_millis(10)).await;

        let hanging = tokio::spawn({
            let guard = guard.clone();
            async move { guard.cancel_position("x").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(fake.calls(), 1);
        hanging.abort();
        let _ = hanging.await;

        // The next call is a new probe, not a "probe in progress" rejection.
        let next =
            tokio::time::timeout(Duration::from_millis(20), guard.cancel_position("y")).await;
        assert!(
            next.is_err(),
            "the new probe reached the (hanging) inner one"
        );
        assert_eq!(fake.calls(), 2);
        assert_eq!(guard.snapshot().rejected_open, 0);
    }

    #[tokio::test]
    async fn refused_and_not_found_do_not_open_the_circuit() {
        let refused = || Answer::Err(IntermediaryError::Refused("400".into()));
        let fake = Fake::new([
            refused(),
            Answer::Err(IntermediaryError::NotFound),
            Answer::Err(IntermediaryError::AlreadyPaid),
            refused(),
            refused(),
            // Transient failures interleaved with answers are not consecutive.
            transient(),
            refused(),
            transient(),
            Answer::Err(IntermediaryError::NotFound),
            transient(),
        ]);
        let guard =
            GuardedIntermediary::new(fake.clone(), breaker_only(2, Duration::from_secs(60)));
        for _ in 0..10 {
            let _ = guard.position("x").await;
        }
        let snap = guard.snapshot();
        assert_eq!(snap.state, CircuitState::Closed);
        assert_eq!(snap.consecutive_failures, 1);
        assert_eq!(snap.rejected_open, 0);
        assert_eq!(fake.calls(), 10);
    }

    #[tokio::test]
    async fn rate_limit_spaces_calls() {
        let fake = Fake::new([]);
        let config = GuardConfig {
            rate_per_sec: 100.0,
            burst: 1,
            max_in_flight: 0,
            max_wait: Duration::from_secs(1),
            ..GuardConfig::default()
        };
        let guard = GuardedIntermediary::new(fake.clone(), config);
        let start = Instant::now();
        for _ in 0..5 {
            assert!(guard.cancel_position("x").await.is_ok());
        }
        // The first call uses the burst token, the other four wait 10 ms each.
        assert!(
            start.elapsed() >= Duration::from_millis(39),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(guard.snapshot().rejected_rate, 0);
        assert_eq!(fake.calls(), 5);
    }

    #[tokio::test]
    async fn rate_limit_rejects_calls_beyond_max_wait() {
        let fake = Fake::new([]);
        let config = GuardConfig {
            rate_per_sec: 10.0,
            burst: 2,
            max_in_flight: 0,
            max_wait: Duration::from_millis(50),
            ..GuardConfig::default()
        };
        let guard = GuardedIntermediary::new(fake.clone(), config);
        assert!(guard.cancel_position("x").await.is_ok());
        assert!(guard.cancel_position("x").await.is_ok());
        // The next token is ~100 ms away, beyond max_wait: rejected at once.
        let start = Instant::now();
        assert!(is_transient_with(
            guard.cancel_position("x").await,
            "rate limit"
        ));
        assert!(is_transient_with(
            guard.cancel_position("x").await,
            "rate limit"
        ));
        assert!(start.elapsed() < Duration::from_millis(50));
        let snap = guard.snapshot();
        assert_eq!(snap.rejected_rate, 2);
        assert_eq!(snap.calls, 2);
        assert_eq!(
            snap.state,
            CircuitState::Closed,
            "own rejections are not failures"
        );
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test]
    async fn zero_rate_disables_the_limit() {
        let fake = Fake::new([]);
        let config = GuardConfig {
            rate_per_sec: 0.0,
            burst: 1,
            max_wait: Duration::ZERO,
            ..GuardConfig::default()
        };
        let guard = GuardedIntermediary::new(fake.clone(), config);
        for _ in 0..100 {
            assert!(guard.cancel_position("x").await.is_ok());
        }
        assert_eq!(fake.calls(), 100);
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let fake = Fake::with_delay([], Some(Duration::from_millis(20)));
        let config = GuardConfig {
            rate_per_sec: 0.0,
            max_in_flight: 2,
            max_wait: Duration::from_secs(5),
            ..GuardConfig::default()
        };
        let guard = GuardedIntermediary::new(fake.clone(), config);
        let results = futures::future::join_all((0..6).map(|_| guard.cancel_position("x"))).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(fake.calls(), 6);
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn waiting_for_a_slot_counts_against_max_wait() {
        let fake = Fake::with_delay([], None);
        let config = GuardConfig {
            rate_per_sec: 0.0,
            max_in_flight: 1,
            max_wait: Duration::from_millis(20),
            ..GuardConfig::default()
        };
        let guard = Arc::new(GuardedIntermediary::new(fake.clone(), config));
        let hanging = tokio::spawn({
            let guard = guard.clone();
            async move { guard.cancel_position("x").await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let start = Instant::now();
        assert!(is_transient_with(
            guard.cancel_position("y").await,
            "rate limit"
        ));
        assert!(start.elapsed() >= Duration::from_millis(19));
        assert_eq!(guard.snapshot().rejected_rate, 1);
        assert_eq!(fake.calls(), 1);
        hanging.abort();
    }

    #[tokio::test]
    async fn guards_are_independent() {
        let stuck = Fake::with_delay([], None);
        let config = GuardConfig {
            rate_per_sec: 1.0,
            burst: 1,
            max_in_flight: 1,
            max_wait: Duration::from_secs(60),
            ..GuardConfig::default()
        };
        let slow = Arc::new(GuardedIntermediary::new(stuck.clone(), config.clone()));
        // One call hangs inside, another waits for its slot, a third for a token.
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let slow = slow.clone();
            waiting.push(tokio::spawn(async move { slow.cancel_position("x").await }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(stuck.calls(), 1);

        let fine = Fake::new([]);
        let fast = GuardedIntermediary::new(fine.clone(), config);
        let answer = tokio::time::timeout(Duration::from_secs(5), fast.cancel_position("y")).await;
        assert!(matches!(answer, Ok(Ok(()))));
        assert_eq!(fine.calls(), 1);
        for task in waiting {
            task.abort();
        }
    }

    #[tokio::test]
    async fn all_four_calls_go_through_the_guard() {
        let fake = Fake::new([]);
        let guard = GuardedIntermediary::new(fake.clone(), GuardConfig::default());
        let request = PositionRequest {
            iud: "iud".into(),
            amount_cents: 100,
            reason: "r".into(),
            debtor_tax_code: "X".into(),
            debtor_name: None,
            expire_at: None,
            return_url: None,
            notify_url: None,
        };
        let gateway = GatewayRequest {
            payment_id: uuid::Uuid::nil(),
            account_id: None,
            amount_cents: 100,
        };
        assert!(guard.create_position(&request).await.is_ok());
        assert!(guard.position("x").await.is_ok());
        assert!(guard.cancel_position("x").await.is_ok());
        assert!(guard.execute_payment(&gateway).await.is_ok());
        assert_eq!(guard.snapshot().calls, 4);
        assert_eq!(fake.calls(), 4);
    }
}
