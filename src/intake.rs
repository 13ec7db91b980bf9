//! Creating payments: the one path that HTTP, the application dispatcher and the proxy
//! all use. Validate → build the payment → one transaction (row, idempotency key, hold,
//! outbox event) → wake its actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actors::{Ensure, PaymentRegistry};
use crate::auth::Caller;
use crate::domain::field::{check_url, FieldError};
use crate::domain::money::Money;
use crate::domain::payment::{
    Link, Links, NotifyLink, Payer, Payment, PaymentData, PaymentType, Split,
};
use crate::domain::status::PaymentStatus;
use crate::domain::{text, time};
use crate::store::{
    Created, HoldRequest, IdempotencyKey, NewPayment, PaymentCodes, ServiceConfig, Store,
    StoreError, Tenant,
};
use crate::tenancy::Fees;

/// Longest `reason`.
pub const REASON_MAX: usize = 140;
/// Namespace of the user ids cassa derives from a payer's tax code when the caller is
/// not authenticated as a citizen.
const PAYER_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7373_612d_7061_7965_722d_6e73_0001);

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
    /// The outbound policy new payments' links are checked against (none: every link
    /// is refused).
    outbound: Option<Arc<crate::outbound::Outbound>>,
}

impl ConfigCache {
    /// A cache checking new payments' links against the policy `outbound`.
    pub fn with_outbound(outbound: Arc<crate::outbound::Outbound>) -> Self {
        ConfigCache {
            outbound: Some(outbound),
            ..Default::default()
        }
    }

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
        self.create_linked(request, user_id, origin, idempotency, None)
            .await
    }

    /// Creates a top-up of `account`: a PAGOPA payment on the tenant's top-up service
    /// whose completion credits the wallet (in the same transaction, once).
    pub async fn create_top_up(
        &self,
        request: CreatePayment,
        user_id: Uuid,
        caller: &Caller,
        account: Uuid,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created, IntakeError> {
        self.create_linked(
            request,
            user_id,
            Origin::Caller(caller),
            idempotency,
            Some(account),
        )
        .await
    }

    async fn create_linked(
        &self,
        request: CreatePayment,
        user_id: Uuid,
        origin: Origin<'_>,
        idempotency: Option<IdempotencyKey>,
        top_up: Option<Uuid>,
    ) -> Result<Created, IntakeError> {
        let now = time::now();
        let (service, created_by) = self.admit(&request, user_id, origin, now, top_up).await?;
        let mut request = request;
        if request.payment.expire_at.is_none() {
            // The service's default expiry, in days. Checked as creation checks a given
            // `expire_at` (a document written another way must not make creation panic
            // on overflow or write an unreadable timestamp).
            let days = service.document.get("expire_at").and_then(|d| d.as_i64());
            let expire_at = days
                .and_then(chrono::Duration::try_days)
                .and_then(|d| now.checked_add_signed(d))
                .filter(|at| *at > now && *at <= time::latest_accepted(now));
            if days.is_some() && expire_at.is_none() {
                return Err(FieldError::new(
                    "service_id",
                    "the service's default expiry (expire_at, in days) is out of range",
                )
                .into());
            }
            request.payment.expire_at = expire_at;
        }
        let landing_given = request.links.online_payment_landing.is_some();
        let mut payment = request.into_payment(user_id, self.public_url, now);
        payment.created_by = Some(created_by);
        let template = service.document.get("landing_url").and_then(|l| l.as_str());
        if let (false, Some(template)) = (landing_given, template) {
            // The service's landing (checked when the service was configured, and again
            // when the citizen is redirected).
            payment.links.online_payment_landing.url =
                Some(crate::tenancy::landing_for(template, payment.id));
            payment.links.online_payment_landing.method = Some("GET".into());
        }
        payment.top_up_account_id = top_up;
        self.store_new(payment, idempotency).await
    }

    /// The rules every new payment passes, whoever asks (HTTP, the dispatcher, the
    /// proxy's adoption): who may set what, its fields, its service and tenant (active,
    /// taking this type, a top-up only through the top-ups route), its links against
    /// the outbound policy, its fee and its wallet. The service's configuration, for what
    /// creation takes from it, and who is recorded as its creator.
    async fn admit(
        &self,
        request: &CreatePayment,
        user_id: Uuid,
        origin: Origin<'_>,
        now: DateTime<Utc>,
        top_up: Option<Uuid>,
    ) -> Result<(ServiceConfig, crate::domain::payment::Creator), IntakeError> {
        if let Origin::Caller(caller) = origin {
            request.links.check_setter(caller)?;
        }
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
        let created_by = match origin {
            Origin::Caller(caller) => {
                caller.check_parties(request.kind, &request.payer, request.debtor.as_ref())?;
                caller.creator()
            }
            Origin::Platform => crate::domain::payment::Creator::platform(),
        };
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
        let tenant = self
            .configs
            .tenant(self.store, request.tenant_id)
            .await?
            .filter(|t| t.active);
        let Some(tenant) = tenant else {
            return Err(FieldError::new(
                "tenant_id",
                "the tenant is not active: it takes no new payments",
            )
            .into());
        };
        request
            .links
            .check_outbound(
                self.configs.outbound.as_deref(),
                &crate::outbound::AllowList::lenient(&tenant.allowed_hosts),
            )
            .await?;
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
        let fees = Fees::of(&service.document);
        if fees.wallet_top_up != top_up.is_some() {
            // Top-up payments are made only through the wallet's top-ups route, and
            // that route only on the tenant's top-up service.
            return Err(FieldError::new(
                "service_id",
                if fees.wallet_top_up {
                    "is the tenant's wallet top-up service: top up through POST /v1/accounts/{id}/top-ups"
                } else {
                    "is not a wallet top-up service (wallet_top_up)"
                },
            )
            .into());
        }
        let sets_amounts = match origin {
            Origin::Caller(caller) => caller.sets_amounts(),
            Origin::Platform => true,
        };
        if !sets_amounts {
            fees.check_citizen_amount(request.payment.amount)?;
        }
        if let Some(account_id) = request.wallet_account_id {
            // Only the owner's own citizen token, in the wallet's tenant: one answer for
            // "no such account" and "someone else's", so neither existence nor balance
            // leaks.
            let account = self.store.account(account_id).await?;
            let spendable = account.is_some_and(|a| {
                a.owner_id == user_id
                    && a.tenant_id == Some(request.tenant_id)
                    && matches!(origin, Origin::Caller(caller) if caller.owns_wallet(&a))
            });
            if !spendable {
                return Err(FieldError::new(
                    "wallet_account_id",
                    "is not a wallet of the caller: a WALLET payment is created only by the \
                     wallet's owner, with their own citizen token, in the wallet's tenant",
                )
                .into());
            }
        }
        Ok((service, created_by))
    }

    /// Adopts a payment another system published on Kafka: the rules of `create` (with
    /// `Origin::Platform`), and its `iuv` and notice code must not be another payment's
    /// (else its events could act on that payment's debt position).
    pub async fn adopt(&self, payment: Payment) -> Result<Created, IntakeError> {
        let request = CreatePayment::describing(&payment);
        self.admit(
            &request,
            payment.user_id,
            Origin::Platform,
            time::now(),
            None,
        )
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

impl CreateLinks {
    /// A caller that may not hand cassa URLs (see `Caller::may_set_links`) sends none.
    fn check_setter(&self, caller: &Caller) -> Result<(), FieldError> {
        if caller.may_set_links() {
            return Ok(());
        }
        let refuse = |field: &str| {
            FieldError::new(
                field,
                format!(
                    "is set by the platform, operators and admins only, not by a {} token (the service's landing_url is used)",
                    caller.role.as_str()
                ),
            )
        };
        if !self.notify.is_empty() {
            return Err(refuse("links.notify"));
        }
        if self.online_payment_landing.is_some() {
            return Err(refuse("links.online_payment_landing"));
        }
        Ok(())
    }

    /// Every link against the outbound policy (the global and the tenant's allow-lists).
    async fn check_outbound(
        &self,
        outbound: Option<&crate::outbound::Outbound>,
        tenant: &crate::outbound::AllowList,
    ) -> Result<(), FieldError> {
        let urls = self
            .notify
            .iter()
            .enumerate()
            .map(|(i, link)| (format!("links.notify[{i}].url"), &link.url))
            .chain(
                self.online_payment_landing
                    .iter()
                    .map(|l| ("links.online_payment_landing.url".to_string(), &l.url)),
            );
        for (field, url) in urls {
            let checked = match outbound {
                Some(outbound) => outbound.check_stored(url, tenant).await,
                None => Err("no outbound policy is configured".into()),
            };
            checked.map_err(|reason| FieldError::new(field, reason.0))?;
        }
        Ok(())
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

/// A payer's (or debtor's) free text: no refused characters, and pagoPA's lengths (the
/// full name, name and family name together, at most `text::FULL_NAME_MAX`).
fn check_payer_text(prefix: &str, payer: &Payer) -> Result<(), FieldError> {
    let fields = [
        ("name", Some(&payer.name), text::FULL_NAME_MAX),
        (
            "family_name",
            payer.family_name.as_ref(),
            text::FULL_NAME_MAX,
        ),
        (
            "street_name",
            payer.street_name.as_ref(),
            text::STREET_NAME_MAX,
        ),
        (
            "building_number",
            payer.building_number.as_ref(),
            text::BUILDING_NUMBER_MAX,
        ),
        (
            "postal_code",
            payer.postal_code.as_ref(),
            text::POSTAL_CODE_MAX,
        ),
        ("town_name", payer.town_name.as_ref(), text::TOWN_NAME_MAX),
        (
            "country_subdivision",
            payer.country_subdivision.as_ref(),
            text::COUNTRY_SUBDIVISION_MAX,
        ),
        ("country", payer.country.as_ref(), 2),
        ("email", payer.email.as_ref(), 254),
    ];
    for (name, value, max) in fields {
        let Some(value) = value else { continue };
        let field = || format!("{prefix}.{name}");
        text::check(value).map_err(|e| FieldError::new(field(), e.to_string()))?;
        if value.chars().count() > max {
            return Err(FieldError::new(
                field(),
                format!("must be at most {max} characters"),
            ));
        }
    }
    let full_name = payer.name.trim().chars().count()
        + payer
            .family_name
            .as_ref()
            .map_or(0, |f| 1 + f.trim().chars().count());
    if full_name > text::FULL_NAME_MAX {
        return Err(FieldError::new(
            format!("{prefix}.name"),
            format!(
                "name and family_name together must be at most {} characters (pagoPA's full name)",
                text::FULL_NAME_MAX
            ),
        ));
    }
    Ok(())
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
        text::check(&self.reason).map_err(|e| FieldError::new("reason", e.to_string()))?;
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
            // Beyond, a timestamp may not even be writable in a form cassa reads back
            // (year 10000 in Rome time), and no debt runs that long.
            if expire_at > time::latest_accepted(now) {
                return Err(FieldError::new(
                    "payment.expire_at",
                    format!(
                        "must be at most {} years from now",
                        time::MAX_AHEAD_MONTHS / 12
                    ),
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
                text::check(&part.code).map_err(|e| {
                    FieldError::new(format!("payment.split[{i}].code"), e.to_string())
                })?;
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
            check_payer_text(prefix, payer)?;
            if let Some(email) = &payer.email {
                if !email.contains('@') || email.len() > 254 {
                    return Err(FieldError::new(
                        format!("{prefix}.email"),
                        "must be an email address",
                    ));
                }
            }
        }
        if let Some(locale) = &self.locale {
            text::check(locale).map_err(|e| FieldError::new("locale", e.to_string()))?;
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
            created_by: None,
            top_up_account_id: None,
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
            allowed_hosts: Vec::new(),
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
