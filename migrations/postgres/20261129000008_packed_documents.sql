-- A payment's document and an event's payload are now stored packed by cassa: their JSON
-- text compressed with LZ4 against a dictionary of a typical event (src/store/packed.rs),
-- about a quarter of the text's size. Every state change writes one of each, so they were
-- most of what each write put into the table and the write-ahead log. PostgreSQL's own
-- compression never took them: it starts only on rows over about 2 KiB, and these rows
-- were just under.
--
-- Rows written before keep their JSON text, as its UTF-8 bytes, which cassa reads as it is.
ALTER TABLE payments ALTER COLUMN document TYPE BYTEA USING convert_to(document, 'UTF8');
ALTER TABLE outbox ALTER COLUMN payload TYPE BYTEA USING convert_to(payload, 'UTF8');
