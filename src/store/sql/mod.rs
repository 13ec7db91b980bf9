//! The SQL behind `Store`, shared by PostgreSQL and SQLite: the queries are written once,
//! in a dialect both accept (`$n` parameters, `ON CONFLICT`, `RETURNING`, row values), as
//! generic code over a `Dialect` (`sqlx::Postgres` or `sqlx::Sqlite`). What differs per
//! backend (connecting, the outbox's publication order, the group commit's plain writes)
//! is in `postgres.rs` and `sqlite.rs`.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, QueryBuilder, Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::packed;
use super::*;
use crate::domain::payment::{Payment, PaymentEvent};
use crate::domain::time;

/// A store on a backend `D`: the pools, and the queue of the group commit.
pub struct SqlStore<D: sqlx::Database> {
    pub(super) write: sqlx::Pool<D>,
    pub(super) read: sqlx::Pool<D>,
    writer: mpsc::Sender<Job>,
}

impl<D: sqlx::Database> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            write: self.write.clone(),
            read: self.read.clone(),
            writer: self.writer.clone(),
        }
    }
}

/// PostgreSQL store (production). Creates, updates and outbox marks go through
/// `group_commit` as on SQLite; everything else runs on the pool.
pub type PgStore = SqlStore<sqlx::Postgres>;

/// SQLite store (embedded default): one writer connection, a few readers, WAL. Creates,
/// updates and outbox marks go through `group_commit`: what is waiting when the writer is
/// free is committed in one transaction.
pub type SqliteStore = SqlStore<sqlx::Sqlite>;

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

mod group_commit;
mod ledger;
mod outbox;
mod payments;
mod postgres;
mod sqlite;
mod store_impl;
#[cfg(test)]
mod tests;

/// A backend the shared queries run on (PostgreSQL or SQLite): what differs between them,
/// and what generic code cannot reach through sqlx's traits alone.
#[async_trait]
pub trait Dialect: sqlx::Database {
    /// The backend's name (`Store::backend`).
    const BACKEND: &'static str;
    /// The oldest unpublished outbox events, in the order to publish them; `$1` the limit.
    const UNPUBLISHED: &'static str;
    /// `qb.build()`. Each backend's arguments shorten to the builder's borrow (they are
    /// covariant), which generic code cannot see: built there, the builder would have to
    /// outlive itself.
    fn build<'q, 'a: 'q>(
        qb: &'q mut QueryBuilder<'a, Self>,
    ) -> sqlx::query::Query<'q, Self, Self::Arguments<'q>>;
    /// How many rows a statement wrote (each backend's result has it, no trait does).
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// Committed events held back behind an older open transaction.
    async fn held_back(pool: &sqlx::Pool<Self>) -> Result<Option<HeldBack>, StoreError>;
    /// Records the events `seqs` as published, on `conn`.
    async fn mark_published_steps(
        conn: &mut Self::Connection,
        seqs: &[i64],
    ) -> Result<(), StoreError>;
    /// A group of plain writes only, in as few round trips as the backend allows. The ids
    /// updated (the others are conflicts).
    async fn write_plain_group(
        conn: &mut sqlx::pool::PoolConnection<Self>,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError>;
    /// The same writes inside a transaction the caller manages.
    async fn write_plain_in(
        conn: &mut Self::Connection,
        news: &[&NewPayment],
        updates: &[(i64, &Change)],
        marks: &[&[i64]],
    ) -> Result<std::collections::HashSet<Uuid>, StoreError>;
}

/// The queries written once for both backends, over `D`.
///
/// Each generic impl block (here and `SqlStore<D>`'s) repeats one where clause: sqlx's
/// bounds for the types the queries bind and read. Rust implies a trait's supertraits but
/// not its other where clauses, so they cannot be stated once on `Dialect`.
pub(super) struct Sql<D>(std::marker::PhantomData<D>);

use group_commit::*;
use ledger::*;
use outbox::*;

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
