"""The README works as written: every ``bash cpu`` / ``console cpu`` block, run as a newcomer types it.

Commands run from the repository root through ``bash``, with the running interpreter's bin
folder first on PATH (under ``make test-readme`` that is ``.venv/bin``: what ``source
.venv/bin/activate`` gives), no PYTHONPATH (``make setup`` installs the package), the
hub offline, a private cache and, for ``python -m harness`` runs, tiny training and a
private ``run.root`` (tests/readme_blocks.py). The console blocks are quick (Hydra only,
nothing trains); the bash blocks train a handful of tiny cells, so they are ``slow``:
``make test-readme`` / ``.ci/run readme``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from tests.readme_blocks import REPO, bash_commands, console_commands, tiny_run

pytestmark = pytest.mark.integration


def newcomer_env(cache: Path) -> Dict[str, str]:
    """The environment of an activated .venv on a fresh machine, offline, with its own cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_CACHE", "HARNESS_HARDWARE_DIR")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        HARNESS_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run(line: str, env: Dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_has_cpu_blocks_and_the_quick_start_is_one():
    runs = [c.harness_args for c in bash_commands()]
    assert [] in runs and ["-cn", "demo"] in runs  # the quick start: one cell, then the demo sweep
    assert console_commands(), "the one-line config errors are a console cpu block"


@pytest.mark.parametrize("command", console_commands(), ids=lambda c: f"README:{c.line}")
def test_console_block_prints_what_the_readme_shows(command, tmp_path):
    result = run(command.text, newcomer_env(tmp_path / "cache"), timeout=120)
    shown = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert shown == command.expected, f"README line {command.line}: $ {command.text}"
    assert result.returncode == 2  # every shown example is a rejected config


@pytest.mark.slow
def test_every_bash_cpu_command_runs(tmp_path_factory):
    """In README order, one shared run.root and cache: later grids reuse the cells earlier commands trained."""
    root = tmp_path_factory.mktemp("readme-runs") / "runs"
    env = newcomer_env(tmp_path_factory.mktemp("readme-cache"))
    assert shutil.which("harness", path=env["PATH"]), "make setup installs the harness command in .venv/bin"
    assert shutil.which("python", path=env["PATH"]) == str(Path(sys.executable).parent / "python")
    repo_runs = sorted((REPO / "runs").glob("*")) if (REPO / "runs").is_dir() else []
    for command in bash_commands():
        line = tiny_run(command, root)
        result = run(line, env, timeout=900)
        assert result.returncode == 0, (
            f"README line {command.line}: {command.text}\n(ran: {line})\nexit {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    assert (root / "demo" / "summary.md").is_file(), "the quick start promises runs/demo/summary.md"
    logs = sorted((root / "cells").glob("*/worker.log"))
    assert logs and all("\ndata: " in "\n" + log.read_text() for log in logs), "each worker log says what the data became"
    assert (sorted((REPO / "runs").glob("*")) if (REPO / "runs").is_dir() else []) == repo_runs, "wrote into the repo"
