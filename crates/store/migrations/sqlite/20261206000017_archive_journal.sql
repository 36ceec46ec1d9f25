-- The archive journal's bookkeeping (crates/store/src/sqlite/archive_journal.rs): the number of
-- the last journal record the database holds, written in the same transaction as the messages,
-- so the journal applied again after a crash skips what is already in; and the database's own
-- name for its journal, written at the head of the journal's files, so a journal left beside a
-- different (say, freshly created) database is never applied to it.
CREATE TABLE archive_journal_applied (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    record INTEGER NOT NULL,
    database TEXT NOT NULL
);
INSERT INTO archive_journal_applied (id, record, database)
    VALUES (1, 0, lower(hex(randomblob(16))));

-- The appending connection adds each batch's entries to archive_counts once per archive
-- (crates/store/src/sqlite/archive_append.rs) instead of a trigger updating it per row.
DROP TRIGGER archive_entries_count;
