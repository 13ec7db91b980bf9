//! The HTTP surface (actix-web): `app_config` mounts every route, so tests and the
//! server build the same application.

pub mod accounts;
pub mod body;
pub mod caller;
pub mod notice;
pub mod payments;
pub mod pdf;
pub mod problem;
pub mod ratelimit;
pub mod receipt;
pub mod routes;
pub mod services;
pub mod tenants;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::Method;
use actix_web::{web, HttpResponse};

use crate::actors::PaymentRegistry;
use crate::auth::Role;
use crate::store::Store;
use problem::ApiError;
use routes::{endpoint, Endpoint};

/// Shared state of the handlers.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Addr<PaymentRegistry>,
    /// Base of the links that point back at cassa.
    pub public_url: String,
    /// The payment actors' dependencies (intermediary guards for /metrics).
    pub deps: std::sync::Arc<crate::actors::Deps>,
    /// Verifies bearer tokens.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Seals and opens intermediary credentials.
    pub secret_box: crate::secrets::SecretBox,
    /// Per-subject limit of payment creation.
    pub create_limiter: ratelimit::RateLimiter,
    /// Per-payment limit of the links anyone holding them may open (`online-payment`,
    /// `landing`): `LINK_RATE` per second each.
    pub link_limiter: ratelimit::RateLimiter,
    /// Checks triggered from outside without a token (landings, intermediary pushes):
    /// one per payment per `CHECK_TRIGGER_EVERY`.
    pub check_triggers: ratelimit::Cooldown,
    /// Tenants' and services' configurations as creation reads them.
    pub configs: Arc<crate::intake::ConfigCache>,
}

impl AppState {
    /// The creation path over this state (HTTP creates payments and top-ups through it).
    pub fn intake(&self) -> crate::intake::Intake<'_> {
        crate::intake::Intake {
            store: self.store.as_ref(),
            registry: &self.registry,
            public_url: &self.public_url,
            configs: &self.configs,
        }
    }
}
/// Opening a payment's `online-payment` or `landing` link: this many times per second
/// per payment and link, beyond that 429.
pub const LINK_RATE: u32 = 5;
/// Checks at the intermediary triggered from outside without a token: at most one per
/// payment this often (polling and the platform's `update` are not limited by it).
pub const CHECK_TRIGGER_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every cassa route (not the simulator's).
fn endpoints() -> Vec<Endpoint> {
    let mut all = vec![
        endpoint(Method::GET, "/healthz", healthz),
        endpoint(Method::GET, "/readyz", readyz),
        endpoint(Method::GET, "/openapi.json", openapi),
        endpoint(Method::GET, "/metrics", metrics),
    ];
    all.extend(payments::endpoints());
    all.extend(accounts::endpoints());
    all.extend(tenants::endpoints());
    all.extend(services::endpoints());
    all
}

/// Mounts every cassa route (not the simulator).
pub fn app_config(cfg: &mut web::ServiceConfig) {
    routes::mount(cfg, endpoints());
}

/// Method and path of every cassa route (not the simulator's).
pub fn route_list() -> Vec<(Method, String)> {
    routes::listed("", endpoints())
}

/// The Content-Security-Policy of every HTML page: nothing loaded from anywhere, no
/// framing (clickjacking of the checkout), no `<base>` rewriting.
pub const HTML_CSP: &str =
    "default-src 'none'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Response headers of every route, in one place (`wrap(from_fn(security_headers))`):
/// `nosniff` and `no-referrer` everywhere (a payment link in a URL must not leak to
/// another site), a strict CSP on HTML pages, and `no-store` under `/v1/`, where
/// answers carry personal data (payments, accounts, receipts, notices, lists).
pub async fn security_headers(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::header::{self, HeaderValue};
    let personal = req.path().starts_with("/v1/");
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html"));
    if html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if personal {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// Answers problem+json for unknown routes too.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("database not reachable: {e}")))?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"status": "ready", "database": state.store.backend()})))
}

/// Prometheus text exposition of the registry's counters.
async fn metrics(
    caller: crate::auth::Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::System], "read the instance's metrics")?;
    let stats = state
        .registry
        .send(crate::actors::GetStats)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!("the payment registry is not answering: {e}"))
        })?;
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "cassa_payment_actors_resident",
        "gauge",
        "Payment actors resident now.",
        stats.resident as u64,
    );
    metric(
        "cassa_payment_actors_spawned_total",
        "counter",
        "Payment actors spawned since start.",
        stats.spawned,
    );
    metric(
        "cassa_payment_actor_crashes_total",
        "counter",
        "Payment actors that died uncleanly (panics, failed loads).",
        stats.crashes,
    );
    metric(
        "cassa_payment_actor_restarts_total",
        "counter",
        "Payment actors restarted from their row after a crash.",
        stats.restarts,
    );
    metric(
        "cassa_payment_actor_restart_budget_exhausted_total",
        "counter",
        "Payments whose actor kept crashing and was left for the next start-up.",
        stats.gave_up,
    );
    metric(
        "cassa_payment_actors_passivated_total",
        "counter",
        "Payment actors stopped because their next work was far away.",
        stats.passivated,
    );
    metric(
        "cassa_payment_actors_woken_total",
        "counter",
        "Payment actors woken by the timer wheel.",
        stats.woken,
    );
    metric(
        "cassa_unreadable_payments_total",
        "counter",
        "Stored payments left out of listings because they cannot be read (see the log for their ids).",
        crate::store::unreadable_payments(),
    );
    if let Some(owned) = stats.owned_partitions {
        metric(
            "cassa_owned_partitions",
            "gauge",
            "Partitions of the payments topic this instance owns.",
            owned as u64,
        );
    }
    let partitions = state
        .registry
        .send(crate::actors::GetOwnedPartitions)
        .await
        .ok()
        .flatten();
    if let Some(partitions) = partitions {
        text.push_str("# HELP cassa_owned_partition 1 for each partition of the payments topic this instance owns.\n");
        text.push_str("# TYPE cassa_owned_partition gauge\n");
        for p in partitions {
            text.push_str(&format!("cassa_owned_partition{{partition=\"{p}\"}} 1\n"));
        }
    }
    let outbound = state.deps.outbound.stats();
    text.push_str("# HELP cassa_outbound_refused_total Outbound calls and redirects the outbound policy refused, by where.\n# TYPE cassa_outbound_refused_total counter\n");
    for (reason, count) in [
        ("url", &outbound.refused_url),
        ("dns", &*outbound.refused_dns),
        ("redirect", &outbound.refused_redirect),
    ] {
        text.push_str(&format!(
            "cassa_outbound_refused_total{{reason=\"{reason}\"}} {}\n",
            count.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    let mut guards = state.deps.intermediaries.guards();
    if let Some(tenant) = caller.narrowed_to() {
        // Only the intermediaries this tenant's services call.
        let mut urls = std::collections::HashSet::new();
        let mut after = None;
        loop {
            let page = crate::store::Page { after, limit: 500 };
            let services = state.store.list_services(Some(tenant), page).await?;
            urls.extend(services.iter().map(|s| s.intermediary_url.clone()));
            match services.last() {
                Some(last) if services.len() == 500 => after = Some(last.id),
                _ => break,
            }
        }
        guards.retain(|(url, _)| urls.contains(url));
    }
    // Labelled by a short name, escaped all the same.
    let guards: Vec<_> = guards
        .into_iter()
        .map(|(url, guard)| (label_value(&crate::intermediary::label(&url)), guard))
        .collect();
    if !guards.is_empty() {
        text.push_str("# HELP cassa_intermediary_circuit_open 1 while the intermediary's circuit is open or half-open (checks are postponed).\n");
        text.push_str("# TYPE cassa_intermediary_circuit_open gauge\n");
        for (name, guard) in &guards {
            let open = u8::from(guard.state != crate::intermediary::guard::CircuitState::Closed);
            text.push_str(&format!(
                "cassa_intermediary_circuit_open{{intermediary=\"{name}\"}} {open}\n"
            ));
        }
        text.push_str("# HELP cassa_intermediary_calls_total Calls that reached the intermediary.\n# TYPE cassa_intermediary_calls_total counter\n");
        for (name, guard) in &guards {
            text.push_str(&format!(
                "cassa_intermediary_calls_total{{intermediary=\"{name}\"}} {}\n",
                guard.calls
            ));
        }
        text.push_str("# HELP cassa_intermediary_rejected_total Calls postponed by the guard, by reason.\n# TYPE cassa_intermediary_rejected_total counter\n");
        for (name, guard) in &guards {
            text.push_str(&format!("cassa_intermediary_rejected_total{{intermediary=\"{name}\",reason=\"circuit_open\"}} {}\n", guard.rejected_open));
            text.push_str(&format!("cassa_intermediary_rejected_total{{intermediary=\"{name}\",reason=\"rate_limit\"}} {}\n", guard.rejected_rate));
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

/// A label value as the Prometheus text format wants it: `\\`, `"` and newlines escaped.
fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value(r#"a"}\b"#), r#"a\"}\\b"#);
        assert_eq!(label_value("line\nnext"), "line\\nnext");
        assert_eq!(label_value("plain-1.2:3"), "plain-1.2:3");
    }
}
