-- Subscription pre-approval (RFC 6121 §3.4): the user approved the contact's subscription
-- before the contact asked for it.
ALTER TABLE roster_items ADD COLUMN approved INTEGER NOT NULL DEFAULT 0;
