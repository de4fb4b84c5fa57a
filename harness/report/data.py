"""Records -> tables: the one place a report reads the store.

One or many sweep folders are read through their manifests (``harness.store.layout.load_sweep``);
a cell that several sweeps share appears once, with every sweep that has it. Every cell
of every grid is kept, whatever its status: failed, ``oom``, timed-out, crashed and
skipped cells are results too.

- ``wide``: one row per cell: the summary's columns (``harness.report.rows.summary_row``)
  first, then the axes, ``status_label`` ("does not fit" for oom, "does not fit
  (inferred)" for a cell the OOM frontier skipped), the sweeps, seed,
  cost and the environment.
- ``tidy``: one row per cell and metric: training figures (evaluator ``train``) and every
  evaluator's metric rows (value, stderr, n, unit, direction, who judged, caveats), keyed by
  ``cell`` alone. The config and environment are per cell, so they live in the wide table
  (``config_frame`` gives the dotted ``config.*`` columns) and are joined on ``cell`` when wanted:
  copying them onto every metric row made metrics.csv 316 MB at 10,000 cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List

import pandas as pd

from harness.report.caveats import metric_columns, wide_columns
from harness.report.metrics import KNOWN, MetricSpec, spec_for
from harness.report.rows import axis_value, flatten, natural_key, summary_row, varied_axes, with_spec_config
from harness.store.layout import inferred, load_sweep, read_manifest

STATUS_LABELS = {"oom": "does not fit", "timeout": "timed out", "crashed": "crashed", "failed": "failed",
                 "skipped": "skipped", "diverged": "diverged", "invalid": "invalid", "unsupported": "unsupported",
                 "interrupted": "interrupted", "corrupt": "corrupt", "running": "running"}
"""How a non-ok status reads in a table cell or a plot label."""
INFERRED_LABEL = "does not fit (inferred)"
"""The label of a cell the OOM frontier skipped (``harness.sweep.frontier``): status skipped, its error says why."""
TRAIN_METRICS = [c for c in KNOWN if not c.startswith(("mt_bench", "alpaca"))]


@dataclass
class ReportData:
    """Everything a report shows, read once from the store."""

    sweeps: List[Path]
    cells: List[Dict[str, Any]]
    """Cell views (training record + requested evaluations), one per cell id, each with ``sweeps``."""
    wide: pd.DataFrame
    tidy: pd.DataFrame
    axes: List[str]
    """Columns whose values differ across the cells (summary axis names: model, lora_r, quant, train.seed, ...)."""
    specs: Dict[str, MetricSpec] = field(default_factory=dict)

    def spec(self, column: str) -> MetricSpec:
        """Unit, direction and label of a wide column."""
        if column not in self.specs:
            self.specs[column] = spec_for(column, self.tidy)
        return self.specs[column]


def status_label(status: Any) -> str:
    """ok, or what a non-ok status means in a table ("does not fit" for oom)."""
    return "ok" if status == "ok" else STATUS_LABELS.get(str(status), str(status))


def environment(cell: Dict[str, Any]) -> Dict[str, Any]:
    """The cell's environment as flat ``env.*`` values: device, Python, library versions, git sha."""
    env = cell.get("environment") or {}
    flat = flatten({k: v for k, v in env.items() if not isinstance(v, list)})
    return {f"env.{k}": v for k, v in flat.items()}


def _cells(sweep_dirs: Iterable[Path]) -> List[Dict[str, Any]]:
    by_id: Dict[str, Dict[str, Any]] = {}
    for sweep in sweep_dirs:
        for view in load_sweep(sweep):
            view = with_spec_config(view, sweep)
            cell = by_id.setdefault(view["cell_id"], {**view, "sweeps": []})
            cell["sweeps"].append(sweep.name)
    return list(by_id.values())


def _wide_row(cell: Dict[str, Any], axes: List[str]) -> Dict[str, Any]:
    row = summary_row(cell)
    config = cell.get("config") or {}
    for axis in axes:
        row[axis] = axis_value(row, config, axis)
    row["status_label"] = INFERRED_LABEL if inferred(row) else status_label(row["status"])
    row["sweeps"] = ",".join(cell["sweeps"])
    row["seed"] = (config.get("train") or {}).get("seed")
    row["train_cost_usd"] = (cell.get("efficiency") or {}).get("train_cost_usd")
    return {**row, **wide_columns(row, cell), **environment(cell)}


def config_columns(cell: Dict[str, Any]) -> Dict[str, Any]:
    """The cell's config as flat ``config.<dotted key>`` values (lists and ``eval.judge.*`` left out)."""
    # eval.judge.* names whom the command asked, not who judged (a later `python -m harness.judge` may use another
    # judge): the metric rows' judge_* columns say that, from the judge's own result
    return {f"config.{k}": v for k, v in flatten(cell.get("config") or {}).items()
            if not isinstance(v, (list, dict)) and not k.startswith("eval.judge.")}


def config_frame(data: "ReportData") -> pd.DataFrame:
    """One row per cell of ``data`` (wide order): ``cell`` and its ``config.*`` columns, for cells.csv."""
    rows = [{"cell": cell.get("cell_id"), **config_columns(cell)} for cell in data.cells]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["cell"])


def _tidy_rows(cell: Dict[str, Any], wide: Dict[str, Any]) -> List[Dict[str, Any]]:
    shared = {"cell": wide["cell"]}
    rows = [{"evaluator": "train", "task": "train", "metric": name, "value": wide.get(name), "stderr": None,
             "n": None, "unit": KNOWN[name].unit, "higher_is_better": KNOWN[name].higher_is_better}
            for name in TRAIN_METRICS if wide.get(name) is not None]
    rows += [{k: metric.get(k) for k in ("evaluator", "task", "metric", "value", "stderr", "n", "unit", "higher_is_better")}
             for metric in cell.get("metrics", [])]
    memo: Dict[Any, Dict[str, Any]] = {}
    return [{**shared, **row, **metric_columns(wide, cell, row, memo)} for row in rows]


def load(sweep_dirs: Iterable[Path]) -> ReportData:
    """Read one or many sweep folders into a ReportData (cells in axis order; none dropped)."""
    sweeps = [Path(s) for s in sweep_dirs]
    cells = _cells(sweeps)
    manifest = read_manifest(sweeps[0]) if sweeps else None
    axes = varied_axes([c.get("config") or {} for c in cells], manifest)
    wide_rows = [_wide_row(cell, axes) for cell in cells]
    order = sorted(range(len(cells)), key=lambda i: tuple(natural_key(wide_rows[i].get(a)) for a in axes))
    cells, wide_rows = [cells[i] for i in order], [wide_rows[i] for i in order]
    tidy = pd.DataFrame([row for cell, wide in zip(cells, wide_rows) for row in _tidy_rows(cell, wide)])
    if tidy.empty:
        tidy = pd.DataFrame(columns=["cell", "evaluator", "task", "metric", "value", "stderr", "n", "unit",
                                     "higher_is_better"])
    wide = pd.DataFrame(wide_rows)
    return ReportData(sweeps, cells, wide, tidy, axes)
