//! `/v1/accounts/{id}`: a wallet's balance, held and available money; its movements
//! (the journal); top-ups (a PAGOPA payment whose completion credits the wallet) and
//! deposits (credits by the platform).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body;
use super::payments::{accepted, idempotency_key, limit_creation, request_hash, LIST_LIMIT_MAX};
use super::problem::ApiError;
use super::routes::{endpoint, Endpoint};
use super::AppState;
use crate::auth::{Caller, Role};
use crate::domain::money::{cents_as_decimal, format_cents, Money};
use crate::domain::payment::{Payer, PaymentType};
use crate::domain::status::PaymentStatus;
use crate::domain::time;
use crate::intake::{CreateLinks, CreatePayment, CreatePaymentData, REASON_MAX};
use crate::store::{
    Account, Created, Cursor, DepositRequest, Deposited, EntryKind, IdempotencyKey, LedgerEntry,
    Page, PaymentFilter,
};
use crate::tenancy::Fees;
use actix_web::http::Method;

/// The account routes.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::GET, "/v1/accounts/{id}", get),
        endpoint(Method::GET, "/v1/accounts/{id}/movements", movements),
        endpoint(Method::POST, "/v1/accounts/{id}/top-ups", top_up),
        endpoint(Method::POST, "/v1/accounts/{id}/deposits", deposit),
    ]
}

/// What a top-up payment is for, as the citizen and the intermediary see it.
const TOP_UP_REASON: &str = "Ricarica del borsellino elettronico";
/// Movements per page unless `limit` says.
const MOVEMENTS_DEFAULT: i64 = 50;

/// An account as the API shows it.
#[derive(Serialize)]
struct AccountView {
    id: Uuid,
    owner_id: Uuid,
    tenant_id: Option<Uuid>,
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
            tenant_id: a.tenant_id,
            currency: a.currency,
            balance: a.balance_cents,
            held: a.held_cents,
            available: a.balance_cents - a.held_cents,
        }
    }
}

/// A journal entry as the API shows it.
#[derive(Serialize)]
struct MovementView {
    seq: i64,
    payment_id: Option<Uuid>,
    kind: EntryKind,
    #[serde(with = "cents_as_decimal")]
    amount: i64,
    #[serde(with = "cents_as_decimal")]
    balance_after: i64,
    #[serde(with = "cents_as_decimal")]
    held_after: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(with = "time::rome")]
    created_at: DateTime<Utc>,
}

impl From<LedgerEntry> for MovementView {
    fn from(e: LedgerEntry) -> Self {
        MovementView {
            seq: e.seq,
            payment_id: e.payment_id,
            kind: e.kind,
            amount: e.amount_cents,
            balance_after: e.balance_after_cents,
            held_after: e.held_after_cents,
            reason: e.reason,
            created_at: e.created_at,
        }
    }
}

fn account_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::field("id", "must be a UUID"))
}

/// Reads an account for a caller: 403 for roles that may never do `action` to a wallet,
/// 404 when the account does not exist or the caller may not know it does, then 403
/// when `may` refuses this caller this account.
async fn load_for(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    roles: &[Role],
    action: &str,
    may: fn(&Caller, &Account) -> bool,
) -> Result<Account, ApiError> {
    caller.require(roles, action)?;
    let id = account_id(raw)?;
    let account = state
        .store
        .account(id)
        .await?
        .filter(|a| caller.sees_account(a))
        .ok_or_else(|| ApiError::NotFound(format!("no account {id}")))?;
    if !may(caller, &account) {
        return Err(ApiError::Forbidden(format!(
            "the {} role may not {action}",
            caller.role.as_str()
        )));
    }
    Ok(account)
}

/// Reading a wallet: its owner and the admin.
const READ_ROLES: &[Role] = &[Role::Admin, Role::Citizen];

async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = load_for(
        &state,
        &caller,
        &path,
        READ_ROLES,
        "read wallet accounts",
        Caller::reads_account,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AccountView::from(account)))
}

#[derive(Serialize)]
struct MovementsPage {
    items: Vec<MovementView>,
    next_cursor: Option<String>,
}

/// The account's journal, newest first; `cursor` is the `next_cursor` of the page before.
async fn movements(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = load_for(
        &state,
        &caller,
        &path,
        READ_ROLES,
        "read wallet movements",
        Caller::reads_account,
    )
    .await?;
    let mut limit = MOVEMENTS_DEFAULT;
    let mut before = None;
    for (name, value) in query.into_inner() {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
                    .ok_or_else(|| {
                        ApiError::field(
                            "limit",
                            format!("must be an integer from 1 to {LIST_LIMIT_MAX}"),
                        )
                    })?
            }
            "cursor" => {
                before = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|seq| *seq > 0)
                        .ok_or_else(|| {
                            ApiError::field("cursor", "is not a cursor this API returned")
                        })?,
                )
            }
            other => {
                return Err(ApiError::field(
                    other,
                    "unknown query parameter (known: limit, cursor)",
                ))
            }
        }
    }
    let mut entries = state.store.movements(account.id, before, limit + 1).await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = more
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    let items = entries.into_iter().map(MovementView::from).collect();
    Ok(HttpResponse::Ok().json(MovementsPage { items, next_cursor }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    amount: Money,
    /// Who pays at the intermediary (the debt position names them).
    payer: Payer,
}

/// A citizen tops up their own wallet by paying: a PAGOPA payment on the tenant's
/// top-up service, within the tenant's limits, whose completion credits the wallet.
async fn top_up(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = load_for(
        &state,
        &caller,
        &path,
        &[Role::Citizen],
        "top up wallets (the owner tops up by paying)",
        Caller::owns_wallet,
    )
    .await?;
    limit_creation(&state, &caller)?;
    let key = idempotency_key(&req)?;
    let (top_up, raw): (TopUp, _) = body::json(&req, payload).await?;
    let (Some(tenant_id), Some(user_id)) = (account.tenant_id, caller.user_id) else {
        // `owns_wallet` holds only for a citizen of the wallet's tenant.
        return Err(ApiError::NotFound(format!("no account {}", account.id)));
    };
    let (service, fees) = top_up_service(&state, tenant_id).await?.ok_or_else(|| {
        ApiError::Conflict("this tenant has no active wallet top-up service".into())
    })?;
    let pending = open_top_ups(&state, &account, tenant_id, service).await?;
    check_limits(&fees, &account, pending, top_up.amount)?;
    let request = CreatePayment {
        kind: PaymentType::Pagopa,
        tenant_id,
        service_id: service,
        remote_id: None,
        reason: TOP_UP_REASON.chars().take(REASON_MAX).collect(),
        payment: CreatePaymentData {
            amount: top_up.amount,
            currency: "EUR".into(),
            expire_at: None,
            split: Vec::new(),
        },
        payer: top_up.payer,
        debtor: None,
        locale: None,
        links: CreateLinks::default(),
        wallet_account_id: None,
        user_id: None,
    };
    let idempotency = key.map(|key| IdempotencyKey {
        scope: format!("top-up:{}:{}", account.id, caller.sub),
        key,
        request_hash: request_hash(&raw),
    });
    let intake = state.intake();
    match intake
        .create_top_up(request, user_id, &caller, account.id, idempotency)
        .await?
    {
        Created::New(row) | Created::Replayed(row) => Ok(accepted(&row.payment)),
        Created::KeyReused { payment_id } => Err(ApiError::Unprocessable(format!(
            "this Idempotency-Key was already used with a different body (payment {payment_id}); use a new key for a new top-up"
        ))),
        Created::RemoteIdTaken(_) => Err(ApiError::Unexpected(anyhow::anyhow!(
            "a top-up has no remote_id"
        ))),
    }
}

/// The tenant's active top-up service (the first by id, should there be several) and
/// its rules.
async fn top_up_service(state: &AppState, tenant: Uuid) -> Result<Option<(Uuid, Fees)>, ApiError> {
    let mut after = None;
    loop {
        let page = state
            .store
            .list_services(
                Some(tenant),
                Page {
                    after,
                    limit: LIST_LIMIT_MAX,
                },
            )
            .await?;
        if let Some(found) = page.iter().find_map(|s| {
            let fees = Fees::of(&s.document);
            (s.active && fees.wallet_top_up).then_some((s.id, fees))
        }) {
            return Ok(Some(found));
        }
        match page.last() {
            Some(last) if page.len() as i64 == LIST_LIMIT_MAX => after = Some(last.id),
            _ => return Ok(None),
        }
    }
}

/// What the account's top-ups still open would credit if paid (they count against the
/// balance limit: paying several at once must not take the wallet past it).
async fn open_top_ups(
    state: &AppState,
    account: &Account,
    tenant: Uuid,
    service: Uuid,
) -> Result<i64, ApiError> {
    let filter = PaymentFilter {
        statuses: PaymentStatus::OPEN.to_vec(),
        tenant_id: Some(tenant),
        service_id: Some(service),
        user_id: Some(account.owner_id),
        ..PaymentFilter::default()
    };
    let mut total = 0i64;
    let mut cursor = None;
    loop {
        let rows = state
            .store
            .list_payments(&filter, LIST_LIMIT_MAX, cursor)
            .await?;
        total = rows
            .iter()
            .filter(|row| row.payment.top_up_account_id == Some(account.id))
            .fold(total, |sum, row| {
                sum.saturating_add(row.payment.payment.amount.cents())
            });
        match rows.last() {
            Some(last) if rows.len() as i64 == LIST_LIMIT_MAX => {
                cursor = Some(Cursor {
                    created_at: last.payment.created_at,
                    id: last.payment.id,
                })
            }
            _ => return Ok(total),
        }
    }
}

/// The tenant's wallet limits: one top-up at most `top_up_max`, and the balance it
/// would make, with the open top-ups paid too, at most `balance_max`.
fn check_limits(
    fees: &Fees,
    account: &Account,
    pending_cents: i64,
    amount: Money,
) -> Result<(), ApiError> {
    if amount.cents() > fees.top_up_max_cents {
        return Err(ApiError::field(
            "amount",
            format!(
                "a single top-up is at most {} in this municipality",
                format_cents(fees.top_up_max_cents)
            ),
        ));
    }
    let committed = account.balance_cents.saturating_add(pending_cents);
    if committed.saturating_add(amount.cents()) > fees.balance_max_cents {
        return Err(ApiError::field(
            "amount",
            format!(
                "the wallet may hold at most {} (it holds {}, and open top-ups add {}): top up at most {}",
                format_cents(fees.balance_max_cents),
                format_cents(account.balance_cents),
                format_cents(pending_cents),
                format_cents((fees.balance_max_cents - committed).max(0))
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    amount: Money,
    /// Why the platform credits the wallet (a refund, a correction): kept in the journal.
    reason: String,
}

/// A credit by the platform (admin or system, never a citizen), once per
/// `Idempotency-Key`, with its reason in the journal.
async fn deposit(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let account = load_for(
        &state,
        &caller,
        &path,
        &[Role::Admin, Role::System],
        "credit wallets directly (citizens top up by paying: POST /v1/accounts/{id}/top-ups)",
        Caller::credits_account,
    )
    .await?;
    let key = idempotency_key(&req)?.ok_or_else(|| {
        ApiError::field(
            "Idempotency-Key",
            "is required: a deposit is credited once per key",
        )
    })?;
    let (deposit, _): (Deposit, _) = body::json(&req, payload).await?;
    let reason = deposit.reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        return Err(ApiError::field(
            "reason",
            format!("must say why, in 1 to {REASON_MAX} characters"),
        ));
    }
    // The wallet limit of the tenant's top-up service holds for the platform's credits
    // too (a refund included): the wallet is the same e-money whoever fills it.
    let balance_max = match account.tenant_id {
        Some(tenant) => top_up_service(&state, tenant)
            .await?
            .map(|(_, fees)| fees.balance_max_cents),
        None => None,
    };
    let request = DepositRequest {
        account_id: account.id,
        amount_cents: deposit.amount.cents(),
        reason: reason.to_string(),
        scope: format!("{}:{}", caller.role.as_str(), caller.sub),
        key,
        balance_max_cents: balance_max,
    };
    match state.store.deposit(&request).await? {
        Deposited::Credited(account) | Deposited::Replayed(account) => {
            Ok(HttpResponse::Ok().json(AccountView::from(account)))
        }
        Deposited::KeyReused => Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used for another deposit; use a new key".into(),
        )),
        Deposited::NoAccount => Err(ApiError::NotFound(format!("no account {}", account.id))),
        Deposited::OverLimit { balance_cents } => Err(ApiError::field(
            "amount",
            format!(
                "the wallet may hold at most {} (it holds {}): credit at most {}",
                format_cents(balance_max.unwrap_or_default()),
                format_cents(balance_cents),
                format_cents((balance_max.unwrap_or_default() - balance_cents).max(0))
            ),
        )),
    }
}
