"""The values of a report key for every cell: a wide column, a dotted config key, a status label.

What the pivot, its footnotes and the Pareto table read; light (pandas only).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pandas as pd

from harness.errors import ConfigError
from harness.report.data import ReportData, status_label
from harness.report.rows import AXIS_COLUMNS, axis_value
from harness.text import format_cell

INFERRED_OOM = "does not fit (inferred"
"""How the error of a skipped cell the planner ruled out starts (an inferred OOM)."""
_MISSING = object()


def is_seed(key: str) -> bool:
    """A seed axis (``train.seed``): replicates of one recipe, aggregated, never an axis of a pivot."""
    return key.endswith("seed")



def _clean(value: Any) -> Any:
    """A plain Python value: NaN/NA -> None, numpy scalars -> int/float/str."""
    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def label(value: Any) -> str:
    """How an axis value reads in a header: 8 (not 8.0), ``-`` for none."""
    value = _clean(value)
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return format_cell(value)


def _lookup(config: Dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def key_values(data: ReportData, key: str, option: str) -> List[Any]:
    """The key's value for each wide row: a wide column (``lora.r`` reads ``lora_r``) or a dotted config key."""
    column = AXIS_COLUMNS.get(key, key)
    if column in data.wide.columns:
        return [_clean(v) for v in data.wide[column]]
    by_id = {c.get("cell_id"): c.get("config") or {} for c in data.cells}
    ids = data.wide["cell"] if "cell" in data.wide.columns else [None] * len(data.wide)
    configs = [by_id.get(cell, {}) for cell in ids]
    if not any(_lookup(config, key) is not _MISSING for config in configs):
        raise ConfigError(f"{option}: {key!r} is neither a report column nor a config key "
                          f"(axes: {', '.join(data.axes) or 'none'})")
    return [_clean(axis_value({}, config, key)) for config in configs]


def values_of(data: ReportData, name: str, default: Any = None) -> List[Any]:
    """A wide column as plain values (``default`` for every row when the column is absent)."""
    if name not in data.wide.columns:
        return [default] * len(data.wide)
    return [_clean(v) for v in data.wide[name].tolist()]


def coalesce(data: ReportData, *names: str) -> List[Any]:
    """Per row, the first of ``names`` that has a value."""
    out = values_of(data, names[0])
    for name in names[1:]:
        out = [a if a is not None else b for a, b in zip(out, values_of(data, name))]
    return out


def status_texts(data: ReportData) -> List[Optional[str]]:
    """Per wide row: None for an ok cell, else its label ("does not fit", "does not fit (inferred)", "failed")."""
    out: List[Optional[str]] = []
    rows = zip(values_of(data, "status", "ok"), values_of(data, "error"), values_of(data, "status_label"))
    for status, error, given in rows:
        if status == "ok":
            out.append(None)
        elif status == "skipped" and str(error or "").startswith(INFERRED_OOM):
            out.append("does not fit (inferred)")
        else:
            out.append(given or status_label(status))
    return out
