"""Shared fixtures: a tiny-model cache shared by the session and a sweep runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[1]
# Small and quick: enough steps to exercise warm-up exclusion, no mid-run evaluation.
FAST = ["train.max_steps=4", "train.eval_every=0", "train.measure_warmup_steps=1"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One HARNESS_CACHE for the whole test session, so tiny models are built once."""
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture
def harness_env(cache_dir: Path) -> Dict[str, str]:
    """Environment for a harness subprocess: repo importable, offline hub, shared cache."""
    return make_env(cache_dir)


_SESSION_ENV = dict(os.environ)
"""The environment as the session started: what in-process imports later add (torch's KMP_*, inductor's cache
folder) would otherwise give later harness commands another warm template (harness/store/warm.py)."""


def make_env(cache_dir: Path) -> Dict[str, str]:
    """The environment ``harness_env`` gives, for fixtures of a wider scope."""
    env = dict(_SESSION_ENV)
    env.update(
        HARNESS_CACHE=str(cache_dir),
        HARNESS_TEMPLATE_IDLE_S="120",  # the session's warm templates exit soon after its last cell
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run_harness(args: List[str], env: Dict[str, str], root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m harness ARGS run.root=ROOT`` from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args, f"run.root={root}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(sweep_dir: Path) -> Dict[str, dict]:
    """cell id -> the cell as the summary sees it (training record plus requested evaluations),
    for every cell of the sweep's grid that has a record."""
    from harness.store.layout import load_sweep

    return {view["cell_id"]: view for view in load_sweep(sweep_dir) if (sweep_dir / view["cell_id"] / "record.json").exists()}


def sweep_of(root: Path) -> Path:
    """The one sweep folder under a run root (the cell store ``cells/`` is not a sweep)."""
    (sweep,) = [p for p in root.iterdir() if p.is_dir() and p.name != "cells"]
    return sweep
