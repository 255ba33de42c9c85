-- nexusd schema, migration 014: the history of what link rules split and merged again (issue 15: "history records
-- the split: who, when, why, which parts"). One row per link-rule change that changed which entities the affected
-- identifiers form: the entities before and after (ids only, never identifier values), the rule, the caller's key.
-- Looked up by any id before or after. An erasure removes the rows of the rules it deletes and the erased ids.
CREATE TABLE entity_splits (
  split_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind       text NOT NULL CHECK (kind IN ('person', 'group')),
  at         timestamptz NOT NULL DEFAULT now(),
  cause      text NOT NULL CHECK (cause IN ('link_rule_added', 'link_rule_removed')),
  rule_id    bigint NOT NULL,
  reason     text NOT NULL,            -- the rule's
  by_key_id  text NOT NULL DEFAULT '', -- the caller's API key id ('' without authentication)
  before_ids text[] NOT NULL,
  after_ids  text[] NOT NULL
);
CREATE INDEX idx_entity_splits_ids ON entity_splits USING gin ((before_ids || after_ids));
