//! `/v1/accounts/{id}`: a wallet's balance, held and available money; deposits.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body;
use super::problem::ApiError;
use super::AppState;
use crate::auth::{Caller, Role};
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

/// Wallets belong to citizens: the owner and the admin may use them.
const ACCOUNT_ROLES: &[Role] = &[Role::Admin, Role::Citizen];

/// Reads an account for a caller: 403 for roles that never see wallets, 404 when the
/// account does not exist or is someone else's.
async fn load_for(state: &AppState, caller: &Caller, raw: &str) -> Result<Account, ApiError> {
    caller.require(ACCOUNT_ROLES, "use wallet accounts")?;
    let id = account_id(raw)?;
    state
        .store
        .account(id)
        .await?
        .filter(|a| caller.is_admin() || caller.user_id == Some(a.owner_id))
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))
}

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = load_for(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(account)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    amount: Money,
}

async fn deposit(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = load_for(&state, &caller, &path).await?.id;
    let (deposit, _): (Deposit, _) = body::json(&req, payload).await?;
    let account = state
        .store
        .deposit(id, deposit.amount.cents())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    Ok(HttpResponse::Ok().json(AccountView::from(account)))
}
