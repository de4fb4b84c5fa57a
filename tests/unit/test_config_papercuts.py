"""Config validation papercuts: the did-you-mean helper, train.max_steps' sentinel, run.root once resolved."""

from __future__ import annotations

import os

import pytest

from harness.config.hf_names import LR_SCHEDULERS, OPTIMIZERS
from harness.config.keys import unknown_key_message
from harness.config.names import check_run_root_name, closest, did_you_mean
from harness.config.registry import BACKENDS, check_name
from harness.config.train import TrainConfig
from harness.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("typed,choices,meant", [
    ("adamw", OPTIMIZERS, "adamw_torch"),  # the first (commonest) of the names it starts; difflib says grokadamw
    ("ADAMW", OPTIMIZERS, "adamw_torch"),
    ("paged", OPTIMIZERS, "paged_adamw_32bit"),
    ("cosin", LR_SCHEDULERS, "cosine"),
    ("adamw_troch", OPTIMIZERS, "adamw_torch"),  # no prefix match: spelling similarity as before
    ("lrr", ["lr", "batch_size"], "lr"),
    ("zzzz", OPTIMIZERS, None),
    ("", OPTIMIZERS, None),
])
def test_closest_prefers_a_name_the_typed_one_starts(typed, choices, meant):
    assert closest(typed, choices) == meant
    assert did_you_mean(typed, choices) == (f" (did you mean {meant}?)" if meant else "")


def test_every_did_you_mean_uses_prefixes():
    with pytest.raises(ConfigError, match=r"^train.optimizer=adamw: not a transformers optimizer \(did you mean adamw_torch\?\)"):
        TrainConfig(optimizer="adamw")
    assert unknown_key_message("train.max", 4) == "train.max=4: unknown key (did you mean train.max_steps?)"
    with pytest.raises(ConfigError, match=r"^framework.backend=lit: unknown \(did you mean litgpt\?\)"):
        check_name("framework.backend", "lit", BACKENDS)


@pytest.mark.parametrize("steps", [-1, -5])
def test_negative_max_steps_is_refused_naming_the_key(steps):
    with pytest.raises(ConfigError) as info:
        TrainConfig(max_steps=steps)
    assert str(info.value) == (f"train.max_steps={steps}: must be a positive number of optimizer steps, "
                               "or 0 to train for train.epochs")


def test_zero_max_steps_trains_for_epochs():
    assert TrainConfig(max_steps=0, epochs=2.0).max_steps == 0
    with pytest.raises(ConfigError, match=r"^train.epochs=0.0: must be > 0 when train.max_steps=0"):
        TrainConfig(max_steps=0, epochs=0.0)


@pytest.mark.parametrize("root,resolved", [
    ("/tmp/r/../../etc", "/etc"), ("/tmp/r/../../", "/"), ("/tmp/../usr", "/usr"), ("/tmp/r/../../proc/1", "/proc/1"),
])
def test_run_root_is_checked_once_resolved(root, resolved):
    with pytest.raises(ConfigError) as info:
        check_run_root_name(root)
    assert str(info.value).startswith(f"run.root={root}: is a filesystem root or a system folder ({resolved});")


def test_run_root_through_a_link_is_checked_where_it_points(tmp_path):
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(ConfigError, match=r"system folder \(/etc\)"):
        check_run_root_name(str(tmp_path / "etc"))
    with pytest.raises(ConfigError, match=r"system folder \(/etc/harness\)"):
        check_run_root_name(str(tmp_path / "etc" / "harness"))  # does not exist yet: its parent's link still counts


def test_ordinary_run_roots_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for root in ("runs", str(tmp_path / "a" / ".." / "b"), "~/runs-of-mine", "/var/tmp/runs"):
        check_run_root_name(root)
    (tmp_path / "mine").symlink_to(tmp_path / "real")
    check_run_root_name(str(tmp_path / "mine"))
    assert os.path.realpath(tmp_path / "mine") == str(tmp_path / "real")
