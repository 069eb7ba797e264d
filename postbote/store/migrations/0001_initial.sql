-- postbote store, schema version 1.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Names are the canonical forms of postbote.mail.address (lowercase, U-labels).

CREATE TABLE domains (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    domain_id     INTEGER NOT NULL REFERENCES domains(id),
    password_hash TEXT NOT NULL,
    quota         INTEGER NOT NULL DEFAULT 0,
    used          INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);

CREATE TABLE app_passwords (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

-- source: an address, or '@domain' for a catch-all; one row per target.
CREATE TABLE aliases (
    source  TEXT NOT NULL,
    target  TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (source, target)
);

CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use   TEXT,
    -- RFC 3501 \Recent: messages with uid >= recent_uid are recent for the
    -- next session that selects the mailbox read-write.
    recent_uid    INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);

-- Subscriptions may name mailboxes that do not exist (RFC 9051 §6.3.7).
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- Each message's bytes are stored once, with the parse made at delivery.
CREATE TABLE blobs (
    id        INTEGER PRIMARY KEY,
    sha256    TEXT NOT NULL UNIQUE,
    size      INTEGER NOT NULL,
    refcount  INTEGER NOT NULL DEFAULT 0,
    parsed    TEXT NOT NULL,
    subject   TEXT NOT NULL DEFAULT '',
    from_addr TEXT NOT NULL DEFAULT '',
    to_addr   TEXT NOT NULL DEFAULT '',
    cc_addr   TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    sent_date INTEGER
);
CREATE INDEX blobs_unreferenced ON blobs(id) WHERE refcount <= 0;

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    mailbox_id   INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid          INTEGER NOT NULL,
    modseq       INTEGER NOT NULL,
    flags        INTEGER NOT NULL DEFAULT 0,
    keywords     TEXT NOT NULL DEFAULT '',
    internaldate INTEGER NOT NULL,
    savedate     INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    blob_id      INTEGER NOT NULL REFERENCES blobs(id),
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
CREATE INDEX messages_unseen ON messages(mailbox_id) WHERE (flags & 1) = 0;
CREATE INDEX messages_blob ON messages(blob_id);

-- RFC 7162 QRESYNC: which UIDs vanished at which modseq.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);
