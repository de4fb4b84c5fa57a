"""The capacity-planning view: ``python -m harness.plan ... --html FILE``.

One self-contained HTML file (plotly.js inlined once, no network) that draws each planned
cell's predicted peak against every catalogue GPU's memory, an overview of which cell fits
which GPU for a grid, and, with ``--records SWEEP_DIR``, each recorded cell's measured peak
beside the planner's prediction for it with the error. Deterministic: fixed div ids, no
timestamps, no random trace ids, fixed float formatting, so the file rebuilds byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from harness.errors import ConfigError

FITS, SHORT, NEED, COUNTER_LINE = "#2ca02c", "#d62728", "#222222", "#7f7f7f"
"""Colours: GPU that holds the cell, GPU that does not, the device total it needs, the counter's prediction."""
MEASURED, PREDICTED = "#1f77b4", "#ff7f0e"
DIV_CAPACITY, DIV_MATRIX, DIV_RECORDS = "plan-capacity", "plan-fit-matrix", "plan-records"
"""Fixed plot div ids (a random id per build would make every rebuild differ)."""
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def cell_label(plan: Dict[str, Any]) -> str:
    """Short human name of a planned cell: model, method, rank, quant, micro-batch shape."""
    cell, mem = plan["cell"], plan["memory"]
    rank = f" r={cell['lora_r']}" if cell["lora_r"] else ""
    ckpt = " ckpt" if cell["gradient_checkpointing"] else ""
    dist = cell.get("dist")
    ranks = f" {dist['strategy']} x{dist['k']} (per GPU)" if dist else ""
    return f"{cell['model']} {cell['peft']}{rank} {cell['quant']} b{mem['batch']}x{mem['seq']}{ckpt}{ranks}"


def _labels(plans: List[Dict[str, Any]]) -> List[str]:
    """Cell labels, made unique with #n where two grid points differ only in keys the label omits."""
    labels = [cell_label(p) for p in plans]
    return [f"{label} #{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _gib(mib: Optional[float]) -> str:
    return "—" if mib is None else f"{mib / 1024:.2f}"


def _num(value: Optional[float], fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def record_unit(rows: List[Dict[str, Any]]) -> Tuple[str, float]:
    """(name, MiB per unit) for the measured section: MiB when every peak is under 4 GiB (tiny CPU runs), else GiB."""
    values = [v for r in rows for v in (r["measured_mib"], r["predicted_mib"]) if v]
    return ("MiB", 1.0) if values and max(values) < 4096 else ("GiB", 1024.0)


def _in(mib: Optional[float], unit: Tuple[str, float]) -> str:
    """``mib`` in ``unit`` with fixed decimals (0 for MiB, 2 for GiB)."""
    return "—" if mib is None else f"{mib / unit[1]:.{0 if unit[0] == 'MiB' else 2}f}"


# ---- records ---------------------------------------------------------------------------------


def load_record_views(folders: Iterable[Path]) -> List[Dict[str, Any]]:
    """Records of the given sweep folders (manifest grid order; otherwise by cell id), each cell once."""
    from harness.plan.calibrate import load_sweeps
    from harness.store.layout import load_sweep, read_manifest

    views: Dict[str, Dict[str, Any]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"--records={folder}: no such folder")
        # a sweep with a manifest lists exactly its grid; a run root or an old-layout folder does not
        found = load_sweep(folder) if read_manifest(folder) is not None else load_sweeps([folder])
        for view in found:
            views.setdefault(str(view.get("cell_id")), view)
    return list(views.values())


def record_rows(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per record: measured training peak, its counter, the planner's prediction and the signed error."""
    from harness.plan.calibrate import prediction_cells

    rows = []
    for record in records:
        peak = (record.get("memory") or {}).get("train_peak") or {}
        cells = prediction_cells(record)
        rows.append({
            "cell": str(record.get("cell_id", "?")), "status": str(record.get("status", "?")),
            "counter": peak.get("counter") or "—", "measured_mib": peak.get("peak_mib"),
            "predicted_mib": cells["pred_mem_mib"], "error_pct": cells["pred_err_pct"],
        })
    return rows


# ---- figures ---------------------------------------------------------------------------------


def _hover(row: Dict[str, Any], label: str) -> str:
    """Hover text of one GPU bar for one cell."""
    verdict = "fits" if row["fits"] else "does not fit"
    lines = [
        f"<b>{row['gpu']}</b> ({label})", f"{row['memory_gib']:.1f} GiB, needs {row['predicted_gib']:.2f} GiB: {verdict}",
        f"headroom {row['headroom_gib']:.2f} GiB; max batch {row['max_batch']}, max seq {row['max_seq']}",
        f"{row['tokens_per_s']:,.0f} tok/s ({row['throughput_source']})",
    ]
    if row["hours"] is not None:
        lines.append(f"{row['hours']:.2f} h" + (f", {row['cost_usd']:.2f} USD" if row["cost_usd"] is not None else ""))
    return "<br>".join(lines)


def capacity_figure(plans: List[Dict[str, Any]], labels: List[str], catalogue: Dict[str, Any]) -> Any:
    """GPU memory as horizontal bars (green: holds the cell, red: does not) with the cell's need as a line.

    A grid gets a dropdown that switches between its cells; the first cell shows on load.
    """
    import plotly.graph_objects as go

    names = [row["gpu"] for row in plans[0]["gpus"]]
    fig = go.Figure()
    per_cell = 4
    for i, (plan, label) in enumerate(zip(plans, labels)):
        rows, shown = plan["gpus"], i == 0
        for fits, colour, name in ((True, FITS, "fits"), (False, SHORT, "does not fit")):
            part = [r for r in rows if r["fits"] == fits]
            fig.add_bar(
                x=[r["memory_gib"] for r in part], y=[r["gpu"] for r in part], orientation="h", name=name,
                marker_color=colour, opacity=0.8, visible=shown, showlegend=bool(part), legendgroup=name,
                text=[f"{r['headroom_gib']:+.1f} GiB" for r in part], textposition="inside", insidetextanchor="start",
                hovertext=[_hover(r, catalogue[r["gpu"]].label if r["gpu"] in catalogue else r["gpu"]) for r in part],
                hoverinfo="text",
            )
        mem = plan["memory"]
        for value, colour, dash, name in (
            (mem["device_total_mib"], NEED, "solid", "needs (device total)"),
            (mem["total_mib"], COUNTER_LINE, "dot", f"predicted {mem['counter']}"),
        ):
            fig.add_scatter(
                x=[value / 1024] * len(names), y=names, mode="lines", name=name, visible=shown,
                line={"color": colour, "width": 3, "dash": dash},
                hovertext=f"{label}: {name} {value / 1024:.2f} GiB", hoverinfo="text",
            )
    fig.update_layout(
        template="plotly_white", barmode="overlay", height=160 + 34 * len(names),
        title={"text": f"Predicted peak vs GPU memory: {labels[0]}"},
        xaxis={"title": {"text": "GiB"}, "rangemode": "tozero"},
        yaxis={"categoryorder": "array", "categoryarray": names, "title": {"text": "catalogue GPU"}},
        legend={"orientation": "h", "y": -0.18 if len(names) > 4 else -0.4},
        margin={"t": 90 if len(plans) > 1 else 60},
    )
    if len(plans) > 1:
        buttons = []
        for i, label in enumerate(labels):
            visible = [j // per_cell == i for j in range(per_cell * len(plans))]
            buttons.append({"label": label, "method": "update",
                            "args": [{"visible": visible}, {"title.text": f"Predicted peak vs GPU memory: {label}"}]})
        fig.update_layout(updatemenus=[{"buttons": buttons, "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom",
                                        "direction": "down", "pad": {"b": 8}}])
        fig.update_layout(title={"y": 0.99, "yanchor": "top", "x": 0.5, "xanchor": "center"})
    return fig


def matrix_figure(plans: List[Dict[str, Any]], labels: List[str]) -> Any:
    """Every grid point against every GPU: green cells hold it, red do not, text is the headroom in GiB."""
    import plotly.graph_objects as go

    names = [row["gpu"] for row in plans[0]["gpus"]]
    z = [[1 if row["fits"] else 0 for row in plan["gpus"]] for plan in plans]
    text = [[f"{row['headroom_gib']:+.1f}" for row in plan["gpus"]] for plan in plans]
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=labels, text=text, texttemplate="%{text}", zmin=0, zmax=1, showscale=False,
        colorscale=[[0.0, SHORT], [0.5, SHORT], [0.5, FITS], [1.0, FITS]], xgap=2, ygap=2,
        hovertemplate="%{y} on %{x}<br>headroom %{text} GiB<extra></extra>",
    ))
    fig.update_layout(
        template="plotly_white", height=180 + 26 * len(plans),
        title={"text": "Which GPU holds which cell (headroom, GiB; red: does not fit)"},
        yaxis={"autorange": "reversed"}, xaxis={"side": "top"}, margin={"t": 110},
    )
    return fig


def records_figure(rows: List[Dict[str, Any]]) -> Optional[Any]:
    """Measured peak beside the planner's prediction for each recorded cell, the % error at the prediction."""
    import plotly.graph_objects as go

    both = [r for r in rows if r["measured_mib"] and r["predicted_mib"] is not None]
    if not both:
        return None
    cells = [r["cell"] for r in both]
    unit = record_unit(both)
    name, per = unit
    fig = go.Figure()
    fig.add_bar(
        y=cells, x=[r["measured_mib"] / per for r in both], orientation="h", name="measured", marker_color=MEASURED,
        hovertext=[f"{r['cell']} ({r['status']})<br>measured {r['counter']}: {_in(r['measured_mib'], unit)} {name}"
                   for r in both],
        hoverinfo="text",
    )
    fig.add_bar(
        y=cells, x=[r["predicted_mib"] / per for r in both], orientation="h", name="predicted", marker_color=PREDICTED,
        text=[_num(r["error_pct"], "+.1f") + " %" for r in both], textposition="outside",
        hovertext=[f"{r['cell']}<br>predicted {r['counter']}: {_in(r['predicted_mib'], unit)} {name}, error "
                   f"{_num(r['error_pct'], '+.1f')} %" for r in both],
        hoverinfo="text",
    )
    fig.update_layout(
        template="plotly_white", barmode="group", height=180 + 56 * len(both),
        title={"text": "Measured vs predicted training peak (each cell's own counter; error = (pred − meas) / meas)"},
        xaxis={"title": {"text": name}, "rangemode": "tozero"},
        yaxis={"categoryorder": "array", "categoryarray": cells, "autorange": "reversed"},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


# ---- page ------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Capacity plan</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { text-align: left; background: #f3f3f3; }
td:first-child, td.text { text-align: left; }
td.fits { color: #1b7a1b; } td.short { color: #b01c1c; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
</style>
<script type="text/javascript">{{ plotlyjs }}</script>
</head>
<body>
<h1>Capacity plan</h1>
<p class="note">Predicted by <code>python -m harness.plan</code> from the config alone (no torch, no weights).
"Needs" is the device total (counter × (1 + allocator slack) + CUDA context); a GPU holds the cell when that is at most its memory.
Coefficients: {{ coefficients }}.</p>
<h2>Planned cells</h2>
<table>
<tr><th>cell</th><th>counter</th><th>predicted GiB</th><th>needs GiB</th><th>peak phase</th><th>smallest GPU that holds it</th><th>assumptions</th></tr>
{% for c in cells %}<tr><td>{{ c.label }}</td><td class="text">{{ c.counter }}</td><td>{{ c.predicted }}</td><td>{{ c.needs }}</td>
<td class="text">{{ c.phase }}</td><td class="{{ {'none': 'short', '—': ''}.get(c.smallest, 'fits') }} text">{{ c.smallest }}</td>
<td class="text">{{ c.assumptions }}</td></tr>
{% endfor %}</table>
{% for gpu, options in fit_options %}<h2>Does not fit {{ gpu }}: nearest configurations that do</h2>
{% if options %}<table>
<tr><th>overrides to paste</th><th>needs GiB</th><th>tok/s</th><th>hours</th><th>USD</th></tr>
{% for o in options %}<tr><td><code>{{ o.overrides }}</code></td><td>{{ o.needs }}</td><td>{{ o.rate }}</td><td>{{ o.hours }}</td><td>{{ o.usd }}</td></tr>
{% endfor %}</table>
<p class="note">Fewest changes first, then fastest; a shorter train.max_seq_len (it changes what is trained) last;
train.grad_accum keeps the global batch.</p>
{% else %}<p class="note">No change of checkpointing, quantization, micro-batch or sequence length makes it fit.</p>
{% endif %}{% endfor %}{% for note in notes %}<p class="note">Note: {{ note }}</p>
{% endfor %}{% for line in time_for %}<p class="note">Hours and USD (in each GPU's hover) are for {{ line }}.</p>
{% endfor %}{% for div in plots %}{{ div }}
{% endfor %}
{% if gpus %}<h2>Hardware catalogue</h2>
<table>
<tr><th>gpu</th><th>label</th><th>memory GiB</th><th>bf16 TFLOP/s</th><th>USD/h</th>{% if cells|length == 1 %}<th>{{ cells[0].label }}</th>{% endif %}</tr>
{% for g in gpus %}<tr><td>{{ g.name }}</td><td class="text">{{ g.label }}</td><td>{{ g.memory }}</td><td>{{ g.tflops }}</td><td>{{ g.price }}</td>
{% if cells|length == 1 %}<td class="{{ 'fits' if g.verdict == 'fits' else 'short' }} text">{{ g.verdict }}</td>{% endif %}</tr>
{% endfor %}</table>
{% else %}<p class="note">No GPU comparison: --device cpu predicts the worker's host RSS (or the catalogue lists no GPU).</p>
{% endif %}
{% if records is not none %}<h2>Measured vs predicted</h2>
{% if records %}{{ records_plot }}
<table>
<tr><th>cell</th><th>status</th><th>counter</th><th>measured {{ unit }}</th><th>predicted {{ unit }}</th><th>error %</th></tr>
{% for r in records %}<tr><td>{{ r.cell }}</td><td class="text">{{ r.status }}</td><td class="text">{{ r.counter }}</td>
<td>{{ r.measured }}</td><td>{{ r.predicted }}</td><td>{{ r.error }}</td></tr>
{% endfor %}</table>
<p class="note">One row per recorded cell of {{ record_dirs }} (its own config, not the planned cells above).
Prediction: the planner's analytic (uncalibrated) model at the largest micro-batch each cell built
(the summary's <code>pred_mem_mib</code> / <code>pred_err_pct</code>).</p>
{% else %}<p class="note">No records in {{ record_dirs }}.</p>
{% endif %}{% endif %}
</body>
</html>
"""


def _div(fig: Any, div_id: str) -> str:
    """A figure's div and script, without plotly.js (the page inlines it once)."""
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOT_CONFIG)


def render_html(plans: List[Dict[str, Any]], catalogue: Dict[str, Any],
                records: Optional[List[Dict[str, Any]]] = None, record_dirs: Iterable[str] = ()) -> str:
    """The whole page; ``records`` None leaves out the measured section (no ``--records``)."""
    import jinja2
    from plotly.offline import get_plotlyjs

    labels = _labels(plans)
    has_gpus = bool(plans and plans[0].get("gpus"))
    plots = []
    if has_gpus:
        plots.append(_div(capacity_figure(plans, labels, catalogue), DIV_CAPACITY))
        if len(plans) > 1:
            plots.append(_div(matrix_figure(plans, labels), DIV_MATRIX))
    cells = []
    for plan, label in zip(plans, labels):
        mem = plan["memory"]
        fitting = [g["gpu"] for g in plan.get("gpus", []) if g["fits"]]
        cells.append({"label": label, "counter": mem["counter"], "predicted": _gib(mem["total_mib"]),
                      "needs": _gib(mem["device_total_mib"]), "phase": mem["phase"],
                      "smallest": (fitting[0] if fitting else "none") if has_gpus else "—",
                      "assumptions": "; ".join(mem["assumptions"])})
    gpus = []
    if has_gpus:
        for row in plans[0]["gpus"]:
            hw = catalogue.get(row["gpu"])
            gpus.append({
                "name": row["gpu"], "label": hw.label if hw else row["gpu"], "memory": f"{row['memory_gib']:.1f}",
                "tflops": _num(hw.bf16_tflops if hw else None, ".1f"), "price": _num(hw.price_usd_per_h if hw else None, ".2f"),
                "verdict": "fits" if row["fits"] else "does not fit",
            })
    coeff = plans[0]["coefficients"] if plans else {"calibrated": False}
    coefficients = (f"calibrated act_scale={coeff['act_scale']:.2f}, overhead={coeff['overhead_mib']:.0f} MiB"
                    if coeff["calibrated"] else "analytic defaults (no --sweeps)")
    rows = record_rows(records) if records is not None else None
    figure = records_figure(rows) if rows else None
    unit = record_unit(rows or [])
    table = None if rows is None else [
        {"cell": r["cell"], "status": r["status"], "counter": r["counter"], "measured": _in(r["measured_mib"], unit),
         "predicted": _in(r["predicted_mib"], unit), "error": _num(r["error_pct"], "+.1f")} for r in rows
    ]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(PAGE)
    return template.render(
        plotlyjs=_markup(get_plotlyjs()),
        coefficients=coefficients, cells=cells, fit_options=_fit_rows(plans),
        notes=list(dict.fromkeys(c for plan in plans for c in plan["memory"].get("caveats", []))),
        time_for=list(dict.fromkeys(plan["dataset"]["for"] for plan in plans if plan.get("gpus") and plan.get("dataset"))),
        plots=[_markup(p) for p in plots], gpus=gpus, records=table, unit=unit[0], record_dirs=", ".join(str(d) for d in record_dirs),
        records_plot=_markup(_div(figure, DIV_RECORDS)) if figure is not None else "",
    )


def _fit_rows(plans: List[Dict[str, Any]]) -> List[Tuple[str, List[Dict[str, str]]]]:
    """(GPU, formatted options) of a single planned cell's ``fit_options`` (a grid shows none: one table per cell
    and GPU would drown the page)."""
    if len(plans) != 1:
        return []
    return [(gpu, [{"overrides": o["overrides"], "needs": f"{o['device_gib']:.2f}", "rate": _num(o["tokens_per_s"], ",.0f"),
                    "hours": _num(o["hours"], ".3g"), "usd": _num(o["cost_usd"], ".3g")} for o in options])
            for gpu, options in (plans[0].get("fit_options") or {}).items()]


def _markup(text: str) -> Any:
    """Mark trusted HTML/JS (plotly's own output) as safe for the autoescaping template."""
    from markupsafe import Markup

    return Markup(text)


def write_plan_html(path: Path, plans: List[Dict[str, Any]], catalogue: Dict[str, Any],
                    records: Optional[List[Dict[str, Any]]] = None, record_dirs: Iterable[str] = ()) -> Path:
    """Write the capacity-planning page to ``path``; a one-line ConfigError naming --html when it cannot."""
    page = render_html(plans, catalogue, records, record_dirs)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html={path}: cannot write ({exc.strerror or exc})") from None
    return path
