-- postbote store, schema version 5: DMARC evaluations, kept for aggregate reports
-- (RFC 7489 §7.2). One row per evaluated message and From domain; the report
-- sender groups them by policy domain, source IP and results.

CREATE TABLE dmarc_evaluations (
    id            INTEGER PRIMARY KEY,
    received      INTEGER NOT NULL,          -- Unix time
    source_ip     TEXT NOT NULL,
    header_from   TEXT NOT NULL,             -- the RFC5322.From domain
    envelope_from TEXT NOT NULL,             -- the MAIL FROM domain, '' for the null reverse-path
    policy_domain TEXT NOT NULL,             -- where the DMARC record was found
    policy        TEXT NOT NULL,             -- p= or sp=, whichever applied
    disposition   TEXT NOT NULL,             -- none, quarantine, reject: what was done
    result        TEXT NOT NULL,             -- pass, fail, temperror ...
    dkim_aligned  INTEGER NOT NULL,
    spf_aligned   INTEGER NOT NULL,
    spf_domain    TEXT NOT NULL,
    spf_result    TEXT NOT NULL,
    dkim          TEXT NOT NULL,             -- JSON: [[domain, selector, result], ...]
    override      TEXT NOT NULL DEFAULT '',  -- local policy override (RFC 7489 appendix C)
    rua           TEXT NOT NULL DEFAULT ''   -- the record's rua=, comma-separated
);
CREATE INDEX dmarc_evaluations_domain ON dmarc_evaluations(policy_domain, received);
CREATE INDEX dmarc_evaluations_received ON dmarc_evaluations(received);
