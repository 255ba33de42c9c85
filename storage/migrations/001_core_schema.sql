-- nexusd schema, migration 001: every table of the schema reference (seed) plus the service's own state.
-- Seed names are kept; STRING -> text, TIMESTAMP -> timestamptz, NUMERIC -> numeric.
-- Record ids of the core log are bigint identities (ingest order within a transaction; trait tie-break).

---------------------------------------------------------------------------------------------------
-- Core event log: append-only, written by ingest only.
---------------------------------------------------------------------------------------------------
CREATE TABLE events (
  event_id          text PRIMARY KEY,
  occurred_at       timestamptz NOT NULL,
  event_name        text NOT NULL,
  event_description text,
  event_type        text NOT NULL,
  source            text NOT NULL,
  value             numeric,
  value_unit        text,
  -- Start time of the ingest transaction (now()); for lag and display.
  _ingested_at      timestamptz NOT NULL DEFAULT now(),
  -- The ingest transaction's id: the resolver consumes events in (_ingest_xid, event_id) order and only
  -- below the oldest running transaction, so a late commit can never be skipped (PITFALLS: watermark race).
  _ingest_xid       xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX idx_events_occurred_at ON events (occurred_at);
CREATE INDEX idx_events_source ON events (source);
-- Only _ingest_xid: an index that also held event_id would be picked (with stale statistics) for the foreign-key
-- checks' `event_id = $1` and scanned whole per row; the primary key must be the only index on event_id.
CREATE INDEX idx_events_ingest_order ON events (_ingest_xid);

CREATE TABLE person_identifiers (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id             text NOT NULL REFERENCES events (event_id),
  edge_id              text NOT NULL,
  identifier_type      text NOT NULL,
  identifier_value     text NOT NULL,   -- normalized
  identifier_value_raw text NOT NULL,   -- as received
  role                 text,            -- part in the event; NULL for rows implied by a membership
  source               text NOT NULL,
  occurred_at          timestamptz NOT NULL,
  _ingested_at         timestamptz NOT NULL DEFAULT now(),
  is_blocked           boolean NOT NULL DEFAULT false,
  blocked_reason       text
);
CREATE INDEX idx_person_identifiers_type_value ON person_identifiers (identifier_type, identifier_value);
CREATE INDEX idx_person_identifiers_event ON person_identifiers (event_id);
CREATE INDEX idx_person_identifiers_edge ON person_identifiers (edge_id);

CREATE TABLE person_traits (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id     text NOT NULL REFERENCES events (event_id),
  edge_id      text NOT NULL,
  trait_name   text NOT NULL,
  trait_value  text NOT NULL,
  source       text NOT NULL,
  occurred_at  timestamptz NOT NULL,
  _ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_person_traits_event ON person_traits (event_id);

CREATE TABLE group_identifiers (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id             text NOT NULL REFERENCES events (event_id),
  edge_id              text NOT NULL,
  identifier_type      text NOT NULL,
  identifier_value     text NOT NULL,
  identifier_value_raw text NOT NULL,
  role                 text,
  source               text NOT NULL,
  occurred_at          timestamptz NOT NULL,
  _ingested_at         timestamptz NOT NULL DEFAULT now(),
  is_blocked           boolean NOT NULL DEFAULT false,
  blocked_reason       text
);
CREATE INDEX idx_group_identifiers_type_value ON group_identifiers (identifier_type, identifier_value);
CREATE INDEX idx_group_identifiers_event ON group_identifiers (event_id);
CREATE INDEX idx_group_identifiers_edge ON group_identifiers (edge_id);

CREATE TABLE group_traits (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id     text NOT NULL REFERENCES events (event_id),
  edge_id      text NOT NULL,
  trait_name   text NOT NULL,
  trait_value  text NOT NULL,
  source       text NOT NULL,
  occurred_at  timestamptz NOT NULL,
  _ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_group_traits_event ON group_traits (event_id);

CREATE TABLE membership_identifiers (
  id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id               text NOT NULL REFERENCES events (event_id),
  person_identifier      text NOT NULL,
  person_identifier_type text NOT NULL,
  group_identifier       text NOT NULL,
  group_identifier_type  text NOT NULL,
  role                   text,
  source                 text NOT NULL,
  occurred_at            timestamptz NOT NULL,
  _ingested_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_membership_identifiers_event ON membership_identifiers (event_id);

---------------------------------------------------------------------------------------------------
-- Identity resolution layer: written by the resolver only (one at a time, advisory lock).
---------------------------------------------------------------------------------------------------
CREATE TABLE resolved_person_identifiers (
  person_id        text NOT NULL,
  identifier_type  text NOT NULL,
  identifier_value text NOT NULL,
  source           text NOT NULL,        -- of the earliest occurrence
  occurred_at      timestamptz NOT NULL, -- earliest occurrence
  last_seen_at     timestamptz NOT NULL, -- latest occurrence (for "most recent email/phone")
  PRIMARY KEY (identifier_type, identifier_value)
);
CREATE INDEX idx_resolved_person_identifiers_person ON resolved_person_identifiers (person_id);

CREATE TABLE resolved_person_traits (
  person_id    text NOT NULL,
  trait_name   text NOT NULL,
  trait_value  text NOT NULL,
  source       text NOT NULL,
  occurred_at  timestamptz NOT NULL,
  -- tie-break of "latest": (occurred_at, _ingested_at, trait_row_id)
  _ingested_at timestamptz NOT NULL,
  trait_row_id bigint NOT NULL,
  PRIMARY KEY (person_id, trait_name)
);

CREATE TABLE resolved_group_identifiers (
  group_id         text NOT NULL,
  identifier_type  text NOT NULL,
  identifier_value text NOT NULL,
  source           text NOT NULL,
  occurred_at      timestamptz NOT NULL,
  last_seen_at     timestamptz NOT NULL,
  PRIMARY KEY (identifier_type, identifier_value)
);
CREATE INDEX idx_resolved_group_identifiers_group ON resolved_group_identifiers (group_id);

CREATE TABLE resolved_group_traits (
  group_id     text NOT NULL,
  trait_name   text NOT NULL,
  trait_value  text NOT NULL,
  source       text NOT NULL,
  occurred_at  timestamptz NOT NULL,
  _ingested_at timestamptz NOT NULL,
  trait_row_id bigint NOT NULL,
  PRIMARY KEY (group_id, trait_name)
);

-- One row per membership_identifiers row whose two sides resolved.
CREATE TABLE resolved_membership_identifiers (
  id                       text PRIMARY KEY,
  membership_identifier_id bigint NOT NULL UNIQUE REFERENCES membership_identifiers (id),
  person_id                text NOT NULL,
  group_id                 text NOT NULL,
  role                     text,
  source                   text NOT NULL,
  occurred_at              timestamptz NOT NULL,
  _ingested_at             timestamptz NOT NULL
);
CREATE INDEX idx_resolved_membership_identifiers_person ON resolved_membership_identifiers (person_id);
CREATE INDEX idx_resolved_membership_identifiers_group ON resolved_membership_identifiers (group_id);

---------------------------------------------------------------------------------------------------
-- Final tables.
---------------------------------------------------------------------------------------------------
CREATE TABLE persons (
  person_id        text PRIMARY KEY,
  email            text,
  name             text,
  phone            text,
  title            text,
  timezone         text,
  _last_updated    timestamptz NOT NULL DEFAULT now(),
  -- resolver bookkeeping: merge survivor choice (more identifiers wins, then older)
  identifier_count bigint NOT NULL DEFAULT 0,
  birth_seq        bigint NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_by_event_id text
);

CREATE TABLE groups (
  group_id         text PRIMARY KEY,
  domain           text,
  company_name     text,
  industry         text,
  company_size     text,
  shopify_id       text,
  _last_updated    timestamptz NOT NULL DEFAULT now(),
  identifier_count bigint NOT NULL DEFAULT 0,
  birth_seq        bigint NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  created_by_event_id text
);

CREATE TABLE memberships (
  id               text PRIMARY KEY,
  person_id        text NOT NULL,
  group_id         text NOT NULL,
  role             text,
  source           text NOT NULL,
  established_at   timestamptz NOT NULL,
  _last_updated    timestamptz NOT NULL DEFAULT now(),
  -- the occurrence the current role/source came from, (occurred_at, _ingested_at, row id) order
  role_occurred_at timestamptz NOT NULL,
  role_ingested_at timestamptz NOT NULL,
  role_row_id      bigint NOT NULL,
  UNIQUE (person_id, group_id)
);
CREATE INDEX idx_memberships_group ON memberships (group_id, person_id);

CREATE TABLE person_participants (
  person_participant_id text PRIMARY KEY,
  event_id              text NOT NULL REFERENCES events (event_id),
  person_id             text NOT NULL,
  role                  text NOT NULL DEFAULT '',
  -- denormalized from events so a timeline page is one index range scan
  occurred_at           timestamptz NOT NULL,
  event_type            text NOT NULL,
  source                text NOT NULL,
  UNIQUE (person_id, event_id, role)
);
CREATE INDEX idx_person_participants_timeline ON person_participants (person_id, occurred_at DESC, event_id DESC);
CREATE INDEX idx_person_participants_event ON person_participants (event_id);

CREATE TABLE group_participants (
  group_participant_id text PRIMARY KEY,
  event_id             text NOT NULL REFERENCES events (event_id),
  group_id             text NOT NULL,
  role                 text NOT NULL DEFAULT '',
  occurred_at          timestamptz NOT NULL,
  event_type           text NOT NULL,
  source               text NOT NULL,
  UNIQUE (group_id, event_id, role)
);
CREATE INDEX idx_group_participants_timeline ON group_participants (group_id, occurred_at DESC, event_id DESC);
CREATE INDEX idx_group_participants_event ON group_participants (event_id);

---------------------------------------------------------------------------------------------------
-- Resolver state: watermark, id aliases (merge log), quarantined edges.
---------------------------------------------------------------------------------------------------
CREATE TABLE resolver_state (
  singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  watermark_xid        xid8 NOT NULL DEFAULT '0',
  watermark_event_id   text NOT NULL DEFAULT '',
  watermark_ingested_at timestamptz,
  next_birth_seq       bigint NOT NULL DEFAULT 1,
  -- per-installation salt of entity ids (an id is derived from the component's first identifier)
  id_salt              text NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text),
  batches_total        bigint NOT NULL DEFAULT 0,
  persons_count        bigint NOT NULL DEFAULT 0,  -- maintained by the resolver (cheap gauges)
  groups_count         bigint NOT NULL DEFAULT 0,
  last_batch_at        timestamptz
);
INSERT INTO resolver_state DEFAULT VALUES;

-- Every absorbed id -> the surviving id (kept pointing at the final survivor).
CREATE TABLE person_id_aliases (
  old_id                   text PRIMARY KEY,
  new_id                   text NOT NULL,
  merged_into_id           text NOT NULL,   -- the id it was merged into at the time
  merged_at                timestamptz NOT NULL DEFAULT now(),
  event_id                 text,
  edge_id                  text,
  absorbed_identifier_count bigint NOT NULL DEFAULT 0
);
CREATE INDEX idx_person_id_aliases_new ON person_id_aliases (new_id);
CREATE INDEX idx_person_id_aliases_merged_into ON person_id_aliases (merged_into_id);

CREATE TABLE group_id_aliases (
  old_id                   text PRIMARY KEY,
  new_id                   text NOT NULL,
  merged_into_id           text NOT NULL,
  merged_at                timestamptz NOT NULL DEFAULT now(),
  event_id                 text,
  edge_id                  text,
  absorbed_identifier_count bigint NOT NULL DEFAULT 0
);
CREATE INDEX idx_group_id_aliases_new ON group_id_aliases (new_id);
CREATE INDEX idx_group_id_aliases_merged_into ON group_id_aliases (merged_into_id);

-- Edges that would have broken a cap: not applied, kept for operators (list / release).
CREATE TABLE quarantined_edges (
  quarantine_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind           text NOT NULL CHECK (kind IN ('person', 'group')),
  event_id       text NOT NULL REFERENCES events (event_id),
  edge_id        text NOT NULL,
  source         text NOT NULL,
  occurred_at    timestamptz NOT NULL,
  identifier_types  text[] NOT NULL,
  identifier_values text[] NOT NULL,
  reason         text NOT NULL,
  entity_ids     text[] NOT NULL,
  quarantined_at timestamptz NOT NULL DEFAULT now(),
  released_at    timestamptz,
  UNIQUE (kind, event_id, edge_id)
);
CREATE INDEX idx_quarantined_edges_open ON quarantined_edges (kind, quarantine_id) WHERE released_at IS NULL;
