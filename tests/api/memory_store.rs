//! The in-memory store the paused-time tests share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use cassa::store::*;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// A `Store` in memory: every await stays on the (paused) test runtime, so virtual
/// time moves only when an actor waits for a timer. Payments and service configurations
/// only; the rest answers "not in the memory store".
#[derive(Default)]
pub struct MemoryStore {
    pub rows: Mutex<HashMap<Uuid, StoredPayment>>,
    /// `payment_timing` calls (an actor loading or reloading its timing).
    pub timing_reads: AtomicUsize,
    /// `payment` calls (an operation reading the whole row).
    pub row_reads: AtomicUsize,
    /// Service configurations (their intermediaries), by id.
    pub services: Mutex<HashMap<Uuid, ServiceConfig>>,
}

fn unsupported() -> StoreError {
    StoreError::Unexpected(anyhow::anyhow!("not in the memory store"))
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn next_iuv_base(&self, _: &str) -> Result<u64, StoreError> {
        Err(unsupported())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn create_payment(&self, new: NewPayment) -> Result<Created, StoreError> {
        let row = StoredPayment {
            payment: new.payment,
            version: 1,
            saga: new.saga,
            next_check_at: new.next_check_at,
        };
        self.rows
            .lock()
            .unwrap()
            .insert(row.payment.id, row.clone());
        Ok(Created::New(row))
    }
    async fn import_payments(&self, _: &[NewPayment]) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn payment_timing(&self, id: Uuid) -> Result<Option<PaymentTiming>, StoreError> {
        self.timing_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.rows.lock().unwrap().get(&id).map(PaymentTiming::from))
    }
    async fn payment(&self, id: Uuid) -> Result<Option<StoredPayment>, StoreError> {
        self.row_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.rows.lock().unwrap().get(&id).cloned())
    }
    async fn update_payment(
        &self,
        expected_version: i64,
        change: Change,
    ) -> Result<StoredPayment, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let id = change.payment.id;
        let row = rows.get_mut(&id).ok_or_else(unsupported)?;
        if row.version != expected_version {
            return Err(StoreError::Conflict(id));
        }
        *row = StoredPayment {
            payment: change.payment,
            version: expected_version + 1,
            saga: change.saga,
            next_check_at: change.next_check_at,
        };
        Ok(row.clone())
    }
    async fn list_payments(
        &self,
        _: &PaymentFilter,
        _: i64,
        _: Option<Cursor>,
    ) -> Result<Vec<StoredPayment>, StoreError> {
        Err(unsupported())
    }
    async fn open_payment_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|r| !r.payment.status.is_final())
            .map(|r| r.payment.id)
            .collect())
    }
    async fn open_payment_timings(&self) -> Result<Vec<(Uuid, Option<PaymentTiming>)>, StoreError> {
        let mut open: Vec<(Uuid, Option<PaymentTiming>)> = self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|row| !row.payment.status.is_final() || row.payment.notify_pending())
            .map(|row| (row.payment.id, Some(PaymentTiming::from(row))))
            .collect();
        open.sort_by_key(|(id, timing)| (timing.and_then(|t| t.next_check_at), *id));
        Ok(open)
    }
    async fn due_payments(
        &self,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        _: bool,
        limit: i64,
    ) -> Result<Vec<DuePayment>, StoreError> {
        let mut due: Vec<DuePayment> = self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|row| !row.payment.status.is_final())
            .filter_map(|row| {
                let at = row.next_check_at?;
                let id = row.payment.id;
                (at < until && after.is_none_or(|after| (at, id) > after)).then(|| DuePayment {
                    id,
                    due: at,
                    timing: PaymentTiming::from(row),
                })
            })
            .collect();
        due.sort_by_key(|due| (due.due, due.id));
        due.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(due)
    }
    async fn payment_events(&self, _: Uuid) -> Result<Vec<serde_json::Value>, StoreError> {
        Err(unsupported())
    }
    async fn unpublished_events(&self, _: i64) -> Result<Vec<OutboxRecord>, StoreError> {
        Err(unsupported())
    }
    async fn mark_published(&self, _: &[i64]) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn acquire_lease(&self, _: &str, _: &str, _: Duration) -> Result<bool, StoreError> {
        Err(unsupported())
    }
    async fn account(&self, _: Uuid) -> Result<Option<Account>, StoreError> {
        Err(unsupported())
    }
    async fn payment_with_code(
        &self,
        _: &cassa::store::PaymentCodes,
    ) -> Result<Option<(&'static str, Uuid)>, StoreError> {
        Err(unsupported())
    }
    async fn deposit(&self, _: &DepositRequest) -> Result<Deposited, StoreError> {
        Err(unsupported())
    }
    async fn ensure_account(&self, _: &Account) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn movements(
        &self,
        _: Uuid,
        _: Option<i64>,
        _: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        Err(unsupported())
    }
    async fn ledger_mismatches(&self) -> Result<Vec<LedgerMismatch>, StoreError> {
        Err(unsupported())
    }
    async fn stale_holds(&self) -> Result<Vec<StaleHold>, StoreError> {
        Err(unsupported())
    }
}

/// Configuration is not needed on this path (the intermediary is fixed).
#[async_trait]
impl ConfigStore for MemoryStore {
    async fn ensure_tenant(&self, _: &Tenant) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn ensure_service(&self, _: &ServiceConfig) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn tenant(&self, _: Uuid) -> Result<Option<Tenant>, StoreError> {
        Err(unsupported())
    }
    async fn list_tenants(&self, _: Option<Uuid>, _: Page) -> Result<Vec<Tenant>, StoreError> {
        Err(unsupported())
    }
    async fn insert_tenant(&self, _: &Tenant) -> Result<bool, StoreError> {
        Err(unsupported())
    }
    async fn update_tenant(&self, _: &Tenant) -> Result<bool, StoreError> {
        Err(unsupported())
    }
    async fn service(&self, id: Uuid) -> Result<Option<ServiceConfig>, StoreError> {
        Ok(self.services.lock().unwrap().get(&id).cloned())
    }
    async fn list_services(
        &self,
        _: Option<Uuid>,
        _: Page,
    ) -> Result<Vec<ServiceConfig>, StoreError> {
        Err(unsupported())
    }
    async fn insert_service(&self, _: &ServiceConfig) -> Result<bool, StoreError> {
        Err(unsupported())
    }
    async fn update_service(&self, _: &ServiceConfig) -> Result<bool, StoreError> {
        Err(unsupported())
    }
}
