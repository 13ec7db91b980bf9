//! The embedded demo data (CONTRACTS.md "Embedded demo data"): a tenant, a service
//! config taking PAGOPA and WALLET payments at the simulator, and a funded wallet.
//! Idempotent: several instances may all seed.

use uuid::Uuid;

use crate::domain::payment::PaymentType;
use crate::store::{Account, ServiceConfig, Store, StoreError, Tenant};

pub const DEMO_TENANT: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000001);
pub const DEMO_SERVICE: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000002);
pub const DEMO_ACCOUNT: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000003);
pub const DEMO_CITIZEN: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000004);
/// 1000.00 EUR.
pub const DEMO_BALANCE_CENTS: i64 = 100_000;

/// Seeds the demo data unless present; the service points at `intermediary_url`.
pub async fn demo(store: &dyn Store, intermediary_url: &str) -> Result<(), StoreError> {
    store
        .ensure_tenant(&Tenant {
            id: DEMO_TENANT,
            name: "Comune di Demo".into(),
            tax_identification_number: "00743110157".into(),
            active: true,
        })
        .await?;
    store
        .ensure_service(&ServiceConfig {
            id: DEMO_SERVICE,
            tenant_id: DEMO_TENANT,
            payment_types: vec![PaymentType::Pagopa, PaymentType::Wallet],
            intermediary_url: intermediary_url.to_string(),
            active: true,
        })
        .await?;
    store
        .ensure_account(&Account {
            id: DEMO_ACCOUNT,
            owner_id: DEMO_CITIZEN,
            currency: "EUR".into(),
            balance_cents: DEMO_BALANCE_CENTS,
            held_cents: 0,
        })
        .await
}

/// What to print at start-up so a new user can try the demo.
pub fn banner(public_url: &str) -> String {
    format!(
        r#"
cassa demo data: tenant {DEMO_TENANT}, service {DEMO_SERVICE} (PAGOPA + WALLET at the built-in simulator),
wallet account {DEMO_ACCOUNT} (1000.00 EUR, citizen {DEMO_CITIZEN}).

  # a PAGOPA payment
  curl -s -X POST {public_url}/v1/payments -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' -d '{{
    "type": "PAGOPA", "tenant_id": "{DEMO_TENANT}", "service_id": "{DEMO_SERVICE}",
    "reason": "TARI 2026 rata 1", "payment": {{"amount": "12.34", "currency": "EUR"}},
    "payer": {{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}}}}'
  curl -s {public_url}/v1/payments/<id>                       # PAYMENT_PENDING within a moment
  open {public_url}/v1/payments/<id>/online-payment             # checkout page: press Pay
  curl -s -X POST {public_url}/v1/payments/<id>/update          # COMPLETE

  # a WALLET payment (amount ending in .01 is rejected by the simulator's gateway)
  curl -s -X POST {public_url}/v1/payments -H 'Content-Type: application/json' -d '{{
    "type": "WALLET", "tenant_id": "{DEMO_TENANT}", "service_id": "{DEMO_SERVICE}", "reason": "Mensa",
    "payment": {{"amount": "25.00"}}, "wallet_account_id": "{DEMO_ACCOUNT}",
    "payer": {{"type": "human", "tax_identification_number": "RSSMRA80A01H501U", "name": "Mario", "family_name": "Rossi"}}}}'
  curl -s {public_url}/v1/accounts/{DEMO_ACCOUNT}
"#
    )
}
