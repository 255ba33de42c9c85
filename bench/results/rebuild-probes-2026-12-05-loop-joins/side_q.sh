#!/bin/bash
# side_q.sh MODE TABLE COLS
P=$(cat /tmp/glp/keep/port)
case $1 in
 hash) S="SET enable_mergejoin=off; SET enable_nestloop=off;";;
 lat) S="SET enable_mergejoin=off; SET enable_hashjoin=off;";;
esac
Q="SELECT x.event_id, $3 FROM $2 x JOIN events e ON e.event_id = x.event_id AND e.occurred_at = x.occurred_at WHERE e._ingest_xid < '999999999'::xid8 ORDER BY e._ingest_xid, e.event_id, x.id"
psql -h 127.0.0.1 -p $P -U postgres nexus -c "SET work_mem='256MB'; SET jit=off; $S EXPLAIN (ANALYZE, TIMING OFF) $Q" | egrep "Execution Time|Nested Loop|Hash Join|Index Scan using (events|person|group|memb)" | grep "Execution Time"
