//! `Store` over the shared queries.

use futures::TryStreamExt;

use super::*;

// The shared queries' sqlx bounds (see `Sql`).
#[async_trait]
impl<D: Dialect> Store for SqlStore<D>
where
    SqlStore<D>: ConfigStore,
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
    fn backend(&self) -> &'static str {
        D::BACKEND
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
            Sql::<D>::insert_payment_row(&mut tx, &new.payment, &new.saga, new.next_check_at)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn payment_timing(&self, id: Uuid) -> Result<Option<PaymentTiming>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            timing_columns!(),
            " FROM payments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(Sql::<D>::row_to_timing).transpose()
    }

    async fn payment(&self, id: Uuid) -> Result<Option<StoredPayment>, StoreError> {
        Sql::<D>::payment_in(&self.read, "id", id).await
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
            let mut page = Sql::<D>::list_page(filter, wanted, cursor);
            let rows = D::build(&mut page).fetch_all(&self.read).await?;
            let exhausted = (rows.len() as i64) < wanted;
            for row in &rows {
                cursor = Some(Cursor {
                    created_at: row.try_get("created_at")?,
                    id: row.try_get("id")?,
                });
                match Sql::<D>::row_to_payment(row) {
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
    // as streams, not with `fetch_all`: sqlx copies each SQLite value into
    // SQLite's heap (C `malloc`), and holding every row at once leaves memory in
    // a glibc arena that never shrinks back.
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
        let mut rows = sqlx::query(concat!(
            "SELECT id, ",
            timing_columns!(),
            " FROM payments \
                 WHERE status IN ('CREATION_PENDING', 'PAYMENT_PENDING', 'PAYMENT_STARTED') \
                 OR notify_pending = $1 ORDER BY next_check_at"
        ))
        .bind(true)
        .fetch(&self.read);
        let mut timings = Vec::new();
        while let Some(row) = rows.try_next().await? {
            timings.push((row.try_get("id")?, Some(Sql::<D>::row_to_timing(&row)?)));
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
                timing: Sql::<D>::row_to_timing(&row)?,
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
        let rows = sqlx::query(D::UNPUBLISHED)
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
        D::held_back(&self.read).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError> {
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
        Ok(D::rows_affected(&taken) == 1)
    }

    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
        Sql::<D>::account_in(&self.read, id).await
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
            match Sql::<D>::deposit_once(&self.write, &self.read, &key, deposit).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e),
            }
        }
        match Sql::<D>::deposit_once(&self.write, &self.read, &key, deposit).await? {
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
        if D::rows_affected(&inserted) == 1 && account.balance_cents > 0 {
            // A new account's money is journalled like any other: its opening credit.
            let key = format!("opening:{}", account.id);
            Sql::<D>::journal(
                &mut tx,
                NewEntry {
                    account_id: account.id,
                    key: &key,
                    payment_id: None,
                    kind: EntryKind::Credit,
                    amount_cents: account.balance_cents,
                    balance_after_cents: account.balance_cents,
                    held_after_cents: 0,
                    reason: Some("opening balance"),
                    at: now,
                },
            )
            .await?;
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
                        .map_err(|e: UnknownEntryKind| StoreError::Unexpected(e.into()))?,
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

    async fn next_iuv_base(&self, creditor: &str) -> Result<u64, StoreError> {
        // One statement: the row lock (PostgreSQL) or the single writer (SQLite) orders
        // concurrent takers.
        let row = sqlx::query(
            "INSERT INTO iuv_sequences (creditor, last_base) VALUES ($1, 1) \
             ON CONFLICT (creditor) DO UPDATE SET last_base = iuv_sequences.last_base + 1 \
             RETURNING last_base",
        )
        .bind(creditor)
        .fetch_one(&self.write)
        .await?;
        let base: i64 = row.try_get("last_base")?;
        u64::try_from(base).map_err(|_| {
            StoreError::Unexpected(anyhow::anyhow!("IUV sequence of {creditor} is negative"))
        })
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
