#!/usr/bin/env bash
# sorts.sh PORT: the first FETCH of each rebuild log cursor (the query as the rebuild declares it, hash joins only),
# on one connection one after another, then the person identifiers' on one connection while the other four run on
# a second, as storage::RebuildControl::second_reader splits them. psql's \timing per FETCH.
set -euo pipefail
PORT=$1; URL="postgresql://postgres@127.0.0.1:$PORT/nexus"
H=$(psql "$URL" -Atc "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"); B="_ingest_xid < '$H'::xid8"
J() { echo "SELECT x.event_id, $1 FROM $2 x JOIN events e ON e.event_id = x.event_id AND e.occurred_at = x.occurred_at WHERE e.$B ORDER BY e._ingest_xid, e.event_id, x.id"; }
PIDS="$(J 'x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role, x.is_blocked, x.identifier_value_raw, coalesce(x.blocked_reason, '"''"')' person_identifiers)"
GIDS="$(J 'x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role, x.is_blocked, x.identifier_value_raw, coalesce(x.blocked_reason, '"''"')' group_identifiers)"
PTR="$(J "x.id, x.edge_id, x.trait_name, x.value_type = 'null'" person_traits)"
GTR="$(J "x.id, x.edge_id, x.trait_name, x.value_type = 'null'" group_traits)"
MEM="$(J 'x.id, x.person_identifier_type, x.person_identifier, x.group_identifier_type, x.group_identifier' membership_identifiers)"
run() {
  psql "$URL" -q 2>&1 <<SQL | grep -E "^Time"
BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL work_mem='256MB'; SET LOCAL jit=off; SET LOCAL enable_mergejoin=off; SET LOCAL enable_nestloop=off;
$(i=0; for q in "$@"; do i=$((i+1)); echo "DECLARE c$i NO SCROLL CURSOR FOR $q;"; done)
\timing on
$(i=0; for q in "$@"; do i=$((i+1)); echo "FETCH 1 FROM c$i;"; done)
\timing off
ROLLBACK;
SQL
}
echo "one connection: person identifiers, group identifiers, person traits, group traits, memberships"
t0=$(date +%s.%N); run "$PIDS" "$GIDS" "$PTR" "$GTR" "$MEM"; t1=$(date +%s.%N)
echo "wall $(echo "$t1 - $t0" | bc) s"
echo "two connections: A person identifiers; B group identifiers, person traits, group traits, memberships"
t0=$(date +%s.%N); (run "$PIDS" | sed 's/^/A /' & run "$GIDS" "$PTR" "$GTR" "$MEM" | sed 's/^/B /'; wait); t1=$(date +%s.%N)
echo "wall $(echo "$t1 - $t0" | bc) s"
