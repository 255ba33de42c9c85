-- nexusd schema, migration 012: the core event log partitioned by month (issue 17).
--
-- `events` and the five per-event tables (person_identifiers, person_traits, group_identifiers, group_traits,
-- membership_identifiers) become range-partitioned on occurred_at, one partition per calendar month (UTC). A row
-- of a per-event table carries its event's occurred_at (ingest writes it so), so an event and all its rows sit in
-- the same month: retention is dropping one month of each table (nexus_drop_partitions_before), and a query
-- bounded in time, or joined on (event_id, occurred_at), reads only the partitions it needs.
--
-- A unique key of a partitioned table must contain the partition key, so event_id is no longer unique in
-- `events` by itself: `event_keys` (event_id -> occurred_at, not partitioned) holds that uniqueness, is what
-- ingest deduplicates on, and what quarantined_edges references. Row ids stay
-- globally unique (each table keeps one identity sequence) and keep their values.
--
-- There is no default partition: creating a month next to one must scan and lock it (ACCESS EXCLUSIVE), which
-- queues every reader of the log behind the longest running one. A month is created by CREATE TABLE + ATTACH
-- PARTITION, which takes only SHARE UPDATE EXCLUSIVE on the parent (readers and writers go on). Ingest creates
-- the month of every event it is about to write that has none (nexus_ensure_month), the resolver keeps months
-- ahead (nexus_ensure_partitions, hourly). Existing databases are converted in place: this migration copies
-- every row once, inside the migration transaction (its duration grows with the log; not measured at scale).

CREATE TABLE event_keys (
  event_id    text PRIMARY KEY,
  occurred_at timestamptz NOT NULL
);

ALTER TABLE person_identifiers DROP CONSTRAINT person_identifiers_event_id_fkey;
ALTER TABLE person_traits DROP CONSTRAINT person_traits_event_id_fkey;
ALTER TABLE group_identifiers DROP CONSTRAINT group_identifiers_event_id_fkey;
ALTER TABLE group_traits DROP CONSTRAINT group_traits_event_id_fkey;
ALTER TABLE membership_identifiers DROP CONSTRAINT membership_identifiers_event_id_fkey;
ALTER TABLE quarantined_edges DROP CONSTRAINT quarantined_edges_event_id_fkey;
-- Derived rows that only the resolver writes (as participants since migration 003): a foreign key into a
-- partitioned table would have to name occurred_at too.
ALTER TABLE resolved_membership_identifiers
  DROP CONSTRAINT resolved_membership_identifiers_membership_identifier_id_fkey;

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER TABLE person_identifiers RENAME TO person_identifiers_unpartitioned;
ALTER TABLE person_traits RENAME TO person_traits_unpartitioned;
ALTER TABLE group_identifiers RENAME TO group_identifiers_unpartitioned;
ALTER TABLE group_traits RENAME TO group_traits_unpartitioned;
ALTER TABLE membership_identifiers RENAME TO membership_identifiers_unpartitioned;

-- Same columns, defaults, identity and checks; indexes are created after the rows are copied.
CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (occurred_at);
CREATE TABLE person_identifiers
  (LIKE person_identifiers_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (occurred_at);
CREATE TABLE person_traits
  (LIKE person_traits_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (occurred_at);
CREATE TABLE group_identifiers
  (LIKE group_identifiers_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (occurred_at);
CREATE TABLE group_traits
  (LIKE group_traits_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (occurred_at);
CREATE TABLE membership_identifiers
  (LIKE membership_identifiers_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
  PARTITION BY RANGE (occurred_at);


-- The partitioned tables of the log, in the order ingest writes them (maintenance locks them in this order too).
CREATE FUNCTION nexus_log_tables() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['events', 'person_identifiers', 'person_traits', 'group_identifiers', 'group_traits',
               'membership_identifiers']
$$;

-- The month partition of `tbl` that starts at `month` (UTC), named <tbl>_pYYYYMM: created empty, then attached.
-- Returns whether it was created.
CREATE FUNCTION nexus_partition_month(tbl text, month date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  part text := tbl || '_p' || to_char(month, 'YYYYMM');
  lo timestamptz := date_trunc('month', month)::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (date_trunc('month', month) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
  -- pg_class through the statement's snapshot, not to_regclass(): after waiting for the advisory lock a cached
  -- catalog snapshot could miss the partition that the lock holder just committed.
  IF EXISTS (SELECT 1 FROM pg_class WHERE relname = part AND relnamespace = current_schema()::regnamespace) THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, tbl);
  EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', tbl, part, lo, hi);
  RETURN true;
END
$$;

-- The month partitions of every log table for the month starting `month` (ingest calls it before writing an
-- event of a month that has none). Serialized by a transaction-level advisory lock (safe behind a
-- transaction-pooling proxy and between processes). Returns the number of partitions created.
CREATE FUNCTION nexus_ensure_month(month date) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  t text;
  created integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(7263541820917);
  FOREACH t IN ARRAY nexus_log_tables() LOOP
    IF nexus_partition_month(t, month) THEN
      created := created + 1;
    END IF;
  END LOOP;
  RETURN created;
END
$$;

-- The month partitions of every log table from the current month to `months_ahead` months ahead. Returns the
-- number of partitions created.
CREATE FUNCTION nexus_ensure_partitions(months_ahead integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  now_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
  m date;
  created integer := 0;
BEGIN
  FOR m IN
    SELECT d::date FROM generate_series(now_month, now_month + make_interval(months => greatest(months_ahead, 0)),
                                        interval '1 month') AS d
  LOOP
    created := created + nexus_ensure_month(m);
  END LOOP;
  RETURN created;
END
$$;

-- Retention: drops the month partitions of every log table that end on or before `before` (UTC, a month
-- start), and the event_keys and quarantined edges of the events dropped. Resolved and final tables still
-- reflect the dropped events until the next rebuild (`nexusd --rebuild` or the admin rebuild operation).
-- Returns the number of partitions dropped.
CREATE FUNCTION nexus_drop_partitions_before(before date) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  cutoff timestamptz := date_trunc('month', before)::timestamp AT TIME ZONE 'UTC';
  t text;
  p record;
  dropped integer := 0;
BEGIN
  PERFORM pg_advisory_xact_lock(7263541820917);
  DELETE FROM quarantined_edges WHERE occurred_at < cutoff;
  FOREACH t IN ARRAY nexus_log_tables() LOOP
    FOR p IN
      SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = t::regclass AND c.relname ~ ('^' || t || '_p[0-9]{6}$')
    LOOP
      IF to_date(right(p.relname, 6), 'YYYYMM') + interval '1 month' <= date_trunc('month', before) THEN
        EXECUTE format('DROP TABLE %I', p.relname);
        dropped := dropped + 1;
      END IF;
    END LOOP;
  END LOOP;
  DELETE FROM event_keys WHERE occurred_at < cutoff;
  RETURN dropped;
END
$$;

-- Month partitions for every month the existing log covers, then the rows.
SELECT nexus_ensure_month(m)
  FROM (SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS m FROM events_unpartitioned
        UNION SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM person_identifiers_unpartitioned
        UNION SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM person_traits_unpartitioned
        UNION SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM group_identifiers_unpartitioned
        UNION SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM group_traits_unpartitioned
        UNION SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date
                FROM membership_identifiers_unpartitioned) x
 ORDER BY m;
SELECT nexus_ensure_partitions(3);

INSERT INTO event_keys SELECT event_id, occurred_at FROM events_unpartitioned;
INSERT INTO events SELECT * FROM events_unpartitioned;
INSERT INTO person_identifiers OVERRIDING SYSTEM VALUE SELECT * FROM person_identifiers_unpartitioned;
INSERT INTO person_traits OVERRIDING SYSTEM VALUE SELECT * FROM person_traits_unpartitioned;
INSERT INTO group_identifiers OVERRIDING SYSTEM VALUE SELECT * FROM group_identifiers_unpartitioned;
INSERT INTO group_traits OVERRIDING SYSTEM VALUE SELECT * FROM group_traits_unpartitioned;
INSERT INTO membership_identifiers OVERRIDING SYSTEM VALUE SELECT * FROM membership_identifiers_unpartitioned;

-- Identity sequences continue after the copied ids.
SELECT setval(pg_get_serial_sequence(t, 'id'), coalesce(n, 0) + 1, false)
  FROM (VALUES ('person_identifiers', (SELECT max(id) FROM person_identifiers)),
               ('person_traits', (SELECT max(id) FROM person_traits)),
               ('group_identifiers', (SELECT max(id) FROM group_identifiers)),
               ('group_traits', (SELECT max(id) FROM group_traits)),
               ('membership_identifiers', (SELECT max(id) FROM membership_identifiers))) AS v(t, n);

DROP TABLE events_unpartitioned, person_identifiers_unpartitioned, person_traits_unpartitioned,
  group_identifiers_unpartitioned, group_traits_unpartitioned, membership_identifiers_unpartitioned;

-- The indexes of migrations 001 and 011, now partitioned (each partition has its own); primary keys name
-- occurred_at as a partitioned unique key must.
ALTER TABLE events ADD PRIMARY KEY (event_id, occurred_at);
CREATE INDEX idx_events_occurred_at ON events (occurred_at);
CREATE INDEX idx_events_source ON events (source);
CREATE INDEX idx_events_ingest_order ON events (_ingest_xid);
ALTER TABLE person_identifiers ADD PRIMARY KEY (id, occurred_at);
CREATE INDEX idx_person_identifiers_type_value ON person_identifiers (identifier_type, identifier_value);
CREATE INDEX idx_person_identifiers_event ON person_identifiers (event_id);
CREATE INDEX idx_person_identifiers_explicit_edge ON person_identifiers (edge_id)
  WHERE left(edge_id, length(event_id) + 1) <> event_id || '#';
ALTER TABLE person_traits ADD PRIMARY KEY (id, occurred_at);
CREATE INDEX idx_person_traits_event ON person_traits (event_id);
ALTER TABLE group_identifiers ADD PRIMARY KEY (id, occurred_at);
CREATE INDEX idx_group_identifiers_type_value ON group_identifiers (identifier_type, identifier_value);
CREATE INDEX idx_group_identifiers_event ON group_identifiers (event_id);
CREATE INDEX idx_group_identifiers_explicit_edge ON group_identifiers (edge_id)
  WHERE left(edge_id, length(event_id) + 1) <> event_id || '#';
ALTER TABLE group_traits ADD PRIMARY KEY (id, occurred_at);
CREATE INDEX idx_group_traits_event ON group_traits (event_id);
ALTER TABLE membership_identifiers ADD PRIMARY KEY (id, occurred_at);
CREATE INDEX idx_membership_identifiers_event ON membership_identifiers (event_id);

-- No foreign keys from the partitioned tables: attaching a month to a table with one takes SHARE ROW EXCLUSIVE
-- on the referenced table, which waits for every running ingest and holds up every new one meanwhile. Ingest
-- writes an event's key, event and rows in one transaction; erasure and retention delete them together.
ALTER TABLE quarantined_edges ADD FOREIGN KEY (event_id) REFERENCES event_keys (event_id);
ANALYZE event_keys, events, person_identifiers, person_traits, group_identifiers, group_traits,
  membership_identifiers;
