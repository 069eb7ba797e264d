-- postbote store, schema version 6: the built-in spam filter's learned state.
-- Token counts per account, and account 0 for the global model every account
-- shares; which messages were trained (so moving a message back untrains it,
-- and moving it twice counts once); each recipient's history of verdicts per
-- sender, for the sender's reputation.

CREATE TABLE spam_tokens (
    account_id INTEGER NOT NULL,            -- 0: the global model
    token      TEXT NOT NULL,
    spam       INTEGER NOT NULL DEFAULT 0,  -- trained spam messages holding the token
    ham        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, token)
) WITHOUT ROWID;

CREATE TABLE spam_totals (
    account_id INTEGER PRIMARY KEY,         -- 0: the global model
    spam       INTEGER NOT NULL DEFAULT 0,  -- trained spam messages
    ham        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE spam_trained (
    account_id INTEGER NOT NULL,
    blob_id    INTEGER NOT NULL,
    spam       INTEGER NOT NULL,            -- 1: trained as spam, 0: as ham
    trained    INTEGER NOT NULL,            -- Unix time
    PRIMARY KEY (account_id, blob_id)
) WITHOUT ROWID;

CREATE TABLE spam_reputation (
    account_id INTEGER NOT NULL,
    sender     TEXT NOT NULL,               -- the MAIL FROM address, lower case ('' for bounces)
    spam       INTEGER NOT NULL DEFAULT 0,  -- earlier messages judged or trained spam
    ham        INTEGER NOT NULL DEFAULT 0,
    updated    INTEGER NOT NULL,            -- Unix time
    PRIMARY KEY (account_id, sender)
) WITHOUT ROWID;

CREATE TABLE greylist (
    triplet    TEXT PRIMARY KEY,            -- network / sender / recipient
    first_seen INTEGER NOT NULL,
    passed     INTEGER NOT NULL DEFAULT 0,  -- Unix time it was let through, 0: not yet
    updated    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX greylist_updated ON greylist(updated);
