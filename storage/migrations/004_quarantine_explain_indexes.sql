-- ExplainPersonLink/ExplainGroupLink for an unlinked pair looked for open quarantined edges holding either
-- identifier or joining both entities with a predicate no index could serve: every open quarantined edge was
-- scanned (~590 ms at 90k). These GIN indexes serve the array-overlap pre-filters the query now starts with.
-- (Numbered 004: 003 exists on the main branch.)
CREATE INDEX idx_quarantined_edges_open_values ON quarantined_edges USING gin (identifier_values)
  WHERE released_at IS NULL;
CREATE INDEX idx_quarantined_edges_open_entities ON quarantined_edges USING gin (entity_ids)
  WHERE released_at IS NULL;
