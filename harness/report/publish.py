"""Pivot tables as text to publish: README Markdown, a booktabs LaTeX table, an HTML fragment.

All three read the same flat view of a ``Table`` (row keys as leading columns, one column per
column key, headed ``lora_r=8``), so they show the same cells; the best cell is bold (Markdown,
LaTeX) or ``td.best`` (HTML), a status cell is ``td.status``. Nothing here adds a timestamp or
an id: the same tables give the same bytes.
"""

from __future__ import annotations

from typing import List, Tuple

import jinja2
import numpy as np
import pandas as pd

from harness.report.pivot import Table

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}
"""Characters LaTeX reads as markup in caption and footnote text (Styler escapes the cells itself)."""
HTML = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    """<table class="report-table">
<caption>{{ caption }}</caption>
<thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}
<tr>{% for text in row.heads %}<th>{{ text }}</th>{% endfor %}{% for text, cls in row.cells %}<td{% if cls %} class="{{ cls }}"{% endif %}>{{ text }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% if footnotes %}
<ul class="footnotes">
{% for note in footnotes %}
<li>{{ note }}</li>
{% endfor %}
</ul>
{% endif %}
""")
"""An HTML fragment: escaped text, no ids or styles (the page's stylesheet styles ``.report-table``)."""


def caption(table: Table) -> str:
    """``title (unit)``: what a heading or caption says."""
    return f"{table.title} ({table.unit})" if table.unit else table.title


def _key_names(index: pd.Index) -> List[str]:
    return [str(name) if name is not None else "" for name in index.names]


def _column_labels(columns: pd.Index) -> List[str]:
    """``lora_r=8`` for a named column key, ``a=1, b=2`` for several, the header itself for the metric column."""
    if isinstance(columns, pd.MultiIndex):
        return [", ".join(f"{n}={v}" for n, v in zip(columns.names, key)) for key in columns]
    return [f"{columns.name}={c}" if columns.name is not None else str(c) for c in columns]


def flat(table: Table) -> Tuple[List[str], List[List[str]], pd.DataFrame, pd.DataFrame]:
    """(row-key names, row-key labels per row, the cells with flat headers, the same-shaped best mask)."""
    index = table.frame.index
    keys = [[str(v) for v in (key if isinstance(key, tuple) else (key,))] for key in index]
    labels = _column_labels(table.frame.columns)
    cells = pd.DataFrame(table.frame.to_numpy(dtype=object), columns=labels).astype(object)
    best = pd.DataFrame(table.best.to_numpy(dtype=bool), columns=labels)
    return _key_names(index), keys, cells, best


def _joined(table: Table, mark: str) -> pd.DataFrame:
    """Row keys and cells in one frame of strings, the best cells wrapped by ``mark`` (``**%s**``)."""
    names, keys, cells, best = flat(table)
    cells = cells.where(~best, cells.map(lambda text: mark % text))
    left = pd.DataFrame(keys, columns=names, dtype=object) if names else pd.DataFrame(index=cells.index)
    left.columns = [n or " " for n in left.columns]
    return pd.concat([left, cells], axis=1)


def to_markdown(tables: List[Table]) -> str:
    """README-ready: a ``### title (unit)`` heading, the pipe table (best in bold), the footnotes as a list."""
    parts = []
    for table in tables:
        frame = _joined(table, "**%s**").map(lambda text: str(text).replace("|", "\\|"))
        n_keys = frame.shape[1] - table.frame.shape[1]
        align = ("left",) * n_keys + ("right",) * table.frame.shape[1]
        body = frame.to_markdown(index=False, tablefmt="pipe", disable_numparse=True, colalign=align)
        notes = "".join(f"- {note}\n" for note in table.footnotes)
        parts.append(f"### {caption(table)}\n\n{body}\n" + (f"\n{notes}" if notes else ""))
    return "\n".join(parts)


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``±`` as ``$\\pm$``)."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def table_latex(table: Table) -> str:
    """One booktabs ``table`` environment: caption, tabular (best \\textbf), footnotes in \\footnotesize."""
    names, keys, cells, best = flat(table)
    frame = _joined(table, "%s")
    mask = np.concatenate([np.zeros((len(frame), frame.shape[1] - cells.shape[1]), dtype=bool), best.to_numpy()], axis=1)
    styler = frame.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    styler = styler.apply(lambda _: np.where(mask, "textbf:--rwrap;", ""), axis=None)
    text = styler.to_latex(
        column_format="l" * (frame.shape[1] - cells.shape[1]) + "r" * cells.shape[1], hrules=True,
        caption=latex_escape(caption(table)), environment="table", position_float="centering",
    )
    # Styler keeps non-ASCII as is: ± becomes math so the table needs no inputenc/textcomp
    text = text.replace("±", r"$\pm$")
    if table.footnotes:
        notes = "".join(f"{latex_escape(note)}\\par\n" for note in table.footnotes)
        text = text.replace("\\end{tabular}\n", f"\\end{{tabular}}\n\\par\\smallskip\n{{\\footnotesize\n{notes}}}\n", 1)
    return text


def to_latex(tables: List[Table]) -> str:
    """Every table as a booktabs LaTeX ``table`` (needs ``\\usepackage{booktabs}``), one after another."""
    return "\n".join(table_latex(table) for table in tables)


def table_html(table: Table) -> str:
    """A plain ``<table class="report-table">``: caption, ``<th>`` headers, ``td.best``, ``td.status``, footnotes."""
    names, keys, cells, best = flat(table)
    status = table.status.to_numpy(dtype=bool) if table.status.shape == table.frame.shape else np.zeros(cells.shape, bool)
    rows = []
    for i, key in enumerate(keys):
        classes = [" ".join(c for c, on in (("best", best.iat[i, j]), ("status", status[i, j])) if on)
                   for j in range(cells.shape[1])]
        rows.append({"heads": key, "cells": list(zip(cells.iloc[i].astype(str), classes))})
    return HTML.render(caption=caption(table), headers=names + list(cells.columns), rows=rows,
                       footnotes=table.footnotes)
