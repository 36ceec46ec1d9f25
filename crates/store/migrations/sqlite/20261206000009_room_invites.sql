-- Room invite links (`salon room invite`, the room's ad-hoc command): a token that admits
-- people to one members-only room, a number of times until an expiry.
CREATE TABLE room_invites (
    token      TEXT    NOT NULL PRIMARY KEY,
    room       TEXT    NOT NULL,
    created_by TEXT,
    uses_left  INTEGER NOT NULL,
    created    INTEGER NOT NULL,
    expires    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX room_invites_by_room ON room_invites (room, created);
