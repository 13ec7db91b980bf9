//! The outside world a payment talks to: a pagoPA-style intermediary (debt positions)
//! and a payment-system gateway (wallet charges), behind one trait so actors can be
//! tested with a mock. `http` is the real adapter for the simulator's API.

pub mod credentials;
pub mod guard;
pub mod http;

pub use credentials::{Credentials, MASK};

/// Why a service has no intermediary to call now (its configuration, its credentials or
/// its URL): the step that needed it is retried later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoIntermediary(pub String);

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What cassa asks the intermediary to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionRequest {
    /// Idempotency key at the intermediary: the same iud returns the same position.
    pub iud: String,
    pub amount_cents: i64,
    pub reason: String,
    pub debtor_tax_code: String,
    pub debtor_name: Option<String>,
    #[serde(with = "crate::domain::time::rome_opt")]
    pub expire_at: Option<DateTime<Utc>>,
    /// Where the checkout sends the citizen back.
    pub return_url: Option<String>,
    /// Where the intermediary pushes the outcome.
    pub notify_url: Option<String>,
}

/// The state of a debt position at the intermediary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PositionState {
    Pending,
    Paid,
    Failed,
    Canceled,
}

/// A debt position as the intermediary reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Position {
    pub iuv: String,
    pub notice_code: String,
    pub status: PositionState,
    pub checkout_url: String,
    #[serde(default, with = "crate::domain::time::rome_opt")]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub transaction_id: Option<String>,
}

/// What cassa asks the gateway to execute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayRequest {
    pub payment_id: Uuid,
    pub account_id: Option<Uuid>,
    pub amount_cents: i64,
}

/// The gateway's decision (the WALLET pivot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayOutcome {
    Approved,
    Rejected,
}

/// The gateway's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GatewayResult {
    pub outcome: GatewayOutcome,
    pub transaction_id: String,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntermediaryError {
    /// Worth retrying later: timeout, connection refused, 5xx, 429.
    #[error("temporarily unavailable: {0}")]
    Transient(String),
    /// Retrying will not help: the intermediary refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The position was already paid (a cancel came too late).
    #[error("already paid")]
    AlreadyPaid,
    /// No such position.
    #[error("not found")]
    NotFound,
}

/// A pagoPA-style intermediary and payment-system gateway.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Intermediary: Send + Sync + 'static {
    /// Creates (idempotently by iud) a debt position.
    async fn create_position(
        &self,
        request: &PositionRequest,
    ) -> Result<Position, IntermediaryError>;
    /// Reads a position's current state.
    async fn position(&self, iuv: &str) -> Result<Position, IntermediaryError>;
    /// Cancels a position (idempotent; `AlreadyPaid` if it was paid).
    async fn cancel_position(&self, iuv: &str) -> Result<(), IntermediaryError>;
    /// Executes a wallet payment at the gateway (idempotent by payment id).
    async fn execute_payment(
        &self,
        request: &GatewayRequest,
    ) -> Result<GatewayResult, IntermediaryError>;
}

/// Finds the intermediary of a service: from its configuration, one guarded HTTP client
/// per intermediary URL shared by all its payments (one rate limit, concurrency cap and
/// circuit breaker per intermediary, whatever credentials each service uses), or one fixed
/// intermediary for all.
pub struct Intermediaries {
    store: Arc<dyn crate::store::Store>,
    secret_box: Option<crate::secrets::SecretBox>,
    fixed: Option<Arc<dyn Intermediary>>,
    timeout: std::time::Duration,
    guard: guard::GuardConfig,
    /// By URL: the guard (limits and circuit).
    clients: Mutex<HashMap<String, Arc<guard::GuardedIntermediary>>>,
    /// The outbound policy every intermediary URL is checked against before each use.
    outbound: Option<Arc<crate::outbound::Outbound>>,
    /// Service → its client (with its credentials), briefly cached: every check needs it.
    routes: Mutex<HashMap<Uuid, Route>>,
}

/// A service's client and when it was resolved.
type Route = (Arc<dyn Intermediary>, std::time::Instant);

/// How long a service's configuration is reused before it is read again.
const ROUTE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Intermediaries {
    /// Resolves intermediaries from the services' configuration; credentials are opened
    /// with `secret_box`.
    pub fn from_config(
        store: Arc<dyn crate::store::Store>,
        secret_box: crate::secrets::SecretBox,
        timeout: std::time::Duration,
        guard: guard::GuardConfig,
        outbound: Arc<crate::outbound::Outbound>,
    ) -> Self {
        Intermediaries {
            store,
            secret_box: Some(secret_box),
            fixed: None,
            timeout,
            guard,
            clients: Default::default(),
            outbound: Some(outbound),
            routes: Default::default(),
        }
    }

    /// Uses one intermediary for every service (tests, benchmarks).
    pub fn fixed(store: Arc<dyn crate::store::Store>, intermediary: Arc<dyn Intermediary>) -> Self {
        Intermediaries {
            store,
            secret_box: None,
            fixed: Some(intermediary),
            timeout: std::time::Duration::from_secs(5),
            guard: guard::GuardConfig::default(),
            clients: Default::default(),
            outbound: None,
            routes: Default::default(),
        }
    }

    /// The guard state of every intermediary in use, by URL.
    pub fn guards(&self) -> Vec<(String, guard::GuardSnapshot)> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut guards: Vec<_> = clients
            .iter()
            .map(|(url, guarded)| (url.clone(), guarded.snapshot()))
            .collect();
        guards.sort_by(|a, b| a.0.cmp(&b.0));
        guards
    }

    /// The intermediary of a service, or why there is none. Inactive services keep
    /// serving the payments they already have.
    pub async fn for_service(
        &self,
        service_id: Uuid,
    ) -> Result<Arc<dyn Intermediary>, NoIntermediary> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((client, at)) = routes.get(&service_id) {
                if at.elapsed() < ROUTE_TTL {
                    return Ok(client.clone());
                }
            }
        }
        let service = self
            .store
            .service(service_id)
            .await
            .map_err(|e| NoIntermediary(format!("cannot read the service configuration: {e}")))?
            .ok_or_else(|| NoIntermediary(format!("no configuration for service {service_id}")))?;
        let credentials =
            match (&service.credentials, &self.secret_box) {
                (Some(sealed), Some(secret_box)) => {
                    let opened = secret_box
                        .open(sealed)
                        .map_err(|e| NoIntermediary(e.to_string()))?;
                    Some(serde_json::from_slice::<Credentials>(&opened).map_err(|_| {
                        NoIntermediary("the stored credentials are unreadable".into())
                    })?)
                }
                _ => None,
            };
        // Checked at every resolution (and the resolver checks each connection): a URL
        // planted in the database, or a host the allow-lists no longer name, is refused.
        let outbound = self
            .outbound
            .as_ref()
            .ok_or_else(|| NoIntermediary("no outbound policy configured".into()))?;
        let allowed = crate::outbound::tenant_allow_list(self.store.as_ref(), service.tenant_id)
            .await
            .map_err(|e| NoIntermediary(format!("cannot read the tenant's allow-list: {e}")))?;
        let (_, http_client) = outbound
            .admit("intermediary", &service.intermediary_url, &allowed)
            .map_err(|refused| NoIntermediary(refused.0))?;
        let mut config = http::HttpIntermediaryConfig::new(service.intermediary_url.clone());
        config.timeout = self.timeout;
        config.credentials = credentials;
        let plain = http::HttpIntermediary::new(config, http_client);
        let client: Arc<dyn Intermediary> = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            let guarded = clients
                .entry(service.intermediary_url.clone())
                .or_insert_with(|| {
                    Arc::new(guard::GuardedIntermediary::new(
                        Arc::new(plain.clone()),
                        self.guard.clone(),
                    ))
                });
            Arc::new(guarded.sharing_limits(Arc::new(plain)))
        };
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.insert(service_id, (client.clone(), std::time::Instant::now()));
        Ok(client)
    }
}

/// Header of an intermediary's push carrying its signature: `sha256=<hex>`, the
/// HMAC-SHA256 of the body under the service's `push_secret`.
pub const PUSH_SIGNATURE_HEADER: &str = "X-Cassa-Signature";

/// The `X-Cassa-Signature` value of a push with `body` (what the intermediary sends).
pub fn sign_push(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` (the header's value) signs `body` under `secret` (compared in
/// constant time).
pub fn push_is_signed(secret: &str, body: &[u8], signature: &str) -> bool {
    use hmac::Mac;
    let Some(sent) = signature
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sent).is_ok()
}

/// How `/metrics` names an intermediary: its host (and port) and a short hash of its
/// whole URL, never the URL itself (it may carry a path, a query or worse).
pub fn label(url: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(url.as_bytes());
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{host}-{:02x}{:02x}{:02x}{:02x}",
        hash[0], hash[1], hash[2], hash[3]
    )
}

impl Intermediaries {
    /// Which intermediary a service's payments call, as the guards tell intermediaries
    /// apart (by URL), or `None` when the service's configuration cannot be read.
    pub async fn intermediary_of(&self, service_id: Uuid) -> Option<String> {
        match self.store.service(service_id).await {
            Ok(service) => service.map(|service| service.intermediary_url),
            Err(e) => {
                tracing::warn!(%service_id, error = %e, "cannot read the service configuration");
                None
            }
        }
    }

    /// Forgets a service's cached client (its configuration changed here).
    pub fn forget(&self, service_id: Uuid) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.remove(&service_id);
    }

    /// Forgets every service's cached client (a tenant's allow-list changed here).
    pub fn forget_all(&self) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.clear();
    }
}

#[cfg(test)]
mod push_tests {
    use super::*;

    #[test]
    fn pushes_verify_only_under_their_secret_and_body() {
        let signature = sign_push("s3cret", b"{\"iud\":\"x\"}");
        assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);
        assert!(push_is_signed("s3cret", b"{\"iud\":\"x\"}", &signature));
        assert!(!push_is_signed("other", b"{\"iud\":\"x\"}", &signature));
        assert!(!push_is_signed("s3cret", b"{\"iud\":\"y\"}", &signature));
        assert!(!push_is_signed(
            "s3cret",
            b"{\"iud\":\"x\"}",
            &signature[7..]
        ));
        assert!(!push_is_signed("s3cret", b"{\"iud\":\"x\"}", "sha256=zz"));
    }

    #[test]
    fn labels_name_the_host_and_hide_the_url() {
        let label = label("http://127.0.0.1:9/x\"} 1\nfake{a=\"\\");
        assert!(label.starts_with("127.0.0.1:9-") && label.len() == "127.0.0.1:9-".len() + 8);
        assert_ne!(super::label("http://h/a"), super::label("http://h/b"));
        assert!(super::label("not a url").starts_with("unknown-"));
    }
}
