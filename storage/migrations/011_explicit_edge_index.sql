-- nexusd schema, migration 011: find the rows that share an explicit edge_id (issue 15, previews of link-rule
-- changes). Migration 002 dropped the edge_id indexes because the resident engine no longer looked edges up
-- in the database. Re-resolving one component does: it follows every edge of its rows. An edge local to its
-- event ("<event_id>#...", what ingest derives for a mention without an edge_id; resolver::IsEventLocalEdge) is
-- found through the event_id index; only the explicit edge_ids a source may reuse across events need their own
-- index, and they are a small share of rows, so the index is partial (ingest pays for those rows only).
CREATE INDEX idx_person_identifiers_explicit_edge ON person_identifiers (edge_id)
  WHERE left(edge_id, length(event_id) + 1) <> event_id || '#';
CREATE INDEX idx_group_identifiers_explicit_edge ON group_identifiers (edge_id)
  WHERE left(edge_id, length(event_id) + 1) <> event_id || '#';
