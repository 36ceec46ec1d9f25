-- Invitations (XEP-0401, XEP-0445, `salon invite create`): a token that makes accounts on a
-- host, a number of times until an expiry; the inviting account, if any, becomes a contact.
CREATE TABLE invites (
    token     TEXT    NOT NULL PRIMARY KEY,
    domain    TEXT    NOT NULL,
    inviter   TEXT,
    uses_left INTEGER NOT NULL,
    created   INTEGER NOT NULL,
    expires   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX invites_by_domain ON invites (domain, created);
