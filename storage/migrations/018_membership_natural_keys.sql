-- nexusd schema, migration 018: the membership tables are keyed by what identifies their rows (issue 11: no md5 text
-- primary keys on hot tables, no index whose only reader is gone).
-- memberships.id ('mem_' || md5 of the two entity ids, computed in storage's upsert) and
-- resolved_membership_identifiers.id ('rmi_' || the core log's row id) were primary keys that no statement reads by:
-- the resolver finds memberships by (person_id, group_id) (its upsert's ON CONFLICT) or by one side, and resolved
-- membership rows by membership_identifier_id or by one side; the API only returns memberships.id. Both tables kept
-- a unique index on the key that is read besides, and every row the resolver or a rebuild writes, and every resolved
-- membership row a merge repoints (an update of an indexed column, never HOT), paid for both indexes.
-- The key that is read becomes the primary key in place of its unique constraint (PostgreSQL cannot turn one into
-- the other: the index is built once more, in the migration's transaction); the old primary key and its index go.
-- The id columns stay, NOT NULL and unindexed: migration 001 names them and the API returns memberships.id. The
-- rebuild copies the keys to its shadow tables from the catalog, as it does every index and constraint.
ALTER TABLE memberships
  DROP CONSTRAINT memberships_pkey,
  DROP CONSTRAINT memberships_person_id_group_id_key,
  ADD CONSTRAINT memberships_pkey PRIMARY KEY (person_id, group_id),
  ALTER COLUMN id SET NOT NULL;

ALTER TABLE resolved_membership_identifiers
  DROP CONSTRAINT resolved_membership_identifiers_pkey,
  DROP CONSTRAINT resolved_membership_identifiers_membership_identifier_id_key,
  ADD CONSTRAINT resolved_membership_identifiers_pkey PRIMARY KEY (membership_identifier_id),
  ALTER COLUMN id SET NOT NULL;
