//! `/v1/services…`: each service's payment configuration (payment types, defaults, the
//! receiver, and its intermediary with credentials). Admins manage all of them, operators
//! their tenant's. Credentials are sealed before they are stored and only ever shown
//! masked; sending the mask back keeps the stored value.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::body;
use super::problem::ApiError;
use super::routes::{endpoint, Endpoint};
use super::tenants::{
    changed_meanwhile, parse_page, parse_uuid, refuse_null_active, to_page, CONFIG_READERS,
};
use super::AppState;
use crate::auth::Caller;
use crate::domain::time;
use crate::store::{Page, ServiceConfig};
use crate::tenancy::{self, Credentials, ServiceBody};
use actix_web::http::Method;

/// The service-config routes.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::POST, "/v1/services", create),
        endpoint(Method::GET, "/v1/services", list),
        endpoint(Method::GET, "/v1/services/schema", schema),
        endpoint(Method::GET, "/v1/services/{id}", get),
        endpoint(Method::PUT, "/v1/services/{id}", replace),
        endpoint(Method::PATCH, "/v1/services/{id}", patch),
        endpoint(Method::DELETE, "/v1/services/{id}", delete),
    ]
}

/// A service config as the API shows it: its document, credentials masked.
#[derive(Serialize)]
struct ServiceView {
    #[serde(flatten)]
    body: ServiceBody,
    #[serde(with = "time::rome")]
    created_at: DateTime<Utc>,
    #[serde(with = "time::rome")]
    updated_at: DateTime<Utc>,
}

/// The stored document of a service, with its credentials opened (for rewriting) or
/// masked (for showing).
fn document(
    state: &AppState,
    service: &ServiceConfig,
    open_credentials: bool,
) -> Result<ServiceBody, ApiError> {
    let mut body: ServiceBody = serde_json::from_value(service.document.clone())
        .map_err(|e| anyhow::anyhow!("service {} has an unreadable document: {e}", service.id))?;
    // The columns are the truth for what payments use.
    body.id = Some(service.id);
    body.tenant_id = service.tenant_id;
    body.active = service.active;
    body.payment_type = tenancy::PaymentTypes::from_vec(service.payment_types.clone());
    body.intermediary
        .kind
        .clone_from(&service.intermediary_kind);
    body.intermediary.url.clone_from(&service.intermediary_url);
    body.intermediary.credentials = match &service.credentials {
        None => None,
        Some(sealed) => {
            let credentials = open(state, sealed)?;
            Some(if open_credentials {
                credentials
            } else {
                credentials.masked()
            })
        }
    };
    Ok(body)
}

fn open(state: &AppState, sealed: &str) -> Result<Credentials, ApiError> {
    let opened = state
        .secret_box
        .open(sealed)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    serde_json::from_slice(&opened)
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("stored credentials are unreadable")))
}

fn view(state: &AppState, service: &ServiceConfig) -> Result<ServiceView, ApiError> {
    Ok(ServiceView {
        body: document(state, service, false)?,
        created_at: service.created_at,
        updated_at: service.updated_at,
    })
}

async fn schema(caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "read configuration schemas")?;
    Ok(HttpResponse::Ok().json(tenancy::service_schema()))
}

/// Reads a service config for a caller: 404 unless it may know the service exists.
async fn load_for(state: &AppState, caller: &Caller, raw: &str) -> Result<ServiceConfig, ApiError> {
    let id = parse_uuid("id", raw)?;
    state
        .store
        .service(id)
        .await?
        .filter(|s| caller.sees_tenant(s.tenant_id))
        .ok_or_else(|| ApiError::NotFound(format!("no service {id}")))
}

/// Checks what a body may not say by its shape alone: the caller may configure its
/// tenant, which exists and is active.
async fn check_tenant(state: &AppState, caller: &Caller, tenant_id: Uuid) -> Result<(), ApiError> {
    if !caller.sees_tenant(tenant_id) {
        return Err(ApiError::Forbidden(format!(
            "this token may not configure tenant {tenant_id}"
        )));
    }
    match state.store.tenant(tenant_id).await? {
        None => Err(ApiError::field("tenant_id", "no such tenant")),
        Some(t) if !t.active => Err(ApiError::field(
            "tenant_id",
            "the tenant is deleted (inactive): it takes no new services",
        )),
        Some(_) => Ok(()),
    }
}

/// The URLs of a validated body against the outbound policy: the global allow-list and
/// its tenant's `allowed_hosts` (400 naming the field).
async fn check_outbound(state: &AppState, body: &ServiceBody) -> Result<(), ApiError> {
    let tenant = crate::outbound::tenant_allow_list(state.store.as_ref(), body.tenant_id).await?;
    body.check_outbound(&state.deps.outbound, &tenant).await?;
    Ok(())
}

/// A validated body → the row to store, credentials sealed.
fn to_row(
    state: &AppState,
    id: Uuid,
    body: &ServiceBody,
    created_at: DateTime<Utc>,
    version: i64,
) -> Result<ServiceConfig, ApiError> {
    let credentials = match &body.intermediary.credentials {
        Some(c) if !c.is_empty() => {
            let plain = serde_json::to_vec(c).map_err(anyhow::Error::from)?;
            Some(
                state
                    .secret_box
                    .seal(&plain)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )
        }
        _ => None,
    };
    let mut public = body.public();
    public.id = Some(id);
    Ok(ServiceConfig {
        id,
        tenant_id: body.tenant_id,
        payment_types: body.payment_type.to_vec(),
        intermediary_kind: body.intermediary.kind.clone(),
        intermediary_url: body.intermediary.url.clone(),
        active: body.active,
        document: serde_json::to_value(&public).map_err(anyhow::Error::from)?,
        credentials,
        created_at,
        updated_at: time::now(),
        version,
    })
}

#[tracing::instrument(name = "http.create_service", skip_all)]
async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "create service configs")?;
    let (mut body, _): (ServiceBody, _) = body::json(&req, payload).await?;
    if let Some(credentials) = &mut body.intermediary.credentials {
        credentials.unmask(None)?;
    }
    body.validate()?;
    check_tenant(&state, &caller, body.tenant_id).await?;
    if body.id.is_some() && !caller.may_choose_ids() {
        // Refused before the store is asked: the same answer whether the id is free or
        // another tenant's, so a chosen id tells nothing about other tenants.
        return Err(ApiError::field(
            "id",
            "is chosen by cassa for this token (omit it); only the admin sets service ids",
        ));
    }
    check_outbound(&state, &body).await?;
    let id = body.id.unwrap_or_else(Uuid::new_v4);
    let row = to_row(&state, id, &body, time::now(), 0)?;
    if !state.store.insert_service(&row).await? {
        return Err(ApiError::Conflict(format!(
            "a service with id {id} exists already"
        )));
    }
    state.configs.forget(id);
    tracing::info!(service_id = %id, tenant_id = %row.tenant_id, "service config created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/services/{id}")))
        .json(view(&state, &row)?))
}

async fn list(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "list service configs")?;
    let mut tenant = None;
    let page = parse_page(query.into_inner(), |name, value| match name {
        "tenant_id" => {
            tenant = Some(parse_uuid("tenant_id", value)?);
            Ok(())
        }
        _ => Err(ApiError::field(
            name,
            "unknown query parameter (known: tenant_id, limit, cursor)",
        )),
    })?;
    let tenant = match tenant {
        Some(asked) if !caller.sees_tenant(asked) => {
            return Err(ApiError::Forbidden(format!(
                "this token may not list the services of tenant {asked}"
            )))
        }
        Some(asked) => Some(asked),
        None if caller.is_admin() => None,
        None => caller.tenant_id,
    };
    let rows = state
        .store
        .list_services(
            tenant,
            Page {
                limit: page.limit + 1,
                ..page
            },
        )
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(view(&state, row)?);
    }
    Ok(HttpResponse::Ok().json(to_page(
        views,
        page,
        |v| v.body.id.unwrap_or_default(),
        |v| v,
    )))
}

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "read service configs")?;
    let service = load_for(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&state, &service)?))
}

/// Validates and writes the new state of an existing service config.
async fn write(
    state: &AppState,
    caller: &Caller,
    current: ServiceConfig,
    mut body: ServiceBody,
) -> Result<HttpResponse, ApiError> {
    if body.id.is_some_and(|id| id != current.id) {
        return Err(ApiError::field("id", "differs from the id in the path"));
    }
    // Credentials belong to one intermediary: a new URL or kind gets none of the stored
    // ones (masks are refused), so they can never be sent somewhere else.
    let same_intermediary = body.intermediary.kind.trim() == current.intermediary_kind
        && body.intermediary.url.trim_end_matches('/') == current.intermediary_url;
    let stored = match &current.credentials {
        Some(sealed) if same_intermediary => Some(open(state, sealed)?),
        _ => None,
    };
    match &mut body.intermediary.credentials {
        // Not sent: the stored credentials stay (if the intermediary does).
        None => body.intermediary.credentials = stored,
        Some(sent) => sent.unmask(stored.as_ref()).map_err(|e| {
            if same_intermediary {
                e
            } else {
                crate::domain::field::FieldError::new(
                    e.field,
                    "is the mask, but the intermediary changed: send the credentials for the new one",
                )
            }
        })?,
    }
    body.validate()?;
    if body.tenant_id != current.tenant_id {
        check_tenant(state, caller, body.tenant_id).await?;
    }
    check_outbound(state, &body).await?;
    let row = to_row(
        state,
        current.id,
        &body,
        current.created_at,
        current.version,
    )?;
    if !state.store.update_service(&row).await? {
        return Err(changed_meanwhile("service", row.id));
    }
    state.deps.intermediaries.forget(row.id);
    state.configs.forget(row.id);
    tracing::info!(service_id = %row.id, active = row.active, "service config updated");
    Ok(HttpResponse::Ok().json(view(state, &row)?))
}

async fn replace(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "change service configs")?;
    let current = load_for(&state, &caller, &path).await?;
    let (body, _): (ServiceBody, _) = body::json(&req, payload).await?;
    write(&state, &caller, current, body).await
}

async fn patch(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "change service configs")?;
    let current = load_for(&state, &caller, &path).await?;
    let patch = body::merge_patch(&req, payload).await?;
    refuse_null_active(&patch)?;
    // Merged onto the masked document: masks that stay keep the stored credentials.
    let mut merged =
        serde_json::to_value(document(&state, &current, false)?).map_err(anyhow::Error::from)?;
    tenancy::merge_patch(&mut merged, &patch);
    let mut body: ServiceBody = body::from_value(merged)?;
    match patch["intermediary"].get("credentials") {
        // Not in the patch: as a PUT without them (kept while the intermediary stays).
        None => body.intermediary.credentials = None,
        // `"credentials": null` removes them all (RFC 7396), it does not keep them.
        Some(c) if c.is_null() => body.intermediary.credentials = Some(Credentials::default()),
        Some(_) => {}
    }
    write(&state, &caller, current, body).await
}

/// Soft delete: the config stays, inactive; it takes no new payments, and the payments
/// it has keep running.
async fn delete(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "delete service configs")?;
    let current = load_for(&state, &caller, &path).await?;
    let row = ServiceConfig {
        active: false,
        updated_at: time::now(),
        ..current
    };
    if !state.store.update_service(&row).await? {
        return Err(changed_meanwhile("service", row.id));
    }
    state.deps.intermediaries.forget(row.id);
    state.configs.forget(row.id);
    tracing::info!(service_id = %row.id, "service config deactivated (soft delete)");
    Ok(HttpResponse::NoContent().finish())
}
