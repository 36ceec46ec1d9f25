-- The number of the last archive journal record the database holds
-- (crates/store/src/sqlite/archive_journal.rs): written in the same transaction as the
-- messages, so the journal applied again after a crash skips what is already in.
CREATE TABLE archive_journal_applied (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    record INTEGER NOT NULL
);
INSERT INTO archive_journal_applied (id, record) VALUES (1, 0);

-- The appending connection adds each batch's entries to archive_counts once per archive
-- (crates/store/src/sqlite/archive_append.rs) instead of a trigger updating it per row.
DROP TRIGGER archive_entries_count;
