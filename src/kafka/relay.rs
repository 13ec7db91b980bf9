//! `OutboxRelay`: publishes the outbox to Kafka. Every state change wrote its event in
//! the same transaction as the row; the relay sends unpublished events in order (key =
//! payment id, idempotent producer) and marks them published only after the broker
//! acknowledged them, so a crash or a broker outage delays events but loses none. One
//! instance publishes at a time (a lease in the database), which keeps each payment's
//! events in order across instances.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{HeldBack, Store, HELD_BACK_COUNTED};

/// Events published per round.
const BATCH: i64 = 500;
/// How long the lease lasts without renewal: longer than the producer's delivery
/// timeout (30 s), so a round stalled on a slow broker never overlaps another
/// instance's round.
const LEASE_TTL_SECONDS: i64 = 60;
/// The lease is renewed once this much of it has passed, not every round (a renewal is a
/// write on the database's writer). A round that starts just before the renewal and
/// stalls for the whole delivery timeout still ends well inside the lease.
const LEASE_RENEW_AFTER: Duration = Duration::from_secs(LEASE_TTL_SECONDS as u64 / 3);
const LEASE_NAME: &str = "outbox-relay";
/// How often a relay that has caught up asks whether events are held back.
const HELD_CHECK_EVERY: Duration = Duration::from_secs(30);
/// Events held back longer than this are worth a warning: a writing transaction left
/// open (or a forgotten prepared one) stalls every payment's events until it ends.
const HELD_WARN_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Settings of the relay.
#[derive(Clone)]
pub struct OutboxRelay {
    pub store: Arc<dyn Store>,
    pub producer: super::Producer,
    /// Where payment events go (`CASSA_TOPIC_PAYMENTS`). The outbox rows name a topic
    /// too, but were always written as `payments`: the setting decides.
    pub topic: String,
    /// This instance's name in the lease.
    pub instance: String,
    /// Pause between rounds when there was nothing to publish.
    pub idle: Duration,
}

impl OutboxRelay {
    /// Publishes until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(instance = %self.instance, "outbox relay started");
        let mut lease = None;
        let mut held_checked = Instant::now();
        loop {
            let published = match self.round(&mut lease).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay round failed; retrying");
                    0
                }
            };
            // Caught up (as far as it may go) and holding the lease: is anything stuck?
            if published < BATCH as usize
                && lease.is_some()
                && held_checked.elapsed() >= HELD_CHECK_EVERY
            {
                held_checked = Instant::now();
                self.warn_if_held_back().await;
            }
            if published == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.idle) => {}
                    _ = stop.changed() => {}
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Logs a warning when committed events have waited behind an open transaction for
    /// longer than `HELD_WARN_AFTER`, naming what holds them.
    async fn warn_if_held_back(&self) {
        match self.store.held_back_events().await {
            Ok(Some(held)) => {
                if let Some(message) = held_back_warning(&held, crate::domain::time::now()) {
                    tracing::warn!(
                        events = held.events,
                        oldest = %held.oldest,
                        holder = held.holder.as_deref().unwrap_or("(ended meanwhile)"),
                        "{message}"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot tell whether events are held back"),
        }
    }

    /// One round: take the lease (or renew it when `lease`, the time it was last taken,
    /// is old enough), publish a batch in order, mark what was acknowledged. Returns how
    /// many events were published.
    pub async fn round(&self, lease: &mut Option<Instant>) -> anyhow::Result<usize> {
        if !lease.is_some_and(|taken| taken.elapsed() < LEASE_RENEW_AFTER) {
            *lease = None;
            let taken = Instant::now();
            if !self
                .store
                .acquire_lease(
                    LEASE_NAME,
                    &self.instance,
                    chrono::Duration::seconds(LEASE_TTL_SECONDS),
                )
                .await?
            {
                return Ok(0);
            }
            *lease = Some(taken);
        }
        let events = self.store.unpublished_events(BATCH).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let keys: Vec<(String, Option<String>)> = events
            .iter()
            .map(|e| (e.payment_id.to_string(), e.version.map(|v| v.to_string())))
            .collect();
        let deliveries = events.iter().zip(&keys).map(|(event, (key, version))| {
            let mut record = FutureRecord::to(&self.topic)
                .key(key.as_str())
                .payload(event.payload.as_str());
            if let Some(version) = version {
                // Not part of the event contract: lets the owner skip a reload for a
                // version it has seen (its own writes).
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: super::VERSION_HEADER,
                    value: Some(version.as_bytes()),
                }));
            }
            self.producer.send(record, Duration::from_secs(0))
        });
        let results = futures::future::join_all(deliveries).await;
        // Only the acknowledged prefix is marked, so order is kept on retry.
        let mut acknowledged = Vec::with_capacity(events.len());
        for (event, result) in events.iter().zip(results) {
            match result {
                Ok(_) => acknowledged.push(event.seq),
                Err((e, _)) => {
                    tracing::warn!(seq = event.seq, payment_id = %event.payment_id, error = %e, "event not acknowledged; will be re-published");
                    break;
                }
            }
        }
        self.store.mark_published(&acknowledged).await?;
        Ok(acknowledged.len())
    }
}

/// The warning for events held back since `held.oldest`, once that is longer ago than
/// `HELD_WARN_AFTER`.
fn held_back_warning(held: &HeldBack, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let waited = now - held.oldest;
    (held.events > 0 && waited > HELD_WARN_AFTER).then(|| {
        let more = if held.events >= HELD_BACK_COUNTED { " or more" } else { "" };
        format!(
            "{}{more} outbox events have waited {} s behind a transaction still open on the database server; \
             they are published once it ends (commit or roll it back, or COMMIT/ROLLBACK PREPARED)",
            held.events,
            waited.num_seconds()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(events: i64, oldest: chrono::DateTime<chrono::Utc>) -> HeldBack {
        HeldBack {
            events,
            oldest,
            holder: Some("session pid 42".into()),
        }
    }

    #[test]
    fn events_held_back_for_a_minute_are_worth_a_warning_a_moment_is_not() {
        let now = crate::domain::time::now();
        let moment = held(3, now - chrono::TimeDelta::seconds(2));
        assert_eq!(held_back_warning(&moment, now), None);
        let stuck = held(3, now - chrono::TimeDelta::seconds(61));
        let warning = held_back_warning(&stuck, now).unwrap_or_default();
        assert!(
            warning.starts_with("3 outbox events have waited 61 s"),
            "{warning}"
        );
    }
}
