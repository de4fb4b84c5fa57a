"""The cell store end to end: content-addressed cells, locks between concurrent sweeps, evaluation apart from training."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, records, run_harness

pytestmark = pytest.mark.integration
ONE_STEP = ["train.max_steps=2", "train.eval_every=0", "train.measure_warmup_steps=0"]


def _rows(path: Path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _data(path: Path, n: int) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": f"Question number {i}: what is {i} plus {i}, and why?"},
                      {"role": "assistant", "content": f"The sum of {i} and {i} is {2 * i}, because adding a number to itself doubles it."}]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_identical_sweeps_started_together_train_each_cell_once(harness_env, tmp_path):
    args = ["-m", "lora.r=4,8", "run.sweep=twin", *ONE_STEP, f"run.root={tmp_path}"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=harness_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=400) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out + err
        assert "2/2 cells ok" in out
    text = "".join(out for out, _ in outputs)
    cells = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert len(cells) == 2
    for cid in cells:
        # trained by one process, reused by the other (which may have waited on the lock, or left it to its holder)
        assert text.count(f"{cid}: ok  reused stored cell") + text.count(f"{cid}: busy, held by") == 1, text
        spec = json.loads((tmp_path / "cells" / cid / "cell.json").read_text())
        record = json.loads((tmp_path / "cells" / cid / "record.json").read_text())
        assert record["attempt"] == spec["attempt"] and record["worker_exit_code"] == 0
    assert {r["cell"] for r in _rows(tmp_path / "twin" / "summary.csv")} == set(cells)


def test_identity_follows_content_and_evaluators_never_retrain(harness_env, tmp_path):
    data = _data(tmp_path / "chat.jsonl", 60)
    base = [f"data.path={data}", *ONE_STEP]
    first = run_harness([*base, "run.sweep=first"], harness_env, tmp_path / "runs")
    assert first.returncode == 0, first.stdout + first.stderr
    # the same value written another way, in another sweep folder: the stored cell, not a new one
    same = run_harness([*base, "train.lr=0.0002", "run.sweep=other"], harness_env, tmp_path / "runs")
    assert same.returncode == 0 and "reused stored cell" in same.stdout, same.stdout
    (cid,) = [p.name for p in (tmp_path / "runs" / "cells").iterdir()]
    stamp = (tmp_path / "runs" / "cells" / cid / "record.json").stat().st_mtime

    # adding an evaluator scores the stored adapter, it does not train again
    # (MMLU the same way: make demo, then the demo sweep with eval=[perplexity,mmlu]; lm-eval's import is slow for make test)
    more = run_harness([*base, "eval.perplexity.rolling=false", "run.sweep=other"], harness_env, tmp_path / "runs")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "evaluated perplexity on the stored cell, no training" in more.stdout
    assert (tmp_path / "runs" / "cells" / cid / "record.json").stat().st_mtime == stamp
    (row,) = _rows(tmp_path / "runs" / "other" / "summary.csv")
    assert row["cell"] == cid and float(row["eval_loss"]) > 0 and not row["seq_ppl"]

    # an evaluation that failed is resumed at evaluation, by the on-demand command too
    ppl = next(p for p in (tmp_path / "runs" / "cells" / cid / "evals").glob("perplexity-*/result.json")
               if json.loads(p.read_text())["config"]["rolling"])
    result = json.loads(ppl.read_text())
    ppl.write_text(json.dumps({**result, "status": "failed", "error": "injected"}))
    again = subprocess.run([sys.executable, "-m", "harness.evaluate", str(tmp_path / "runs" / "other"), "eval=[perplexity]"],
                           cwd=REPO, env=harness_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "evaluated perplexity on the stored cell, no training" in again.stdout
    rescored = json.loads(ppl.read_text())
    assert rescored["status"] == "ok"
    # the stored adapter, loaded again, scores exactly what the trained model in memory scored
    assert {r["metric"]: r["value"] for r in rescored["rows"]}["eval_loss"] == pytest.approx(
        {r["metric"]: r["value"] for r in result["rows"]}["eval_loss"], rel=1e-5)

    # editing the data makes a new cell; the old one stays in the store
    _data(data, 40)
    edited = run_harness([*base, "run.sweep=first"], harness_env, tmp_path / "runs")
    assert edited.returncode == 0 and "reused" not in edited.stdout
    assert len(list((tmp_path / "runs" / "cells").iterdir())) == 2
    (view,) = records(tmp_path / "runs" / "first").values()
    assert view["cell_id"] != cid and view["data"]["records"] == 40


def test_grid_points_that_are_one_cell_are_refused(harness_env, tmp_path):
    result = run_harness(["-m", "run.timeout_s=6,600"], harness_env, tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: run.timeout_s=6 run.timeout_s=600: these grid points are one and the same cell")
    assert not (tmp_path / "cells").exists()
