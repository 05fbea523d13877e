"""Helpers the reference checks share."""
from datetime import datetime

import numpy as np


def event_ms(ts):
    """An event's `timestamp` (epoch ms or RFC 3339) as epoch milliseconds."""
    if isinstance(ts, (int, float)):
        return int(ts)
    return int(round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000))


def rounded(xs):
    """Values at drift's 0.001 resolution (round half up)."""
    return np.floor(np.asarray(xs, dtype=float) * 1000 + 0.5) / 1000


def psi(ref, cur):
    """PSI over 10 bins whose edges are the reference's deciles (as the processor defines it)."""
    ref, cur = np.sort(rounded(ref)), rounded(cur)
    n = len(ref)
    # edge j: smallest reference value with at least j/10 of the reference at or below it
    edges = np.array([ref[(j * n + 9) // 10 - 1] for j in range(1, 10)])
    p = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=10) / n
    q = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=10) / len(cur)
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))
