//! Wallets: holds, captures, releases and credits, each journalled in the transaction
//! that moves the money.

use super::*;

pub(super) const HOLD_STATUS_HELD: &str = "HELD";
pub(super) const ACCOUNT_COLUMNS: &str =
    "id, owner_id, tenant_id, currency, balance_cents, held_cents";
pub(super) const ENTRY_COLUMNS: &str =
    "seq, account_id, payment_id, kind, amount_cents, balance_after_cents, \
                             held_after_cents, reason, created_at";

/// What crediting an account once per key did.
#[derive(Debug, PartialEq)]
pub(super) enum Credit {
    /// Credited: the account after.
    Made(Account),
    /// That key credited before; nothing more.
    AlreadyMade,
    NoAccount,
}

/// A journal entry to write, with the account's balance and held money after it.
pub(super) struct NewEntry<'a> {
    pub(super) account_id: Uuid,
    pub(super) key: &'a str,
    pub(super) payment_id: Option<Uuid>,
    pub(super) kind: EntryKind,
    pub(super) amount_cents: i64,
    pub(super) balance_after_cents: i64,
    pub(super) held_after_cents: i64,
    pub(super) reason: Option<&'a str>,
    pub(super) at: DateTime<Utc>,
}

/// The journal key of a payment's entry of `kind`: each payment holds, captures,
/// releases and is credited at most once.
pub(super) fn payment_entry_key(kind: EntryKind, payment_id: Uuid) -> String {
    format!("{}:{payment_id}", kind.as_str())
}

/// Whether a write failed on a unique constraint (another transaction wrote the same
/// key first).
pub(super) fn is_unique_violation(e: &StoreError) -> bool {
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
pub(super) const LEDGER_MISMATCHES: &str = "\
    SELECT a.id, a.balance_cents, a.held_cents, \
           COALESCE(j.balance, 0) AS journal_balance, COALESCE(j.held, 0) AS journal_held \
    FROM accounts a LEFT JOIN ( \
        SELECT account_id, \
               CAST(SUM(CASE kind WHEN 'credit' THEN amount_cents WHEN 'capture' THEN -amount_cents ELSE 0 END) AS BIGINT) AS balance, \
               CAST(SUM(CASE kind WHEN 'hold' THEN amount_cents WHEN 'credit' THEN 0 ELSE -amount_cents END) AS BIGINT) AS held \
        FROM ledger_entries GROUP BY account_id) j ON j.account_id = a.id \
    WHERE a.balance_cents <> COALESCE(j.balance, 0) OR a.held_cents <> COALESCE(j.held, 0) \
    ORDER BY a.id";

// The shared queries' sqlx bounds (see `Sql`).
impl<D: Dialect> Sql<D>
where
    for<'c> &'c mut D::Connection: sqlx::Executor<'c, Database = D>,
    for<'c> &'c sqlx::Pool<D>: sqlx::Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: sqlx::IntoArguments<'q, D>,
    for<'a> &'a str: sqlx::ColumnIndex<D::Row>,
    for<'q> Uuid: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<Uuid>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D>,
    for<'q> i64: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> bool: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<DateTime<Utc>>: sqlx::Encode<'q, D> + sqlx::Decode<'q, D>,
    for<'q> &'q str: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D>,
    for<'q> String: sqlx::Encode<'q, D> + sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'q> Option<String>: sqlx::Decode<'q, D>,
    for<'q> Vec<u8>: sqlx::Encode<'q, D> + sqlx::Type<D>,
    for<'q> &'q [u8]: sqlx::Decode<'q, D> + sqlx::Type<D>,
    for<'r> (Uuid,): sqlx::FromRow<'r, D::Row>,
{
    /// Places a hold; `Err(why)` when the account is unknown or short of money.
    pub(super) async fn place_hold(
        conn: &mut D::Connection,
        payment_id: Uuid,
        hold: HoldRequest,
        at: DateTime<Utc>,
    ) -> Result<Result<(), HoldRefused>, StoreError> {
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
                HoldRefused::InsufficientFunds
            } else {
                HoldRefused::UnknownAccount(hold.account_id)
            }));
        };
        let key = payment_entry_key(EntryKind::Hold, payment_id);
        Self::journal(
            &mut *conn,
            NewEntry {
                account_id: hold.account_id,
                key: &key,
                payment_id: Some(payment_id),
                kind: EntryKind::Hold,
                amount_cents: hold.amount_cents,
                balance_after_cents: after.try_get("balance_cents")?,
                held_after_cents: after.try_get("held_cents")?,
                reason: None,
                at,
            },
        )
        .await?;
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
    pub(super) async fn settle_hold(
        conn: &mut D::Connection,
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
            Self::journal(
                &mut *conn,
                NewEntry {
                    account_id,
                    key: &key,
                    payment_id: Some(payment_id),
                    kind,
                    amount_cents: amount,
                    balance_after_cents: after.try_get("balance_cents")?,
                    held_after_cents: after.try_get("held_cents")?,
                    reason: None,
                    at,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Writes a journal entry. Its key is unique: a second entry for the same
    /// thing fails the transaction rather than move money twice.
    pub(super) async fn journal(
        conn: &mut D::Connection,
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
    pub(super) async fn entry_by_key(
        conn: &mut D::Connection,
        key: &str,
    ) -> Result<Option<(i64, Option<String>, Uuid)>, StoreError> {
        let row = sqlx::query(
            "SELECT amount_cents, reason, account_id FROM ledger_entries WHERE entry_key = $1",
        )
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("amount_cents")?,
                r.try_get("reason")?,
                r.try_get("account_id")?,
            ))
        })
        .transpose()
    }

    /// Credits an account, once per `key`.
    pub(super) async fn credit(
        conn: &mut D::Connection,
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
        Self::journal(
            &mut *conn,
            NewEntry {
                account_id,
                key,
                payment_id,
                kind: EntryKind::Credit,
                amount_cents,
                balance_after_cents: account.balance_cents,
                held_after_cents: account.held_cents,
                reason,
                at,
            },
        )
        .await?;
        Ok(Credit::Made(account))
    }

    /// Credits a completed top-up's wallet with its amount, once (keyed by the
    /// payment): a later update of the COMPLETE payment credits nothing more.
    pub(super) async fn credit_top_up(
        conn: &mut D::Connection,
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
                "top-up {} credits unknown wallet account {account_id}",
                payment.id
            )));
        }
        Ok(())
    }

    /// A deposit in one transaction: the replay of the one its key made, or a new
    /// credit with its journal entry; `None` when a concurrent one with the key
    /// got there first.
    pub(super) async fn deposit_once(
        write: &sqlx::Pool<D>,
        read: &sqlx::Pool<D>,
        key: &str,
        deposit: &DepositRequest,
    ) -> Result<Option<Deposited>, StoreError> {
        let mut tx = write.begin().await?;
        if let Some((amount, reason, account_id)) = Self::entry_by_key(&mut tx, key).await? {
            tx.rollback().await?;
            let same = amount == deposit.amount_cents
                && reason.as_deref() == Some(deposit.reason.as_str())
                && account_id == deposit.account_id;
            if !same {
                return Ok(Some(Deposited::KeyReused));
            }
            return Ok(Some(
                match Self::account_in(read, deposit.account_id).await? {
                    Some(account) => Deposited::Replayed(account),
                    None => Deposited::NoAccount,
                },
            ));
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

    /// Reads an account on `pool`.
    pub(super) async fn account_in(
        pool: &sqlx::Pool<D>,
        id: Uuid,
    ) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
        row.as_ref().map(Self::row_to_account).transpose()
    }

    pub(super) fn row_to_account(row: &D::Row) -> Result<Account, StoreError> {
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
