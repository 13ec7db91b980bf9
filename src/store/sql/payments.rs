//! Payment rows: reading them, and the statements of a create and of an update (their
//! holds, codes and events included), each on a connection inside a transaction.

use super::*;

/// A payment row to insert: the payment, its saga, its next check and its stored document.
pub(super) type PaymentRow<'a> = (&'a Payment, &'a SagaState, Option<DateTime<Utc>>, Vec<u8>);

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
    pub(super) fn row_to_payment(row: &D::Row) -> Result<StoredPayment, StoreError> {
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
    pub(super) fn row_to_timing(row: &D::Row) -> Result<PaymentTiming, StoreError> {
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

    pub(super) async fn payment_in(
        executor: impl sqlx::Executor<'_, Database = D>,
        column: &str,
        id: Uuid,
    ) -> Result<Option<StoredPayment>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE {column} = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(executor).await?;
        row.as_ref().map(Self::row_to_payment).transpose()
    }

    /// One page of the listing's rows (`LISTED_COLUMNS`), newest first.
    pub(super) fn list_page(
        filter: &PaymentFilter,
        limit: i64,
        cursor: Option<Cursor>,
    ) -> QueryBuilder<'static, D> {
        let mut qb =
            QueryBuilder::<D>::new(format!("SELECT {LISTED_COLUMNS} FROM payments WHERE 1 = 1"));
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
            // listing would read every newer entry first.
            qb.push(" AND (created_at, id) < (")
                .push_bind(cursor.created_at);
            qb.push(", ").push_bind(cursor.id).push(")");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(limit);
        qb
    }

    /// The payment of `tenant`'s application `remote_id` (unique per tenant only:
    /// another tenant's application of the same id is another payment).
    pub(super) async fn remote_id_in(
        executor: impl sqlx::Executor<'_, Database = D>,
        tenant: Uuid,
        remote_id: Uuid,
    ) -> Result<Option<StoredPayment>, StoreError> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE tenant_id = $1 AND remote_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(tenant)
            .bind(remote_id)
            .fetch_optional(executor)
            .await?;
        row.as_ref().map(Self::row_to_payment).transpose()
    }

    /// Records the payment's iuv and notice code as its own. With `exclusive`, a
    /// code another payment holds fails the write (an adoption that lost a race).
    pub(super) async fn record_codes(
        conn: &mut D::Connection,
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
            if exclusive && D::rows_affected(&inserted) == 0 {
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
    pub(super) async fn insert_payment_row(
        conn: &mut D::Connection,
        payment: &Payment,
        saga: &SagaState,
        next_check_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let document = packed::pack(&json_text(payment)?);
        let mut qb = QueryBuilder::<D>::new("");
        Self::push_payment_rows(&mut qb, vec![(payment, saga, next_check_at, document)]);
        qb.push(" ON CONFLICT DO NOTHING");
        let inserted = D::build(&mut qb).execute(&mut *conn).await?;
        Ok(D::rows_affected(&inserted) == 1)
    }

    /// The statements of a create, on `conn` inside a transaction. With the answer,
    /// whether to keep what they wrote: `false` for an answer that must leave no
    /// trace (a replayed or reused idempotency key, a taken remote_id).
    pub(super) async fn create_steps(
        conn: &mut D::Connection,
        new: NewPayment,
    ) -> Result<(Created, bool), StoreError> {
        let NewPayment {
            mut payment,
            saga,
            next_check_at,
            idempotency,
            hold,
        } = new;
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
            if D::rows_affected(&inserted) == 0 {
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
            if let Some(existing) =
                Self::remote_id_in(&mut *conn, payment.tenant_id, remote_id).await?
            {
                return Ok((Created::RemoteIdTaken(existing), false));
            }
        }
        let mut next_check_at = next_check_at;
        if let Some(hold) = hold {
            if let Err(reason) = Sql::<D>::place_hold(&mut *conn, payment.id, hold, now).await? {
                payment
                    .transition(PaymentStatus::CreationFailed, now)
                    .map_err(anyhow::Error::new)?;
                payment.status_message = Some(reason.to_string());
                payment.links.update.next_check_at = None;
                next_check_at = None;
            }
        }
        let inserted = Self::insert_payment_row(&mut *conn, &payment, &saga, next_check_at).await?;
        if !inserted {
            // Lost a race on remote_id with a concurrent creation (committed by
            // now: the statement waited for it).
            if let Some(remote_id) = payment.remote_id {
                if let Some(existing) =
                    Self::remote_id_in(&mut *conn, payment.tenant_id, remote_id).await?
                {
                    return Ok((Created::RemoteIdTaken(existing), false));
                }
            }
            return Err(StoreError::Unexpected(anyhow::anyhow!(
                "payment {} could not be inserted",
                payment.id
            )));
        }
        Self::record_codes(&mut *conn, &payment, true).await?;
        Self::insert_event(&mut *conn, &payment, now, 1).await?;
        Ok((
            Created::New(StoredPayment {
                payment,
                version: 1,
                saga,
                next_check_at,
            }),
            true,
        ))
    }

    /// Creates a payment in a transaction of its own.
    pub(super) async fn create_in(
        pool: &sqlx::Pool<D>,
        new: NewPayment,
    ) -> Result<Created, StoreError> {
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
    pub(super) async fn update_steps(
        conn: &mut D::Connection,
        expected_version: i64,
        change: Change,
    ) -> Result<StoredPayment, StoreError> {
        let Change {
            payment,
            saga,
            next_check_at,
            emit_event,
            hold,
            new_codes,
        } = change;
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
        if D::rows_affected(&updated) == 0 {
            return Err(StoreError::Conflict(payment.id));
        }
        if let Some(action) = hold {
            Sql::<D>::settle_hold(&mut *conn, payment.id, action, now).await?;
        }
        if payment.status == PaymentStatus::Complete {
            Sql::<D>::credit_top_up(&mut *conn, &payment, now).await?;
        }
        if new_codes {
            // Codes the intermediary gave: it is the authority on them, so a
            // holder found here does not stop the update.
            Self::record_codes(&mut *conn, &payment, false).await?;
        }
        if emit_event {
            Self::insert_event(&mut *conn, &payment, now, expected_version + 1).await?;
        }
        Ok(StoredPayment {
            payment,
            version: expected_version + 1,
            saga,
            next_check_at,
        })
    }

    /// Updates a payment in a transaction of its own.
    pub(super) async fn update_in(
        pool: &sqlx::Pool<D>,
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

    /// `INSERT INTO payments … VALUES …` of (payment, saga, next check, stored
    /// document), at version 1.
    pub(super) fn push_payment_rows<'a>(qb: &mut QueryBuilder<'a, D>, rows: Vec<PaymentRow<'a>>) {
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
}
