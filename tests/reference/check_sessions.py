"""Independent check of loop safety: the `sessions` table and the session columns of
`metrics` (tumbling windows), recomputed from the raw input in plain Python.

Events are taken in input order (the processor's order); a (tool, input_hash) seen for the
MAX_REPEATS-th time in a session makes it runaway in the window of that event, as does step
MAX_STEPS + 1. Every call after the first of a (tool, input_hash) is a repeat, its cost wasted.
Costs per event come from the `events` table (priced by the processor, checked elsewhere).

usage: check_sessions.py INPUT.ndjson DATA_DIR SIZE_MS MAX_STEPS MAX_REPEATS
"""
import json
import sys
from collections import defaultdict

import pyarrow.dataset as ds
from common import event_ms

inp, data_dir = sys.argv[1], sys.argv[2]
size, max_steps, max_repeats = map(int, sys.argv[3:6])


events = ds.dataset(f"{data_dir}/events", format="parquet", partitioning="hive").to_table(columns=["event_id", "cost_usd"])
cost_of = {e: round((c or 0.0) * 1e9) for e, c in zip(events["event_id"].to_pylist(), events["cost_usd"].to_pylist())}

sessions = {}
windows = defaultdict(lambda: {"ids": set(), "runaway": 0, "wasted": 0})
for line in open(inp, "rb"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if not isinstance(e, dict) or e.get("event_id") not in cost_of:
        continue
    key = (e["service"], e["model"], e.get("model_version"), e.get("route"))
    t = event_ms(e["timestamp"])
    w = windows[(t // size * size,) + key]
    sid = e.get("session_id")
    if sid is None:
        continue
    s = sessions.setdefault((e["service"], e["model"], sid), {"steps": 0, "repeats": 0, "cost": 0, "wasted": 0, "calls": defaultdict(int), "runaway": False})
    w["ids"].add(sid)
    cost = cost_of[e["event_id"]]
    s["steps"] += 1
    s["cost"] += cost
    became = False
    if e.get("tool") is not None and e.get("input_hash") is not None:
        c = s["calls"][(e["tool"], e["input_hash"])] = s["calls"][(e["tool"], e["input_hash"])] + 1
        if c > 1:
            s["repeats"] += 1
            s["wasted"] += cost
            w["wasted"] += cost
        if c >= max_repeats and not s["runaway"]:
            s["runaway"] = became = True
    if s["steps"] > max_steps and not s["runaway"]:
        s["runaway"] = became = True
    if became:
        w["runaway"] += 1

failures = []
table = ds.dataset(f"{data_dir}/sessions", format="parquet", partitioning="hive").to_table().to_pylist()
got = {(r["service"], r["model"], r["session_id"]): r for r in table}
if len(got) != len(table):
    failures.append("a session has more than one row")
if set(got) != set(sessions):
    failures.append(f"sessions differ: {len(got)} rows for {len(sessions)} sessions")
for k, s in sessions.items():
    r = got.get(k)
    if r is None:
        continue
    want = (s["steps"], s["repeats"], s["runaway"])
    have = (r["steps"], r["repeats"], r["runaway"])
    if want != have or abs(r["cost_usd"] - s["cost"] / 1e9) > 1e-9 or abs(r["wasted_cost_usd"] - s["wasted"] / 1e9) > 1e-9:
        failures.append(f"{k}: want {want} cost {s['cost']} wasted {s['wasted']}, got {have} {r['cost_usd']} {r['wasted_cost_usd']}")

metrics = ds.dataset(f"{data_dir}/metrics", format="parquet", partitioning="hive").to_table().to_pylist()
for r in metrics:
    k = (int(r["window_start"].timestamp() * 1000), r["service"], r["model"], r["model_version"], r["route"])
    w = windows.get(k, {"ids": set(), "runaway": 0, "wasted": 0})
    if (r["sessions"], r["runaway_sessions"]) != (len(w["ids"]), w["runaway"]) or abs(r["wasted_cost_usd"] - w["wasted"] / 1e9) > 1e-9:
        failures.append(f"{k}: want sessions {len(w['ids'])} runaway {w['runaway']} wasted {w['wasted']}, got {r['sessions']} {r['runaway_sessions']} {r['wasted_cost_usd']}")

if failures:
    print(f"{len(failures)} mismatches:")
    print("\n".join(failures[:30]))
    sys.exit(1)
runaway = sum(s["runaway"] for s in sessions.values())
print(f"checked {len(sessions)} sessions ({runaway} runaway) and {len(metrics)} windows x keys")
