//! Durable state: the `Store` trait and its PostgreSQL and SQLite implementations.
//! The database is the source of truth; every state change is one transaction together
//! with its outbox event.

pub mod config;
mod packed;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::payment::Payment;
use crate::domain::saga::SagaState;
use crate::domain::status::PaymentStatus;

pub use config::{ConfigStore, Page, ServiceConfig, Tenant};
pub use sql::{PgStore, SqliteStore};

/// A payment row: the payment, its version for optimistic concurrency, its saga
/// bookkeeping and when its actor must act next.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPayment {
    pub payment: Payment,
    pub version: i64,
    pub saga: SagaState,
    pub next_check_at: Option<DateTime<Utc>>,
}

/// A payment the timer wheel found due, with what its actor needs to arm (so it does not
/// read it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuePayment {
    pub id: Uuid,
    pub due: DateTime<Utc>,
    pub timing: PaymentTiming,
}

/// What a payment's timer needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentTiming {
    pub next_check_at: Option<DateTime<Utc>>,
    /// Not in a final status.
    pub open: bool,
    /// The platform still has to be told the outcome.
    pub notify_pending: bool,
    /// The row's version when this was read (events carry theirs: an actor that has seen
    /// a version skips the reload for events up to it).
    pub version: i64,
    /// The payment's service: whose intermediary its checks call (overdue checks are
    /// paced per intermediary).
    pub service_id: Uuid,
}

impl From<&StoredPayment> for PaymentTiming {
    fn from(row: &StoredPayment) -> Self {
        PaymentTiming {
            next_check_at: row.next_check_at,
            open: !row.payment.status.is_final(),
            notify_pending: row.payment.notify_pending(),
            version: row.version,
            service_id: row.payment.service_id,
        }
    }
}

/// An `Idempotency-Key` as recorded with the payment it created.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// Whose key it is (keys of different callers never collide).
    pub scope: String,
    pub key: String,
    /// Hash of the request body: the same key with another body is refused.
    pub request_hash: String,
}

/// Why a wallet hold could not be placed: the payment is stored CREATION_FAILED with
/// this as its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    #[error("insufficient funds in the wallet account")]
    InsufficientFunds,
    #[error("unknown wallet account {0}")]
    UnknownAccount(Uuid),
}

/// A journal entry kind stored under a name cassa does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown journal entry kind {0:?}")]
pub struct UnknownEntryKind(pub String);

/// A wallet hold to place in the same transaction that creates the payment.
#[derive(Debug, Clone, Copy)]
pub struct HoldRequest {
    pub account_id: Uuid,
    pub amount_cents: i64,
}

/// Everything written when a payment is created.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub payment: Payment,
    pub saga: SagaState,
    pub next_check_at: Option<DateTime<Utc>>,
    pub idempotency: Option<IdempotencyKey>,
    pub hold: Option<HoldRequest>,
}

/// What creating a payment did.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new payment was stored (possibly already CREATION_FAILED when its hold failed).
    New(StoredPayment),
    /// The idempotency key was used before with the same body: the earlier payment.
    Replayed(StoredPayment),
    /// The idempotency key was used before with another body.
    KeyReused { payment_id: Uuid },
    /// A payment for this `remote_id` exists already in the same tenant (application ids
    /// are unique per tenant, so this is always one the tenant may know of).
    RemoteIdTaken(StoredPayment),
}

/// What to do with a WALLET payment's hold, in the same transaction as a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldAction {
    /// Take the held money (APPROVED).
    Capture,
    /// Give the held money back (REJECTED, cancelled, expired).
    Release,
}

/// A change to a payment row.
#[derive(Debug, Clone)]
pub struct Change {
    pub payment: Payment,
    pub saga: SagaState,
    pub next_check_at: Option<DateTime<Utc>>,
    /// Write an outbox event (every status change does; bookkeeping-only updates don't).
    pub emit_event: bool,
    pub hold: Option<HoldAction>,
    /// The payment's iuv or notice code is new with this change: recorded with it in
    /// `payment_codes` (such a change is not batched with the plain writes).
    pub new_codes: bool,
}

impl Change {
    /// A change of `current` into `payment` that publishes an event when the status
    /// changed.
    pub fn of(current: &StoredPayment, payment: Payment, saga: SagaState) -> Self {
        let emit_event = payment.status != current.payment.status;
        let new_codes = PaymentCodes::of(&payment) != PaymentCodes::of(&current.payment);
        Change {
            new_codes,
            next_check_at: payment.links.update.next_check_at,
            payment,
            saga,
            emit_event,
            hold: None,
        }
    }

    /// Whether this change completes a top-up, whose wallet is then credited (once) in
    /// the same transaction.
    pub fn credits_top_up(&self) -> bool {
        self.payment.status == PaymentStatus::Complete && self.payment.top_up_account_id.is_some()
    }

    /// Whether it writes to a wallet account (a hold settled or a top-up credited): such
    /// writes lock a row shared with other payments, so they are not grouped.
    pub fn touches_account(&self) -> bool {
        self.hold.is_some() || self.credits_top_up()
    }

    /// Whether it writes only its own payment's row and event (batched with others).
    pub fn is_plain(&self) -> bool {
        !self.touches_account() && !self.new_codes
    }
}

/// A payment's codes at the intermediary: the `iuv` and the notice code, each unique
/// across payments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentCodes {
    pub iuv: Option<String>,
    pub notice_code: Option<String>,
}

impl PaymentCodes {
    /// The codes `payment` carries.
    pub fn of(payment: &Payment) -> Self {
        PaymentCodes {
            iuv: payment.payment.iuv.clone(),
            notice_code: payment.payment.notice_code.clone(),
        }
    }

    /// (kind as stored, field name, code) of each code present.
    pub fn entries(&self) -> Vec<(&'static str, &'static str, &str)> {
        [
            ("iuv", "payment.iuv", self.iuv.as_deref()),
            (
                "notice_code",
                "payment.notice_code",
                self.notice_code.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(kind, field, code)| code.map(|c| (kind, field, c)))
        .collect()
    }
}

/// Filters of the payment list (all optional; combined with AND).
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub statuses: Vec<PaymentStatus>,
    pub tenant_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    pub remote_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub created_since: Option<DateTime<Utc>>,
}

/// Position in the payment list (newest first): the last item of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// An outbox event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub seq: i64,
    pub payment_id: Uuid,
    pub topic: String,
    /// The event JSON exactly as stored.
    pub payload: String,
    /// The payment's version this event was written with (none for events written
    /// before versions were recorded).
    pub version: Option<i64>,
}

/// Held-back events are counted up to this many.
pub const HELD_BACK_COUNTED: i64 = 10_000;

/// Committed events the relay may not publish yet, because a transaction older than
/// them is still open somewhere on the database server (PostgreSQL publishes events in
/// the order their transactions began, and only once none before them can commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// How many events wait (counted up to `HELD_BACK_COUNTED`).
    pub events: i64,
    /// When the oldest of them was written.
    pub oldest: DateTime<Utc>,
    /// The oldest open transaction that has written something (a session or a prepared
    /// transaction), as PostgreSQL describes it; `None` when it has ended meanwhile.
    pub holder: Option<String>,
}

/// A wallet account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    /// The citizen whose wallet it is.
    pub owner_id: Uuid,
    /// The tenant the wallet belongs to (`None` only for accounts created before wallets
    /// had tenants: they cannot be charged).
    pub tenant_id: Option<Uuid>,
    pub currency: String,
    pub balance_cents: i64,
    pub held_cents: i64,
}

/// What a journal entry did to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Money in: a completed top-up, a platform deposit, an opening balance.
    Credit,
    /// Money set aside for a WALLET payment (balance unchanged, held up).
    Hold,
    /// Held money taken (balance and held down).
    Capture,
    /// Held money given back (held down).
    Release,
}

impl EntryKind {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "credit",
            EntryKind::Hold => "hold",
            EntryKind::Capture => "capture",
            EntryKind::Release => "release",
        }
    }
}

impl std::str::FromStr for EntryKind {
    type Err = UnknownEntryKind;
    fn from_str(s: &str) -> Result<Self, UnknownEntryKind> {
        match s {
            "credit" => Ok(EntryKind::Credit),
            "hold" => Ok(EntryKind::Hold),
            "capture" => Ok(EntryKind::Capture),
            "release" => Ok(EntryKind::Release),
            other => Err(UnknownEntryKind(other.to_string())),
        }
    }
}

/// One movement of a wallet, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Position in the journal (rising): the movements' cursor.
    pub seq: i64,
    pub account_id: Uuid,
    /// The payment it belongs to (none for deposits and opening balances).
    pub payment_id: Option<Uuid>,
    pub kind: EntryKind,
    pub amount_cents: i64,
    /// The account's balance and held money right after this entry.
    pub balance_after_cents: i64,
    pub held_after_cents: i64,
    /// Why (deposits say it).
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A credit by the platform (a refund, a correction): admin and system only.
#[derive(Debug, Clone)]
pub struct DepositRequest {
    pub account_id: Uuid,
    pub amount_cents: i64,
    pub reason: String,
    /// The caller's scope and `Idempotency-Key`: the same key credits once.
    pub scope: String,
    pub key: String,
    /// The most the wallet may hold (its tenant's top-up service's `balance_max`):
    /// checked against the balance in the crediting transaction, so a replay of a
    /// deposit already made is still answered as such.
    pub balance_max_cents: Option<i64>,
}

/// What a deposit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deposited {
    /// Credited now: the account after.
    Credited(Account),
    /// This key credited the same amount and reason before: nothing more was credited.
    Replayed(Account),
    /// This key was used for another amount or reason: nothing was credited.
    KeyReused,
    /// No such account.
    NoAccount,
    /// It would take the wallet past `balance_max_cents`; nothing was credited. The
    /// balance before it.
    OverLimit { balance_cents: i64 },
}

/// A hold still held after its payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleHold {
    pub payment_id: Uuid,
    pub account_id: Uuid,
    pub amount_cents: i64,
    pub status: String,
}

/// An account whose row disagrees with its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerMismatch {
    pub account_id: Uuid,
    pub balance_cents: i64,
    pub held_cents: i64,
    /// Credits − captures.
    pub journal_balance_cents: i64,
    /// Holds − captures − releases.
    pub journal_held_cents: i64,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row changed since it was read (optimistic concurrency).
    #[error("payment {0} was changed concurrently")]
    Conflict(Uuid),
    /// The database cannot be reached right now (connection, pool, I/O): worth retrying.
    #[error("database unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Anything else (constraint, decoding, a bug): retrying the same thing will not help.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Stored payments left out of listings because they could not be read, since start.
static UNREADABLE_PAYMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many stored payments were left out of listings because they could not be read.
pub fn unreadable_payments() -> u64 {
    UNREADABLE_PAYMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reports a stored payment that cannot be read (left out of a listing): logged with
/// its id, for an operator to repair, and counted for `/metrics`.
pub(crate) fn note_unreadable_payment(id: Uuid, error: &StoreError) {
    UNREADABLE_PAYMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::error!(payment_id = %id, error = %error, "a stored payment cannot be read; left out of the listing");
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let transient = matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed
        ) || matches!(&e, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
            // PostgreSQL: serialization failure, deadlock, a connection exception (class
            // 08), too many connections, admin or crash shutdown, cannot connect now;
            // SQLite: busy, locked.
            c.starts_with("08")
                || matches!(
                    c.as_ref(),
                    "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" | "5" | "6" | "261" | "517"
                )
        }));
        let e = anyhow::Error::new(e).context("database error");
        if transient {
            StoreError::Unavailable(e)
        } else {
            StoreError::Unexpected(e)
        }
    }
}

/// The durable state of cassa.
#[async_trait]
pub trait Store: ConfigStore + Send + Sync + 'static {
    /// Which backend this is (`postgres` or `sqlite`).
    fn backend(&self) -> &'static str;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Creates a payment: row, idempotency key, wallet hold and outbox event in one
    /// transaction.
    async fn create_payment(&self, new: NewPayment) -> Result<Created, StoreError>;
    /// Stores payments in bulk, one transaction, without events, holds or idempotency
    /// keys: for benchmarks and one-off imports only (nothing is published).
    async fn import_payments(&self, payments: &[NewPayment]) -> Result<(), StoreError>;
    /// Reads only what a payment's timer needs (no document): cheap, for actors starting.
    async fn payment_timing(&self, id: Uuid) -> Result<Option<PaymentTiming>, StoreError>;
    /// Reads a payment.
    async fn payment(&self, id: Uuid) -> Result<Option<StoredPayment>, StoreError>;
    /// Writes a change if the row still has `expected_version`; with its outbox event
    /// and hold action in the same transaction.
    async fn update_payment(
        &self,
        expected_version: i64,
        change: Change,
    ) -> Result<StoredPayment, StoreError>;
    /// Lists payments, newest first, after `cursor`.
    async fn list_payments(
        &self,
        filter: &PaymentFilter,
        limit: i64,
        cursor: Option<Cursor>,
    ) -> Result<Vec<StoredPayment>, StoreError>;
    /// Ids of every payment with work left (open, or the platform not yet told), soonest
    /// `next_check_at` first.
    async fn open_payment_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    /// The same payments with what their timers need, so re-arming at start-up costs one
    /// query instead of one per actor. The default reads only the ids (each actor then
    /// reads its own timing).
    async fn open_payment_timings(&self) -> Result<Vec<(Uuid, Option<PaymentTiming>)>, StoreError> {
        Ok(self
            .open_payment_ids()
            .await?
            .into_iter()
            .map(|id| (id, None))
            .collect())
    }
    /// Payments with work left whose `next_check_at` is before `until`, in
    /// (`next_check_at`, id) order after `after`, at most `limit`: the durable timer
    /// wheel. Pending platform notifications count only with `include_notify`.
    async fn due_payments(
        &self,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        include_notify: bool,
        limit: i64,
    ) -> Result<Vec<DuePayment>, StoreError>;
    /// The payloads of a payment's outbox events, oldest first. For tests and operators:
    /// no index serves it (writing one per event cost every create), so it reads the
    /// whole outbox.
    async fn payment_events(&self, payment_id: Uuid) -> Result<Vec<serde_json::Value>, StoreError>;
    /// The oldest unpublished outbox events, in the order to publish them (each
    /// payment's in the order written).
    async fn unpublished_events(&self, limit: i64) -> Result<Vec<OutboxRecord>, StoreError>;
    /// Records as published the events `seqs`: a prefix of what `unpublished_events`
    /// returned, in its order. (PostgreSQL keeps only a cursor at the last of them.)
    async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError>;
    /// Committed events held back behind an older transaction still open; `None` when
    /// there are none. Only PostgreSQL holds events back (SQLite commits one writer at a
    /// time, in order).
    async fn held_back_events(&self) -> Result<Option<HeldBack>, StoreError> {
        Ok(None)
    }
    /// Takes or renews the named lease for `owner` until `ttl` from now; `false` while
    /// another owner holds it.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError>;
    /// Reads a wallet account.
    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError>;
    /// The first of `codes` another payment already holds: its field name and holder.
    async fn payment_with_code(
        &self,
        codes: &PaymentCodes,
    ) -> Result<Option<(&'static str, Uuid)>, StoreError>;
    /// Credits an account by the platform, once per key, with its journal entry in the
    /// same transaction.
    async fn deposit(&self, deposit: &DepositRequest) -> Result<Deposited, StoreError>;
    /// Creates the account unless it exists (seeding), its balance journalled as an
    /// opening credit.
    async fn ensure_account(&self, account: &Account) -> Result<(), StoreError>;
    /// An account's journal, newest first, before `before` (a `seq`), at most `limit`.
    async fn movements(
        &self,
        account_id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
    /// Every account whose balance or held money is not what its journal says.
    async fn ledger_mismatches(&self) -> Result<Vec<LedgerMismatch>, StoreError>;
    /// Holds still held although their payment is final: a hold must never outlive it.
    async fn stale_holds(&self) -> Result<Vec<StaleHold>, StoreError>;
    /// The next base of `creditor`'s IUV sequence (1, 2, …): never handed out twice,
    /// whatever the instance, and not after a restart either.
    async fn next_iuv_base(&self, creditor: &str) -> Result<u64, StoreError>;
}

/// Opens (and migrates) the store a database URL names: `postgres://…` or `sqlite://…`
/// (the SQLite file is created if missing).
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        anyhow::bail!("database URL must start with postgres:// or sqlite:// (got {url:?})")
    }
}
