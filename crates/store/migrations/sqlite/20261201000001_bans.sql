-- Server-wide bans (`salon ban`): an IP address, a network or a bare JID, until a time or lifted.
CREATE TABLE bans (
    target  TEXT    NOT NULL PRIMARY KEY,
    created INTEGER NOT NULL,
    until   INTEGER
) WITHOUT ROWID;
