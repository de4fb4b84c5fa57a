"""Bench: a 1,000-point grid composed and validated (``compose_jobs``, what the sweeper runs before any cell) and
planned (``python -m harness.plan -m``); seconds in extra_info (target <= 10 s each on 2 cores, issue 25)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode

from harness.config.compose import CONF_DIR, register
from harness.sweep.preflight import compose, compose_jobs, config_loader

pytestmark = pytest.mark.slow
GRID = ["model=tiny-llama,tiny-mistral", "quant=none,4bit", "lora.r=4,8,16,32,64", "train.lr=1e-4,2e-4,5e-4,1e-3,2e-3",
        "train.seed=1,2,3,4,5,6,7,8,9,10"]  # 2 x 2 x 5 x 5 x 10 = 1,000 points


def test_a_1000_point_grid_composes_and_plans_in_seconds(benchmark, tmp_path):
    register()
    loader = config_loader(CONF_DIR, None)
    master = compose(loader, "config", GRID + [f"run.root={tmp_path}"], RunMode.MULTIRUN)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(GRID)
    jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    assert len(jobs) == 1000
    valid, problems = benchmark.pedantic(lambda: compose_jobs(loader, master, jobs), rounds=1, iterations=1)
    assert len(valid) == 1000 and not problems
    start = time.perf_counter()
    plan = subprocess.run([sys.executable, "-m", "harness.plan", "-m", *GRID, "--device", "cpu", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr
    benchmark.extra_info.update(compose_jobs_s=round(benchmark.stats.stats.mean, 2), points=len(jobs),
                                plan_m_s=round(time.perf_counter() - start, 2))
