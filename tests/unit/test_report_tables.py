"""Pivot tables and their Markdown / LaTeX / HTML: every cell shown, seeds aggregated, rounding, best, baseline."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List

import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.report.data import ReportData, status_label
from harness.report.numbers import format_value, t_interval
from harness.report.pivot import Layout, build_tables, default_layout
from harness.report.publish import table_html, to_latex, to_markdown

pytestmark = pytest.mark.unit

TIDY = ["cell", "status", "evaluator", "task", "metric", "value", "stderr", "n", "unit", "higher_is_better"]


def cell(model: str, r: int, status: str = "ok", **values: Any) -> Dict[str, Any]:
    """One wide row: CPU tiny cell with memory, throughput and MT-Bench figures unless it did not finish."""
    ok = status == "ok"
    row = {"cell": f"{model}-r{r}-{values.get('train.seed', 0)}-{values.get('quant', 'none')}", "status": status,
           "model": model, "lora_r": r, "quant": "none", "weights": "random", "device": "cpu",
           "mem_counter": "host_peak_rss" if ok else None, "peak_mem_mib": 600.0 + r if ok else None,
           "tokens_per_s": 1000.0 - r if ok else None, "mt_bench": 5.0 + r / 16 if ok else None,
           "mt_bench_se": 0.41234 if ok else None, "trainable_params": 1000 * r, "eval_loss": None,
           "error": None if ok else "CUDA out of memory", "env.device": "cpu", "env.cpu_model": "AMD EPYC",
           "env.libraries.torch": "2.13.0+cpu", "env.libraries.transformers": "5.24.0"}
    row.update(values)
    row["status_label"] = status_label(row["status"])
    return row


def report(rows: List[Dict[str, Any]], axes: List[str]) -> ReportData:
    """A ReportData straight from wide rows (no store)."""
    return ReportData(sweeps=[], cells=[], wide=pd.DataFrame(rows), tidy=pd.DataFrame(columns=TIDY), axes=axes)


def grid() -> ReportData:
    """model x lora_r: four ok cells, one oom, one failed."""
    rows = [cell("a", 8), cell("a", 16), cell("a", 32, "oom"), cell("b", 8), cell("b", 16), cell("b", 32, "failed")]
    return report(rows, ["model", "lora_r"])


def test_default_layout_from_axes_seeds_aggregated_values_measured():
    layout = default_layout(grid())
    assert (layout.rows, layout.cols) == (["model"], ["lora_r"])
    assert layout.values == ["peak_mem_mib", "tokens_per_s", "mt_bench"]  # eval_loss: no number, no table
    seeds = report([cell("a", 8, **{"train.seed": 1}), cell("a", 16, **{"train.seed": 2})], ["lora_r", "train.seed"])
    assert (default_layout(seeds).rows, default_layout(seeds).cols) == (["lora_r"], [])
    three = report([cell("a", 8)], ["model", "quant", "lora_r", "train.seed"])
    assert (default_layout(three).rows, default_layout(three).cols) == (["model", "quant"], ["lora_r"])
    assert default_layout(report([cell("a", 8)], [])).rows == ["model"]


def test_oom_and_failed_cells_appear_in_every_table():
    data = grid()
    tables = build_tables(data, default_layout(data), None)
    assert len(tables) == 3
    for table in tables:
        assert table.frame.loc["a", "32"] == "does not fit"
        assert table.frame.loc["b", "32"] == "failed"
        assert table.status.loc["a", "32"] and not table.status.loc["a", "8"]
        assert math.isnan(table.numbers.loc["a", "32"])
        assert any(note.startswith("does not fit:") for note in table.footnotes)
    assert tables[0].frame.loc["a", "8"] == "608 (tie)"  # 608 vs 608 and 616: within 5 %, a tie
    sparse = build_tables(report(data.wide.to_dict("records")[1:], ["model", "lora_r"]),
                          Layout(["model"], ["lora_r"], ["peak_mem_mib"]), None)[0]
    assert sparse.frame.loc["a", "8"] == "" and "blank: no cell of the grid sits at this position" in sparse.footnotes


def test_inferred_oom_reads_does_not_fit_inferred():
    rows = [cell("a", 8), cell("a", 64, "skipped", error="does not fit (inferred from a-r32)")]
    table = build_tables(report(rows, ["lora_r"]), Layout(["lora_r"], [], ["peak_mem_mib"]), None)[0]
    assert table.frame.loc["64"].iloc[0] == "does not fit (inferred)"


def test_seeds_give_mean_and_student_t_interval():
    rows = [cell("a", 8, **{"train.seed": s, "peak_mem_mib": v}) for s, v in ((1, 10.0), (2, 12.0), (3, 14.0))]
    rows.append(cell("a", 16, **{"train.seed": 1}))
    data = report(rows, ["lora_r", "train.seed"])
    table = build_tables(data, Layout(["lora_r"], [], ["peak_mem_mib"]), None)[0]
    half = 4.302652729 * 2.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n): sd of 10, 12, 14 is 2
    assert t_interval([10.0, 12.0, 14.0]) == pytest.approx((12.0, half))
    assert table.frame.iloc[0, 0] == "12.0 ± 5.0"
    assert table.numbers.iloc[0, 0] == 12.0
    assert any("n = 1, 3" not in note and "n = 3 per cell" in note for note in table.footnotes)


def test_seed_group_with_an_oom_counts_it():
    rows = [cell("a", 8, **{"train.seed": s}) for s in (1, 2)] + [cell("a", 8, "oom", **{"train.seed": 3})]
    table = build_tables(report(rows, ["train.seed"]), Layout([], [], ["peak_mem_mib"]), None)[0]
    assert table.frame.iloc[0, 0] == "608 ± 0 (n=2; 1 does not fit)"


def test_cells_differing_in_a_hidden_axis_collide():
    rows = [cell("a", 8), cell("a", 8, quant="4bit")]
    with pytest.raises(ConfigError, match=r"^report.rows/report.cols: 2 cells at lora_r=8 differ in quant: add quant"):
        build_tables(report(rows, ["quant", "lora_r"]), Layout(["lora_r"], [], ["peak_mem_mib"]), None)


def test_unknown_keys_are_one_line_config_errors():
    data = grid()
    with pytest.raises(ConfigError, match="report.rows: 'nope'"):
        build_tables(data, Layout(["nope"], [], ["peak_mem_mib"]), None)
    with pytest.raises(ConfigError, match="report.values: no column 'nope'"):
        build_tables(data, Layout(["model"], [], ["nope"]), None)


@pytest.mark.parametrize("value, err, text", [
    (0.41234, 0.01234, "0.412 ± 0.012"),
    (1234.5, 56, "1234 ± 56"),  # the value to the stderr's second significant digit
    (45678.0, 1234.0, "45700 ± 1200"),
    (0.5, 0.0995, "0.50 ± 0.10"),
    (-0.0001, 0.01, "0.000 ± 0.010"),
    (6.5, 0.0, "6.5 ± 0"),
    (688.402344, None, "688.4"),
    (131072.0, None, "131072"),
    (8, None, "8"),
    (12345.678, None, "12346"),
    (0.000123456, None, "0.0001235"),
    (float("nan"), None, "n/a"),
    (84.91678555711469, 5.0e-17, "84.92 ± 0"),  # a zero stderr up to float noise, not 18 decimals
])
def test_rounding_to_what_the_stderr_supports(value, err, text):
    assert format_value(value, err) == text


def test_signed_deltas():
    assert format_value(1.5, sign=True) == "+1.5"
    assert format_value(-0.25, 0.1, sign=True) == "-0.25 ± 0.10"
    assert format_value(0.0, sign=True) == "0"


def test_stderr_column_is_shown_and_best_respects_direction():
    data = grid()
    memory, speed, bench = build_tables(data, default_layout(data), None)
    assert bench.frame.loc["a", "8"] == "5.50 ± 0.41 (tie)"  # the mt_bench_se column, to 2 significant digits
    # every lead here is inside the noise: 608 vs 616 MiB (< 5 %), MT-Bench 6.0 vs 5.5 (< 2 combined stderr)
    for table in (memory, speed, bench):
        assert not table.best.to_numpy().any()
    assert memory.frame.loc["b", "8"] == "608 (tie)" and memory.frame.loc["a", "16"] == "616 (tie)"
    assert bench.frame.loc["a", "16"].endswith("(tie)") and any(n.startswith("bold: the best position") for n in bench.footnotes)
    apart = report([cell("a", 8), cell("b", 8, peak_mem_mib=900.0, tokens_per_s=500.0, mt_bench=9.0),
                    cell("c", 8, peak_mem_mib=950.0, tokens_per_s=400.0, mt_bench=2.0)], ["model"])
    memory, speed, bench = build_tables(apart, default_layout(apart), None)
    assert memory.best.loc["a"].iat[0] and memory.best.to_numpy().sum() == 1  # lowest memory, 30 % ahead
    assert speed.best.loc["a"].iat[0] and bench.best.loc["b"].iat[0]  # higher MT-Bench is better
    assert "(tie)" not in "".join(bench.frame.to_numpy().ravel())
    params = build_tables(data, Layout(["model"], ["lora_r"], ["trainable_params"]), None)[0]
    assert not params.best.to_numpy().any()  # a count: no direction, nothing marked
    tied = build_tables(report([cell("a", 8), cell("b", 8)], ["model"]), Layout(["model"], [], ["peak_mem_mib"]), None)
    assert not tied[0].best.to_numpy().any()  # all equal: nothing stands out
    assert list(tied[0].frame.iloc[:, 0]) == ["608 (tie)", "608 (tie)"]


def test_baseline_must_name_exactly_one_cell():
    data = grid()
    layout = Layout(["model"], ["lora_r"], ["peak_mem_mib"])
    with pytest.raises(ConfigError, match=r"^report.baseline=lora_r=64: matches 0 cells$"):
        build_tables(data, layout, "lora_r=64")
    with pytest.raises(ConfigError, match=r"^report.baseline=lora_r=8: matches 2 cells: add keys \(model\)$"):
        build_tables(data, layout, "lora_r=8")
    memory, delta = build_tables(data, layout, "model=a,lora.r=8")  # a dotted config key reads its column
    assert delta.title == "peak memory vs model=a,lora.r=8"
    assert delta.frame.loc["a", "8"] == "0 (baseline)"
    assert delta.frame.loc["a", "16"] == "+8"
    assert delta.frame.loc["b", "32"] == "failed"
    assert delta.numbers.loc["b", "16"] == 8.0


def test_footnotes_name_counter_device_libraries():
    data = grid()
    memory = build_tables(data, default_layout(data), None)[0]
    text = "\n".join(memory.footnotes)
    assert "memory counter: host_peak_rss" in text
    assert "device: cpu (AMD EPYC)" in text
    assert "libraries: torch 2.13.0+cpu, transformers 5.24.0" in text


def test_markdown_has_units_bold_best_and_footnotes():
    data = grid()
    text = to_markdown(build_tables(data, default_layout(data), None))
    assert "### peak memory (MiB)" in text and "### throughput (tokens/s)" in text
    assert "| model   |   lora_r=8 |   lora_r=16 |    lora_r=32 |" in text
    assert "608 (tie)" in text and "**" not in text and "does not fit" in text and "failed" in text
    apart = report([cell("a", 8), cell("b", 8, peak_mem_mib=900.0)], ["model"])
    assert "**608**" in to_markdown(build_tables(apart, Layout(["model"], [], ["peak_mem_mib"]), None))
    assert "- memory counter: host_peak_rss" in text


def test_latex_booktabs_escaped_and_balanced():
    data = grid()
    text = to_latex(build_tables(data, default_layout(data), "model=a,lora_r=8"))
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert text.count(rule) == 6
    assert "lora\\_r=8" in text and "lora_r" not in text.replace("lora\\_r", "")
    assert "608 (tie)" in text and "$\\pm$" in text and "±" not in text
    apart = report([cell("a", 8), cell("b", 8, peak_mem_mib=900.0)], ["model"])
    assert "\\textbf{608}" in to_latex(build_tables(apart, Layout(["model"], [], ["peak_mem_mib"]), None))
    assert "\\caption{peak memory (MiB)}" in text
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert text.count("\\begin{table}") == text.count("\\end{table}") == 6


def test_html_marks_best_and_status_and_escapes():
    rows = [cell("<a&b>", 8), cell("<a&b>", 16, "oom"), cell("c", 8, peak_mem_mib=700.0)]
    table = build_tables(report(rows, ["model", "lora_r"]), Layout(["model"], ["lora_r"], ["peak_mem_mib"]), None)[0]
    html = table_html(table)
    assert html.startswith('<table class="report-table">') and "<caption>peak memory (MiB)</caption>" in html
    assert "<th>&lt;a&amp;b&gt;</th>" in html and "<a&b>" not in html
    assert '<td class="status">does not fit</td>' in html
    assert html.count('class="best"') == 1 and '<td class="best">608</td>' in html
    assert '<ul class="footnotes">' in html


def test_same_input_same_bytes():
    def build() -> List[str]:
        data = grid()
        tables = build_tables(data, default_layout(data), "model=b,lora_r=16")
        return [to_markdown(tables), to_latex(tables)] + [table_html(t) for t in tables]

    assert build() == build()
