"""The guides' claims, checked, as files to publish: Markdown, LaTeX, CSV, Parquet and an HTML page.

``python -m harness.claims`` checks each claim against the capacity planner and the measured records
and hands over one row per claim (a plain dict, ``TEXT_FIELDS`` and ``NUMBER_FIELDS``); this module
only shows them. Every format shows the same ``COLUMNS``; each claim's assumptions and notes go below
the table (Markdown), in a fold of its row (HTML) or in the CSV/Parquet alone (LaTeX), so the table
stays readable. Nothing adds a timestamp: the same rows give the same bytes.

    claims.md / claims.tex         the table (README-ready / booktabs longtable)
    claims.csv / claims.parquet    every field of every row
    claims.html                    the claims first, then the sweeps' whole report page when there are records
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jinja2
import pandas as pd

from harness.config.report import ReportConfig
from harness.files import write_text_atomic
from harness.report.build import page, write_frame
from harness.report.data import ReportData
from harness.report.publish import LATEX_SPECIAL
from harness.text import to_markdown

Row = Mapping[str, Any]

COLUMNS: List[Tuple[str, str]] = [
    ("claim", "id"), ("guide", "guide"), ("configuration", "configuration"), ("claimed", "claimed"),
    ("predicted ± band", "predicted"), ("measured", "measured"), ("verdict", "verdict"),
]
"""(header, row field) of the published table, in order."""
TEXT_FIELDS = ["id", "kind", "guide", "claim", "configuration", "claimed", "predicted", "measured", "verdict",
               "verdict_class", "assumptions", "notes", "unit", "measured_source"]
"""A row's text fields ("" where there is nothing to say)."""
NUMBER_FIELDS = ["claimed_low", "claimed_high", "predicted_value", "predicted_low", "predicted_high", "measured_value"]
"""A row's numeric fields (float, or None where there is no number)."""
VERDICT_CLASSES = ("holds", "does-not-hold", "holds-under", "predicted", "untestable")
"""The verdict classes the page styles (``td.verdict-<class>``)."""
SECTION_TITLE = "Claims"
FOOTER = ("Built by python -m harness.claims from the guides' claims, the capacity planner and the records of the "
          "sweeps named above; the same inputs give the same file.")

LATEX_TEXT = {
    **LATEX_SPECIAL,
    # in a claimed figure ~ means "about", not a tie or a tilde accent
    "~": r"\ensuremath{\sim}",
    # pdflatex's default (OT1) text font prints < > | as other glyphs (¡ ¿ —)
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "≤": r"\ensuremath{\le}", "≥": r"\ensuremath{\ge}", "×": r"\ensuremath{\times}", "≈": r"\ensuremath{\approx}",
    "→": r"\ensuremath{\to}", "−": "-", "–": "--", "—": "---", "…": r"\ldots{}", "\u00a0": "~",
    "‘": "`", "’": "'", "“": "``", "”": "''",
    # long dotted keys and record names break at their separators instead of running into the next column
    "_": r"\_\allowbreak{}", "/": r"/\allowbreak{}",
}
"""Character -> LaTeX for the claims' text: LaTeX's specials (``publish.LATEX_SPECIAL``) and the Unicode the rows use."""
LATEX_WIDTHS = (0.13, 0.07, 0.20, 0.11, 0.15, 0.16, 0.18)
"""Share of the line width of each of ``COLUMNS`` (they sum to 1: the table is exactly as wide as the text)."""

HTML = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    """{% for line in intro %}
<p class="caption">{{ line }}</p>
{% endfor %}
<div class="table-wrap">
<table class="report-table claims">
<thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}
<tr id="{{ row.anchor }}"><td class="claim"><code>{{ row.id }}</code>{% if row.claim %}<br>{{ row.claim }}{% endif %}
{% if row.assumptions or row.notes %}
<details><summary>assumptions and notes</summary>
{% if row.assumptions %}<p><b>assumptions:</b> {{ row.assumptions }}</p>{% endif %}
{% if row.notes %}<p><b>notes:</b> {{ row.notes }}</p>{% endif %}
</details>
{% endif %}
</td>{% for text in row.cells %}<td>{{ text }}</td>{% endfor %}<td class="{{ row.verdict_css }}">{{ row.verdict }}</td></tr>
{% endfor %}
</tbody>
</table>
</div>
""")
"""The claims section: escaped text, the verdict cell classed ``verdict-<verdict_class>`` for the page's stylesheet."""


def _text(row: Row, field: str) -> str:
    """A field as one line of text: "" for None; newlines and runs of spaces become one space (a table row is one line)."""
    value = row.get(field)
    return "" if value is None else " ".join(str(value).split())


def _markdown(row: Row, field: str) -> str:
    # a "<" that would open an HTML tag is shown as text; "<= 8 GiB" opens none and stays as written
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", _text(row, field))


def claims_markdown(rows: Sequence[Row], title: str, intro_lines: Sequence[str] = ()) -> str:
    """``# title``, the intro lines as paragraphs, the table of ``COLUMNS`` (``|`` escaped), then each claim's
    paraphrase, assumptions and notes as a list (so the table stays readable)."""
    table = to_markdown([{header: _markdown(row, field) for header, field in COLUMNS} for row in rows],
                        [header for header, _ in COLUMNS])
    parts = [f"# {title}", *[line for line in intro_lines if line], table, "## Assumptions and notes",
             "\n".join(_markdown_notes(row) for row in rows) or "No claims."]
    return "\n\n".join(parts) + "\n"


def _markdown_notes(row: Row) -> str:
    """One list item per claim: its paraphrase, then its assumptions and notes as sub-items."""
    claim = _markdown(row, "claim")
    lines = [f"- **{_markdown(row, 'id')}**" + (f": {claim}" if claim else "")]
    lines += [f"  - {name}: {_markdown(row, name)}" for name in ("assumptions", "notes") if _text(row, name)]
    return "\n".join(lines)


def latex_text(text: str) -> str:
    """``text`` as LaTeX that pdflatex reads in a plain article: specials escaped, ≤ ± – × ... as math or ASCII."""
    text = text.replace("<=", "≤").replace(">=", "≥")
    return "".join(LATEX_TEXT.get(ch, ch if ch.isascii() else _ascii(ch)) for ch in text)


def _ascii(ch: str) -> str:
    # pdflatex stops at a character it has no glyph for; an accented letter keeps its letter, anything else is "?"
    return unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"


def claims_latex(rows: Sequence[Row], caption: str) -> str:
    """A booktabs ``longtable`` of ``COLUMNS`` (breaks across pages; needs ``\\usepackage{booktabs,longtable,array}``)."""
    spec = "".join(rf">{{\raggedright\arraybackslash}}p{{\dimexpr {w:.2f}\linewidth-2\tabcolsep\relax}}"
                   for w in LATEX_WIDTHS)
    header = " & ".join(latex_text(h) for h, _ in COLUMNS) + r" \\"
    body = [" & ".join(latex_text(_text(row, field)) for _, field in COLUMNS) + r" \\" for row in rows]
    return "\n".join([
        r"% Claims checked by python -m harness.claims. Preamble: \usepackage{booktabs,longtable,array}",
        r"\begingroup",
        r"\scriptsize",
        rf"\begin{{longtable}}{{{spec}}}",
        rf"\caption{{{latex_text(caption)}}}\\",
        r"\toprule", header, r"\midrule", r"\endfirsthead",
        r"\toprule", header, r"\midrule", r"\endhead",
        r"\bottomrule", r"\endlastfoot",
        *body,
        r"\end{longtable}",
        r"\endgroup",
    ]) + "\n"


def _verdict_css(row: Row) -> str:
    """``verdict-<class>`` for a known class; a class the page does not style gets only ``verdict``."""
    cls = _text(row, "verdict_class")
    return f"verdict verdict-{cls}" if cls in VERDICT_CLASSES else "verdict"


def claims_html(rows: Sequence[Row], intro_lines: Sequence[str] = ()) -> str:
    """The claims section as an HTML fragment: intro paragraphs and a ``table.report-table.claims``, all text escaped."""
    shown = [{"id": _text(row, "id"), "anchor": "claim-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", _text(row, "id")) or "row"),
              "claim": _text(row, "claim"), "assumptions": _text(row, "assumptions"), "notes": _text(row, "notes"),
              "cells": [_text(row, field) for _, field in COLUMNS[1:-1]], "verdict": _text(row, "verdict"),
              "verdict_css": _verdict_css(row)}
             for row in rows]
    return HTML.render(intro=[line for line in intro_lines if line], headers=[h for h, _ in COLUMNS], rows=shown)


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def claims_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """Every field of every row: text fields as text ("" for none), numeric ones as float (NaN for none), then any
    other keys the rows carry, in first-seen order."""
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in TEXT_FIELDS and k not in NUMBER_FIELDS))
    columns: Dict[str, List[Any]] = {f: ["" if row.get(f) is None else str(row.get(f)) for row in rows] for f in TEXT_FIELDS}
    columns.update({f: [_number(row.get(f)) for row in rows] for f in NUMBER_FIELDS})
    columns.update({k: [row.get(k) for row in rows] for k in extra})
    frame = pd.DataFrame(columns, columns=TEXT_FIELDS + NUMBER_FIELDS + extra)
    return frame.astype({f: "float64" for f in NUMBER_FIELDS})


def _no_cells() -> ReportData:
    """The data of a page that shows no sweep: no cells, so no status, tables, plots or environment."""
    return ReportData(sweeps=[], cells=[], wide=pd.DataFrame(), tidy=pd.DataFrame(), axes=[])


def write_claims(rows: Sequence[Row], where: Path, *, title: str, intro_lines: Sequence[str] = (),
                 data: Optional[ReportData] = None, report_cfg: Optional[ReportConfig] = None) -> List[Path]:
    """Write claims.md, .tex, .csv, .parquet and .html into ``where``; return their paths.

    claims.html is the claims section first, then, where ``data`` (the records of the sweeps the claims used)
    has cells, that sweep's whole report page (status, tables, plots, environment; laid out by ``report_cfg``).
    The sweep's other report files are not written here.
    """
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    write_text_atomic(where / "claims.md", claims_markdown(rows, title, intro_lines))
    write_text_atomic(where / "claims.tex", claims_latex(rows, title))
    written = [where / "claims.md", where / "claims.tex", *write_frame(claims_frame(rows), where / "claims")]
    section = [(SECTION_TITLE, claims_html(rows, intro_lines))]
    html = page(data if data is not None else _no_cells(), report_cfg or ReportConfig(), section, title, FOOTER)
    write_text_atomic(where / "claims.html", html)
    written.append(where / "claims.html")
    from harness.report.html import PLOTLY_FILE, write_plotly

    if f'src="{PLOTLY_FILE}"' in html:  # the page's plots load plotly.js from beside it
        written.append(write_plotly(where))
    return written
