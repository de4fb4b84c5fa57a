"""lm-eval per cell on tiny models: a local MMLU sweep with baselines, and the `lm_eval` CLI cross-check.

The cross-check runs the real `lm_eval` command on the same base model, the adapter the
cell saved, the same generated task, shots and limit, and requires the same accuracy and
stderr, and the same per-question log-likelihoods as the harness recorded in-process; likewise for the untrained baseline. The
cell trains at a high learning rate so its adapter visibly moves those log-likelihoods: a
harness that scored the base model instead would fail the check.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from harness.config.model import ModelConfig
from harness.evaluators import lmeval_tasks
from harness.models.tiny import tiny_model_key
from tests.conftest import FAST, REPO, make_env, records, run_harness, sweep_of

pytestmark = pytest.mark.integration
FIXTURE = REPO / "tests" / "fixtures" / "mmlu_tiny"
LIMIT, SHOTS, BATCH = 6, 5, 8
LOCAL = "mmlu_local_mmlu_tiny_"
TRAIN = ["train.max_steps=6", "train.eval_every=0", "train.measure_warmup_steps=1", "train.lr=0.01"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """This module's own cache: its baseline assertions need a base no other test has scored."""
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="module")
def sweep(cache_dir, tmp_path_factory):
    """Two cells (r=4, r=8) of one tiny model with perplexity and local MMLU, run once for this module."""
    root = tmp_path_factory.mktemp("eval-sweep")
    args = ["-m", "lora.r=4,8", "eval=[perplexity,mmlu]", f"eval.lm_eval.mmlu_dir={FIXTURE}",
            f"eval.lm_eval.limit={LIMIT}", f"eval.lm_eval.batch_size={BATCH}", "eval.lm_eval.log_samples=true", *TRAIN]
    result = run_harness(args, make_env(cache_dir), root)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, sweep_of(root)


def _row(record: dict, evaluator: str, metric: str) -> dict:
    return next(r for r in record["metrics"] if r["evaluator"] == evaluator and r["metric"] == metric)


def test_sweep_reports_perplexity_mmlu_with_stderr_and_delta_against_one_shared_baseline(sweep, cache_dir):
    result, sweep_dir = sweep
    with open(sweep_dir / "summary.csv") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2
    for row in table:
        assert float(row["perplexity"]) > 1 and row["ppl_delta"] and float(row["seq_ppl"]) > 1
        # a local folder is labelled by its name, never as the hub benchmark
        local = {k[len(LOCAL):]: v for k, v in row.items() if k.startswith(LOCAL)}
        assert "mmlu_acc" not in row and 0 <= float(local["acc"]) <= 1 and float(local["acc_se"]) >= 0
        assert 0 <= float(local["base"]) <= 1 and float(local["delta_se"]) > 0
        assert float(local["delta"]) == pytest.approx(float(local["acc"]) - float(local["base"]))
    assert "vs base" in result.stdout and f"{LOCAL}acc" in result.stdout and "| mmlu_acc" not in result.stdout
    cells = list(records(sweep_dir).values())
    for evaluator in ("perplexity", "lm_eval"):
        keys = {r["baselines"][evaluator]["key"] for r in cells}
        assert len(keys) == 1, "both cells share their base model's baseline"
        assert sorted(r["baselines"][evaluator]["computed_here"] for r in cells) == [False, True]
    for record in cells:
        acc = _row(record, "lm_eval", "acc")
        assert acc["task"] == "mmlu" and acc["n"] == 3 * LIMIT and acc["stderr"] is not None and acc["mmlu_dir"] == str(FIXTURE)
        assert _row(record, "lm_eval", "acc_base")["value"] == _row(cells[0], "lm_eval", "acc_base")["value"]
        assert {"eval_perplexity", "eval_lm_eval", "eval_lm_eval_prepare", "baseline_lm_eval"} <= set(record["timings_s"])
        assert (sweep_dir / record["cell_id"] / "evals" / record["evals"]["lm_eval"] / "lm_eval" / "results.json").is_file()
    # only the local task was asked for: lm-eval's own task index was never built
    assert not lmeval_tasks.names_file(cache_dir, lmeval_tasks.lm_eval_version()).exists()


def _lm_eval_cli(model: Path, adapter: Path | None, include: str, out: Path, env: Dict[str, str]) -> dict:
    """Run the `lm_eval` command; return its results JSON plus its per-question samples."""
    exe = shutil.which("lm_eval", path=str(Path(sys.executable).parent)) or shutil.which("lm-eval", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "lm_eval"]
    model_args = f"pretrained={model}" + (f",peft={adapter}" if adapter else "")
    command += ["--model", "hf", "--model_args", model_args, "--tasks", "mmlu", "--include_path", include,
                "--num_fewshot", str(SHOTS), "--limit", str(LIMIT), "--batch_size", str(BATCH), "--device", "cpu",
                "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    results["samples"] = _samples(out)
    return results


def _samples(folder: Path) -> Dict[tuple, List[float]]:
    """(task, doc_id) -> the log-likelihood of each choice, from lm-eval samples files."""
    out = {}
    for path in folder.rglob("samples_mmlu_local_*.jsonl"):
        for line in path.read_text().splitlines():
            item = json.loads(line)
            task = path.name.split("samples_", 1)[1].rsplit(".jsonl", 1)[0].split("_20")[0]  # CLI files end in a date
            out[(task, item["doc_id"])] = [float(resp[0]) for resp in item["filtered_resps"]]
    return out


def _same_samples(a: Dict[tuple, List[float]], b: Dict[tuple, List[float]]) -> None:
    """Same questions and the same log-likelihood per choice."""
    assert a.keys() == b.keys() and len(a) == 3 * LIMIT
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), key


def _relative(lls: List[float]) -> List[float]:
    """Each choice's log-likelihood minus the first's: what the answer (argmax) depends on."""
    return [ll - lls[0] for ll in lls]


@pytest.mark.e2e
def test_cell_and_baseline_scores_equal_the_lm_eval_command(sweep, cache_dir, tmp_path):
    _, sweep_dir = sweep
    record = next(iter(records(sweep_dir).values()))
    cell_dir = sweep_dir / record["cell_id"]
    raw_dir = cell_dir / "evals" / record["evals"]["lm_eval"] / "lm_eval"
    raw = json.loads((raw_dir / "results.json").read_text())
    include = raw["harness"]["include_path"]
    model = Path(cache_dir) / "models" / tiny_model_key(ModelConfig(**record["config"]["model"]))
    env = {**make_env(cache_dir), "HF_DATASETS_OFFLINE": "1"}

    cli = _lm_eval_cli(model, cell_dir / "adapter", include, tmp_path / "cell", env)
    acc = _row(record, "lm_eval", "acc")
    assert acc["value"] == pytest.approx(cli["results"]["mmlu"]["acc,none"], abs=1e-12)
    assert acc["stderr"] == pytest.approx(cli["results"]["mmlu"]["acc_stderr,none"], abs=1e-12)
    # Given peft=..., the lm_eval command resizes the embeddings to len(tokenizer); the tiny
    # tokenizer is padded to the model's vocabulary, so that is a no-op and every
    # per-question log-likelihood must match exactly.
    _same_samples(_samples(raw_dir), cli["samples"])

    base = _lm_eval_cli(model, None, include, tmp_path / "base", env)
    assert _row(record, "lm_eval", "acc_base")["value"] == pytest.approx(base["results"]["mmlu"]["acc,none"], abs=1e-12)
    assert _row(record, "lm_eval", "acc_base")["stderr"] == pytest.approx(base["results"]["mmlu"]["acc_stderr,none"], abs=1e-12)
    baseline_dir = Path(cache_dir) / "baselines" / record["baselines"]["lm_eval"]["key"]
    _same_samples(_samples(baseline_dir / "lm_eval"), base["samples"])  # no resize without peft: exact
    # the adapter was really applied: trained and base models prefer the choices differently
    moved = max(abs(x - y) for key in cli["samples"] for x, y in zip(_relative(cli["samples"][key]), _relative(base["samples"][key])))
    assert moved > 1e-3


def test_unknown_task_fails_before_the_model_loads_then_in_the_parent(harness_env, tmp_path):
    env = {**harness_env, "HARNESS_CACHE": str(tmp_path / "cache")}  # no task-name list recorded yet
    args = ["eval=[perplexity,mmlu]", "eval.lm_eval.tasks=[mmlu,hellaswg]", *FAST]
    result = run_harness(args, env, tmp_path / "runs")
    assert result.returncode == 1, result.stdout + result.stderr
    (record,) = records(sweep_of(tmp_path / "runs")).values()
    assert record["status"] == "failed" and "load" not in record["timings_s"]
    assert record["error"].startswith("eval.lm_eval.tasks=hellaswg: not an lm-eval task") and "hellaswag" in record["error"]
    again = run_harness(args, env, tmp_path / "runs")  # the worker left lm-eval's task names in the cache
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [f"error: {record['error']}"]
