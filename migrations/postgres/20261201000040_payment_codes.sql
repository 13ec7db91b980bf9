-- The iuv and notice code of each payment, as recorded (in the transaction that
-- records them on the payment): a payment adopted from Kafka that names a code another
-- payment holds is refused, since its events would act on that payment's debt position.
-- The payment documents are opaque to the database, so the codes get a table of their
-- own. Codes recorded before this migration are not in it.
CREATE TABLE payment_codes (
    kind TEXT NOT NULL,
    code TEXT NOT NULL,
    payment_id UUID NOT NULL,
    PRIMARY KEY (kind, code)
);
