"""Published files keep what the console says: the judge that judged, the caveats, best only when separated, the
Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pandas as pd
import pytest

from harness.files import write_json_atomic
from harness.report.data import ReportData, _tidy_rows
from harness.report.pareto import pareto_tables
from harness.report.pivot import Layout, build_tables
from harness.report.publish import table_html, to_latex, to_markdown
from harness.report.summary import NOTES, data_line
from harness.store.layout import JUDGE_FACTS, cell_view, write_eval
from harness.store.records import new_record
from tests.unit.test_report_tables import TIDY, cell

pytestmark = pytest.mark.unit

JUDGE = {"model": "judge-local-7", "base_url": "http://127.0.0.1:9/v1", "repeats": 1, "prompt_hash": "ab" * 32,
         "null_control": False, "n_judged": 8, "limit": 8, "total": 80, "temperatures": [0.0, 0.7], "sample": [81, 91]}
CAVEAT = "MT-Bench on 8 of 80 questions (eval limit): not comparable with published scores"


def judged(view_id: str, **facts: Any) -> Dict[str, Any]:
    """A cell view as the store gives it: config asks for gpt-4, the judge result says judge-local-7 judged."""
    config = {"model": {"name": "a"}, "eval": {"judge": {"model": "gpt-4", "api_key_env": "OPENAI_API_KEY"}}}
    return {"cell_id": view_id, "config": config,
            JUDGE_FACTS: {"mt_bench": {"judge": {**JUDGE, **facts}, "caveats": [CAVEAT]}}}


def report(rows: List[Dict[str, Any]], cells: List[Dict[str, Any]], axes: List[str]) -> ReportData:
    return ReportData(sweeps=[], cells=cells, wide=pd.DataFrame(rows), tidy=pd.DataFrame(columns=TIDY), axes=axes)


def test_a_cell_view_carries_the_judge_that_judged(tmp_path: Path) -> None:
    cell_dir = tmp_path / "cells" / "c1"
    write_json_atomic(cell_dir / "record.json", new_record("c1", "ok", {"eval": {"judge": {"model": "gpt-4"}}}))
    write_eval(cell_dir, "k1", {"status": "ok", "rows": [{"evaluator": "mt_bench", "task": "mt_bench", "metric": "mt_bench",
                                                          "value": 6.0}], "judge": JUDGE, "caveats": [CAVEAT]})
    view = cell_view(cell_dir, {"mt_bench:judge": "k1"})
    assert view[JUDGE_FACTS]["mt_bench"] == {"judge": JUDGE, "caveats": [CAVEAT]}
    write_eval(cell_dir, "k2", {"status": "ok", "rows": []})  # an old result: no judge block, no facts
    assert JUDGE_FACTS not in cell_view(cell_dir, {"mt_bench:judge": "k2"})


def test_judged_tables_name_the_judge_n_and_caveats_in_md_tex_html() -> None:
    data = report([cell("a", 8), cell("b", 8)], [judged("a"), judged("b")], ["model"])
    bench = build_tables(data, Layout(["model"], [], ["mt_bench"]), None)[0]
    judge = "judge: judge-local-7, n=8 judged (eval limit 8), repeats 1, prompts sha256 abababababab"
    assert judge in bench.footnotes and f"caveat: {CAVEAT}" in bench.footnotes
    for text in (to_markdown([bench]), to_latex([bench]), table_html(bench)):
        assert "judge-local-7" in text and "n=8 judged" in text and "not comparable with published scores" in text
        assert "gpt-4" not in text
    memory = build_tables(data, Layout(["model"], [], ["peak_mem_mib"]), None)[0]
    assert not any(n.startswith("judge:") for n in memory.footnotes)  # the judge belongs to judged metrics only
    mixed = report([cell("a", 8), cell("b", 8)], [judged("a"), judged("b", model="judge-b")], ["model"])
    notes = build_tables(mixed, Layout(["model"], [], ["mt_bench"]), None)[0].footnotes
    assert sum(n.startswith("judge: ") and n.endswith("(1 of 2 cells)") for n in notes) == 2


def test_metric_rows_name_the_judge_not_the_config() -> None:
    view = judged("a")
    view["metrics"] = [{"evaluator": "mt_bench", "task": "mt_bench", "metric": "mt_bench", "value": 6.0, "stderr": 0.5},
                       {"evaluator": "perplexity", "task": "perplexity", "metric": "eval_loss", "value": 7.6}]
    wide = {**cell("a", 8), "cell": "a", "sweeps": "s"}
    rows = {row["metric"]: row for row in _tidy_rows(view, wide)}
    text = " ".join(str(v) for row in rows.values() for v in row.values())
    assert "gpt-4" not in text and "OPENAI_API_KEY" not in text
    judged_row = rows["mt_bench"]
    assert (judged_row["judge_model"], judged_row["judge_n"], judged_row["judge_limit"]) == ("judge-local-7", 8, 8)
    assert CAVEAT in judged_row["caveats"] and NOTES["random"] in judged_row["caveats"]
    assert rows["eval_loss"]["judge_model"] is None and CAVEAT not in rows["eval_loss"]["caveats"]
    assert NOTES["cpu"] in rows["peak_mem_mib"]["caveats"]  # a CPU figure says so on its own row


def test_the_cpu_4bit_caveat_travels_with_memory_figures() -> None:
    rows = [cell("a", 8), cell("a", 8, quant="4bit", cell="a-4bit", peak_mem_mib=931.0)]
    data = report(rows, [{}, {}], ["quant"])
    memory = build_tables(data, Layout(["quant"], [], ["peak_mem_mib"]), None)[0]
    assert NOTES["cpu_bnb"] in memory.footnotes
    for text in (to_markdown([memory]), to_latex([memory])):
        assert "dequantizes" in text
    speed = build_tables(data, Layout(["quant"], [], ["tokens_per_s"]), None)[0]
    assert NOTES["cpu_bnb"] not in speed.footnotes  # a memory caveat, not a throughput one


def test_a_noisy_outlier_is_not_bold() -> None:
    rows = [cell("a", 8, tokens_per_s=894.7, step_cv_flag=True), cell("b", 8, tokens_per_s=104.0),
            cell("c", 8, tokens_per_s=73.0)]
    speed = build_tables(report(rows, [{}, {}, {}], ["model"]), Layout(["model"], [], ["tokens_per_s"]), None)[0]
    assert not speed.best.to_numpy().any()
    assert any("flagged noisy" in n for n in speed.footnotes) and any("noisy here" in n for n in speed.footnotes)
    spread = [cell("a", 8, tokens_per_s=120.0, tokens_per_s_p25=80.0, tokens_per_s_p75=150.0),
              cell("b", 8, tokens_per_s=100.0, tokens_per_s_p25=90.0, tokens_per_s_p75=110.0)]
    overlap = build_tables(report(spread, [{}, {}], ["model"]), Layout(["model"], [], ["tokens_per_s"]), None)[0]
    assert not overlap.best.to_numpy().any() and overlap.frame.iloc[0, 0].endswith("(tie)")  # 20 % ahead, spreads overlap


def test_the_pareto_front_lists_the_cells_worth_their_cost() -> None:
    rows = [cell("a", 8, peak_mem_mib=600.0, mt_bench=5.0, wall_s=10.0), cell("b", 8, peak_mem_mib=900.0, mt_bench=7.0,
            wall_s=30.0), cell("c", 8, peak_mem_mib=950.0, mt_bench=6.0, wall_s=5.0), cell("d", 8, "oom")]
    data = report(rows, [judged("a"), judged("b"), judged("c"), {}], ["model"])
    memory, time = pareto_tables(data)
    assert memory.title == "Pareto front: MT-Bench vs peak memory"
    assert list(memory.frame.index.get_level_values("model")) == ["a", "b"]  # c: more memory and a lower score than b
    assert list(time.frame.index.get_level_values("model")) == ["c", "b"]  # wall time without a device price
    text = to_markdown([memory, time])
    assert "### Pareto front: MT-Bench vs peak memory" in text and "judge-local-7" in text and CAVEAT in text
    assert "\\begin{table}" in to_latex([memory]) and "Pareto front" in table_html(memory)
    assert pareto_tables(report([cell("a", 8)], [{}], ["model"])) == []  # one cell: no front to speak of


def test_the_data_line_names_a_user_file_not_the_bundled_set() -> None:
    record = {"config": {"data": {"name": "bundled", "path": "/home/me/chats.jsonl"}},
              "data": {"source": "/home/me/chats.jsonl", "records": 10, "kept": 10,
                       "split_examples": {"train": 8, "validation": 1, "test": 1}}}
    line = data_line(record)
    assert line.startswith("/home/me/chats.jsonl — 10 records") and "bundled" not in line
    bundled = {**record, "config": {"data": {"name": "bundled", "path": None}}, "data": {**record["data"], "source": "chat.jsonl"}}
    assert data_line(bundled).startswith("bundled chat.jsonl")
