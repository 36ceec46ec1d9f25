-- Push registrations (XEP-0357, and MUC push urn:salon:muc-push:0): the app server (pubsub
-- JID and node) a client asked to be woken through, for its account's messages (room = '')
-- or a room's (room = the room's bare JID, with the client's resource and the token it
-- removes it with). Kept across restarts; goes with the account.
CREATE TABLE push_registrations (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    room       TEXT    NOT NULL,
    service    TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    token      TEXT    NOT NULL,
    options    TEXT,
    created    INTEGER NOT NULL,
    PRIMARY KEY (account_id, room, service, node)
) WITHOUT ROWID;
