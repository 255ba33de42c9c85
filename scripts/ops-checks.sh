#!/usr/bin/env bash
# Checks deploy/ and runs a real Prometheus against a real nexusd, on loopback:
#   1. promtool check config deploy/prometheus/prometheus.yml; promtool check rules deploy/prometheus/alerts.yml
#   2. deploy/grafana/*.json parse as JSON; deploy/docker-compose.yml and deploy/kubernetes/*.yaml parse as
#      YAML when python3-yaml is installed (otherwise says so and checks JSON only);
#      every nexus_* name used by the dashboard and the alert rules is in tests/golden/metrics.txt;
#      the manifests agree with the Dockerfile and nexusd (no committed Secret, runAsUser = useradd --uid, one
#      image name, every NEXUS_* key a real option, embedded PostgreSQL off).
#   3. starts nexusd (embedded PostgreSQL in a temp dir, or --database-url=$NEXUS_TEST_DATABASE_URL),
#      starts Debian's prometheus (temp storage, 127.0.0.1:<free port>, scraping nexusd every 1s), and waits
#      until /api/v1/query returns up{job="nexusd"} == 1 and nexus_build_info == 1; then stops both
#      (nexusd must exit 0 on SIGTERM).
# Env: NEXUSD (default build/server/nexusd), NEXUS_TEST_DATABASE_URL, CHECK_TIMEOUT (seconds, default 120).
# Needs: a built nexusd, promtool + prometheus (Debian package `prometheus`), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
NEXUSD=${NEXUSD:-build/server/nexusd}
TIMEOUT=${CHECK_TIMEOUT:-120}
say() { echo "ops-checks: $*"; }
die() { echo "ops-checks: FAIL: $*" >&2; exit 1; }

for tool in promtool prometheus curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install prometheus curl python3)"
done
[ -x "$NEXUSD" ] || die "$NEXUSD is not built (scripts/build.sh nexusd, or set NEXUSD=...)"

TMP=""
NEXUSD_PID=""
PROM_PID=""
stop_pid() {  # pid: SIGTERM, up to 20 s, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  [ -z "$PROM_PID" ] || stop_pid "$PROM_PID"
  [ -z "$NEXUSD_PID" ] || stop_pid "$NEXUSD_PID"
  if [ -n "$TMP" ]; then
    local pidfile="$TMP/data/pgdata/postmaster.pid"
    if [ -f "$pidfile" ]; then kill -QUIT "$(head -n1 "$pidfile")" 2>/dev/null || true; sleep 1; fi
    if [ $rc -ne 0 ]; then
      for f in "$TMP/nexusd.log" "$TMP/prometheus.log"; do
        [ -f "$f" ] && { echo "---- $f (last 30 lines) ----" >&2; tail -n 30 "$f" >&2; }
      done
    fi
    rm -rf "$TMP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TMP=$(mktemp -d /tmp/nexus-ops-checks.XXXXXX)
chmod o+x "$TMP"  # as root, the embedded PostgreSQL (user postgres) must reach $TMP/data
chmod 755 "$TMP"
export OPS_TMP=$TMP

# ---- 1. promtool ----------------------------------------------------------------------------------------
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml

# ---- 2. syntax + metric names ---------------------------------------------------------------------------
python3 - <<'EOF'
import glob, json, os, re, sys
checked = []
for path in sorted(glob.glob("deploy/grafana/*.json")):
    with open(path) as f:
        json.load(f)
    checked.append(path)
try:
    import yaml
except ImportError:
    yaml = None
yamls = ["deploy/docker-compose.yml"] + sorted(glob.glob("deploy/kubernetes/*.yaml"))
if yaml is None:
    print("ops-checks: python3-yaml not installed: YAML syntax of %s NOT checked" % ", ".join(yamls))
else:
    for path in yamls:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        if not docs:
            sys.exit("ops-checks: FAIL: %s is empty" % path)
        if "kubernetes" in path:
            for d in docs:
                if not all(k in d for k in ("apiVersion", "kind", "metadata")):
                    sys.exit("ops-checks: FAIL: %s: a document lacks apiVersion/kind/metadata" % path)
                if d["kind"] == "ConfigMap" and "protection.conf" in d.get("data", {}):
                    # nexusd itself parses it below (--protection-config): a bad file fails start-up.
                    with open(os.environ["OPS_TMP"] + "/protection.conf", "w") as out:
                        out.write(d["data"]["protection.conf"])
        checked.append(path)
    # Deployment consistency (issue 12 item 14): each of these once made a manifest silently wrong.
    def load(path):
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    k8s = [d for p in sorted(glob.glob("deploy/kubernetes/*.yaml")) for d in load(p)]
    if any(d["kind"] == "Secret" for d in k8s):
        sys.exit("ops-checks: FAIL: deploy/kubernetes commits a Secret: `kubectl apply -f` would overwrite the real one")
    dep = next(d for d in k8s if d["kind"] == "Deployment")
    cm = next(d for d in k8s if d["kind"] == "ConfigMap")
    pod = dep["spec"]["template"]["spec"]
    dockerfile = open("Dockerfile").read()
    uid = re.search(r"useradd [^&]*--uid (\d+)", dockerfile)
    if not uid or pod["securityContext"].get("runAsUser") != int(uid.group(1)):
        sys.exit("ops-checks: FAIL: runAsUser in deployment.yaml is not the Dockerfile's useradd --uid")
    compose = load("deploy/docker-compose.yml")[0]
    if compose["services"]["nexusd"]["image"] != pod["containers"][0]["image"]:
        sys.exit("ops-checks: FAIL: docker-compose and Kubernetes name different images")
    readme = open("README.md").read()
    for key in list(cm["data"]) + [e["name"] for e in pod["containers"][0].get("env", [])]:
        if key.startswith("NEXUS_") and ("| `" + key + "` |") not in readme:
            sys.exit("ops-checks: FAIL: %s (deploy/kubernetes) is not a nexusd variable" % key)
    if cm["data"].get("NEXUS_EMBEDDED_POSTGRES") != "off":
        sys.exit("ops-checks: FAIL: the Kubernetes ConfigMap must set NEXUS_EMBEDDED_POSTGRES=off")
    if compose["services"]["nexusd"]["environment"].get("NEXUS_EMBEDDED_POSTGRES") != "off":
        sys.exit("ops-checks: FAIL: docker-compose must set NEXUS_EMBEDDED_POSTGRES=off")
    print("ops-checks: manifests consistent: no committed Secret, runAsUser = Dockerfile uid, one image name, "
          "every NEXUS_* key known, embedded PostgreSQL off")
golden = set()
with open("tests/golden/metrics.txt") as f:
    for line in f:
        if line.strip() and not line.startswith("#"):
            golden.add(line.split()[0])
unknown = {}
for path in sorted(glob.glob("deploy/grafana/*.json")) + ["deploy/prometheus/alerts.yml"]:
    with open(path) as f:
        text = f.read()
    for name in set(re.findall(r"\b(?:nexus|process)_[a-z0-9_]+", text)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in golden and base not in golden:
            unknown.setdefault(path, []).append(name)
if unknown:
    sys.exit("ops-checks: FAIL: metric names not in tests/golden/metrics.txt: %s" % unknown)
print("ops-checks: syntax OK: %s; metric names in dashboard and alerts match the golden list" % ", ".join(checked))
EOF

# ---- 3. real Prometheus against a real nexusd -----------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
mkdir -p "$TMP/data" "$TMP/prom-data"
db_args=(--data-dir="$TMP/data")
if [ -n "${NEXUS_TEST_DATABASE_URL:-}" ]; then db_args=(--database-url="$NEXUS_TEST_DATABASE_URL"); fi
if [ -f "$TMP/protection.conf" ]; then
  db_args+=(--protection-config="$TMP/protection.conf")
  say "nexusd runs with the protection.conf of deploy/kubernetes/configmap.yaml"
fi
env -u NEXUS_DATABASE_URL "$NEXUSD" --grpc-listen=127.0.0.1:0 --http-listen=127.0.0.1:0 "${db_args[@]}" \
  >"$TMP/nexusd.log" 2>&1 &
NEXUSD_PID=$!
deadline=$((SECONDS + TIMEOUT))
HTTP_PORT=""
while [ -z "$HTTP_PORT" ]; do
  kill -0 "$NEXUSD_PID" 2>/dev/null || die "nexusd exited during start-up"
  [ $SECONDS -lt $deadline ] || die "nexusd not serving within ${TIMEOUT}s"
  HTTP_PORT=$(grep -o '"msg":"nexusd serving".*"http":"[^"]*"' "$TMP/nexusd.log" 2>/dev/null |
              sed -E 's/.*"http":"[^"]*:([0-9]+)"/\1/' | head -n1) || true
  [ -n "$HTTP_PORT" ] || sleep 0.5
done
say "nexusd serving HTTP on 127.0.0.1:$HTTP_PORT"

PROM_PORT=$(free_port)
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: nexusd
    static_configs:
      - targets: ["127.0.0.1:$HTTP_PORT"]
EOF
promtool check config "$TMP/prometheus.yml" >/dev/null
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
say "prometheus on 127.0.0.1:$PROM_PORT scraping nexusd every 1s"

query() {  # PromQL -> the first sample's value ("" when none)
  curl -fsS -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    python3 -c 'import json,sys
d = json.load(sys.stdin)
r = d["data"]["result"] if d.get("status") == "success" else []
print(r[0]["value"][1] if r else "")' 2>/dev/null || true
}
up="" info=""
while :; do
  kill -0 "$PROM_PID" 2>/dev/null || die "prometheus exited"
  kill -0 "$NEXUSD_PID" 2>/dev/null || die "nexusd exited"
  up=$(query 'up{job="nexusd"}')
  info=$(query 'nexus_build_info{job="nexusd"}')
  [ "$up" = "1" ] && [ "$info" = "1" ] && break
  [ $SECONDS -lt $deadline ] || die "Prometheus did not report up==1 and nexus_build_info==1 within ${TIMEOUT}s (up='$up' info='$info')"
  sleep 1
done
say "Prometheus API: up{job=\"nexusd\"} = $up, nexus_build_info = $info"
# Every dashboard query must be valid PromQL and evaluate against the live Prometheus.
PROM_PORT=$PROM_PORT python3 - <<'EOF'
import json, os, sys, urllib.parse, urllib.request
with open("deploy/grafana/nexusd-dashboard.json") as f:
    dash = json.load(f)
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
bad = []
for e in exprs:
    q = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
    url = "http://127.0.0.1:%s/api/v1/query?%s" % (os.environ["PROM_PORT"], urllib.parse.urlencode({"query": q}))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            ok = json.load(r).get("status") == "success"
    except Exception as ex:  # HTTP 400 = bad PromQL
        ok = False
        e = "%s (%s)" % (e, ex)
    if not ok:
        bad.append(e)
if bad:
    sys.exit("ops-checks: FAIL: dashboard queries rejected by Prometheus:\n  " + "\n  ".join(bad))
print("ops-checks: all %d dashboard queries evaluate on Prometheus" % len(exprs))
EOF
labels=$(curl -fsS -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=nexus_build_info' |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["metric"])')
say "nexus_build_info labels: $labels"

stop_pid "$PROM_PID"
PROM_PID=""
kill -TERM "$NEXUSD_PID"
stop_deadline=$((SECONDS + 30))
while kill -0 "$NEXUSD_PID" 2>/dev/null && [ $SECONDS -lt $stop_deadline ]; do sleep 0.2; done
kill -0 "$NEXUSD_PID" 2>/dev/null && die "nexusd still running 30s after SIGTERM"
set +e
wait "$NEXUSD_PID"
rc=$?
set -e
NEXUSD_PID=""
[ $rc -eq 0 ] || die "nexusd exited with status $rc after SIGTERM"
[ ! -e "$TMP/data/pgdata/postmaster.pid" ] || die "embedded PostgreSQL left running"
say "OK"
