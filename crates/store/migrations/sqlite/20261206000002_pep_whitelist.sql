-- Personal eventing: the members of a whitelist node (XEP-0060 §8.9), bare JIDs the owner
-- lets read it. Newline-separated.
ALTER TABLE pep_nodes ADD COLUMN whitelist TEXT NOT NULL DEFAULT '';
