-- nexusd schema, migration 009: undoing wrong merges (link rules), erasure (GDPR Art. 17 / CCPA) with its audit,
-- and the ingest suppression list of erased identifiers (issue 15).
--
-- Link rules, honoured by every resolution path (batches, graph load, rebuild): an edge that a rule forbids is
-- quarantined with the rule as reason ("cannot-link rule 12", "suppressed by link rule 12").
--  * cannot_link: identifiers a and b (normalized values; stored with a <= b) never end up in one entity;
--  * suppress_edge: the edge (event_id, edge_id) is never applied.
-- Adding or removing a rule re-resolves with the rule (a rebuild, inside the same transaction as the rule).
-- Erasure deletes the rules that name an erased identifier (they hold its value).
CREATE TABLE link_rules (
  rule_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('person', 'group')),
  rule_type   text NOT NULL CHECK (rule_type IN ('cannot_link', 'suppress_edge')),
  a_type      text,
  a_value     text,
  b_type      text,
  b_value     text,
  event_id    text,
  edge_id     text,
  reason      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL DEFAULT '',   -- key id of the caller ('' in open mode)
  CHECK ((rule_type = 'cannot_link' AND a_type IS NOT NULL AND a_value IS NOT NULL AND b_type IS NOT NULL
          AND b_value IS NOT NULL AND (a_type, a_value) < (b_type, b_value))
      OR (rule_type = 'suppress_edge' AND event_id IS NOT NULL AND edge_id IS NOT NULL))
);
CREATE UNIQUE INDEX idx_link_rules_pair ON link_rules (kind, a_type, a_value, b_type, b_value)
  WHERE rule_type = 'cannot_link';
CREATE UNIQUE INDEX idx_link_rules_edge ON link_rules (kind, event_id, edge_id) WHERE rule_type = 'suppress_edge';

-- One erasure request: idempotent by the client's request_id (a re-sent request returns this record and erases
-- nothing again). No identifier value is stored: inputs and erased identifiers are kept as keyed hashes
-- (hex SHA-256 of resolver_state.id_salt, kind, type and value; see storage/resolver_store.cc IdentifierHashSql).
CREATE TABLE erasures (
  operation_id     text PRIMARY KEY,
  request_id       text NOT NULL UNIQUE,
  at               timestamptz NOT NULL DEFAULT clock_timestamp(),
  key_id           text NOT NULL,            -- the caller's key id ('' in open mode)
  input_hashes     text[] NOT NULL,          -- per input, in request order
  outcomes         text[] NOT NULL,          -- per input: erased | not_found | failed
  erased_hashes    text[] NOT NULL,          -- every identifier erased
  count_tables     text[] NOT NULL,          -- rows deleted per table: the tables ...
  count_rows       bigint[] NOT NULL,        -- ... and their counts
  entities         bigint NOT NULL DEFAULT 0 -- entities affected
);

-- Identifiers erased and not to come back: ingest drops rows carrying them (counted in the ingest response as
-- suppressed_identifiers and in nexus_ingest_suppressed_identifiers_total) until an operator lifts the entry.
CREATE TABLE suppressed_identifiers (
  kind          text NOT NULL CHECK (kind IN ('person', 'group')),
  id_hash       text NOT NULL,
  operation_id  text NOT NULL,
  suppressed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, id_hash)
);
