"""Summary rows come from records alone and carry every required column."""

from __future__ import annotations

import csv

import pytest

from harness.records import metric_row, new_record, write_json_atomic
from harness.summary import COLUMNS, write_summary

pytestmark = pytest.mark.unit
REQUIRED = (
    "cell, status, model, framework, quant, peft, lora_r, trainable_params, peak_mem_mib, "
    "mem_counter, tokens_per_s, train_loss, eval_loss, perplexity, wall_s"
).split(", ")


def _cell(folder, cid, status, **fields):
    config = {"model": {"name": "m"}, "peft": {"method": "lora"}, "lora": {"r": 8}, "quant": {"mode": "none"}, "framework": {"name": "hf"}}
    write_json_atomic(folder / cid / "cell.json", {"cell_id": cid, "config": config})
    write_json_atomic(folder / cid / "record.json", new_record(cid, status, config, **fields))


def test_summary_has_required_columns_and_rows(tmp_path):
    _cell(
        tmp_path,
        "a",
        "ok",
        train={"trainable_params": 10, "tokens_per_s": 5.0, "loss_curve": [[1, 3.0], [2, 1.0]]},
        memory={"train_peak": {"peak_mib": 100.0, "counter": "host_peak_rss"}},
        metrics=[metric_row("perplexity", "heldout", "eval_loss", 2.0, higher_is_better=False)],
        timings_s={"cell_wall": 9.0},
    )
    _cell(tmp_path, "b", "failed", error="RuntimeError: boom")
    (tmp_path / "c").mkdir()  # a cell folder with no spec is not a cell
    rows = write_summary(tmp_path)
    assert set(REQUIRED) <= set(COLUMNS)
    with open(tmp_path / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["cell"] for r in table] == ["a", "b"]
    assert table[0]["train_loss"] == "2.0" and table[0]["eval_loss"] == "2.0"
    assert table[1]["status"] == "failed" and table[1]["error"] == "RuntimeError: boom"
    assert rows[0]["mem_counter"] == "host_peak_rss"
    assert "| a | ok |" in (tmp_path / "summary.md").read_text()
