"""A 4-cell tiny sweep one cell at a time and 2 at a time through hydra/launcher=joblib, in one run (``make bench``).

Reports (stdout and pytest-benchmark's extra_info), from the same cells, same cache, back to back:

- the wall time of each command and the ratio sequential / parallel (> 1: two at a time is faster);
- the launcher's cost per cell, from the files on disk: each cell's worker spawn time and wall
  (``progress.json``) are laid on the slots that ran them (1 or n_jobs); a cell's gap is the time its
  slot stood idle before it (since the sweep's manifest was written, for a slot's first cell).
  The mean gap is what Hydra's job set-up, the launcher's dispatch (joblib: starting its loky
  workers, shipping the job) and the harness's per-cell parent work (plan, lock, spec) cost per
  cell; joblib's mean gap minus the basic launcher's is what the launcher adds.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import records, run_harness, sweep_of

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                                                   reason="hydra-joblib-launcher is not installed (pip install -e '.[scale]')")]

GRID = ["-m", "model=tiny-llama,tiny-qwen", "lora.r=8,16", "train.max_steps=4", "train.eval_every=0",
        "train.measure_warmup_steps=1"]


def slot_gaps(sweep: Path, slots: int) -> List[float]:
    """Per cell, how long its slot stood idle before its worker started (see the module docstring)."""
    started = json.loads((sweep / "manifest.json").read_text())["started"]
    cells = []
    for cid in records(sweep):
        state = json.loads((sweep / cid / "progress.json").read_text())
        cells.append((state["started"], state["started"] + state["wall_s"]))
    free = [started] * slots  # when each slot last became free
    gaps = []
    for start, end in sorted(cells):
        ready = [t for t in free if t <= start + 0.05]
        slot = free.index(max(ready) if ready else min(free))
        gaps.append(max(0.0, start - free[slot]))
        free[slot] = end
    return gaps


def _timed(args: List[str], env: Dict[str, str], root: Path) -> float:
    began = time.perf_counter()
    result = run_harness(args, env, root, timeout=1200)
    took = time.perf_counter() - began
    assert result.returncode == 0 and "4/4 cells ok" in result.stdout, result.stdout + result.stderr
    return took


def test_four_cells_two_at_once_against_one_at_a_time(benchmark, harness_env, tmp_path):
    warm = run_harness(["-m", "model=tiny-llama,tiny-qwen", "train.max_steps=1", "train.eval_every=0"], harness_env,
                       tmp_path / "warm", timeout=1200)  # tiny models, data and baselines built once, outside the timing
    assert warm.returncode == 0, warm.stdout + warm.stderr
    measured: Dict[str, float] = {}

    def both() -> None:
        measured["sequential_s"] = _timed(GRID, harness_env, tmp_path / "seq")
        measured["parallel_s"] = _timed([*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], harness_env, tmp_path / "par")

    benchmark.pedantic(both, rounds=1, iterations=1)
    seq_gaps, par_gaps = slot_gaps(sweep_of(tmp_path / "seq"), 1), slot_gaps(sweep_of(tmp_path / "par"), 2)
    measured["ratio_sequential_over_parallel"] = measured["sequential_s"] / measured["parallel_s"]
    measured["gap_per_cell_basic_s"] = statistics.mean(seq_gaps)
    measured["gap_per_cell_joblib_s"] = statistics.mean(par_gaps)
    measured["launcher_added_per_cell_s"] = measured["gap_per_cell_joblib_s"] - measured["gap_per_cell_basic_s"]
    walls = {name: [v["timings_s"]["cell_wall"] for v in records(sweep_of(tmp_path / name)).values()] for name in ("seq", "par")}
    measured["cell_wall_mean_seq_s"] = statistics.mean(walls["seq"])
    measured["cell_wall_mean_par_s"] = statistics.mean(walls["par"])
    benchmark.extra_info.update({k: round(v, 3) for k, v in measured.items()})
    print("\nlauncher bench (4 tiny cells):", {k: round(v, 3) for k, v in measured.items()},
          "\ngaps basic:", [round(g, 2) for g in seq_gaps], "gaps joblib:", [round(g, 2) for g in par_gaps])
