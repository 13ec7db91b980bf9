//! `/v1/tenants…`: the municipalities. The admin creates, changes and (softly) deletes
//! them; an operator reads their own. A deleted tenant keeps its data, is shown with
//! `active: false`, and takes no new payments.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::body;
use super::problem::ApiError;
use super::routes::{endpoint, Endpoint};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::domain::time;
use crate::store::{Page, Tenant};
use crate::tenancy::{self, TenantBody};
use actix_web::http::Method;

/// Largest page of a configuration list.
pub const CONFIG_LIST_MAX: i64 = 500;
const CONFIG_LIST_DEFAULT: i64 = 100;

/// Who may read configuration (each within what they see).
pub const CONFIG_READERS: &[Role] = &[Role::Admin, Role::Operator];

/// The tenant routes.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::POST, "/v1/tenants", create),
        endpoint(Method::GET, "/v1/tenants", list),
        endpoint(Method::GET, "/v1/tenants/schema", schema),
        endpoint(Method::GET, "/v1/tenants/{id}", get),
        endpoint(Method::PUT, "/v1/tenants/{id}", replace),
        endpoint(Method::PATCH, "/v1/tenants/{id}", patch),
        endpoint(Method::DELETE, "/v1/tenants/{id}", delete),
    ]
}

/// A tenant as the API shows it.
#[derive(Serialize)]
struct TenantView {
    id: Uuid,
    name: String,
    tax_identification_number: String,
    active: bool,
    allowed_hosts: Vec<String>,
    #[serde(with = "time::rome")]
    created_at: DateTime<Utc>,
    #[serde(with = "time::rome")]
    updated_at: DateTime<Utc>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id,
            name: t.name,
            tax_identification_number: t.tax_identification_number,
            active: t.active,
            allowed_hosts: t.allowed_hosts,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A page of a configuration list.
#[derive(Serialize)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Parses `limit` and `cursor` (the last id of the previous page), and hands other
/// parameters to `other`.
pub fn parse_page(
    query: Vec<(String, String)>,
    mut other: impl FnMut(&str, &str) -> Result<(), ApiError>,
) -> Result<Page, ApiError> {
    let mut page = Page {
        after: None,
        limit: CONFIG_LIST_DEFAULT,
    };
    for (name, value) in query {
        match name.as_str() {
            "limit" => {
                page.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=CONFIG_LIST_MAX).contains(n))
                    .ok_or_else(|| {
                        ApiError::field(
                            "limit",
                            format!("must be an integer from 1 to {CONFIG_LIST_MAX}"),
                        )
                    })?
            }
            "cursor" => {
                page.after =
                    Some(Uuid::parse_str(&value).map_err(|_| {
                        ApiError::field("cursor", "is not a cursor this API returned")
                    })?)
            }
            other_name => other(other_name, &value)?,
        }
    }
    Ok(page)
}

/// Builds a page from `limit + 1` rows.
pub fn to_page<R, T>(
    mut rows: Vec<R>,
    page: Page,
    id: impl Fn(&R) -> Uuid,
    view: impl Fn(R) -> T,
) -> ListPage<T> {
    let more = rows.len() as i64 > page.limit;
    rows.truncate(page.limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    ListPage {
        items: rows.into_iter().map(view).collect(),
        next_cursor,
    }
}

/// A write that lost a race with another one.
pub fn changed_meanwhile(what: &str, id: Uuid) -> ApiError {
    ApiError::Conflict(format!(
        "the {what} {id} was changed by someone else meanwhile: read it again and retry"
    ))
}

/// `"active": null` would remove the field and so default it back to `true`: refused.
pub fn refuse_null_active(patch: &serde_json::Value) -> Result<(), ApiError> {
    if patch.get("active").is_some_and(|a| a.is_null()) {
        return Err(ApiError::field("active", "must be true or false"));
    }
    Ok(())
}

pub fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::field(field, "must be a UUID"))
}

async fn schema(caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "read configuration schemas")?;
    Ok(HttpResponse::Ok().json(tenancy::tenant_schema()))
}

/// Reads a tenant for a caller: 404 unless it may know the tenant exists.
async fn load_for(state: &AppState, caller: &Caller, raw: &str) -> Result<Tenant, ApiError> {
    let id = parse_uuid("id", raw)?;
    state
        .store
        .tenant(id)
        .await?
        .filter(|t| caller.sees_tenant(t.id))
        .ok_or_else(|| ApiError::NotFound(format!("no tenant {id}")))
}

#[tracing::instrument(name = "http.create_tenant", skip_all)]
async fn create(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin], "create tenants")?;
    let (mut body, _): (TenantBody, _) = body::json(&req, payload).await?;
    body.validate()?;
    let now = time::now();
    let tenant = Tenant {
        id: body.id.unwrap_or_else(Uuid::new_v4),
        name: body.name,
        tax_identification_number: body.tax_identification_number,
        active: body.active,
        allowed_hosts: body.allowed_hosts,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    if !state.store.insert_tenant(&tenant).await? {
        return Err(ApiError::Conflict(format!(
            "a tenant with id {} exists already",
            tenant.id
        )));
    }
    state.configs.forget(tenant.id);
    tracing::info!(tenant_id = %tenant.id, "tenant created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{}", tenant.id)))
        .json(TenantView::from(tenant)))
}

async fn list(
    caller: Caller,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "list tenants")?;
    let page = parse_page(query.into_inner(), |name, _| {
        Err(ApiError::field(
            name,
            "unknown query parameter (known: limit, cursor)",
        ))
    })?;
    let only = if caller.is_admin() {
        None
    } else {
        caller.tenant_id
    };
    let rows = state
        .store
        .list_tenants(
            only,
            Page {
                limit: page.limit + 1,
                ..page
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(to_page(rows, page, |t| t.id, TenantView::from)))
}

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(CONFIG_READERS, "read tenants")?;
    let tenant = load_for(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(tenant)))
}

/// Validates and writes the new state of an existing tenant.
async fn write(
    state: &AppState,
    current: Tenant,
    mut body: TenantBody,
) -> Result<HttpResponse, ApiError> {
    if body.id.is_some_and(|id| id != current.id) {
        return Err(ApiError::field("id", "differs from the id in the path"));
    }
    body.validate()?;
    let tenant = Tenant {
        name: body.name,
        tax_identification_number: body.tax_identification_number,
        active: body.active,
        allowed_hosts: body.allowed_hosts,
        updated_at: time::now(),
        ..current
    };
    if !state.store.update_tenant(&tenant).await? {
        return Err(changed_meanwhile("tenant", tenant.id));
    }
    state.configs.forget(tenant.id);
    // The services' intermediary clients were admitted under the old allow-list.
    state.deps.intermediaries.forget_all();
    tracing::info!(tenant_id = %tenant.id, active = tenant.active, "tenant updated");
    Ok(HttpResponse::Ok().json(TenantView::from(tenant)))
}

async fn replace(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin], "change tenants")?;
    let current = load_for(&state, &caller, &path).await?;
    let (body, _): (TenantBody, _) = body::json(&req, payload).await?;
    write(&state, current, body).await
}

async fn patch(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin], "change tenants")?;
    let current = load_for(&state, &caller, &path).await?;
    let patch = body::merge_patch(&req, payload).await?;
    refuse_null_active(&patch)?;
    let mut document = serde_json::to_value(TenantBody {
        id: Some(current.id),
        name: current.name.clone(),
        tax_identification_number: current.tax_identification_number.clone(),
        active: current.active,
        allowed_hosts: current.allowed_hosts.clone(),
    })
    .map_err(anyhow::Error::from)?;
    tenancy::merge_patch(&mut document, &patch);
    let body: TenantBody = body::from_value(document)?;
    write(&state, current, body).await
}

/// Soft delete: the tenant stays, inactive, and takes no new payments.
async fn delete(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin], "delete tenants")?;
    let current = load_for(&state, &caller, &path).await?;
    let tenant = Tenant {
        active: false,
        updated_at: time::now(),
        ..current
    };
    if !state.store.update_tenant(&tenant).await? {
        return Err(changed_meanwhile("tenant", tenant.id));
    }
    state.configs.forget(tenant.id);
    tracing::info!(tenant_id = %tenant.id, "tenant deactivated (soft delete)");
    Ok(HttpResponse::NoContent().finish())
}
