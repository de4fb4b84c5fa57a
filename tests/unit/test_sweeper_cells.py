"""``hydra.sweeper.cells``: a named sweep as a list of heterogeneous cells, each the grid of its overrides + params +
the command line's arguments; without cells the sweeper's jobs are BasicSweeper's grid, unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from harness.errors import ConfigError
from hydra_plugins.harness_sweeper.harness_sweeper import ValidatingSweeper, ValidatingSweeperConf, expand, parse_cells

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PARSER = OverridesParser.create()


def _sweeper(params: Optional[Dict[str, str]] = None, cells: Optional[List[str]] = None,
             max_batch_size: Optional[int] = None) -> ValidatingSweeper:
    import importlib

    import hydra_plugins.harness_sweeper.harness_sweeper as module

    # Hydra's plugin scan re-executes its core plugins' modules (a new BasicSweeper class) when another test composes
    # first: re-bind to the BasicSweeper in sys.modules now, as a real sweep does at launch.
    importlib.reload(importlib.import_module(BasicSweeper.__module__))
    module = importlib.reload(module)
    sweeper = module.ValidatingSweeper(max_batch_size=max_batch_size, params=params, cells=cells)
    sweeper.hydra_context = SimpleNamespace(config_loader=None)  # all the job expansion reads of it
    return sweeper


def _launched(sweeper: ValidatingSweeper, arguments: List[str]) -> List[List[str]]:
    """What BasicSweeper.sweep would launch: split_arguments over the parsed params + arguments, flattened."""
    params = [f"{k}={v}" for k, v in (sweeper.params or {}).items()] + list(arguments)
    batches = sweeper.split_arguments(PARSER.parse_overrides(params), sweeper.max_batch_size)
    return [job for batch in batches for job in batch]


def test_cells_expand_in_order_with_params_and_arguments_applied_to_each():
    sweeper = _sweeper(params={"train.seed": "1,2"},
                       cells=["model=tiny-llama quant=4bit lora.r=16", "model=tiny-mistral peft=full quant=none"])
    jobs = sweeper._job_overrides(["train.max_steps=3"])
    assert jobs == [
        ["model=tiny-llama", "quant=4bit", "lora.r=16", "train.seed=1", "train.max_steps=3"],
        ["model=tiny-llama", "quant=4bit", "lora.r=16", "train.seed=2", "train.max_steps=3"],
        ["model=tiny-mistral", "peft=full", "quant=none", "train.seed=1", "train.max_steps=3"],
        ["model=tiny-mistral", "peft=full", "quant=none", "train.seed=2", "train.max_steps=3"],
    ]
    assert _launched(sweeper, ["train.max_steps=3"]) == jobs  # what Hydra launches is what was validated


def test_a_key_or_group_the_cell_sets_is_taken_from_params_or_the_command_line():
    sweeper = _sweeper(params={"quant": "none"},
                       cells=["model=tiny-llama quant=4bit lora.r=8", "model=tiny-mistral peft=dora +lora.alpha=4"])
    jobs = sweeper._job_overrides(["lora.r=32", "peft=lora", "lora.alpha=64"])
    assert jobs == [["model=tiny-llama", "quant=none", "lora.r=32", "peft=lora", "lora.alpha=64"],
                    ["model=tiny-mistral", "quant=none", "lora.r=32", "peft=lora", "lora.alpha=64"]]
    # an argument that sweeps a key the cell sets replaces it with its whole axis
    jobs = sweeper._job_overrides(["lora.r=4,8"])
    assert [job for job in jobs if job[0] == "model=tiny-llama"] == [
        ["model=tiny-llama", "quant=none", "lora.r=4"], ["model=tiny-llama", "quant=none", "lora.r=8"]]


def test_launch_order_and_batches_follow_the_manifests_order():
    sweeper = _sweeper(cells=["lora.r=8", "lora.r=16", "lora.r=32"], max_batch_size=2)
    validated = sweeper._job_overrides(["train.seed=1"])
    sweeper._order = [2, 0, 1]  # as _write_manifest sets it (ascending predicted memory)
    params = PARSER.parse_overrides(["train.seed=1"])
    assert sweeper.split_arguments(params, 2) == [[validated[2], validated[0]], [validated[1]]]


def test_cell_strings_are_split_like_a_shell_line():
    (cell,) = parse_cells(PARSER, ["model=tiny-llama  'data.path=/tmp/a b.jsonl'\tlora.r=8"])
    assert [o.input_line for o in cell] == ["model=tiny-llama", "data.path=/tmp/a b.jsonl", "lora.r=8"]


@pytest.mark.parametrize("cells,needle", [
    (["lora.r=8", ""], r"^hydra\.sweeper\.cells\[1\]='': an empty cell"),
    (["   "], r"^hydra\.sweeper\.cells\[0\]='   ': an empty cell"),
    (["lora.r=8 'model=tiny-llama"], r"^hydra\.sweeper\.cells\[0\]=.*: cannot split it into overrides"),
    (["lora.r=8", "model=tiny-llama lora.r=[1"], r"^hydra\.sweeper\.cells\[1\]=.*: cannot parse lora\.r=\[1"),
    (["model"], r"^hydra\.sweeper\.cells\[0\]='model': cannot parse model"),
])
def test_a_bad_cell_is_one_line_naming_its_index(cells, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        parse_cells(PARSER, cells)
    assert "\n" not in str(info.value)


def test_without_cells_the_jobs_are_basic_sweepers_grid():
    params = {"model": "tiny-llama,tiny-mistral", "lora.r": "8,16", "eval": "[]"}
    arguments = ["train.seed=1,2", "train.max_steps=3"]
    parsed = PARSER.parse_overrides([f"{k}={v}" for k, v in params.items()] + arguments)
    basic = BasicSweeper.split_arguments(parsed, None)[0]
    assert len(basic) == 8
    for cells in (None, []):
        sweeper = _sweeper(params=params, cells=cells)
        assert sweeper._job_overrides(arguments) == basic == _launched(sweeper, arguments)
        assert expand(parsed, parse_cells(PARSER, cells)) == basic
    assert BasicSweeper.split_arguments(parsed, 3) == _sweeper(params=params, max_batch_size=3).split_arguments(parsed, 3)
    assert ValidatingSweeperConf().cells is None


def test_a_bad_cell_stops_the_sweep_before_anything_runs(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "bad-cells.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nhydra:\n  mode: MULTIRUN\n  sweeper:\n    cells:\n"
        "      - model=tiny-llama lora.r=8\n      - ''\nrun:\n  sweep: bad-cells\n")
    root = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "harness", "--config-dir", str(tmp_path / "conf"), "-cn", "bad-cells",
                             f"run.root={root}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: hydra.sweeper.cells[1]='': an empty cell; write its overrides as 'key=value key=value'"]
    assert not (root / "bad-cells" / "manifest.json").exists() and not (root / "cells").exists()
