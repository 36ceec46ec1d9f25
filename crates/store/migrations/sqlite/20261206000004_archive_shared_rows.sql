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

CREATE TRIGGER archive_entries_release AFTER DELETE ON archive_entries
BEGIN
    UPDATE archive_stanzas SET refs = refs - 1 WHERE seq = old.body;
    DELETE FROM archive_stanzas WHERE seq = old.body AND refs <= 0;
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
DROP TABLE archive_messages;
DELETE FROM sqlite_sequence WHERE name = 'archive_messages';
