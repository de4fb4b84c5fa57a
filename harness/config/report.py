"""Config blocks of the report and the optional W&B logger; neither changes a cell or its id.

Light (dataclasses only): the config schema imports it in the parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from harness.config.names import require

LOGGERS = ("none", "wandb")


@dataclass
class ReportConfig:
    """What the report written at the end of a sweep (and by ``python -m harness.report``) shows."""

    rows: Optional[List[str]] = None
    """Pivot row keys (axis columns such as model, lora_r, quant, or dotted config keys); None = from what the sweep varied."""
    cols: Optional[List[str]] = None
    """Pivot column keys; None = from what the sweep varied (the last varied axis)."""
    values: Optional[List[str]] = None
    """Metric columns, one table each (peak_mem_mib, tokens_per_s, eval_loss, mt_bench, ...); None = memory,
    throughput and every quality headline the cells have."""
    baseline: Optional[str] = None
    """``key=value,...`` naming exactly one cell; every table gets a delta table against it."""
    out: Optional[str] = None
    """Folder for the report files; None = the sweep folder (for several sweeps: report.out is required)."""
    html: bool = True
    """Write report.html: tables and interactive plots in one self-contained file (opens offline)."""
    latex: bool = True
    """Write report.tex: the pivot tables as booktabs LaTeX."""
    flat_metrics: bool = False
    """Also write metrics_flat.csv/.parquet: each metric row with its cell's status, ``config.*`` and ``env.*``
    columns copied on (what metrics.csv held before; large: ~300 MB at 10,000 cells). metrics.csv is keyed by
    ``cell`` and joins cells.csv on it."""

    def __post_init__(self) -> None:
        for key in ("rows", "cols", "values"):
            names = getattr(self, key)
            if names is not None:
                for name in names:
                    require(bool(str(name).strip()) and "," not in str(name), f"report.{key}", name,
                             "one column name per list item (report.rows=[model,lora.r])")
        if self.baseline is not None:
            for part in self.baseline.split(","):
                require("=" in part and part.split("=", 1)[0].strip() != "", "report.baseline", self.baseline,
                         "must be key=value[,key=value...] naming one cell")


@dataclass
class LoggerConfig:
    """Experiment tracking from the parent, from the records only (the worker never logs)."""

    name: str = "none"
    """none, or wandb (pip install 'harness[wandb]'): each cell a W&B run with id = cell id, grouped by sweep."""
    project: str = "harness"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (team or user); None = your default."""
    mode: str = "online"
    """online, or offline (files under <sweep>/wandb/, `wandb sync` them later)."""

    def __post_init__(self) -> None:
        require(self.name in LOGGERS, "logger", self.name, f"must be one of {', '.join(LOGGERS)}")
        require(self.mode in ("online", "offline"), "logger.mode", self.mode, "must be online or offline")
