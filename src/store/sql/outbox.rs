//! Outbox events as written with their payment's row.

use super::*;

/// An outbox event to write.
#[derive(Clone, Copy)]
pub(super) struct EventRow<'a> {
    /// The payment as written.
    pub(super) payment: &'a Payment,
    pub(super) at: DateTime<Utc>,
    /// The payment's version written.
    pub(super) version: i64,
    /// Where the payment is among the creates or the updates it comes from.
    pub(super) index: usize,
}

impl EventRow<'_> {
    /// A new event's id and JSON, from the text of the payment's document when the
    /// caller has it.
    pub(super) fn text(&self, document: Option<&str>) -> Result<(Uuid, String), StoreError> {
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
pub(super) fn creation_events<'a>(news: &[&'a NewPayment]) -> Vec<EventRow<'a>> {
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
pub(super) fn update_events<'a>(
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
    pub(super) async fn insert_event(
        conn: &mut D::Connection,
        payment: &Payment,
        at: DateTime<Utc>,
        version: i64,
    ) -> Result<(), StoreError> {
        let mut qb = QueryBuilder::<D>::new("");
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
        D::build(&mut qb).execute(&mut *conn).await?;
        Ok(())
    }

    /// payment's document in `documents` (at the event's `index`) when the caller
    /// has it.
    pub(super) fn push_events<'a>(
        qb: &mut QueryBuilder<'a, D>,
        events: &[EventRow<'a>],
        documents: &[String],
    ) -> Result<(), StoreError> {
        let texts = events
            .iter()
            .map(|event| event.text(documents.get(event.index).map(String::as_str)))
            .collect::<Result<Vec<_>, _>>()?;
        qb.push("INSERT INTO outbox (event_id, payment_id, topic, payload, created_at, version) ");
        qb.push_values(
            events.iter().zip(texts),
            |mut row, (event, (event_id, text))| {
                row.push_bind(event_id)
                    .push_bind(event.payment.id)
                    .push_bind("payments")
                    .push_bind(packed::pack(&text))
                    .push_bind(event.at)
                    .push_bind(event.version);
            },
        );
        Ok(())
    }
}
