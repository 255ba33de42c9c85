---------------------------------------------------------------------------------------------------
-- nexusd schema, migration 003: less write cost per resolver batch (issue 11), measured by the per-statement
-- breakdown in docs/BENCHMARKS.md (copy_participants, repoint_participants, update_identifiers, update_finals
-- and copy_aliases led the 10,000-event batch at 1M identifiers).
--
-- Participants: every row inserted checked a foreign key into events and maintained four indexes; every
-- participant moved by a merge (a non-HOT update) inserted into all of them again. Kept: the bigint primary
-- key and the timeline index, which the timeline query reads. Dropped:
--  * the (entity, event_id, role) unique constraint: the engine writes each (entity, event, role) once and
--    the merge path drops duplicates itself, probing the timeline index (entity, occurred_at, event_id);
--    tests/pg/engine_pgtest.cc compares every participant row with a rebuild;
--  * the event_id index: no query reads participants by event;
--  * the foreign key into events: participants are derived rows that only the resolver writes, from events
--    it has just read; the core log keeps its foreign keys.
ALTER TABLE person_participants DROP CONSTRAINT person_participants_person_id_event_id_role_key;
ALTER TABLE person_participants DROP CONSTRAINT person_participants_event_id_fkey;
DROP INDEX idx_person_participants_event;
ALTER TABLE group_participants DROP CONSTRAINT group_participants_group_id_event_id_role_key;
ALTER TABLE group_participants DROP CONSTRAINT group_participants_event_id_fkey;
DROP INDEX idx_group_participants_event;

-- Merge log: nothing looks aliases up by merged_into_id (explain and history go by old_id and new_id).
DROP INDEX idx_person_id_aliases_merged_into;
DROP INDEX idx_group_id_aliases_merged_into;

-- Rows the resolver updates in place (last_seen_at, final columns, counts, trait winners, membership roles)
-- change no indexed column: with free space on the page PostgreSQL updates them HOT, without touching any
-- index. New pages are filled to 80%; the rebuild copies these settings to its shadow tables.
ALTER TABLE resolved_person_identifiers SET (fillfactor = 80);
ALTER TABLE resolved_group_identifiers SET (fillfactor = 80);
ALTER TABLE resolved_person_traits SET (fillfactor = 80);
ALTER TABLE resolved_group_traits SET (fillfactor = 80);
ALTER TABLE persons SET (fillfactor = 80);
ALTER TABLE groups SET (fillfactor = 80);
ALTER TABLE memberships SET (fillfactor = 80);
