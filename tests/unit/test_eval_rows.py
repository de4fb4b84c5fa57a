"""Metric rows from lm-eval results, baseline deltas, the baseline cache lock, summary columns, rolling windows."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.evaluators.baseline import cached_or_compute, compare
from harness.evaluators.lmeval import rows_from_results
from harness.evaluators.perplexity import rolling_windows
from harness.files import write_json_atomic
from harness.report.rows import columns_for, lm_eval_cells, lm_eval_headlines
from harness.report.summary import write_summary
from harness.store.records import metric_row, new_record

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]

# The shape simple_evaluate returns (lm-eval 0.4.x), trimmed to what rows use.
RESULTS = {
    "results": {
        "mmlu_local_a": {"alias": "a", "sample_len": 4, "acc,none": 0.25, "acc_stderr,none": 0.25},
        "mmlu_local_b": {"alias": "b", "sample_len": 4, "acc,none": 0.5, "acc_stderr,none": 0.29},
        "mmlu": {"alias": "mmlu", "name": "mmlu", "sample_len": 8, "acc,none": 0.375, "acc_stderr,none": 0.18, "sample_count": {"acc,none": 8}},
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": "N/A"},
        "hellaswag": {"alias": "hellaswag", "acc,none": 0.3, "acc_stderr,none": 0.01, "acc_norm,none": 0.35, "acc_norm_stderr,none": 0.011},
    },
    "group_subtasks": {"mmlu": ["mmlu_local_a", "mmlu_local_b"], "gsm8k": [], "hellaswag": []},
    "n-samples": {"mmlu_local_a": {"original": 12, "effective": 4}, "mmlu_local_b": {"original": 12, "effective": 4},
                  "gsm8k": {"original": 1319, "effective": 10}, "hellaswag": {"original": 10042, "effective": 10}},
    "higher_is_better": {"mmlu": {"acc": True}, "gsm8k": {"exact_match": True}, "hellaswag": {"acc": True, "acc_norm": True}},
}


def test_rows_for_requested_tasks_with_stderr_and_n():
    rows = rows_from_results(RESULTS, ["mmlu", "gsm8k", "hellaswag"])
    by = {(r["task"], r["metric"]): r for r in rows}
    assert set(by) == {("mmlu", "acc"), ("gsm8k", "exact_match/strict-match"), ("hellaswag", "acc"), ("hellaswag", "acc_norm")}
    assert by[("mmlu", "acc")] == metric_row("lm_eval", "mmlu", "acc", 0.375, stderr=0.18, n=8, higher_is_better=True)
    assert by[("gsm8k", "exact_match/strict-match")]["stderr"] is None and by[("gsm8k", "exact_match/strict-match")]["n"] == 10


def test_a_tag_reports_its_top_level_tasks():
    rows = rows_from_results(RESULTS, ["mmlu", "some_tag"])
    assert {r["task"] for r in rows} == {"mmlu", "gsm8k", "hellaswag"}  # subjects stay in the raw output


def test_delta_rows_pair_cell_and_base():
    cell = [metric_row("lm_eval", "mmlu", "acc", 0.40, stderr=0.03, n=100, higher_is_better=True),
            metric_row("perplexity", "heldout", "perplexity", 9.0, n=50, higher_is_better=False)]
    base = [metric_row("lm_eval", "mmlu", "acc", 0.42, stderr=0.04, n=100, higher_is_better=True),
            metric_row("perplexity", "heldout", "perplexity", 12.0, n=50, higher_is_better=False)]
    rows = {(r["task"], r["metric"]): r for r in compare(cell, base)}
    assert rows[("mmlu", "acc_base")]["value"] == 0.42 and rows[("mmlu", "acc_base")]["stderr"] == 0.04
    assert rows[("mmlu", "acc_delta")]["value"] == pytest.approx(-0.02) and rows[("mmlu", "acc_delta")]["stderr"] == pytest.approx(0.05)
    assert rows[("heldout", "perplexity_delta")]["value"] == -3.0 and rows[("heldout", "perplexity_delta")]["stderr"] is None
    assert compare(cell, []) == []


def test_concurrent_workers_compute_a_baseline_once(tmp_path):
    folder, counter = tmp_path / "baselines" / "m-none-x-abc", tmp_path / "computed"
    code = (
        "import os, sys, time, json\n"
        "from pathlib import Path\n"
        "from harness.evaluators.baseline import cached_or_compute\n"
        "def compute(where):\n"
        "    with open(sys.argv[2], 'a') as f: f.write(str(os.getpid()) + '\\n')\n"
        "    time.sleep(1.0)\n"
        "    return [{'metric': 'acc', 'value': 0.5}]\n"
        "entry, computed = cached_or_compute(Path(sys.argv[1]), {'k': 1}, compute, sys.argv[3])\n"
        "print(json.dumps([entry['rows'], computed, entry['computed_by']]))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder), str(counter), f"cell{i}"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert len(counter.read_text().splitlines()) == 1
    assert sorted(o[1] for o in outs) == [False, False, True]
    assert all(o[0] == [{"metric": "acc", "value": 0.5}] for o in outs) and len({o[2] for o in outs}) == 1
    entry, computed = cached_or_compute(folder, {"k": 1}, lambda where: pytest.fail("recomputed"), "late")
    assert not computed and entry["identity"] == {"k": 1}


def test_summary_columns_show_primary_metric_stderr_base_and_delta(tmp_path):
    metrics = [
        metric_row("perplexity", "heldout", "perplexity", 9.0, higher_is_better=False),
        metric_row("perplexity", "heldout", "perplexity_delta", -3.0, higher_is_better=False),
        metric_row("perplexity", "heldout", "seq_perplexity", 11.0, higher_is_better=False),
        *rows_from_results(RESULTS, ["mmlu", "hellaswag"]),
        metric_row("lm_eval", "mmlu", "acc_base", 0.383, stderr=0.18, n=8, higher_is_better=True),
        metric_row("lm_eval", "mmlu", "acc_delta", -0.008, stderr=0.25, n=8, higher_is_better=True),
    ]
    record = new_record("c1", "ok", {"model": {"name": "m"}, "peft": {"method": "lora"}, "lora": {"r": 8}}, metrics=metrics)
    cells = lm_eval_cells(record)
    assert cells == {"mmlu_acc": 0.375, "mmlu_acc_se": 0.18, "mmlu_base": 0.383, "mmlu_delta": -0.008, "mmlu_delta_se": 0.25,
                     "hellaswag_acc_norm": 0.35, "hellaswag_acc_norm_se": 0.011, "hellaswag_base": None, "hellaswag_delta": None,
                     "hellaswag_delta_se": None}
    assert lm_eval_headlines(record)[0] == "mmlu acc 0.375±0.180 (-0.008±0.250 vs base)"
    write_json_atomic(tmp_path / "c1" / "cell.json", {"cell_id": "c1", "config": record["config"]})
    write_json_atomic(tmp_path / "c1" / "record.json", record)
    rows = write_summary(tmp_path)
    columns = columns_for(rows)
    assert columns.index("seq_ppl") < columns.index("mmlu_acc") < columns.index("mmlu_delta") < columns.index("examples")
    with open(tmp_path / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["mmlu_acc"] == "0.375" and table[0]["ppl_delta"] == "-3.0" and table[0]["seq_ppl"] == "11.0"


@pytest.mark.parametrize("length,window", [(1, 4), (4, 4), (5, 4), (9, 4), (10, 3), (23, 7), (64, 2)])
def test_rolling_windows_are_lm_evals(length, window):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    rng = random.Random(length)
    tokens = [rng.randrange(1000) for _ in range(length)]
    expected = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, prefix_token=-1, max_seq_len=window, context_len=1)]
    assert rolling_windows(tokens, -1, window) == [(list(a), list(b)) for a, b in expected]
    assert sum(len(b) for _, b in rolling_windows(tokens, -1, window)) == length  # every token predicted once
