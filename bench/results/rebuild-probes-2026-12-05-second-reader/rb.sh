#!/usr/bin/env bash
# rb.sh BIN TAG: one `nexusd --rebuild` against the kept 1.1M DB (pg running); prints phase times from its log
set -euo pipefail
BIN=$1; TAG=$2; KEEP=/tmp/glp/keep; PORT=$(cat $KEEP/port)
$BIN --rebuild --database-url="postgresql://postgres@127.0.0.1:$PORT/nexus" --log-level=info > /tmp/rbp/$TAG.log 2>&1
/usr/bin/python3 - "$TAG" <<'PY'
import json,sys,datetime
tag=sys.argv[1]; L=[json.loads(l) for l in open(f'/tmp/rbp/{tag}.log') if l.startswith('{')]
t=lambda s: datetime.datetime.fromisoformat(s['time'].replace('Z','+00:00')).timestamp()
prog=[l for l in L if l.get('msg')=='rebuild progress']
r0=next(t(l) for l in prog if l['phase']=='reading')
first=next(t(l) for l in prog if l['phase']=='reading' and l['events_done']>0)
ph={}
for l in prog: ph.setdefault(l['phase'],t(l))
c=[l for l in L if l.get('msg')=='rebuild committed'][0]
out={'tag':tag,'first_chunk_s':round(first-r0,2),'reading_s':round(ph['writing']-r0,2),'writing_s':round(ph['indexing']-ph['writing'],2),
     'indexing_s':round(ph['swapping']-ph['indexing'],2),'rebuild_s':c['seconds']}
print(json.dumps(out))
PY
