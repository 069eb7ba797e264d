-- IMAP METADATA (RFC 5464): annotations on an account's mailboxes and on the account itself.
CREATE TABLE imap_metadata (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox_id INTEGER NOT NULL DEFAULT 0,  -- 0: a server entry (GETMETADATA "")
    entry      TEXT NOT NULL,               -- lowercase, e.g. /private/comment
    value      BLOB NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, entry)
);

-- A mailbox's entries go with it, so a later mailbox never inherits them.
-- (One line: the migration runner splits statements at line ends with a semicolon.)
CREATE TRIGGER imap_metadata_mailbox_gone AFTER DELETE ON mailboxes BEGIN DELETE FROM imap_metadata WHERE mailbox_id = OLD.id; END;
