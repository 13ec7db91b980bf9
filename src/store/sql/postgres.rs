//! What only PostgreSQL does: connecting, the outbox's publication order by transaction
//! id, the group commit's plain writes as one statement over arrays, and the committers'
//! thread.

use sqlx::postgres::PgPoolOptions;

use super::*;

/// Groups committing at once on PostgreSQL: while one waits for its commit to be flushed,
/// the next one runs. More committers made smaller groups, and more statements for the
/// same writes (docs/benchmark-log.md has the figures). SQLite has one.
pub(super) const PG_GROUP_WRITERS: usize = 2;

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
    /// commit's statement anew nearly every time (a custom plan per array size). Every
    /// write finds its rows by key; without sequential scans, a plan made while a table is
    /// still small (a new database) does so too, instead of scanning the whole table
    /// forever after. No JIT either: a scan that has to stay sequential can look so
    /// costly to the planner that each run compiles itself. (The figures behind these are
    /// in docs/benchmark-log.md.)
    ///
    /// sqlx pings a connection when it goes back to the pool; a second ping before each
    /// use would add a round trip to every write. Without it, a connection broken while
    /// idle (a server restart) fails the one group or write that draws it; a failed
    /// group's writes are retried one by one, and a caller that still gets an error
    /// (`Unavailable`) retries: an actor after a second, a client on a 503.
    pub(super) fn write_pool() -> PgPoolOptions {
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
    pub(super) async fn rebase_outbox_cursor(pool: &PgPool) -> Result<(), sqlx::Error> {
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

impl PgStore {
    /// The events after the relay's cursor, in (transaction, seq) order, of transactions
    /// older than every one still running: one that is still writing cannot commit an
    /// event behind what this returns (see migration `20261129000007`). A payment's events
    /// keep their order because each write of a payment starts after the one before it
    /// committed (the version check), so it gets a later transaction id: a path that
    /// wrote an event of a payment from a transaction begun before that payment's last
    /// commit would break this.
    pub(super) const UNPUBLISHED: &'static str =
        "SELECT seq, payment_id, topic, payload, version FROM outbox \
         WHERE (txid, seq) > ((SELECT txid FROM outbox_cursor), (SELECT seq FROM outbox_cursor)) \
         AND txid < txid_snapshot_xmin(txid_current_snapshot()) \
         ORDER BY txid, seq LIMIT $1";

    /// Events past the cursor that `UNPUBLISHED` cannot offer yet: committed, but behind
    /// a transaction still open (their own transaction id is not below every running one).
    /// Counted up to `HELD_BACK_COUNTED` (they pile up for as long as the transaction
    /// stays open, and this runs again and again meanwhile); the oldest is among the
    /// first in (txid, seq) order.
    pub(super) const HELD_BACK: &'static str =
        "SELECT count(*) AS events, min(created_at) AS oldest FROM (\
           SELECT created_at FROM outbox \
           WHERE (txid, seq) > ((SELECT txid FROM outbox_cursor), (SELECT seq FROM outbox_cursor)) \
           AND txid >= txid_snapshot_xmin(txid_current_snapshot()) \
           ORDER BY txid, seq LIMIT $1\
         ) AS held";

    /// The oldest transaction on the server that has written something and not ended: a
    /// session's or a prepared one. (Other users' query texts are hidden from a role that
    /// is not a superuser or `pg_read_all_stats`.)
    pub(super) const OLDEST_WRITER: &'static str = "SELECT description FROM (\
           SELECT age(backend_xid) AS age, format('session pid %s (user %s, database %s, %s, \
             transaction open since %s): %s', pid, usename, datname, state, xact_start, \
             left(query, 200)) AS description \
           FROM pg_stat_activity WHERE backend_xid IS NOT NULL \
           UNION ALL \
           SELECT age(transaction), format('prepared transaction %L (user %s, database %s, \
             prepared at %s)', gid, owner, database, prepared) \
           FROM pg_prepared_xacts\
         ) AS writers ORDER BY age DESC LIMIT 1";

    pub(super) async fn held_back(pool: &PgPool) -> Result<Option<HeldBack>, StoreError> {
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
    pub(super) async fn mark_published_steps(
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
    pub(super) async fn write_plain_group(
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
    pub(super) async fn write_plain_in(
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
pub(super) struct EventColumns {
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
pub(super) const PG_PLAIN_GROUP: &str = concat!(
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
pub(super) const PG_ADVANCE_CURSOR: &str = advance_cursor!("$1");

/// A PostgreSQL committer keeps its connection from one group to the next: drawing it
/// from the pool for each group would cost the ping sqlx sends when a connection goes
/// back (a round trip), and a wait for it. A group that fails drops it: the next one
/// opens a fresh connection.
pub(super) struct PgCommitter {
    pool: PgPool,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    /// When the kept connection last answered.
    used: std::time::Instant,
}

/// A kept connection idle for longer goes back to the pool (which pings it) before the
/// next group: one a firewall or the server dropped while idle is then found out by the
/// ping instead of failing, or hanging, a group.
pub(super) const PG_KEPT_IDLE_MAX: Duration = Duration::from_secs(60);

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
/// the relay and the Kafka consumer on the system thread (which shows in the creates'
/// tail latency). The thread ends when every store handle is dropped.
pub(super) async fn spawn_pg_committers(url: String) -> anyhow::Result<mpsc::Sender<Job>> {
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

#[async_trait]
impl Dialect for sqlx::Postgres {
    const BACKEND: &'static str = "postgres";
    const UNPUBLISHED: &'static str = PgStore::UNPUBLISHED;

    fn build<'q, 'a: 'q>(
        qb: &'q mut QueryBuilder<'a, Self>,
    ) -> sqlx::query::Query<'q, Self, Self::Arguments<'q>> {
        qb.build()
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    async fn held_back(pool: &sqlx::Pool<Self>) -> Result<Option<HeldBack>, StoreError> {
        PgStore::held_back(pool).await
    }

    async fn mark_published_steps(
        conn: &mut sqlx::PgConnection,
        seqs: &[i64],
    ) -> Result<(), StoreError> {
        PgStore::mark_published_steps(conn, seqs).await
    }

    async fn write_plain_group(
        conn: &mut sqlx::pool::PoolConnection<Self>,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        PgStore::write_plain_group(conn, news, updates, marks).await
    }

    async fn write_plain_in(
        conn: &mut sqlx::PgConnection,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError> {
        PgStore::write_plain_in(conn, news, updates, marks).await
    }
}
