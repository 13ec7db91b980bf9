-- Wallets belong to a tenant (a WALLET payment must be in its account's tenant), and
-- every movement of a wallet is a journal entry: the account row's balance and held are
-- kept for speed and must agree with the journal (`cassa ledger check`).
ALTER TABLE accounts ADD COLUMN tenant_id UUID;
-- The demo wallet (seeded before accounts had a tenant) is the demo tenant's. Other
-- accounts created before this migration have no tenant and cannot be charged until
-- one is set.
UPDATE accounts SET tenant_id = '00000000-0000-4000-8000-000000000001'
    WHERE id = '00000000-0000-4000-8000-000000000003';

CREATE TABLE ledger_entries (
    seq BIGSERIAL PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id),
    -- What the entry is for, once: `credit:<payment>`, `hold:<payment>`,
    -- `capture:<payment>`, `release:<payment>`, `deposit:<scope>:<key>`, `opening:<account>`.
    entry_key TEXT NOT NULL UNIQUE,
    payment_id UUID,
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'hold', 'capture', 'release')),
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    balance_after_cents BIGINT NOT NULL,
    held_after_cents BIGINT NOT NULL,
    reason TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, seq);

-- What the accounts hold now is where their journals start: one opening credit of the
-- balance, one hold entry per open hold (captures and releases before the journal are
-- already in the balance).
INSERT INTO ledger_entries (account_id, entry_key, kind, amount_cents, balance_after_cents, held_after_cents, reason, created_at)
    SELECT id, 'opening:' || id::text, 'credit', balance_cents, balance_cents, 0, 'opening balance', updated_at
    FROM accounts WHERE balance_cents > 0;
INSERT INTO ledger_entries (account_id, entry_key, payment_id, kind, amount_cents, balance_after_cents, held_after_cents, created_at)
    SELECT h.account_id, 'hold:' || h.payment_id::text, h.payment_id, 'hold', h.amount_cents, a.balance_cents, a.held_cents, h.created_at
    FROM holds h JOIN accounts a ON a.id = h.account_id WHERE h.status = 'HELD';
