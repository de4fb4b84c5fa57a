"""Pivot tables: one table per metric over the axes the user picks (``report.rows`` x ``report.cols``).

Every cell of every grid is shown, whatever its status: a failed or out-of-memory cell reads
"failed" / "does not fit" where its number would be, never a gap. Cells that share a pivot
position and differ only by seed are one recipe: mean ± Student-t 95 % half-interval over
them. Numbers are rounded to what their uncertainty supports (the stderr to 2 significant
digits, the value to the same place), so two builds from the same records give the same text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from harness.errors import ConfigError
from harness.report.data import ReportData
from harness.report.notes import environment_notes, table_footnotes
from harness.report.numbers import NO_VALUE, SEPARATED, TIE, Position, Spread, format_value, lead, position
from harness.report.quality import domain_cells
from harness.report.rows import AXIS_COLUMNS, lm_eval_cells, natural_key
from harness.report.values import is_seed, key_values, label, status_texts, values_of

HEADLINES = ("peak_mem_mib", "tokens_per_s", "eval_loss", "perplexity")
JUDGED = ("mt_bench", "alpaca_wr", "alpaca_lc_wr", "alpaca_lc_wr_minimal")
DOMAIN_HEADLINE = "_rouge_l"


@dataclass
class Layout:
    """What a pivot shows: axis columns down the side and across the top, and one table per value column."""

    rows: List[str]
    """Axis columns (or dotted config keys) that label the rows."""
    cols: List[str]
    """Axis columns across the top; empty: one column, the metric."""
    values: List[str]
    """Wide columns, one table each."""


@dataclass
class Table:
    """One metric over the pivot: display strings, the numbers behind them, the best cell, footnotes."""

    title: str
    """The metric's label (``peak memory``), or ``<label> vs <baseline>`` for a delta table."""
    metric: str
    """The wide column shown."""
    frame: pd.DataFrame
    """Display strings; index = row keys, columns = column keys."""
    numbers: pd.DataFrame
    """The value (mean for seed groups) of each position; NaN where there is none."""
    best: pd.DataFrame
    """True at the best position(s) among ok cells; all False when the metric has no direction."""
    footnotes: List[str]
    """What a reader needs: memory counter, device, library versions, n, what the labels mean."""
    unit: Optional[str] = None
    """The metric's unit, shown beside the title (None: a plain number)."""
    status: pd.DataFrame = field(default_factory=pd.DataFrame)
    """True where the position shows a status label (every cell there is non-ok)."""


def _numeric(data: ReportData, column: str) -> bool:
    return column in data.wide.columns and pd.to_numeric(data.wide[column], errors="coerce").notna().any()


def default_values(data: ReportData) -> List[str]:
    """Memory, throughput, then the quality headlines the cells carry (only columns with a number)."""
    candidates = list(HEADLINES)
    for cell in data.cells:
        lm = [c for c in lm_eval_cells(cell) if not c.endswith(("_se", "_base", "_delta"))]
        domain = [c for c in domain_cells(cell) if c.endswith(DOMAIN_HEADLINE)]
        candidates += [c for c in lm + list(JUDGED) + domain if c not in candidates]
    candidates += [c for c in JUDGED if c not in candidates]
    return [c for c in candidates if _numeric(data, c)]


def default_layout(data: ReportData) -> Layout:
    """Rows and columns from the varied axes (seeds aggregated, not axes), values from what was measured."""
    axes = [a for a in data.axes if not is_seed(a)]
    if not axes:
        rows, cols = ["model"], []
    elif len(axes) == 1:
        rows, cols = axes, []
    elif len(axes) == 2:
        rows, cols = axes[:1], axes[1:]
    else:
        rows, cols = axes[:-1], axes[-1:]
    return Layout(list(rows), list(cols), default_values(data))


def _index(keys: List[Tuple], names: List[str], single: str) -> pd.Index:
    if not names:
        return pd.Index([single])
    labels = [tuple(label(v) for v in key) for key in keys]
    if len(names) == 1:
        return pd.Index([lab[0] for lab in labels], name=names[0])
    return pd.MultiIndex.from_tuples(labels, names=names)


# ---- the grid --------------------------------------------------------------------------------


@dataclass
class Grid:
    """Which wide rows sit at each pivot position, and the positions in natural order."""

    row_keys: List[Tuple]
    col_keys: List[Tuple]
    members: Dict[Tuple[Tuple, Tuple], List[int]]


def _ordered(keys: Any) -> List[Tuple]:
    # repr breaks natural_key ties (8 vs "8") so the order never depends on set iteration
    return sorted(set(keys), key=lambda k: (tuple(natural_key(v) for v in k), tuple(repr(v) for v in k)))


def grid(data: ReportData, layout: Layout) -> Grid:
    """Place every cell; ConfigError when cells at one position differ in more than their seed."""
    row_values = [key_values(data, k, "report.rows") for k in layout.rows]
    col_values = [key_values(data, k, "report.cols") for k in layout.cols]
    members: Dict[Tuple[Tuple, Tuple], List[int]] = {}
    for i in range(len(data.wide)):
        at = (tuple(v[i] for v in row_values), tuple(v[i] for v in col_values))
        members.setdefault(at, []).append(i)
    shown = {AXIS_COLUMNS.get(k, k) for k in layout.rows + layout.cols}
    others = [a for a in data.axes if a not in shown and not is_seed(a)]
    values = {a: key_values(data, a, "report.rows") for a in others}
    for (row, col), rows in members.items():
        differ = [a for a in others if len({label(values[a][i]) for i in rows}) > 1]
        if differ:
            at = ", ".join(f"{k}={label(v)}" for k, v in zip(layout.rows + layout.cols, row + col)) or "one position"
            raise ConfigError(f"report.rows/report.cols: {len(rows)} cells at {at} differ in {', '.join(differ)}: "
                              f"add {', '.join(differ)} to report.rows or report.cols")
    return Grid(_ordered(r for r, _ in members), _ordered(c for _, c in members), members)


def _same(value: Any, text: str) -> bool:
    if value is None:
        return text.lower() in ("null", "none", "-", "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return str(value).lower() == text.lower() if isinstance(value, bool) else label(value) == text or str(value) == text


def baseline_row(data: ReportData, baseline: str) -> int:
    """The one wide row that ``key=value,key=value`` names; ConfigError for 0 or several."""
    option = f"report.baseline={baseline}"
    match = list(range(len(data.wide)))
    for part in baseline.split(","):
        key, sep, text = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option}: expected key=value[,key=value...]")
        values = key_values(data, key.strip(), option)
        match = [i for i in match if _same(values[i], text.strip())]
    if not match:
        raise ConfigError(f"{option}: matches 0 cells")
    if len(match) > 1:
        differ = [a for a in data.axes if len({label(key_values(data, a, option)[i]) for i in match}) > 1]
        raise ConfigError(f"{option}: matches {len(match)} cells: add keys ({', '.join(differ) or 'cell'})")
    return match[0]


# ---- tables --------------------------------------------------------------------------------


def _floats(data: ReportData, name: str) -> List[float]:
    if name not in data.wide.columns:
        return [math.nan] * len(data.wide)
    return [float(v) for v in pd.to_numeric(data.wide[name], errors="coerce").fillna(math.nan)]


def _marks(data: ReportData, metric: str, g: Grid) -> Tuple[Dict[Tuple, Spread], Dict[Tuple, bool]]:
    """Per single-cell position: its p25-p75 step spread and its noisy flag (tokens/s only; else none)."""
    if metric != "tokens_per_s":
        return {}, {}
    low, high, flag = _floats(data, "tokens_per_s_p25"), _floats(data, "tokens_per_s_p75"), values_of(data, "step_cv_flag")
    spreads: Dict[Tuple, Spread] = {}
    noisy: Dict[Tuple, bool] = {}
    for at, rows in g.members.items():
        if len(rows) == 1 and math.isfinite(low[rows[0]]) and math.isfinite(high[rows[0]]):
            spreads[at] = (low[rows[0]], high[rows[0]])
        noisy[at] = any(bool(flag[i]) for i in rows)
    return spreads, noisy


def _table(title: str, metric: str, unit: Optional[str], g: Grid, layout: Layout, cells: Dict[Tuple, Position],
           higher_is_better: Optional[bool], notes: List[str],
           marks: Tuple[Dict[Tuple, Spread], Dict[Tuple, bool]] = ({}, {})) -> Table:
    header = f"{title} ({unit})" if unit else title
    index, columns = _index(g.row_keys, layout.rows, "all cells"), _index(g.col_keys, layout.cols, header)
    found = lead(cells, higher_is_better, *marks)
    cells = {at: replace(p, text=p.text + TIE) if at in found.tied else p for at, p in cells.items()}
    if found.best or found.tied or found.noisy:
        notes = [*notes, SEPARATED]
    if found.noisy:
        notes.append("the top tokens/s is flagged noisy (step CV above run.step_cv_warn), so it is not bold: "
                     "read tokens_per_s_p25..p75 in cells.csv")

    def frame(attr: str, dtype: Any) -> pd.DataFrame:
        grid_values = [[getattr(cells[(r, c)], attr) for c in g.col_keys] for r in g.row_keys]
        return pd.DataFrame(grid_values, index=index, columns=columns, dtype=dtype)

    best = pd.DataFrame([[(r, c) == found.best for c in g.col_keys] for r in g.row_keys], index=index, columns=columns)
    return Table(title, metric, frame("text", object), frame("number", float), best, notes, unit, frame("status", bool))


def build_tables(data: ReportData, layout: Layout, baseline: Optional[str] = None) -> List[Table]:
    """One table per value column (each followed by its delta table when a baseline is named)."""
    for metric in layout.values:
        if metric not in data.wide.columns:
            raise ConfigError(f"report.values: no column {metric!r} in the report (e.g. {', '.join(HEADLINES[:2])})")
    g = grid(data, layout)
    labels = status_texts(data)
    base = baseline_row(data, baseline) if baseline else None
    env = environment_notes(data)
    tables: List[Table] = []
    for metric in layout.values:
        spec = data.spec(metric)
        values = _floats(data, metric)
        se = [e if math.isfinite(e) else None for e in _floats(data, f"{metric}_se")]
        cells = {(r, c): position(g.members.get((r, c), []), values, se, labels) for r in g.row_keys for c in g.col_keys}
        used_se = any(p.err is not None and not p.n for p in cells.values())
        notes = table_footnotes(data, metric, spec.unit, list(cells.values()),
                       [f"± is the evaluator's standard error ({metric}_se)"] if used_se else [], env)
        tables.append(_table(spec.label, metric, spec.unit, g, layout, cells, spec.higher_is_better, notes,
                             _marks(data, metric, g)))
        if base is not None and baseline:
            base_value = values[base] if labels[base] is None else math.nan
            tables.append(_delta(data, g, layout, cells, metric, (base, baseline, base_value, se[base], labels[base]), env))
    return tables


def _delta(data: ReportData, g: Grid, layout: Layout, cells: Dict[Tuple, Position], metric: str,
           base: Tuple[int, str, float, Optional[float], Optional[str]], env: List[str]) -> Table:
    """The metric minus the baseline cell's value at every position (status labels kept)."""
    row, baseline, base_value, base_se, base_label = base
    spec = data.spec(metric)
    shown = format_value(base_value, base_se) if math.isfinite(base_value) else base_label or NO_VALUE
    notes = [f"delta = value - the baseline cell's value ({baseline}: {shown})"]
    out: Dict[Tuple, Position] = {}
    for at, p in cells.items():
        if p.status or not math.isfinite(p.number) or not math.isfinite(base_value):
            out[at] = p if p.status or not p.text else Position(NO_VALUE)
        elif row in g.members.get(at, []) and not p.n:  # the baseline itself: exactly 0
            out[at] = Position("0 (baseline)", 0.0)
        else:
            err = math.sqrt(p.err ** 2 + base_se ** 2) if p.err is not None and base_se is not None and not p.n else None
            out[at] = Position(format_value(p.number - base_value, err, sign=True), p.number - base_value, err, p.n)
    if any(p.err is not None for p in out.values()):
        notes.append("± combines the cell's and the baseline's stderr as independent: sqrt(se^2 + se_base^2)")
    if any(p.n for p in out.values()):
        notes.append("seed means are compared with the baseline cell's value; their delta carries no ±")
    notes = table_footnotes(data, metric, spec.unit, list(out.values()), notes, env)
    # no lead marked: the metric's own table marks it, and "0 (baseline) (tie)" would say nothing
    return _table(f"{spec.label} vs {baseline}", metric, spec.unit, g, layout, out, None, notes)
