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


def _fixed_cost(record: dict) -> float:
    """A cell's wall time less training and evaluation: process start, imports, loading, saving."""
    timings = record["timings_s"]
    work = timings.get("train", 0.0) + sum(v for k, v in timings.items() if k.startswith("eval_") and isinstance(v, float))
    return timings["cell_wall"] - work


def test_warm_against_spawned_cells_abba(benchmark, harness_env, tmp_path):
    """One-step cells, spawned (A) and forked from the warm template (B) in A B B A order: fixed cost per cell,
    the spawn / warm ratio with a bootstrap 95 % interval over the pairs, and each side's peak host RSS."""
    import statistics

    from tests.bench.overhead import bootstrap_ci

    overrides = ["train.max_steps=1", "train.eval_every=0", "train.measure_warmup_steps=0", "run.force=true"]
    for mode in ("spawn", "warm"):  # build the tiny model and start the template outside the rounds
        run_harness([*overrides, f"run.worker={mode}", f"run.sweep=first-{mode}"], harness_env, tmp_path)
    pairs, peaks = [], {"spawn": [], "warm": []}
    counter = iter(range(1000))

    def one(mode: str) -> dict:
        sweep = f"{mode}-{next(counter)}"
        result = run_harness([*overrides, f"run.worker={mode}", f"run.sweep={sweep}"], harness_env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        (record,) = records(tmp_path / sweep).values()
        assert record["environment"]["worker"] == mode
        peaks[mode].append(record["memory"]["train_peak"]["host_peak_rss_mib"])
        return record

    def rounds() -> None:
        for index in range(4):
            order = ("spawn", "warm") if index % 2 == 0 else ("warm", "spawn")
            got = {mode: _fixed_cost(one(mode)) for mode in order}
            pairs.append((got["spawn"], got["warm"]))

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    low, high = bootstrap_ci(pairs, stat=lambda a: a[:, :, 0].mean(axis=1) / a[:, :, 1].mean(axis=1))
    spawn_s, warm_s = (statistics.mean(p[i] for p in pairs) for i in (0, 1))
    info = {
        "pairs": len(pairs), "spawn_fixed_s": round(spawn_s, 3), "warm_fixed_s": round(warm_s, 3),
        "spawn_over_warm": round(spawn_s / warm_s, 2), "ratio_ci95": [round(low, 2), round(high, 2)],
        **{f"{mode}_peak_rss_mib": [round(statistics.mean(v), 1), round(statistics.stdev(v), 1)] for mode, v in peaks.items()},
        "peak_rss_warm_minus_spawn_pct": round(100 * (statistics.mean(peaks["warm"]) / statistics.mean(peaks["spawn"]) - 1), 2),
    }
    benchmark.extra_info.update(info)
    print("\nwarm vs spawn, one-step tiny cell (fixed cost s; peak RSS MiB as [mean, sd]):", info)
