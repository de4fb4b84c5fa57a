"""Write every report file of one or many sweeps from their records.

    cells.csv / cells.parquet      the wide table: one row per cell (summary columns first, then status, sweeps,
                                   environment ``env.*`` and the config as dotted ``config.*`` columns)
    metrics.csv / metrics.parquet  the tidy table: one row per cell and metric (evaluator, task, metric, value,
                                   stderr, n, unit, higher_is_better, judge_*, caveats), keyed by ``cell``, no config
    metrics_flat.csv / .parquet    only with report.flat_metrics: the metric rows with the cell's columns joined on
    report.md                      README-ready pivot tables (value ± stderr, units, best in bold, footnotes)
    report.tex                     the same tables as booktabs LaTeX
    report.html                    tables and interactive plots; opens from disk offline
    plotly.min.js                  plotly.js, once per folder, loaded by report.html (written when it has a plot)

The config is per cell, so it is written once per cell (cells.*) rather than on each metric row;
one join gives the flat table back::

    pd.read_parquet("metrics.parquet").merge(pd.read_parquet("cells.parquet"), on="cell", suffixes=("", "_cell"))

(both tables have ``caveats``: the metric row's, of its kind, stays ``caveats``; the cell's, of every kind,
becomes ``caveats_cell``.)

``page`` is that HTML page as text, for a room that shows its own section first (the claims' page).

Everything is rebuilt from the records alone and deterministically (no timestamps, fixed
plot ids), so a committed report can be checked with ``git diff --exit-code``.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import pandas as pd

from harness.config.report import LoggerConfig, ReportConfig
from harness.errors import ConfigError
from harness.files import write_text_atomic
from harness.report.data import ReportData, config_frame, load

if TYPE_CHECKING:
    from harness.report.pivot import Table


def out_dir(sweeps: Sequence[Path], cfg: ReportConfig) -> Path:
    """report.out, else the sweep folder (one sweep) or ``report-<names digest>`` beside the first sweep (several)."""
    if cfg.out:
        return Path(cfg.out).expanduser()
    if len(sweeps) == 1:
        return Path(sweeps[0])
    digest = hashlib.sha256("\0".join(sorted(Path(s).name for s in sweeps)).encode()).hexdigest()[:10]
    return Path(sweeps[0]).parent / f"report-{digest}"


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix types (numbers and text, lists) become text, so Parquet can store them."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        kinds = {type(v) for v in out[column] if v is not None and not (isinstance(v, float) and pd.isna(v))}
        if len(kinds) > 1 or kinds & {list, dict, tuple}:
            out[column] = [None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in out[column]]
    return out


def write_frame(frame: pd.DataFrame, stem: Path) -> List[Path]:
    """Write ``frame`` as ``stem``.csv and ``stem``.parquet (mixed-type columns as text there), each atomically."""
    csv_path, parquet_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    write_text_atomic(csv_path, frame.to_csv(index=False))
    tmp = parquet_path.with_name(f".{parquet_path.name}.{uuid.uuid4().hex[:8]}.tmp")  # two hosts may report at once
    try:
        _parquet_safe(frame).to_parquet(tmp, index=False)
    except OSError as exc:  # pyarrow's error names no file; a full disk must name the one it could not write
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(parquet_path)) from exc
    tmp.replace(parquet_path)
    return [csv_path, parquet_path]


def cells_table(data: ReportData) -> pd.DataFrame:
    """cells.csv: the wide table with each cell's ``config.*`` columns appended (one row per cell)."""
    config = config_frame(data)
    extra = [c for c in config.columns if c not in data.wide.columns]
    if data.wide.empty or not extra:
        return data.wide
    return pd.concat([data.wide.reset_index(drop=True), config[extra].reset_index(drop=True)], axis=1)


FLAT_FIRST = ("cell", "status", "status_label", "sweeps")
"""The cell columns that lead each metrics_flat row, before its config.* and env.* columns."""


def flat_metrics(tidy: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The old flat metrics table: every metric row with its cell's status, sweeps, ``config.*`` and ``env.*``."""
    keep = [c for c in FLAT_FIRST if c in cells.columns] + [c for c in cells.columns if c.startswith("config.")] + [
        c for c in cells.columns if c.startswith("env.")]
    shared = cells[keep]
    return shared.merge(tidy, on="cell", how="right")[keep + [c for c in tidy.columns if c != "cell"]]


def _header(data: ReportData) -> str:
    names = ", ".join(sorted({Path(s).name for s in data.sweeps}))
    counts = data.wide["status_label"].value_counts().to_dict() if not data.wide.empty else {}
    status = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    return f"# Report: {names}\n\n{len(data.wide)} cells ({status}).\n\n"


def pivot_tables(data: ReportData, cfg: ReportConfig) -> List["Table"]:
    """The report's pivot tables: the layout the sweep varied, overridden by report.rows / cols / values."""
    from harness.report.pivot import build_tables, default_layout

    layout = default_layout(data)
    layout.rows = list(cfg.rows) if cfg.rows is not None else layout.rows
    layout.cols = list(cfg.cols) if cfg.cols is not None else layout.cols
    layout.values = list(cfg.values) if cfg.values is not None else layout.values
    unknown = [v for v in layout.values if v not in data.wide.columns]
    if unknown:
        raise ConfigError(f"report.values: no column {', '.join(unknown)} in these cells "
                          f"(see cells.csv for the columns; e.g. peak_mem_mib, tokens_per_s, eval_loss)")
    from harness.report.pareto import pareto_tables

    return build_tables(data, layout, cfg.baseline) + pareto_tables(data)


def _tables_html(tables: Sequence["Table"]) -> List[Tuple[str, str]]:
    from harness.report.publish import table_html

    return [(t.title, table_html(t)) for t in tables]


def page(data: ReportData, cfg: ReportConfig, sections: Sequence[Tuple[str, str]] = (), title: Optional[str] = None,
         footer: Optional[str] = None) -> str:
    """The report.html page of ``data`` as text, with ``sections`` ((title, trusted HTML) pairs) first.

    What ``write_report`` writes as report.html, without writing any other file; ``data`` of no cells gives a page
    of the sections alone (no status, tables, plots or environment).
    """
    from harness.report.html import render

    tables = pivot_tables(data, cfg) if not data.wide.empty else []
    return render(data, _tables_html(tables), sections, title, footer)


def write_report(data: ReportData, cfg: ReportConfig, where: Path,
                 sections: Sequence[Tuple[str, str]] = ()) -> List[Path]:
    """Write the report files for ``data`` into ``where``; return their paths.

    sections: (title, trusted HTML) pairs that report.html shows before its tables, each with a nav link.
    """
    from harness.report.publish import to_latex, to_markdown

    where.mkdir(parents=True, exist_ok=True)
    cells = cells_table(data)
    written = write_frame(cells, where / "cells") + write_frame(data.tidy, where / "metrics")
    if cfg.flat_metrics:
        written += write_frame(flat_metrics(data.tidy, cells), where / "metrics_flat")
    tables = pivot_tables(data, cfg)
    write_text_atomic(where / "report.md", _header(data) + to_markdown(tables))
    written.append(where / "report.md")
    if cfg.latex:
        write_text_atomic(where / "report.tex", to_latex(tables))
        written.append(where / "report.tex")
    if cfg.html:
        from harness.report.html import write_html

        written += write_html(data, _tables_html(tables), where / "report.html", sections)
    return written


def report(sweeps: Sequence[Path], cfg: Optional[ReportConfig] = None, logger: Optional[LoggerConfig] = None,
           say: Callable[[str], None] = print) -> List[Path]:
    """Load the sweeps, write the report files, log to the tracker if one is set; return the files."""
    cfg = cfg or ReportConfig()
    data = load(sweeps)
    files = write_report(data, cfg, out_dir(sweeps, cfg))
    if logger is not None and logger.name == "wandb":
        from harness.report.wandb_log import log_sweep

        log_sweep(data, asdict(logger), files)
    html = next((f for f in files if f.suffix == ".html"), None)
    also = "report.md, report.tex, cells.csv/.parquet, metrics.csv/.parquet" + (
        ", metrics_flat.csv/.parquet" if cfg.flat_metrics else "") + (", plotly.min.js (keep it beside the page)"
                                                                        if any(f.suffix == ".js" for f in files) else "")
    say(f"report: {html or files[0].parent / 'report.md'}  (also {also})")
    return files


def settings(blocks: Any) -> tuple[ReportConfig, LoggerConfig]:
    """(ReportConfig, LoggerConfig) from a composed config (DictConfig or dataclass) that has them, else defaults."""
    from omegaconf import OmegaConf

    def typed(node: Any, cls: Any) -> Any:
        if node is None:
            return cls()
        if isinstance(node, cls):
            return node
        plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
        return cls(**plain)

    return typed(getattr(blocks, "report", None), ReportConfig), typed(getattr(blocks, "logger", None), LoggerConfig)
