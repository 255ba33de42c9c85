-- nexusd schema, migration 006: typed and null trait values (issue 14, trait rules).
--
-- A trait value is a JSON string, number, boolean or null. trait_value keeps its text form (numbers as sent, in
-- shortest round-trip form; booleans 'true'/'false'; NULL for null) and value_type says which it is, so the
-- seed's tables and columns keep their names and text readers keep working. A null row is an unset: when it
-- wins (resolved_*_traits holds it, with trait_value NULL), the trait is cleared, and it keeps beating the
-- value it cleared. Rows written before this migration are strings. Adding a column with a constant default
-- rewrites nothing (PostgreSQL 11+), so existing databases upgrade in place.
ALTER TABLE person_traits
  ALTER COLUMN trait_value DROP NOT NULL,
  ADD COLUMN value_type text NOT NULL DEFAULT 'string',
  ADD CONSTRAINT person_traits_value_type CHECK (value_type IN ('string', 'number', 'boolean', 'null')
    AND (value_type = 'null') = (trait_value IS NULL));
ALTER TABLE group_traits
  ALTER COLUMN trait_value DROP NOT NULL,
  ADD COLUMN value_type text NOT NULL DEFAULT 'string',
  ADD CONSTRAINT group_traits_value_type CHECK (value_type IN ('string', 'number', 'boolean', 'null')
    AND (value_type = 'null') = (trait_value IS NULL));
ALTER TABLE resolved_person_traits
  ALTER COLUMN trait_value DROP NOT NULL,
  ADD COLUMN value_type text NOT NULL DEFAULT 'string';
ALTER TABLE resolved_group_traits
  ALTER COLUMN trait_value DROP NOT NULL,
  ADD COLUMN value_type text NOT NULL DEFAULT 'string';
