-- Each event records the payment version it was written with. The relay sends it as the
-- record header cassa-version, so an owner that has seen that version skips the reload.

ALTER TABLE outbox ADD COLUMN version BIGINT;
