#!/usr/bin/env bash
# bench/rss-sample.sh LOG OUT — while a `bench/run` writes LOG, samples the running nexusd's VmRSS every 0.5 s into
# OUT (JSON lines: seconds since start, VmRSS MiB, the bench's last stage line). Shows what nexusd holds at a
# given moment, e.g. just before an in-service rebuild starts, which a per-stage peak cannot.
set -euo pipefail
LOG="$1"; OUT="$2"; : >"$OUT"; t0=$(date +%s.%N)
while ! grep -q '^rc=' "$LOG" 2>/dev/null; do
  pid=$(pgrep -f 'server/nexusd .*--grpc' | head -1 || true)
  if [[ -n "$pid" ]]; then
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    stage=$(grep -o '^\[bench\] [a-z_]* \.\.\.' "$LOG" | tail -1 | cut -d' ' -f2 || true)
    [[ -n "$kb" ]] && printf '{"t": %.1f, "pid": %s, "vmrss_mib": %d, "stage": "%s"}\n' \
      "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { print a - b }')" "$pid" $((kb / 1024)) "$stage" >>"$OUT"
  fi
  sleep 0.5
done
