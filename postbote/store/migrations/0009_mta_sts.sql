-- postbote store, migration 9: the MTA-STS policies the outbound queue has fetched.
-- RFC 8461 §5.1 relies on the cache: a policy stays in force for its max_age even
-- when an attacker hides the TXT record or the policy host, so it must outlive a
-- restart. The policy text is kept as fetched and parsed again when read.
CREATE TABLE mta_sts_policies (
    domain     TEXT PRIMARY KEY,
    policy_id  TEXT NOT NULL,   -- the id of the _mta-sts TXT record it came with
    policy     TEXT NOT NULL,   -- the body of .well-known/mta-sts.txt
    expires    INTEGER NOT NULL -- unix time: fetched + max_age
);
