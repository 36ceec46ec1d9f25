-- Private XML storage (XEP-0049): one serialised element per account and namespace.
CREATE TABLE private_xml (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    namespace  TEXT    NOT NULL,
    xml        TEXT    NOT NULL,
    PRIMARY KEY (account_id, namespace)
) WITHOUT ROWID;
