"""Numbers as table text, and what one pivot position shows.

Rounded to what their uncertainty supports (the stderr to 2 significant digits, the value
to the same decimal place); a seed group as mean ± Student-t 95 % half-interval; a cell
that did not end ok as its status. Deterministic: the same numbers give the same text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from harness.text import format_cell

NO_VALUE = "n/a"
"""An ok cell that has no figure for the metric (the evaluator was not asked for)."""


# ---- numbers as text -------------------------------------------------------------------------


def _signed(text: str, sign: bool) -> str:
    """No ``-0``; a leading ``+`` on a positive delta."""
    zero = not text.strip("-+0.")
    if zero:
        return text.lstrip("-")
    return "+" + text if sign and not text.startswith("-") else text


def plain_number(value: float, sign: bool = False) -> str:
    """4 significant digits (no exponent from 10^4 up); integers as integers."""
    value = float(value)
    return _signed(str(int(value)) if value.is_integer() and abs(value) < 1e15 else format_cell(value), sign)


ZERO_ERR = 1e-9
"""An error below this share of its value is 0 as written (else 18 decimals of rounding noise would be printed)."""


def format_value(value: Optional[float], err: Optional[float] = None, sign: bool = False) -> str:
    """``0.412 ± 0.012``: the error to 2 significant digits, the value to the same decimal place."""
    if value is None or not math.isfinite(value):
        return NO_VALUE
    if err is None or not math.isfinite(err) or err < 0:
        return plain_number(value, sign)
    if err <= ZERO_ERR * max(abs(value), 1.0):  # float noise of an exact 0 (alpaca_eval's minimal-GLM LC stderr)
        return f"{plain_number(value, sign)} ± 0"
    err = float(f"{err:.2g}")
    places = 1 - math.floor(math.log10(err))
    text = f"{value:.{places}f}" if places > 0 else f"{round(value, places):.0f}"
    return f"{_signed(text, sign)} ± {err:.{max(places, 0)}f}"


def t_interval(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and Student-t 95 % half-interval t(0.975, n-1) * sd / sqrt(n) (None for n < 2)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy.special import stdtrit  # the Student-t quantile; imported only when seeds repeat (~0.5 s)

    return mean, float(stdtrit(n - 1, 0.975)) * sd / math.sqrt(n)


# ---- one position of the grid ----------------------------------------------------------------


@dataclass
class Position:
    """What one pivot position shows for one metric."""

    text: str
    number: float = math.nan
    err: Optional[float] = None
    """Uncertainty shown after ±: the stderr (one cell) or the t half-interval (a seed group)."""
    n: int = 0
    """Replicates averaged (0: a single cell or none)."""
    status: bool = False


def position(rows: List[int], values: List[float], errs: List[Optional[float]], labels: List[Optional[str]]) -> Position:
    """One position's text: the value (± stderr), the seed mean ± interval, or the status label."""
    if not rows:
        return Position("")
    ok = [i for i in rows if labels[i] is None]
    bad = [labels[i] for i in rows if labels[i] is not None]
    if not ok:
        return Position(", ".join(dict.fromkeys(str(b) for b in bad)), status=True)
    nums = [i for i in ok if math.isfinite(values[i])]
    if not nums:
        return Position(NO_VALUE)
    if len(rows) == 1:
        return Position(format_value(values[nums[0]], errs[nums[0]]), values[nums[0]], errs[nums[0]])
    mean, half = t_interval([values[i] for i in nums])
    text = format_value(mean, half)
    if bad:
        shown = "; ".join(f"{bad.count(b)} {b}" for b in dict.fromkeys(bad))
        text += f" (n={len(nums)}; {shown})"
    return Position(text, mean, half, n=len(nums))


# ---- which position leads, and by how much ---------------------------------------------------

SEPARATION_REL = 0.05
"""A single-shot figure (no stderr, no step spread) leads only when more than this share of its value ahead."""
SEPARATED = ("bold: the best position, separated from every other one (a gap beyond 2 combined stderr, "
             "sqrt(se_a^2 + se_b^2), where both have one; else no overlap of the p25-p75 per-step spreads (tokens/s); "
             "else more than 5 % apart); (tie): not separated from the best, so no position is bold")
"""The report's definition of "best", printed under every table that marks one."""
TIE = " (tie)"
"""Appended to the text of the positions that share the lead."""

Spread = Optional[Tuple[float, float]]


def separated(a: Position, b: Position, spread_a: Spread = None, spread_b: Spread = None) -> bool:
    """Whether ``a`` and ``b`` differ by more than their noise (the rule ``SEPARATED`` states)."""
    gap = abs(a.number - b.number)
    if a.err is not None and b.err is not None:
        return gap > 2.0 * math.hypot(a.err, b.err)
    if spread_a is not None and spread_b is not None:
        return spread_a[0] > spread_b[1] or spread_b[0] > spread_a[1]
    return gap > SEPARATION_REL * max(abs(a.number), abs(b.number))


@dataclass
class Lead:
    """Who leads a table: ``best`` (bold) only when separated from all others; ``tied`` share the lead."""

    best: Optional[Tuple] = None
    tied: List[Tuple] = field(default_factory=list)
    noisy: Optional[Tuple] = None
    """The top position when its figure is flagged noisy (step CV): never bold."""


def lead(cells: Dict[Tuple, Position], higher_is_better: Optional[bool], spreads: Optional[Dict[Tuple, Spread]] = None,
         noisy: Optional[Dict[Tuple, bool]] = None) -> Lead:
    """The lead among ok positions with a number; nothing without a direction or under 2 numbers."""
    spreads, noisy = spreads or {}, noisy or {}
    usable = {k: p for k, p in cells.items() if not p.status and math.isfinite(p.number)}
    if higher_is_better is None or len(usable) < 2:
        return Lead()
    sign = 1.0 if higher_is_better else -1.0
    top = max(usable, key=lambda k: sign * usable[k].number)  # the first of equals, in grid order
    tied = [k for k in usable if k != top and not separated(usable[top], usable[k], spreads.get(top), spreads.get(k))]
    if tied:
        return Lead(tied=[top, *tied])
    if noisy.get(top):
        return Lead(noisy=top)
    return Lead(best=top)
