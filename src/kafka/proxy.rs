//! The `payments` consumer (proxy role). All instances join one consumer group on
//! `payments`: the partitions assigned to an instance decide which payments it owns
//! (`PaymentsRebalance` tells the registry), and every event is a trigger for the
//! owner — never applied blindly, since the database is the source of truth. A
//! `CREATION_PENDING` (or imported `PAYMENT_PENDING`) payment written by another system
//! for a service cassa has a configuration for is adopted when it passes the rules of
//! `POST /v1/payments` (`Intake::adopt`): stored, given an actor, created at the
//! intermediary. One that does not is dead-lettered with the reason.

use std::time::Duration;

use actix::Addr;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::ClientContext;
use tokio::sync::watch;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::actors::{PartitionsAssigned, PartitionsRevoked, PaymentRegistry, Touch, TouchSeen};
use crate::domain::payment::{app_id, PaymentEvent};
use crate::domain::status::PaymentStatus;
use crate::domain::time;
use crate::intake::Intake;
use crate::store::{Created, StoreError};
use rdkafka::consumer::RebalanceProtocol;

/// Forwards the group's partition assignments to the registry.
pub struct PaymentsRebalance {
    pub registry: Addr<PaymentRegistry>,
    pub topic: String,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Keeps an embedded broker alive until this consumer is closed.
    pub _broker: super::BrokerGuard,
    /// Whether the group's last assignment was incremental (KIP-848 or a cooperative
    /// assignor) or eager: 0 not yet assigned, 1 eager, 2 incremental.
    pub incremental: Arc<AtomicU8>,
}

impl ClientContext for PaymentsRebalance {}

impl PaymentsRebalance {
    fn partitions_of(&self, list: &rdkafka::TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

impl ConsumerContext for PaymentsRebalance {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.registry
                .do_send(PartitionsRevoked(self.partitions_of(list)));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let protocol = match rdkafka::consumer::Consumer::rebalance_protocol(consumer) {
                RebalanceProtocol::Cooperative => 2,
                RebalanceProtocol::Eager => 1,
                RebalanceProtocol::None => 0,
            };
            self.incremental.store(protocol, Ordering::Relaxed);
            self.registry.do_send(PartitionsAssigned {
                count: self.partitions,
                partitions: self.partitions_of(list),
            });
        }
    }
}

/// What the proxy did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxied {
    /// A payment cassa knows: its owner was told.
    Touched,
    /// A foreign payment was adopted.
    Adopted,
    /// Nothing to do; why.
    Ignored(String),
    /// A foreign payment cassa would handle but that breaks a creation rule: it goes to
    /// the dead-letter topic with this reason.
    Refused(String),
}

/// The fields of a `payments` event that say whose it is, read before the whole event
/// so that one cassa would adopt but that breaks the format can be refused by name.
#[derive(serde::Deserialize)]
struct Envelope {
    id: uuid::Uuid,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    status: Option<PaymentStatus>,
    #[serde(default)]
    service_id: Option<uuid::Uuid>,
}

/// A `payments` event's format error as `field: reason`. The event flattens its payment,
/// and serde loses the path through a flattened struct: the payment alone is read again
/// to find the field.
fn format_error(value: serde_json::Value, error: serde_json::Error) -> String {
    use crate::domain::field::FieldError;
    match serde_path_to_error::deserialize::<_, crate::domain::payment::Payment>(value.clone()) {
        Err(e) => FieldError::from_json(e).to_string(),
        Ok(_) => match serde_path_to_error::deserialize::<_, PaymentEvent>(value) {
            Err(e) => FieldError::from_json(e).to_string(),
            Ok(_) => error.to_string(),
        },
    }
}

/// Handles one event of the `payments` topic.
pub async fn proxy(intake: &Intake<'_>, payload: Option<&[u8]>) -> Result<Proxied, StoreError> {
    let Some(payload) = payload else {
        return Ok(Proxied::Ignored("empty message".into()));
    };
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Ok(Proxied::Ignored(format!("not JSON: {e}"))),
    };
    let envelope: Envelope = match serde_json::from_value(value.clone()) {
        Ok(e) => e,
        Err(e) => return Ok(Proxied::Ignored(format!("not a v2 payment event: {e}"))),
    };
    let id = envelope.id;
    // Only whether it exists: the timing read skips the document.
    if intake.store.payment_timing(id).await?.is_some() {
        // Waits while the registry's mailbox is full: consumption pauses (back-pressure).
        if let Err(e) = intake.registry.send(Touch(id)).await {
            tracing::error!(payment_id = %id, error = %e, "registry unavailable");
        }
        return Ok(Proxied::Touched);
    }
    if envelope.app_id == app_id() {
        return Ok(Proxied::Ignored(
            "cassa's own event for a payment not in this database".into(),
        ));
    }
    match envelope.status {
        Some(PaymentStatus::CreationPending | PaymentStatus::PaymentPending) => {}
        Some(other) => {
            return Ok(Proxied::Ignored(format!(
                "foreign payment in status {other}"
            )))
        }
        None => return Ok(Proxied::Ignored("no status".into())),
    }
    // Services cassa has no configuration for are another system's to handle.
    let Some(service_id) = envelope.service_id else {
        return Ok(Proxied::Ignored("no service_id".into()));
    };
    if intake
        .configs
        .service(intake.store, service_id)
        .await?
        .is_none()
    {
        return Ok(Proxied::Ignored(format!(
            "no configuration for service {service_id}"
        )));
    }
    // From here the event is one cassa would adopt: a format error is refused by the
    // field it names, like a body of `POST /v1/payments`, not dropped in silence.
    let event: PaymentEvent = match serde_json::from_value(value.clone()) {
        Ok(e) => e,
        Err(e) => return Ok(Proxied::Refused(format_error(value, e))),
    };
    let mut payment = event.payment;
    if payment.status == PaymentStatus::PaymentPending && payment.payment.iuv.is_none() {
        return Ok(Proxied::Refused(
            "payment.iuv: an imported PAYMENT_PENDING payment needs its iuv".into(),
        ));
    }
    // Adopted: cassa's own links, checked at once.
    let now = time::now();
    payment.payment.iud = crate::domain::payment::Payment::iud_for(id);
    payment.set_own_links(intake.public_url);
    payment.links.update.next_check_at = Some(now);
    payment.created_by = Some(crate::domain::payment::Creator::adopted());
    // Only cassa's own top-up route links a payment to the wallet it credits: a foreign
    // event naming one would mint wallet money on the say-so of whoever published it.
    payment.top_up_account_id = None;
    match intake.adopt(payment).await {
        Ok(Created::New(_)) => Ok(Proxied::Adopted),
        Ok(_) => Ok(Proxied::Ignored("already adopted".into())),
        Err(crate::intake::IntakeError::Store(e)) if e.is_transient() => Err(e),
        // Also a code taken by a concurrent adoption (refused by the store).
        Err(e) => Ok(Proxied::Refused(e.to_string())),
    }
}

/// Messages taken from the consumer's queue at once, at most (one registry round trip).
const BATCH: usize = 256;

/// Consumes `payments` until `stop` turns true. Offsets are stored after handling.
pub async fn run(
    consumer: &StreamConsumer<PaymentsRebalance>,
    intake: Intake<'_>,
    dead_letters: super::DeadLetters,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!("payments consumer started");
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => break,
        };
        let first = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "payments consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // What else is already fetched joins this batch.
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "payments consumer error");
                    break;
                }
                None => break,
            }
        }
        let told = told_resident_owners(&intake, &batch).await;
        for (message, told) in batch.iter().zip(told) {
            if !told {
                handle(&intake, &dead_letters, message).await;
            }
            store_offset(consumer, message);
        }
    }
    tracing::info!("payments consumer stopped");
}

/// One event the long way: read, adopted or its owner touched; retried while the
/// database is unavailable.
async fn handle(
    intake: &Intake<'_>,
    dead_letters: &super::DeadLetters,
    message: &BorrowedMessage<'_>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match proxy(intake, message.payload()).await {
            Ok(Proxied::Adopted) => {
                tracing::info!(offset = message.offset(), "foreign payment adopted");
                return;
            }
            Ok(Proxied::Ignored(why)) => {
                tracing::debug!(%why, "payments event ignored");
                return;
            }
            Ok(Proxied::Refused(reason)) => {
                tracing::warn!(%reason, offset = message.offset(), "foreign payment refused; dead-lettered");
                dead_letters.send(message, &reason).await;
                return;
            }
            Ok(Proxied::Touched) => return,
            Err(e) if !e.is_transient() => {
                // Retrying would fail the same way forever and stall every partition.
                tracing::error!(error = %e, offset = message.offset(), partition = message.partition(), "payments event cannot be handled; skipped");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "database unavailable; retrying the event");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn store_offset(consumer: &StreamConsumer<PaymentsRebalance>, message: &BorrowedMessage<'_>) {
    if let Err(e) = rdkafka::consumer::Consumer::store_offset_from_message(consumer, message) {
        tracing::warn!(error = %e, "cannot store the payments offset");
    }
}

/// The short way for events cassa's relay wrote (they carry the row's version in a
/// header, and the payment id as their key): the registry tells each payment's resident
/// actor, which reloads only if the version is new to it, with no database read or
/// parsing here. Per message, whether that handled it (`false`: a foreign event, or no
/// resident actor).
async fn told_resident_owners(intake: &Intake<'_>, batch: &[BorrowedMessage<'_>]) -> Vec<bool> {
    let seen: Vec<Option<(uuid::Uuid, i64)>> = batch.iter().map(own_event).collect();
    let touches: Vec<(uuid::Uuid, i64)> = seen.iter().flatten().copied().collect();
    if touches.is_empty() {
        return vec![false; batch.len()];
    }
    // Waits while the registry's mailbox is full: consumption pauses (back-pressure).
    let mut told = match intake.registry.send(TouchSeen(touches)).await {
        Ok(told) => told.into_iter(),
        Err(e) => {
            tracing::error!(error = %e, "registry unavailable");
            return vec![false; batch.len()];
        }
    };
    seen.iter()
        .map(|s| s.is_some() && told.next().unwrap_or(false))
        .collect()
}

/// The payment id and row version of an event cassa's relay wrote.
fn own_event(message: &BorrowedMessage<'_>) -> Option<(uuid::Uuid, i64)> {
    let version = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == super::VERSION_HEADER)
            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
    })?;
    let id = message
        .key()
        .and_then(|key| std::str::from_utf8(key).ok()?.parse::<uuid::Uuid>().ok())?;
    Some((id, version))
}
