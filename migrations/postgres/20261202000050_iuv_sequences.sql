-- Each creditor's IUV sequence (pagoPA GPD): the last base handed out. Taken with one
-- upsert, so no two payments, instances or restarts ever get the same base.
CREATE TABLE iuv_sequences (
    creditor TEXT PRIMARY KEY,
    last_base BIGINT NOT NULL
);
