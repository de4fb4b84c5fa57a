"""Bench: what one job does to its sweep's files (its entry, its outcome, the frontier's "ended"), per cell, at
100, 1,000 and 10,000 jobs of a synthetic manifest: flat (ratio 10,000/100 <= 1.5 is the target, issue 25)."""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

import pytest

from harness.store import manifest as mf

pytestmark = pytest.mark.slow
SIZES = (100, 1_000, 10_000)
CELLS_TIMED = 50


def _grid(n):
    config = {"train": {"lr": 2e-4, "batch_size": 4, "max_seq_len": 256}, "lora": {"r": 16}, "model": {"name": "tiny-llama"}}
    return {str(i): {"cell_id": f"cell-{i:05d}", "evals": {"perplexity": "perplexity-k"},
                     "overrides": [f"train.seed={i}"], "config": config} for i in range(n)}


def _per_cell_ms(folder, n):
    """Mean ms of one job's bookkeeping, over CELLS_TIMED jobs spread through the grid."""
    grid = _grid(n)
    mf.write_manifest(folder, grid)
    nums = [str(i * n // CELLS_TIMED) for i in range(CELLS_TIMED)]
    start = time.perf_counter()
    for num in nums:
        entry = grid[num]
        mf.update_manifest(folder, num, entry)
        mf.record_outcome(folder, num, {"status": "ok", "host": "h", "pid": 1, "started": 0.0, "ended": 1.0})
        mf.oom_jobs(folder)  # what the frontier reads before the cell
        mf.update_manifest(folder, num, {**entry, mf.ENDED: "ok"})
    return (time.perf_counter() - start) / len(nums) * 1000


def _old_layout(tmp_path):
    """``harness/store/layout.py`` as committed (HEAD) as a module, for the before/after; None outside a git checkout."""
    repo = Path(__file__).resolve().parents[2]
    shown = subprocess.run(["git", "show", "HEAD:harness/store/layout.py"], cwd=repo, capture_output=True, text=True)
    if shown.returncode != 0 or "def update_manifest" not in shown.stdout or "manifest import" in shown.stdout:
        return None
    path = tmp_path / "old_layout.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("old_layout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _old_per_cell_ms(old, folder, n, cells=5):
    """The same bookkeeping the old way: the whole manifest rewritten and the links rescanned, twice per cell."""
    grid = _grid(n)
    old.write_manifest(folder, grid)
    start = time.perf_counter()
    for i in range(cells):
        num = str(i * n // cells)
        old.update_manifest(folder, num, grid[num])
        old.update_manifest(folder, num, {**grid[num], "ended": "ok"})
    return (time.perf_counter() - start) / cells * 1000


def test_bookkeeping_per_cell_is_flat(benchmark, tmp_path):
    ms = {}
    for n in SIZES:
        folder = tmp_path / "runs" / f"s{n}"
        folder.mkdir(parents=True)
        ms[n] = _per_cell_ms(folder, n)
    folder = tmp_path / "runs" / f"s{SIZES[-1]}"
    benchmark.pedantic(lambda: mf.update_manifest(folder, "5000", _grid(1)["0"] | {"cell_id": "cell-05000"}),
                       rounds=20, iterations=1)
    benchmark.extra_info.update({f"per_cell_ms_{n}": round(v, 3) for n, v in ms.items()})
    benchmark.extra_info["ratio_10000_over_100"] = round(ms[10_000] / ms[100], 2)
    old = _old_layout(tmp_path)
    if old is not None:
        for n in SIZES:
            folder = tmp_path / "runs" / f"old{n}"
            folder.mkdir(parents=True)
            benchmark.extra_info[f"old_per_cell_ms_{n}"] = round(_old_per_cell_ms(old, folder, n), 3)
    assert all(v > 0 for v in ms.values())
