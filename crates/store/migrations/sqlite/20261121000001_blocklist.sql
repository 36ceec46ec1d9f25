-- Blocking Command (XEP-0191): the addresses each account blocks (bare, full or domain JIDs,
-- as XEP-0016 items of type "jid"). Goes with the account.
CREATE TABLE blocklist_items (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    jid        TEXT    NOT NULL,
    PRIMARY KEY (account_id, jid)
) WITHOUT ROWID;
