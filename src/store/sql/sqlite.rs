//! What only SQLite does: connecting (one writer, readers, WAL, background checkpoints),
//! the outbox's `published_at` marks, and the group commit's plain writes as two batches
//! of statements.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::*;

/// Rows per multi-row INSERT (14 parameters each, well under SQLite's limit).
pub(super) const MULTI_ROW_MAX: usize = 128;

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

/// The JSON texts of a SQLite group's documents, each serialized once for its row and its
/// event.
pub(super) struct Documents {
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
    pub(super) async fn held_back(_pool: &SqlitePool) -> Result<Option<HeldBack>, StoreError> {
        Ok(None)
    }

    /// The oldest events not marked published, in order.
    pub(super) const UNPUBLISHED: &'static str =
        "SELECT seq, payment_id, topic, payload, version FROM outbox \
         WHERE published_at IS NULL ORDER BY seq LIMIT $1";

    /// Marks outbox events published, on `conn`.
    pub(super) async fn mark_published_steps(
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
    pub(super) fn push_marks(
        qb: &mut QueryBuilder<'_, sqlx::Sqlite>,
        at: DateTime<Utc>,
        seqs: &[i64],
    ) {
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
    pub(super) fn push_new_payments<'a>(
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
        Sql::<sqlx::Sqlite>::push_payment_rows(qb, rows);
    }

    /// A multi-row `UPDATE … FROM (VALUES …) RETURNING id`: each payment only at
    /// its expected version; the ids not returned are conflicts.
    pub(super) fn push_updates<'a>(
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
    pub(super) async fn write_plain_group(
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
    pub(super) async fn write_plain_in(
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
    pub(super) async fn plain_batch(
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
            Sql::<sqlx::Sqlite>::push_events(&mut qb, &creation_events(chunk), texts)?;
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
    pub(super) async fn events_and_marks_batch(
        conn: &mut sqlx::SqliteConnection,
        events: &[EventRow<'_>],
        documents: &[String],
        marks: &[&[i64]],
        suffix: &str,
    ) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<sqlx::Sqlite>::new("");
        for chunk in events.chunks(MULTI_ROW_MAX) {
            Sql::<sqlx::Sqlite>::push_events(&mut qb, chunk, documents)?;
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
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints the WAL on a connection of its own, in the background, while the store
/// is in use (`PASSIVE`: never waits for the writer or readers; what they still use is
/// copied next time). Ends with the store (its last handle dropped).
pub(super) async fn checkpoints(pool: SqlitePool, store: mpsc::WeakSender<Job>) {
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

#[async_trait]
impl Dialect for sqlx::Sqlite {
    const BACKEND: &'static str = "sqlite";
    const UNPUBLISHED: &'static str = SqliteStore::UNPUBLISHED;

    fn build<'q, 'a: 'q>(
        qb: &'q mut QueryBuilder<'a, Self>,
    ) -> sqlx::query::Query<'q, Self, Self::Arguments<'q>> {
        qb.build()
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    async fn held_back(pool: &sqlx::Pool<Self>) -> Result<Option<HeldBack>, StoreError> {
        SqliteStore::held_back(pool).await
    }

    async fn mark_published_steps(
        conn: &mut sqlx::SqliteConnection,
        seqs: &[i64],
    ) -> Result<(), StoreError> {
        SqliteStore::mark_published_steps(conn, seqs).await
    }

    async fn write_plain_group(
        conn: &mut sqlx::pool::PoolConnection<Self>,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        SqliteStore::write_plain_group(conn, news, updates, marks).await
    }

    async fn write_plain_in(
        conn: &mut sqlx::SqliteConnection,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        SqliteStore::write_plain_in(conn, news, updates, marks).await
    }
}
