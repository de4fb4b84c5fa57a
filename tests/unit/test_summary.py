"""Summary rows come from records alone and carry every required column; axes, data lines, notes, labels."""

from __future__ import annotations

import csv

import pytest

from harness.evaluators.baseline import compare
from harness.evaluators.lmeval import rows_from_results
from harness.files import write_json_atomic
from harness.report.rows import COLUMNS, lm_eval_cells, lm_eval_headlines, natural_key, summary_row, varied_axes
from harness.report.summary import NOTES, data_line, notes_for, summarise, write_summary
from harness.store import layout as store
from harness.store.records import metric_row, new_record
from harness.sweep.callbacks import console_table, finish

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


# ---- labels that cannot be misread, the axes a sweep varied, the data line -------------------

DATA_STATS = {
    "source": "/x/harness/data/bundled/chat.jsonl", "records": 400, "invalid": {}, "kept": 311, "split_seed": 1234,
    "filtered": {"min_assistant_tokens": 0, "placeholder": 0, "exact_duplicate": 51, "near_duplicate": 38},
    "split_examples": {"train": 249, "validation": 31, "test": 31}, "max_examples": None,
    "train": {"examples": 249, "available": 249, "truncated": 0, "dropped_overlong": 0},
    "validation": {"examples": 31}, "test": {"examples": 31},
}


def _config(model="tiny-llama", arch="llama", r=8, seed=42, quant="none", tiny=True, max_examples=None):
    return {
        "model": {"name": model, "arch": arch, "tiny": tiny, "num_layers": 4},
        "peft": {"method": "lora"}, "lora": {"r": r, "alpha": 32, "modules": ["q_proj", "v_proj"]},
        "quant": {"mode": quant, "quant_type": "nf4"}, "framework": {"name": "hf"},
        "train": {"seed": seed, "lr": 2e-4}, "data": {"name": "bundled", "path": None, "max_examples": max_examples},
        "eval": {"perplexity": {"batch_size": 8}}, "run": {"root": "/somewhere", "device": "auto"},
    }


def _store_sweep(root, cells, overrides=None):
    """A sweep folder over cells/<id>: ``cells`` is [(cell id, config, record fields)] in job order."""
    jobs = {}
    for num, (cid, config, fields) in enumerate(cells):
        write_json_atomic(root / "cells" / cid / "cell.json", {"cell_id": cid, "config": config})
        if fields is not None:
            fields = {"environment": {"device": "cpu"}, "data": DATA_STATS, **fields}
            write_json_atomic(root / "cells" / cid / "record.json", new_record(cid, fields.pop("status", "ok"), config, **fields))
        jobs[str(num)] = {"cell_id": cid, "evals": {}, "overrides": (overrides or {}).get(cid, [])}
    sweep = root / "sweep"
    sweep.mkdir()
    store.write_manifest(sweep, jobs)
    return sweep


def test_weights_column_from_the_record_or_the_config():
    assert summary_row(new_record("a", "ok", _config(), model={"weights": "random"}))["weights"] == "random"
    assert summary_row(new_record("b", "ok", _config(tiny=True)))["weights"] == "random"  # a record from before the field
    assert summary_row(new_record("c", "ok", _config(model="llama", tiny=False)))["weights"] == "pretrained"
    assert summary_row(new_record("d", "skipped", {}))["weights"] is None


def test_notes_name_random_weights_cpu_and_bitsandbytes_on_cpu():
    random_cpu = {"weights": "random", "device": "cpu", "quant": "none"}
    assert notes_for([random_cpu]) == [NOTES["random"], NOTES["cpu"]]
    assert NOTES["cpu_bnb"] in notes_for([random_cpu, {**random_cpu, "quant": "4bit"}])
    assert notes_for([{"weights": "pretrained", "device": "cuda", "quant": "4bit", "mem_counter": "cuda_peak_allocated"}]) == []
    noisy = notes_for([{"mmlu_delta": -0.01, "mmlu_delta_se": 0.02}, {"mmlu_delta": 0.2, "mmlu_delta_se": 0.02}])
    assert noisy == ["mmlu_delta is within 2 stderr of zero in 1 of 2 cells: no measured difference from the base there"]


def test_local_mmlu_is_labelled_by_its_folder_and_deltas_carry_their_stderr():
    results = {
        "results": {"mmlu": {"acc,none": 0.375, "acc_stderr,none": 0.18, "sample_len": 8},
                    "hellaswag": {"acc,none": 0.3, "acc_stderr,none": 0.01}},
        "harness": {"mmlu_dir": "/data/mmlu_tiny/"},
    }
    cell = rows_from_results(results, ["mmlu", "hellaswag"])
    assert {r["task"]: r.get("mmlu_dir") for r in cell} == {"mmlu": "/data/mmlu_tiny/", "hellaswag": None}
    base = [dict(r, value=r["value"] + 0.008, stderr=0.17) for r in cell]
    metrics = cell + compare(cell, base)
    assert all(r["mmlu_dir"] == "/data/mmlu_tiny/" for r in metrics if r["task"] == "mmlu")  # base and delta rows too
    cells = lm_eval_cells(new_record("c", "ok", _config(), metrics=metrics))
    assert set(cells) == {
        "mmlu_local_mmlu_tiny_acc", "mmlu_local_mmlu_tiny_acc_se", "mmlu_local_mmlu_tiny_base", "mmlu_local_mmlu_tiny_delta",
        "mmlu_local_mmlu_tiny_delta_se", "hellaswag_acc", "hellaswag_acc_se", "hellaswag_base", "hellaswag_delta", "hellaswag_delta_se",
    }
    assert cells["mmlu_local_mmlu_tiny_delta_se"] == pytest.approx((0.18**2 + 0.17**2) ** 0.5)
    lines = lm_eval_headlines(new_record("c", "ok", _config(), metrics=metrics))
    assert lines[0] == "mmlu_local_mmlu_tiny acc 0.375±0.180 (-0.008±0.248 vs base)"
    plain = rows_from_results({k: v for k, v in results.items() if k != "harness"}, ["mmlu"])
    assert list(lm_eval_cells(new_record("c", "ok", _config(), metrics=plain)))[0] == "mmlu_acc"  # the hub task keeps its name


def test_axes_are_the_keys_that_differ_groups_collapse_seeds_go_last():
    configs = [_config(r=r, seed=s) for s in (1, 2) for r in (16, 8)]
    manifest = {"jobs": {"0": {"overrides": ["train.seed=1", "lora.r=16", "train.max_steps=3", "run.root=/x"]}}}
    assert varied_axes(configs, manifest) == ["lora_r", "train.seed"]
    two_models = [_config(), _config(model="tiny-mistral", arch="mistral"), {}]  # a cell with no config is ignored
    assert varied_axes(two_models, {"jobs": {"0": {"overrides": ["model=tiny-llama"]}}}) == ["model"]
    lists = [_config(), {**_config(), "lora": {"r": 8, "alpha": 32, "modules": ["q_proj"]}}]
    assert varied_axes(lists) == ["lora.modules"]
    assert varied_axes([_config(), _config()]) == [] and varied_axes([_config()]) == []
    assert sorted(["r16", "r8", None, "r2b", "r2a"], key=natural_key) == ["r2a", "r2b", "r8", "r16", None]
    assert sorted([16, 8, 2.5], key=natural_key) == [2.5, 8, 16]


def test_summary_leads_with_the_axes_sorted_naturally_with_one_data_line(tmp_path, capsys):
    cells = [(f"c{r}-{s}", _config(r=r, seed=s), {"model": {"weights": "random"}}) for s in (2, 1) for r in (16, 8)]
    sweep = _store_sweep(tmp_path, cells)
    summary = summarise(sweep)
    assert summary.axes == ["lora_r", "train.seed"] and summary.columns[:3] == ["lora_r", "train.seed", "cell"]
    assert [(r["lora_r"], r["train.seed"]) for r in summary.rows] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert summary.data == [
        "data: bundled chat.jsonl — 400 records, 311 kept: 249 train / 31 val / 31 test (split_seed 1234); "
        "dropped: 51 exact duplicates, 38 near duplicates, 0 invalid"
    ]
    with open(sweep / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["lora_r"], r["train.seed"], r["weights"]) for r in table] == [("8", "1", "random"), ("8", "2", "random"),
                                                                             ("16", "1", "random"), ("16", "2", "random")]
    markdown = (sweep / "summary.md").read_text()
    assert summary.data[0] in markdown and f"**note**: {NOTES['random']}" in markdown
    finish(sweep)
    out = capsys.readouterr().out
    assert "| lora_r | train.seed | cell | status |" in out and summary.data[0] in out
    assert out.index("| 8 | 1 |") < out.index("| 8 | 2 |") < out.index("| 16 | 1 |")
    assert f"note: {NOTES['random']}" in out and f"note: {NOTES['cpu']}" in out


def test_cells_that_differ_in_data_get_a_line_each_and_a_never_run_cell_keeps_its_axes(tmp_path):
    small = {**DATA_STATS, "max_examples": 100, "train": {**DATA_STATS["train"], "examples": 100}}
    cells = [
        ("all", _config(), {}),
        ("small", _config(max_examples=100), {"data": small}),
        ("later", _config(max_examples=50), None),  # planned, never ran: its config comes from cell.json
    ]
    summary = summarise(_store_sweep(tmp_path, cells))
    assert summary.axes == ["data.max_examples"]
    assert [r["data.max_examples"] for r in summary.rows] == [50, 100, None]
    assert summary.rows[0]["status"] == "skipped" and summary.rows[0]["model"] == "tiny-llama"
    assert len(summary.data) == 2
    assert summary.data[0].startswith("data [data.max_examples=null]: bundled chat.jsonl — 400 records, 311 kept: 249 train /")
    assert "100 of 249 train (data.max_examples=100)" in summary.data[1] and summary.data[1].startswith("data [data.max_examples=100]")


def test_data_line_counts_every_drop():
    stats = {**DATA_STATS, "invalid": {"missing messages": 3}, "filtered": {**DATA_STATS["filtered"], "placeholder": 2},
             "train": {**DATA_STATS["train"], "dropped_overlong": 4, "truncated": 5}}
    line = data_line(new_record("a", "ok", {"data": {"name": "mine", "path": "/d/chat.jsonl"}}, data=stats))
    assert line == ("mine chat.jsonl — 400 records, 311 kept: 249 train / 31 val / 31 test (split_seed 1234); dropped: "
                    "51 exact duplicates, 38 near duplicates, 2 placeholders, 3 invalid (data.on_error=skip), "
                    "4 over train.max_seq_len; 5 truncated to train.max_seq_len")
    assert data_line(new_record("b", "failed", {})) is None


def test_console_shows_lm_eval_scores_and_deltas_with_their_stderr(tmp_path):
    metrics = [
        metric_row("lm_eval", "mmlu", "acc", 0.375, stderr=0.18, higher_is_better=True),
        metric_row("lm_eval", "mmlu", "acc_base", 0.383, stderr=0.17, higher_is_better=True),
        metric_row("lm_eval", "mmlu", "acc_delta", -0.008, stderr=0.248, higher_is_better=True),
    ]
    cells = [("a", _config(), {"metrics": metrics, "model": {"weights": "random"}}),
             ("b", _config(model="llama", tiny=False), {"metrics": metrics})]
    summary = summarise(_store_sweep(tmp_path, cells))
    text = console_table(summary, 0)
    header = text.splitlines()[0]
    assert header.startswith("| model | cell | status | weights |")  # weights joins when random and pretrained mix
    assert "| mmlu_acc | mmlu_delta |" in header and "_se" not in header and "mmlu_base" not in header
    assert "| 0.375±0.180 | -0.008±0.248 |" in text


def test_split_seed_not_train_seed_picks_the_validation_set():
    from harness.config.compose import compose
    from harness.data.prepare import select_examples

    seeds = [compose([f"train.seed={seed}"]) for seed in (1, 2)]
    assert seeds[0].data.split_seed == seeds[1].data.split_seed == 1234
    chosen = [select_examples(cfg.data, cfg.data.split_seed)[0] for cfg in seeds]
    assert [e.conversation for e in chosen[0]["validation"]] == [e.conversation for e in chosen[1]["validation"]]
    other = compose(["data.split_seed=7"])
    moved, stats = select_examples(other.data, other.data.split_seed)
    assert stats["split_seed"] == 7 and [e.conversation for e in moved["validation"]] != [e.conversation for e in chosen[0]["validation"]]


def test_split_seed_is_in_the_tokenized_cache_key(monkeypatch):
    from dataclasses import replace

    from harness.config.data import DataConfig
    from harness.data import cache, prepare

    monkeypatch.setattr(cache, "tokenizer_fingerprint", lambda tokenizer: "tok")
    keys = {
        cache.cache_key(prepare._cache_parts(replace(DataConfig(), split_seed=s), None, "t", 256, s, "data")) for s in (1, 2)
    }
    assert len(keys) == 2


def test_noisy_throughput_is_flagged_under_the_table_and_its_spread_is_in_the_columns():
    from harness.report.rows import COLUMNS
    from harness.report.summary import notes_for

    assert {"tokens_per_s_p25", "tokens_per_s_p50", "tokens_per_s_p75", "step_cv", "step_cv_flag"} <= set(COLUMNS)
    rows = [{"step_cv": 0.9, "step_cv_flag": True}, {"step_cv": 0.1, "step_cv_flag": False}]
    assert any(note.startswith("tokens_per_s is noisy in 1 of 2 cells") for note in notes_for(rows))
    assert not any("noisy" in note for note in notes_for(rows[1:]))
