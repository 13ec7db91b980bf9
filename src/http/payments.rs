//! `/v1/payments…`: create (with `Idempotency-Key`), read, list (the queryable view of
//! open payments), cancel, check now, and the citizen's links (online payment,
//! landing, receipt). Reads come from the database; changes go through the payment's
//! actor, so they never race with its own work.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::body;
use super::problem::ApiError;
use super::routes::{endpoint, Endpoint};
use super::AppState;
use crate::actors::{Forward, PaymentCommand};
use crate::auth::{Caller, Role};
use crate::domain::payment::Payment;
use crate::domain::status::PaymentStatus;
use crate::domain::time;
use crate::intake::{user_id_for, CreatePayment, Origin};
use crate::store::{Created, Cursor, IdempotencyKey, PaymentFilter};
use actix_web::http::Method;

/// Longest `Idempotency-Key`.
const IDEMPOTENCY_KEY_MAX: usize = 255;
/// Largest page of the list.
pub const LIST_LIMIT_MAX: i64 = 500;
const LIST_LIMIT_DEFAULT: i64 = 50;

/// The payment routes.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::POST, "/v1/payments", create),
        endpoint(Method::GET, "/v1/payments", list),
        endpoint(Method::GET, "/v1/payments/{id}", get),
        endpoint(Method::GET, "/v1/payments/{id}/events", history),
        endpoint(Method::POST, "/v1/payments/{id}/cancel", cancel),
        endpoint(Method::POST, "/v1/payments/{id}/update", update),
        endpoint(
            Method::GET,
            "/v1/payments/{id}/online-payment",
            online_payment,
        ),
        endpoint(Method::GET, "/v1/payments/{id}/landing", landing),
        endpoint(
            Method::GET,
            "/v1/payments/{id}/receipt",
            super::receipt::receipt,
        ),
        endpoint(
            Method::GET,
            "/v1/payments/{id}/notice",
            super::notice::notice,
        ),
        endpoint(
            Method::POST,
            "/v1/intermediaries/{name}/notify",
            intermediary_notify,
        ),
    ]
}

pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::field("Idempotency-Key", "must be printable ASCII"))?
        .trim();
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX {
        return Err(ApiError::field(
            "Idempotency-Key",
            format!("must be 1 to {IDEMPOTENCY_KEY_MAX} characters"),
        ));
    }
    Ok(Some(key.to_string()))
}

/// Hash of the request's meaning: key order and whitespace do not matter.
pub(super) fn request_hash(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_else(|_| body.to_vec());
    hex::encode(Sha256::digest(canonical))
}

pub(super) fn accepted(payment: &Payment) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/payments/{}", payment.id)))
        .json(payment)
}

/// 429 when the caller creates payments faster than the create rate limit (payments
/// and wallet top-ups share it: both create positions at the intermediary).
pub(super) fn limit_creation(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    // Keyed by tenant too: one subject in two tenants is two callers, with two buckets.
    let tenant = caller
        .tenant_id
        .map_or_else(|| "*".to_string(), |t| t.to_string());
    state
        .create_limiter
        .admit(&format!("{tenant}:{}:{}", caller.role.as_str(), caller.sub))
}

#[tracing::instrument(name = "http.create_payment", skip_all)]
async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(
        &[Role::Admin, Role::Operator, Role::Citizen, Role::System],
        "create payments",
    )?;
    limit_creation(&state, &caller)?;
    let key = idempotency_key(&req)?;
    let (request, raw): (CreatePayment, _) = body::json(&req, payload).await?;
    if !caller.sees_tenant(request.tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "this token may not create payments for tenant {}",
            request.tenant_id
        )));
    }
    if request.remote_id.is_some() && !matches!(caller.role, Role::Admin | Role::System) {
        // The platform's application id: nobody else may claim (or probe) one.
        return Err(ApiError::field(
            "remote_id",
            "is set by the platform only (system or admin tokens)",
        ));
    }
    // A citizen's payments are theirs; others name the user, or the payer's tax code does.
    let user_id = match (caller.user_id, request.user_id) {
        (Some(citizen), Some(asked)) if asked != citizen => {
            return Err(ApiError::field(
                "user_id",
                "a citizen creates payments for themselves only",
            ))
        }
        (Some(citizen), _) => citizen,
        (None, Some(asked)) => asked,
        (None, None) => user_id_for(&request.payer),
    };
    let idempotency = key.map(|key| IdempotencyKey {
        // Keys are per caller: two callers can never replay each other's payments.
        scope: format!(
            "tenant:{}:{}:{}",
            request.tenant_id,
            caller.role.as_str(),
            caller.sub
        ),
        key,
        request_hash: request_hash(&raw),
    });
    let intake = state.intake();
    match intake.create(request, user_id, Origin::Caller(&caller), idempotency).await? {
        Created::New(row) | Created::Replayed(row) => Ok(accepted(&row.payment)),
        Created::KeyReused { payment_id } => Err(ApiError::Unprocessable(format!(
            "this Idempotency-Key was already used with a different body (payment {payment_id}); use a new key for a new payment"
        ))),
        Created::RemoteIdTaken(row) if caller.sees_payment(&row.payment) => {
            Err(ApiError::Conflict(format!(
                "a payment for remote_id {} exists already: /v1/payments/{}",
                row.payment.remote_id.unwrap_or_default(),
                row.payment.id
            )))
        }
        Created::RemoteIdTaken(_) => Err(ApiError::Conflict(
            "this remote_id is already used by another payment".into(),
        )),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::field("id", "must be a UUID"))
}

/// Reads a payment by the id in its link (the id is the unguessable capability).
pub(super) async fn load(state: &AppState, raw_id: &str) -> Result<Payment, ApiError> {
    let id = parse_id(raw_id)?;
    state
        .store
        .payment(id)
        .await?
        .map(|row| row.payment)
        .ok_or_else(|| ApiError::NotFound(format!("no payment {id}")))
}

/// Reads a payment for a caller: 404 when it may not know the payment exists, then 403
/// when its role may not do `action` to it.
async fn load_for(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    roles: &[Role],
    action: &str,
) -> Result<Payment, ApiError> {
    let payment = load(state, raw_id).await?;
    if !caller.sees_payment(&payment) {
        return Err(ApiError::NotFound(format!("no payment {}", payment.id)));
    }
    caller.require(roles, action)?;
    Ok(payment)
}

const EVERY_ROLE: &[Role] = &[Role::Admin, Role::Operator, Role::Citizen, Role::System];

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = load_for(&state, &caller, &path, EVERY_ROLE, "read payments").await?;
    Ok(HttpResponse::Ok().json(payment))
}

/// One state change of a payment, as its outbox event recorded it.
#[derive(Serialize)]
struct HistoryEntry {
    event_id: serde_json::Value,
    event_created_at: serde_json::Value,
    status: serde_json::Value,
    status_message: serde_json::Value,
}

/// Why a payment is where it is: its saga (attempts, last error, compensations under
/// way), when it is checked next, and its history (every outbox event, oldest first).
#[derive(Serialize)]
struct History {
    payment_id: Uuid,
    status: PaymentStatus,
    #[serde(with = "time::rome_opt")]
    next_check_at: Option<chrono::DateTime<chrono::Utc>>,
    saga: SagaView,
    events: Vec<HistoryEntry>,
}

#[derive(Serialize)]
struct SagaView {
    attempts: u32,
    last_error: Option<String>,
    wind_down: Option<crate::domain::saga::WindDown>,
}

async fn history(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = load_for(&state, &caller, &path, EVERY_ROLE, "read payments").await?;
    let row = state
        .store
        .payment(payment.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no payment {}", payment.id)))?;
    let events = state.store.payment_events(payment.id).await?;
    let field =
        |event: &serde_json::Value, name: &str| event.get(name).cloned().unwrap_or_default();
    Ok(HttpResponse::Ok().json(History {
        payment_id: payment.id,
        status: row.payment.status,
        next_check_at: row.next_check_at,
        saga: SagaView {
            attempts: row.saga.attempts,
            last_error: row.saga.last_error.clone(),
            wind_down: row.saga.wind_down,
        },
        events: events
            .iter()
            .map(|event| HistoryEntry {
                event_id: field(event, "event_id"),
                event_created_at: field(event, "event_created_at"),
                status: field(event, "status"),
                status_message: field(event, "status_message"),
            })
            .collect(),
    }))
}

async fn command(
    state: &AppState,
    id: Uuid,
    command: PaymentCommand,
) -> Result<crate::actors::CommandReply, ApiError> {
    state
        .registry
        .send(Forward { id, command })
        .await
        .map_err(|e| ApiError::Unavailable(format!("the payment registry is not answering: {e}")))?
        .map_err(ApiError::from)
}

#[tracing::instrument(name = "http.cancel_payment", skip_all, fields(payment_id = %path))]
async fn cancel(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = load_for(
        &state,
        &caller,
        &path,
        &[Role::Admin, Role::Operator, Role::Citizen],
        "cancel payments",
    )
    .await?;
    caller.may_cancel(&payment)?;
    if payment.status.is_final() {
        return match payment.status {
            PaymentStatus::Canceled => Ok(HttpResponse::Ok().json(payment)),
            s => Err(ApiError::Conflict(format!("the payment is already {s}"))),
        };
    }
    let reply = command(&state, payment.id, PaymentCommand::Cancel).await?;
    match reply.payment.status {
        PaymentStatus::Canceled => Ok(HttpResponse::Ok().json(reply.payment)),
        s if s.is_final() => Err(ApiError::Conflict(format!(
            "the payment ended {s} before it could be cancelled"
        ))),
        // Compensation still running (retried until done): accepted, not finished.
        _ => Ok(HttpResponse::Accepted().json(reply.payment)),
    }
}

#[tracing::instrument(name = "http.update_payment", skip_all, fields(payment_id = %path))]
async fn update(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = load_for(
        &state,
        &caller,
        &path,
        &[Role::Admin, Role::Operator, Role::System],
        "ask for a check at the intermediary (the landing link does that for citizens)",
    )
    .await?;
    if payment.status.is_final() {
        return Ok(HttpResponse::Ok().json(payment));
    }
    let reply = command(&state, payment.id, PaymentCommand::CheckNow).await?;
    Ok(HttpResponse::Ok().json(reply.payment))
}

async fn online_payment(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = load(&state, &path).await?;
    state
        .link_limiter
        .admit(&format!("checkout:{}", payment.id))?;
    if payment.status.is_final() {
        return Err(ApiError::Conflict(format!(
            "the payment is {}",
            payment.status
        )));
    }
    let reply = command(&state, payment.id, PaymentCommand::StartCheckout).await?;
    let url = reply
        .checkout_url
        .ok_or_else(|| ApiError::Conflict("the payment has no online checkout".into()))?;
    if let Err(reason) = redirect_allowed(&state, &payment, &url).await? {
        return Err(ApiError::Unavailable(format!(
            "the intermediary's checkout address is refused by the outbound policy ({reason}); an admin must allow its host"
        )));
    }
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .finish())
}

/// Whether cassa may send the citizen to `url`: its own pages, or a host the global or
/// the payment's tenant's allow-list names (never an open redirect).
async fn redirect_allowed(
    state: &AppState,
    payment: &Payment,
    url: &str,
) -> Result<Result<(), crate::outbound::Refused>, ApiError> {
    let tenant =
        crate::outbound::tenant_allow_list(state.store.as_ref(), payment.tenant_id).await?;
    Ok(state
        .deps
        .outbound
        .admit_redirect(url, &state.public_url, &tenant)
        .await)
}

async fn landing(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let payment = load(&state, &path).await?;
    state
        .link_limiter
        .admit(&format!("landing:{}", payment.id))?;
    // Only a trigger (the intermediary decides the status), and at most one per payment
    // per `CHECK_TRIGGER_EVERY` from landings and pushes together.
    if !payment.status.is_final() && state.check_triggers.ready(payment.id) {
        // An immediate check, without making the citizen wait for the intermediary.
        let forward = Forward {
            id: payment.id,
            command: PaymentCommand::CheckNow,
        };
        if let Err(e) = state.registry.try_send(forward) {
            tracing::warn!(payment_id = %payment.id, error = %e, "landing check not queued; polling will find the outcome");
        }
    }
    let landing = match payment.links.online_payment_landing.url.clone() {
        // A landing off the allow-lists (planted, or its host no longer allowed) gets
        // cassa's own page instead of a redirect.
        Some(url) => redirect_allowed(&state, &payment, &url)
            .await?
            .ok()
            .map(|()| url),
        None => None,
    };
    match landing {
        Some(url) => Ok(HttpResponse::Found().insert_header((header::LOCATION, url)).finish()),
        None => Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
            "<!doctype html><title>Payment</title><p>Thank you. The payment is being checked; its status was {}.</p>",
            payment.status
        ))),
    }
}

#[derive(Deserialize)]
struct IntermediaryPush {
    iud: String,
}

/// A push from the intermediary, named by the service whose configuration holds it:
/// refused (401, one answer for every reason) unless signed with that service's push
/// secret; then never trusted as such, it only triggers a check (one per payment per
/// `CHECK_TRIGGER_EVERY`), and it answers 202 whether the payment exists or not.
async fn intermediary_notify(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = body::read_limited(&req, payload).await?;
    let service_id = push_sender(&state, &req, &path, &raw).await?;
    let push: IntermediaryPush = body::parse_json(&req, &raw)?;
    let payment = match Uuid::parse_str(&push.iud) {
        Ok(id) => state.store.payment(id).await?,
        Err(_) => None,
    };
    if let Some(row) = payment {
        let payment = row.payment;
        if payment.service_id == service_id
            && !payment.status.is_final()
            && state.check_triggers.ready(payment.id)
        {
            let forward = Forward {
                id: payment.id,
                command: PaymentCommand::CheckNow,
            };
            if let Err(e) = state.registry.try_send(forward) {
                tracing::warn!(payment_id = %payment.id, error = %e, "push check not queued; polling will find the outcome");
            }
        }
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({"accepted": true})))
}

/// The service a push comes from: `name` must be a configured service with a push
/// secret, and the push signed with it.
async fn push_sender(
    state: &AppState,
    req: &HttpRequest,
    name: &str,
    body: &[u8],
) -> Result<Uuid, ApiError> {
    let refused = || {
        ApiError::Unauthorized(format!(
            "a push must name a configured intermediary and carry {}: sha256=<HMAC-SHA256 of the body under its push secret>",
            crate::intermediary::PUSH_SIGNATURE_HEADER
        ))
    };
    let signature = req
        .headers()
        .get(crate::intermediary::PUSH_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(refused)?;
    let service_id = Uuid::parse_str(name).map_err(|_| refused())?;
    let service = state
        .configs
        .service(state.store.as_ref(), service_id)
        .await?
        .ok_or_else(refused)?;
    let sealed = service.credentials.as_deref().ok_or_else(refused)?;
    let opened = state.secret_box.open(sealed).map_err(|_| {
        ApiError::Unexpected(anyhow::anyhow!("stored credentials cannot be opened"))
    })?;
    let credentials: crate::tenancy::Credentials = serde_json::from_slice(&opened)
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("stored credentials are unreadable")))?;
    let secret = credentials.push_secret.ok_or_else(refused)?;
    if crate::intermediary::push_is_signed(&secret, body, signature) {
        Ok(service_id)
    } else {
        Err(refused())
    }
}

#[derive(Serialize)]
struct Page {
    items: Vec<Payment>,
    next_cursor: Option<String>,
}

fn encode_cursor(payment: &Payment) -> String {
    let raw = format!("{}|{}", payment.created_at.timestamp(), payment.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(text: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::field("cursor", "is not a cursor this API returned");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (seconds, id) = raw.split_once('|').ok_or_else(bad)?;
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    Ok(Cursor {
        created_at: DateTime::from_timestamp(seconds, 0).ok_or_else(bad)?,
        id: Uuid::parse_str(id).map_err(|_| bad())?,
    })
}

fn parse_uuid_param(name: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| ApiError::field(name, "must be a UUID"))
}

async fn list(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(EVERY_ROLE, "list payments")?;
    let mut filter = PaymentFilter::default();
    let mut limit = LIST_LIMIT_DEFAULT;
    let mut cursor = None;
    for (name, value) in query.into_inner() {
        match name.as_str() {
            "status" => {
                if value == "open" {
                    filter.statuses.extend(PaymentStatus::OPEN);
                } else {
                    let status = value
                        .parse::<PaymentStatus>()
                        .map_err(|e| ApiError::field("status", format!("{e}, or open")))?;
                    filter.statuses.push(status);
                }
            }
            "tenant_id" => filter.tenant_id = Some(parse_uuid_param("tenant_id", &value)?),
            "service_id" => filter.service_id = Some(parse_uuid_param("service_id", &value)?),
            "remote_id" => filter.remote_id = Some(parse_uuid_param("remote_id", &value)?),
            "user_id" => filter.user_id = Some(parse_uuid_param("user_id", &value)?),
            "created_since" => {
                filter.created_since = Some(time::parse(&value).map_err(|e| ApiError::field("created_since", e.to_string()))?)
            }
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
                    .ok_or_else(|| ApiError::field("limit", format!("must be an integer from 1 to {LIST_LIMIT_MAX}")))?
            }
            "cursor" => cursor = Some(decode_cursor(&value)?),
            other => {
                return Err(ApiError::field(
                    other,
                    "unknown query parameter (known: status, tenant_id, service_id, remote_id, user_id, created_since, limit, cursor)",
                ))
            }
        }
    }
    // The caller's scope narrows the filter: its tenant, a citizen's own payments.
    match (filter.tenant_id, caller.tenant_id) {
        (Some(asked), _) if !caller.sees_tenant(asked) => {
            return Err(ApiError::Forbidden(format!(
                "this token may not list the payments of tenant {asked}"
            )))
        }
        (None, Some(own)) if !caller.is_admin() => filter.tenant_id = Some(own),
        _ => {}
    }
    if let Some(own) = caller.user_id {
        match filter.user_id {
            Some(asked) if asked != own => {
                return Err(ApiError::Forbidden(
                    "a citizen may list only their own payments".into(),
                ))
            }
            _ => filter.user_id = Some(own),
        }
    }
    let mut rows = state
        .store
        .list_payments(&filter, limit + 1, cursor)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items: Vec<Payment> = rows.into_iter().map(|r| r.payment).collect();
    let next_cursor = if more {
        items.last().map(encode_cursor)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hash_ignores_key_order_and_whitespace() {
        assert_eq!(
            request_hash(br#"{"a":1,"b":2}"#),
            request_hash(br#"{ "b": 2, "a": 1 }"#)
        );
        assert_ne!(request_hash(br#"{"a":1}"#), request_hash(br#"{"a":2}"#));
    }

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            id: Uuid::new_v4(),
        };
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}|{}", 1_800_000_000, cursor.id));
        assert_eq!(decode_cursor(&text).unwrap(), cursor);
        assert!(decode_cursor("not-a-cursor").is_err());
    }
}
