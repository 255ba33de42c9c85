#!/usr/bin/env bash
# load.sh BIN TAG: start BIN with resolver on against the kept DB (pg must be running), wait for graph load,
# print seconds + per-statement sums, VmHWM/VmRSS
set -euo pipefail
BIN=$1; TAG=$2; KEEP=/tmp/glp/keep; PORT=$(cat $KEEP/port)
cd /work/main; export NEXUS_BENCH_NO_BUILD=1; source bench/common.sh
GRPC=$(free_port); HTTP=$(free_port)
$BIN --database-url="postgresql://postgres@127.0.0.1:$PORT/nexus" --grpc-listen="127.0.0.1:$GRPC" --http-listen="127.0.0.1:$HTTP" --resolver=true \
    --resolver-batch-events=10000 --log-level=info > $KEEP/load-$TAG.log 2>&1 &
NP=$!
for _ in $(seq 1 3000); do grep -q '"resolver graph loaded"' $KEEP/load-$TAG.log && break; sleep 0.05; done
st=$(grep -E 'VmRSS|VmHWM' /proc/$NP/status | tr -s ' \n' ' ')
cpu=$(awk '{print ($14+$15)/100}' /proc/$NP/stat)
sleep 0.5
m=$(curl -s http://127.0.0.1:$HTTP/metrics | grep -aE "^nexus_db_query_duration_seconds_sum.*load" | sed -E 's/nexus_db_query_duration_seconds_sum\{[^"]*"([^"]*)".*\} /\1=/' | tr '\n' ' ')
kill $NP; wait $NP 2>/dev/null || true
echo "$TAG $(grep '"resolver graph loaded"' $KEEP/load-$TAG.log | /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["seconds"])') cpu=$cpu $st $m"
