"""compose_jobs (a grid composed once per group combination, the rest applied by Hydra's own override code) gives
every point exactly what a full compose + validate gives, and the same one-line errors."""

from __future__ import annotations

import pytest
from hydra.types import RunMode

from harness.config.compose import CONF_DIR, register
from harness.errors import ConfigError
from harness.sweep.preflight import compose, compose_job, compose_jobs, config_loader
from harness.sweep.validate import validate

pytestmark = pytest.mark.unit

JOBS = [
    ["model=tiny-llama", "quant=none", "lora.r=8", "train.lr=0.001"],
    ["model=tiny-mistral", "quant=4bit", "lora.r=16", "train.seed=3"],
    ["model=tiny-mistral", "quant=4bit", "lora.r=4", "train.lr=2e-4", "train.seed=4"],
    ["model=tiny-llama", "peft=full", "train.max_steps=3"],
    ["eval=[perplexity]", "train.warmup_steps=${train.max_steps}", "train.max_steps=7"],  # an interpolation, set later
    ["model=tiny-llama", "+framework.options.flag=1", "lora.target=attention"],  # a + addition into a dict
    ["model=tiny-llama", "~framework.env", "train.lr=1e-3"],  # a ~ deletion (an error: env is null)
    ["model=tiny-llama", "~lora.target", "train.lr=1e-3"],  # a ~ deletion
    ["eval=[perplexity,mmlu]", "lora.r=32"],  # a list value of a group
    ["model=tiny-llama", "data.placeholder_patterns=[a,b]", "lora.r=32"],  # a list value (an error: no such key)
    ["model=tiny-llama", "model.num_layers=2", "hydra.job.name=x"],  # a key inside a group's block; a hydra. key
    ["model=tiny-llama", "+train.lr=1"],  # an error: + of a key that exists
    ["model=tiny-llama", "train.lrr=1"],  # an error: an unknown key
    ["model=tiny-llama", "lora.r=0"],  # an error of the schema's own checks
    ["quant=3bit", "lora.r=8"],  # an error: an unknown group option
]


@pytest.fixture(scope="module")
def hydra(tmp_path_factory):
    register()
    loader = config_loader(CONF_DIR, None)
    root = tmp_path_factory.mktemp("runs")
    master = compose(loader, "config", [f"run.root={root}"], RunMode.MULTIRUN)
    return loader, master


def _full(loader, master, jobs):
    valid, problems = [], []
    for overrides in jobs:
        try:
            typed, plain = validate(compose_job(loader, master, overrides))
            valid.append((list(overrides), typed, plain))
        except ConfigError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    return valid, problems


def test_every_point_is_what_a_full_compose_gives(hydra):
    loader, master = hydra
    fast, fast_problems = compose_jobs(loader, master, JOBS)
    full, full_problems = _full(loader, master, JOBS)
    assert [overrides for overrides, _, _ in fast] == [overrides for overrides, _, _ in full]
    assert len(full) >= 8 and len(full_problems) >= 5  # the grid above exercises both sides
    for (overrides, typed, plain), (_, full_typed, full_plain) in zip(fast, full):
        assert plain == full_plain, overrides
        assert typed == full_typed, overrides
    assert fast_problems == full_problems
    interpolated = next(plain for overrides, _, plain in fast if "train.max_steps=7" in overrides)
    assert interpolated["train"]["warmup_steps"] == 7


def test_a_package_override_is_composed_in_full(hydra):
    loader, master = hydra
    jobs = [["model@model=tiny-mistral", "lora.r=8"]]
    assert compose_jobs(loader, master, jobs)[1] == _full(loader, master, jobs)[1]
    fast, full = compose_jobs(loader, master, jobs)[0], _full(loader, master, jobs)[0]
    assert [p for _, _, p in fast] == [p for _, _, p in full]
