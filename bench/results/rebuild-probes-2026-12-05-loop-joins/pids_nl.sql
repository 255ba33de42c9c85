SET work_mem='256MB'; SET jit=off; SET enable_mergejoin=off; SET enable_hashjoin=off; SET enable_seqscan=off;
\timing on
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT x.event_id, x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role, x.is_blocked, x.identifier_value_raw, coalesce(x.blocked_reason, '') FROM person_identifiers x JOIN events e ON e.event_id = x.event_id AND e.occurred_at = x.occurred_at WHERE e._ingest_xid < '999999999'::xid8 ORDER BY e._ingest_xid, e.event_id, x.id;
