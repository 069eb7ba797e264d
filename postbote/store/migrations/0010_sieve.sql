-- postbote store, migration 10: Sieve scripts (RFC 5228), managed over ManageSieve
-- (RFC 5804). Each account may keep several scripts; at most one is active, and
-- only that one runs at delivery.
CREATE TABLE sieve_scripts (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    content    TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0,
    updated    INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE UNIQUE INDEX sieve_one_active ON sieve_scripts (account_id) WHERE active = 1;

-- Vacation (RFC 5230 §4.2): whom an account's auto-reply already answered, and until when
-- it must not answer them again.
CREATE TABLE sieve_vacation_replies (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    handle     TEXT NOT NULL,   -- the sender, with the reply's :handle or text digest
    until      INTEGER NOT NULL,
    PRIMARY KEY (account_id, handle)
) WITHOUT ROWID;
