"""Divergence: the first non-finite loss of a training run (NaN or inf is never an ok result).

Backends report it in their train stats as ``"diverged": {"step", "metric", "value"}``
(the hf backend stops training there); for a backend that does not, the loss curves
(``loss_curve``, ``eval_curve``: lists of [step, value]) are scanned instead. Light: no torch.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Optional, Tuple

CURVES = (("loss_curve", "loss"), ("eval_curve", "eval_loss"))
"""Train-stats key of each curve, and the metric name a divergence in it is reported under."""


def is_finite(value: Any) -> bool:
    """True for a real, finite number; False for NaN, +-inf, None, a bool or anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def value_text(value: Any) -> str:
    """A non-finite value as text that survives strict JSON: nan, inf, -inf, None."""
    return repr(value) if isinstance(value, float) else str(value)


def point(step: Any, metric: str, value: Any) -> Dict[str, Any]:
    """The divergence entry: {"step": int or None, "metric": name, "value": text}."""
    try:
        number: Optional[int] = int(step)
    except (TypeError, ValueError, OverflowError):
        number = None
    return {"step": number, "metric": metric, "value": value_text(value)}


def _first_in_curve(curve: Iterable[Any], metric: str) -> Optional[Dict[str, Any]]:
    """The first [step, value] of a curve whose value is not finite."""
    for entry in curve or ():
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            step, value = entry
        else:  # a malformed entry is no loss value at all
            step, value = None, entry
        if not is_finite(value):
            return point(step, metric, value)
    return None


def _order(found: Dict[str, Any]) -> Tuple[int, int]:
    """Sort key: earliest step first; a step-less entry last; a train loss before an eval loss at equal steps."""
    step = found["step"]
    return (step if step is not None else math.inf, 0 if found["metric"] == "loss" else 1)


def divergence(train_stats: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The first non-finite training point of a cell, or None when training stayed finite.

    ``train_stats["diverged"]`` (set by a backend that watched its own losses) wins;
    otherwise the earliest non-finite value of ``loss_curve`` and ``eval_curve``.
    """
    reported = (train_stats or {}).get("diverged")
    if isinstance(reported, dict) and reported:
        return point(reported.get("step"), str(reported.get("metric", "loss")), reported.get("value"))
    found = [
        hit
        for key, metric in CURVES
        if (hit := _first_in_curve((train_stats or {}).get(key) or [], metric)) is not None
    ]
    return min(found, key=_order) if found else None


def describe(diverged: Dict[str, Any]) -> str:
    """One line for a record's error: ``training diverged: loss = nan at step 2``."""
    where = f" at step {diverged['step']}" if diverged.get("step") is not None else ""
    return f"training diverged: {diverged.get('metric', 'loss')} = {diverged.get('value')}{where}"
