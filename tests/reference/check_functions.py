"""Independent check of the built-in SQL functions of `inferwatch query`.

Runs, per service x model over the whole `events` table,
  ece / mce / brier / auroc / reliability (confidence, correct),
  latency_quantile(latency_ms, 0.99), cost_quantile(cost_usd, 0.95),
  psi / ks (confidence, timestamp < SPLIT), js(prediction, timestamp < SPLIT)
through the binary, and compares them with scikit-learn, scipy and numpy on the same events
read by pyarrow. SPLIT is the middle of the events' time range: earlier events are the
reference.

usage: check_functions.py INFERWATCH_BIN DATA_DIR
"""
import json
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import timezone

import numpy as np
import pyarrow.dataset as ds
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, roc_auc_score
from common import Checks, psi, rounded

binary, data_dir = sys.argv[1], sys.argv[2]
events = ds.dataset(f"{data_dir}/events", format="parquet", partitioning="hive").to_table().to_pylist()
times = [e["timestamp"] for e in events]
split = min(times) + (max(times) - min(times)) / 2
split_sql = split.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
is_ref = f"timestamp < TIMESTAMP '{split_sql}'"
sql = f"""SELECT service, model,
  ece(confidence, correct) AS ece, mce(confidence, correct) AS mce,
  brier(confidence, correct) AS brier, auroc(confidence, correct) AS auroc,
  reliability(confidence, correct) AS bins,
  latency_quantile(latency_ms, 0.99) AS latency_p99, cost_quantile(cost_usd, 0.95) AS cost_p95,
  psi(confidence, {is_ref}) AS psi, ks(confidence, {is_ref}) AS ks, js(prediction, {is_ref}) AS js
FROM events GROUP BY service, model"""
out = subprocess.run([binary, "query", "--data-dir", data_dir, "--format", "json", sql],
                     capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(f"query failed: {out.stderr}")
rows = {(r["service"], r["model"]): r for r in json.loads(out.stdout.splitlines()[0])}

by_key = defaultdict(list)
for e in events:
    by_key[(e["service"], e["model"])].append(e)



checks = Checks()
check = checks.check


def nearest_rank(xs, q):
    xs = np.sort(np.asarray(xs, dtype=float))
    return float(xs[max(int(np.ceil(q * len(xs))), 1) - 1]) if len(xs) else None


MIN_SAMPLES = 100  # [drift] min_samples default
if set(rows) != set(by_key):
    checks.failures.append(f"query groups {sorted(rows)} != events groups {sorted(by_key)}")
for k, evs in by_key.items():
    r = rows.get(k, {})
    lab = [(e["confidence"], e["correct"]) for e in evs if e["confidence"] is not None and e["correct"] is not None]
    conf = np.array([c for c, _ in lab], dtype=float)
    y = np.array([int(c) for _, c in lab])
    if len(lab):
        b = np.clip(np.ceil(conf * 10).astype(int) - 1, 0, 9)
        gaps = [(np.sum(b == i), abs(y[b == i].mean() - conf[b == i].mean())) for i in range(10) if np.any(b == i)]
        check("ece", k, sum(c / len(lab) * g for c, g in gaps), r.get("ece"), 1e-9)
        check("mce", k, max(g for _, g in gaps), r.get("mce"), 1e-9)
        check("brier", k, brier_score_loss(y, conf), r.get("brier"), 1e-9)
        got_bins = {x["bin"]: x["count"] for x in r.get("bins") or []}
        want_bins = {i: int(np.sum(b == i)) for i in range(10) if np.any(b == i)}
        checks.checked += 1
        if got_bins != want_bins:
            checks.failures.append(f"{k} reliability: want {want_bins} got {got_bins}")
        if 0 < y.sum() < len(y):
            check("auroc", k, roc_auc_score(y, conf), r.get("auroc"), 0.005)
    lat = [e["latency_ms"] for e in evs if e["latency_ms"] is not None]
    want = nearest_rank(lat, 0.99)
    check("latency_p99", k, want, r.get("latency_p99"), (want or 0) * 1e-3 + 1e-3)
    cost = [e["cost_usd"] for e in evs if e["cost_usd"] is not None]
    want = nearest_rank(cost, 0.95)
    check("cost_p95", k, want, r.get("cost_p95"), (want or 0) * 1e-3 + 1e-9)
    ref = [e["confidence"] for e in evs if e["timestamp"] < split and e["confidence"] is not None]
    cur = [e["confidence"] for e in evs if e["timestamp"] >= split and e["confidence"] is not None]
    if len(ref) >= MIN_SAMPLES and len(cur) >= MIN_SAMPLES:
        check("psi", k, psi(ref, cur), r.get("psi"), 1e-9)
        check("ks", k, ks_2samp(rounded(ref), rounded(cur)).statistic, r.get("ks"), 1e-9)
    else:
        check("psi", k, None, r.get("psi"), 0)
    f = Counter(e["prediction"] for e in evs if e["timestamp"] < split and e["prediction"] is not None)
    c = Counter(e["prediction"] for e in evs if e["timestamp"] >= split and e["prediction"] is not None)
    if sum(f.values()) >= MIN_SAMPLES and sum(c.values()) >= MIN_SAMPLES:
        cats = sorted(set(c) | set(f))
        want = float(jensenshannon([f[x] for x in cats], [c[x] for x in cats], base=2))
        check("js", k, want, r.get("js"), 1e-9)
    else:
        check("js", k, None, r.get("js"), 0)

checks.exit_on_failures()
for name in ("ece", "brier", "auroc", "latency_p99", "psi", "ks", "js"):
    assert checks.non_null[name] > 0, f"no group had a {name} value: the check checked nothing"
print(f"checked {checks.checked} function values over {len(rows)} groups ({dict(checks.non_null)} non-null)")
