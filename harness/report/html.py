"""The offline HTML report: one page (tables, plots, environment) that opens from disk, no network.

plotly.js (~4.6 MB) is written once per folder as the sibling file ``plotly.min.js`` and loaded
by the page with a relative ``<script src="plotly.min.js">`` when it has a plot, so a folder of
reports holds one copy rather than one per page; copy the folder, not the page alone. Each figure
is a div with a fixed id and its own ``Plotly.newPlot`` call. The page names no URL (no CDN, no web font),
carries no timestamp, and is byte-identical when rebuilt from the same records. Other rooms'
output (the claims table) can go first on the page as extra sections; a page of no cells has
no status or environment tables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness.files import write_text_atomic
from harness.report.data import ReportData
from harness.report.plots import CONFIG, MARKERS, MEASURED, OTHER_MARKER, figures, label_of, plot_ids

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENV_COLUMNS = [
    ("device", "env.device"), ("device name", "env.name"), ("torch", "env.libraries.torch"),
    ("transformers", "env.libraries.transformers"), ("peft", "env.libraries.peft"), ("trl", "env.libraries.trl"),
    ("bitsandbytes", "env.libraries.bitsandbytes"), ("CUDA", "env.cuda_version"), ("driver", "env.driver_version"),
    ("python", "env.python"), ("git", "env.git_sha"),
]
"""(header, wide column) of the environment table; a column no cell has is left out. The memory counter is
listed per environment, not grouped on: a cell that never reached training has none."""
STATUS_MEANINGS = {
    "ok": "trained (and evaluated, where asked)",
    "does not fit": "ran out of device memory (oom): the recipe needs more memory than the device has",
    "does not fit (inferred)": "not run: a cell that needs no more memory already ran out of it",
    "failed": "the cell raised an error (hover for it; the record has it in full)",
    "crashed": "the worker process died without writing a result",
    "timed out": "stopped at the cell time limit",
    "diverged": "training loss went non-finite or blew up; stopped",
    "skipped": "not run (see the cell's error)",
    "invalid": "the config cannot be run as given",
    "unsupported": "this framework / device does not support the recipe",
    "interrupted": "stopped by Ctrl-C (or its sweep parent died) while it ran; the same command trains it again",
    "corrupt": "a file of the cell does not parse (truncated?); the error names it",
    "running": "still running when the report was written (the error names the holder); report again once it ends",
}
"""Status label -> what it means, for the page's legend."""
CAPTIONS = {
    "Peak memory": "Bars: measured training peak by the memory counter named on the axis; hatched bars: the capacity "
                   "planner's analytic (uncalibrated) prediction of the same counter. Markers on the axis: cells with no "
                   "measured peak (did not fit, failed, ...).",
    "Throughput": "Bars: loss-bearing tokens per second of optimizer-step time (warm-up excluded); whiskers: p25–p75 of "
                  "per-step throughput where the cell measured enough steps.",
    "Quality": "Each point is an ok cell; the dashed line joins the Pareto front (no other cell is at least as good on "
               "both axes). Cells without a score are drawn beyond the worst score with their status.",
    "Loss curves": "Training loss per logged optimizer step; dashed: held-out loss when the cell evaluated during training.",
}


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def environments(data: ReportData) -> Tuple[List[str], List[List[str]]]:
    """(headers, rows) of the distinct environments the numbers came from, each with the cells measured there."""
    wide = data.wide
    columns = [(h, c) for h, c in ENV_COLUMNS if c in wide.columns and any(_value(v) for v in wide[c])]
    groups: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
    for row in wide[[c for _, c in columns] + [c for c in ("cell", "mem_counter") if c in wide.columns]].to_dict("records"):
        groups.setdefault(tuple(_value(row.get(c)) for _, c in columns), []).append(row)
    rows = []
    for key, members in groups.items():
        counters = ", ".join(sorted({_value(m.get("mem_counter")) for m in members} - {""})) or "–"
        cells = [str(m.get("cell")) for m in members]
        shown = ", ".join(cells[:6]) + (f" and {len(cells) - 6} more" if len(cells) > 6 else "")
        rows.append([*key, counters, f"{len(cells)}: {shown}"])
    return [h for h, _ in columns] + ["memory counter", "cells"], rows


def _status_rows(data: ReportData) -> List[Dict[str, Any]]:
    return data.wide[[c for c in ("cell", "status", "error") if c in data.wide.columns]].to_dict("records")


def status_legend(data: ReportData) -> List[Dict[str, Any]]:
    """The status labels present, with count, meaning and the marker colour the plots use."""
    counts: Dict[str, int] = {}
    for row in _status_rows(data):
        label = label_of(row)
        counts[label] = counts.get(label, 0) + 1
    order = list(STATUS_MEANINGS) + sorted(set(counts) - set(STATUS_MEANINGS))
    return [{"label": label, "count": counts[label], "meaning": STATUS_MEANINGS.get(label, ""),
             "colour": MEASURED if label == "ok" else MARKERS.get(label, OTHER_MARKER)[1]}
            for label in order if label in counts]


MAX_PROBLEMS = 200
"""Rows of the page's "not ok" table; beyond that the page says how many more (cells.csv has every one)."""


def problems(data: ReportData, limit: Optional[int] = None) -> List[Dict[str, str]]:
    """The non-ok cells (the first ``limit``, all when None) with status label and (shortened) error."""
    out: List[Dict[str, str]] = []
    for row in _status_rows(data):
        label = label_of(row)
        if label != "ok" and (limit is None or len(out) < limit):
            error = _value(row.get("error"))
            out.append({"cell": str(row.get("cell")), "label": label, "error": error[:300] + ("…" if len(error) > 300 else "")})
    return out


def _caption(title: str) -> str:
    return next((text for prefix, text in CAPTIONS.items() if title.startswith(prefix)), "")


def section_ids(titles: Sequence[str]) -> List[str]:
    """A fixed anchor per extra section, from its title (``claims``), clear of the page's own anchors."""
    taken = {"status", "tables", "plots", "environment"}
    ids: List[str] = []
    for title in titles:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        ident, n = base, 2
        while ident in taken:
            ident, n = f"{base}-{n}", n + 1
        taken.add(ident)
        ids.append(ident)
    return ids


def render(data: ReportData, tables_html: Sequence[Tuple[str, str]], sections: Sequence[Tuple[str, str]] = (),
           title: Optional[str] = None, footer: Optional[str] = None) -> str:
    """The page as text (what ``write_html`` writes).

    sections: (title, trusted HTML) pairs shown first, each with a nav link; title replaces ``Report: <sweeps>``;
    footer (plain text) replaces the line that names ``python -m harness.report``.
    """
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                      keep_trailing_newline=True)
    plots = figures(data)
    divs = [{"id": pid, "title": name, "caption": _caption(name),
             "html": Markup(fig.to_html(full_html=False, include_plotlyjs=False, div_id=pid, config=CONFIG))}
            for pid, (name, fig) in zip(plot_ids(plots), plots)]
    headers, env_rows = environments(data)
    # a table of thousands of failed cells buries the page (10,000 cells): the first MAX_PROBLEMS, then a count
    legend, shown = status_legend(data), problems(data, MAX_PROBLEMS)
    sweeps = list(dict.fromkeys(Path(s).name for s in data.sweeps))
    extra = [{"id": ident, "title": name, "html": Markup(html)}
             for ident, (name, html) in zip(section_ids([name for name, _ in sections]), sections)]
    return env.get_template("report.html.j2").render(
        title=title if title is not None else ("Report: " + ", ".join(sweeps) if sweeps else "Report"),
        sweeps=sweeps,
        n_cells=len(data.wide),
        axes=data.axes,
        legend=legend,
        problems=shown,
        problems_more=sum(item["count"] for item in legend if item["label"] != "ok") - len(shown),
        sections=extra,
        tables=[{"title": t, "html": Markup(h)} for t, h in tables_html],
        plots=divs,
        env_headers=headers,
        env_rows=env_rows,
        plotly_src=PLOTLY_FILE if divs else "",
        footer=footer or "",
    )


PLOTLY_FILE = "plotly.min.js"
"""The sibling file a page with plots loads plotly.js from (relative, so the folder opens offline)."""


def write_plotly(folder: Path) -> Path:
    """Write plotly.js as ``folder``/plotly.min.js unless a file of the same size is there; return its path."""
    # Imported only for a page that has a plot: a page of claims alone needs no plotly
    from plotly.offline import get_plotlyjs

    path = Path(folder) / PLOTLY_FILE
    text = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(text.encode("utf-8")):
        write_text_atomic(path, text)
    return path


def write_html(data: ReportData, tables_html: Sequence[Tuple[str, str]], path: Path,
               sections: Sequence[Tuple[str, str]] = (), title: Optional[str] = None,
               footer: Optional[str] = None) -> List[Path]:
    """Write the report page to ``path`` and, when it has a plot, plotly.min.js beside it; return the files
    written (tables_html: (title, trusted <table> HTML) pairs; sections, title, footer: as ``render`` takes them)."""
    page = render(data, tables_html, sections, title, footer)
    write_text_atomic(Path(path), page)
    if f'src="{PLOTLY_FILE}"' in page:
        return [Path(path), write_plotly(Path(path).parent)]
    return [Path(path)]
