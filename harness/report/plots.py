"""The report's plots: plotly figures built from a ReportData, byte-identical from the same records.

Every cell is drawn whatever its status: a cell that did not fit (``oom``, or skipped as an
inferred OOM) or that failed, crashed or timed out gets a labelled marker where its bar or
point would be, never left out. Hover text names the cell and its config.

Determinism: figures carry no random ids (plotly.py sets none; trace ``uid`` is fixed here
anyway), values are written as plain JSON, and each plot's div id comes from its title
(``plot_ids``).
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.report.data import ReportData, status_label
from harness.report.pareto import finite as _num
from harness.report.pareto import pareto_front, quality_columns
from harness.report.rows import natural_key

Plot = Tuple[str, go.Figure]
"""(title, figure)."""
INFERRED_OOM = "does not fit (inferred"
"""Error prefix of a skipped cell that a smaller cell's OOM ruled out (an inferred OOM)."""
MARKERS: Dict[str, Tuple[str, str]] = {
    "does not fit": ("x", "#6b6b6b"),
    "does not fit (inferred)": ("x-open", "#9a9a9a"),
    "failed": ("circle-x", "#c0392b"),
    "crashed": ("diamond-x", "#c0392b"),
    "timed out": ("hourglass", "#d35400"),
    "diverged": ("star-triangle-up", "#8e44ad"),
}
"""Status label -> (plotly marker symbol, colour) of a cell that has no figure to draw."""
OTHER_MARKER = ("square-x", "#7f6a5a")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
MEASURED, PREDICTED, FRONT = "#1f77b4", "#aec7e8", "#2ca02c"
MAX_NOTES = 8
"""Lines of "no loss curve" notes under the loss plot."""
MAX_LABELS = 12
"""Quality scatter points labelled with their settings; beyond that only the Pareto front's are."""
MAX_CURVES = 40
"""Cells whose loss curves one plot draws; beyond that it is unreadable (the rest are named as not drawn)."""
CONFIG_KEYS = ("model", "framework", "peft", "quant", "lora_r", "seed")
"""Keys shown in every hover besides the varied axes."""
LAYOUT = dict(template="plotly_white", height=480, margin=dict(l=80, r=20, t=70, b=80),
              font=dict(family="system-ui, -apple-system, 'Segoe UI', sans-serif", size=13),
              hoverlabel=dict(align="left"), legend=dict(orientation="v", yanchor="top", y=1.0, x=1.02))
CONFIG = {"displaylogo": False, "responsive": True}
"""plotly.js options: no logo link (the page makes no network reference)."""


def _arr(values: Any) -> np.ndarray:
    """Values as an object array: plotly validates it ~10x faster than a list (10,000 cells), and writes it as
    plain JSON (numbers, strings, null), not base64, so committed pages diff readably."""
    return np.array(values, dtype=object)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def label_of(row: Dict[str, Any]) -> str:
    """The status as a plot shows it: ok, "does not fit", "does not fit (inferred)", failed, ..."""
    if row.get("status") == "skipped" and str(row.get("error") or "").startswith(INFERRED_OOM):
        return "does not fit (inferred)"
    return status_label(row.get("status"))


PLOTTED = ("cell", "status", "error", "mem_counter", "peak_mem_mib", "pred_mem_mib", "pred_err_pct", "tokens_per_s",
           "tokens_per_s_p25", "tokens_per_s_p75", "train_cost_usd", "wall_s")
"""Wide columns the plots read (besides the axes, CONFIG_KEYS and the quality columns)."""


def _rows(data: ReportData, quality: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Wide rows as dicts (NaN -> None; only the columns plotted), with the record of each and its status label."""
    wide = data.wide
    columns = [c for c in dict.fromkeys([*PLOTTED, *CONFIG_KEYS, *data.axes, *quality]) if c in wide.columns]
    rows = []
    for cell, raw in zip(data.cells, wide[columns].to_dict("records")):
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in raw.items()}
        rows.append({**row, "_record": cell, "_label": label_of(row)})
    return rows


def _settings(row: Dict[str, Any], axes: Sequence[str]) -> str:
    """``a=1 · b=x`` for the varied axes (empty when nothing varies)."""
    return " · ".join(f"{a}={_text(row.get(a))}" for a in axes)


def _tick(row: Dict[str, Any], first: str, axes: Sequence[str], skip: Sequence[str]) -> str:
    """A category label: ``first`` then one line per other varied axis (text values bare, numbers as ``key=value``)."""
    lines = [first]
    for axis in axes:
        if axis not in skip:
            value = row.get(axis)
            short = "r" if axis == "lora_r" else axis.rsplit(".", 1)[-1]
            lines.append(_text(value) if isinstance(value, str) else f"{short}={_text(value)}")
    return "<br>".join(lines)


def _rest(row: Dict[str, Any], axes: Sequence[str], skip: Sequence[str]) -> Tuple:
    """Natural sort key over the varied axes not in ``skip``."""
    return tuple(natural_key(row.get(a)) for a in axes if a not in skip)


def _flat(labels: Sequence[str]) -> Optional[int]:
    """0 (horizontal tick labels) when they fit side by side, else None (plotly tilts them)."""
    widest = max((len(line) for label in labels for line in label.split("<br>")), default=0)
    return 0 if len(labels) * (widest + 2) * 7.5 <= 900 else None


def _hover(row: Dict[str, Any], axes: Sequence[str], *figures: str) -> str:
    """Cell id, status, axis values and config, then the figures the point shows (HTML-escaped)."""
    head = row.get("_head")
    if head is None:  # the same for every figure: built once per cell
        keys = list(dict.fromkeys([*axes, *CONFIG_KEYS]))
        lines = [f"<b>{html.escape(str(row.get('cell')))}</b>", f"status: {html.escape(row['_label'])}"]
        lines.append(html.escape(" · ".join(f"{k}={_text(row.get(k))}" for k in keys if row.get(k) is not None)))
        if row["_label"] != "ok" and row.get("error"):
            error = str(row["error"])
            lines.append("error: " + html.escape(error[:140] + ("…" if len(error) > 140 else "")))
        head = row["_head"] = "<br>".join(lines)
    return "<br>".join([head, *(html.escape(f) for f in figures if f)])


def _fmt(value: Optional[float], unit: Optional[str] = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return f"{text} {unit}" if unit else text


def _layout(fig: go.Figure, title: str, **extra: Any) -> go.Figure:
    fig.update_layout(**{**LAYOUT, "title": dict(text=title, x=0.01, y=0.98), **extra})
    for i, trace in enumerate(fig.data):
        trace.uid = f"t{i}"  # plotly.js would invent one in the browser; fixed here so the JSON never varies
    return fig


def _status_trace(rows: List[Dict[str, Any]], label: str, x: List[Any], y: List[float], axes: Sequence[str],
                  **extra: Any) -> go.Scatter:
    """One marker per non-ok cell of ``label`` (text-labelled up to MAX_LABELS): drawn at (x, y), never dropped."""
    symbol, colour = MARKERS.get(label, OTHER_MARKER)
    extra.setdefault("textposition", "top center")
    # thousands of identical text labels draw one grey smear (10,000 cells): past MAX_LABELS the legend names them
    labelled = len(rows) <= MAX_LABELS
    return go.Scatter(x=_arr(x), y=_arr(y), mode="markers+text" if labelled else "markers", name=label,
                      text=_arr([label] * len(rows)) if labelled else None,
                      textfont=dict(color=colour, size=12), hovertext=_arr([_hover(r, axes) for r in rows]), hoverinfo="text",
                      marker=dict(symbol=symbol, size=13, color=colour, line=dict(width=2, color=colour)), **extra)


def _by_label(rows: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["_label"], []).append(row)
    return groups


# ---- memory ----------------------------------------------------------------------------------


def _rank(row: Dict[str, Any], axes: Sequence[str] = ()) -> str:
    """``r=16``, or ``dora r=16`` when the method varies too (else LoRA and DoRA bars would share one slot)."""
    if row.get("lora_r") is None:
        return _text(row.get("peft"))
    method = f"{_text(row.get('peft'))} " if "peft" in axes else ""
    return f"{method}r={_text(row.get('lora_r'))}"


def memory_figure(data: ReportData, rows: List[Dict[str, Any]]) -> Optional[go.Figure]:
    """Peak memory by LoRA rank × quantization, the planner's prediction beside each measured bar."""
    if not any(_num(r.get("peak_mem_mib")) is not None for r in rows):
        return None
    axes = data.axes
    skip = ("lora_r", "quant", "peft")
    rows = sorted(rows, key=lambda r: (natural_key(r.get("lora_r")), str(r.get("peft")), natural_key(r.get("quant")),
                                       _rest(r, axes, skip)))

    def x_of(group: List[Dict[str, Any]]) -> List[List[str]]:
        return [[_rank(r, axes) for r in group], [_tick(r, _text(r.get("quant")), axes, skip) for r in group]]

    dnf = ("does not fit", "does not fit (inferred)")  # a peak up to the OOM is not the recipe's peak
    measured = [r for r in rows if _num(r.get("peak_mem_mib")) is not None and r["_label"] not in dnf]
    predicted = [r for r in rows if _num(r.get("pred_mem_mib")) is not None]
    fig = go.Figure()

    def bars(group: List[Dict[str, Any]], column: str, name: str, **style: Any) -> None:
        hover = [_hover(r, axes, f"measured: {_fmt(_num(r.get('peak_mem_mib')), 'MiB')} ({_text(r.get('mem_counter'))})",
                        f"predicted: {_fmt(_num(r.get('pred_mem_mib')), 'MiB')}",
                        f"prediction error: {_fmt(_num(r.get('pred_err_pct')), '%')}") for r in group]
        fig.add_trace(go.Bar(x=_arr(x_of(group)), y=_arr([_num(r.get(column)) for r in group]), name=name,
                             offsetgroup=column, hovertext=_arr(hover), hoverinfo="text", **style))

    bars(measured, "peak_mem_mib", "measured", marker_color=MEASURED)
    if predicted:
        bars(predicted, "pred_mem_mib", "predicted (planner, uncalibrated)",
             marker=dict(color=PREDICTED, pattern=dict(shape="/", fgcolor=MEASURED, size=6)))
    for label, group in _by_label([r for r in rows if r["_label"] != "ok"]).items():
        fig.add_trace(_status_trace(group, label, x_of(group), [0.0] * len(group), axes, offsetgroup="peak_mem_mib"))
    counters = sorted({str(r["mem_counter"]) for r in rows if r.get("mem_counter")})
    return _layout(fig, "Peak memory by LoRA rank × quantization", barmode="group", scattermode="group",
                   yaxis_title=f"peak memory (MiB)<br>counter: {', '.join(counters) or 'n/a'}", yaxis_rangemode="tozero",
                   xaxis_title=" / ".join(["LoRA rank (or PEFT method)", "quantization", *[a for a in axes if a not in skip]]),
                   xaxis_tickangle=_flat(x_of(rows)[1]))


# ---- throughput ------------------------------------------------------------------------------


def throughput_figure(data: ReportData, rows: List[Dict[str, Any]]) -> Optional[go.Figure]:
    """Tokens/s by framework / PEFT method, the p25-p75 of per-step throughput as error bars."""
    if not any(_num(r.get("tokens_per_s")) is not None for r in rows):
        return None
    axes = data.axes
    skip = ("framework", "peft")
    rows = sorted(rows, key=lambda r: (str(r.get("framework")), str(r.get("peft")), _rest(r, axes, skip)))

    def x_of(group: List[Dict[str, Any]]) -> List[List[str]]:
        return [[_text(r.get("framework")) for r in group], [_tick(r, _text(r.get("peft")), axes, skip) for r in group]]

    fig = go.Figure()
    done = [r for r in rows if _num(r.get("tokens_per_s")) is not None]
    frameworks = list(dict.fromkeys(_text(r.get("framework")) for r in done))
    for i, framework in enumerate(frameworks):
        group = [r for r in done if _text(r.get("framework")) == framework]
        value = [_num(r["tokens_per_s"]) or 0.0 for r in group]
        p25 = [_num(r.get("tokens_per_s_p25")) for r in group]
        p75 = [_num(r.get("tokens_per_s_p75")) for r in group]
        spread = any(p is not None for p in p25 + p75)
        error = dict(type="data", symmetric=False, thickness=1.5, color="#333",
                     array=_arr([None if hi is None else max(hi - v, 0.0) for v, hi in zip(value, p75)]),
                     arrayminus=_arr([None if lo is None else max(v - lo, 0.0) for v, lo in zip(value, p25)])) if spread else None
        hover = [_hover(r, axes, f"throughput: {_fmt(v, 'tokens/s')}",
                        f"per-step p25–p75: {_fmt(lo)}–{_fmt(hi)}" if lo is not None else "") for r, v, lo, hi in
                 zip(group, value, p25, p75)]
        fig.add_trace(go.Bar(x=_arr(x_of(group)), y=_arr(value), name=f"framework={framework}",
                             marker_color=PALETTE[i % len(PALETTE)], error_y=error, hovertext=_arr(hover), hoverinfo="text"))
    for label, group in _by_label([r for r in rows if r["_label"] != "ok"]).items():
        fig.add_trace(_status_trace(group, label, x_of(group), [0.0] * len(group), axes))
    return _layout(fig, "Throughput by framework / PEFT method", barmode="overlay",
                   yaxis_title="throughput (tokens/s)", yaxis_rangemode="tozero",
                   xaxis_title=" / ".join(["framework", "PEFT method", *[a for a in axes if a not in skip]]),
                   xaxis_tickangle=_flat(x_of(rows)[1]))


# ---- quality vs memory and cost --------------------------------------------------------------


def quality_figure(data: ReportData, rows: List[Dict[str, Any]], column: str) -> go.Figure:
    """``column`` against peak memory and against cost (wall time when no device price), Pareto front marked."""
    spec = data.spec(column)
    priced = any(_num(r.get("train_cost_usd")) is not None for r in rows)
    cost, cost_title = ("train_cost_usd", "training cost (USD)") if priced else ("wall_s", "wall time (s) — no device price")
    better = None if spec.higher_is_better is None else ("higher" if spec.higher_is_better else "lower") + " is better"
    y_title = f"{spec.label} ({'; '.join(filter(None, [spec.unit, better]))})" if spec.unit or better else spec.label
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("vs peak memory", f"vs {cost_title.split(' (')[0]}"))
    scored = [r for r in rows if r["_label"] == "ok" and _num(r.get(column)) is not None]
    ys = [_num(r[column]) for r in scored]
    low, high = (min(ys), max(ys)) if ys else (0.0, 1.0)
    step = 0.07 * ((high - low) or abs(high) or 1.0) * (1.0 if spec.higher_is_better is False else -1.0)
    edge = high if spec.higher_is_better is False else low  # unscored cells sit beyond the worst score, a row per status
    for col, (xcol, unit) in enumerate([("peak_mem_mib", "MiB"), (cost, "USD" if priced else "s")], start=1):
        points = [r for r in scored if _num(r.get(xcol)) is not None]
        xy = [(_num(r[xcol]) or 0.0, _num(r[column]) or 0.0) for r in points]
        hover = [_hover(r, data.axes, f"{spec.label}: {_fmt(y, spec.unit)}", f"{xcol}: {_fmt(x, unit)}") for r, (x, y) in
                 zip(points, xy)]
        front = pareto_front(xy, spec.higher_is_better) if spec.higher_is_better is not None and len(xy) > 1 else []
        # every point labelled with its settings while that stays readable, else the Pareto front's only
        named = set(range(len(xy))) if len(xy) <= MAX_LABELS else set(front)
        labels = [_settings(r, data.axes) if i in named else "" for i, r in enumerate(points)]
        fig.add_trace(go.Scatter(x=_arr([p[0] for p in xy]), y=_arr([p[1] for p in xy]), mode="markers+text", name="ok cells",
                                 legendgroup="ok", showlegend=col == 1, hovertext=_arr(hover), hoverinfo="text",
                                 text=_arr(labels), textposition="top center", textfont=dict(size=10),
                                 marker=dict(size=11, color=MEASURED)), row=1, col=col)
        if front:
            fig.add_trace(go.Scatter(x=_arr([xy[i][0] for i in front]), y=_arr([xy[i][1] for i in front]), mode="lines+markers",
                                     name="Pareto front", legendgroup="front", showlegend=col == 1, hoverinfo="skip",
                                     line=dict(color=FRONT, dash="dash", width=2),
                                     marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color=FRONT, width=2))),
                          row=1, col=col)
        left = min((p[0] for p in xy), default=0.0)
        for k, (label, group) in enumerate(_by_label([r for r in rows if r["_label"] != "ok"]).items(), start=1):
            x = [_num(r.get(xcol)) if _num(r.get(xcol)) is not None else left for r in group]
            fig.add_trace(_status_trace(group, label, x, [edge + k * step] * len(group), data.axes, legendgroup=label,
                                        showlegend=col == 1, textposition="middle right"), row=1, col=col)
        fig.update_xaxes(title_text="peak memory (MiB)" if col == 1 else cost_title, row=1, col=col)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    return _layout(fig, f"{spec.label}: quality vs memory and {'cost' if priced else 'wall time'}")


# ---- loss curves -----------------------------------------------------------------------------


def _curve(points: Any) -> Tuple[List[float], List[Optional[float]]]:
    pairs = [p for p in (points or []) if isinstance(p, (list, tuple)) and len(p) == 2]
    return [float(s) for s, _ in pairs], [_num(v) for _, v in pairs]  # a null loss (non-finite) leaves a gap


def loss_figure(data: ReportData, rows: List[Dict[str, Any]]) -> Optional[go.Figure]:
    """Training loss (solid) and held-out loss (dashed, when evaluated during training) per cell."""
    train = [(r, (r["_record"].get("train") or {})) for r in rows]
    if not any(_curve(t.get("loss_curve"))[0] for _, t in train):
        return None
    fig = go.Figure()
    missing = []
    for i, (row, block) in enumerate(train[:MAX_CURVES]):
        name = _settings(row, data.axes) or str(row.get("cell"))
        name += "" if row["_label"] == "ok" else f" ({row['_label']})"
        colour = PALETTE[i % len(PALETTE)]
        drawn = False
        for key, kind, dash in (("loss_curve", "train", "solid"), ("eval_curve", "eval", "dash")):
            steps, losses = _curve(block.get(key))
            if not steps:
                continue
            drawn = True
            fig.add_trace(go.Scatter(x=_arr(steps), y=_arr(losses), mode="lines+markers" if len(steps) < 3 else "lines",
                                     name=f"{name} — {kind}", legendgroup=str(row.get("cell")), line=dict(color=colour, dash=dash),
                                     hovertext=_arr([_hover(row, data.axes, f"{kind} loss at step {s:g}: {_fmt(v, 'nats/token')}")
                                                     for s, v in zip(steps, losses)]), hoverinfo="text"))
        if not drawn:
            missing.append(name)
    if len(train) > MAX_CURVES:
        missing.append(f"{len(train) - MAX_CURVES} more cells (over {MAX_CURVES} are not drawn; see cells.csv)")
    lines = [html.escape(m) for m in missing[:MAX_NOTES]] + ([f"and {len(missing) - MAX_NOTES} more"] if len(missing) > MAX_NOTES else [])
    if lines:
        fig.add_annotation(text="no loss curve:<br>" + "<br>".join(lines), xref="paper", yref="paper", x=0, y=-0.16,
                           yanchor="top", showarrow=False, xanchor="left", align="left", font=dict(size=12, color="#555"))
    height = 520 + 18 * (len(lines) + 1 if lines else 0)
    return _layout(fig, "Loss curves per cell (solid: training, dashed: held-out)", height=height,
                   margin=dict(l=80, r=20, t=70, b=80 + 18 * (len(lines) + 1 if lines else 0)),
                   xaxis_title="optimizer step", yaxis_title="loss (nats/token)")


# ---- all -------------------------------------------------------------------------------------


def figures(data: ReportData) -> List[Plot]:
    """Every plot the data has values for, as (title, figure), in a fixed order."""
    quality = quality_columns(data)
    rows = _rows(data, quality)
    out: List[Plot] = []
    for title, fig in (("Peak memory", memory_figure(data, rows)), ("Throughput", throughput_figure(data, rows))):
        if fig is not None:
            out.append((title, fig))
    for column in quality:
        out.append((f"Quality: {data.spec(column).label}", quality_figure(data, rows, column)))
    loss = loss_figure(data, rows)
    if loss is not None:
        out.append(("Loss curves", loss))
    return out


def plot_ids(plots: Sequence[Plot]) -> List[str]:
    """A fixed div id per plot, from its title (``plot-peak-memory``), numbered when titles repeat."""
    ids: List[str] = []
    for title, _ in plots:
        base = "plot-" + (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "figure")
        ident, n = base, 2
        while ident in ids:
            ident, n = f"{base}-{n}", n + 1
        ids.append(ident)
    return ids
