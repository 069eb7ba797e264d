-- postbote store, schema version 2: the outbound queue.
-- One entry per message and destination domain; one row per recipient with
-- its own state, so a partial success is never sent twice.

CREATE TABLE outbound (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,
    blob_id      INTEGER NOT NULL REFERENCES blobs(id),
    sender       TEXT NOT NULL,            -- '' for the null reverse-path
    domain       TEXT NOT NULL,
    envid        TEXT,                     -- RFC 3461 ENVID
    ret          TEXT,                     -- RFC 3461 RET: FULL or HDRS
    smtputf8     INTEGER NOT NULL DEFAULT 0,
    body         TEXT,                     -- RFC 6152 BODY: 7BIT, 8BITMIME, BINARYMIME
    created      INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    held         INTEGER NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    last_reply   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbound_due ON outbound(next_attempt) WHERE held = 0;
CREATE INDEX outbound_queue_id ON outbound(queue_id);

CREATE TABLE outbound_rcpt (
    entry_id   INTEGER NOT NULL REFERENCES outbound(id) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    orcpt      TEXT,                       -- RFC 3461 ORCPT
    notify     TEXT,                       -- RFC 3461 NOTIFY, comma-separated
    status     TEXT NOT NULL DEFAULT 'pending',  -- pending, sent, failed
    last_reply TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (entry_id, address)
);
