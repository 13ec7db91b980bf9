//! The embedded demo data (the README walkthrough uses it): a tenant, a service
//! config taking PAGOPA and WALLET payments at the simulator, a wallet top-up service,
//! and a funded wallet.
//! Idempotent: several instances may all seed.

use uuid::Uuid;

use crate::auth::{Authenticator, Role};
use crate::domain::payment::PaymentType;
use crate::store::{Account, ServiceConfig, Store, StoreError, Tenant};

pub const DEMO_TENANT: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000001);
pub const DEMO_SERVICE: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000002);
pub const DEMO_ACCOUNT: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000003);
pub const DEMO_CITIZEN: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000004);
/// The demo tenant's wallet top-up service (`wallet_top_up: true`, PAGOPA at the simulator).
pub const DEMO_TOP_UP_SERVICE: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000005);
const DEMO_TENANT_NAME: &str = "Comune di Demo";
const DEMO_TENANT_TAX_CODE: &str = "00743110157";
/// 1000.00 EUR.
pub const DEMO_BALANCE_CENTS: i64 = 100_000;

/// Seeds the demo data unless present; the service points at `intermediary_url`.
pub async fn demo(store: &dyn Store, intermediary_url: &str) -> Result<(), StoreError> {
    let now = crate::domain::time::now();
    store
        .ensure_tenant(&Tenant {
            id: DEMO_TENANT,
            name: DEMO_TENANT_NAME.into(),
            tax_identification_number: DEMO_TENANT_TAX_CODE.into(),
            active: true,
            allowed_hosts: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        })
        .await?;
    for (id, types, reason, top_up) in [
        (
            DEMO_SERVICE,
            vec![PaymentType::Pagopa, PaymentType::Wallet],
            "Servizi comunali (demo)",
            false,
        ),
        (
            DEMO_TOP_UP_SERVICE,
            vec![PaymentType::Pagopa],
            "Ricarica del borsellino (demo)",
            true,
        ),
    ] {
        store
            .ensure_service(&demo_service(id, types, reason, top_up, intermediary_url))
            .await?;
    }
    store
        .ensure_account(&Account {
            id: DEMO_ACCOUNT,
            owner_id: DEMO_CITIZEN,
            tenant_id: Some(DEMO_TENANT),
            currency: "EUR".into(),
            balance_cents: DEMO_BALANCE_CENTS,
            held_cents: 0,
        })
        .await
}

/// A demo service at `intermediary_url`; the top-up one credits wallets when paid.
fn demo_service(
    id: Uuid,
    payment_types: Vec<PaymentType>,
    reason: &str,
    wallet_top_up: bool,
    intermediary_url: &str,
) -> ServiceConfig {
    let now = crate::domain::time::now();
    let mut document = serde_json::json!({
        "id": id,
        "tenant_id": DEMO_TENANT,
        "payment_type": payment_types,
        "remote_collection": {"id": "demo", "type": "service"},
        "amount": null,
        "reason": reason,
        "expire_at": null,
        "receiver": {"tax_identification_number": DEMO_TENANT_TAX_CODE, "name": DEMO_TENANT_NAME},
        "collection_data": "9/0101108TS/",
        "active": true,
        "intermediary": {"kind": "simulator", "url": intermediary_url},
    });
    if wallet_top_up {
        document["wallet_top_up"] = serde_json::json!(true);
    }
    ServiceConfig {
        id,
        tenant_id: DEMO_TENANT,
        payment_types,
        intermediary_kind: "simulator".into(),
        intermediary_url: intermediary_url.to_string(),
        active: true,
        document,
        credentials: None,
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

/// The demo citizen's tax code, carried by the demo citizen token (the payer of what
/// the citizen creates).
pub const DEMO_TAX_CODE: &str = "RSSMRA80A01H501U";

/// Demo tokens, one per role, valid for the longest lifetime allowed (24 h by default):
/// (shell variable, role, token).
pub fn demo_tokens(
    auth: &Authenticator,
) -> Result<Vec<(&'static str, Role, String)>, crate::auth::AuthError> {
    [
        ("ADMIN_TOKEN", Role::Admin, "demo-admin".to_string(), None),
        (
            "OPERATOR_TOKEN",
            Role::Operator,
            "demo-operator".to_string(),
            Some(DEMO_TENANT),
        ),
        (
            "CITIZEN_TOKEN",
            Role::Citizen,
            DEMO_CITIZEN.to_string(),
            Some(DEMO_TENANT),
        ),
        (
            "SYSTEM_TOKEN",
            Role::System,
            "demo-platform".to_string(),
            None,
        ),
    ]
    .into_iter()
    .map(|(var, role, sub, tenant)| {
        let tax_code = (role == Role::Citizen)
            .then(|| crate::domain::tax_code::TaxCode::parse(DEMO_TAX_CODE))
            .transpose()
            .map_err(|e| crate::auth::AuthError::Mint(e.to_string()))?;
        auth.mint_with_tax_code(role, &sub, tenant, tax_code.as_ref(), auth.max_lifetime())
            .map(|token| (var, role, token))
    })
    .collect()
}

/// The demo service's push secret: the one its credentials hold, or a new random one
/// sealed into them. The built-in simulator signs its pushes with it.
pub async fn demo_push_secret(
    store: &dyn Store,
    secret_box: &crate::secrets::SecretBox,
) -> Result<String, StoreError> {
    let service = store
        .service(DEMO_SERVICE)
        .await?
        .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("the demo service is missing")))?;
    if let Some(secret) = open_credentials(&service, secret_box)?.push_secret {
        return Ok(secret);
    }
    let secret = crate::secrets::random_base64(32);
    set_push_secret(store, secret_box, DEMO_SERVICE, &secret).await?;
    Ok(secret)
}

/// Seals `secret` as service `service_id`'s push secret, keeping its other credentials.
pub async fn set_push_secret(
    store: &dyn Store,
    secret_box: &crate::secrets::SecretBox,
    service_id: Uuid,
    secret: &str,
) -> Result<(), StoreError> {
    let unexpected = |e: String| StoreError::Unexpected(anyhow::anyhow!(e));
    let mut service = store
        .service(service_id)
        .await?
        .ok_or_else(|| unexpected(format!("no service {service_id}")))?;
    let mut credentials = open_credentials(&service, secret_box)?;
    credentials.push_secret = Some(secret.to_string());
    let text = serde_json::to_vec(&credentials).map_err(|e| unexpected(e.to_string()))?;
    service.credentials = Some(
        secret_box
            .seal(&text)
            .map_err(|e| unexpected(e.to_string()))?,
    );
    service.updated_at = crate::domain::time::now();
    if store.update_service(&service).await? {
        Ok(())
    } else {
        Err(unexpected(format!(
            "service {service_id} changed while its push secret was set"
        )))
    }
}

/// A service's credentials, opened (empty when it has none).
fn open_credentials(
    service: &ServiceConfig,
    secret_box: &crate::secrets::SecretBox,
) -> Result<crate::tenancy::Credentials, StoreError> {
    let Some(sealed) = &service.credentials else {
        return Ok(Default::default());
    };
    let opened = secret_box
        .open(sealed)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!(e.to_string())))?;
    serde_json::from_slice(&opened).map_err(|e| StoreError::Unexpected(anyhow::anyhow!(e)))
}

/// What to print at start-up so a new user can try the demo.
pub fn banner(public_url: &str, tokens: &[(&'static str, Role, String)]) -> String {
    let mut exports = String::new();
    for (var, role, token) in tokens {
        exports.push_str(&format!("  export {var}={token}   # {}\n", role.as_str()));
    }
    if exports.is_empty() {
        exports.push_str("  (no demo tokens: only an RS256 public key is configured; use your identity provider's tokens)\n");
    }
    format!(
        r#"
cassa demo data: tenant {DEMO_TENANT}, service {DEMO_SERVICE} (PAGOPA + WALLET at the built-in simulator),
wallet top-up service {DEMO_TOP_UP_SERVICE}, wallet account {DEMO_ACCOUNT} (1000.00 EUR, citizen {DEMO_CITIZEN}).

Demo tokens (valid 24 h by default, CASSA_JWT_MAX_LIFETIME; `cassa token --role R [--tenant T] [--sub S] [--tax-code CF]` mints more):
{exports}
  # a PAGOPA payment, created by the citizen
  curl -s -X POST {public_url}/v1/payments -H "Authorization: Bearer $CITIZEN_TOKEN" -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' -d '{{
    "type": "PAGOPA", "tenant_id": "{DEMO_TENANT}", "service_id": "{DEMO_SERVICE}",
    "reason": "TARI 2026 rata 1", "payment": {{"amount": "12.34", "currency": "EUR"}},
    "payer": {{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}}}}'
  curl -s -H "Authorization: Bearer $CITIZEN_TOKEN" {public_url}/v1/payments/<id>   # PAYMENT_PENDING within a moment
  open {public_url}/v1/payments/<id>/online-payment             # checkout page (the link is the key): press Pay
  curl -s -X POST -H "Authorization: Bearer $SYSTEM_TOKEN" {public_url}/v1/payments/<id>/update   # COMPLETE

  # a WALLET payment (amount ending in .01 is rejected by the simulator's gateway)
  curl -s -X POST {public_url}/v1/payments -H "Authorization: Bearer $CITIZEN_TOKEN" -H 'Content-Type: application/json' -d '{{
    "type": "WALLET", "tenant_id": "{DEMO_TENANT}", "service_id": "{DEMO_SERVICE}", "reason": "Mensa",
    "payment": {{"amount": "25.00"}}, "wallet_account_id": "{DEMO_ACCOUNT}",
    "payer": {{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}}}}'
  curl -s -H "Authorization: Bearer $CITIZEN_TOKEN" {public_url}/v1/accounts/{DEMO_ACCOUNT}

  # top up the wallet by paying: a PAGOPA payment; once COMPLETE the wallet is credited
  curl -s -X POST {public_url}/v1/accounts/{DEMO_ACCOUNT}/top-ups -H "Authorization: Bearer $CITIZEN_TOKEN" -H 'Content-Type: application/json' -d '{{
    "amount": "50.00", "payer": {{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}}}}'
  curl -s -H "Authorization: Bearer $CITIZEN_TOKEN" {public_url}/v1/accounts/{DEMO_ACCOUNT}/movements

  # configuration (operator of the demo tenant): see the README, "Configure a tenant and a service"
  curl -s -H "Authorization: Bearer $OPERATOR_TOKEN" {public_url}/v1/services/{DEMO_SERVICE}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo citizen token carries the demo tax code (so the walkthrough's PAGOPA
    /// payment, payer `RSSMRA80A01H501U`, is accepted) and every demo token lives within
    /// the maximum lifetime.
    #[test]
    fn the_demo_citizen_token_carries_the_demo_tax_code() {
        let auth = Authenticator::new(Some("demo-secret-of-enough-length"), None).unwrap();
        let tokens = demo_tokens(&auth).unwrap();
        assert_eq!(tokens.len(), 4);
        for (var, role, token) in tokens {
            let caller = auth.verify(&token).unwrap();
            assert_eq!(caller.role, role, "{var}");
            let expected = (role == Role::Citizen).then_some(DEMO_TAX_CODE);
            assert_eq!(
                caller.tax_code.as_ref().map(|t| t.as_str()),
                expected,
                "{var}"
            );
        }
    }
}
