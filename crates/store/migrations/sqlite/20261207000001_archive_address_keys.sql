-- Archive entries keyed by numbers instead of addresses (the speed issue, target 4). Every
-- entry repeated its archive's bare JID and its `with` JID as text, in the row and in both
-- indexes: each append compared and copied those strings through three B-trees. Addresses are
-- now stored once, in `archive_addresses`, and entries, indexes and counts refer to them by
-- number: the rows are about half as large and an append costs a third less (bench/RESULTS.md,
-- "Archive entries keyed by number").
--
-- Only the appending connection adds and removes addresses (it keeps their numbers in memory):
-- those no entry refers to any longer go now and then (crates/store/src/sqlite/archive_append.rs,
-- PRUNE_AFTER_ADDED), so that a room's stream of guest nicknames does not grow the table for ever.
CREATE TABLE archive_addresses (
    id  INTEGER PRIMARY KEY,
    jid TEXT    NOT NULL UNIQUE
);

INSERT INTO archive_addresses (jid)
    SELECT archive FROM archive_entries
    UNION SELECT with_jid FROM archive_entries
    UNION SELECT archive FROM archive_counts;

-- `archive` and `with_jid` are `archive_addresses.id`s; the rest is as before.
CREATE TABLE archive_entries_keyed (
    archive   INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    id        TEXT    NOT NULL,
    timestamp INTEGER NOT NULL,
    with_jid  INTEGER NOT NULL,
    body      INTEGER NOT NULL,
    PRIMARY KEY (archive, seq)
) WITHOUT ROWID;

INSERT INTO archive_entries_keyed (archive, seq, id, timestamp, with_jid, body)
    SELECT a.id, e.seq, e.id, e.timestamp, w.id, e.body
    FROM archive_entries AS e
    JOIN archive_addresses AS a ON a.jid = e.archive
    JOIN archive_addresses AS w ON w.jid = e.with_jid;

CREATE TABLE archive_counts_keyed (
    archive  INTEGER PRIMARY KEY,
    messages INTEGER NOT NULL
);

INSERT INTO archive_counts_keyed (archive, messages)
    SELECT a.id, c.messages
    FROM archive_counts AS c JOIN archive_addresses AS a ON a.jid = c.archive;

DROP TRIGGER archive_entries_release;
DROP TABLE archive_entries;
DROP TABLE archive_counts;
ALTER TABLE archive_entries_keyed RENAME TO archive_entries;
ALTER TABLE archive_counts_keyed RENAME TO archive_counts;

CREATE UNIQUE INDEX archive_entries_id ON archive_entries (archive, id);
CREATE INDEX archive_entries_with ON archive_entries (archive, with_jid, seq);

CREATE TRIGGER archive_entries_release AFTER DELETE ON archive_entries
BEGIN
    UPDATE archive_stanzas SET refs = refs - 1 WHERE seq = old.body;
    DELETE FROM archive_stanzas WHERE seq = old.body AND refs <= 0;
    UPDATE archive_counts SET messages = messages - 1 WHERE archive = old.archive;
    DELETE FROM archive_counts WHERE archive = old.archive AND messages <= 0;
END;

-- The entries with their addresses written out, for reading the archive by hand (sqlite3).
CREATE VIEW archive_entries_named (archive, seq, id, timestamp, with_jid, body) AS
    SELECT a.jid, e.seq, e.id, e.timestamp, w.jid, e.body
    FROM archive_entries AS e
    JOIN archive_addresses AS a ON a.id = e.archive
    JOIN archive_addresses AS w ON w.id = e.with_jid;
