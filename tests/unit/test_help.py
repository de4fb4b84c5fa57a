"""``python -m harness --help`` shows what a newcomer can run: the named sweeps and only usable groups."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.compose import named_sweeps, register
from harness.errors import ConfigError
from harness.sweep.preflight import check_command_line, config_loader, configured_mode

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
CONF_DIR = str(REPO / "conf")
SWEEPS = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))


@pytest.fixture(scope="module")
def help_text() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _section(text: str, title: str) -> str:
    return text.split(f"== {title}", 1)[1].split("\n== ", 1)[0]


def test_help_lists_every_named_sweep_with_its_grid(help_text):
    sweeps = _section(help_text, "Named sweeps")
    assert SWEEPS and "-cn NAME" in sweeps
    for name in SWEEPS:
        assert re.search(rf"^{re.escape(name)} +\S", sweeps, re.MULTILINE), name
    assert "grid: model=tiny-llama,tiny-mistral lora.r=8,16" in sweeps  # demo's
    assert named_sweeps()["demo"]["about"].startswith("The demo sweep")


def test_help_lists_only_groups_that_can_be_chosen(help_text, tmp_path):
    groups = dict(
        line.split(": ", 1) for line in _section(help_text, "Config groups").splitlines() if ": " in line
    )
    assert set(groups) == {"data", "dist", "eval", "framework", "logger", "model", "peft", "quant", "train"}
    register()
    for group, options in groups.items():
        option = options.split(", ")[0]
        value = f"[{option}]" if group == "eval" else option
        check_command_line([f"{group}={value}", f"run.root={tmp_path}", "--cfg", "job"], CONF_DIR)


def test_the_hardware_catalogue_is_not_a_group():
    assert not (REPO / "conf" / "hardware").exists() and (REPO / "hardware" / "h100-80gb.yaml").is_file()
    register()
    with pytest.raises(ConfigError, match=r"^hardware=rtx-4090: hardware is not a config group.*harness.plan --gpu"):
        check_command_line(["hardware=rtx-4090"], CONF_DIR)


@pytest.mark.parametrize("name", SWEEPS)
def test_named_sweeps_are_multiruns_without_dash_m(name, tmp_path):
    """-cn NAME runs the grid whether or not -m is given: a lone default cell never lands in the sweep's folder."""
    from hydra.types import RunMode

    register()
    assert configured_mode(config_loader(CONF_DIR, None), name, []) == RunMode.MULTIRUN
    check_command_line(["-cn", name, "lora.r=8,16", f"run.root={tmp_path}"], CONF_DIR)  # a sweep value, no -m


def test_a_sweep_value_without_a_named_sweep_still_needs_dash_m(tmp_path):
    register()
    with pytest.raises(ConfigError, match=r"^lora.r=8,16: several values are a sweep and need -m"):
        check_command_line(["lora.r=8,16", f"run.root={tmp_path}"], CONF_DIR)


def test_help_shows_each_config_key_with_its_docstring(help_text):
    """conf/config.yaml's help template prints ``${harness_config_keys:}`` (harness/config/help.py), not Hydra's bare
    ``$CONFIG``: a key's value and what it does, on one line."""
    config = _section(help_text, "Config (any key: key=value)")
    assert re.search(r"^  lr: 0\.0002 +# Peak learning rate\.$", config, re.MULTILINE), config[:2000]
    assert re.search(r"^  root: runs +# Folder that holds the cell store", config, re.MULTILINE)
    assert re.search(r"^  cache_dir: \$\{oc\.env:HARNESS_CACHE,'~/\.cache/harness'\} +# Where", config, re.MULTILINE)
