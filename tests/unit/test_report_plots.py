"""Report plots and the offline HTML page: every status drawn, Pareto front, fixed ids, byte-identical, no URLs.

Frameworks other than hf and inferred OOMs come from later issues: the records here are synthetic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.files import write_json_atomic
from harness.report.data import ReportData, load
from harness.report.html import render, write_html
from harness.report.plots import figures, label_of, pareto_front, plot_ids
from harness.store.records import metric_row, new_record

pytestmark = pytest.mark.unit
ENV = {"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "python": "3.11.7", "git_sha": "abc123",
       "libraries": {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2", "trl": "1.16.0"}}
INFERRED = "does not fit (inferred): lora.r=16 quant.mode=4bit ran out of memory with no more memory needed"


def _config(framework: str, r: int, quant: str) -> Dict[str, Any]:
    return {"model": {"name": "tiny-llama"}, "framework": {"name": framework}, "peft": {"method": "lora"}, "lora": {"r": r},
            "quant": {"mode": quant}, "train": {"seed": 1}}


def _ok(i: int, r: int, quant: str) -> Dict[str, Any]:
    """The measured blocks of an ok cell; numbers vary with i so a Pareto front exists."""
    peak = 2000.0 + 100 * r - (800 if quant == "4bit" else 0)
    loss = 2.0 - 0.01 * r + (0.05 if quant == "4bit" else 0) + 0.01 * i
    return {
        "train": {"tokens_per_s": 900.0 + 40 * i, "tokens_per_s_p25": 850.0 + 40 * i, "tokens_per_s_p75": 960.0 + 40 * i,
                  "loss_curve": [[s, 3.0 - 0.1 * s - 0.03 * i] for s in range(1, 11)], "eval_curve": [[5, 2.8 - 0.03 * i], [10, 2.5 - 0.03 * i]]},
        "memory": {"train_peak": {"peak_mib": peak, "counter": "cuda_peak_allocated"}},
        "efficiency": {"train_cost_usd": 0.01 * (i + 1)},
        "timings_s": {"cell_wall": 30.0 + i},
        "metrics": [metric_row("perplexity", "heldout", "eval_loss", loss, higher_is_better=False, unit="nats/token"),
                    metric_row("mt_bench", "mt_bench", "mt_bench", 5.0 + 0.1 * r - i * 0.05, stderr=0.2, higher_is_better=True,
                               unit="score (1-10)"),
                    metric_row("lm_eval", "mmlu", "acc", 0.40 + 0.002 * r, stderr=0.01, higher_is_better=True),
                    metric_row("lm_eval", "mmlu", "acc_base", 0.41, stderr=0.01, higher_is_better=True),
                    metric_row("lm_eval", "mmlu", "acc_delta", 0.002 * r - 0.01, stderr=0.014, higher_is_better=True)],
    }


CELLS = [  # (id, framework, r, quant, status, extra)
    ("hf-r8-none", "hf", 8, "none", "ok", None),
    ("hf-r16-none", "hf", 16, "none", "ok", None),
    ("hf-r8-4bit", "hf", 8, "4bit", "ok", None),
    ("hf-r16-4bit", "hf", 16, "4bit", "oom", "CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("hf-r32-4bit", "hf", 32, "4bit", "skipped", INFERRED),
    ("hf-r32-none", "hf", 32, "none", "failed", "RuntimeError: boom <script>alert(1)</script>"),
    ("unsloth-r8-4bit", "unsloth", 8, "4bit", "ok", None),
    ("unsloth-r16-none", "unsloth", 16, "none", "ok", None),
]


def write_sweep(folder: Path) -> Path:
    """A sweep folder (old layout, no manifest) of synthetic records: ok, oom, inferred oom, failed; two frameworks."""
    for i, (cid, framework, r, quant, status, error) in enumerate(CELLS):
        fields: Dict[str, Any] = _ok(i, r, quant) if status == "ok" else {"error": error, "timings_s": {"cell_wall": 5.0}}
        if status == "oom":
            fields["memory"] = {"train_peak": {"counter": "cuda_peak_allocated"}}
        config = _config(framework, r, quant)
        write_json_atomic(folder / cid / "cell.json", {"cell_id": cid, "config": config})
        write_json_atomic(folder / cid / "record.json", new_record(cid, status, config, environment=ENV, **fields))
    return folder


def synthetic_data(folder: Path) -> ReportData:
    """ReportData of ``write_sweep``; the planner cannot rebuild the made-up model, so predictions are set here."""
    data = load([write_sweep(folder)])
    data.wide["pred_mem_mib"] = [None if v != v or v is None else v * 1.1 for v in data.wide["peak_mem_mib"]]
    return data


@pytest.fixture
def data(tmp_path: Path) -> ReportData:
    return synthetic_data(tmp_path / "sweep-a")


def _traces(fig) -> List[Any]:
    return list(fig.data)


def test_expected_figures_exist(data):
    titles = [t for t, _ in figures(data)]
    assert titles == ["Peak memory", "Throughput", "Quality: eval loss", "Quality: MT-Bench", "Quality: mmlu acc", "Loss curves"]
    assert plot_ids(figures(data)) == ["plot-peak-memory", "plot-throughput", "plot-quality-eval-loss",
                                       "plot-quality-mt-bench", "plot-quality-mmlu-acc", "plot-loss-curves"]
    mmlu = dict(figures(data))["Quality: mmlu acc"]
    assert mmlu.layout.yaxis.title.text == "mmlu acc (higher is better)"  # lm-eval direction from its metric rows


def test_no_plot_without_values(tmp_path):
    folder = tmp_path / "s"
    config = _config("hf", 8, "none")
    write_json_atomic(folder / "a" / "cell.json", {"cell_id": "a", "config": config})
    write_json_atomic(folder / "a" / "record.json", new_record("a", "failed", config, error="boom"))
    assert figures(load([folder])) == []
    assert "boom" in render(load([folder]), [])  # the status table still lists it


def test_non_ok_cells_are_drawn_with_their_status(data):
    plots = dict(figures(data))
    labels = [label_of(row) for row in data.wide.to_dict("records")]
    assert {"does not fit", "does not fit (inferred)", "failed"} <= set(labels)
    for title in ("Peak memory", "Throughput", "Quality: eval loss"):
        names = {t.name for t in _traces(plots[title])}
        assert {"does not fit", "does not fit (inferred)", "failed"} <= names, title
        drawn = " ".join(str(h) for t in _traces(plots[title]) for h in (() if t.hovertext is None else t.hovertext))
        assert all(cid in drawn for cid, *_ in CELLS), title  # every cell, ok or not, is on the plot
        assert "&lt;script&gt;" in drawn and "<script>" not in drawn  # error text is escaped in hovers
    memory = plots["Peak memory"]
    assert "cuda_peak_allocated" in memory.layout.yaxis.title.text
    assert {t.name for t in memory.data if t.type == "bar"} == {"measured", "predicted (planner, uncalibrated)"}
    throughput = plots["Throughput"]
    assert {t.name for t in throughput.data if t.type == "bar"} == {"framework=hf", "framework=unsloth"}
    bars = next(t for t in throughput.data if t.name == "framework=hf")
    assert bars.error_y.arrayminus[0] == pytest.approx(50.0) and bars.error_y.array[0] == pytest.approx(60.0)
    cost = plots["Quality: eval loss"]
    assert cost.layout.xaxis2.title.text == "training cost (USD)"


def test_wall_time_axis_when_no_price(data):
    data.wide["train_cost_usd"] = None
    fig = dict(figures(data))["Quality: MT-Bench"]
    assert fig.layout.xaxis2.title.text == "wall time (s) — no device price"


def test_pareto_front_on_a_known_set():
    points = [(1.0, 5.0), (2.0, 7.0), (3.0, 6.0), (4.0, 9.0), (2.0, 4.0), (4.0, 9.0)]
    assert pareto_front(points, higher_is_better=True) == [0, 1, 3, 5]  # (3,6) and (2,4) are dominated; ties both kept
    lower = [(1.0, 3.0), (2.0, 2.0), (3.0, 2.5), (0.5, 4.0)]
    assert pareto_front(lower, higher_is_better=False) == [3, 0, 1]
    assert pareto_front([], True) == []


def test_pareto_front_trace_uses_the_metric_direction(data):
    plots = dict(figures(data))
    for title in ("Quality: eval loss", "Quality: MT-Bench"):
        fronts = [t for t in plots[title].data if t.name == "Pareto front"]
        assert len(fronts) == 2, title  # one per panel (memory, cost)
        xs = list(fronts[0].x)
        assert xs == sorted(xs)


def test_html_is_byte_identical_and_offline(tmp_path):
    first, second = tmp_path / "one.html", tmp_path / "two.html"
    write_html(synthetic_data(tmp_path / "a" / "sweep"), [("t", "<table><tr><td>1</td></tr></table>")], first)
    write_html(synthetic_data(tmp_path / "b" / "sweep"), [("t", "<table><tr><td>1</td></tr></table>")], second)
    page = first.read_text(encoding="utf-8")
    assert first.read_bytes() == second.read_bytes()
    from plotly.offline import get_plotlyjs

    # plotly.js is the sibling file, once per folder, loaded by a relative src: no copy in the page
    assert get_plotlyjs()[:2000] not in page
    assert re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=\"([^\"]*)\"", page) == ["plotly.min.js"]
    sibling = tmp_path / "plotly.min.js"
    assert sibling.read_text(encoding="utf-8") == get_plotlyjs()
    assert "http://" not in page and "https://" not in page  # no CDN, font or link: opens offline
    assert "<table><tr><td>1</td></tr></table>" in page  # tables are trusted HTML
    for pid in ("plot-peak-memory", "plot-throughput", "plot-loss-curves"):
        assert f'id="{pid}"' in page
    assert "NVIDIA H100 80GB HBM3" in page and "2.13.0" in page and "cuda_peak_allocated" in page
    assert "does not fit (inferred)" in page and "sweep" in page


def test_plotly_sibling_is_written_once_and_only_for_plots(tmp_path):
    from harness.report.html import PLOTLY_FILE

    written = write_html(synthetic_data(tmp_path / "s"), [], tmp_path / "report.html")
    sibling = tmp_path / PLOTLY_FILE
    assert written == [tmp_path / "report.html", sibling]
    stamp = sibling.stat().st_mtime_ns
    write_html(synthetic_data(tmp_path / "s"), [], tmp_path / "again.html")
    assert sibling.stat().st_mtime_ns == stamp  # same size: left alone
    sibling.write_text("truncated", encoding="utf-8")
    write_html(synthetic_data(tmp_path / "s"), [], tmp_path / "report.html")
    assert sibling.stat().st_size > 1_000_000  # a different size is rewritten
    import pandas as pd

    bare = tmp_path / "bare"
    empty = ReportData(sweeps=[], cells=[], wide=pd.DataFrame(), tidy=pd.DataFrame(), axes=[])
    assert write_html(empty, [], bare / "claims.html") == [bare / "claims.html"]  # no plot: no plotly.js
    assert not (bare / PLOTLY_FILE).exists()


def test_the_not_ok_table_is_capped_with_a_count(tmp_path, monkeypatch):
    import harness.report.html as page_module

    data = synthetic_data(tmp_path / "s")
    bad = len(page_module.problems(data))
    assert bad >= 3
    monkeypatch.setattr(page_module, "MAX_PROBLEMS", 2)
    page = render(data, [])
    table = page.split("<h3>Cells that are not ok</h3>")[1].split("</table>")[0]
    assert table.count("<code>") == 2
    assert f"… and {bad - 2} more cells that are not ok" in page
    monkeypatch.setattr(page_module, "MAX_PROBLEMS", bad)
    assert "more cells that are not ok" not in render(data, [])
