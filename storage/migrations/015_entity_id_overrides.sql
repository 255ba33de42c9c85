-- nexusd schema, migration 015: the ids splits move (issue 15: "the part with the most identifiers keeps the
-- entity id; the others get new ids derived deterministically, so a rebuild gives the same ids").
-- A component's id is its founder's (resolver::MakeEntityId) unless a row here names its birth (the founding row's
-- log position, as persons/groups.birth_*): then it gets entity_id. A split whose largest part is not the founder's
-- writes two rows: that part's birth -> the old id, the founder's part -> an id derived from the old one
-- (resolver::Engine::SplitIds). Every resolution path honours them (batches, unlink replays, rebuilds); for one
-- birth the latest row wins. Rows of a link rule go with it (removing the rule re-merges under the old id); rows
-- of an erasure or of a rebuild that split entities (a changed blocklist or caps) have rule_id NULL and stay. No
-- identifier values: births are row positions.
CREATE TABLE entity_id_overrides (
  override_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind           text NOT NULL CHECK (kind IN ('person', 'group')),
  birth_xid      bigint NOT NULL,
  birth_edge_row bigint NOT NULL,
  birth_row      bigint NOT NULL,
  entity_id      text NOT NULL,
  rule_id        bigint REFERENCES link_rules (rule_id) ON DELETE CASCADE,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_entity_id_overrides_entity ON entity_id_overrides (kind, entity_id);
