//! The HTTP surface (actix-web): `app_config` mounts every route, so tests and the
//! server build the same application.

pub mod accounts;
pub mod body;
pub mod notice;
pub mod payments;
pub mod problem;

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpResponse};

use crate::actors::PaymentRegistry;
use crate::store::Store;
use problem::ApiError;

/// Shared state of the handlers.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub registry: Addr<PaymentRegistry>,
    /// Base of the links that point back at cassa.
    pub public_url: String,
}

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Mounts every cassa route (not the simulator).
pub fn app_config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/openapi.json", web::get().to(openapi))
        .configure(payments::configure)
        .configure(accounts::configure);
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

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}
