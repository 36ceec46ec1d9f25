-- `salon invite create --admin`: an invitation whose account becomes an administrator, and the
-- accounts so made (checked by the XEP-0133 commands alongside the configuration's `admins`).
ALTER TABLE invites ADD COLUMN admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1));
CREATE TABLE account_admins (
    account_id INTEGER NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE
);
