-- nexusd schema, migration 017: the identifier search tables of migration 016 carry the entity id (issue 11).
-- Search found fragments in person/group_identifier_search and joined every match back to the resolved table for
-- its entity: at 100k identifiers a common fragment ("muell", 3,140 values) hashed the whole resolved table, and
-- search latency went from ~50 to ~90 ms (docs/BENCHMARKS.md, 2026-12-04). Each row now holds its entity id, so a
-- search reads the search table alone. The id is not indexed and the tables leave a fifth of each page free
-- (fillfactor 80): the repoint of a merge, which updates it (storage's repoint statement, in the same statement as
-- the resolved table), is a HOT update that touches neither the primary key nor the trigram index.
DROP TABLE person_identifier_search;
DROP TABLE group_identifier_search;
CREATE TABLE person_identifier_search (
  identifier_type  text NOT NULL,
  identifier_value text NOT NULL,
  person_id        text NOT NULL,
  PRIMARY KEY (identifier_type, identifier_value)
) WITH (fillfactor = 80);
CREATE TABLE group_identifier_search (
  identifier_type  text NOT NULL,
  identifier_value text NOT NULL,
  group_id         text NOT NULL,
  PRIMARY KEY (identifier_type, identifier_value)
) WITH (fillfactor = 80);
INSERT INTO person_identifier_search SELECT identifier_type, identifier_value, person_id
  FROM resolved_person_identifiers;
INSERT INTO group_identifier_search SELECT identifier_type, identifier_value, group_id FROM resolved_group_identifiers;
CREATE INDEX idx_person_identifier_search_trgm ON person_identifier_search
  USING gin (identifier_value gin_trgm_ops) WITH (gin_pending_list_limit = 512);
CREATE INDEX idx_group_identifier_search_trgm ON group_identifier_search
  USING gin (identifier_value gin_trgm_ops) WITH (gin_pending_list_limit = 512);

-- The INSERT triggers of migration 016 copy the entity id too (the DELETE ones stay as they are).
CREATE OR REPLACE FUNCTION nexus_person_identifier_search_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO person_identifier_search SELECT identifier_type, identifier_value, person_id FROM added
    ON CONFLICT (identifier_type, identifier_value) DO UPDATE SET person_id = EXCLUDED.person_id;
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION nexus_group_identifier_search_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO group_identifier_search SELECT identifier_type, identifier_value, group_id FROM added
    ON CONFLICT (identifier_type, identifier_value) DO UPDATE SET group_id = EXCLUDED.group_id;
  RETURN NULL;
END $$;
