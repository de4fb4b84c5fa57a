"""The named experiments in sweeps/: every grid point composes and validates, tiny twins stay tiny.

Composing is what the sweeper does before any cell runs, so a grid that would be refused
(``peft=full`` with ``quant=4bit``, an unknown option) fails here without training anything.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, List

import pytest
import yaml

from harness.config.compose import CONF_DIR, register

pytestmark = pytest.mark.integration
SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"
SWEEPS = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
TWINS = ["rank-quant", "methods", "qlora-dora", "targets", "data-scaling", "seeds", "seed-claims"]
"""Real-model experiments that each have a CPU twin NAME-tiny."""


def _grid(name: str) -> List[List[str]]:
    """The sweep's jobs: the grid of hydra.sweeper.params, or each of hydra.sweeper.cells with it (as the sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.harness_sweeper.harness_sweeper import expand, parse_cells

    sweeper = yaml.safe_load((SWEEPS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))["hydra"]["sweeper"]
    parser = OverridesParser.create()
    params = parser.parse_overrides([f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()])
    return expand(params, parse_cells(parser, sweeper.get("cells")))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run.root for every composition (nothing is written there)."""
    return tmp_path_factory.mktemp("runs")


@functools.lru_cache(maxsize=None)
def _cells(name: str, root: Path) -> List[Any]:
    """The validated config of every grid point of sweeps/NAME.yaml (composed once per module)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.sweep.validate import validate

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return [validate(compose(config_name=name, overrides=point + [f"run.root={root}"]))[0] for point in _grid(name)]


@pytest.mark.parametrize("name", SWEEPS)
def test_every_grid_point_validates_into_the_sweeps_own_folder(name, root):
    cells = _cells(name, root)
    assert len(cells) == len(_grid(name)) > 1
    assert {cell.run.sweep for cell in cells} == {name}


@pytest.mark.parametrize("name", TWINS)
def test_real_experiments_say_what_they_need_and_have_a_tiny_twin(name, root):
    text = (SWEEPS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    assert "GPU" in text and "hub" in text and f"-cn {name}" in text
    assert not any(cell.model.tiny for cell in _cells(name, root))
    twin = _cells(f"{name}-tiny", root)
    assert all(cell.model.tiny for cell in twin)


@pytest.mark.parametrize("name", [f"{n}-tiny" for n in TWINS if n != "qlora-dora"])
def test_tiny_twins_stay_small_enough_for_a_laptop_cpu(name, root):
    for cell in _cells(name, root):
        steps = cell.train.max_steps if cell.train.max_steps > 0 else cell.data.max_examples / cell.train.batch_size
        assert 0 < steps <= 60, (name, steps)
