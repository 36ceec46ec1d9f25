-- HTTP File Upload (XEP-0363): one row per completed upload. Not tied to accounts: anonymous
-- visitors have none, and an expired file must be found (and deleted from disk) after a restart.
-- Times are seconds since the Unix epoch; `expires_at` NULL means kept until deleted by hand.
CREATE TABLE uploads (
    id           TEXT    PRIMARY KEY,
    owner        TEXT    NOT NULL,
    quota_key    TEXT    NOT NULL,
    filename     TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER
);

-- The daily quota: bytes one uploader stored since a time.
CREATE INDEX uploads_quota ON uploads (quota_key, created_at);
-- The expiry sweep.
CREATE INDEX uploads_expiry ON uploads (expires_at) WHERE expires_at IS NOT NULL;
