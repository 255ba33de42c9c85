-- nexusd schema, migration 016: the identifier search index moves off the resolved identifier tables (issue 11).
-- A merge repoints every identifier of the absorbed entity (resolved_*_identifiers.person_id/group_id, an indexed
-- column, so the update is never HOT) and PostgreSQL then adds an entry to every index of the row, the trigram GIN
-- of migration 008 included, although the value it indexes did not change. At 1.1M identifiers that GIN was 1.2-1.9 s
-- of a 10,000-event batch of ~4 s (docs/BENCHMARKS.md, 2026-12-04).
-- {person,group}_identifier_search hold each resolved (type, value) once, with the trigram index; they change only
-- when a value appears in or leaves the resolved table, kept so by statement triggers on INSERT and DELETE (COPY
-- fires them too). Repoints (UPDATE) do not touch them. Search joins them back to the resolved table by its
-- primary key. The rebuild recreates these tables like the others, and the triggers with them.
CREATE TABLE person_identifier_search (
  identifier_type  text NOT NULL,
  identifier_value text NOT NULL,
  PRIMARY KEY (identifier_type, identifier_value)
);
CREATE TABLE group_identifier_search (LIKE person_identifier_search INCLUDING ALL);
INSERT INTO person_identifier_search SELECT identifier_type, identifier_value FROM resolved_person_identifiers;
INSERT INTO group_identifier_search SELECT identifier_type, identifier_value FROM resolved_group_identifiers;
CREATE INDEX idx_person_identifier_search_trgm ON person_identifier_search
  USING gin (identifier_value gin_trgm_ops) WITH (gin_pending_list_limit = 512);
CREATE INDEX idx_group_identifier_search_trgm ON group_identifier_search
  USING gin (identifier_value gin_trgm_ops) WITH (gin_pending_list_limit = 512);
DROP INDEX idx_resolved_person_identifiers_value_trgm;
DROP INDEX idx_resolved_group_identifiers_value_trgm;

CREATE FUNCTION nexus_person_identifier_search_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO person_identifier_search SELECT identifier_type, identifier_value FROM added ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
CREATE FUNCTION nexus_person_identifier_search_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM person_identifier_search s USING dropped d
   WHERE s.identifier_type = d.identifier_type AND s.identifier_value = d.identifier_value;
  RETURN NULL;
END $$;
CREATE FUNCTION nexus_group_identifier_search_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO group_identifier_search SELECT identifier_type, identifier_value FROM added ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
CREATE FUNCTION nexus_group_identifier_search_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM group_identifier_search s USING dropped d
   WHERE s.identifier_type = d.identifier_type AND s.identifier_value = d.identifier_value;
  RETURN NULL;
END $$;
CREATE TRIGGER identifier_search_add AFTER INSERT ON resolved_person_identifiers
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION nexus_person_identifier_search_add();
CREATE TRIGGER identifier_search_drop AFTER DELETE ON resolved_person_identifiers
  REFERENCING OLD TABLE AS dropped FOR EACH STATEMENT EXECUTE FUNCTION nexus_person_identifier_search_drop();
CREATE TRIGGER identifier_search_add AFTER INSERT ON resolved_group_identifiers
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION nexus_group_identifier_search_add();
CREATE TRIGGER identifier_search_drop AFTER DELETE ON resolved_group_identifiers
  REFERENCING OLD TABLE AS dropped FOR EACH STATEMENT EXECUTE FUNCTION nexus_group_identifier_search_drop();
