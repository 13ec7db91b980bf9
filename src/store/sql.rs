//! The SQL behind `Store`, shared by PostgreSQL and SQLite: the queries are written once
//! in a dialect both accept (`$n` parameters, `ON CONFLICT`, `RETURNING`, row values)
//! and instantiated per backend by `sql_store!`. Only connecting differs.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::packed;
use super::*;
use crate::domain::payment::{Payment, PaymentEvent};
use crate::domain::time;

/// PostgreSQL store (production). Creates, updates and outbox marks go through
/// `group_commit` as on SQLite; everything else runs on the pool.
#[derive(Clone)]
pub struct PgStore {
    pub(super) write: PgPool,
    pub(super) read: PgPool,
    writer: mpsc::Sender<Job>,
}

/// SQLite store (embedded default): one writer connection, a few readers, WAL. Creates,
/// updates and outbox marks go through `group_commit`: what is waiting when the writer is
/// free is committed in one transaction.
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) write: SqlitePool,
    pub(super) read: SqlitePool,
    writer: mpsc::Sender<Job>,
}

impl PgStore {
    /// Connects and applies the PostgreSQL migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = || PgPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let read = options()
            .max_connections(16)
            .connect(url)
            .await
            .context("cannot connect to PostgreSQL")?;
        sqlx::migrate!("migrations/postgres")
            .run(&read)
            .await
            .context("cannot migrate the PostgreSQL database")?;
        let write = Self::write_pool()
            .max_connections(4)
            .connect(url)
            .await
            .context("cannot connect to PostgreSQL")?;
        Self::rebase_outbox_cursor(&read)
            .await
            .context("cannot check the outbox cursor")?;
        let writer = spawn_pg_committers(url.to_owned()).await?;
        Ok(PgStore {
            write,
            read,
            writer,
        })
    }
}

impl PgStore {
    /// Options of the connections that write.
    ///
    /// They keep one plan per statement: PostgreSQL would otherwise plan the group
    /// commit's statement anew nearly every time (a custom plan per array size; measured:
    /// 4 813 plans in 6 143 runs, planning adding 30 % to its time). Every write finds its
    /// rows by key; without sequential scans, a plan made while a table is still small (a
    /// new database) does so too, instead of scanning the whole table forever after
    /// (measured: 15 ms per group once the table had 10 000 rows). No JIT either: a scan
    /// that had to stay sequential (the one-row cursor before it could use its key) costs
    /// so much in the planner's eyes that each run compiled itself, for half a second.
    ///
    /// sqlx pings a connection when it goes back to the pool; a second ping before each
    /// use would add a round trip to every write. Without it, a connection broken while
    /// idle (a server restart) fails the one group or write that draws it; a failed
    /// group's writes are retried one by one, and a caller that still gets an error
    /// (`Unavailable`) retries: an actor after a second, a client on a 503.
    fn write_pool() -> PgPoolOptions {
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for setting in [
                        "plan_cache_mode = force_generic_plan",
                        "enable_seqscan = off",
                        "jit = off",
                    ] {
                        sqlx::query(&format!("SET {setting}"))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
    }

    /// A database copied from another server (a dump restored, a logical replica
    /// promoted) carries that server's transaction ids, which this server's counter may
    /// not have reached: every event written here would sort behind the relay's cursor
    /// and never be published. When the cursor or an event is ahead of this server's
    /// counter, the events are renumbered: those the cursor passed drop out (no txid), the
    /// others come first, in their order, and the cursor starts over.
    async fn rebase_outbox_cursor(pool: &PgPool) -> Result<(), sqlx::Error> {
        const AHEAD: &str =
            "SELECT c.txid >= x OR COALESCE((SELECT max(txid) FROM outbox), 0) >= x \
             FROM outbox_cursor c, txid_snapshot_xmax(txid_current_snapshot()) AS x";
        if !sqlx::query_scalar::<_, bool>(AHEAD).fetch_one(pool).await? {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        // One instance at a time, and no event written meanwhile.
        sqlx::query("LOCK TABLE outbox_cursor, outbox IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        if sqlx::query_scalar::<_, bool>(AHEAD)
            .fetch_one(&mut *tx)
            .await?
        {
            let passed = sqlx::query(
                "UPDATE outbox SET txid = NULL \
                 WHERE (txid, seq) <= (SELECT txid, seq FROM outbox_cursor)",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let waiting = sqlx::query("UPDATE outbox SET txid = 0 WHERE txid IS NOT NULL")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE outbox_cursor SET txid = -1, seq = 0")
                .execute(&mut *tx)
                .await?;
            tracing::warn!(
                published = passed,
                unpublished = waiting,
                "the outbox came from another PostgreSQL server (transaction ids ahead of this one's): renumbered"
            );
        }
        tx.commit().await
    }
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the SQLite file.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad SQLite URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // A single writer connection: SQLite has one writer anyway, and this avoids
        // lock-upgrade deadlocks between deferred transactions. Checkpoints (copying the
        // WAL back into the database, with an fsync) mostly run on a connection of their
        // own, so they do not hold up the writes queued behind a commit; the writer
        // checkpoints only past 10 000 pages, which lets the WAL rewind even under
        // continuous writes (a background checkpoint never catches up with a writer that
        // starts its next transaction at once), and the file is cut back to 64 MiB.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // The pool's one connection is never shared with anything that could break
            // it: a ping before each use would cost a round trip to its thread per group.
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", "10000")
                    .pragma("journal_size_limit", "67108864"),
            )
            .await
            .with_context(|| format!("cannot open SQLite database {url:?}"))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&write)
            .await
            .context("cannot migrate the SQLite database")?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await
            .with_context(|| format!("cannot open SQLite database {url:?} for reading"))?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open SQLite database {url:?} for checkpoints"))?;
        let (writer, jobs) = mpsc::channel(GROUP_COMMIT_QUEUE);
        tokio::spawn(checkpoints(checkpointer, writer.downgrade()));
        tokio::spawn(group_commit(
            write.clone(),
            Arc::new(tokio::sync::Mutex::new(jobs)),
        ));
        Ok(SqliteStore {
            write,
            read,
            writer,
        })
    }
}

const PAYMENT_COLUMNS: &str = "document, version, saga, next_check_at";
/// What the listing reads: `PAYMENT_COLUMNS` and the key it pages by, which stays
/// readable when the document is not.
const LISTED_COLUMNS: &str = "id, created_at, document, version, saga, next_check_at";
/// What `row_to_timing` reads (a macro, for `concat!`).
macro_rules! timing_columns {
    () => {
        "next_check_at, status, notify_pending, version, service_id"
    };
}
const HOLD_STATUS_HELD: &str = "HELD";
const ACCOUNT_COLUMNS: &str = "id, owner_id, tenant_id, currency, balance_cents, held_cents";
const ENTRY_COLUMNS: &str =
    "seq, account_id, payment_id, kind, amount_cents, balance_after_cents, \
                             held_after_cents, reason, created_at";

/// A journal entry to write, with the account's balance and held money after it.
/// What crediting an account once per key did.
#[derive(Debug, PartialEq)]
enum Credit {
    /// Credited: the account after.
    Made(Account),
    /// That key credited before; nothing more.
    AlreadyMade,
    NoAccount,
}

struct NewEntry<'a> {
    account_id: Uuid,
    key: &'a str,
    payment_id: Option<Uuid>,
    kind: EntryKind,
    amount_cents: i64,
    balance_after_cents: i64,
    held_after_cents: i64,
    reason: Option<&'a str>,
    at: DateTime<Utc>,
}

/// The journal key of a payment's entry of `kind`: each payment holds, captures,
/// releases and is credited at most once.
fn payment_entry_key(kind: EntryKind, payment_id: Uuid) -> String {
    format!("{}:{payment_id}", kind.as_str())
}

/// A JSON value bound as text: a payment's saga (its document and events are packed, see
/// `packed`). It is opaque to the database (no query looks inside it), so PostgreSQL
/// stores it as `TEXT`: no `jsonb` parsing on every write and no rendering on every read.
struct JsonText<T>(T);

impl<T, DB: sqlx::Database> sqlx::Type<DB> for JsonText<T>
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, T: serde::Serialize, DB: sqlx::Database> sqlx::Encode<'q, DB> for JsonText<T>
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

/// A document or an event read back from what was stored (packed or plain text).
fn from_stored<T: serde::de::DeserializeOwned>(stored: &[u8]) -> Result<T, StoreError> {
    from_json_text(&packed::unpack(stored)?)
}

/// Each of `texts` packed for storage.
fn packs(texts: &[String]) -> Vec<Vec<u8>> {
    texts.iter().map(|text| packed::pack(text)).collect()
}

/// `value` as JSON text (the array binds of PostgreSQL's grouped statement).
fn json_text(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unexpected(e.into()))
}

/// Each of `values` as JSON text.
fn texts<'a, T: serde::Serialize + 'a>(
    values: impl Iterator<Item = &'a T>,
) -> Result<Vec<String>, StoreError> {
    values.map(json_text).collect()
}

/// A document read back from its JSON text.
fn from_json_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Unexpected(e.into()))
}

macro_rules! sql_store {
    ($store:ty, $db:ty, $name:literal) => {
        impl $store {
            fn row_to_payment(row: &<$db as sqlx::Database>::Row) -> Result<StoredPayment, StoreError> {
                let document: &[u8] = row.try_get("document")?;
                let saga: &str = row.try_get("saga")?;
                Ok(StoredPayment {
                    payment: from_stored(document)?,
                    version: row.try_get("version")?,
                    saga: from_json_text(saga)?,
                    next_check_at: row.try_get("next_check_at")?,
                })
            }

            /// A row's `timing_columns!()`.
            fn row_to_timing(row: &<$db as sqlx::Database>::Row) -> Result<PaymentTiming, StoreError> {
                let status: &str = row.try_get("status")?;
                let open = status
                    .parse::<PaymentStatus>()
                    .map(|s| !s.is_final())
                    .map_err(|e| StoreError::Unexpected(anyhow::Error::new(e)))?;
                Ok(PaymentTiming {
                    next_check_at: row.try_get("next_check_at")?,
                    open,
                    notify_pending: row.try_get("notify_pending")?,
                    version: row.try_get("version")?,
                    service_id: row.try_get("service_id")?,
                })
            }

            async fn insert_event(
                conn: &mut <$db as sqlx::Database>::Connection,
                payment: &Payment,
                at: DateTime<Utc>,
                version: i64,
            ) -> Result<(), StoreError> {
                let mut qb = QueryBuilder::<$db>::new("");
                Self::push_events(
                    &mut qb,
                    &[EventRow {
                        payment,
                        at,
                        version,
                        index: 0,
                    }],
                    &[],
                )?;
                qb.build().execute(&mut *conn).await?;
                Ok(())
            }

            async fn payment_in(
                executor: impl sqlx::Executor<'_, Database = $db>,
                column: &str,
                id: Uuid,
            ) -> Result<Option<StoredPayment>, StoreError> {
                let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE {column} = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(executor).await?;
                row.as_ref().map(Self::row_to_payment).transpose()
            }

            /// One page of the listing's rows (`LISTED_COLUMNS`), newest first.
            fn list_page(filter: &PaymentFilter, limit: i64, cursor: Option<Cursor>) -> QueryBuilder<'static, $db> {
                let mut qb = QueryBuilder::<$db>::new(format!("SELECT {LISTED_COLUMNS} FROM payments WHERE 1 = 1"));
                if !filter.statuses.is_empty() {
                    qb.push(" AND status IN (");
                    let mut list = qb.separated(", ");
                    for status in &filter.statuses {
                        list.push_bind(status.as_str());
                    }
                    list.push_unseparated(")");
                }
                for (column, value) in [
                    ("tenant_id", filter.tenant_id),
                    ("service_id", filter.service_id),
                    ("remote_id", filter.remote_id),
                    ("user_id", filter.user_id),
                ] {
                    if let Some(value) = value {
                        qb.push(format!(" AND {column} = ")).push_bind(value);
                    }
                }
                if let Some(since) = filter.created_since {
                    qb.push(" AND created_at >= ").push_bind(since);
                }
                if let Some(cursor) = cursor {
                    // A row comparison, which the (created_at, id) indexes start from: the
                    // same test spelled with OR is only a filter, and a page deep in the
                    // listing read every newer entry first (11 ms at 74 000 payments on
                    // PostgreSQL, against 0.1 ms).
                    qb.push(" AND (created_at, id) < (").push_bind(cursor.created_at);
                    qb.push(", ").push_bind(cursor.id).push(")");
                }
                qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(limit);
                qb
            }

            /// The payment of `tenant`'s application `remote_id` (unique per tenant only:
            /// another tenant's application of the same id is another payment).
            async fn remote_id_in(
                executor: impl sqlx::Executor<'_, Database = $db>,
                tenant: Uuid,
                remote_id: Uuid,
            ) -> Result<Option<StoredPayment>, StoreError> {
                let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND remote_id = $2");
                let row = sqlx::query(&sql).bind(tenant).bind(remote_id).fetch_optional(executor).await?;
                row.as_ref().map(Self::row_to_payment).transpose()
            }

            /// Places a hold; `Err(reason)` when the account is unknown or short of money.
            async fn place_hold(
                conn: &mut <$db as sqlx::Database>::Connection,
                payment_id: Uuid,
                hold: HoldRequest,
                at: DateTime<Utc>,
            ) -> Result<Result<(), String>, StoreError> {
                let held = sqlx::query(
                    "UPDATE accounts SET held_cents = held_cents + $1, updated_at = $2 \
                     WHERE id = $3 AND balance_cents - held_cents >= $1 RETURNING balance_cents, held_cents",
                )
                .bind(hold.amount_cents)
                .bind(at)
                .bind(hold.account_id)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(after) = held else {
                    let exists = sqlx::query("SELECT 1 AS one FROM accounts WHERE id = $1")
                        .bind(hold.account_id)
                        .fetch_optional(&mut *conn)
                        .await?
                        .is_some();
                    return Ok(Err(if exists {
                        "insufficient funds in the wallet account".to_string()
                    } else {
                        format!("unknown wallet account {}", hold.account_id)
                    }));
                };
                let key = payment_entry_key(EntryKind::Hold, payment_id);
                Self::journal(&mut *conn, NewEntry {
                    account_id: hold.account_id,
                    key: &key,
                    payment_id: Some(payment_id),
                    kind: EntryKind::Hold,
                    amount_cents: hold.amount_cents,
                    balance_after_cents: after.try_get("balance_cents")?,
                    held_after_cents: after.try_get("held_cents")?,
                    reason: None,
                    at,
                }).await?;
                sqlx::query(
                    "INSERT INTO holds (payment_id, account_id, amount_cents, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5)",
                )
                .bind(payment_id)
                .bind(hold.account_id)
                .bind(hold.amount_cents)
                .bind(HOLD_STATUS_HELD)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(Ok(()))
            }

            /// Captures or releases a payment's hold, once (idempotent).
            async fn settle_hold(
                conn: &mut <$db as sqlx::Database>::Connection,
                payment_id: Uuid,
                action: HoldAction,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let (status, kind, balance_sql) = match action {
                    HoldAction::Capture => (
                        "CAPTURED",
                        EntryKind::Capture,
                        "UPDATE accounts SET balance_cents = balance_cents - $1, held_cents = held_cents - $1, updated_at = $2 WHERE id = $3 \
                         RETURNING balance_cents, held_cents",
                    ),
                    HoldAction::Release => (
                        "RELEASED",
                        EntryKind::Release,
                        "UPDATE accounts SET held_cents = held_cents - $1, updated_at = $2 WHERE id = $3 \
                         RETURNING balance_cents, held_cents",
                    ),
                };
                let settled = sqlx::query(
                    "UPDATE holds SET status = $1, updated_at = $2 WHERE payment_id = $3 AND status = $4 \
                     RETURNING account_id, amount_cents",
                )
                .bind(status)
                .bind(at)
                .bind(payment_id)
                .bind(HOLD_STATUS_HELD)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = settled {
                    let account_id: Uuid = row.try_get("account_id")?;
                    let amount: i64 = row.try_get("amount_cents")?;
                    let after = sqlx::query(balance_sql)
                        .bind(amount)
                        .bind(at)
                        .bind(account_id)
                        .fetch_one(&mut *conn)
                        .await?;
                    let key = payment_entry_key(kind, payment_id);
                    Self::journal(&mut *conn, NewEntry {
                        account_id,
                        key: &key,
                        payment_id: Some(payment_id),
                        kind,
                        amount_cents: amount,
                        balance_after_cents: after.try_get("balance_cents")?,
                        held_after_cents: after.try_get("held_cents")?,
                        reason: None,
                        at,
                    }).await?;
                }
                Ok(())
            }

            /// Writes a journal entry. Its key is unique: a second entry for the same
            /// thing fails the transaction rather than move money twice.
            async fn journal(
                conn: &mut <$db as sqlx::Database>::Connection,
                entry: NewEntry<'_>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO ledger_entries (account_id, entry_key, payment_id, kind, amount_cents, \
                     balance_after_cents, held_after_cents, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(entry.account_id)
                .bind(entry.key)
                .bind(entry.payment_id)
                .bind(entry.kind.as_str())
                .bind(entry.amount_cents)
                .bind(entry.balance_after_cents)
                .bind(entry.held_after_cents)
                .bind(entry.reason)
                .bind(entry.at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// The amount, reason and account of the entry with `key`, if written.
            async fn entry_by_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                key: &str,
            ) -> Result<Option<(i64, Option<String>, Uuid)>, StoreError> {
                let row = sqlx::query(
                    "SELECT amount_cents, reason, account_id FROM ledger_entries WHERE entry_key = $1",
                )
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
                row.map(|r| Ok((r.try_get("amount_cents")?, r.try_get("reason")?, r.try_get("account_id")?)))
                    .transpose()
            }

            /// Credits an account, once per `key`.
            async fn credit(
                conn: &mut <$db as sqlx::Database>::Connection,
                account_id: Uuid,
                key: &str,
                payment_id: Option<Uuid>,
                amount_cents: i64,
                reason: Option<&str>,
                at: DateTime<Utc>,
            ) -> Result<Credit, StoreError> {
                if Self::entry_by_key(&mut *conn, key).await?.is_some() {
                    return Ok(Credit::AlreadyMade);
                }
                let sql = format!(
                    "UPDATE accounts SET balance_cents = balance_cents + $1, updated_at = $2 WHERE id = $3 \
                     RETURNING {ACCOUNT_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(amount_cents)
                    .bind(at)
                    .bind(account_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(account) = row.as_ref().map(Self::row_to_account).transpose()? else {
                    return Ok(Credit::NoAccount);
                };
                Self::journal(&mut *conn, NewEntry {
                    account_id,
                    key,
                    payment_id,
                    kind: EntryKind::Credit,
                    amount_cents,
                    balance_after_cents: account.balance_cents,
                    held_after_cents: account.held_cents,
                    reason,
                    at,
                }).await?;
                Ok(Credit::Made(account))
            }

            /// Credits a completed top-up's wallet with its amount, once (keyed by the
            /// payment): a later update of the COMPLETE payment credits nothing more.
            async fn credit_top_up(
                conn: &mut <$db as sqlx::Database>::Connection,
                payment: &Payment,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let Some(account_id) = payment.top_up_account_id else {
                    return Ok(());
                };
                let key = payment_entry_key(EntryKind::Credit, payment.id);
                if Self::entry_by_key(&mut *conn, &key).await?.is_some() {
                    return Ok(());
                }
                let credited = Self::credit(
                    &mut *conn,
                    account_id,
                    &key,
                    Some(payment.id),
                    payment.payment.amount.cents(),
                    Some(&payment.reason),
                    at,
                )
                .await?;
                if credited == Credit::NoAccount {
                    // The account was checked when the top-up was created and accounts
                    // are never deleted: this is a bug, and the payment must not be
                    // recorded COMPLETE without its credit.
                    return Err(StoreError::Unexpected(anyhow::anyhow!(
                        "top-up {} credits unknown wallet account {account_id}", payment.id
                    )));
                }
                Ok(())
            }

            /// Records the payment's iuv and notice code as its own. With `exclusive`, a
            /// code another payment holds fails the write (an adoption that lost a race).
            async fn record_codes(
                conn: &mut <$db as sqlx::Database>::Connection,
                payment: &Payment,
                exclusive: bool,
            ) -> Result<(), StoreError> {
                for (kind, field, code) in PaymentCodes::of(payment).entries() {
                    let inserted = sqlx::query(
                        "INSERT INTO payment_codes (kind, code, payment_id) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(kind)
                    .bind(code)
                    .bind(payment.id)
                    .execute(&mut *conn)
                    .await?;
                    if exclusive && inserted.rows_affected() == 0 {
                        let holder: Option<Uuid> = sqlx::query_scalar(
                            "SELECT payment_id FROM payment_codes WHERE kind = $1 AND code = $2",
                        )
                        .bind(kind)
                        .bind(code)
                        .fetch_optional(&mut *conn)
                        .await?;
                        if holder != Some(payment.id) {
                            return Err(StoreError::Unexpected(anyhow::anyhow!(
                                "{field} is already used by another payment"
                            )));
                        }
                    }
                }
                Ok(())
            }

            /// Inserts a payment row unless its id or remote_id exists; whether it did.
            async fn insert_payment_row(
                conn: &mut <$db as sqlx::Database>::Connection,
                payment: &Payment,
                saga: &SagaState,
                next_check_at: Option<DateTime<Utc>>,
            ) -> Result<bool, StoreError> {
                let document = packed::pack(&json_text(payment)?);
                let mut qb = QueryBuilder::<$db>::new("");
                Self::push_payment_rows(&mut qb, vec![(payment, saga, next_check_at, document)]);
                qb.push(" ON CONFLICT DO NOTHING");
                let inserted = qb.build().execute(&mut *conn).await?;
                Ok(inserted.rows_affected() == 1)
            }

            /// The statements of a create, on `conn` inside a transaction. With the answer,
            /// whether to keep what they wrote: `false` for an answer that must leave no
            /// trace (a replayed or reused idempotency key, a taken remote_id).
            async fn create_steps(
                conn: &mut <$db as sqlx::Database>::Connection,
                new: NewPayment,
            ) -> Result<(Created, bool), StoreError> {
                let NewPayment { mut payment, saga, next_check_at, idempotency, hold } = new;
                let now = payment.created_at;
                if let Some(key) = &idempotency {
                    let inserted = sqlx::query(
                        "INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, payment_id, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(&key.scope)
                    .bind(&key.key)
                    .bind(&key.request_hash)
                    .bind(payment.id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    if inserted.rows_affected() == 0 {
                        let row = sqlx::query(
                            "SELECT request_hash, payment_id FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
                        )
                        .bind(&key.scope)
                        .bind(&key.key)
                        .fetch_one(&mut *conn)
                        .await?;
                        let hash: String = row.try_get("request_hash")?;
                        let payment_id: Uuid = row.try_get("payment_id")?;
                        if hash != key.request_hash {
                            return Ok((Created::KeyReused { payment_id }, false));
                        }
                        return match Self::payment_in(&mut *conn, "id", payment_id).await? {
                            Some(existing) => Ok((Created::Replayed(existing), false)),
                            None => Err(StoreError::Unexpected(anyhow::anyhow!(
                                "idempotency key points at missing payment {payment_id}"
                            ))),
                        };
                    }
                }
                if let Some(remote_id) = payment.remote_id {
                    if let Some(existing) = Self::remote_id_in(&mut *conn, payment.tenant_id, remote_id).await? {
                        return Ok((Created::RemoteIdTaken(existing), false));
                    }
                }
                let mut next_check_at = next_check_at;
                if let Some(hold) = hold {
                    if let Err(reason) = Self::place_hold(&mut *conn, payment.id, hold, now).await? {
                        payment.transition(PaymentStatus::CreationFailed, now).map_err(anyhow::Error::new)?;
                        payment.status_message = Some(reason);
                        payment.links.update.next_check_at = None;
                        next_check_at = None;
                    }
                }
                let inserted = Self::insert_payment_row(&mut *conn, &payment, &saga, next_check_at).await?;
                if !inserted {
                    // Lost a race on remote_id with a concurrent creation (committed by
                    // now: the statement waited for it).
                    if let Some(remote_id) = payment.remote_id {
                        if let Some(existing) = Self::remote_id_in(&mut *conn, payment.tenant_id, remote_id).await? {
                            return Ok((Created::RemoteIdTaken(existing), false));
                        }
                    }
                    return Err(StoreError::Unexpected(anyhow::anyhow!(
                        "payment {} could not be inserted", payment.id
                    )));
                }
                Self::record_codes(&mut *conn, &payment, true).await?;
                Self::insert_event(&mut *conn, &payment, now, 1).await?;
                Ok((Created::New(StoredPayment { payment, version: 1, saga, next_check_at }), true))
            }

            /// Creates a payment in a transaction of its own.
            async fn create_in(pool: &sqlx::Pool<$db>, new: NewPayment) -> Result<Created, StoreError> {
                let mut tx = pool.begin().await?;
                let (created, keep) = Self::create_steps(&mut tx, new).await?;
                if keep {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(created)
            }

            /// The statements of an update, on `conn` inside a transaction; a conflict
            /// writes nothing.
            async fn update_steps(
                conn: &mut <$db as sqlx::Database>::Connection,
                expected_version: i64,
                change: Change,
            ) -> Result<StoredPayment, StoreError> {
                let Change { payment, saga, next_check_at, emit_event, hold, new_codes } = change;
                let now = payment.updated_at;
                let updated = sqlx::query(
                    "UPDATE payments SET status = $1, updated_at = $2, next_check_at = $3, version = version + 1, \
                     document = $4, saga = $5, notify_pending = $8 WHERE id = $6 AND version = $7",
                )
                .bind(payment.status.as_str())
                .bind(payment.updated_at)
                .bind(next_check_at)
                .bind(packed::pack(&json_text(&payment)?))
                .bind(JsonText(&saga))
                .bind(payment.id)
                .bind(expected_version)
                .bind(payment.notify_pending())
                .execute(&mut *conn)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::Conflict(payment.id));
                }
                if let Some(action) = hold {
                    Self::settle_hold(&mut *conn, payment.id, action, now).await?;
                }
                if payment.status == PaymentStatus::Complete {
                    Self::credit_top_up(&mut *conn, &payment, now).await?;
                }
                if new_codes {
                    // Codes the intermediary gave: it is the authority on them, so a
                    // holder found here does not stop the update.
                    Self::record_codes(&mut *conn, &payment, false).await?;
                }
                if emit_event {
                    Self::insert_event(&mut *conn, &payment, now, expected_version + 1).await?;
                }
                Ok(StoredPayment { payment, version: expected_version + 1, saga, next_check_at })
            }

            /// Updates a payment in a transaction of its own.
            async fn update_in(
                pool: &sqlx::Pool<$db>,
                expected_version: i64,
                change: Change,
            ) -> Result<StoredPayment, StoreError> {
                let mut tx = pool.begin().await?;
                match Self::update_steps(&mut tx, expected_version, change).await {
                    Ok(row) => {
                        tx.commit().await?;
                        Ok(row)
                    }
                    Err(StoreError::Conflict(id)) => {
                        tx.rollback().await?;
                        Err(StoreError::Conflict(id))
                    }
                    Err(e) => Err(e),
                }
            }


            async fn create_payment_queued(&self, new: NewPayment) -> Result<Created, StoreError> {
                let (reply, answer) = oneshot::channel();
                if let Err(mpsc::error::SendError(Job::Create(new, _))) =
                    self.writer.send(Job::Create(new, reply)).await
                {
                    return Self::create_in(&self.write, new).await;
                }
                answer.await.unwrap_or_else(|_| Err(writer_gone()))
            }

            async fn update_payment_queued(
                &self,
                expected_version: i64,
                change: Change,
            ) -> Result<StoredPayment, StoreError> {
                let (reply, answer) = oneshot::channel();
                let job = Job::Update(expected_version, change, reply);
                if let Err(mpsc::error::SendError(Job::Update(version, change, _))) =
                    self.writer.send(job).await
                {
                    return Self::update_in(&self.write, version, change).await;
                }
                answer.await.unwrap_or_else(|_| Err(writer_gone()))
            }

            async fn mark_published_queued(&self, seqs: &[i64]) -> Result<(), StoreError> {
                if seqs.is_empty() {
                    return Ok(());
                }
                let (reply, answer) = oneshot::channel();
                let job = Job::MarkPublished(seqs.to_vec(), reply);
                if self.writer.send(job).await.is_err() {
                    let mut conn = self.write.acquire().await?;
                    return Self::mark_published_steps(&mut conn, seqs).await;
                }
                answer.await.unwrap_or_else(|_| Err(writer_gone()))
            }

            /// Runs `jobs` in one transaction; the answers, once it committed. A create that may
            /// have to undo its own writes (idempotency key, remote_id, wallet hold) runs in a
            /// savepoint; the others write nothing when they are refused (a version conflict).
            /// Any error aborts the whole transaction.
            ///
            /// The plain writes (`write_plain_in`) are a fixed number of statements whatever
            /// the group's size. On PostgreSQL they are one statement over arrays, and a
            /// group of plain writes only (the usual case; there the others run alone) needs
            /// no BEGIN or COMMIT. On SQLite each statement is a round trip to the
            /// connection's thread, which costs more than SQLite's own work on a small group
            /// (about 0.2 ms, measured): there they are two batches of statements, and a
            /// group of plain writes only is two round trips (`write_plain_group`: BEGIN and
            /// COMMIT ride with the batches), plus the ping sqlx sends when the connection
            /// goes back to the pool.
            async fn try_group(
                conn: &mut sqlx::pool::PoolConnection<$db>,
                jobs: &[Job],
            ) -> Result<Vec<Done>, StoreError> {
                // Plain creates: nothing to undo, nothing shared with the other jobs.
                let creates: Vec<(usize, &NewPayment)> = jobs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, job)| match job {
                        Job::Create(new, _) if is_plain(new) => Some((i, new)),
                        _ => None,
                    })
                    .collect();
                // Plain updates: no hold to settle, the first of the group for their payment (a
                // later update of the same payment goes alone, after it, in order).
                let mut ids = std::collections::HashSet::new();
                let updates: Vec<(usize, i64, &Change)> = jobs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, job)| match job {
                        Job::Update(version, change, _)
                            if ids.insert(change.payment.id) && change.is_plain() =>
                        {
                            Some((i, *version, change))
                        }
                        _ => None,
                    })
                    .collect();
                let marks: Vec<(usize, &[i64])> = jobs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, job)| match job {
                        Job::MarkPublished(seqs, _) => Some((i, seqs.as_slice())),
                        _ => None,
                    })
                    .collect();
                let news: Vec<&NewPayment> = creates.iter().map(|(_, new)| *new).collect();
                let plain: Vec<(i64, &Change)> = updates.iter().map(|(_, v, c)| (*v, *c)).collect();
                let seqs: Vec<&[i64]> = marks
                    .iter()
                    .map(|(_, seqs)| *seqs)
                    .filter(|seqs| !seqs.is_empty())
                    .collect();
                let mut done: Vec<Option<Done>> = Vec::with_capacity(jobs.len());
                done.resize_with(jobs.len(), || None);
                let updated = if creates.len() + updates.len() + marks.len() == jobs.len() {
                    Self::write_plain_group(conn, &news, &plain, &seqs).await?
                } else {
                    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
                    let updated = Self::write_plain_in(&mut tx, &news, &plain, &seqs).await?;
                    let batched: std::collections::HashSet<usize> = creates
                        .iter()
                        .map(|(i, _)| *i)
                        .chain(updates.iter().map(|(i, _, _)| *i))
                        .chain(marks.iter().map(|(i, _)| *i))
                        .collect();
                    for (i, job) in jobs.iter().enumerate() {
                        if batched.contains(&i) {
                            continue;
                        }
                        match job {
                            Job::Create(new, _) => {
                                let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                                let (created, keep) =
                                    Self::create_steps(&mut savepoint, new.clone()).await?;
                                if keep {
                                    savepoint.commit().await?;
                                } else {
                                    savepoint.rollback().await?;
                                }
                                done[i] = Some(Done::Created(created));
                            }
                            Job::Update(version, change, _) => {
                                done[i] = Some(Done::Updated(
                                    match Self::update_steps(&mut tx, *version, change.clone()).await {
                                        Err(StoreError::Conflict(id)) => Err(StoreError::Conflict(id)),
                                        Err(e) => return Err(e),
                                        Ok(row) => Ok(row),
                                    },
                                ));
                            }
                            // Every mark is batched.
                            Job::MarkPublished(..) => done[i] = Some(Done::Marked),
                        }
                    }
                    tx.commit().await?;
                    updated
                };
                for (i, new) in &creates {
                    done[*i] = Some(Done::Created(Created::New(StoredPayment {
                        payment: new.payment.clone(),
                        version: 1,
                        saga: new.saga.clone(),
                        next_check_at: new.next_check_at,
                    })));
                }
                for (i, version, change) in &updates {
                    let payment = &change.payment;
                    done[*i] = Some(Done::Updated(if updated.contains(&payment.id) {
                        Ok(StoredPayment {
                            payment: payment.clone(),
                            version: version + 1,
                            saga: change.saga.clone(),
                            next_check_at: change.next_check_at,
                        })
                    } else {
                        Err(StoreError::Conflict(payment.id))
                    }));
                }
                for (i, _) in &marks {
                    done[*i] = Some(Done::Marked);
                }
                done.into_iter()
                    .map(|d| {
                        d.ok_or_else(|| {
                            StoreError::Unexpected(anyhow::anyhow!("a job of the group got no answer"))
                        })
                    })
                    .collect()
            }

            /// One job in a transaction of its own (after a group failed: errors stay with the
            /// job that caused them).
            async fn run_alone(pool: &sqlx::Pool<$db>, job: Job) {
                match job {
                    Job::Create(new, reply) => {
                        let _ = reply.send(Self::create_in(pool, new).await);
                    }
                    Job::Update(version, change, reply) => {
                        let _ = reply.send(Self::update_in(pool, version, change).await);
                    }
                    Job::MarkPublished(seqs, reply) => {
                        let result = match pool.acquire().await {
                            Ok(mut conn) => Self::mark_published_steps(&mut conn, &seqs).await,
                            Err(e) => Err(e.into()),
                        };
                        let _ = reply.send(result);
                    }
                }
            }

            /// `INSERT INTO payments … VALUES …` of (payment, saga, next check, stored
            /// document), at version 1.
            fn push_payment_rows<'a>(
                qb: &mut QueryBuilder<'a, $db>,
                rows: Vec<(&'a Payment, &'a SagaState, Option<DateTime<Utc>>, Vec<u8>)>,
            ) {
                qb.push(
                    "INSERT INTO payments (id, tenant_id, service_id, user_id, remote_id, payment_type, status, \
                     created_at, updated_at, next_check_at, version, document, saga, notify_pending) ",
                );
                qb.push_values(rows, |mut row, (payment, saga, next_check_at, document)| {
                    row.push_bind(payment.id)
                        .push_bind(payment.tenant_id)
                        .push_bind(payment.service_id)
                        .push_bind(payment.user_id)
                        .push_bind(payment.remote_id)
                        .push_bind(payment.kind.as_str())
                        .push_bind(payment.status.as_str())
                        .push_bind(payment.created_at)
                        .push_bind(payment.updated_at)
                        .push_bind(next_check_at)
                        .push_bind(1_i64)
                        .push_bind(document)
                        .push_bind(JsonText(saga))
                        .push_bind(payment.notify_pending());
                });
            }

            /// `INSERT INTO outbox … VALUES …` of events, each from the text of its
            /// payment's document in `documents` (at the event's `index`) when the caller
            /// has it.
            fn push_events<'a>(
                qb: &mut QueryBuilder<'a, $db>,
                events: &[EventRow<'a>],
                documents: &[String],
            ) -> Result<(), StoreError> {
                let texts = events
                    .iter()
                    .map(|event| event.text(documents.get(event.index).map(String::as_str)))
                    .collect::<Result<Vec<_>, _>>()?;
                qb.push("INSERT INTO outbox (event_id, payment_id, topic, payload, created_at, version) ");
                qb.push_values(events.iter().zip(texts), |mut row, (event, (event_id, text))| {
                    row.push_bind(event_id)
                        .push_bind(event.payment.id)
                        .push_bind("payments")
                        .push_bind(packed::pack(&text))
                        .push_bind(event.at)
                        .push_bind(event.version);
                });
                Ok(())
            }

            /// A deposit in one transaction: the replay of the one its key made, or a new
            /// credit with its journal entry; `None` when a concurrent one with the key
            /// got there first.
            async fn deposit_once(&self, key: &str, deposit: &DepositRequest) -> Result<Option<Deposited>, StoreError> {
                let mut tx = self.write.begin().await?;
                if let Some((amount, reason, account_id)) = Self::entry_by_key(&mut tx, key).await? {
                    tx.rollback().await?;
                    let same = amount == deposit.amount_cents
                        && reason.as_deref() == Some(deposit.reason.as_str())
                        && account_id == deposit.account_id;
                    if !same {
                        return Ok(Some(Deposited::KeyReused));
                    }
                    return Ok(Some(match self.account(deposit.account_id).await? {
                        Some(account) => Deposited::Replayed(account),
                        None => Deposited::NoAccount,
                    }));
                }
                let credited = Self::credit(
                    &mut tx,
                    deposit.account_id,
                    key,
                    None,
                    deposit.amount_cents,
                    Some(&deposit.reason),
                    time::now(),
                )
                .await?;
                match credited {
                    Credit::Made(account)
                        if deposit
                            .balance_max_cents
                            .is_some_and(|max| account.balance_cents > max) =>
                    {
                        tx.rollback().await?;
                        Ok(Some(Deposited::OverLimit {
                            balance_cents: account.balance_cents - deposit.amount_cents,
                        }))
                    }
                    Credit::Made(account) => {
                        tx.commit().await?;
                        Ok(Some(Deposited::Credited(account)))
                    }
                    // A concurrent deposit with this key committed since the look above
                    // (each statement sees the latest commits): replayed on a new look.
                    Credit::AlreadyMade => {
                        tx.rollback().await?;
                        Ok(None)
                    }
                    Credit::NoAccount => {
                        tx.rollback().await?;
                        Ok(Some(Deposited::NoAccount))
                    }
                }
            }

            fn row_to_account(row: &<$db as sqlx::Database>::Row) -> Result<Account, StoreError> {
                Ok(Account {
                    id: row.try_get("id")?,
                    owner_id: row.try_get("owner_id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    currency: row.try_get("currency")?,
                    balance_cents: row.try_get("balance_cents")?,
                    held_cents: row.try_get("held_cents")?,
                })
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            async fn create_payment(&self, new: NewPayment) -> Result<Created, StoreError> {
                self.create_payment_queued(new).await
            }

            async fn import_payments(&self, payments: &[NewPayment]) -> Result<(), StoreError> {
                let mut tx = self.write.begin().await?;
                for new in payments {
                    Self::insert_payment_row(&mut tx, &new.payment, &new.saga, new.next_check_at).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn payment_timing(&self, id: Uuid) -> Result<Option<PaymentTiming>, StoreError> {
                let row = sqlx::query(
                    concat!("SELECT ", timing_columns!(), " FROM payments WHERE id = $1"),
                )
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
                row.as_ref().map(Self::row_to_timing).transpose()
            }

            async fn payment(&self, id: Uuid) -> Result<Option<StoredPayment>, StoreError> {
                Self::payment_in(&self.read, "id", id).await
            }

            async fn update_payment(
                &self,
                expected_version: i64,
                change: Change,
            ) -> Result<StoredPayment, StoreError> {
                self.update_payment_queued(expected_version, change).await
            }

            async fn list_payments(
                &self,
                filter: &PaymentFilter,
                limit: i64,
                cursor: Option<Cursor>,
            ) -> Result<Vec<StoredPayment>, StoreError> {
                // A row that cannot be read is left out, reported, and replaced by the
                // next one (so a page is still full and paging goes on past it): one bad
                // row must not take the whole listing down.
                let mut listed = Vec::new();
                let mut cursor = cursor;
                loop {
                    let wanted = limit - listed.len() as i64;
                    let rows = Self::list_page(filter, wanted, cursor).build().fetch_all(&self.read).await?;
                    let exhausted = (rows.len() as i64) < wanted;
                    for row in &rows {
                        cursor = Some(Cursor { created_at: row.try_get("created_at")?, id: row.try_get("id")? });
                        match Self::row_to_payment(row) {
                            Ok(payment) => listed.push(payment),
                            Err(e) => {
                                let id: Uuid = row.try_get("id")?;
                                super::note_unreadable_payment(id, &e);
                            }
                        }
                    }
                    if exhausted || listed.len() as i64 >= limit {
                        return Ok(listed);
                    }
                }
            }

            // This query and the next two can return every open payment: they are read
            // as streams, not with `fetch_all`. sqlx copies each SQLite value into
            // SQLite's heap (C `malloc`), and holding 100 000 rows at once left about
            // 50 MB in a glibc arena that never shrank back (half the resident memory of
            // 100 000 payment actors).
            async fn open_payment_ids(&self) -> Result<Vec<Uuid>, StoreError> {
                let mut rows = sqlx::query(
                    "SELECT id FROM payments WHERE status IN ('CREATION_PENDING', 'PAYMENT_PENDING', 'PAYMENT_STARTED') \
                     OR notify_pending = $1 ORDER BY next_check_at",
                )
                .bind(true)
                .fetch(&self.read);
                let mut ids = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    ids.push(row.try_get("id")?);
                }
                Ok(ids)
            }

            async fn open_payment_timings(&self) -> Result<Vec<(Uuid, Option<PaymentTiming>)>, StoreError> {
                let mut rows = sqlx::query(
                    concat!(
                        "SELECT id, ", timing_columns!(), " FROM payments \
                         WHERE status IN ('CREATION_PENDING', 'PAYMENT_PENDING', 'PAYMENT_STARTED') \
                         OR notify_pending = $1 ORDER BY next_check_at"
                    ),
                )
                .bind(true)
                .fetch(&self.read);
                let mut timings = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    timings.push((row.try_get("id")?, Some(Self::row_to_timing(&row)?)));
                }
                Ok(timings)
            }

            async fn due_payments(
                &self,
                until: DateTime<Utc>,
                after: Option<(DateTime<Utc>, Uuid)>,
                include_notify: bool,
                limit: i64,
            ) -> Result<Vec<DuePayment>, StoreError> {
                let (after_at, after_id) = after.unwrap_or((DateTime::UNIX_EPOCH, Uuid::nil()));
                // Two index range scans (open payments; pending notifications), merged.
                let mut rows = sqlx::query(
                    concat!(
                        "SELECT id, ", timing_columns!(), " FROM (\
                           SELECT id, ", timing_columns!(), " FROM payments \
                           WHERE status IN ('CREATION_PENDING', 'PAYMENT_PENDING', 'PAYMENT_STARTED') AND next_check_at < $1 \
                           UNION ALL \
                           SELECT id, ", timing_columns!(), " FROM payments \
                           WHERE notify_pending = $2 AND $2 AND next_check_at < $1\
                         ) AS due WHERE next_check_at > $3 OR (next_check_at = $3 AND id > $4) \
                         ORDER BY next_check_at, id LIMIT $5"
                    ),
                )
                .bind(until)
                .bind(include_notify)
                .bind(after_at)
                .bind(after_id)
                .bind(limit)
                .fetch(&self.read);
                let mut due = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    due.push(DuePayment {
                        id: row.try_get("id")?,
                        due: row.try_get("next_check_at")?,
                        timing: Self::row_to_timing(&row)?,
                    });
                }
                Ok(due)
            }

            async fn payment_events(&self, payment_id: Uuid) -> Result<Vec<serde_json::Value>, StoreError> {
                let rows = sqlx::query("SELECT payload FROM outbox WHERE payment_id = $1 ORDER BY seq")
                    .bind(payment_id)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| from_stored(r.try_get::<&[u8], _>("payload")?))
                    .collect()
            }

            async fn unpublished_events(&self, limit: i64) -> Result<Vec<OutboxRecord>, StoreError> {
                let rows = sqlx::query(Self::UNPUBLISHED)
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(OutboxRecord {
                            seq: r.try_get("seq")?,
                            payment_id: r.try_get("payment_id")?,
                            topic: r.try_get("topic")?,
                            payload: packed::unpack(r.try_get("payload")?)?.into_owned(),
                            version: r.try_get("version")?,
                        })
                    })
                    .collect()
            }

            async fn mark_published(&self, seqs: &[i64]) -> Result<(), StoreError> {
                self.mark_published_queued(seqs).await
            }

            async fn held_back_events(&self) -> Result<Option<HeldBack>, StoreError> {
                Self::held_back(&self.read).await
            }

            async fn acquire_lease(&self, name: &str, owner: &str, ttl: chrono::Duration) -> Result<bool, StoreError> {
                let now = time::now();
                let until = now + ttl;
                let taken = sqlx::query(
                    "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                     WHERE leases.owner = excluded.owner OR leases.expires_at < $4",
                )
                .bind(name)
                .bind(owner)
                .bind(until)
                .bind(now)
                .execute(&self.write)
                .await?;
                Ok(taken.rows_affected() == 1)
            }

            async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
                let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.read).await?;
                row.as_ref().map(Self::row_to_account).transpose()
            }

            async fn payment_with_code(
                &self,
                codes: &PaymentCodes,
            ) -> Result<Option<(&'static str, Uuid)>, StoreError> {
                for (kind, field, code) in codes.entries() {
                    let holder: Option<Uuid> = sqlx::query_scalar(
                        "SELECT payment_id FROM payment_codes WHERE kind = $1 AND code = $2",
                    )
                    .bind(kind)
                    .bind(code)
                    .fetch_optional(&self.read)
                    .await?;
                    if let Some(holder) = holder {
                        return Ok(Some((field, holder)));
                    }
                }
                Ok(None)
            }

            async fn deposit(&self, deposit: &DepositRequest) -> Result<Deposited, StoreError> {
                let key = format!("deposit:{}:{}", deposit.scope, deposit.key);
                // A concurrent deposit with this key committed first (its journal entry
                // is unique): the second look answers this one as its replay.
                for _ in 0..2 {
                    match self.deposit_once(&key, deposit).await {
                        Ok(Some(done)) => return Ok(done),
                        Ok(None) => {}
                        Err(e) if is_unique_violation(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                match self.deposit_once(&key, deposit).await? {
                    Some(done) => Ok(done),
                    None => Err(StoreError::Unexpected(anyhow::anyhow!(
                        "deposit key {key} raced three times"
                    ))),
                }
            }

            async fn ensure_account(&self, account: &Account) -> Result<(), StoreError> {
                let now = time::now();
                let mut tx = self.write.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO accounts (id, owner_id, tenant_id, currency, balance_cents, held_cents, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6) ON CONFLICT DO NOTHING",
                )
                .bind(account.id)
                .bind(account.owner_id)
                .bind(account.tenant_id)
                .bind(&account.currency)
                .bind(account.balance_cents)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 1 && account.balance_cents > 0 {
                    // A new account's money is journalled like any other: its opening credit.
                    let key = format!("opening:{}", account.id);
                    Self::journal(&mut tx, NewEntry {
                        account_id: account.id,
                        key: &key,
                        payment_id: None,
                        kind: EntryKind::Credit,
                        amount_cents: account.balance_cents,
                        balance_after_cents: account.balance_cents,
                        held_after_cents: 0,
                        reason: Some("opening balance"),
                        at: now,
                    }).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn movements(
                &self,
                account_id: Uuid,
                before: Option<i64>,
                limit: i64,
            ) -> Result<Vec<LedgerEntry>, StoreError> {
                let sql = format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE account_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(account_id)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let kind: &str = row.try_get("kind")?;
                        Ok(LedgerEntry {
                            seq: row.try_get("seq")?,
                            account_id: row.try_get("account_id")?,
                            payment_id: row.try_get("payment_id")?,
                            kind: kind
                                .parse()
                                .map_err(|e: String| StoreError::Unexpected(anyhow::anyhow!(e)))?,
                            amount_cents: row.try_get("amount_cents")?,
                            balance_after_cents: row.try_get("balance_after_cents")?,
                            held_after_cents: row.try_get("held_after_cents")?,
                            reason: row.try_get("reason")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn stale_holds(&self) -> Result<Vec<StaleHold>, StoreError> {
                let rows = sqlx::query(
                    "SELECT h.payment_id, h.account_id, h.amount_cents, p.status FROM holds h \
                     JOIN payments p ON p.id = h.payment_id \
                     WHERE h.status = $1 AND p.status NOT IN ($2, $3, $4) ORDER BY h.payment_id",
                )
                .bind(HOLD_STATUS_HELD)
                .bind(PaymentStatus::OPEN[0].as_str())
                .bind(PaymentStatus::OPEN[1].as_str())
                .bind(PaymentStatus::OPEN[2].as_str())
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(StaleHold {
                            payment_id: row.try_get("payment_id")?,
                            account_id: row.try_get("account_id")?,
                            amount_cents: row.try_get("amount_cents")?,
                            status: row.try_get("status")?,
                        })
                    })
                    .collect()
            }

            async fn ledger_mismatches(&self) -> Result<Vec<LedgerMismatch>, StoreError> {
                let rows = sqlx::query(LEDGER_MISMATCHES).fetch_all(&self.read).await?;
                rows.iter()
                    .map(|row| {
                        Ok(LedgerMismatch {
                            account_id: row.try_get("id")?,
                            balance_cents: row.try_get("balance_cents")?,
                            held_cents: row.try_get("held_cents")?,
                            journal_balance_cents: row.try_get("journal_balance")?,
                            journal_held_cents: row.try_get("journal_held")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

/// Whether a write failed on a unique constraint (another transaction wrote the same
/// key first).
fn is_unique_violation(e: &StoreError) -> bool {
    match e {
        StoreError::Unexpected(e) | StoreError::Unavailable(e) => e
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .is_some_and(|db| db.is_unique_violation()),
        StoreError::Conflict(_) => false,
    }
}

/// Accounts whose row is not what their journal adds up to: balance = credits −
/// captures, held = holds − captures − releases. One pass over the journal, grouped.
const LEDGER_MISMATCHES: &str = "\
    SELECT a.id, a.balance_cents, a.held_cents, \
           COALESCE(j.balance, 0) AS journal_balance, COALESCE(j.held, 0) AS journal_held \
    FROM accounts a LEFT JOIN ( \
        SELECT account_id, \
               CAST(SUM(CASE kind WHEN 'credit' THEN amount_cents WHEN 'capture' THEN -amount_cents ELSE 0 END) AS BIGINT) AS balance, \
               CAST(SUM(CASE kind WHEN 'hold' THEN amount_cents WHEN 'credit' THEN 0 ELSE -amount_cents END) AS BIGINT) AS held \
        FROM ledger_entries GROUP BY account_id) j ON j.account_id = a.id \
    WHERE a.balance_cents <> COALESCE(j.balance, 0) OR a.held_cents <> COALESCE(j.held, 0) \
    ORDER BY a.id";

sql_store!(PgStore, sqlx::Postgres, "postgres");
sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");

/// Writes waiting for the group commit, at most.
const GROUP_COMMIT_QUEUE: usize = 1024;
/// Groups committing at once on PostgreSQL: while one waits for its commit to be flushed,
/// the next one runs. More committers made smaller groups, and more statements for the
/// same writes (measured on 2 cores: 4 committers 4 070–6 030 creates/s, 2 committers
/// 5 020–5 910, 1 committer 4 950–6 530). SQLite has one.
const PG_GROUP_WRITERS: usize = 2;
/// Writes committed in one transaction, at most.
const GROUP_COMMIT_MAX: usize = 256;

/// Rows per multi-row INSERT (14 parameters each, well under SQLite's limit).
const MULTI_ROW_MAX: usize = 128;

/// An outbox event to write.
#[derive(Clone, Copy)]
struct EventRow<'a> {
    /// The payment as written.
    payment: &'a Payment,
    at: DateTime<Utc>,
    /// The payment's version written.
    version: i64,
    /// Where the payment is among the creates or the updates it comes from.
    index: usize,
}

impl EventRow<'_> {
    /// A new event's id and JSON, from the text of the payment's document when the
    /// caller has it.
    fn text(&self, document: Option<&str>) -> Result<(Uuid, String), StoreError> {
        let owned;
        let document = match document {
            Some(document) => document,
            None => {
                owned = json_text(self.payment)?;
                &owned
            }
        };
        PaymentEvent::text_from(document, self.at).map_err(|e| StoreError::Unexpected(e.into()))
    }
}

/// The creation events of new payments, at version 1.
fn creation_events<'a>(news: &[&'a NewPayment]) -> Vec<EventRow<'a>> {
    news.iter()
        .enumerate()
        .map(|(index, new)| EventRow {
            payment: &new.payment,
            at: new.payment.created_at,
            version: 1,
            index,
        })
        .collect()
}

/// The events of the plain updates that change what an event shows, of those `updated`
/// (all when `None`).
fn update_events<'a>(
    updates: &[(i64, &'a Change)],
    updated: Option<&std::collections::HashSet<Uuid>>,
) -> Vec<EventRow<'a>> {
    updates
        .iter()
        .enumerate()
        .filter(|(_, (_, change))| {
            change.emit_event && updated.is_none_or(|ids| ids.contains(&change.payment.id))
        })
        .map(|(index, (version, change))| EventRow {
            payment: &change.payment,
            at: change.payment.updated_at,
            version: version + 1,
            index,
        })
        .collect()
}

/// A create with nothing to undo when refused: no idempotency key, remote_id, hold or
/// codes (an adopted payment's iuv).
fn is_plain(new: &NewPayment) -> bool {
    new.idempotency.is_none()
        && new.payment.remote_id.is_none()
        && new.hold.is_none()
        && PaymentCodes::of(&new.payment).entries().is_empty()
}

/// A write for the group commit, with where its answer goes.
enum Job {
    Create(NewPayment, oneshot::Sender<Result<Created, StoreError>>),
    Update(
        i64,
        Change,
        oneshot::Sender<Result<StoredPayment, StoreError>>,
    ),
    MarkPublished(Vec<i64>, oneshot::Sender<Result<(), StoreError>>),
}

impl Job {
    /// Whether it writes only rows of its own payment (or outbox marks): no wallet
    /// account, idempotency key or remote_id shared with other writes.
    fn is_plain(&self) -> bool {
        match self {
            Job::Create(new, _) => is_plain(new),
            Job::Update(_, change, _) => change.is_plain(),
            Job::MarkPublished(..) => true,
        }
    }
}

/// What a job did inside a group transaction (sent only once that commits).
enum Done {
    Created(Created),
    Updated(Result<StoredPayment, StoreError>),
    Marked,
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("the store's writer stopped"))
}

impl PgStore {
    /// The events after the relay's cursor, in (transaction, seq) order, of transactions
    /// older than every one still running: one that is still writing cannot commit an
    /// event behind what this returns (see migration `20261129000007`). A payment's events
    /// keep their order because each write of a payment starts after the one before it
    /// committed (the version check), so it gets a later transaction id: a path that
    /// wrote an event of a payment from a transaction begun before that payment's last
    /// commit would break this.
    const UNPUBLISHED: &'static str =
        "SELECT seq, payment_id, topic, payload, version FROM outbox \
         WHERE (txid, seq) > ((SELECT txid FROM outbox_cursor), (SELECT seq FROM outbox_cursor)) \
         AND txid < txid_snapshot_xmin(txid_current_snapshot()) \
         ORDER BY txid, seq LIMIT $1";

    /// Events past the cursor that `UNPUBLISHED` cannot offer yet: committed, but behind
    /// a transaction still open (their own transaction id is not below every running one).
    /// Counted up to `HELD_BACK_COUNTED` (they pile up for as long as the transaction
    /// stays open, and this runs again and again meanwhile); the oldest is among the
    /// first in (txid, seq) order.
    const HELD_BACK: &'static str = "SELECT count(*) AS events, min(created_at) AS oldest FROM (\
           SELECT created_at FROM outbox \
           WHERE (txid, seq) > ((SELECT txid FROM outbox_cursor), (SELECT seq FROM outbox_cursor)) \
           AND txid >= txid_snapshot_xmin(txid_current_snapshot()) \
           ORDER BY txid, seq LIMIT $1\
         ) AS held";

    /// The oldest transaction on the server that has written something and not ended: a
    /// session's or a prepared one. (Other users' query texts are hidden from a role that
    /// is not a superuser or `pg_read_all_stats`.)
    const OLDEST_WRITER: &'static str = "SELECT description FROM (\
           SELECT age(backend_xid) AS age, format('session pid %s (user %s, database %s, %s, \
             transaction open since %s): %s', pid, usename, datname, state, xact_start, \
             left(query, 200)) AS description \
           FROM pg_stat_activity WHERE backend_xid IS NOT NULL \
           UNION ALL \
           SELECT age(transaction), format('prepared transaction %L (user %s, database %s, \
             prepared at %s)', gid, owner, database, prepared) \
           FROM pg_prepared_xacts\
         ) AS writers ORDER BY age DESC LIMIT 1";

    async fn held_back(pool: &PgPool) -> Result<Option<HeldBack>, StoreError> {
        let row = sqlx::query(Self::HELD_BACK)
            .bind(HELD_BACK_COUNTED)
            .fetch_one(pool)
            .await?;
        let events: i64 = row.try_get("events")?;
        let oldest: Option<DateTime<Utc>> = row.try_get("oldest")?;
        let Some(oldest) = oldest.filter(|_| events > 0) else {
            return Ok(None);
        };
        let holder = sqlx::query_scalar(Self::OLDEST_WRITER)
            .fetch_optional(pool)
            .await?;
        Ok(Some(HeldBack {
            events,
            oldest,
            holder,
        }))
    }

    /// Moves the relay's cursor to the last of `seqs`, a prefix of what `UNPUBLISHED`
    /// returned, in its order (every event up to it is published), on `conn`.
    async fn mark_published_steps(
        conn: &mut sqlx::PgConnection,
        seqs: &[i64],
    ) -> Result<(), StoreError> {
        if let Some(last) = seqs.last() {
            sqlx::query(PG_ADVANCE_CURSOR)
                .bind(vec![*last])
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// A group of plain writes only: one statement, so one round trip and PostgreSQL's
    /// own implicit transaction (no BEGIN, no COMMIT). The ids updated.
    async fn write_plain_group(
        conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        Self::write_plain_in(conn, news, updates, marks).await
    }

    /// The plain creates' rows and events, the plain updates (each row only at its
    /// expected version) with the events of those written, and the outbox marks, as one
    /// statement of data-modifying CTEs over arrays. Its text does not depend on the
    /// group, so each connection prepares it once and PostgreSQL keeps one plan. A taken
    /// id fails it, and with it the group, which is then retried one by one. The ids
    /// updated (the others are conflicts).
    async fn write_plain_in(
        conn: &mut sqlx::PgConnection,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let payments: Vec<&Payment> = news.iter().map(|new| &new.payment).collect();
        let changed: Vec<&Payment> = updates.iter().map(|(_, c)| &c.payment).collect();
        // Each document is serialized once, for its row and its event.
        let new_documents = texts(payments.iter().copied())?;
        let changed_documents = texts(changed.iter().copied())?;
        // Every candidate event: the creates', then those of the updates that publish one
        // (written only where the update was).
        let mut events = EventColumns::default();
        for event in creation_events(news) {
            events.push(&event, &new_documents[event.index], false)?;
        }
        for event in update_events(updates, None) {
            events.push(&event, &changed_documents[event.index], true)?;
        }
        // The last event of each mark: the cursor moves to the furthest.
        let ends: Vec<i64> = marks
            .iter()
            .filter_map(|seqs| seqs.last().copied())
            .collect();
        // The update cannot see a row the same statement inserts: it would count as a
        // conflict. A payment's first update follows its create's answer, which comes
        // only once the create's group has committed.
        debug_assert!(changed
            .iter()
            .all(|p| payments.iter().all(|new| new.id != p.id)));
        let rows = sqlx::query(PG_PLAIN_GROUP)
            .bind(payments.iter().map(|p| p.id).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.tenant_id).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.service_id).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.user_id).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>())
            .bind(
                payments
                    .iter()
                    .map(|p| p.status.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(payments.iter().map(|p| p.created_at).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.updated_at).collect::<Vec<_>>())
            .bind(news.iter().map(|n| n.next_check_at).collect::<Vec<_>>())
            .bind(packs(&new_documents))
            .bind(texts(news.iter().map(|n| &n.saga))?)
            .bind(
                payments
                    .iter()
                    .map(|p| p.notify_pending())
                    .collect::<Vec<_>>(),
            )
            .bind(changed.iter().map(|p| p.id).collect::<Vec<_>>())
            .bind(updates.iter().map(|(v, _)| *v).collect::<Vec<_>>())
            .bind(
                changed
                    .iter()
                    .map(|p| p.status.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(changed.iter().map(|p| p.updated_at).collect::<Vec<_>>())
            .bind(
                updates
                    .iter()
                    .map(|(_, c)| c.next_check_at)
                    .collect::<Vec<_>>(),
            )
            .bind(packs(&changed_documents))
            .bind(texts(updates.iter().map(|(_, c)| &c.saga))?)
            .bind(
                changed
                    .iter()
                    .map(|p| p.notify_pending())
                    .collect::<Vec<_>>(),
            )
            .bind(events.ids)
            .bind(events.payment_ids)
            .bind(events.payloads)
            .bind(events.ats)
            .bind(events.versions)
            .bind(events.of_update)
            .bind(ends)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from))
            .collect()
    }
}

/// The candidate events of `PG_PLAIN_GROUP`, a column each.
#[derive(Default)]
struct EventColumns {
    ids: Vec<Uuid>,
    payment_ids: Vec<Uuid>,
    payloads: Vec<Vec<u8>>,
    ats: Vec<DateTime<Utc>>,
    versions: Vec<i64>,
    /// Written only where its update was.
    of_update: Vec<bool>,
}

impl EventColumns {
    fn push(
        &mut self,
        event: &EventRow<'_>,
        document: &str,
        of_update: bool,
    ) -> Result<(), StoreError> {
        let (id, payload) = event.text(Some(document))?;
        self.ids.push(id);
        self.payment_ids.push(event.payment.id);
        self.payloads.push(packed::pack(&payload));
        self.ats.push(event.at);
        self.versions.push(event.version);
        self.of_update.push(of_update);
        Ok(())
    }
}

/// The statement that moves the relay's cursor to the furthest of the events whose seqs
/// are the array parameter `$seqs`, never back. The events are found by their key first
/// (`OFFSET 0` keeps the planner from folding that into the ordering: a generic plan made
/// while the outbox was empty walked the whole (txid, seq) index backwards instead).
macro_rules! advance_cursor {
    ($seqs:literal) => {
        concat!(
            "UPDATE outbox_cursor SET txid = o.txid, seq = o.seq \
             FROM (SELECT txid, seq FROM (SELECT txid, seq FROM outbox WHERE seq = ANY(",
            $seqs,
            "::int8[]) AND txid IS NOT NULL OFFSET 0) AS marked \
             ORDER BY txid DESC, seq DESC LIMIT 1) AS o \
             WHERE outbox_cursor.id AND (o.txid, o.seq) > (outbox_cursor.txid, outbox_cursor.seq)"
        )
    };
}

/// `PgStore::write_plain_in`'s statement. The same columns as `push_payment_rows`,
/// `push_updates` and `push_events`, as arrays, and the relay's cursor moved as
/// `PG_ADVANCE_CURSOR` does.
const PG_PLAIN_GROUP: &str = concat!(
    "\
WITH created AS (\
  INSERT INTO payments (id, tenant_id, service_id, user_id, payment_type, status, created_at, \
    updated_at, next_check_at, version, document, saga, notify_pending) \
  SELECT n.id, n.tenant_id, n.service_id, n.user_id, n.payment_type, n.status, n.created_at, \
    n.updated_at, n.next_check_at, 1, n.document, n.saga, n.notify_pending \
  FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], \
    $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::bytea[], $11::text[], $12::bool[]) \
    AS n (id, tenant_id, service_id, user_id, payment_type, status, created_at, updated_at, \
    next_check_at, document, saga, notify_pending)\
), changed AS (\
  UPDATE payments SET status = v.status, updated_at = v.updated_at, \
    next_check_at = v.next_check_at, version = payments.version + 1, document = v.document, \
    saga = v.saga, notify_pending = v.notify_pending \
  FROM UNNEST($13::uuid[], $14::int8[], $15::text[], $16::timestamptz[], $17::timestamptz[], \
    $18::bytea[], $19::text[], $20::bool[]) \
    AS v (id, expected, status, updated_at, next_check_at, document, saga, notify_pending) \
  WHERE payments.id = v.id AND payments.version = v.expected \
  RETURNING payments.id\
), events AS (\
  INSERT INTO outbox (event_id, payment_id, topic, payload, created_at, version) \
  SELECT e.event_id, e.payment_id, 'payments', e.payload, e.created_at, e.version \
  FROM UNNEST($21::uuid[], $22::uuid[], $23::bytea[], $24::timestamptz[], $25::int8[], $26::bool[]) \
    AS e (event_id, payment_id, payload, created_at, version, of_update) \
  WHERE NOT e.of_update OR e.payment_id IN (SELECT id FROM changed)\
), marked AS (",
    advance_cursor!("$27"),
    ") SELECT id FROM changed"
);

/// Moves the relay's cursor forward to the furthest of the events `$1` (never back: a
/// relay that lost its lease may still mark what it published).
const PG_ADVANCE_CURSOR: &str = advance_cursor!("$1");

/// The JSON texts of a SQLite group's documents, each serialized once for its row and its
/// event.
struct Documents {
    /// The creates', in order.
    new: Vec<String>,
    /// The updates', in order.
    changed: Vec<String>,
}

impl Documents {
    fn of(news: &[&NewPayment], updates: &[(i64, &Change)]) -> Result<Self, StoreError> {
        Ok(Documents {
            new: texts(news.iter().map(|new| &new.payment))?,
            changed: texts(updates.iter().map(|(_, change)| &change.payment))?,
        })
    }
}

impl SqliteStore {
    /// One writer commits in order: nothing is ever held back.
    async fn held_back(_pool: &SqlitePool) -> Result<Option<HeldBack>, StoreError> {
        Ok(None)
    }

    /// The oldest events not marked published, in order.
    const UNPUBLISHED: &'static str =
        "SELECT seq, payment_id, topic, payload, version FROM outbox \
         WHERE published_at IS NULL ORDER BY seq LIMIT $1";

    /// Marks outbox events published, on `conn`.
    async fn mark_published_steps(
        conn: &mut sqlx::SqliteConnection,
        seqs: &[i64],
    ) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new("");
        Self::push_marks(&mut qb, time::now(), seqs);
        qb.build().execute(&mut *conn).await?;
        Ok(())
    }

    /// `UPDATE outbox SET published_at = … WHERE seq IN (…)`.
    fn push_marks(qb: &mut QueryBuilder<'_, sqlx::Sqlite>, at: DateTime<Utc>, seqs: &[i64]) {
        qb.push("UPDATE outbox SET published_at = ")
            .push_bind(at)
            .push(" WHERE seq IN (");
        let mut list = qb.separated(", ");
        for seq in seqs {
            list.push_bind(*seq);
        }
        list.push_unseparated(")");
    }

    /// `INSERT INTO payments … VALUES …` of new payments (at version 1).
    fn push_new_payments<'a>(
        qb: &mut QueryBuilder<'a, sqlx::Sqlite>,
        news: &[&'a NewPayment],
        documents: &[String],
    ) {
        let rows = news
            .iter()
            .zip(documents)
            .map(|(new, document)| {
                let document = packed::pack(document);
                (&new.payment, &new.saga, new.next_check_at, document)
            })
            .collect();
        Self::push_payment_rows(qb, rows);
    }

    /// A multi-row `UPDATE … FROM (VALUES …) RETURNING id`: each payment only at
    /// its expected version; the ids not returned are conflicts.
    fn push_updates<'a>(
        qb: &mut QueryBuilder<'a, sqlx::Sqlite>,
        updates: &[(i64, &'a Change)],
        documents: &[String],
    ) {
        qb.push(
            "WITH v (id, expected, status, updated_at, next_check_at, document, saga, notify_pending) AS (",
        );
        qb.push_values(
            updates.iter().zip(documents),
            |mut row, ((version, change), document)| {
                let payment = &change.payment;
                row.push_bind(payment.id)
                    .push_bind(*version)
                    .push_bind(payment.status.as_str())
                    .push_bind(payment.updated_at)
                    .push_bind(change.next_check_at)
                    .push_bind(packed::pack(document))
                    .push_bind(JsonText(&change.saga))
                    .push_bind(payment.notify_pending());
            },
        );
        qb.push(
            ") UPDATE payments SET status = v.status, updated_at = v.updated_at, \
             next_check_at = v.next_check_at, version = payments.version + 1, document = v.document, \
             saga = v.saga, notify_pending = v.notify_pending \
             FROM v WHERE payments.id = v.id AND payments.version = v.expected RETURNING payments.id",
        );
    }

    /// A group of plain writes only, in two round trips to the connection's thread: BEGIN
    /// rides with the first batch, COMMIT with the second. sqlx does not see this
    /// transaction, so a failure rolls it back here, and a connection that cannot be
    /// rolled back is closed rather than reused. The ids updated.
    async fn write_plain_group(
        conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let documents = Documents::of(news, updates)?;
        let written = async {
            let updated = Self::plain_batch(conn, "BEGIN; ", news, updates, &documents).await?;
            let events = update_events(updates, Some(&updated));
            Self::events_and_marks_batch(conn, &events, &documents.changed, marks, "COMMIT; ")
                .await?;
            Ok::<_, StoreError>(updated)
        }
        .await;
        if written.is_err() && sqlx::query("ROLLBACK").execute(&mut **conn).await.is_err() {
            // No transaction left to roll back, or a connection in a state we cannot
            // tell: a fresh one is opened for the next group.
            conn.close_on_drop();
        }
        written
    }

    /// The plain writes with their events, and the marks, inside a transaction sqlx
    /// manages (a group with other jobs). The ids updated.
    async fn write_plain_in(
        conn: &mut sqlx::SqliteConnection,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let documents = Documents::of(news, updates)?;
        let updated = if news.is_empty() && updates.is_empty() {
            Default::default()
        } else {
            Self::plain_batch(conn, "", news, updates, &documents).await?
        };
        let events = update_events(updates, Some(&updated));
        if !events.is_empty() || !marks.is_empty() {
            Self::events_and_marks_batch(conn, &events, &documents.changed, marks, "").await?;
        }
        Ok(updated)
    }

    /// One batch of statements (one round trip to the connection's thread), after
    /// `prefix`: the plain creates' rows and events (a taken id fails the batch, and with
    /// it the group, which is then retried one by one), then the plain updates, each row
    /// only at its expected version. The ids updated (the others are conflicts).
    async fn plain_batch(
        conn: &mut sqlx::SqliteConnection,
        prefix: &str,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        documents: &Documents,
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new(prefix);
        for (chunk, texts) in news
            .chunks(MULTI_ROW_MAX)
            .zip(documents.new.chunks(MULTI_ROW_MAX))
        {
            Self::push_new_payments(&mut qb, chunk, texts);
            qb.push("; ");
            Self::push_events(&mut qb, &creation_events(chunk), texts)?;
            qb.push("; ");
        }
        for (chunk, texts) in updates
            .chunks(MULTI_ROW_MAX)
            .zip(documents.changed.chunks(MULTI_ROW_MAX))
        {
            Self::push_updates(&mut qb, chunk, texts);
            qb.push("; ");
        }
        // Only the updates return rows. Not kept prepared: nearly every group's text
        // differs, and it would push the connection's reusable statements out.
        let rows = qb.build().persistent(false).fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// One batch of statements: the updates' outbox events (their documents' texts in
    /// `documents`, by the update's index) and outbox marks, then `suffix`.
    async fn events_and_marks_batch(
        conn: &mut sqlx::SqliteConnection,
        events: &[EventRow<'_>],
        documents: &[String],
        marks: &[&[i64]],
        suffix: &str,
    ) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new("");
        for chunk in events.chunks(MULTI_ROW_MAX) {
            Self::push_events(&mut qb, chunk, documents)?;
            qb.push("; ");
        }
        let now = time::now();
        for seqs in marks {
            Self::push_marks(&mut qb, now, seqs);
            qb.push("; ");
        }
        qb.push(suffix);
        qb.build().persistent(false).execute(&mut *conn).await?;
        Ok(())
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints the WAL on a connection of its own, in the background, while the store
/// is in use (`PASSIVE`: never waits for the writer or readers; what they still use is
/// copied next time). Ends with the store (its last handle dropped).
async fn checkpoints(pool: SqlitePool, store: mpsc::WeakSender<Job>) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if store.upgrade().is_none() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed; retried later");
        }
    }
    pool.close().await;
}

/// A database the group commit writes to.
#[async_trait]
trait GroupWriter: Send + Sync + 'static {
    /// Runs the jobs in one transaction; the answers once it committed.
    async fn try_group(&mut self, jobs: &[Job]) -> Result<Vec<Done>, StoreError>;
    /// Runs one job in a transaction of its own and answers it.
    async fn run_alone(&self, job: Job);
    /// Whether a job must not join a group (it then runs alone, before it).
    fn keeps_apart(&self, _job: &Job) -> bool {
        false
    }
}

#[async_trait]
impl GroupWriter for SqlitePool {
    /// A failed group's connection is closed: SQLite may have rolled its transaction
    /// back already, and sqlx would then count it as still open (its ROLLBACK fails) and
    /// open the next one as a savepoint inside it.
    async fn try_group(&mut self, jobs: &[Job]) -> Result<Vec<Done>, StoreError> {
        let mut conn = self.acquire().await?;
        let result = SqliteStore::try_group(&mut conn, jobs).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }
    async fn run_alone(&self, job: Job) {
        SqliteStore::run_alone(self, job).await
    }
}

/// A PostgreSQL committer keeps its connection from one group to the next: drawing it
/// from the pool for each group would cost the ping sqlx sends when a connection goes
/// back (a round trip), and a wait for it. A group that fails drops it: the next one
/// opens a fresh connection.
struct PgCommitter {
    pool: PgPool,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    /// When the kept connection last answered.
    used: std::time::Instant,
}

/// A kept connection idle for longer goes back to the pool (which pings it) before the
/// next group: one a firewall or the server dropped while idle is then found out by the
/// ping instead of failing, or hanging, a group.
const PG_KEPT_IDLE_MAX: Duration = Duration::from_secs(60);

#[async_trait]
impl GroupWriter for PgCommitter {
    async fn try_group(&mut self, jobs: &[Job]) -> Result<Vec<Done>, StoreError> {
        if self.used.elapsed() > PG_KEPT_IDLE_MAX {
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.pool.acquire().await?),
        };
        let result = PgStore::try_group(conn, jobs).await;
        self.used = std::time::Instant::now();
        if result.is_err() {
            if let Some(mut conn) = self.conn.take() {
                conn.close_on_drop();
            }
        }
        result
    }
    async fn run_alone(&self, job: Job) {
        PgStore::run_alone(&self.pool, job).await
    }
    /// With several committers, a group holding locks beyond its own payments (a wallet
    /// account, an idempotency key, a remote_id) could deadlock with another group, or
    /// keep a busy account locked for a whole group: those writes run alone.
    fn keeps_apart(&self, job: &Job) -> bool {
        !job.is_plain()
    }
}

/// Starts the PostgreSQL committers on a thread of their own, with a pool opened there:
/// a group's statement is built, sent and answered without waiting behind the registry,
/// the relay and the Kafka consumer on the system thread (measured with the kept
/// connections: a p99 create latency 1 to 2 ms lower). The thread ends when every store
/// handle is dropped.
async fn spawn_pg_committers(url: String) -> anyhow::Result<mpsc::Sender<Job>> {
    let (writer, jobs) = mpsc::channel(GROUP_COMMIT_QUEUE);
    let (ready, connected) = oneshot::channel::<anyhow::Result<()>>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the committers' runtime")?;
    std::thread::Builder::new()
        .name("cassa-pg-commit".into())
        .spawn(move || {
            runtime.block_on(async move {
                // Each committer keeps a connection and may need a second one at the
                // same time, for the writes of a failed group it retries one by one.
                let pool = match PgStore::write_pool()
                    .max_connections(2 * PG_GROUP_WRITERS as u32)
                    .connect(&url)
                    .await
                {
                    Ok(pool) => pool,
                    Err(e) => {
                        let _ = ready.send(Err(
                            anyhow::Error::new(e).context("cannot connect to PostgreSQL")
                        ));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
                let committers: Vec<_> = (0..PG_GROUP_WRITERS)
                    .map(|_| {
                        let committer = PgCommitter {
                            pool: pool.clone(),
                            conn: None,
                            used: std::time::Instant::now(),
                        };
                        tokio::spawn(group_commit(committer, jobs.clone()))
                    })
                    .collect();
                for committer in committers {
                    let _ = committer.await;
                }
                pool.close().await;
            })
        })
        .context("cannot start the committers' thread")?;
    connected
        .await
        .context("the committers' thread ended before connecting")??;
    Ok(writer)
}

/// Group commit: takes every write waiting, commits them in one transaction (each
/// still atomic with its outbox event), answers each. While a group commits the next
/// one gathers, so a lone write waits for nothing extra. When a group fails, its jobs
/// are retried one transaction each, so one bad write cannot fail the others. Runs
/// until every store handle is dropped.
///
/// SQLite has one writer anyway: this spares it a transaction per write. PostgreSQL has
/// many, but each transaction there costs round trips, a commit record and server work
/// per statement that a group shares.
async fn group_commit(
    mut pool: impl GroupWriter,
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
) {
    let mut group = Vec::with_capacity(GROUP_COMMIT_MAX);
    // Several committers may share the queue: one takes what waits, lets go, commits.
    while jobs
        .lock()
        .await
        .recv_many(&mut group, GROUP_COMMIT_MAX)
        .await
        > 0
    {
        let (apart, taken): (Vec<Job>, Vec<Job>) = std::mem::take(&mut group)
            .into_iter()
            .partition(|job| pool.keeps_apart(job));
        for job in apart {
            pool.run_alone(job).await;
        }
        if taken.is_empty() {
            continue;
        }
        match pool.try_group(&taken).await {
            Ok(done) => {
                for (job, done) in taken.into_iter().zip(done) {
                    match (job, done) {
                        (Job::Create(_, reply), Done::Created(created)) => {
                            let _ = reply.send(Ok(created));
                        }
                        (Job::Update(_, _, reply), Done::Updated(result)) => {
                            let _ = reply.send(result);
                        }
                        (Job::MarkPublished(_, reply), Done::Marked) => {
                            let _ = reply.send(Ok(()));
                        }
                        // `try_group` answers each job with its own kind.
                        (job, _) => pool.run_alone(job).await,
                    }
                }
            }
            Err(e) => {
                if taken.len() > 1 {
                    tracing::warn!(error = %e, writes = taken.len(), "group commit failed; committing its writes one by one");
                }
                for job in taken {
                    pool.run_alone(job).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ConfigStore;

    /// The writer leaves checkpoints to the background connection: what is written
    /// reaches the database file without any commit doing it.
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tokio::time::sleep(CHECKPOINT_EVERY * 2).await;
        let before = size();
        let now = time::now();
        for i in 0..300 {
            let tenant = Tenant {
                id: Uuid::new_v4(),
                name: format!("Comune {i} {}", "x".repeat(200)),
                tax_identification_number: "80016350821".into(),
                active: true,
                allowed_hosts: Vec::new(),
                created_at: now,
                updated_at: now,
                version: 0,
            };
            assert!(store.insert_tenant(&tenant).await.unwrap());
        }
        let started = std::time::Instant::now();
        while size() <= before {
            assert!(
                started.elapsed() < CHECKPOINT_EVERY * 20,
                "the database file never grew: no checkpoint"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A payment for the demo tenant: PAGOPA, or WALLET charging the demo account.
    fn demo_payment(wallet: bool) -> Payment {
        use crate::seed::*;
        let id = Uuid::new_v4();
        let now = time::format(&time::now());
        let (kind, account, user) = if wallet {
            ("WALLET", serde_json::json!(DEMO_ACCOUNT), DEMO_CITIZEN)
        } else {
            ("PAGOPA", serde_json::Value::Null, Uuid::new_v4())
        };
        let json = serde_json::json!({
            "id": id, "user_id": user, "type": kind, "tenant_id": DEMO_TENANT,
            "service_id": DEMO_SERVICE, "remote_id": null, "reason": "TARI 2026 rata 1",
            "status": "CREATION_PENDING", "created_at": now, "updated_at": now,
            "payment": {"amount": "12.00", "currency": "EUR", "expire_at": null, "split": [],
                        "iud": Payment::iud_for(id)},
            "payer": {"type": "human", "tax_identification_number": "RSSMRA80A01H501U",
                      "name": "Mario", "family_name": "Rossi", "email": null},
            "links": {}, "wallet_account_id": account
        });
        match serde_json::from_value(json) {
            Ok(payment) => payment,
            Err(e) => panic!("demo payment: {e}"),
        }
    }

    /// A SQLite store in a temporary directory (kept while the first is alive), seeded
    /// with the demo tenant, service and wallet.
    async fn demo_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        crate::seed::demo(&store, "http://127.0.0.1:9/sim")
            .await
            .unwrap();
        (dir, store)
    }

    fn new_payment(payment: Payment, hold: Option<HoldRequest>) -> NewPayment {
        NewPayment {
            next_check_at: Some(payment.created_at),
            payment,
            saga: Default::default(),
            idempotency: None,
            hold,
        }
    }

    async fn created(store: &SqliteStore, new: NewPayment) -> StoredPayment {
        match store.create_payment(new).await.unwrap() {
            Created::New(row) => row,
            other => panic!("expected New, got {other:?}"),
        }
    }

    fn with_status(row: &StoredPayment, status: PaymentStatus) -> Change {
        let mut payment = row.payment.clone();
        payment.status = status;
        Change::of(row, payment, row.saga.clone())
    }

    /// Marks the connection (a temporary table lives and dies with it) and has SQLite
    /// roll back, by itself, any transaction that writes an event.
    async fn mark_and_refuse(conn: &mut sqlx::SqliteConnection) {
        for sql in [
            "CREATE TEMP TABLE this_connection (x)",
            "CREATE TRIGGER refuse BEFORE INSERT ON outbox \
             BEGIN SELECT RAISE(ROLLBACK, 'refused by a trigger'); END",
        ] {
            sqlx::query(sql).execute(&mut *conn).await.unwrap();
        }
    }

    /// Whether this is the connection `mark_and_refuse` marked.
    async fn is_marked(conn: &mut sqlx::SqliteConnection) -> bool {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'this_connection'",
        )
        .fetch_one(conn)
        .await
        .unwrap()
            > 0
    }

    /// A group SQLite rolled back by itself (here a trigger's `RAISE(ROLLBACK)`) leaves
    /// no transaction to roll back: nothing of it is written, and its connection is
    /// closed rather than reused in a state nobody can tell; the next group gets a fresh
    /// connection and is written.
    #[tokio::test]
    async fn a_group_whose_transaction_is_gone_closes_its_connection_on_sqlite() {
        let (_dir, store) = demo_store().await;
        let mut conn = store.write.acquire().await.unwrap();
        mark_and_refuse(&mut conn).await;
        let refused = new_payment(demo_payment(false), None);
        let written = SqliteStore::write_plain_group(&mut conn, &[&refused], &[], &[]).await;
        let error = written.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("refused by a trigger"), "{error}");
        drop(conn);
        assert!(store.payment(refused.payment.id).await.unwrap().is_none());

        let mut conn = store.write.acquire().await.unwrap();
        assert!(!is_marked(&mut conn).await, "the connection was reused");
        sqlx::query("DROP TRIGGER refuse")
            .execute(&mut *conn)
            .await
            .unwrap();
        let accepted = new_payment(demo_payment(false), None);
        SqliteStore::write_plain_group(&mut conn, &[&accepted], &[], &[])
            .await
            .unwrap();
        drop(conn);
        assert!(store.payment(accepted.payment.id).await.unwrap().is_some());
    }

    /// The same through a group that is not only plain writes, in a transaction sqlx
    /// opened: its ROLLBACK fails too, and sqlx, still counting that transaction open,
    /// would open the next group's as a savepoint inside it.
    #[tokio::test]
    async fn a_mixed_group_whose_transaction_is_gone_closes_its_connection_on_sqlite() {
        let (_dir, store) = demo_store().await;
        let mut pool = store.write.clone();
        let mut conn = pool.acquire().await.unwrap();
        mark_and_refuse(&mut conn).await;
        drop(conn);
        // A wallet payment places a hold: not a plain write.
        let hold = HoldRequest {
            account_id: crate::seed::DEMO_ACCOUNT,
            amount_cents: 1200,
        };
        let refused = new_payment(demo_payment(true), Some(hold));
        let id = refused.payment.id;
        let (reply, _) = oneshot::channel();
        let jobs = [Job::Create(refused, reply)];
        let written = GroupWriter::try_group(&mut pool, &jobs).await;
        let error = written.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("refused by a trigger"), "{error}");
        assert!(store.payment(id).await.unwrap().is_none());
        let mut conn = pool.acquire().await.unwrap();
        assert!(!is_marked(&mut conn).await, "the connection was reused");
    }

    /// One group mixing every kind of write, built by hand (so it is one group whatever
    /// the timing): each is answered as if it ran alone and in order — a plain update
    /// of a payment after its hold was settled in the same group sees that write.
    #[tokio::test]
    async fn a_mixed_group_answers_each_write_in_order() {
        let (_dir, store) = demo_store().await;
        let hold = HoldRequest {
            account_id: crate::seed::DEMO_ACCOUNT,
            amount_cents: 1200,
        };
        let wallet = created(&store, new_payment(demo_payment(true), Some(hold))).await;
        let other = created(&store, new_payment(demo_payment(false), None)).await;
        let published = store.unpublished_events(10).await.unwrap();

        let mut capture = with_status(&wallet, PaymentStatus::Complete);
        capture.hold = Some(HoldAction::Capture);
        let after_capture = StoredPayment {
            payment: capture.payment.clone(),
            version: 2,
            saga: capture.saga.clone(),
            next_check_at: capture.next_check_at,
        };
        let mut bookkeeping = Change::of(
            &after_capture,
            after_capture.payment.clone(),
            Default::default(),
        );
        bookkeeping.next_check_at = None;
        let fresh = new_payment(demo_payment(false), None);
        let fresh_id = fresh.payment.id;
        let (a, _) = oneshot::channel();
        let (b, _) = oneshot::channel();
        let (c, _) = oneshot::channel();
        let (d, _) = oneshot::channel();
        let (e, _) = oneshot::channel();
        let jobs = vec![
            Job::Update(1, capture, a),
            Job::Update(2, bookkeeping, b),
            Job::Create(fresh, c),
            Job::Update(1, with_status(&other, PaymentStatus::PaymentPending), d),
            Job::MarkPublished(published.iter().map(|e| e.seq).collect(), e),
        ];
        let done = SqliteStore::try_group(&mut store.write.acquire().await.unwrap(), &jobs)
            .await
            .unwrap();
        let versions: Vec<Option<i64>> = done
            .iter()
            .map(|d| match d {
                Done::Updated(Ok(row)) => Some(row.version),
                Done::Created(Created::New(row)) => Some(row.version),
                Done::Marked => None,
                Done::Updated(Err(e)) => panic!("update refused: {e}"),
                Done::Created(other) => panic!("create answered {other:?}"),
            })
            .collect();
        assert_eq!(versions, [Some(2), Some(3), Some(1), Some(2), None]);

        let stored = store.payment(wallet.payment.id).await.unwrap().unwrap();
        assert_eq!((stored.version, stored.next_check_at), (3, None));
        let account = store
            .account(crate::seed::DEMO_ACCOUNT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (account.balance_cents, account.held_cents),
            (crate::seed::DEMO_BALANCE_CENTS - 1200, 0)
        );
        assert!(store.payment(fresh_id).await.unwrap().is_some());
        let unpublished = store.unpublished_events(10).await.unwrap();
        let mut left: Vec<(Uuid, Option<i64>)> = unpublished
            .iter()
            .map(|e| (e.payment_id, e.version))
            .collect();
        left.sort();
        let mut expected = vec![
            (wallet.payment.id, Some(2)),
            (other.payment.id, Some(2)),
            (fresh_id, Some(1)),
        ];
        expected.sort();
        assert_eq!(
            left, expected,
            "the marked events are gone, each write left one"
        );
    }
}
