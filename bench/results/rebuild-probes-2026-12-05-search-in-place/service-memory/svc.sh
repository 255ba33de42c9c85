#!/usr/bin/env bash
# svc.sh BIN TAG: nexusd service on the kept DB, two rebuilds through the admin route; RSS every 0.25 s
BIN=$1; TAG=$2; P=$(cat /tmp/glp/keep/port)
$BIN --database-url="postgresql://postgres@127.0.0.1:$P/nexus" --grpc-listen=127.0.0.1:39501 --http-listen=127.0.0.1:39502 --log-level=info > /tmp/rbp/svc-$TAG.log 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -sf http://127.0.0.1:39502/readyz >/dev/null && break; sleep 0.2; done
sleep 8
samp() { while kill -0 $PID 2>/dev/null; do echo "$(date +%s.%N) $(awk '/^VmRSS:/ {print $2}' /proc/$PID/status)" ; sleep 0.25; done; }
samp > /tmp/rbp/svc-$TAG.rss &
for r in 1 2; do
  echo "rebuild $r start $(date +%s.%N)" >> /tmp/rbp/svc-$TAG.marks
  curl -sf -X POST -H 'Content-Type: application/json' http://127.0.0.1:39502/v1/admin/resolver:rebuild >/dev/null
  sleep 2
  while curl -sf http://127.0.0.1:39502/v1/admin/resolver:rebuild | grep -q RUNNING; do sleep 0.5; done
done
echo "$TAG VmHWM $(awk '/^VmHWM:/ {print $2}' /proc/$PID/status) KB"
kill $PID; wait $PID 2>/dev/null
