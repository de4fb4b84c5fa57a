"""The claims' output side: one row per claim -> Markdown, LaTeX, CSV/Parquet and the HTML page (with a sweep's report or alone)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
import pytest

from harness.report.claims import (
    COLUMNS,
    NUMBER_FIELDS,
    TEXT_FIELDS,
    VERDICT_CLASSES,
    claims_frame,
    claims_html,
    claims_latex,
    claims_markdown,
    write_claims,
)
from harness.report.data import load
from tests.conftest import REPO

pytestmark = pytest.mark.unit

DEMO = REPO / "reports" / "demo" / "records" / "demo"
FILES = ("claims.md", "claims.tex", "claims.csv", "claims.parquet", "claims.html")
INTRO = ["Band: the planner's prediction ±15.7 % (its calibration error on the anchors).", "2 hold, 1 does not, 2 untested."]


def claim(ident: str, verdict_class: str, verdict: str, **fields: Any) -> Dict[str, Any]:
    """One row as harness.claims gives it: every field present, text "" and numbers None unless set."""
    row: Dict[str, Any] = {f: "" for f in TEXT_FIELDS}
    row.update({f: None for f in NUMBER_FIELDS})
    row.update(id=ident, kind="memory", guide="000:60, 000:144", claim=f"claim {ident}", verdict=verdict,
               verdict_class=verdict_class, unit="GiB")
    row.update(fields)
    return row


def rows() -> List[Dict[str, Any]]:
    """One claim of each verdict class; text with every character that needs escaping somewhere."""
    return [
        claim("mem-qlora-7b-8gb", "holds", "holds", configuration="model=mistral quant=4bit lora.r=16 train.batch_size=1",
              claimed="<= 8 GiB", predicted="6.35 GiB (5.35–7.35, ±15.7 %)",
              measured="7.91 GiB nvml_process_peak_mib, record llama-ab12", claimed_high=8.0, predicted_value=6.35,
              predicted_low=5.35, predicted_high=7.35, measured_value=7.91, measured_source="nvml_process_peak_mib",
              assumptions="7B = Mistral 7B v0.3; NF4 with double quantization", notes="twin on CPU agrees"),
        claim("mem-qlora-4x", "does-not-hold", "does not hold", kind="ratio", claimed="~4 x (3.4–4.6)",
              configuration="model=mistral quant=none vs model=mistral quant=4bit | part b", predicted="3.1 x",
              measured="$10 & #1 {x} ^ \\ 50% ≥ × — é ∑", predicted_value=3.1,
              notes="embeddings & LM head stay fp32"),
        claim("mem-lora16-7b-16gb", "holds-under", "holds under train.max_seq_len=512", claimed="12–15 GiB",
              measured="<none> on this host > twin: 0.6 GiB"),
        claim("speed-unsloth-2x", "predicted", "predicted only: undecided (band straddles the claim)", kind="ratio",
              claim="Unsloth is <script>alert('2.3x')</script> faster", predicted="—"),
        claim("quality-mmlu", "untestable", "not testable here: needs real weights and a judge", kind="quality"),
    ]


def test_markdown_has_every_claim_escapes_pipes_and_lists_assumptions_after_the_table():
    text = claims_markdown(rows(), "Claims", INTRO)
    assert text.startswith("# Claims\n\n" + INTRO[0] + "\n\n" + INTRO[1] + "\n\n| claim | guide |")
    table, notes = text.split("## Assumptions and notes")
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert lines[0] == "| " + " | ".join(h for h, _ in COLUMNS) + " |"
    assert len(lines) == 2 + len(rows())
    for row in rows():
        assert f"| {row['id']} |" in table and f"**{row['id']}**: {row['claim']}" in notes.replace("\\<", "<")
    assert "quant=none vs model=mistral quant=4bit \\| part b" in table
    assert all(line.count(" | ") == len(COLUMNS) - 1 for line in lines[2:])  # no unescaped pipe splits a cell
    assert "  - assumptions: 7B = Mistral 7B v0.3; NF4 with double quantization" in notes
    assert "7B = Mistral" not in table  # the table stays readable: assumptions only below it
    assert "\\<script>" in notes and "<= 8 GiB" in table  # a tag is shown as text, a comparison stays as written
    assert claims_markdown(rows(), "Claims", INTRO) == text


def test_latex_escapes_specials_and_unicode():
    text = claims_latex(rows(), "Claims: 50% of #guides_x")
    assert r"\caption{Claims: 50\% of \#guides\_\allowbreak{}x}" in text
    assert r"\begin{longtable}" in text and r"\toprule" in text and r"\bottomrule" in text
    assert r"\ensuremath{\le} 8 GiB" in text and r"(5.35--7.35, $\pm$15.7 \%)" in text
    assert r"\ensuremath{\sim}4 x" in text and r"\textbar{} part b" in text
    assert r"predicted $\pm$ band" in text
    body = text.split(r"\endlastfoot")[1]
    assert not [ch for ch in body if not ch.isascii()]
    assert (r"\$10 \& \#1 \{x\} \textasciicircum{} \textbackslash{} 50\% \ensuremath{\ge} \ensuremath{\times} --- e ?"
            in body)
    assert r"\textless{}none\textgreater{} on this host \textgreater{} twin" in body
    lines = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(lines) == len(rows())
    for line in lines:  # every & and $ of the text is escaped: only the column separators are bare
        assert len(re.findall(r"(?<!\\)&", line)) == len(COLUMNS) - 1 and not re.findall(r"(?<!\\)\$", line.replace(r"$\pm$", ""))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (apt-get install texlive-latex-base "
                                                             "texlive-latex-recommended)")
def test_latex_compiles_in_a_plain_article(tmp_path: Path):
    doc = ("\\documentclass{article}\n\\usepackage{booktabs,longtable,array}\n\\begin{document}\n"
           + claims_latex(rows() * 8, "Claims checked: 50% ~ ±") + "\\end{document}\n")
    (tmp_path / "claims.tex").write_text(doc)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "claims.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "claims.pdf").stat().st_size > 0
    assert "Missing character" not in (tmp_path / "claims.log").read_text(errors="replace")


def test_html_classes_each_verdict_and_escapes_the_text():
    text = claims_html(rows(), INTRO)
    assert '<table class="report-table claims">' in text
    for cls in VERDICT_CLASSES:
        assert f'<td class="verdict verdict-{cls}">' in text
    assert "<script>" not in text and "&lt;script&gt;alert(&#39;2.3x&#39;)&lt;/script&gt;" in text
    assert "<th>predicted ± band</th>" in text and "&lt;= 8 GiB" in text
    assert "<details><summary>assumptions and notes</summary>" in text
    assert "7B = Mistral 7B v0.3; NF4 with double quantization" in text
    assert "<p class=\"caption\">2 hold, 1 does not, 2 untested.</p>" in text
    unknown = claims_html([claim("x", "<b>odd", "holds")])
    assert '<td class="verdict">holds</td>' in unknown and "<b>odd" not in unknown


def test_frame_has_every_field_and_round_trips_through_parquet(tmp_path: Path):
    given = rows()
    given[0]["extra"] = "kept"
    frame = claims_frame(given)
    assert list(frame.columns) == TEXT_FIELDS + NUMBER_FIELDS + ["extra"]
    assert frame["predicted_value"].dtype == "float64" and pd.isna(frame.loc[2, "predicted_value"])
    assert frame.loc[0, "claimed_high"] == 8.0 and pd.isna(frame.loc[1, "extra"])
    write_claims(given, tmp_path, title="Claims")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "claims.parquet"), frame)
    assert list(pd.read_csv(tmp_path / "claims.csv")["id"]) == [r["id"] for r in given]


def test_write_claims_without_data_is_the_claims_page_alone(tmp_path: Path):
    written = write_claims(rows(), tmp_path, title="Guides' claims", intro_lines=INTRO)
    assert [p.name for p in written] == list(FILES)
    page = (tmp_path / "claims.html").read_text()
    assert '<h2 id="claims">Claims</h2>' in page and '<a href="#claims">Claims</a>' in page
    assert "<title>Guides&#39; claims</title>" in page
    for absent in ('id="status"', 'id="environment"', 'id="tables"', "Plotly", "<script"):
        assert absent not in page
    assert "python -m harness.claims" in page and "http" not in page.split("</head>")[1]


def test_write_claims_with_data_is_the_sweeps_report_page_with_claims_first(tmp_path: Path):
    data = load([DEMO])
    write_claims(rows(), tmp_path, title="Claims", intro_lines=INTRO, data=data)
    page = (tmp_path / "claims.html").read_text()
    order = [page.index(f'<h2 id="{anchor}">') for anchor in ("claims", "status", "tables", "plots", "environment")]
    assert order == sorted(order)
    assert page.count("<script>") == len(set(page.split('class="plotly-graph-div"')[1:]))  # one per plot, no inline plotly
    assert page.count('<script src="plotly.min.js">') == 1  # plotly.js is the sibling file, loaded once
    assert "4 cells from 1 sweep: demo" in page and "verdict-does-not-hold" in page
    # the sweep's own report files are not written; plotly.js is, for the plots
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted((*FILES, "plotly.min.js"))


@pytest.mark.parametrize("with_data", [False, True])
def test_a_second_write_is_byte_identical(tmp_path: Path, with_data: bool):
    data = load([DEMO]) if with_data else None
    outputs = []
    for name in ("a", "b"):
        write_claims(rows(), tmp_path / name, title="Claims", intro_lines=INTRO, data=data)
        outputs.append({f: (tmp_path / name / f).read_bytes() for f in FILES if f != "claims.parquet"})
    assert outputs[0] == outputs[1]
