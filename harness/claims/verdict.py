"""A figure against what a claim says, and the verdict words every row uses.

Verdicts: ``holds`` / ``does not hold`` (a measured figure or an exact count), ``holds under <assumption>`` (only
with one of the claim's fixed alternatives, or on part of a grid), ``predicted only: ...`` (no record: the planner's
band against the claim) and ``not testable here: <why>``. A predicted reading is ``holds`` when the whole band
satisfies the claim, ``likely holds`` when its central value does, ``likely does not hold`` when only the band
reaches the claim, ``does not hold`` when none of it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from harness.claims.spec import Claimed

CLASSES = ("holds", "does-not-hold", "holds-under", "predicted", "untestable")
READINGS = ("holds", "likely holds", "likely does not hold", "does not hold")
"""Predicted readings, best first."""


@dataclass(frozen=True)
class Verdict:
    """A verdict class (CLASSES), its words, and for a predicted one the reading and the assumption it needs."""

    cls: str
    text: str
    reading: str = ""
    under: str = ""


def _inf(x: Optional[float], sign: float) -> float:
    return sign * float("inf") if x is None else x


def reading(claimed: Claimed, value: float, low: Optional[float], high: Optional[float]) -> str:
    """How a predicted value and its band [low, high] read against the claim (one of READINGS)."""
    lo, hi = (value if low is None else low), (value if high is None else high)
    c_lo, c_hi = _inf(claimed.low, -1), _inf(claimed.high, 1)
    if lo >= c_lo and hi <= c_hi:
        return "holds"
    if claimed.contains(value):
        return "likely holds"
    if hi >= c_lo and lo <= c_hi:
        return "likely does not hold"
    return "does not hold"


def measured(claimed: Claimed, value: float, bound: str = "") -> Optional[bool]:
    """Whether a measured value satisfies the claim; for a lower bound (an OOM), None when it cannot tell."""
    if bound == "lower":
        if claimed.high is not None and value > claimed.high:
            return False
        return True if claimed.high is None and claimed.low is not None and value >= claimed.low else None
    return claimed.contains(value)


def decided(ok: bool, under: str = "") -> Verdict:
    """The verdict of a measured figure or an exact count."""
    if ok and under:
        return Verdict("holds-under", f"holds under {under}", under=under)
    return Verdict("holds", "holds") if ok else Verdict("does-not-hold", "does not hold")


def predicted(read: str, under: str = "") -> Verdict:
    """The verdict of a planner figure (no record of the config)."""
    text = f"predicted only: {read}" + (f" under {under}" if under else "")
    return Verdict("predicted", text, reading=read, under=under)


def untestable(why: str) -> Verdict:
    """A claim (or part) the harness cannot check here, and why; never ``holds``."""
    return Verdict("untestable", f"not testable here: {why}")


def combine(parts: List[Verdict], labels: List[str]) -> Verdict:
    """One verdict for a claim of several parts: it holds only if every testable part does."""
    testable = [(v, label) for v, label in zip(parts, labels) if v.cls != "untestable"]
    if not testable:
        return parts[0]
    skipped = [label for v, label in zip(parts, labels) if v.cls == "untestable"]
    tail = f" ({', '.join(skipped)}: not testable here)" if skipped else ""
    if any(v.cls == "does-not-hold" for v, _ in testable):
        failing = [label for v, label in testable if v.cls == "does-not-hold"]
        return Verdict("does-not-hold", "does not hold" + (f" ({', '.join(failing)})" if len(parts) > 1 else "") + tail)
    guesses = [v for v, _ in testable if v.cls == "predicted"]
    if guesses:
        worst = max(guesses, key=lambda v: READINGS.index(v.reading))
        under = "; ".join(dict.fromkeys(v.under for v in guesses if v.under))
        return Verdict("predicted", predicted(worst.reading, under).text + tail, reading=worst.reading, under=under)
    unders = [v.under for v, _ in testable if v.cls == "holds-under"]
    if unders:
        under = "; ".join(dict.fromkeys(unders))
        return Verdict("holds-under", f"holds under {under}" + tail, under=under)
    return Verdict("holds", "holds" + tail)
