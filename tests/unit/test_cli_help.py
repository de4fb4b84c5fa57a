"""Every ``python -m harness.*`` entry point answers ``--help`` with its usage and exit 0 (not an error about
a folder named --help)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = sorted(
    ".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "harness").rglob("__main__.py")
)


def test_the_entry_points_are_found():
    assert {"harness", "harness.data", "harness.report", "harness.plan"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("module", ENTRY_POINTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_exits_0(module, flag, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", module, flag], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    shown = result.stdout + result.stderr
    assert result.returncode == 0, f"python -m {module} {flag}: exit {result.returncode}\n{shown[-2000:]}"
    assert "usage" in result.stdout.lower(), f"python -m {module} {flag} prints no usage on stdout:\n{shown[-2000:]}"
    assert not list(tmp_path.glob("[!c]*")), f"python -m {module} {flag} wrote {sorted(tmp_path.iterdir())}"
