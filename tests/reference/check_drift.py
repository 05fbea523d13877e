"""Independent check of the drift columns of `metrics`.

For every tumbling window x key, rebuilds the reference from the raw input (the key's events
of the BASELINE window lengths before the window, or of the pinned period [FROM, TO)), and
compares psi_* with numpy, ks_* with scipy.stats.ks_2samp and js_prediction with
scipy.spatial.distance.jensenshannon(base=2).

Drift is defined on values measured at 0.001 resolution (round half up), so PSI and KS are
computed here on the same rounded values and must match to 1e-9; KS against the raw values
must stay within the documented bound (the largest share of either sample in one bucket).

usage: check_drift.py INPUT.ndjson DATA_DIR SIZE_MS BASELINE_WINDOWS MIN_SAMPLES [FROM_MS TO_MS]
"""
import json
import sys
from collections import Counter, defaultdict

import numpy as np
import pyarrow.dataset as ds
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp
from common import Checks, event_ms, psi, rounded

inp, data_dir, size, windows, min_samples = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
pinned = tuple(map(int, sys.argv[6:8])) if len(sys.argv) > 6 else None


# key -> list of (time, confidence, quality, prediction)
events = defaultdict(list)
for line in open(inp, "rb"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if not isinstance(e, dict) or "event_id" not in e:
        continue
    k = (e["service"], e["model"], e.get("model_version"), e.get("route"))
    events[k].append((event_ms(e["timestamp"]), e.get("confidence"), e.get("quality_score"), e.get("prediction")))

table = ds.dataset(f"{data_dir}/metrics", format="parquet", partitioning="hive").to_table().to_pylist()


checks = Checks()
check = checks.check


def bucket_bound(xs):
    _, counts = np.unique(rounded(xs), return_counts=True)
    return counts.max() / len(xs)


for r in table:
    start = int(r["window_start"].timestamp() * 1000)
    k = (r["service"], r["model"], r["model_version"], r["route"])
    lo, hi = pinned if pinned else (start - windows * size, start)
    ready = pinned is None or start >= pinned[1]
    cur = [e for e in events[k] if start <= e[0] < start + size]
    ref = [e for e in events[k] if lo <= e[0] < hi] if ready else []
    for col, name in ((1, "confidence"), (2, "quality_score")):
        c = [e[col] for e in cur if e[col] is not None]
        f = [e[col] for e in ref if e[col] is not None]
        if not ready or len(c) < min_samples or len(f) < min_samples or not c or not f:
            check(f"psi_{name}", k + (start,), None, r[f"psi_{name}"], 0)
            check(f"ks_{name}", k + (start,), None, r[f"ks_{name}"], 0)
            continue
        check(f"psi_{name}", k + (start,), psi(f, c), r[f"psi_{name}"], 1e-9)
        check(f"ks_{name}", k + (start,), ks_2samp(rounded(f), rounded(c)).statistic, r[f"ks_{name}"], 1e-9)
        bound = max(bucket_bound(f), bucket_bound(c))
        check(f"ks_{name} vs raw", k + (start,), ks_2samp(f, c).statistic, r[f"ks_{name}"], bound + 1e-12)
    c = Counter(e[3] for e in cur if e[3] is not None)
    f = Counter(e[3] for e in ref if e[3] is not None)
    nc, nf = sum(c.values()), sum(f.values())
    if not ready or nc < min_samples or nf < min_samples or not nc or not nf:
        check("js_prediction", k + (start,), None, r["js_prediction"], 0)
    else:
        cats = sorted(set(c) | set(f))
        want = jensenshannon([f[x] for x in cats], [c[x] for x in cats], base=2)
        check("js_prediction", k + (start,), float(want), r["js_prediction"], 1e-9)

checks.exit_on_failures()
assert checks.non_null["psi_confidence"] > 0, "no window had enough data for drift: the check checked nothing"
print(f"checked {checks.checked} drift values over {len(table)} windows x keys ({dict(checks.non_null)} non-null)")
