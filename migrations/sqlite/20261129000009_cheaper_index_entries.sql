-- Nothing in cassa looks a payment's events up by payment (only the tests do, on small
-- tables): the index cost an insertion per event.
DROP INDEX outbox_payment_idx;
