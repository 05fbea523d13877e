"""Helpers the reference checks share."""
import sys
from collections import Counter
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


class Checks:
    """Values compared with a reference: the mismatches, how many were checked, and how many
    of each name were non-null on both sides."""

    def __init__(self):
        self.failures, self.checked, self.non_null = [], 0, Counter()

    def check(self, name, k, want, got, tol):
        """Both null, or both set and within `tol`."""
        self.checked += 1
        if want is None or got is None:
            if want is not None or got is not None:
                self.failures.append(f"{k} {name}: want {want} got {got}")
            return
        self.non_null[name] += 1
        if abs(want - got) > tol:
            self.failures.append(f"{k} {name}: want {want!r} got {got!r} (tolerance {tol})")

    def exit_on_failures(self):
        if self.failures:
            print(f"{len(self.failures)} mismatches of {self.checked} values:")
            print("\n".join(self.failures[:40]))
            sys.exit(1)
