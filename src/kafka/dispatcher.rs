//! `ApplicationDispatcher` (dispatcher role): reads Opencity application events from
//! `applications` and turns those waiting for a payment into payments, through the same
//! intake as HTTP. One application yields at most one payment (`remote_id` unique per tenant),
//! however often it is redelivered or re-sent. The offset is stored only once the
//! payment is committed (or the event dead-lettered or skipped); a malformed event goes
//! to the dead-letter topic with the reason, and the consumer goes on.

use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::money::Money;
use crate::domain::payment::{PayerType, PaymentType, Split};
use crate::domain::time;
use crate::intake::{
    CreateLinks, CreatePayment, CreatePaymentData, Intake, IntakeError, LinkTarget, Origin,
};
use crate::store::Created;

/// What became of one application event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// A new payment.
    Created(Uuid),
    /// The application already has its payment.
    AlreadyDone(Uuid),
    /// Not for the dispatcher (other status, unsupported version); why.
    Skipped(String),
    /// Malformed or invalid: goes to the dead-letter topic with this reason.
    Rejected(String),
}

#[derive(Debug, Deserialize)]
struct ApplicationEvent {
    id: Uuid,
    tenant_id: Uuid,
    service_id: Uuid,
    user: Uuid,
    #[serde(default)]
    payment_data: Option<ApplicationPayment>,
    #[serde(default)]
    data: Value,
}

#[derive(Debug, Deserialize)]
struct ApplicationPayment {
    amount: Money,
    reason: String,
    #[serde(default, with = "time::rome_opt")]
    expire_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    split: Option<Vec<Split>>,
    #[serde(default)]
    notify: Option<ApplicationLink>,
    #[serde(default)]
    landing: Option<ApplicationLink>,
}

#[derive(Debug, Deserialize)]
struct ApplicationLink {
    url: String,
    #[serde(default)]
    method: Option<String>,
}

/// Whether `event_version` is a 2.x version.
fn supported_version(version: &Value) -> bool {
    match version {
        Value::Number(n) => n.as_f64().is_some_and(|v| (2.0..3.0).contains(&v)),
        Value::String(s) => s == "2" || s.starts_with("2."),
        _ => false,
    }
}

/// A value of the applicant in `data`, whether flattened (`"applicant.data.x"`) or nested.
fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = data.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(data, |node, key| node.get(key))
}

fn text(data: &Value, path: &str) -> Option<String> {
    lookup(data, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What makes an application event unusable: the reason its dead letter gives.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unusable(String);

impl From<&str> for Unusable {
    fn from(reason: &str) -> Self {
        Unusable(reason.to_string())
    }
}

impl From<String> for Unusable {
    fn from(reason: String) -> Self {
        Unusable(reason)
    }
}

/// Builds the payment request of an application, or says what is wrong with it.
fn to_request(event: ApplicationEvent) -> Result<CreatePayment, Unusable> {
    let payment = event.payment_data.ok_or("payment_data is missing")?;
    let data = &event.data;
    let tax_code = text(data, "applicant.data.fiscal_code.data.fiscal_code")
        .ok_or("applicant.data.fiscal_code.data.fiscal_code is missing")?;
    let payer = serde_json::json!({
        "type": PayerType::Human,
        "tax_identification_number": tax_code,
        "name": text(data, "applicant.data.completename.data.name").ok_or("applicant.data.completename.data.name is missing")?,
        "family_name": text(data, "applicant.data.completename.data.surname"),
        "email": text(data, "applicant.data.email_address"),
        "street_name": text(data, "applicant.data.address.data.address"),
        "building_number": text(data, "applicant.data.address.data.house_number"),
        "postal_code": text(data, "applicant.data.address.data.postal_code"),
        "town_name": text(data, "applicant.data.address.data.municipality"),
        "country_subdivision": text(data, "applicant.data.address.data.county"),
    });
    let payer = serde_json::from_value(payer).map_err(|e| format!("applicant: {e}"))?;
    let link = |l: ApplicationLink| LinkTarget {
        url: l.url,
        method: l.method,
    };
    Ok(CreatePayment {
        kind: PaymentType::Pagopa,
        tenant_id: event.tenant_id,
        service_id: event.service_id,
        remote_id: Some(event.id),
        reason: payment.reason,
        payment: CreatePaymentData {
            amount: payment.amount,
            currency: "EUR".into(),
            expire_at: payment.expire_at,
            split: payment.split.unwrap_or_default(),
        },
        payer,
        debtor: None,
        locale: None,
        links: CreateLinks {
            notify: payment.notify.map(link).into_iter().collect(),
            online_payment_landing: payment.landing.map(link),
        },
        wallet_account_id: None,
        user_id: None,
    })
}

/// Handles one application event. `Err` only for failures worth retrying (database).
pub async fn dispatch(
    intake: &Intake<'_>,
    payload: Option<&[u8]>,
) -> Result<Dispatched, crate::store::StoreError> {
    let Some(payload) = payload else {
        return Ok(Dispatched::Rejected("empty message".into()));
    };
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Ok(Dispatched::Rejected(format!("not JSON: {e}"))),
    };
    if !value.is_object() {
        return Ok(Dispatched::Rejected("not a JSON object".into()));
    }
    let version = value.get("event_version").cloned().unwrap_or(Value::Null);
    if !supported_version(&version) {
        return Ok(Dispatched::Skipped(format!(
            "unsupported event_version {version}"
        )));
    }
    let status = value
        .get("status_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !status.contains("status_payment_pending") {
        return Ok(Dispatched::Skipped(format!(
            "status_name {status:?} is not waiting for a payment"
        )));
    }
    let event: ApplicationEvent = match serde_path_to_error::deserialize(value) {
        Ok(e) => e,
        Err(e) => {
            return Ok(Dispatched::Rejected(
                crate::domain::field::FieldError::from_json(e).to_string(),
            ))
        }
    };
    // Already dispatched? (A redelivery may come after the payment's expiry, when the
    // same event would no longer validate.) Application ids are unique per tenant: the
    // tenant also lets the (tenant_id, remote_id) index answer, where the id alone
    // scanned the listing's index, slower with every payment stored.
    let filter = crate::store::PaymentFilter {
        tenant_id: Some(event.tenant_id),
        remote_id: Some(event.id),
        ..Default::default()
    };
    if let Some(existing) = intake.store.list_payments(&filter, 1, None).await?.first() {
        return Ok(Dispatched::AlreadyDone(existing.payment.id));
    }
    let user_id = event.user;
    let request = match to_request(event) {
        Ok(r) => r,
        Err(reason) => return Ok(Dispatched::Rejected(reason.0)),
    };
    match intake
        .create(request, user_id, Origin::Platform, None)
        .await
    {
        Ok(Created::New(row)) => Ok(Dispatched::Created(row.payment.id)),
        Ok(Created::RemoteIdTaken(row) | Created::Replayed(row)) => {
            Ok(Dispatched::AlreadyDone(row.payment.id))
        }
        Ok(Created::KeyReused { payment_id }) => Ok(Dispatched::AlreadyDone(payment_id)),
        Err(IntakeError::Invalid(e)) => Ok(Dispatched::Rejected(e.to_string())),
        Err(IntakeError::Store(e)) => Err(e),
    }
}

/// The running dispatcher.
pub struct ApplicationDispatcher {
    pub consumer: super::closing::Closing<super::BrokerGuard>,
    pub dead_letters: super::DeadLetters,
}

/// Applications taken from the consumer's queue at once, at most.
const BATCH: usize = 256;

impl ApplicationDispatcher {
    /// Consumes until `stop` turns true. What is already fetched is dispatched as one
    /// batch: its creates run together, so the store's group commit writes them in a
    /// few transactions instead of one each; offsets are stored only once every
    /// application of the batch has its payment committed (or is dead-lettered).
    pub async fn run(self, intake: Intake<'_>, mut stop: watch::Receiver<bool>) {
        tracing::info!("application dispatcher started");
        loop {
            let message = tokio::select! {
                m = self.consumer.recv() => m,
                _ = stop.changed() => break,
            };
            let first = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "applications consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(m),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "applications consumer error");
                        break;
                    }
                    None => break,
                }
            }
            let outcomes = futures::future::join_all(
                batch
                    .iter()
                    .map(|message| dispatch_until_stored(&intake, message.payload())),
            )
            .await;
            for (message, outcome) in batch.iter().zip(outcomes) {
                match &outcome {
                    Dispatched::Created(id) => {
                        tracing::info!(payment_id = %id, "application dispatched")
                    }
                    Dispatched::AlreadyDone(id) => {
                        tracing::debug!(payment_id = %id, "application already has its payment")
                    }
                    Dispatched::Skipped(why) => tracing::debug!(%why, "application skipped"),
                    Dispatched::Rejected(reason) => {
                        tracing::warn!(%reason, offset = message.offset(), "application dead-lettered");
                        self.dead_letters.send(message, reason).await;
                    }
                }
                if let Err(e) = self.consumer.store_offset_from_message(message) {
                    tracing::warn!(error = %e, "cannot store the applications offset");
                }
            }
        }
        tracing::info!("application dispatcher stopped");
    }
}

/// Dispatches one application, retrying while the database is unavailable (the message
/// is kept: its offset waits for this).
async fn dispatch_until_stored(intake: &Intake<'_>, payload: Option<&[u8]>) -> Dispatched {
    let mut backoff = Duration::from_millis(200);
    loop {
        match dispatch(intake, payload).await {
            Ok(outcome) => return outcome,
            // Retrying the same event would fail the same way forever.
            Err(e) if !e.is_transient() => {
                return Dispatched::Rejected(format!("cannot be stored: {e}"))
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "cannot store the payment; retrying the application");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_2_x_only() {
        assert!(supported_version(&serde_json::json!(2)));
        assert!(supported_version(&serde_json::json!("2.0")));
        assert!(supported_version(&serde_json::json!(2.1)));
        assert!(!supported_version(&serde_json::json!(1)));
        assert!(!supported_version(&serde_json::json!("3.0")));
        assert!(!supported_version(&Value::Null));
    }

    #[test]
    fn applicant_fields_are_found_flat_or_nested() {
        let flat = serde_json::json!({"applicant.data.completename.data.name": "Mario"});
        let nested = serde_json::json!({"applicant": {"data": {"completename": {"data": {"name": "Mario"}}}}});
        assert_eq!(
            text(&flat, "applicant.data.completename.data.name").as_deref(),
            Some("Mario")
        );
        assert_eq!(
            text(&nested, "applicant.data.completename.data.name").as_deref(),
            Some("Mario")
        );
        assert_eq!(text(&nested, "applicant.data.email_address"), None);
    }

    fn application() -> Value {
        serde_json::json!({
            "id": Uuid::from_u128(7), "event_version": "2.0", "tenant_id": Uuid::from_u128(1),
            "service_id": Uuid::from_u128(2), "user": Uuid::from_u128(3),
            "status_name": "status_payment_pending",
            "payment_data": {"amount": "12.34", "reason": "Occupazione suolo pubblico",
                "notify": {"url": "http://127.0.0.1:9/notify", "method": "POST"}},
            "data": {"applicant.data.completename.data.name": "Mario",
                "applicant.data.fiscal_code.data.fiscal_code": "RSSMRA80A01H501U"}
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Random bytes, and an application event with one byte changed: reading one
        /// never panics, and a valid one builds its payment request (issue 21's fuzzing).
        #[test]
        fn application_events_are_read_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            at in 0usize..1024,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let _ = serde_json::from_slice::<ApplicationEvent>(&bytes).map(to_request);
            let mut mutated = application().to_string().into_bytes();
            let at = at % mutated.len();
            mutated[at] = byte;
            if let Ok(event) = serde_json::from_slice::<ApplicationEvent>(&mutated) {
                let _ = to_request(event);
            }
        }
    }

    #[test]
    fn the_unmutated_application_builds_its_request() {
        let event: ApplicationEvent = serde_json::from_value(application()).unwrap();
        let request = to_request(event).unwrap();
        assert_eq!(request.remote_id, Some(Uuid::from_u128(7)));
    }
}
