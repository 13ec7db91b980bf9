//! Creating payments: the one path that HTTP, the application dispatcher and the proxy
//! all use. Validate → build the payment → one transaction (row, idempotency key, hold,
//! outbox event) → wake its actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix::Addr;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actors::{Ensure, PaymentRegistry};
use crate::auth::Caller;
use crate::domain::money::Money;
use crate::domain::payment::{
    Link, Links, NotifyLink, Payer, Payment, PaymentData, PaymentType, Split,
};
use crate::domain::status::PaymentStatus;
use crate::domain::time;
use crate::store::{
    Created, HoldRequest, IdempotencyKey, NewPayment, PaymentCodes, ServiceConfig, Store,
    StoreError, Tenant,
};

/// Longest `reason`.
pub const REASON_MAX: usize = 140;
/// Namespace of the user ids cassa derives from a payer's tax code when the caller is
/// not authenticated as a citizen.
const PAYER_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7373_612d_7061_7965_722d_6e73_0001);

/// A field that breaks a rule: names the field and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

impl FieldError {
    /// A broken rule of `field`.
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// Why a payment was not created.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The user id of a payer when the caller does not say who the citizen is.
pub fn user_id_for(payer: &Payer) -> Uuid {
    Uuid::new_v5(
        &PAYER_NAMESPACE,
        payer.tax_identification_number.as_str().as_bytes(),
    )
}

/// Who asks for a payment: the rules of what a creation may carry depend on it.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A caller of the HTTP API, with its token's role, tenant and subject.
    Caller(&'a Caller),
    /// The platform over Kafka: an application event (the dispatcher) or a payment
    /// another system published (the proxy's adoption).
    Platform,
}

/// What creating needs.
pub struct Intake<'a> {
    pub store: &'a dyn Store,
    pub registry: &'a Addr<PaymentRegistry>,
    pub public_url: &'a str,
    pub configs: &'a ConfigCache,
}

/// How long creation trusts a tenant's or service's configuration it read. A change made
/// through this instance is seen at once (the handlers `forget` it); one made through
/// another instance sharing the database, within this time.
pub const CONFIG_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; the cache starts over beyond (a burst of unknown ids).
const CONFIG_CACHE_MAX: usize = 10_000;

/// The configurations creation checks (is the service active, of this tenant, taking
/// this type; is the tenant active), read once per `CONFIG_TTL` instead of twice per
/// payment.
#[derive(Default)]
pub struct ConfigCache {
    services: Mutex<HashMap<Uuid, (Instant, Option<ServiceConfig>)>>,
    tenants: Mutex<HashMap<Uuid, (Instant, Option<Tenant>)>>,
    /// Bumped by every `forget`: a read that started before one is not kept (it may be
    /// older than the change that was forgotten).
    forgets: AtomicU64,
}

impl ConfigCache {
    /// Service `id` (`None`: no such service), from the cache while fresh.
    pub async fn service(
        &self,
        store: &dyn Store,
        id: Uuid,
    ) -> Result<Option<ServiceConfig>, StoreError> {
        if let Some(hit) = Self::fresh(&self.services, id) {
            return Ok(hit);
        }
        let forgets = self.forgets.load(Ordering::SeqCst);
        let read = store.service(id).await?;
        self.keep(&self.services, id, read.clone(), forgets);
        Ok(read)
    }

    /// Tenant `id` (`None`: no such tenant), from the cache while fresh.
    pub async fn tenant(&self, store: &dyn Store, id: Uuid) -> Result<Option<Tenant>, StoreError> {
        if let Some(hit) = Self::fresh(&self.tenants, id) {
            return Ok(hit);
        }
        let forgets = self.forgets.load(Ordering::SeqCst);
        let read = store.tenant(id).await?;
        self.keep(&self.tenants, id, read.clone(), forgets);
        Ok(read)
    }

    /// Drops what is kept of tenant or service `id` (it was just created or changed).
    pub fn forget(&self, id: Uuid) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn fresh<T: Clone>(
        map: &Mutex<HashMap<Uuid, (Instant, Option<T>)>>,
        id: Uuid,
    ) -> Option<Option<T>> {
        let map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id)
            .filter(|(at, _)| at.elapsed() < CONFIG_TTL)
            .map(|(_, value)| value.clone())
    }

    /// Keeps what a read found, unless a `forget` came since it began (`forgets` then).
    fn keep<T>(
        &self,
        map: &Mutex<HashMap<Uuid, (Instant, Option<T>)>>,
        id: Uuid,
        value: Option<T>,
        forgets: u64,
    ) {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock `forget` also takes: a forget either came before (seen
        // here) or removes this entry after.
        if self.forgets.load(Ordering::SeqCst) != forgets {
            return;
        }
        if map.len() >= CONFIG_CACHE_MAX {
            map.clear();
        }
        map.insert(id, (Instant::now(), value));
    }
}

impl Intake<'_> {
    /// Validates and creates a payment (or finds the one this key / remote_id made).
    pub async fn create(
        &self,
        request: CreatePayment,
        user_id: Uuid,
        origin: Origin<'_>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created, IntakeError> {
        let now = time::now();
        let service = self.admit(&request, user_id, origin, now).await?;
        let mut request = request;
        if request.payment.expire_at.is_none() {
            // The service's default expiry, in days.
            let days = service.document.get("expire_at").and_then(|d| d.as_i64());
            request.payment.expire_at = days.map(|d| now + chrono::Duration::days(d));
        }
        let payment = request.into_payment(user_id, self.public_url, now);
        self.store_new(payment, idempotency).await
    }

    /// The rules every new payment passes, whoever asks (HTTP, the dispatcher, the
    /// proxy's adoption): its fields, its service and tenant (active, taking this type)
    /// and its wallet. The service's configuration, for what creation takes from it.
    async fn admit(
        &self,
        request: &CreatePayment,
        user_id: Uuid,
        origin: Origin<'_>,
        now: DateTime<Utc>,
    ) -> Result<ServiceConfig, IntakeError> {
        request.validate(now)?;
        if request.kind == PaymentType::Wallet && matches!(origin, Origin::Platform) {
            // A wallet is spent only by its owner asking in person: an event on Kafka
            // proves nothing about who wants the money taken.
            return Err(FieldError::new(
                "type",
                "a WALLET payment is created only by its owner's citizen token, never from Kafka",
            )
            .into());
        }
        let service = self
            .configs
            .service(self.store, request.service_id)
            .await?
            .filter(|s| s.tenant_id == request.tenant_id)
            .ok_or_else(|| FieldError::new("service_id", "no such service for this tenant_id"))?;
        if !service.active {
            return Err(FieldError::new(
                "service_id",
                "the service is not active: it takes no new payments",
            )
            .into());
        }
        let tenant_active = self
            .configs
            .tenant(self.store, request.tenant_id)
            .await?
            .is_some_and(|t| t.active);
        if !tenant_active {
            return Err(FieldError::new(
                "tenant_id",
                "the tenant is not active: it takes no new payments",
            )
            .into());
        }
        if !service.payment_types.contains(&request.kind) {
            return Err(FieldError::new(
                "type",
                format!(
                    "the service does not take {} payments",
                    request.kind.as_str()
                ),
            )
            .into());
        }
        if let Some(account_id) = request.wallet_account_id {
            // Only the payment's user's own wallet: one answer for "no such account" and
            // "someone else's", so neither existence nor balance leaks.
            let owned = self
                .store
                .account(account_id)
                .await?
                .is_some_and(|a| a.owner_id == user_id);
            if !owned {
                return Err(FieldError::new(
                    "wallet_account_id",
                    "is not a wallet account of the payment's user (user_id)",
                )
                .into());
            }
        }
        Ok(service)
    }

    /// Adopts a payment another system published on Kafka: the rules of `create` (with
    /// `Origin::Platform`), and its `iuv` and notice code must not be another payment's
    /// (else its events could act on that payment's debt position).
    pub async fn adopt(&self, payment: Payment) -> Result<Created, IntakeError> {
        let request = CreatePayment::describing(&payment);
        self.admit(&request, payment.user_id, Origin::Platform, time::now())
            .await?;
        let codes = PaymentCodes::of(&payment);
        if let Some((field, owner)) = self.store.payment_with_code(&codes).await? {
            if owner != payment.id {
                return Err(FieldError::new(field, "is already used by another payment").into());
            }
        }
        self.store_new(payment, None).await
    }

    /// Stores a payment as built (after `create`'s or `adopt`'s checks) and wakes its actor.
    pub async fn store_new(
        &self,
        payment: Payment,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created, IntakeError> {
        let hold = payment.wallet_account_id.map(|account_id| HoldRequest {
            account_id,
            amount_cents: payment.payment.amount.cents(),
        });
        let created = self
            .store
            .create_payment(NewPayment {
                next_check_at: payment.links.update.next_check_at,
                payment,
                saga: Default::default(),
                idempotency,
                hold,
            })
            .await?;
        if let Created::New(row) = &created {
            tracing::info!(payment_id = %row.payment.id, status = %row.payment.status, "payment created");
            if !row.payment.status.is_final() {
                // Queued without waiting for the registry to handle it, unless its
                // mailbox is full: then the create waits until the registry has handled
                // it (back-pressure).
                let ensure = Ensure(row.payment.id, Some(Box::new(row.clone())));
                let sent = match self.registry.try_send(ensure) {
                    Ok(()) => Ok(()),
                    Err(actix::dev::SendError::Full(ensure)) => self.registry.send(ensure).await,
                    Err(actix::dev::SendError::Closed(_)) => Err(actix::MailboxError::Closed),
                };
                if let Err(e) = sent {
                    // The row is durable: the next start-up or rebalance re-arms it.
                    tracing::error!(payment_id = %row.payment.id, error = %e, "cannot reach the registry");
                }
            }
        }
        Ok(created)
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    #[serde(rename = "type")]
    pub kind: PaymentType,
    pub tenant_id: Uuid,
    pub service_id: Uuid,
    #[serde(default)]
    pub remote_id: Option<Uuid>,
    pub reason: String,
    pub payment: CreatePaymentData,
    pub payer: Payer,
    #[serde(default)]
    pub debtor: Option<Payer>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub links: CreateLinks,
    #[serde(default)]
    pub wallet_account_id: Option<Uuid>,
    /// The platform's user the payment belongs to (set by the platform or an operator;
    /// a citizen's payments are always theirs). Default: derived from the payer's tax code.
    #[serde(default)]
    pub user_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentData {
    pub amount: Money,
    #[serde(default = "euro")]
    pub currency: String,
    #[serde(default, with = "time::rome_opt")]
    pub expire_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub split: Vec<Split>,
}

fn euro() -> String {
    "EUR".into()
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLinks {
    #[serde(default)]
    pub notify: Vec<LinkTarget>,
    #[serde(default)]
    pub online_payment_landing: Option<LinkTarget>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTarget {
    pub url: String,
    #[serde(default)]
    pub method: Option<String>,
}

pub(crate) fn check_url(field: &str, url: &str) -> Result<(), FieldError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url.chars().any(char::is_whitespace)
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(field, "must be an absolute http(s) URL"))
    }
}

fn check_method(field: &str, method: Option<&str>, allowed: &[&str]) -> Result<String, FieldError> {
    let method = method.unwrap_or(allowed[0]).to_ascii_uppercase();
    if allowed.contains(&method.as_str()) {
        Ok(method)
    } else {
        Err(FieldError::new(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

impl CreatePayment {
    /// Field rules beyond the types; the first broken one is reported.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), FieldError> {
        let reason = self.reason.trim();
        if reason.is_empty() {
            return Err(FieldError::new("reason", "must not be empty"));
        }
        if self.reason.chars().count() > REASON_MAX {
            return Err(FieldError::new(
                "reason",
                format!("must be at most {REASON_MAX} characters"),
            ));
        }
        if self.payment.currency != "EUR" {
            return Err(FieldError::new("payment.currency", "only EUR is supported"));
        }
        if let Some(expire_at) = self.payment.expire_at {
            if expire_at <= now {
                return Err(FieldError::new(
                    "payment.expire_at",
                    "must be in the future",
                ));
            }
        }
        if !self.payment.split.is_empty() {
            for (i, part) in self.payment.split.iter().enumerate() {
                if part.code.trim().is_empty() {
                    return Err(FieldError::new(
                        format!("payment.split[{i}].code"),
                        "must not be empty",
                    ));
                }
            }
            let total: i64 = self.payment.split.iter().map(|p| p.amount.cents()).sum();
            if total != self.payment.amount.cents() {
                return Err(FieldError::new(
                    "payment.split",
                    format!(
                        "amounts add up to {} but payment.amount is {}",
                        crate::domain::money::format_cents(total),
                        self.payment.amount
                    ),
                ));
            }
        }
        for (prefix, payer) in [
            ("payer", Some(&self.payer)),
            ("debtor", self.debtor.as_ref()),
        ] {
            let Some(payer) = payer else { continue };
            if payer.name.trim().is_empty() {
                return Err(FieldError::new(
                    format!("{prefix}.name"),
                    "must not be empty",
                ));
            }
            if let Some(email) = &payer.email {
                if !email.contains('@') || email.len() > 254 {
                    return Err(FieldError::new(
                        format!("{prefix}.email"),
                        "must be an email address",
                    ));
                }
            }
        }
        for (i, link) in self.links.notify.iter().enumerate() {
            check_url(&format!("links.notify[{i}].url"), &link.url)?;
            check_method(
                &format!("links.notify[{i}].method"),
                link.method.as_deref(),
                &["POST", "PUT"],
            )?;
        }
        if let Some(landing) = &self.links.online_payment_landing {
            check_url("links.online_payment_landing.url", &landing.url)?;
            check_method(
                "links.online_payment_landing.method",
                landing.method.as_deref(),
                &["GET"],
            )?;
        }
        match (self.kind, self.wallet_account_id) {
            (PaymentType::Wallet, None) => Err(FieldError::new(
                "wallet_account_id",
                "is required for WALLET payments",
            )),
            (PaymentType::Pagopa, Some(_)) => Err(FieldError::new(
                "wallet_account_id",
                "must be null for PAGOPA payments",
            )),
            _ => Ok(()),
        }
    }

    /// The request that would have created `payment`: what an adopted payment is
    /// checked as.
    pub fn describing(payment: &Payment) -> CreatePayment {
        let landing = &payment.links.online_payment_landing;
        CreatePayment {
            kind: payment.kind,
            tenant_id: payment.tenant_id,
            service_id: payment.service_id,
            remote_id: payment.remote_id,
            reason: payment.reason.clone(),
            payment: CreatePaymentData {
                amount: payment.payment.amount,
                currency: payment.payment.currency.clone(),
                expire_at: payment.payment.expire_at,
                split: payment.payment.split.clone(),
            },
            payer: payment.payer.clone(),
            debtor: payment.debtor.clone(),
            locale: payment.locale.clone(),
            links: CreateLinks {
                notify: payment
                    .links
                    .notify
                    .iter()
                    .map(|l| LinkTarget {
                        url: l.url.clone(),
                        method: Some(l.method.clone()),
                    })
                    .collect(),
                online_payment_landing: landing.url.as_ref().map(|url| LinkTarget {
                    url: url.clone(),
                    method: landing.method.clone(),
                }),
            },
            wallet_account_id: payment.wallet_account_id,
            user_id: Some(payment.user_id),
        }
    }

    /// The new payment this request describes.
    pub fn into_payment(self, user_id: Uuid, public_url: &str, now: DateTime<Utc>) -> Payment {
        let id = Uuid::new_v4();
        let notify = self
            .links
            .notify
            .into_iter()
            .map(|l| NotifyLink {
                url: l.url,
                method: l
                    .method
                    .unwrap_or_else(|| "POST".into())
                    .to_ascii_uppercase(),
                sent_at: None,
                refused: None,
            })
            .collect();
        let landing = self
            .links
            .online_payment_landing
            .map(|l| Link {
                url: Some(l.url),
                method: Some("GET".into()),
                last_opened_at: None,
            })
            .unwrap_or_default();
        let mut payment = Payment {
            id,
            user_id,
            kind: self.kind,
            tenant_id: self.tenant_id,
            service_id: self.service_id,
            created_at: now,
            updated_at: now,
            status: PaymentStatus::CreationPending,
            reason: self.reason.trim().to_string(),
            status_message: None,
            remote_id: self.remote_id,
            payment: PaymentData {
                amount: self.payment.amount,
                currency: self.payment.currency,
                expire_at: self.payment.expire_at,
                notice_code: None,
                iud: Payment::iud_for(id),
                iuv: None,
                transaction_id: None,
                paid_at: None,
                split: self.payment.split,
            },
            links: Links {
                online_payment_landing: landing,
                notify,
                ..Links::default()
            },
            payer: self.payer,
            debtor: self.debtor,
            locale: self.locale,
            wallet_account_id: self.wallet_account_id,
        };
        payment.set_own_links(public_url);
        if payment.kind == PaymentType::Wallet {
            payment.links.online_payment_begin = Link::default();
            payment.links.offline_payment = Link::default();
        }
        payment.links.update.next_check_at = Some(now);
        payment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConfigStore, SqliteStore};

    /// Two instances on one database: the one that changes a tenant sees it at once
    /// (`forget`), the other within `CONFIG_TTL`; until then creation reads nothing.
    #[tokio::test]
    async fn configuration_is_cached_forgotten_on_change_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/cache.db", dir.path().display());
        let here = SqliteStore::connect(&url).await.unwrap();
        let there = SqliteStore::connect(&url).await.unwrap();
        let now = time::now();
        let mut tenant = Tenant {
            id: Uuid::new_v4(),
            name: "Comune di Prova".into(),
            tax_identification_number: "80016350821".into(),
            active: true,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        assert!(here.insert_tenant(&tenant).await.unwrap());
        let (cache_here, cache_there) = (ConfigCache::default(), ConfigCache::default());
        let active = |t: Option<Tenant>| t.map(|t| t.active);
        assert_eq!(
            active(cache_here.tenant(&here, tenant.id).await.unwrap()),
            Some(true)
        );
        assert_eq!(
            active(cache_there.tenant(&there, tenant.id).await.unwrap()),
            Some(true)
        );
        // Deactivated through `here`.
        tenant.version = here.tenant(tenant.id).await.unwrap().unwrap().version;
        tenant.active = false;
        assert!(here.update_tenant(&tenant).await.unwrap());
        cache_here.forget(tenant.id);
        let changed_at = Instant::now();
        assert_eq!(
            active(cache_here.tenant(&here, tenant.id).await.unwrap()),
            Some(false)
        );
        // `there` still trusts what it read, until the TTL is over.
        assert_eq!(
            active(cache_there.tenant(&there, tenant.id).await.unwrap()),
            Some(true)
        );
        loop {
            if active(cache_there.tenant(&there, tenant.id).await.unwrap()) == Some(false) {
                break;
            }
            assert!(changed_at.elapsed() < CONFIG_TTL * 3, "never refreshed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Unknown ids are remembered as unknown too.
        assert!(cache_here
            .service(&here, Uuid::new_v4())
            .await
            .unwrap()
            .is_none());
    }

    /// A read that began before a `forget` is not kept: it may predate the change.
    #[test]
    fn a_read_overtaken_by_a_forget_is_not_kept() {
        let cache = ConfigCache::default();
        let id = Uuid::new_v4();
        let began = cache.forgets.load(Ordering::SeqCst);
        cache.forget(id);
        cache.keep(&cache.tenants, id, None::<Tenant>, began);
        assert!(ConfigCache::fresh(&cache.tenants, id).is_none());
        let began = cache.forgets.load(Ordering::SeqCst);
        cache.keep(&cache.tenants, id, None::<Tenant>, began);
        assert!(ConfigCache::fresh(&cache.tenants, id).is_some());
    }
}
