#!/usr/bin/env bash
set -euo pipefail
BIN=$1; KEEP=/tmp/glp/keep; PORT=$(cat $KEEP/port)
cd /work/main; export NEXUS_BENCH_NO_BUILD=1; source bench/common.sh
GRPC=$(free_port); HTTP=$(free_port)
perf record -g -F 999 -o /tmp/glp/perf.data -- $BIN --database-url="postgresql://postgres@127.0.0.1:$PORT/nexus" --grpc-listen="127.0.0.1:$GRPC" --http-listen="127.0.0.1:$HTTP" --resolver=true \
    --resolver-batch-events=10000 --log-level=info > $KEEP/load-perf.log 2>&1 &
NP=$!
for _ in $(seq 1 3000); do grep -q '"resolver graph loaded"' $KEEP/load-perf.log && break; sleep 0.05; done
sleep 0.3
pkill -INT -f "grpc-listen=127.0.0.1:$GRPC" || true
wait $NP || true
