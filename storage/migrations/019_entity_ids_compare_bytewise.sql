-- nexusd schema, migration 019: entity ids compare byte by byte (COLLATE "C"), whatever the database's collation
-- (issue 11: internal keys that are cheap to index).
-- Entity ids (per_/grp_ and a hash, resolver::MakeEntityId) are opaque ASCII keys: they are only compared for
-- equality and kept in index order, and no order of theirs means anything to a reader. Under a database collation
-- other than C, PostgreSQL compares every pair through the locale (strcoll) and does not use abbreviated keys when
-- it sorts them. Measured on the 1.1M-identifier probe database (C.UTF-8, 2026-12-06): the index on
-- resolved_person_identifiers (person_id) built in 2.3 s, and in 0.84-0.88 s with COLLATE "C"; a rebuild builds
-- such an index on every resolved and final table. Under a linguistic collation (en_US.UTF-8) each comparison costs
-- more still. In a database created with the C collation (the embedded PostgreSQL: initdb --no-locale) nothing
-- changes but the declared collation.
-- Every column that holds an entity id changes together, so that each comparison of two of them, and of one with a
-- query parameter (PostgreSQL takes the column's collation over the default one), can use the indexes. Their values
-- are ASCII, so every order they are listed in stays the same under C.UTF-8 and is byte order under any collation.
-- The indexes on these columns are built again (the tables are not rewritten): on a large database that takes
-- about as long as a rebuild's indexing phase, with the tables locked. Identifier values keep the database's
-- collation: readers see and sort them.
ALTER TABLE persons ALTER COLUMN person_id TYPE text COLLATE "C";
ALTER TABLE groups ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE resolved_person_identifiers ALTER COLUMN person_id TYPE text COLLATE "C";
ALTER TABLE resolved_group_identifiers ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE person_identifier_search ALTER COLUMN person_id TYPE text COLLATE "C";
ALTER TABLE group_identifier_search ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE resolved_person_traits ALTER COLUMN person_id TYPE text COLLATE "C";
ALTER TABLE resolved_group_traits ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE person_participants ALTER COLUMN person_id TYPE text COLLATE "C";
ALTER TABLE group_participants ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE memberships
  ALTER COLUMN person_id TYPE text COLLATE "C",
  ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE resolved_membership_identifiers
  ALTER COLUMN person_id TYPE text COLLATE "C",
  ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE person_id_aliases
  ALTER COLUMN old_id TYPE text COLLATE "C",
  ALTER COLUMN new_id TYPE text COLLATE "C",
  ALTER COLUMN merged_into_id TYPE text COLLATE "C";
ALTER TABLE group_id_aliases
  ALTER COLUMN old_id TYPE text COLLATE "C",
  ALTER COLUMN new_id TYPE text COLLATE "C",
  ALTER COLUMN merged_into_id TYPE text COLLATE "C";
ALTER TABLE entity_id_overrides ALTER COLUMN entity_id TYPE text COLLATE "C";
