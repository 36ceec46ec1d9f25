-- Personal eventing (XEP-0163): each account's nodes with their configuration, and their
-- items; `seq` orders a node's items by publication (a republished id gets a new one).
CREATE TABLE pep_nodes (
    id                       INTEGER PRIMARY KEY,
    account_id               INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node                     TEXT    NOT NULL,
    access_model             TEXT    NOT NULL,
    -- Newline-separated.
    roster_groups_allowed    TEXT    NOT NULL,
    persist_items            INTEGER NOT NULL,
    -- NULL: "max", the server's limit.
    max_items                INTEGER,
    send_last_published_item TEXT    NOT NULL,
    UNIQUE (account_id, node)
);

CREATE TABLE pep_items (
    seq       INTEGER PRIMARY KEY,
    node_id   INTEGER NOT NULL REFERENCES pep_nodes (id) ON DELETE CASCADE,
    item_id   TEXT    NOT NULL,
    published INTEGER NOT NULL,
    payload   TEXT    NOT NULL,
    UNIQUE (node_id, item_id)
);
