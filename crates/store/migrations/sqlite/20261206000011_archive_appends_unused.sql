-- The archive writer appends through statements of its own on a connection of its own
-- (crates/store/src/sqlite/archive_append.rs), one prepared INSERT per stored stanza and per
-- entry, so the view it used to insert into (with its INSTEAD OF trigger, which looked the
-- newest stanza up with MAX(seq) for every row) has no user left.
DROP VIEW archive_appends;
