-- nexusd schema, migration 005: API keys and the audit log (issue 13, access control).
--
-- A key is shown once at creation as nxk_<key_id>_<secret>; only the SHA-256 of the whole key is stored
-- (hex). Keys carry 256 bits of randomness, so a plain hash is enough: there is nothing to brute-force that a
-- slow password hash would protect. A key is usable while revoked_at is NULL and expires_at is NULL or later.
CREATE TABLE api_keys (
  key_id      text PRIMARY KEY,
  name        text NOT NULL,
  key_sha256  text NOT NULL,
  scopes      text[] NOT NULL,
  sources     text[] NOT NULL DEFAULT '{}',   -- ingest keys: sources they may write; empty = any
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL,                  -- key id of the creator, or 'cli'
  expires_at  timestamptz,
  revoked_at  timestamptz,
  CHECK (scopes <@ ARRAY['ingest', 'read', 'admin']::text[] AND cardinality(scopes) > 0)
);

-- Every admin operation and key-management action: who (key id, never the key), what, on what, and how it ended.
-- No secrets and no identifier values are written here.
CREATE TABLE audit_log (
  audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  key_id     text NOT NULL,                   -- '' when the call was made without a key (open mode), 'cli' for the CLI
  operation  text NOT NULL,
  target     text NOT NULL DEFAULT '',
  outcome    text NOT NULL
);
