#!/usr/bin/env python3
"""Prints the results table of one or more bench/results/*.json files (markdown)."""
import json
import sys


def g(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def f(v, fmt="{:,.0f}"):
    return "n/a" if v is None else fmt.format(v)


def ok(check):
    return "n/a" if not check else "exact" if check.get("exact") else "MISMATCH"


def of(stage):
    """What a `seconds_median` is of: the bench's median of two values is the smaller one."""
    n = len(stage.get("seconds_all") or [])
    return "" if not n else " (1 run)" if n == 1 else " (best of 2)" if n == 2 else f" (median of {n})"


def rows(r):
    ing, cp = r.get("ingest", {}), r.get("copy_baseline", {})
    ratio = (ing.get("events_per_s") / cp["events_per_s"]) if ing.get("events_per_s") and cp.get("events_per_s") else None
    reb, sqlb = r.get("rebuild", {}), r.get("sql_baseline", {})
    rr = (sqlb["seconds_median"] / reb["seconds_median"]) if reb.get("seconds_median") and sqlb.get("seconds_median") else None
    out = [
        ("1. ingest, gRPC stream, 500-event batches (events/s)", f(ing.get("events_per_s"))),
        ("1. plain COPY of the same rows (events/s)", f(cp.get("events_per_s"))),
        ("1. ingest / COPY", f(ratio, "{:.2f}")),
        ("2. freshness ack -> LookupPerson p50 / p99 (ms)",
         f(g(r, "freshness", "p50_ms"), "{:.0f}") + " / " + f(g(r, "freshness", "p99_ms"), "{:.0f}")),
    ]
    st = r.get("steady_freshness", {})
    out.append((f"2. freshness p50 / p99 (ms) while ingesting {f(st.get('offered_events_per_s'))} events/s for "
                f"{st.get('seconds', 'n/a')} s (achieved events/s)",
                f(st.get("p50_ms"), "{:.0f}") + " / " + f(st.get("p99_ms"), "{:.0f}") +
                f" ({f(st.get('achieved_events_per_s'))})"))
    lg = r.get("log_ingest")
    if lg:
        out.append(("1. ingest with no resolver running, log-rebuild flow (events/s)", f(lg.get("events_per_s"))))
    for inc in ing.get("increments", []) + (g(r, "increments", "increments") or []):
        b = inc.get("resolver_batches") or 0
        per = inc["resolver_seconds"] / b if b else None
        eps = inc.get("resolver_events", 0) / inc["resolver_seconds"] if inc.get("resolver_seconds") else None
        out.append((f"3. one {inc.get('events', 0):,}-event resolver batch at {inc.get('identifiers_before', 0):,} identifiers (s)",
                    f(per, "{:.2f}") + f" ({b:.0f} batch; {f(eps)} events/s)"))
        if "wal_bytes" in inc:
            upd = inc.get("row_updates") or 0
            out.append((f"3. ... WAL written by ingest + resolution of that batch (MiB); HOT share of row updates",
                        f(inc["wal_bytes"] / 2**20, "{:.1f}") + "; " +
                        f(inc.get("hot_row_updates", 0) / upd * 100 if upd else None, "{:.0f}%")))
    resolved, streamed = ing.get("ingest_start_to_all_resolved_s"), ing.get("stream_seconds")
    out += [
        ("3. ingest start -> everything resolved (s)", f(resolved, "{:.1f}")),
        ("3. ... divided by the ingest (stream) time", f(resolved / streamed if resolved and streamed else None, "{:.2f}x")),
        ("4. full rebuild, nexusd (s)", f(reb.get("seconds_median"), "{:.2f}") + of(reb)),
        ("4. SQL min-label propagation (s; propagation rounds)",
         f(sqlb.get("seconds_median"), "{:.2f}") + of(sqlb) + f"; {sqlb.get('rounds', 'n/a')} rounds"),
        ("4. SQL baseline / nexusd rebuild", f(rr, "{:.1f}x")),
    ]
    for k in ("LookupPerson", "GetPerson", "ListPersonTimeline"):
        q = g(r, "queries", k) or {}
        out.append((f"5. {k} ({g(r, 'queries', 'threads')} threads): req/s, p50/p99 ms",
                    f(q.get("per_s")) + ", " + f(q.get("p50_ms"), "{:.1f}") + " / " + f(q.get("p99_ms"), "{:.1f}")))
    c, ca = g(r, "correctness", "persons") or {}, g(r, "correctness_after_rebuild", "persons") or {}
    out += [
        ("6. persons vs truth (incremental / after rebuild)",
         f"{ok(c)} / {ok(ca)} "
         f"({c.get('entities_resolved', 0):,} persons, {c.get('identifiers_resolved', 0):,} identifiers)"),
        ("6. groups vs truth", "exact" if g(r, "correctness", "groups", "exact") else "MISMATCH"),
        ("6. nexusd vs SQL baseline partition", "same" if sqlb.get("same_partition_as_nexus") else "DIFFERENT"),
        ("7. peak RSS nexusd (MiB)", f(g(r, "memory", "nexusd_vmhwm_mib"))),
        ("7. nexusd peak RSS by stage (MiB)",
         ", ".join(f"{k} {v['nexusd_stage_peak_rss_mib']:,.0f}" for k, v in r.items()
                   if isinstance(v, dict) and "nexusd_stage_peak_rss_mib" in v) or "n/a"),
        ("7. peak RSS PostgreSQL, sum of processes (MiB)", f(g(r, "memory", "postgres_vmhwm_sum_mib"))),
        ("7. peak RSS of the rebuild process, `nexusd --rebuild` (MiB)", f(reb.get("peak_rss_mib"))),
        ("7. graph load at restart (s); nexusd RSS after it / its peak during it (MiB)",
         f(g(r, "graph_load", "seconds"), "{:.1f}") + "; " + f(g(r, "graph_load", "vmrss_mib")) + " / " +
         f(g(r, "graph_load", "vmhwm_mib"))),
    ]
    return out


def main():
    results = [json.load(open(p)) for p in sys.argv[1:]]
    if not results:
        sys.exit("usage: table.py results.json ...")
    table = [rows(r) for r in results]
    heads = ["measurement"] + [f"{r.get('size')} ({g(r, 'sizes', 'person_identifiers_true'):,} ids)" for r in results]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for i, (name, _) in enumerate(table[0]):
        print("| " + name + " | " + " | ".join(t[i][1] if i < len(t) else "" for t in table) + " |")
    for r in results:
        m = r.get("machine", {})
        print(f"\n{r.get('size')}: {r.get('date')}, {m.get('nproc')} cores {m.get('cpu_model')}, {m.get('memory')}, "
              f"load {m.get('loadavg_at_start')} -> {m.get('loadavg_at_end')}, correct={r.get('correct')}, "
              f"problems={r.get('problems')}")


main()
