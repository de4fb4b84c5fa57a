"""Spread for judge scores: bootstrap intervals over questions, and paired deltas against a base.

Questions, not judgments, are the unit of resampling: two turns (or k repeats) of one
question share its difficulty, so resampling judgments would understate the spread.
"""

from __future__ import annotations

import math
from typing import Dict, Hashable, List, Optional, Sequence

DRAWS = 2000
LEVEL = 0.95


def _rng(seed: int):
    import numpy as np

    return np.random.default_rng(seed)


def sem(values: Sequence[float]) -> Optional[float]:
    """Standard error of the mean (sample standard deviation / sqrt(n)); None below 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def bootstrap_ci(values: Sequence[float], draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> Optional[List[float]]:
    """Percentile bootstrap interval [lo, hi] of the mean of ``values`` (one value per question)."""
    import numpy as np

    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    means = data[_rng(seed).integers(0, len(data), size=(draws, len(data)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def paired_delta(cell: Dict[Hashable, float], base: Dict[Hashable, float], draws: int = DRAWS, seed: int = 0,
                 level: float = LEVEL) -> Optional[Dict[str, float]]:
    """cell - base over the questions both have: mean delta, bootstrap se and interval, n.

    Resampling the shared questions in pairs keeps each question's difficulty in both
    terms, so the interval is much tighter than sqrt(se_cell^2 + se_base^2).
    """
    import numpy as np

    shared = sorted(set(cell) & set(base), key=str)
    if not shared:
        return None
    diffs = np.asarray([cell[k] - base[k] for k in shared], dtype=float)
    out: Dict[str, float] = {"delta": float(diffs.mean()), "n": len(shared), "se": None, "lo": None, "hi": None}
    if len(shared) >= 2:
        means = diffs[_rng(seed).integers(0, len(diffs), size=(draws, len(diffs)))].mean(axis=1)
        tail = (1 - level) / 2 * 100
        out.update(se=float(means.std(ddof=1)), lo=float(np.percentile(means, tail)), hi=float(np.percentile(means, 100 - tail)))
    return out
