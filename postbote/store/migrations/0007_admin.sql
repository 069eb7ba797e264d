-- operations: who may use the admin interface and API, and the API's tokens.
CREATE TABLE admin_accounts (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    created    INTEGER NOT NULL
);

-- Only a SHA-256 of each token is kept; tokens are 256 random bits, so no slow hash is needed.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created    INTEGER NOT NULL,
    last_used  INTEGER NOT NULL DEFAULT 0
);
