"""Which recipe is best for its cost: the non-dominated cells, quality against peak memory and against cost or time.

The question a sweep is run to answer is rarely "which cell scored best" but "which cells are worth what they cost":
a cell is on the Pareto front when no other ok cell is at least as good on quality and at least as cheap, and
strictly better on one. The report lists those cells, with the settings that make them, for the sweep's headline
quality metric (a judged score when there is one, else the held-out loss; the direction is the metric's) against
peak memory and against training cost (USD, from the device price) or, without a price, wall time.

Light: no plotly here, so report.md and report.tex need none; the plots draw the same front.
"""

from __future__ import annotations

import math
from itertools import groupby
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import pandas as pd

from harness.report.quality import DOMAIN_SCORES
from harness.report.rows import PRIMARY_METRICS

if TYPE_CHECKING:
    from harness.report.data import ReportData
    from harness.report.pivot import Table

QUALITY_HEADLINES = ("eval_loss", "seq_ppl", "mt_bench", "alpaca_lc_wr", "alpaca_wr")
"""Quality columns plotted against memory and cost when present (then lm-eval and domain scores)."""
JUDGED_FIRST = ("mt_bench", "alpaca_lc_wr", "alpaca_wr")
"""The Pareto table's quality: a judged chat score when the cells have one (what users fine-tune for), else the first
quality headline."""
COSTS = (("peak_mem_mib", "peak memory", "MiB"), ("train_cost_usd", "training cost", "USD"), ("wall_s", "wall time", "s"))


def finite(value: Any) -> Optional[float]:
    """A finite float, or None for missing / NaN / non-numbers (and booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def pareto_front(points: Sequence[Tuple[float, float]], higher_is_better: bool) -> List[int]:
    """Indices of the non-dominated points, ordered by x: x (memory, cost) lower is better, y by its direction.

    A point is dominated when another is no worse on both and better on one; equal points
    do not dominate each other.
    """
    sign = -1.0 if higher_is_better else 1.0  # compare "badness" on y: lower is better on both axes
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1], i))
    front: List[int] = []
    best = math.inf  # the lowest badness of any point with a smaller x
    for _, same_x in groupby(order, key=lambda i: points[i][0]):  # one sweep: O(n log n) for 10,000 cells
        group = list(same_x)
        lowest = sign * points[group[0]][1]
        if lowest < best:
            front += [i for i in group if sign * points[i][1] == lowest]
        best = min(best, lowest)
    return front


def quality_columns(data: ReportData) -> List[str]:
    """Quality headlines with at least one value: eval loss, judged scores, lm-eval and domain scores."""
    wide = data.wide
    columns = [c for c in QUALITY_HEADLINES if c in wide.columns]
    for column in wide.columns:
        metric = next((m for m in PRIMARY_METRICS if column.endswith(f"_{m}")), None)
        if metric and f"{column[: -len(metric) - 1]}_delta" in wide.columns and f"{column}_se" in wide.columns:
            columns.append(column)  # lm-eval <task>_<metric> (it always comes with <task>_delta and _se)
        elif column.endswith(tuple(f"_{s}" for s in DOMAIN_SCORES)) and not column.startswith(("mt_bench", "alpaca")):
            columns.append(column)
    columns = list(dict.fromkeys(columns))
    return [c for c in columns if any(finite(v) is not None for v in wide[c])]



def headline_quality(data: "ReportData") -> Optional[str]:
    """The quality column the Pareto table ranks by (a judged score first), or None when no cell has one."""
    columns = quality_columns(data)
    return next((c for c in JUDGED_FIRST if c in columns), columns[0] if columns else None)


def _costs(data: "ReportData") -> List[Tuple[str, str, str]]:
    """Peak memory, then cost in USD when any ok cell has a price, else wall time."""
    priced = "train_cost_usd" in data.wide.columns and pd.to_numeric(data.wide["train_cost_usd"], errors="coerce").notna().any()
    return [COSTS[0], COSTS[1] if priced else COSTS[2]]


def pareto_tables(data: "ReportData") -> List["Table"]:
    """One table per cost axis: the front's cells (settings, quality, cost), cheapest first; [] with under 2 points."""
    from harness.report.caveats import table_notes
    from harness.report.notes import environment_notes
    from harness.report.numbers import format_value
    from harness.report.pivot import Table
    from harness.report.summary import NOTES
    from harness.report.values import is_seed

    quality = headline_quality(data)
    if quality is None or data.wide.empty:
        return []
    spec = data.spec(quality)
    if spec.higher_is_better is None:
        return []
    wide = data.wide.to_dict("records")
    axes = [a for a in data.axes if not is_seed(a)] or ["model"]
    tables = []
    for column, name, unit in _costs(data):
        at = [i for i, row in enumerate(wide) if row.get("status") == "ok" and finite(row.get(quality)) is not None
              and finite(row.get(column)) is not None]
        if len(at) < 2:
            continue
        points = [(finite(wide[i][column]) or 0.0, finite(wide[i][quality]) or 0.0) for i in at]
        front = [at[k] for k in pareto_front(points, spec.higher_is_better)]
        index = pd.MultiIndex.from_tuples([tuple(str(wide[i].get(a)) for a in axes) for i in front], names=axes)
        q_head = f"{spec.label} ({spec.unit})" if spec.unit else spec.label
        frame = pd.DataFrame({q_head: [format_value(finite(wide[i][quality]), finite(wide[i].get(f"{quality}_se")))
                                       for i in front],
                              f"{name} ({unit})": [format_value(finite(wide[i][column])) for i in front]},
                             index=index, dtype=object)
        direction = "higher" if spec.higher_is_better else "lower"
        notes = [f"the Pareto front: the {len(front)} of {len(at)} ok cells with a {spec.label} and a {name} that no other "
                 f"cell beats on both ({spec.label}: {direction} is better; {name}: lower is better), cheapest first",
                 *table_notes([wide[i] for i in at], [data.cells[i] for i in at], quality, spec.unit),
                 *table_notes([wide[i] for i in at], [data.cells[i] for i in at], column, unit),
                 "a front whose figures differ by less than their noise (the tables above mark such ties) orders "
                 "recipes the next run may swap",
                 *([NOTES["cpu"]] if any(wide[i].get("device") == "cpu" for i in at) else []),
                 *environment_notes(data)]
        empty = pd.DataFrame(False, index=index, columns=frame.columns)
        tables.append(Table(f"Pareto front: {spec.label} vs {name}", quality, frame,
                            pd.DataFrame(math.nan, index=index, columns=frame.columns), empty,
                            list(dict.fromkeys(notes)), None, empty.copy()))
    return tables
