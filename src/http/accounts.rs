//! `/v1/accounts/{id}`: a wallet's balance, held and available money; deposits.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body;
use super::problem::ApiError;
use super::AppState;
use crate::domain::money::{cents_as_decimal, Money};
use crate::store::Account;

/// Mounts the account routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/accounts/{id}", web::get().to(get))
        .route("/v1/accounts/{id}/deposits", web::post().to(deposit));
}

/// An account as the API shows it.
#[derive(Serialize)]
struct AccountView {
    id: Uuid,
    owner_id: Uuid,
    currency: String,
    #[serde(with = "cents_as_decimal")]
    balance: i64,
    #[serde(with = "cents_as_decimal")]
    held: i64,
    #[serde(with = "cents_as_decimal")]
    available: i64,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            id: a.id,
            owner_id: a.owner_id,
            currency: a.currency,
            balance: a.balance_cents,
            held: a.held_cents,
            available: a.balance_cents - a.held_cents,
        }
    }
}

fn account_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::field("id", "must be a UUID"))
}

async fn get(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let account = state
        .store
        .account(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    Ok(HttpResponse::Ok().json(AccountView::from(account)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    amount: Money,
}

async fn deposit(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let (deposit, _): (Deposit, _) = body::json(&req, payload).await?;
    let account = state
        .store
        .deposit(id, deposit.amount.cents())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    Ok(HttpResponse::Ok().json(AccountView::from(account)))
}
