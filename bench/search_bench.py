#!/usr/bin/python3
"""Search latency: loads persons into a fresh nexusd over HTTP, then times SearchPersons per query kind.

Each person has an email (first.lastN@companyM.example) and a user id (uid-N), and a name trait: N persons give
2N identifiers. Every query kind is run --repeats times after one warm-up; the output has each latency (ms), the
median, p95 and the hit count of the first page (page_size 20). Wall-clock times over loopback HTTP, one client.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time
import urllib.parse
import urllib.request

FIRST = ["anna", "bob", "carla", "dmitri", "elena", "farid", "grace", "hiro", "ines", "jonas", "kofi", "lena",
         "mateo", "nina", "oscar", "priya", "quinn", "rosa", "sven", "tara"]
LAST = ["smith", "garcia", "mueller", "rossi", "kim", "nguyen", "okafor", "silva", "novak", "haddad", "larsen",
        "tanaka", "dubois", "kowalski", "fischer", "moreau"]


def person(i):
    f, l = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    return f, l, "%s.%s%d@company%d.example" % (f, l, i, i % 997), "uid-%07d" % i


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--identifiers", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", required=True)
    ap.add_argument("--psql", default="")
    ap.add_argument("--vacuum", action="store_true",
                    help="VACUUM ANALYZE before timing (GIN pending lists merged); default: ANALYZE only")
    a = ap.parse_args()
    n = a.identifiers // 2
    t0 = time.time()
    batch = []
    for i in range(n):
        f, l, email, uid = person(i)
        batch.append({"event_id": "seed-%d" % i, "occurred_at": "2026-01-01T00:00:00Z", "event_name": "signup",
                      "event_type": "product", "source": "bench",
                      "persons": [{"role": "user", "identifiers": [{"type": "email", "value": email},
                                                                   {"type": "user_id", "value": uid}],
                                   "traits": {"name": "%s %s %d" % (f.title(), l.title(), i)}}]})
        if len(batch) == 1000 or i == n - 1:
            post(a.base, "/v1/events:ingest", {"events": batch})
            batch = []
    load_s = time.time() - t0
    while True:
        st = get(a.base, "/v1/admin/resolver")
        if int(st.get("events_pending", 1)) == 0 and int(st.get("persons", 0)) >= n:
            break
        time.sleep(1)
    resolved_s = time.time() - t0
    if a.psql:
        # --vacuum: the state after autovacuum merged the GIN pending lists; without: right after the load.
        subprocess.run(a.psql.split() + ["-q", "-c", "VACUUM ANALYZE" if a.vacuum else "ANALYZE"], check=True)
    mid = n // 2
    f, l, email, uid = person(mid)
    queries = {
        "exact email (normalized)": email.upper(),
        "exact user id": uid,
        "prefix of an email (6 chars)": email[:6],
        "fragment of an email (7 chars, rare)": email[len(f) + 1:len(f) + 8],
        "fragment of a name (5 chars, common)": l[:5],
        "name with number (exact trait)": "%s %s %d" % (f.title(), l.title(), mid),
        "2 characters": f[:2],
        "no match (8 chars)": "zzqqxxyy",
    }
    results = {}
    load_before = os.getloadavg()
    for kind, q in queries.items():
        path = "/v1/persons:search?" + urllib.parse.urlencode({"query": q, "page_size": 20})
        first = get(a.base, path)  # warm-up
        times = []
        for _ in range(a.repeats):
            s = time.perf_counter()
            get(a.base, path)
            times.append((time.perf_counter() - s) * 1000)
        times.sort()
        results[kind] = {"query": q, "hits_first_page": len(first.get("hits", [])),
                         "top_score": first["hits"][0]["score"] if first.get("hits") else None,
                         "median_ms": round(statistics.median(times), 2),
                         "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 2),
                         "ms": [round(t, 2) for t in times]}
    out = {"vacuumed": a.vacuum, "loadavg_before_queries": load_before, "loadavg_after_queries": os.getloadavg(), "identifiers": 2 * n, "persons": n, "repeats": a.repeats, "load_seconds": round(load_s, 1),
           "load_and_resolve_seconds": round(resolved_s, 1), "host": platform.node(),
           "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "queries": results}
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print("%-40s %-34s %5s %9s %9s" % ("query kind", "query", "hits", "median ms", "p95 ms"))
    for kind, r in results.items():
        print("%-40s %-34s %5d %9.2f %9.2f" % (kind, r["query"][:34], r["hits_first_page"], r["median_ms"], r["p95_ms"]))


if __name__ == "__main__":
    main()
