#!/usr/bin/env bash
# bench/rebuild-bench.sh [IDENTIFIERS] [ROUNDS] [BASELINE_NEXUSD] — the full rebuild, the graph load and the
# resolver's batches at IDENTIFIERS (issue 11), each build on a fresh copy of one log, optionally alternating with
# another nexusd build to compare the two on the same data.
# Starts a throwaway PostgreSQL (fsync on; shared_buffers 1GB, work_mem 64MB as bench/run) and ingests IDENTIFIERS
# person identifiers (default 1100000; nexus_bench's world, seed 42) but the last HOLD events (30,000) into a nexusd
# whose resolver is off (the baseline's when one is given: the newer build migrates the copy as a real upgrade
# would), then copies the data directory. ROUNDS times (default 3), for the baseline first when one is given and
# then for this build, on a fresh copy of that data directory:
#   rebuild    : `nexusd --rebuild` under /usr/bin/time -v: seconds, the time of each phase (from its progress log
#                lines), peak RSS, CPU share;
#   graph load : nexusd started with the resolver on the rebuilt database: its "resolver graph loaded" seconds and
#                VmRSS / VmHWM right after;
#   increments : the held-back events as three 10,000-event requests, one resolver batch each (nexus_bench's
#                increments stage): each batch's seconds and per-statement sums.
# Builds that log each index build ("rebuild index built") also get its seconds.
# Writes bench/results/rebuild-<IDENTIFIERS>-<date>[-$NEXUS_BENCH_TAG].json with every run and the medians per build.
# NEXUS_BENCH_PG_THIS: postgresql.conf lines (separated by ';') for this build's runs only, e.g. to compare a server
# setting with the same binary as baseline: NEXUS_BENCH_PG_THIS='wal_compression = lz4' ... 3 build/server/nexusd
set -euo pipefail
IDS="${1:-1100000}"; ROUNDS="${2:-3}"; BASELINE="${3:-}"; HOLD=30000
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_tmp nexus-rebuild-bench
bench_cleanup_on_exit

PORT=$(free_port)
bench_run_pg_start "$TMP/pg" "$PORT"
DB="postgresql://postgres@127.0.0.1:$PORT/nexus"
GRPC=$(free_port); HTTP=$(free_port)
start_nexusd() {  # start_nexusd BINARY RESOLVER LOG
  "$1" --database-url="$DB" --grpc-listen="127.0.0.1:$GRPC" --http-listen="127.0.0.1:$HTTP" --resolver="$2" \
    --resolver-batch-events=10000 --max-events-per-request=10000 --log-level=info >"$3" 2>&1 &
  NEXUS_PID=$!
}
stop_nexusd() {
  kill "$NEXUS_PID"; wait "$NEXUS_PID" 2>/dev/null || true; NEXUS_PID=""
}
run_bench() {  # run_bench OUT STAGES
  "$BENCH" run --grpc="127.0.0.1:$GRPC" --http="127.0.0.1:$HTTP" --db="$DB" --identifiers="$IDS" \
    --size-name="rebuild-$IDS" --nexusd-pid="$NEXUS_PID" --pg-pid="$(head -1 "$TMP/pg/postmaster.pid")" --out="$1" \
    --repeats=1 --stages="$2" --hold-back="$HOLD" >/dev/null
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast stop >/dev/null; }
pg_start() { as_pg "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w -t 60 start >/dev/null; }

echo "[rebuild-bench] ingesting $IDS identifiers but the last $HOLD events, resolver off ..." >&2
start_nexusd "${BASELINE:-$NEXUSD}" false "$TMP/ingest.log"
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
run_bench "$TMP/ingest.json" log_ingest
stop_nexusd
pg_stop
cp -a "$TMP/pg" "$TMP/pg.ingested"

BUILDS=("$NEXUSD"); NAMES=(this)
if [[ -n "$BASELINE" ]]; then BUILDS=("$BASELINE" "$NEXUSD"); NAMES=(baseline this); fi
: >"$TMP/runs.jsonl"
for round in $(seq 1 "$ROUNDS"); do
  for b in "${!BUILDS[@]}"; do
    bin="${BUILDS[$b]}"; name="${NAMES[$b]}"; log="$TMP/$name-$round"
    rm -rf "$TMP/pg"; cp -a "$TMP/pg.ingested" "$TMP/pg"
    if [[ "$name" == this && -n "${NEXUS_BENCH_PG_THIS:-}" ]]; then
      tr ';' '\n' <<<"$NEXUS_BENCH_PG_THIS" >>"$TMP/pg/postgresql.conf"
    fi
    pg_start
    echo "[rebuild-bench] round $round: $name rebuild ..." >&2
    /usr/bin/time -v -o "$log.time" "$bin" --rebuild --database-url="$DB" --log-level=info >"$log.rebuild" 2>&1
    start_nexusd "$bin" true "$log.load"
    for _ in $(seq 1 3000); do
      grep -q '"resolver graph loaded"' "$log.load" && break
      kill -0 "$NEXUS_PID" 2>/dev/null || break
      sleep 0.1
    done
    grep -E 'VmRSS|VmHWM' "/proc/$NEXUS_PID/status" >"$log.status" || true
    echo "[rebuild-bench] round $round: $name increments ..." >&2
    run_bench "$log.increments.json" increments
    stop_nexusd
    pg_stop
    /usr/bin/python3 - "$name" "$round" "$log" >>"$TMP/runs.jsonl" <<'PY'
import datetime, json, re, sys
name, rnd, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
run = {"build": name, "round": rnd, "phases_s": {}}
marks = []
for line in open(log + ".rebuild"):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    t = datetime.datetime.fromisoformat(j["time"].rstrip("Z"))
    if j["msg"] == "rebuild index built":  # within the indexing phase, not a phase of its own
        run.setdefault("indexes_s", {})[j["index"]] = round(j["seconds"], 3)
        continue
    phase = j.get("phase") or j["msg"]
    if not marks or marks[-1][0] != phase:
        marks.append((phase, t))
    if j["msg"] == "applied migration":  # a newer build upgrades the copy first
        run.setdefault("migrations", []).append(j.get("name"))
    if j["msg"] == "rebuild done":
        run["rebuild_s"] = j["seconds"]
        run["identifiers"] = j["identifiers"]
for (phase, t), (_, t2) in zip(marks, marks[1:]):
    if phase in ("reading", "writing", "indexing", "swapping"):
        run["phases_s"][phase] = round((t2 - t).total_seconds(), 2)
tm = open(log + ".time").read()
run["rebuild_peak_rss_mib"] = round(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tm).group(1)) / 1024)
run["rebuild_cpu"] = re.search(r"Percent of CPU this job got: (\S+)", tm).group(1)
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", tm).group(1).split(":")
wall_s = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
# The process's wall time beyond the rebuild's own seconds: start-up, connecting, migrations (an upgrade), the lock.
run["rebuild_process_extra_s"] = round(wall_s - run.get("rebuild_s", 0), 2)
for line in open(log + ".load"):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("msg") == "resolver graph loaded":
        run["graph_load_s"] = j["seconds"]
for line in open(log + ".status"):
    k, v = line.split(":")
    run["after_load_" + k.lower() + "_mib"] = round(int(v.split()[0]) / 1024)
inc = json.load(open(log + ".increments.json"))["increments"]
run["batches"] = [{k: i[k] for k in ("events", "identifiers_before", "resolver_batches", "resolver_seconds",
                                      "ack_to_resolved_s", "row_updates", "hot_row_updates", "wal_bytes",
                                      "wal_by_relation", "statement_seconds") if k in i} for i in inc["increments"]]
print(json.dumps(run))
PY
    tail -1 "$TMP/runs.jsonl" | cut -c1-400 >&2
  done
done

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/rebuild-$IDS-$(date -u +%Y-%m-%d)${NEXUS_BENCH_TAG:+-$NEXUS_BENCH_TAG}.json"
/usr/bin/python3 - "$TMP/runs.jsonl" "$OUT" "$IDS" "$ROUNDS" "$BASELINE" <<'PY'
import json, os, statistics, subprocess, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
out = {"identifiers_generated": int(sys.argv[3]), "rounds": int(sys.argv[4]), "seed": 42,
       "baseline": sys.argv[5] or None, "pg_settings_this": os.environ.get("NEXUS_BENCH_PG_THIS") or None,
       "machine": subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip(),
       "cores": os.cpu_count(), "runs": runs, "medians": {}}
for b in sorted({r["build"] for r in runs}):
    rs = [r for r in runs if r["build"] == b]
    med = lambda f: statistics.median(f(r) for r in rs)
    out["medians"][b] = {"of": len(rs), "rebuild_s": med(lambda r: r["rebuild_s"]),
                         "rebuild_peak_rss_mib": med(lambda r: r["rebuild_peak_rss_mib"]),
                         "graph_load_s": med(lambda r: r["graph_load_s"]),
                         "after_load_vmrss_mib": med(lambda r: r["after_load_vmrss_mib"])}
    for p in ("reading", "writing", "indexing", "swapping"):
        out["medians"][b][p + "_s"] = med(lambda r: r["phases_s"].get(p, 0))
    idx = sorted({n for r in rs for n in r.get("indexes_s", {})})
    if idx:  # builds that log each index build
        out["medians"][b]["index_s"] = dict(sorted(
            ((n, med(lambda r: r.get("indexes_s", {}).get(n, 0.0))) for n in idx), key=lambda kv: -kv[1]))
    batches = [x for r in rs for x in r["batches"]]
    out["medians"][b]["batch_s"] = statistics.median(x["resolver_seconds"] for x in batches)
    out["medians"][b]["batch_of"] = len(batches)
    names = sorted({n for x in batches for n in x["statement_seconds"]})
    out["medians"][b]["batch_statement_s"] = dict(sorted(
        ((n, round(statistics.median(x["statement_seconds"].get(n, 0.0) for x in batches), 4)) for n in names),
        key=lambda kv: -kv[1]))
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out["medians"], indent=1))
print("results:", sys.argv[2])
PY
