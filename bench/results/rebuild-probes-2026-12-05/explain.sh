#!/usr/bin/env bash
# explain.sh PORT: EXPLAIN ANALYZE of the rebuild's person identifiers cursor query (no parallel workers, as a
# cursor runs) against the 1.1M log on 127.0.0.1:PORT, database nexus: merge join (the planner's choice), hash
# join, each with work_mem 64MB and 512MB, and the LATERAL form.
set -euo pipefail
P="psql -X -h 127.0.0.1 -p $1 -U postgres nexus"
H=$($P -Atc "SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
C="x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role, x.is_blocked, x.identifier_value_raw, coalesce(x.blocked_reason, '')"
J="SELECT x.event_id, $C FROM person_identifiers x JOIN events e ON e.event_id = x.event_id AND e.occurred_at = x.occurred_at WHERE e._ingest_xid < '$H'::xid8 ORDER BY e._ingest_xid, e.event_id, x.id"
L="SELECT e.event_id, $C FROM events e CROSS JOIN LATERAL (SELECT * FROM person_identifiers x WHERE x.event_id = e.event_id AND x.occurred_at = e.occurred_at OFFSET 0) x WHERE e._ingest_xid < '$H'::xid8 ORDER BY e._ingest_xid, e.event_id, x.id"
for wm in 64MB 512MB; do
  echo "### work_mem $wm: the planner's choice"
  $P -c "SET jit = off" -c "SET max_parallel_workers_per_gather = 0" -c "SET work_mem = '$wm'" \
    -c "EXPLAIN (ANALYZE, TIMING off, COSTS off) $J"
  echo "### work_mem $wm: hash join"
  $P -c "SET jit = off" -c "SET max_parallel_workers_per_gather = 0" -c "SET work_mem = '$wm'" \
    -c "SET enable_mergejoin = off" -c "SET enable_nestloop = off" -c "EXPLAIN (ANALYZE, TIMING off, COSTS off) $J"
done
echo "### work_mem 64MB: LATERAL"
$P -c "SET jit = off" -c "SET max_parallel_workers_per_gather = 0" -c "SET work_mem = '64MB'" \
  -c "EXPLAIN (ANALYZE, TIMING off, COSTS off) $L"
