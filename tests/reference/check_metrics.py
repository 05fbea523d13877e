"""Independent check of the `metrics` table.

Recomputes every window x key from the raw NDJSON input with plain Python (json, no inferwatch
code), then reads the Parquet tables with DuckDB *and* pyarrow, exactly as an analyst would,
and compares. Exits non-zero with a readable diff on any mismatch.

usage: check_metrics.py INPUT.ndjson DATA_DIR SIZE_MS SLIDE_MS PRICES.toml
"""
import json
import math
import sys
import tomllib
from collections import defaultdict
from datetime import datetime

import duckdb
import pyarrow.dataset as ds
from common import event_ms

inp, data_dir, size, slide, prices_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
prices = tomllib.load(open(prices_path, "rb"))


def cost_nanos(e):
    if e.get("cost_usd") is not None:
        return round(e["cost_usd"] * 1e9)
    p = prices.get(e["model"])
    if p is None:
        return None
    tin, tout, cached = e.get("tokens_in") or 0, e.get("tokens_out") or 0, e.get("tokens_cached") or 0
    pico = lambda per_m: round(per_m * 1e6)
    inp_p, out_p = pico(p["input_per_million"]), pico(p["output_per_million"])
    cached_p = pico(p.get("cached_input_per_million", p["input_per_million"]))
    total = (tin - cached) * inp_p + cached * cached_p + tout * out_p
    return (total + 500) // 1000


acc = defaultdict(lambda: defaultdict(float))
lat = defaultdict(list)
lines = 0
for raw in open(inp, "rb"):
    lines += 1
    e = json.loads(raw)
    t = event_ms(e["timestamp"])
    key = (e["service"], e["model"], e.get("model_version"), e.get("route"))
    pane = (t // slide) * slide
    for s in range(pane - size + slide, pane + 1, slide):
        a = acc[(s,) + key]
        a["requests"] += 1
        st = e.get("status", "ok")
        a["errors"] += st in ("error", "timeout")
        a["timeouts"] += st == "timeout"
        a["refusals"] += st in ("refused", "filtered")
        a["tokens_in"] += e.get("tokens_in") or 0
        a["tokens_out"] += e.get("tokens_out") or 0
        c = cost_nanos(e)
        if c is None:
            a["cost_unpriced"] += 1
        else:
            a["cost_nanos"] += c
            a["cost_source_event" if e.get("cost_usd") is not None else "cost_source_table"] += 1
        if e.get("quality_score") is not None:
            a["q_sum"] += e["quality_score"]
            a["q_n"] += 1
        a["flagged"] += bool(e.get("flags"))
        a["approved"] += e.get("approval") == "approved"
        a["rejected"] += e.get("approval") == "rejected"
        if e.get("latency_ms") is not None:
            lat[(s,) + key].append(e["latency_ms"])

failures = []


def check(name, key, want, got, tol=0.0):
    if want is None or got is None:
        ok = want is None and got is None
    else:
        ok = abs(want - got) <= tol
    if not ok:
        failures.append(f"{name} for {key}: expected {want}, table has {got}")


def nearest_rank(values, q):
    v = sorted(values)
    return v[max(1, math.ceil(q * len(v))) - 1]


glob = f"{data_dir}/metrics/**/*.parquet"
con = duckdb.connect()
rows = con.execute(
    f"SELECT epoch_ms(window_start) AS ws, epoch_ms(window_end) AS we, service, model, model_version, route, "
    f"requests, errors, timeouts, refusals, tokens_in, tokens_out, cost_usd, cost_unpriced, cost_source_event, cost_source_table, quality_score_mean, "
    f"flagged_rate, approval_rate, rejection_rate, latency_p50_ms, latency_p95_ms, latency_p99_ms, latency_max_ms, "
    f"late_events, date, hour FROM read_parquet('{glob}', hive_partitioning = true)"
).fetchall()
cols = [d[0] for d in con.description]
table = {}
for r in rows:
    r = dict(zip(cols, r))
    k = (r["ws"], r["service"], r["model"], r["model_version"], r["route"])
    if k in table:
        failures.append(f"duplicate metrics row {k}")
    table[k] = r
    if r["we"] - r["ws"] != size:
        failures.append(f"window {k} is {r['we'] - r['ws']} ms long, expected {size}")
    # The Hive partition is the window start's date and hour.
    start = datetime.utcfromtimestamp(r["ws"] / 1000)
    if (str(r["date"]), int(r["hour"])) != (start.strftime("%Y-%m-%d"), start.hour):
        failures.append(f"{k} filed under date={r['date']}/hour={r['hour']}")

# pyarrow must read the same table, with the same number of rows.
pa_rows = ds.dataset(f"{data_dir}/metrics", format="parquet", partitioning="hive").to_table().num_rows
if pa_rows != len(rows):
    failures.append(f"pyarrow reads {pa_rows} metrics rows, DuckDB {len(rows)}")

missing = set(acc) - set(table)
extra = set(table) - set(acc)
for k in sorted(missing, key=str)[:5]:
    failures.append(f"missing metrics row {k}")
for k in sorted(extra, key=str)[:5]:
    failures.append(f"unexpected metrics row {k}")

for k in set(acc) & set(table):
    a, r = acc[k], table[k]
    for name in ("requests", "errors", "timeouts", "refusals", "tokens_in", "tokens_out", "cost_unpriced", "cost_source_event", "cost_source_table"):
        check(name, k, a[name], r[name])
    check("late_events", k, 0, r["late_events"])
    check("cost_usd", k, a["cost_nanos"] / 1e9, r["cost_usd"], 1e-9)
    check("quality_score_mean", k, a["q_sum"] / a["q_n"] if a["q_n"] else None, r["quality_score_mean"], 1e-9)
    check("flagged_rate", k, a["flagged"] / a["requests"], r["flagged_rate"], 1e-12)
    dec = a["approved"] + a["rejected"]
    check("approval_rate", k, a["approved"] / dec if dec else None, r["approval_rate"], 1e-12)
    check("rejection_rate", k, a["rejected"] / dec if dec else None, r["rejection_rate"], 1e-12)
    values = lat.get(k)
    if values:
        for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
            exact = nearest_rank(values, q)
            # HDR histogram with 3 significant digits, values recorded in microseconds.
            check(name, k, exact, r[name], exact * 2e-3 + 0.002)
        check("latency_max_ms", k, max(values), r["latency_max_ms"], 1e-9)

total_in = sum(a["requests"] for k, a in acc.items())
print(f"checked {len(table)} metrics rows ({total_in:.0f} window memberships from {lines} events)")
if failures:
    print(f"{len(failures)} mismatches:")
    for f in failures[:40]:
        print("  " + f)
    sys.exit(1)
