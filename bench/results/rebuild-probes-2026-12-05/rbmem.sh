#!/usr/bin/env bash
# /tmp/rbmem.sh BIN TAG: fresh copy of /tmp/pg11, nexusd --rebuild with RSS sampled every 0.2s
set -euo pipefail
BIN=$1; TAG=$2; PORT=$(cat /tmp/pg11.port | cut -d' ' -f2)
source /work/main/bench/common.sh >/dev/null 2>&1 || true
W=/tmp/rbw; rm -rf $W; mkdir -p $W/sock; chmod 755 $W; chown postgres $W $W/sock
cp -a /tmp/pg11 $W/pg
sed -i "s|^unix_socket_directories = .*|unix_socket_directories = '$W/sock'|" $W/pg/postgresql.conf
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D $W/pg -l $W/pg.log -w -t 60 start >/dev/null
"$BIN" --rebuild --database-url="postgresql://postgres@127.0.0.1:$PORT/nexus" --log-level=info > /tmp/rbmem-$TAG.log 2>&1 &
pid=$!; t0=$(date +%s.%N); : > /tmp/rbmem-$TAG.rss
while kill -0 $pid 2>/dev/null; do
  kb=$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status 2>/dev/null || true)
  ph=$(grep -o '"phase":"[a-z]*"' /tmp/rbmem-$TAG.log | tail -1 | cut -d'"' -f4 || true)
  [[ -n "$kb" ]] && echo "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') $((kb/1024)) $ph" >> /tmp/rbmem-$TAG.rss
  sleep 0.2
done
wait $pid || echo "rc=$?"
runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D $W/pg -m fast stop >/dev/null
sort -k2 -n /tmp/rbmem-$TAG.rss | tail -1
awk '{ if ($2>m[$3]) m[$3]=$2 } END { for (p in m) print p, m[p] }' /tmp/rbmem-$TAG.rss
