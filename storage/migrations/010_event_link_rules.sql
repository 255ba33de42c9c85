-- nexusd schema, migration 010: a suppressed-edge link rule may name a whole event (issue 15, "this event's links
-- are wrong"). edge_id NULL: every edge of the event is suppressed. A link that another event also asserts stays,
-- because resolution replays the log without what the rules forbid: only links nothing else asserts are removed.
ALTER TABLE link_rules DROP CONSTRAINT link_rules_check;
ALTER TABLE link_rules ADD CONSTRAINT link_rules_check CHECK (
  (rule_type = 'cannot_link' AND a_type IS NOT NULL AND a_value IS NOT NULL AND b_type IS NOT NULL
   AND b_value IS NOT NULL AND (a_type, a_value) < (b_type, b_value))
  OR (rule_type = 'suppress_edge' AND event_id IS NOT NULL));
DROP INDEX idx_link_rules_edge;
CREATE UNIQUE INDEX idx_link_rules_edge ON link_rules (kind, event_id, coalesce(edge_id, ''))
  WHERE rule_type = 'suppress_edge';
