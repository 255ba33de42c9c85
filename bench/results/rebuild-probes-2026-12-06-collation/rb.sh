#!/usr/bin/env bash
# rb.sh BIN TAG: one `nexusd --rebuild` against the kept 1.1M DB (pg running) under /usr/bin/time -v; prints phase
# times, the split-id check's seconds (when the binary logs them) and the process's peak RSS.
set -euo pipefail
BIN=$1; TAG=$2; KEEP=/tmp/glp/keep; PORT=$(cat $KEEP/port); OUT=${RBP_OUT:-/tmp/rbp}
/usr/bin/time -v -o "$OUT/$TAG.time" "$BIN" --rebuild --database-url="postgresql://postgres@127.0.0.1:$PORT/nexus" \
  --log-level=info > "$OUT/$TAG.log" 2>&1
/usr/bin/python3 - "$OUT" "$TAG" <<'PY'
import json,sys,datetime,re
out,tag=sys.argv[1],sys.argv[2]; L=[json.loads(l) for l in open(f'{out}/{tag}.log') if l.startswith('{')]
t=lambda s: datetime.datetime.fromisoformat(s['time'].replace('Z','+00:00')).timestamp()
prog=[l for l in L if l.get('msg')=='rebuild progress']
r0=next(t(l) for l in prog if l['phase']=='reading')
ph={}
for l in prog: ph.setdefault(l['phase'],t(l))
c=[l for l in L if l.get('msg')=='rebuild committed'][0]
chk=[l for l in L if l.get('msg')=='rebuild checked the ids a split would move']
rss=int(re.search(r'Maximum resident set size \(kbytes\): (\d+)',open(f'{out}/{tag}.time').read()).group(1))
print(json.dumps({'tag':tag,'reading_s':round(ph['writing']-r0,2),'writing_s':round(ph['indexing']-ph['writing'],2),
  'indexing_s':round(ph['swapping']-ph['indexing'],2),'split_check_s':round(chk[0]['seconds'],2) if chk else None,
  'rebuild_s':c['seconds'],'peak_rss_mib':round(rss/1024)}))
PY
