"""Fixed per-cell cost of process isolation: worker start + imports + load, beside training.

Run with ``make bench``. Reports (in pytest-benchmark's extra_info and on stdout) the
breakdown of a one-step tiny cell and the import cost of the training stack alone, so the
fixed overhead is stated as measured, not asserted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import records, run_harness

pytestmark = pytest.mark.slow


def test_import_cost_of_training_stack(benchmark, harness_env):
    code = "import torch, transformers, peft, trl, datasets"
    benchmark.pedantic(
        lambda: subprocess.run([sys.executable, "-c", code], env=harness_env, check=True),
        rounds=3,
        iterations=1,
    )


def test_one_step_cell_breakdown(benchmark, harness_env, tmp_path):
    overrides = ["train.max_steps=1", "train.eval_every=0", "train.measure_warmup_steps=0"]
    run_harness(overrides, harness_env, tmp_path / "warm")  # build the tiny model once

    counter = iter(range(100))

    def one_cell():
        result = run_harness([*overrides, f"run.sweep=s{next(counter)}"], harness_env, tmp_path)
        assert result.returncode == 0, result.stderr

    benchmark.pedantic(one_cell, rounds=3, iterations=1)
    timings = [r["timings_s"] for sweep in tmp_path.glob("s*") for r in records(sweep).values()]
    mean = {key: sum(t.get(key, 0.0) for t in timings) / len(timings) for key in timings[0]}
    mean["fixed_overhead"] = mean["cell_wall"] - mean.get("train", 0.0) - mean.get("eval_perplexity", 0.0)
    benchmark.extra_info.update({f"mean_{k}_s": round(v, 3) for k, v in mean.items()})
    print("\nper-cell breakdown (s, mean of 3):", {k: round(v, 2) for k, v in mean.items()})
