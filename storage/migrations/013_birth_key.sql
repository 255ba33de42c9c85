-- nexusd schema, migration 013: an entity's birth order becomes a position in the log (issue 15).
-- Birth order decides which of two entities of equal size survives their merge (the older one keeps its id). It
-- was a dense counter of births (birth_seq, resolver_state.next_birth_seq), which a component re-resolved on its
-- own (an unlink) cannot reproduce: the value a rebuild gives one of its parts depends on every birth elsewhere in
-- the log before it. It is now where the entity was born: (ingest xid, first row of the founding edge in its
-- event, the founder's first row in that edge), resolver::BirthKey. That is the order the engine consumes the log
-- in (ingest writes one transaction's rows in event_id order), so every comparison the counter made comes out the
-- same and no id changes.
-- Only the engine can tell which row founded an existing entity: the first resolver batch after this migration
-- rebuilds the resolved tables (resolver_state.birth_keys_pending); readers see the old tables until it commits.
ALTER TABLE persons ADD COLUMN birth_xid bigint, ADD COLUMN birth_edge_row bigint, ADD COLUMN birth_row bigint;
ALTER TABLE groups ADD COLUMN birth_xid bigint, ADD COLUMN birth_edge_row bigint, ADD COLUMN birth_row bigint;
ALTER TABLE persons DROP COLUMN birth_seq;
ALTER TABLE groups DROP COLUMN birth_seq;
ALTER TABLE resolver_state DROP COLUMN next_birth_seq,
  ADD COLUMN birth_keys_pending boolean NOT NULL DEFAULT false;
UPDATE resolver_state SET birth_keys_pending = EXISTS (SELECT 1 FROM persons) OR EXISTS (SELECT 1 FROM groups);
