-- nexusd schema, migration 008: search (issue 16). SearchPersons/SearchGroups find entities by a prefix or fragment
-- of any resolved identifier value and of the final tables' name columns, with ILIKE '%q%' served by trigram GIN
-- indexes (pg_trgm ships with PostgreSQL; it is a trusted extension, so the database owner may create it).
-- The rebuild recreates every index of the tables it rebuilds from pg_get_indexdef, these included.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- GIN queues new entries in a pending list that every search reads linearly until (auto)vacuum merges it; at the
-- default 4 MB limit a full list cost ~200 ms per search at 100k identifiers (docs/BENCHMARKS.md). 512 kB keeps the
-- batching for the resolver's writes and bounds that cost.
CREATE INDEX idx_resolved_person_identifiers_value_trgm ON resolved_person_identifiers
  USING gin (identifier_value gin_trgm_ops) WITH (gin_pending_list_limit = 512);
CREATE INDEX idx_resolved_group_identifiers_value_trgm ON resolved_group_identifiers
  USING gin (identifier_value gin_trgm_ops) WITH (gin_pending_list_limit = 512);
-- Name-like traits: the resolved name (persons) and company name (groups) live in the final tables.
CREATE INDEX idx_persons_name_trgm ON persons USING gin (name gin_trgm_ops) WITH (gin_pending_list_limit = 512);
CREATE INDEX idx_groups_company_name_trgm ON groups USING gin (company_name gin_trgm_ops)
  WITH (gin_pending_list_limit = 512);
