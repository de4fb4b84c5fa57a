"""``-cn NAME`` without ``-m`` runs the named sweep's grid, not one default cell into its folder."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_harness

pytestmark = pytest.mark.integration
FIXTURE_SWEEPS = REPO / "tests" / "fixtures" / "sweeps"


def test_named_sweep_runs_its_grid_without_dash_m(harness_env, tmp_path):
    """The fixture's grid is lora.r=8 (default 16); its one cell fails at once (fault backend) to keep this cheap."""
    root = tmp_path / "runs"
    args = ["--config-dir", str(FIXTURE_SWEEPS), "-cn", "one-cell-sweep",
            "framework.backend=tests.fault_backend:FaultBackend", "+framework.options.fault=raise"]
    result = run_harness(args, harness_env, root)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]  # the injected failure, nothing else
    (cell,) = [p.name for p in (root / "cells").iterdir()]
    assert cell.startswith("tiny-llama-lora-r8-"), cell  # the grid's cell, not the default r=16 one
    manifest = (root / "one-cell-sweep" / "manifest.json").read_text()
    assert cell in manifest and json.loads(manifest)
    assert "injected failure" in (root / "cells" / cell / "record.json").read_text()


def test_named_sweep_of_cells_runs_each_cell_in_order_with_the_arguments(harness_env, tmp_path):
    """hydra.sweeper.cells: each cell once, in list order; lora.r on the command line wins over the cells' own."""
    root = tmp_path / "runs"
    args = ["--config-dir", str(FIXTURE_SWEEPS), "-cn", "two-cells-sweep", "lora.r=12",
            "framework.backend=tests.fault_backend:FaultBackend", "+framework.options.fault=raise"]
    result = run_harness(args, harness_env, root)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]  # the injected failures, nothing else
    jobs = json.loads((root / "two-cells-sweep" / "manifest.json").read_text())["jobs"]
    cells = [jobs[str(num)]["cell_id"] for num in range(len(jobs))]
    assert len(cells) == 2 and cells[0].startswith("tiny-mistral-lora-r12-") and cells[1].startswith("tiny-llama-dora-r12-")
    assert jobs["1"]["overrides"][:3] == ["model=tiny-llama", "peft=dora", "lora.r=12"]
    assert sorted(p.name for p in (root / "cells").iterdir()) == sorted(cells)
