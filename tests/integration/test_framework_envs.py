"""A framework in its own environment: its worker runs that environment's python; a missing one is unsupported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, records, run_harness, sweep_of

pytestmark = pytest.mark.integration


def test_missing_env_is_unsupported_and_a_built_env_runs_its_own_python(harness_env, tmp_path: Path) -> None:
    env = tmp_path / "venv-other"
    (env / "bin").mkdir(parents=True)
    (env / "lib" / "python3" / "site-packages").mkdir(parents=True)
    marker = tmp_path / "used"
    wrapper = env / "bin" / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    missing = tmp_path / "venv-missing"
    root = tmp_path / "runs"
    result = run_harness(["-m", "framework.name=other", f"framework.env={env},{missing}", "framework.setup=make setup-other",
                          "eval=[]", *FAST], harness_env, root)
    assert result.returncode == 1, result.stdout + result.stderr  # the unsupported cell is not ok
    by_status = {view["status"]: view for view in records(sweep_of(root)).values()}
    assert set(by_status) == {"ok", "unsupported"}
    assert by_status["unsupported"]["error"] == (f"framework=other: its environment {missing} is not built; "
                                                 "build it with: make setup-other")
    assert "-m harness.worker" in marker.read_text()  # the ok cell's worker ran the environment's python
    assert "unsupported" in (sweep_of(root) / "summary.md").read_text()
