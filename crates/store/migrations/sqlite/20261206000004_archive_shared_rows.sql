-- Archives with one stored stanza per message and small, clustered entries (the speed issue:
-- a 1:1 message was stored twice, each copy in a wide row with four indexes).
--
-- `archive_stanzas` holds each archived message once; the two archives of a 1:1 message (the
-- sender's and the recipient's) both refer to it. `seq` is the append order shared by every
-- archive and never goes back (AUTOINCREMENT), even after the newest rows are deleted; `refs`
-- counts the entries referring to the row, which goes with the last of them.
CREATE TABLE archive_stanzas (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    stanza TEXT    NOT NULL,
    refs   INTEGER NOT NULL
);

-- One entry per message and archive, clustered by (archive, seq): a page of one archive is a
-- run of neighbouring rows. `seq` is the message's position (the `seq` its stanza was stored
-- under); `body` the stored stanza, the same row until one archive's copy is replaced
-- (a retraction's tombstone) while the other keeps the original. `id` is the XEP-0359
-- stanza-id the archive gave the message; `timestamp` (microseconds since the Unix epoch) only
-- filters. `with_jid` because WITH is an SQL keyword.
CREATE TABLE archive_entries (
    archive   TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    id        TEXT    NOT NULL,
    timestamp INTEGER NOT NULL,
    with_jid  TEXT    NOT NULL,
    body      INTEGER NOT NULL,
    PRIMARY KEY (archive, seq)
) WITHOUT ROWID;

-- Stanza-ids are unique per archive, and name positions for paging (after/before).
CREATE UNIQUE INDEX archive_entries_id ON archive_entries (archive, id);
-- The `with` filter, still in order. The start/end filters and expiry scan the entries (small
-- rows, in time order within an archive) rather than cost an index on every append.
CREATE INDEX archive_entries_with ON archive_entries (archive, with_jid, seq);

-- Messages per archive, for the RSM <count/> of an unfiltered query (a COUNT over a million
-- entries takes a quarter of a second); kept by the triggers.
CREATE TABLE archive_counts (
    archive  TEXT    PRIMARY KEY,
    messages INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER archive_entries_release AFTER DELETE ON archive_entries
BEGIN
    UPDATE archive_stanzas SET refs = refs - 1 WHERE seq = old.body;
    DELETE FROM archive_stanzas WHERE seq = old.body AND refs <= 0;
    UPDATE archive_counts SET messages = messages - 1 WHERE archive = old.archive;
    DELETE FROM archive_counts WHERE archive = old.archive AND messages <= 0;
END;

-- How the writer appends: one multi-row INSERT into this view is one statement (one trip to
-- SQLite's thread, one commit) however many messages it holds. A row with `shared` set is the
-- same message as the row before it, for another archive (the other side of a 1:1 chat): it
-- gets an entry pointing at that row's stanza (and its position) instead of a stanza of its own.
CREATE VIEW archive_appends (archive, id, timestamp, with_jid, stanza, shared) AS
    SELECT archive, id, timestamp, with_jid, NULL, 0 FROM archive_entries WHERE 0;

CREATE TRIGGER archive_appends_insert INSTEAD OF INSERT ON archive_appends
BEGIN
    INSERT INTO archive_stanzas (stanza, refs) SELECT new.stanza, 1 WHERE NOT new.shared;
    UPDATE archive_stanzas SET refs = refs + 1
        WHERE new.shared AND seq = (SELECT MAX(seq) FROM archive_stanzas);
    INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body)
        SELECT new.archive, last, new.id, new.timestamp, new.with_jid, last
        FROM (SELECT MAX(seq) AS last FROM archive_stanzas);
END;

-- What the old table held moves over, in the same order under the same positions.
INSERT INTO archive_stanzas (seq, stanza, refs)
    SELECT seq, stanza, 1 FROM archive_messages ORDER BY seq;
INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body)
    SELECT archive, seq, id, timestamp, with_jid, seq FROM archive_messages;
-- Positions keep growing from where the old table's sequence was.
UPDATE sqlite_sequence
    SET seq = (SELECT MAX(seq) FROM sqlite_sequence
               WHERE name IN ('archive_messages', 'archive_stanzas'))
    WHERE name = 'archive_stanzas';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'archive_stanzas', seq FROM sqlite_sequence
    WHERE name = 'archive_messages'
      AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'archive_stanzas');
INSERT INTO archive_counts (archive, messages)
    SELECT archive, COUNT(*) FROM archive_entries GROUP BY archive;
DROP TABLE archive_messages;

-- Counted from here on (after the move, which the line above counted at once).
CREATE TRIGGER archive_entries_count AFTER INSERT ON archive_entries
BEGIN
    INSERT INTO archive_counts (archive, messages) VALUES (new.archive, 1)
        ON CONFLICT (archive) DO UPDATE SET messages = messages + 1;
END;
DELETE FROM sqlite_sequence WHERE name = 'archive_messages';
