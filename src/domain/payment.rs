//! The payment as other systems see it: the Opencity Italia payment, `event_version`
//! "2.0" (the `Payment` schema of openapi.json), plus the rules that change it. The JSON
//! form here is both the HTTP representation and the body of every event on the `payments` topic.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::money::Money;
use super::status::{IllegalTransition, PaymentStatus};
use super::tax_code::TaxCode;
use super::time;

/// The version of the event contract cassa writes.
pub const EVENT_VERSION: &str = "2.0";

/// How the citizen pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentType {
    /// A debt position at a pagoPA-style intermediary, paid online or at a counter.
    Pagopa,
    /// A charge against the citizen's wallet account through the payment-system gateway.
    Wallet,
}

impl PaymentType {
    /// The contract name (`PAGOPA`, `WALLET`).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentType::Pagopa => "PAGOPA",
            PaymentType::Wallet => "WALLET",
        }
    }
}

/// Whether the payer is a person or a legal entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayerType {
    /// A natural person (codice fiscale).
    Human,
    /// A company or institution (partita IVA or codice fiscale).
    Legal,
}

/// The payer (or debtor) of a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payer {
    #[serde(rename = "type")]
    pub kind: PayerType,
    pub tax_identification_number: TaxCode,
    pub name: String,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub street_name: Option<String>,
    #[serde(default)]
    pub building_number: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub town_name: Option<String>,
    #[serde(default)]
    pub country_subdivision: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// One part of a split payment (its amounts add up to the payment's amount).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub code: String,
    pub amount: Money,
    #[serde(default)]
    pub meta: serde_json::Value,
}

/// The money part of a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentData {
    pub amount: Money,
    pub currency: String,
    /// When the debt expires; `None` means one year after creation.
    #[serde(with = "time::rome_opt", default)]
    pub expire_at: Option<DateTime<Utc>>,
    /// 18-digit notice code, set by the intermediary.
    pub notice_code: Option<String>,
    /// The payment id without dashes: cassa's idempotency key at the intermediary.
    pub iud: String,
    /// Set by the intermediary.
    pub iuv: Option<String>,
    pub transaction_id: Option<String>,
    #[serde(with = "time::rome_opt", default)]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub split: Vec<Split>,
}

/// A link the citizen's browser or the platform follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Link {
    pub url: Option<String>,
    pub method: Option<String>,
    #[serde(with = "time::rome_opt", default)]
    pub last_opened_at: Option<DateTime<Utc>>,
}

/// The `update` link: where and when the payment is checked at the intermediary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UpdateLink {
    pub url: Option<String>,
    pub method: Option<String>,
    #[serde(with = "time::rome_opt", default)]
    pub last_check_at: Option<DateTime<Utc>>,
    #[serde(with = "time::rome_opt", default)]
    pub next_check_at: Option<DateTime<Utc>>,
}

/// Where the platform wants to hear the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyLink {
    pub url: String,
    pub method: String,
    #[serde(with = "time::rome_opt", default)]
    pub sent_at: Option<DateTime<Utc>>,
    /// cassa's own: the endpoint refused the outcome with a 4xx (final, not retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<NotifyRefusal>,
}

/// A platform endpoint's final refusal of the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRefusal {
    /// The HTTP status it answered.
    pub status: u16,
    #[serde(with = "time::rome")]
    pub at: DateTime<Utc>,
}

/// All the links of a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Links {
    #[serde(default)]
    pub online_payment_begin: Link,
    #[serde(default)]
    pub online_payment_landing: Link,
    #[serde(default)]
    pub offline_payment: Link,
    #[serde(default)]
    pub receipt: Link,
    #[serde(default)]
    pub update: UpdateLink,
    #[serde(default)]
    pub confirm: Link,
    #[serde(default)]
    pub cancel: Link,
    #[serde(default)]
    pub notify: Vec<NotifyLink>,
}

/// A payment, in its Opencity v2 form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: Uuid,
    pub user_id: Uuid,
    #[serde(rename = "type")]
    pub kind: PaymentType,
    pub tenant_id: Uuid,
    pub service_id: Uuid,
    #[serde(with = "time::rome")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "time::rome")]
    pub updated_at: DateTime<Utc>,
    pub status: PaymentStatus,
    /// What the payment is for (≤ 140 characters).
    pub reason: String,
    /// cassa's own: why the payment failed or is stuck, for people reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// The originating application, if any.
    pub remote_id: Option<Uuid>,
    pub payment: PaymentData,
    pub links: Links,
    pub payer: Payer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debtor: Option<Payer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// cassa's own: the wallet account a WALLET payment is charged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_account_id: Option<Uuid>,
    /// cassa's own: the wallet a top-up (a PAGOPA payment) credits when it completes.
    /// Set only by `POST /v1/accounts/{id}/top-ups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up_account_id: Option<Uuid>,
    /// cassa's own: who asked for the payment (`None` for payments made before cassa
    /// recorded it). It decides who may cancel it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Creator>,
}

/// Who created a payment: the role and subject of the token, or the platform over Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// The token's role by name (`admin`, `operator`, `citizen`, `system`): text, so the
    /// domain depends on no other module.
    pub role: String,
    pub sub: String,
}

impl Creator {
    /// The platform's applications over Kafka (the dispatcher has no token).
    pub fn platform() -> Self {
        Creator {
            role: "system".into(),
            sub: "kafka:applications".into(),
        }
    }

    /// A payment another system published and cassa adopted: whatever the event said
    /// about who created it is not trusted (anyone who can write to the topic could
    /// name a citizen and so let them cancel it).
    pub fn adopted() -> Self {
        Creator {
            role: "system".into(),
            sub: "kafka:adopted".into(),
        }
    }
}

/// A payment as published on Kafka: the payment plus the event envelope fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentEvent {
    #[serde(flatten)]
    pub payment: Payment,
    /// New for every event, never reused.
    pub event_id: Uuid,
    pub event_version: String,
    #[serde(with = "time::rome")]
    pub event_created_at: DateTime<Utc>,
    /// `cassa:<version>`.
    pub app_id: String,
}

/// `cassa:<crate version>`, the `app_id` of every event cassa writes.
pub fn app_id() -> String {
    format!("cassa:{}", env!("CARGO_PKG_VERSION"))
}

impl PaymentEvent {
    /// Wraps a payment in a new event (fresh `event_id`).
    pub fn new(payment: Payment, at: DateTime<Utc>) -> Self {
        PaymentEvent {
            payment,
            event_id: Uuid::new_v4(),
            event_version: EVENT_VERSION.to_string(),
            event_created_at: at,
            app_id: app_id(),
        }
    }

    /// The JSON of a new event (fresh `event_id`, returned too) of the payment whose own
    /// JSON is `document`: the text serializing the event writes, from the document's
    /// text, which the store writes anyway, instead of serializing the payment again.
    pub fn text_from(document: &str, at: DateTime<Utc>) -> serde_json::Result<(Uuid, String)> {
        let event_id = Uuid::new_v4();
        let Some(fields) = document.strip_suffix('}').filter(|fields| fields.len() > 1) else {
            return Err(serde::ser::Error::custom(
                "a payment document is a JSON object with fields",
            ));
        };
        let text = format!(
            "{fields},\"event_id\":\"{event_id}\",\"event_version\":{},\"event_created_at\":\"{}\",\"app_id\":{}}}",
            serde_json::to_string(EVENT_VERSION)?,
            time::format(&at),
            serde_json::to_string(&app_id())?,
        );
        Ok((event_id, text))
    }
}

impl Payment {
    /// The iud cassa uses for a payment id: the id without dashes.
    pub fn iud_for(id: Uuid) -> String {
        id.simple().to_string()
    }

    /// The instant the payment expires (its `expire_at`, or one year after creation).
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.payment
            .expire_at
            .unwrap_or_else(|| super::schedule::default_expiry(self.created_at))
    }

    /// Applies a status change through the transition table; refuses illegal ones.
    pub fn transition(
        &mut self,
        next: PaymentStatus,
        at: DateTime<Utc>,
    ) -> Result<(), IllegalTransition> {
        self.status = self.status.transition(next)?;
        self.updated_at = at;
        Ok(())
    }

    /// Whether the platform still has to be told the outcome (the updater's retriable
    /// step): the payment ended and some notify link was neither sent nor refused.
    pub fn notify_pending(&self) -> bool {
        self.status.is_final()
            && self
                .links
                .notify
                .iter()
                .any(|link| link.sent_at.is_none() && link.refused.is_none())
    }

    /// Fills the links that point back at cassa (`base` is the public URL, no trailing `/`).
    pub fn set_own_links(&mut self, base: &str) {
        let base = base.trim_end_matches('/');
        let own = |path: &str, method: &str| Link {
            url: Some(format!("{base}/v1/payments/{}{path}", self.id)),
            method: Some(method.to_string()),
            last_opened_at: None,
        };
        self.links.online_payment_begin = own("/online-payment", "GET");
        self.links.offline_payment = own("/notice", "GET");
        self.links.receipt = own("/receipt", "GET");
        self.links.cancel = own("/cancel", "POST");
        self.links.confirm = Link::default();
        self.links.update.url = Some(format!("{base}/v1/payments/{}/update", self.id));
        self.links.update.method = Some("POST".into());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event as the Opencity platform documents it (all fields filled).
    pub(crate) const EXAMPLE: &str = r#"{
      "id": "f2c6c0a4-5a0e-4c7e-9d6c-2f0f3f3b5c11",
      "user_id": "00000000-0000-4000-8000-000000000004",
      "type": "PAGOPA",
      "tenant_id": "00000000-0000-4000-8000-000000000001",
      "service_id": "00000000-0000-4000-8000-000000000002",
      "created_at": "2026-11-22T10:00:00+01:00",
      "updated_at": "2026-11-22T10:05:00+01:00",
      "status": "COMPLETE",
      "reason": "TARI 2026 rata 1",
      "remote_id": "7e1b7d1c-3c1e-4a55-9a36-0a6f1f6d2a10",
      "payment": {
        "amount": 12.34, "currency": "EUR",
        "expire_at": "2026-12-31T23:59:59+01:00",
        "notice_code": "301000000000000001",
        "iud": "f2c6c0a45a0e4c7e9d6c2f0f3f3b5c11",
        "iuv": "01000000000000001",
        "transaction_id": "tx-1",
        "paid_at": "2026-11-22T10:04:00+01:00",
        "split": [ {"code": "c1", "amount": 10.00, "meta": {}}, {"code": "c2", "amount": 2.34, "meta": {"k": "v"}} ]
      },
      "links": {
        "online_payment_begin": {"url": "http://x/v1/payments/f2c6c0a4-5a0e-4c7e-9d6c-2f0f3f3b5c11/online-payment", "method": "GET", "last_opened_at": "2026-11-22T10:01:00+01:00"},
        "online_payment_landing": {"url": "http://platform/landing", "method": "GET", "last_opened_at": null},
        "offline_payment": {"url": "http://x/notice", "method": "GET", "last_opened_at": null},
        "receipt": {"url": "http://x/receipt", "method": "GET", "last_opened_at": null},
        "update": {"url": "http://x/update", "method": "POST", "last_check_at": "2026-11-22T10:04:30+01:00", "next_check_at": null},
        "confirm": {"url": null, "method": null, "last_opened_at": null},
        "cancel": {"url": "http://x/cancel", "method": "POST", "last_opened_at": null},
        "notify": [ {"url": "http://platform/notify", "method": "POST", "sent_at": "2026-11-22T10:05:00+01:00"} ]
      },
      "payer": {
        "type": "human", "tax_identification_number": "RSSMRA80A01H501U",
        "name": "Mario", "family_name": "Rossi", "street_name": "Via Roma",
        "building_number": "1", "postal_code": "00100", "town_name": "Roma",
        "country_subdivision": "RM", "country": "IT", "email": "mario@example.org"
      },
      "locale": "it",
      "event_id": "3d9a1a4e-4c1b-4a6c-8b0e-6b1b7d9e0f21",
      "event_version": "2.0",
      "event_created_at": "2026-11-22T10:05:00+01:00",
      "app_id": "cassa:0.1.0"
    }"#;

    #[test]
    fn documented_event_round_trips() {
        let event: PaymentEvent = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(event.payment.payment.amount.cents(), 1234);
        assert_eq!(event.payment.status, PaymentStatus::Complete);
        let text = serde_json::to_string(&event).unwrap();
        let again: PaymentEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(event, again);
        let original: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        let written: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            original, written,
            "every documented field is written back unchanged"
        );
        assert!(text.contains("\"amount\":12.34"), "{text}");
    }

    #[test]
    fn an_event_from_the_document_text_is_the_serialized_event() {
        let event: PaymentEvent = serde_json::from_str(EXAMPLE).unwrap();
        let document = serde_json::to_string(&event.payment).unwrap();
        let at = event.event_created_at + chrono::Duration::hours(5);
        let (id, text) = PaymentEvent::text_from(&document, at).unwrap();
        let mut expected = PaymentEvent::new(event.payment.clone(), at);
        expected.event_id = id;
        assert_eq!(text, serde_json::to_string(&expected).unwrap());
        let parsed: PaymentEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn transition_refuses_illegal_moves_and_keeps_state() {
        let mut event: PaymentEvent = serde_json::from_str(EXAMPLE).unwrap();
        let before = event.payment.clone();
        assert!(event
            .payment
            .transition(PaymentStatus::PaymentPending, time::now())
            .is_err());
        assert_eq!(event.payment, before);
    }

    #[test]
    fn iud_is_the_id_without_dashes() {
        let id = Uuid::parse_str("f2c6c0a4-5a0e-4c7e-9d6c-2f0f3f3b5c11").unwrap();
        assert_eq!(Payment::iud_for(id), "f2c6c0a45a0e4c7e9d6c2f0f3f3b5c11");
    }
}
