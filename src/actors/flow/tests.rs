use std::sync::Arc;

use super::*;
use crate::domain::payment::{Links, Payer, PayerType, PaymentData};
use crate::domain::saga::SagaState;
use crate::intermediary::{GatewayResult, Intermediaries, MockIntermediary, Position};
use crate::store::{Created, NewPayment, SqliteStore, Store};

async fn deps_with(mock: MockIntermediary) -> (Deps, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/flow.db", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.unwrap());
    let deps = Deps {
        intermediaries: Intermediaries::fixed(store.clone(), Arc::new(mock)),
        store,
        schedule: "*:1m".parse().unwrap(),
        public_url: "http://cassa.test".into(),
        notify_platform: true,
        outbound: Arc::new(crate::outbound::Outbound::new(
            Default::default(),
            crate::outbound::DEFAULT_TIMEOUT,
        )),
        passivate_after: None,
        timer_lag: None,
    };
    (deps, dir)
}

async fn stored(deps: &Deps, kind: PaymentType, cents: i64) -> StoredPayment {
    let now = time::now();
    let id = uuid::Uuid::new_v4();
    let payment = Payment {
        id,
        user_id: uuid::Uuid::new_v4(),
        kind,
        tenant_id: uuid::Uuid::new_v4(),
        service_id: uuid::Uuid::new_v4(),
        created_at: now,
        updated_at: now,
        status: PaymentStatus::CreationPending,
        reason: "test".into(),
        status_message: None,
        remote_id: None,
        payment: PaymentData {
            amount: crate::domain::money::Money::from_cents(cents).unwrap(),
            currency: "EUR".into(),
            expire_at: None,
            notice_code: None,
            iud: Payment::iud_for(id),
            iuv: None,
            transaction_id: None,
            paid_at: None,
            split: vec![],
        },
        links: Links::default(),
        payer: Payer {
            kind: PayerType::Human,
            tax_identification_number: "RSSMRA80A01H501U".parse().unwrap(),
            name: "Mario".into(),
            family_name: None,
            street_name: None,
            building_number: None,
            postal_code: None,
            town_name: None,
            country_subdivision: None,
            country: None,
            email: None,
        },
        debtor: None,
        locale: None,
        wallet_account_id: None,
        created_by: None,
        top_up_account_id: None,
    };
    let new = NewPayment {
        payment,
        saga: SagaState::default(),
        next_check_at: Some(now),
        idempotency: None,
        hold: None,
    };
    match deps.store.create_payment(new).await.unwrap() {
        Created::New(row) => row,
        other => panic!("{other:?}"),
    }
}

/// The row after `change` was made to its payment and stored.
async fn rewritten(
    deps: &Deps,
    row: &StoredPayment,
    change: impl FnOnce(&mut Payment),
) -> StoredPayment {
    let mut payment = row.payment.clone();
    change(&mut payment);
    let change = crate::store::Change::of(row, payment, row.saga.clone());
    deps.store
        .update_payment(row.version, change)
        .await
        .unwrap()
}

fn position(status: PositionState) -> Position {
    Position {
        iuv: "01234567890123456".into(),
        notice_code: "301234567890123456".into(),
        status,
        checkout_url: "http://sim/checkout/01234567890123456".into(),
        paid_at: None,
        transaction_id: Some("tx".into()),
    }
}

#[actix_rt::test]
async fn a_refused_creation_fails_the_payment_without_retrying() {
    let mut mock = MockIntermediary::new();
    mock.expect_create_position()
        .times(1)
        .returning(|_| Err(IntermediaryError::Refused("400: bad debtor".into())));
    let (deps, _dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Pagopa, 1000).await;
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::CreationFailed);
    assert!(row.payment.status_message.unwrap().contains("bad debtor"));
    assert_eq!(row.next_check_at, None);
}

#[actix_rt::test]
async fn a_transient_error_schedules_a_retry_with_backoff() {
    let mut mock = MockIntermediary::new();
    mock.expect_create_position()
        .times(1)
        .returning(|_| Err(IntermediaryError::Transient("503".into())));
    let (deps, _dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Pagopa, 1000).await;
    let before = time::now();
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::CreationPending);
    assert_eq!(row.saga.attempts, 1);
    let retry = row.next_check_at.unwrap();
    assert!(
        retry >= before + chrono::Duration::seconds(1)
            && retry <= time::now() + chrono::Duration::seconds(1)
    );
    assert_eq!(
        deps.store
            .payment_events(row.payment.id)
            .await
            .unwrap()
            .len(),
        1,
        "no event for a retry"
    );
}

#[actix_rt::test]
async fn created_then_polled_on_schedule_never_past_expiry() {
    let mut mock = MockIntermediary::new();
    mock.expect_create_position()
        .times(1)
        .returning(|_| Ok(position(PositionState::Pending)));
    let (deps, _dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Pagopa, 1000).await;
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::PaymentPending);
    let next = row.next_check_at.unwrap();
    let delay = next - row.payment.updated_at;
    assert!(
        delay >= chrono::Duration::seconds(60) && delay <= chrono::Duration::seconds(66),
        "{delay}"
    );
    assert_eq!(row.payment.links.update.next_check_at, Some(next));
    // Not due yet: advancing again does nothing (no intermediary call expected).
    let again = advance(&deps, row.clone(), FirstCheck::WhenDue)
        .await
        .unwrap();
    assert_eq!(again, row);
}

#[actix_rt::test]
async fn cancel_after_the_citizen_paid_records_the_payment() {
    let mut mock = MockIntermediary::new();
    mock.expect_create_position()
        .times(1)
        .returning(|_| Ok(position(PositionState::Pending)));
    mock.expect_cancel_position()
        .times(1)
        .returning(|_| Err(IntermediaryError::AlreadyPaid));
    mock.expect_position()
        .times(1)
        .returning(|_| Ok(position(PositionState::Paid)));
    let (deps, _dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Pagopa, 1000).await;
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    let row = cancel(&deps, row).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::Complete);
    assert_eq!(row.payment.payment.transaction_id.as_deref(), Some("tx"));
}

#[actix_rt::test]
async fn a_failing_compensation_keeps_the_payment_open_and_visible() {
    let mut mock = MockIntermediary::new();
    mock.expect_create_position()
        .times(1)
        .returning(|_| Ok(position(PositionState::Pending)));
    mock.expect_cancel_position()
        .times(1)
        .returning(|_| Err(IntermediaryError::Transient("timeout".into())));
    let (deps, _dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Pagopa, 1000).await;
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    let row = cancel(&deps, row).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::PaymentPending);
    assert_eq!(row.saga.wind_down, Some(WindDown::Cancel));
    assert!(row.saga.last_error.unwrap().contains("compensation"));
    assert_eq!(row.saga.attempts, 1);
}

/// A PAGOPA payment whose citizen just opened the checkout, at an intermediary whose
/// position stays pending (`more` adds expectations).
async fn at_the_checkout(
    more: impl FnOnce(&mut MockIntermediary),
) -> (Deps, tempfile::TempDir, StoredPayment) {
    let mut mock = MockIntermediary::new();
    mock.expect_create_position()
        .times(1)
        .returning(|_| Ok(position(PositionState::Pending)));
    mock.expect_position()
        .returning(|_| Ok(position(PositionState::Pending)));
    more(&mut mock);
    let (deps, dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Pagopa, 1000).await;
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    let (row, _) = start_checkout(&deps, row).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::PaymentStarted);
    (deps, dir, row)
}

#[actix_rt::test]
async fn a_payment_at_the_checkout_when_it_expires_ends_expired() {
    let (deps, _dir, row) = at_the_checkout(|mock| {
        mock.expect_cancel_position().times(1).returning(|_| Ok(()));
    })
    .await;
    // Its expiry passes while the citizen is at the checkout.
    let row = rewritten(&deps, &row, |p| {
        p.payment.expire_at = Some(time::now() - chrono::Duration::seconds(1))
    })
    .await;
    let row = advance(&deps, row, FirstCheck::Now).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::Expired, "{:?}", row.saga);
}

/// Issue 25 point 7: opening the checkout again within `CHECKOUT_SESSION` writes
/// nothing, and a check (however triggered) leaves PAYMENT_STARTED while the session
/// lasts; once it is over, the intermediary's "pending" brings the payment back.
#[actix_rt::test]
async fn the_checkout_session_holds_the_status_until_it_is_over() {
    let (deps, _dir, row) = at_the_checkout(|_| {}).await;
    let (again, url) = start_checkout(&deps, row.clone()).await.unwrap();
    assert_eq!(again.version, row.version, "opened again: nothing written");
    assert!(url.contains("/checkout/"));
    let row = advance(&deps, row, FirstCheck::Now).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::PaymentStarted);
    // The session is over (opened longer ago than it lasts).
    let row = rewritten(&deps, &row, |p| {
        p.links.online_payment_begin.last_opened_at =
            Some(time::now() - CHECKOUT_SESSION - chrono::Duration::seconds(1))
    })
    .await;
    let row = advance(&deps, row, FirstCheck::Now).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::PaymentPending);
}

#[actix_rt::test]
async fn wallet_gateway_outcome_decides_the_final_status() {
    let mut mock = MockIntermediary::new();
    mock.expect_execute_payment().times(1).returning(|_| {
        Ok(GatewayResult {
            outcome: GatewayOutcome::Rejected,
            transaction_id: "t".into(),
        })
    });
    let (deps, _dir) = deps_with(mock).await;
    let row = stored(&deps, PaymentType::Wallet, 1001).await;
    let row = advance(&deps, row, FirstCheck::WhenDue).await.unwrap();
    assert_eq!(row.payment.status, PaymentStatus::PaymentFailed);
    let statuses: Vec<_> = deps
        .store
        .payment_events(row.payment.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        [
            "CREATION_PENDING",
            "PAYMENT_PENDING",
            "PAYMENT_STARTED",
            "PAYMENT_FAILED"
        ]
    );
}
