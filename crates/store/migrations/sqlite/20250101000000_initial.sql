-- Initial schema. Everything belonging to an account hangs off accounts.id with ON DELETE
-- CASCADE, so deleting the account row removes roster, offline queue, vCard and last activity.
-- Times are seconds since the Unix epoch.

CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY,
    user              TEXT    NOT NULL,
    domain            TEXT    NOT NULL,
    iterations        INTEGER NOT NULL CHECK (iterations > 0),
    salt              BLOB    NOT NULL,
    sha1_stored_key   BLOB    NOT NULL,
    sha1_server_key   BLOB    NOT NULL,
    sha256_stored_key BLOB    NOT NULL,
    sha256_server_key BLOB    NOT NULL,
    created_at        INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
    UNIQUE (user, domain)
);

CREATE INDEX accounts_domain ON accounts (domain);

CREATE TABLE roster_items (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    contact      TEXT    NOT NULL,
    name         TEXT,
    subscription TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask_out      INTEGER NOT NULL DEFAULT 0,
    pending_in   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, contact)
);

-- Groups keep the order the client gave them in.
CREATE TABLE roster_groups (
    item_id  INTEGER NOT NULL REFERENCES roster_items (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    PRIMARY KEY (item_id, position)
);

CREATE TABLE offline_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stanza      TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);

CREATE INDEX offline_messages_account ON offline_messages (account_id, id);

CREATE TABLE vcards (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    vcard      TEXT    NOT NULL
);

CREATE TABLE last_activity (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    status     TEXT    NOT NULL
);
