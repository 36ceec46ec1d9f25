-- Persistent MUC rooms (XEP-0045) and message archives (XEP-0313). Neither references accounts:
-- rooms are not accounts, and an archive is keyed by a bare JID that is a room or an account.
-- The account's archive is deleted together with the account by the code, not by a cascade.

-- One opaque record per room, owned by the MUC module. `service` is the domain part of `jid`,
-- kept so a service's rooms are listed with an index.
CREATE TABLE rooms (
    jid     TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    record  TEXT NOT NULL
);

CREATE INDEX rooms_service ON rooms (service, jid);

-- Archived messages. `seq` gives the order (append order) and never goes back, even after the
-- newest rows are deleted; `timestamp` (microseconds since the Unix epoch) only filters.
-- `with_jid` because WITH is an SQL keyword.
CREATE TABLE archive_messages (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    archive   TEXT    NOT NULL,
    id        TEXT    NOT NULL,
    timestamp INTEGER NOT NULL,
    with_jid  TEXT    NOT NULL,
    stanza    TEXT    NOT NULL,
    UNIQUE (archive, id)
);

-- Paging through one archive in order.
CREATE INDEX archive_messages_seq ON archive_messages (archive, seq);
-- The start/end filters.
CREATE INDEX archive_messages_timestamp ON archive_messages (archive, timestamp);
-- The `with` filter, still in order.
CREATE INDEX archive_messages_with ON archive_messages (archive, with_jid, seq);
-- Expiry across all archives.
CREATE INDEX archive_messages_expiry ON archive_messages (timestamp);
