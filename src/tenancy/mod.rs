//! The configuration operators manage (the Opencity payment proxy's "API v2"): tenants
//! (municipalities) and their services' payment configurations, with the rules every
//! field must follow, the form.io schemas an admin UI renders, and JSON merge patches.
//!
//! Intermediary credentials are `intermediary::Credentials`: masked whenever shown.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::field::FieldError;
use crate::domain::money::Money;
use crate::domain::payment::PaymentType;
use crate::domain::tax_code::TaxCode;
pub use crate::intermediary::credentials::{Credentials, CREDENTIAL_MAX, MASK};

/// Longest name or reason.
pub const NAME_MAX: usize = 255;
/// Longest expiry of a service's payments, in days (ten years).
const EXPIRE_DAYS_MAX: u32 = 3650;
/// Default largest single wallet top-up of a tenant: 5 000.00 EUR.
pub const TOP_UP_MAX_CENTS: i64 = 500_000;
/// Default largest wallet balance of a tenant: 10 000.00 EUR.
pub const BALANCE_MAX_CENTS: i64 = 1_000_000;
/// Intermediary adapters this build speaks.
pub const INTERMEDIARY_KINDS: &[&str] = &["simulator"];

fn yes() -> bool {
    true
}

/// A tenant as written by `POST` / `PUT` (and the result of a `PATCH`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    #[serde(default)]
    pub id: Option<Uuid>,
    pub name: String,
    pub tax_identification_number: String,
    #[serde(default = "yes")]
    pub active: bool,
    /// Host patterns the tenant's services and payments may call or send citizens to
    /// (`outbound::AllowEntry`), besides the global `CASSA_OUTBOUND_ALLOW`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl TenantBody {
    /// Checks every rule; normalises the tax code and trims the name.
    pub fn validate(&mut self) -> Result<(), FieldError> {
        self.name = check_name("name", &self.name)?;
        self.tax_identification_number =
            check_tax_code("tax_identification_number", &self.tax_identification_number)?;
        if self.allowed_hosts.len() > crate::outbound::ALLOWED_HOSTS_MAX {
            return Err(FieldError::new(
                "allowed_hosts",
                format!(
                    "must list at most {} host patterns",
                    crate::outbound::ALLOWED_HOSTS_MAX
                ),
            ));
        }
        for host in &mut self.allowed_hosts {
            *host = host.trim().to_ascii_lowercase();
        }
        crate::outbound::AllowList::parse(&self.allowed_hosts).map_err(|(i, message)| {
            FieldError::new(
                format!("allowed_hosts[{i}]"),
                format!("{message}: e.g. *.comune.example.it, pay.example.it:8443, http://127.0.0.1:8090"),
            )
        })?;
        Ok(())
    }
}

/// A stored service's fee and wallet rules, read from its configuration document
/// (rows older than these fields have none of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fees {
    pub amount: Option<Money>,
    pub amount_min: Option<Money>,
    pub amount_max: Option<Money>,
    pub wallet_top_up: bool,
    pub top_up_max_cents: i64,
    pub balance_max_cents: i64,
}

impl Fees {
    /// The rules of a stored service's document.
    pub fn of(document: &serde_json::Value) -> Fees {
        let money = |key: &str| {
            document
                .get(key)
                .and_then(|v| serde_json::from_value::<Money>(v.clone()).ok())
        };
        Fees {
            amount: money("amount"),
            amount_min: money("amount_min"),
            amount_max: money("amount_max"),
            wallet_top_up: document.get("wallet_top_up").and_then(|v| v.as_bool()) == Some(true),
            top_up_max_cents: money("top_up_max").map_or(TOP_UP_MAX_CENTS, Money::cents),
            balance_max_cents: money("balance_max").map_or(BALANCE_MAX_CENTS, Money::cents),
        }
    }

    /// Whether a citizen may pay `amount` on this service: its fixed fee exactly, or
    /// within its range. The 400 names `payment.amount`.
    pub fn check_citizen_amount(&self, amount: Money) -> Result<(), FieldError> {
        const FIELD: &str = "payment.amount";
        if let Some(fee) = self.amount {
            if amount != fee {
                return Err(FieldError::new(
                    FIELD,
                    format!("this service's fee is {fee}: a payment on it is for that amount"),
                ));
            }
        }
        if let Some(min) = self.amount_min.filter(|min| amount < *min) {
            return Err(FieldError::new(
                FIELD,
                format!("must be at least {min} on this service"),
            ));
        }
        if let Some(max) = self.amount_max.filter(|max| amount > *max) {
            return Err(FieldError::new(
                FIELD,
                format!("must be at most {max} on this service"),
            ));
        }
        Ok(())
    }
}

/// Which payment types a service takes: one (`"PAGOPA"`) or several (`["PAGOPA", "WALLET"]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PaymentTypes {
    One(PaymentType),
    Many(Vec<PaymentType>),
}

impl PaymentTypes {
    /// The types as a list.
    pub fn to_vec(&self) -> Vec<PaymentType> {
        match self {
            PaymentTypes::One(t) => vec![*t],
            PaymentTypes::Many(ts) => ts.clone(),
        }
    }

    /// The compact form of a list (a single type is shown as a string).
    pub fn from_vec(types: Vec<PaymentType>) -> Self {
        match types.as_slice() {
            [one] => PaymentTypes::One(*one),
            _ => PaymentTypes::Many(types),
        }
    }
}

/// What a payment config collects for, on the platform's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionType {
    Application,
    Service,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCollection {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: CollectionType,
}

/// Who receives the money.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub tax_identification_number: String,
    pub name: String,
}

/// Where a service's payments go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Intermediary {
    pub kind: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// A service's payment configuration as written by `POST` / `PUT` (and the result of a
/// `PATCH`). Stored without `intermediary.credentials` (sealed apart).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    #[serde(default)]
    pub id: Option<Uuid>,
    pub tenant_id: Uuid,
    pub payment_type: PaymentTypes,
    #[serde(default)]
    pub remote_collection: Option<RemoteCollection>,
    /// The service's fixed fee: a citizen's payment on it is for exactly this amount
    /// (system, admin and operator tokens may set another).
    #[serde(default)]
    pub amount: Option<Money>,
    /// Variable fees instead: a citizen's payment is for at least / at most this.
    #[serde(default)]
    pub amount_min: Option<Money>,
    #[serde(default)]
    pub amount_max: Option<Money>,
    /// The tenant's wallet top-up service: `POST /v1/accounts/{id}/top-ups` creates its
    /// PAGOPA payments, whose completion credits the wallet.
    #[serde(default)]
    pub wallet_top_up: bool,
    /// On a top-up service, the tenant's wallet limits: the largest single top-up
    /// (default [`TOP_UP_MAX_CENTS`]) and the largest balance (default [`BALANCE_MAX_CENTS`]).
    #[serde(default)]
    pub top_up_max: Option<Money>,
    #[serde(default)]
    pub balance_max: Option<Money>,
    pub reason: String,
    /// Days until a payment expires when the payment itself does not say.
    #[serde(default)]
    pub expire_at: Option<i64>,
    pub receiver: Receiver,
    /// pagoPA taxonomy code ("dati specifici di riscossione"), e.g. `9/0101108TS/`.
    #[serde(default)]
    pub collection_data: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    pub intermediary: Intermediary,
    /// Where citizens' payments send the citizen back after paying, e.g.
    /// `https://servizi.comune.example.it/pagamenti/{payment_id}` (the payment's id is
    /// filled in); citizens may not name their own landing.
    #[serde(default)]
    pub landing_url: Option<String>,
}

impl ServiceBody {
    /// Checks every rule (naming the field), normalising what it may.
    pub fn validate(&mut self) -> Result<(), FieldError> {
        let types = self.payment_type.to_vec();
        if types.is_empty() {
            return Err(FieldError::new(
                "payment_type",
                "must name at least one of PAGOPA, WALLET",
            ));
        }
        if has_duplicates(&types) {
            return Err(FieldError::new("payment_type", "names a type twice"));
        }
        self.payment_type = PaymentTypes::from_vec(types);
        if let Some(rc) = &mut self.remote_collection {
            rc.id = check_name("remote_collection.id", &rc.id)?;
        }
        self.reason = check_name("reason", &self.reason)?;
        self.check_fees(&self.payment_type.to_vec())?;
        if let Some(days) = self.expire_at {
            if !(1..=i64::from(EXPIRE_DAYS_MAX)).contains(&days) {
                return Err(FieldError::new(
                    "expire_at",
                    format!("must be a number of days from 1 to {EXPIRE_DAYS_MAX}"),
                ));
            }
        }
        self.receiver.tax_identification_number = check_tax_code(
            "receiver.tax_identification_number",
            &self.receiver.tax_identification_number,
        )?;
        self.receiver.name = check_name("receiver.name", &self.receiver.name)?;
        if let Some(code) = &self.collection_data {
            self.collection_data = Some(check_collection_data(code)?);
        }
        let kind = self.intermediary.kind.trim();
        if !INTERMEDIARY_KINDS.contains(&kind) {
            return Err(FieldError::new(
                "intermediary.kind",
                format!("must be one of: {}", INTERMEDIARY_KINDS.join(", ")),
            ));
        }
        self.intermediary.kind = kind.to_string();
        check_intermediary_url(&self.intermediary.url)?;
        self.intermediary.url = self.intermediary.url.trim_end_matches('/').to_string();
        if let Some(credentials) = &mut self.intermediary.credentials {
            credentials.validate()?;
        }
        if let Some(landing) = &self.landing_url {
            crate::domain::field::check_url("landing_url", &landing_for(landing, Uuid::nil()))?;
        }
        Ok(())
    }

    /// Checks the URLs cassa will call or redirect to against the outbound policy: the
    /// global allow-list and the tenant's `allowed_hosts` (400 naming the field).
    pub async fn check_outbound(
        &self,
        outbound: &crate::outbound::Outbound,
        tenant: &crate::outbound::AllowList,
    ) -> Result<(), FieldError> {
        outbound
            .check_stored(&self.intermediary.url, tenant)
            .await
            .map_err(|reason| FieldError::new("intermediary.url", reason.0))?;
        if let Some(landing) = &self.landing_url {
            outbound
                .check_stored(&landing_for(landing, Uuid::nil()), tenant)
                .await
                .map_err(|reason| FieldError::new("landing_url", reason.0))?;
        }
        Ok(())
    }

    /// The fee and top-up rules: a fixed fee or a range, never both; a top-up service
    /// takes PAGOPA payments of any amount within its limits.
    fn check_fees(&self, types: &[PaymentType]) -> Result<(), FieldError> {
        if self.amount.is_some() && (self.amount_min.is_some() || self.amount_max.is_some()) {
            let field = if self.amount_min.is_some() {
                "amount_min"
            } else {
                "amount_max"
            };
            return Err(FieldError::new(
                field,
                "a service has either a fixed amount or a range (amount_min/amount_max), not both",
            ));
        }
        if let (Some(min), Some(max)) = (self.amount_min, self.amount_max) {
            if min > max {
                return Err(FieldError::new(
                    "amount_min",
                    "must not be above amount_max",
                ));
            }
        }
        if self.wallet_top_up {
            if types != [PaymentType::Pagopa] {
                return Err(FieldError::new(
                    "wallet_top_up",
                    "a top-up service takes PAGOPA payments only (payment_type \"PAGOPA\")",
                ));
            }
            if self.amount.is_some() {
                return Err(FieldError::new(
                    "amount",
                    "a top-up service has no fixed amount: the citizen chooses how much",
                ));
            }
        } else {
            for (field, set) in [
                ("top_up_max", self.top_up_max.is_some()),
                ("balance_max", self.balance_max.is_some()),
            ] {
                if set {
                    return Err(FieldError::new(
                        field,
                        "is a wallet limit: only for a top-up service (wallet_top_up: true)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The part that is stored in the clear (no credentials) and shown.
    pub fn public(&self) -> ServiceBody {
        let mut public = self.clone();
        public.intermediary.credentials = None;
        public
    }
}

fn has_duplicates(types: &[PaymentType]) -> bool {
    types
        .iter()
        .enumerate()
        .any(|(i, t)| types[..i].contains(t))
}

fn check_name(field: &str, value: &str) -> Result<String, FieldError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > NAME_MAX {
        return Err(FieldError::new(
            field,
            format!("must be at most {NAME_MAX} characters"),
        ));
    }
    crate::domain::text::check(trimmed).map_err(|e| FieldError::new(field, e.to_string()))?;
    Ok(trimmed.to_string())
}

fn check_tax_code(field: &str, value: &str) -> Result<String, FieldError> {
    TaxCode::parse(value.trim())
        .map(|code| code.as_str().to_string())
        .map_err(|e| {
            FieldError::new(
                field,
                format!("{e} (a codice fiscale or partita IVA with a valid checksum)"),
            )
        })
}

/// A pagoPA taxonomy code is 7 digits and 2 letters (`0101108TS`): ente type, area,
/// service, legal reason. Accepted bare or as the specific collection data `9/<code>/`.
fn check_collection_data(value: &str) -> Result<String, FieldError> {
    let value = value.trim().to_ascii_uppercase();
    let code = value.strip_prefix("9/").unwrap_or(&value);
    let code = code.strip_suffix('/').unwrap_or(code);
    let bytes = code.as_bytes();
    let shaped = bytes.len() == 9
        && bytes[..7].iter().all(u8::is_ascii_digit)
        && bytes[7..].iter().all(u8::is_ascii_uppercase);
    if shaped {
        Ok(format!("9/{code}/"))
    } else {
        Err(FieldError::new(
            "collection_data",
            "must be a pagoPA taxonomy code: 7 digits and 2 letters (e.g. 0101108TS), bare or as 9/0101108TS/",
        ))
    }
}

/// A service's `landing_url` template for one payment (`{payment_id}` filled in).
pub fn landing_for(template: &str, payment_id: Uuid) -> String {
    template.replace("{payment_id}", &payment_id.to_string())
}

fn check_intermediary_url(url: &str) -> Result<(), FieldError> {
    crate::domain::field::check_url("intermediary.url", url)?;
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if authority.contains('@') {
        return Err(FieldError::new(
            "intermediary.url",
            "must not carry credentials: put them in intermediary.credentials (they are kept encrypted)",
        ));
    }
    Ok(())
}

/// Applies an RFC 7396 JSON merge patch: objects merge key by key, `null` removes,
/// anything else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match patch {
        serde_json::Value::Object(changes) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(Default::default());
            }
            if let serde_json::Value::Object(map) = target {
                for (key, value) in changes {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge_patch(
                            map.entry(key.clone()).or_insert(serde_json::Value::Null),
                            value,
                        );
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

mod schema;
#[cfg(test)]
mod tests;

pub use schema::{service_schema, tenant_schema};
