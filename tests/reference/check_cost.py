"""Independent check of cost_zscore and cost_robust_z with numpy.

The series per key is the window's cost per request (cost_usd / requests, themselves checked
against the raw input by check_metrics.py); a window's baseline is the key's windows that
started in the BASELINE window lengths before it. z uses numpy's mean and population std;
the robust z uses the median and 1.4826 x the median absolute deviation. Both are null
below MIN_BASELINE baseline windows or when the spread is 0.

usage: check_cost.py DATA_DIR SIZE_MS BASELINE MIN_BASELINE
"""
import sys
from collections import defaultdict

import numpy as np
import pyarrow.dataset as ds

data_dir, size, windows, min_baseline = sys.argv[1], *map(int, sys.argv[2:5])
rows = ds.dataset(f"{data_dir}/metrics", format="parquet", partitioning="hive").to_table().to_pylist()
series = defaultdict(list)
for r in rows:
    k = (r["service"], r["model"], r["model_version"], r["route"])
    series[k].append((int(r["window_start"].timestamp() * 1000), r))

failures, checked, non_null = [], 0, 0
for k, items in series.items():
    items.sort(key=lambda x: x[0])
    for i, (start, r) in enumerate(items):
        x = r["cost_usd"] / r["requests"]
        base = np.array([o["cost_usd"] / o["requests"] for s, o in items[:i] if s >= start - windows * size])
        want_z = want_r = None
        if len(base) >= min_baseline:
            std = np.std(base)
            med = np.median(base)
            mad = np.median(np.abs(base - med))
            want_z = (x - np.mean(base)) / std if std > 0 else None
            want_r = (x - med) / (1.4826 * mad) if mad > 0 else None
        for name, want in (("cost_zscore", want_z), ("cost_robust_z", want_r)):
            got = r[name]
            checked += 1
            if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-9 * max(1.0, abs(want))):
                failures.append(f"{k} {start} {name}: want {want} got {got}")
            non_null += got is not None

if failures:
    print(f"{len(failures)} mismatches of {checked}:")
    print("\n".join(failures[:30]))
    sys.exit(1)
assert non_null > 0, "no window had a baseline: the check checked nothing"
print(f"checked {checked} cost anomaly values ({non_null} non-null)")
