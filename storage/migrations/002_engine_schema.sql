-- nexusd schema, migration 002: the resident resolution engine's access pattern.
--
-- Participants: a bigint surrogate key instead of an md5 text key. The resolver writes participant rows by COPY
-- and never looks them up by that key; an md5 text primary key cost a hash and a wide index entry per row.
ALTER TABLE person_participants DROP CONSTRAINT person_participants_pkey;
ALTER TABLE person_participants DROP COLUMN person_participant_id;
ALTER TABLE person_participants ADD COLUMN person_participant_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
ALTER TABLE group_participants DROP CONSTRAINT group_participants_pkey;
ALTER TABLE group_participants DROP COLUMN group_participant_id;
ALTER TABLE group_participants ADD COLUMN group_participant_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;

-- The engine keeps the identifiers seen under each edge_id in memory (loaded once with the graph); the
-- per-batch "prior" lookup that read these indexes is gone, and nothing else reads them.
DROP INDEX idx_person_identifiers_edge;
DROP INDEX idx_group_identifiers_edge;
