"""Independent check of the calibration columns of `metrics`.

Recomputes, for every tumbling window x key, the calibration metrics of the events that
carry both `confidence` and `correct`, with scikit-learn (brier_score_loss, roc_auc_score)
and numpy (ECE / MCE and the reliability bins by their formulas), and compares with the
`metrics` and `calibration_bins` tables read by pyarrow.

Bins are equal-width by default: bin b of B holds (b/B, (b+1)/B]. With equal_mass, the
confidences are ranked at 0.0001 resolution (round half up) and each group of equal rounded
values goes to bin min(B-1, B*below//n), `below` counting the labeled events under it.

With FEEDBACK.ndjson, predictions sent without `correct` take the label of their feedback
(joined by event_id) and the latest `revision` of each window x key is checked.

usage: check_calibration.py INPUT.ndjson DATA_DIR SIZE_MS [BINS [equal_width|equal_mass [FEEDBACK.ndjson]]]
"""
import json
import sys
from collections import defaultdict

import numpy as np
import pyarrow.dataset as ds
from sklearn.metrics import brier_score_loss, roc_auc_score
from common import event_ms

inp, data_dir, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
BINS = int(sys.argv[4]) if len(sys.argv) > 4 else 10
EQUAL_MASS = len(sys.argv) > 5 and sys.argv[5] == "equal_mass"
labels = {}
if len(sys.argv) > 6:
    for line in open(sys.argv[6], "rb"):
        f = json.loads(line)
        labels.setdefault(f["event_id"], f["correct"])


groups = defaultdict(lambda: ([], []))
requests = defaultdict(int)
for line in open(inp, "rb"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if not isinstance(e, dict) or "event_id" not in e:
        continue
    k = (event_ms(e["timestamp"]) // size * size, e["service"], e["model"], e.get("model_version"), e.get("route"))
    requests[k] += 1
    correct = e.get("correct")
    if correct is None:
        correct = labels.get(e["event_id"])
    if e.get("confidence") is not None and correct is not None:
        groups[k][0].append(float(e["confidence"]))
        groups[k][1].append(1 if correct else 0)


def latest(rows, *extra):
    """The rows of the highest revision of each window x key."""
    top = {}
    for r in rows:
        k = (int(r["window_start"].timestamp() * 1000), r["service"], r["model"], r["model_version"], r["route"])
        top[k] = max(top.get(k, 0), r["revision"])
    for r in rows:
        k = (int(r["window_start"].timestamp() * 1000), r["service"], r["model"], r["model_version"], r["route"])
        if r["revision"] == top[k]:
            yield k + tuple(r[e] for e in extra), r


table = ds.dataset(f"{data_dir}/metrics", format="parquet", partitioning="hive").to_table().to_pylist()
rows = dict(latest(table))
assert len(rows) == len({k for k, _ in latest(table)}), "one latest row per window x key"
assert set(rows) == set(requests), f"windows x keys differ: {len(rows)} vs {len(requests)}"

bins_table = ds.dataset(f"{data_dir}/calibration_bins", format="parquet", partitioning="hive").to_table().to_pylist()
bins_rows = dict(latest(bins_table, "bin"))

failures, checked, with_auroc = [], 0, 0


def check(name, k, want, got, tol):
    global checked
    checked += 1
    if want is None or got is None:
        if want is not None or got is not None:
            failures.append(f"{k} {name}: want {want} got {got}")
        return
    if abs(want - got) > tol:
        failures.append(f"{k} {name}: want {want!r} got {got!r} (tolerance {tol})")


for k, n_req in requests.items():
    r = rows[k]
    conf, y = (np.array(v, dtype=float) for v in groups[k])
    n = len(conf)
    check("labeled", k, float(n), float(r["labeled"]), 0)
    check("label_coverage", k, n / n_req, r["label_coverage"], 1e-12)
    if n == 0:
        for c in ("accuracy", "mean_confidence", "overconfidence", "ece", "mce", "brier", "auroc"):
            check(c, k, None, r[c], 0)
        continue
    acc, mc = y.mean(), conf.mean()
    check("accuracy", k, acc, r["accuracy"], 1e-9)
    check("mean_confidence", k, mc, r["mean_confidence"], 1e-9)
    check("overconfidence", k, mc - acc, r["overconfidence"], 1e-9)
    if EQUAL_MASS:
        rank = np.floor(conf * 10_000 + 0.5).astype(int)
        below = np.array([np.sum(rank < v) for v in rank])
        b = np.minimum(BINS - 1, BINS * below // n)
        bounds = {i: (rank[b == i].min() / 10_000, rank[b == i].max() / 10_000) for i in set(b.tolist())}
    else:
        # bin b holds (b/B, (b+1)/B]; 0 falls in the first bin
        b = np.clip(np.ceil(conf * BINS).astype(int) - 1, 0, BINS - 1)
        bounds = {i: (i / BINS, (i + 1) / BINS) for i in range(BINS)}
    gaps = [(np.sum(b == i), abs(y[b == i].mean() - conf[b == i].mean())) for i in range(BINS) if np.any(b == i)]
    # calibration_bins: one row per non-empty bin, nothing for empty ones
    for i in range(BINS):
        got = bins_rows.pop(k + (i,), None)
        if not np.any(b == i):
            if got is not None:
                failures.append(f"{k} bin {i}: empty, but has a row")
            continue
        if got is None:
            failures.append(f"{k} bin {i}: missing row")
            continue
        check(f"bin {i} count", k, float(np.sum(b == i)), float(got["count"]), 0)
        check(f"bin {i} mean_confidence", k, conf[b == i].mean(), got["mean_confidence"], 1e-9)
        check(f"bin {i} accuracy", k, y[b == i].mean(), got["accuracy"], 1e-12)
        check(f"bin {i} lower", k, bounds[i][0], got["lower"], 1e-12)
        check(f"bin {i} upper", k, bounds[i][1], got["upper"], 1e-12)
    check("ece", k, sum(c / n * g for c, g in gaps), r["ece"], 1e-9)
    check("mce", k, max(g for _, g in gaps), r["mce"], 1e-9)
    check("brier", k, brier_score_loss(y, conf), r["brier"], 1e-9)
    if 0 < y.sum() < n:
        with_auroc += 1
        check("auroc", k, roc_auc_score(y, conf), r["auroc"], 0.005)
    else:
        check("auroc", k, None, r["auroc"], 0)

if bins_rows:
    failures.append(f"{len(bins_rows)} calibration_bins rows for windows x keys without labels, e.g. {next(iter(bins_rows))}")
if failures:
    print(f"{len(failures)} mismatches of {checked} values:")
    print("\n".join(failures[:40]))
    sys.exit(1)
assert with_auroc > 0, "some window has both classes"
print(f"checked {checked} calibration values over {len(requests)} windows x keys ({with_auroc} with an AUROC)")
