//! Group commit: the writes waiting when a committer is free go in one transaction.

use super::*;

/// Writes waiting for the group commit, at most.
pub(super) const GROUP_COMMIT_QUEUE: usize = 1024;
/// Writes committed in one transaction, at most.
pub(super) const GROUP_COMMIT_MAX: usize = 256;

/// A create with nothing to undo when refused: no idempotency key, remote_id, hold or
/// codes (an adopted payment's iuv).
pub(super) fn is_plain(new: &NewPayment) -> bool {
    new.idempotency.is_none()
        && new.payment.remote_id.is_none()
        && new.hold.is_none()
        && PaymentCodes::of(&new.payment).entries().is_empty()
}

/// A write for the group commit, with where its answer goes.
pub(super) enum Job {
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
    pub(super) fn is_plain(&self) -> bool {
        match self {
            Job::Create(new, _) => is_plain(new),
            Job::Update(_, change, _) => change.is_plain(),
            Job::MarkPublished(..) => true,
        }
    }
}

/// What a job did inside a group transaction (sent only once that commits).
pub(super) enum Done {
    Created(Created),
    Updated(Result<StoredPayment, StoreError>),
    Marked,
}

pub(super) fn writer_gone() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("the store's writer stopped"))
}

/// A database the group commit writes to.
#[async_trait]
pub(super) trait GroupWriter: Send + Sync + 'static {
    /// Runs the jobs in one transaction; the answers once it committed.
    async fn try_group(&mut self, jobs: &[Job]) -> Result<Vec<Done>, StoreError>;
    /// Runs one job in a transaction of its own and answers it.
    async fn run_alone(&self, job: Job);
    /// Whether a job must not join a group (it then runs alone, before it).
    fn keeps_apart(&self, _job: &Job) -> bool {
        false
    }
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
pub(super) async fn group_commit(
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

// The shared queries' sqlx bounds (see `Sql`).
impl<D: Dialect> SqlStore<D>
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
    pub(super) async fn create_payment_queued(
        &self,
        new: NewPayment,
    ) -> Result<Created, StoreError> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(Job::Create(new, _))) =
            self.writer.send(Job::Create(new, reply)).await
        {
            return Sql::<D>::create_in(&self.write, new).await;
        }
        answer.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    pub(super) async fn update_payment_queued(
        &self,
        expected_version: i64,
        change: Change,
    ) -> Result<StoredPayment, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Update(expected_version, change, reply);
        if let Err(mpsc::error::SendError(Job::Update(version, change, _))) =
            self.writer.send(job).await
        {
            return Sql::<D>::update_in(&self.write, version, change).await;
        }
        answer.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    pub(super) async fn mark_published_queued(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::MarkPublished(seqs.to_vec(), reply);
        if self.writer.send(job).await.is_err() {
            let mut conn = self.write.acquire().await?;
            return D::mark_published_steps(&mut conn, seqs).await;
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
    /// connection's thread, which costs more than SQLite's own work on a small group:
    /// there they are two batches of statements, and a
    /// group of plain writes only is two round trips (`write_plain_group`: BEGIN and
    /// COMMIT ride with the batches), plus the ping sqlx sends when the connection
    /// goes back to the pool.
    pub(super) async fn try_group(
        conn: &mut sqlx::pool::PoolConnection<D>,
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
            D::write_plain_group(conn, &news, &plain, &seqs).await?
        } else {
            let mut tx = sqlx::Connection::begin(&mut **conn).await?;
            let updated = D::write_plain_in(&mut tx, &news, &plain, &seqs).await?;
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
                            Sql::<D>::create_steps(&mut savepoint, new.clone()).await?;
                        if keep {
                            savepoint.commit().await?;
                        } else {
                            savepoint.rollback().await?;
                        }
                        done[i] = Some(Done::Created(created));
                    }
                    Job::Update(version, change, _) => {
                        done[i] = Some(Done::Updated(
                            match Sql::<D>::update_steps(&mut tx, *version, change.clone()).await {
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
    pub(super) async fn run_alone(pool: &sqlx::Pool<D>, job: Job) {
        match job {
            Job::Create(new, reply) => {
                let _ = reply.send(Sql::<D>::create_in(pool, new).await);
            }
            Job::Update(version, change, reply) => {
                let _ = reply.send(Sql::<D>::update_in(pool, version, change).await);
            }
            Job::MarkPublished(seqs, reply) => {
                let result = match pool.acquire().await {
                    Ok(mut conn) => D::mark_published_steps(&mut conn, &seqs).await,
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
        }
    }
}
