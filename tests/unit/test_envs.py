"""Framework environments: interpreter, missing-environment message, identity from contents not location."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.store.identity import canonical_training_config, environment_fingerprint
from harness.store.venvs import env_problem, env_versions, interpreter

pytestmark = pytest.mark.unit


def fake_env(folder: Path) -> Path:
    """A folder shaped like a venv whose python is this interpreter (same libraries)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "lib" / "python3" / "site-packages").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # a symlink would lose the venv's site-packages
    python.chmod(0o755)
    return folder


def test_no_env_runs_in_this_interpreter() -> None:
    assert interpreter({"name": "hf"}) == Path(sys.executable)
    assert env_problem({"name": "hf"}) is None and env_versions({"name": "hf"}) is None


def test_a_missing_env_names_the_command_that_builds_it(tmp_path: Path) -> None:
    framework = {"name": "unsloth", "env": str(tmp_path / "nope")}
    assert env_problem(framework) == (f"framework=unsloth: its environment {tmp_path / 'nope'} is not built; "
                                      "build it with: make setup-unsloth")
    assert env_problem({**framework, "setup": "make frameworks"}).endswith("build it with: make frameworks")
    assert environment_fingerprint(framework) == f"missing:{tmp_path / 'nope'}"


def test_identity_follows_what_an_env_contains_not_where_it_lives(tmp_path: Path) -> None:
    first, second = fake_env(tmp_path / "a"), fake_env(tmp_path / "b")
    one, two = {"name": "x", "env": str(first)}, {"name": "x", "env": str(second)}
    assert interpreter(one) == first / "bin" / "python" and env_problem(one) is None
    versions = env_versions(one)
    assert versions["python"] == ".".join(map(str, sys.version_info[:3])) and "torch" in versions["libraries"]
    assert environment_fingerprint(one) == environment_fingerprint(two) == environment_fingerprint({"name": "x"})
    config = {"framework": {"name": "x", "env": str(first), "setup": "make it"}, "run": {}, "eval": {}}
    assert "env" not in canonical_training_config(config).get("framework", {})


def _row(framework: str, r: int, **figures) -> dict:
    return {"status": "ok", "framework": framework, "lora_r": r, "trained_tokens": 280, "trainable_params": 1000,
            "first_step_loss": 7.6738, **figures}


def test_fairness_note_names_what_frameworks_did_differently() -> None:
    from harness.measure.fairness import fairness_block, fairness_notes

    same = [_row("hf", 8), _row("unsloth", 8, first_step_loss=7.673805)]
    assert fairness_notes(same, ["framework", "lora_r"]) == []
    assert fairness_notes([_row("hf", 8), _row("hf", 16, trained_tokens=1)], ["lora_r"]) == []  # no framework axis
    (note,) = fairness_notes([_row("hf", 8), _row("unsloth", 8, trainable_params=1200), _row("hf", 16)],
                             ["framework", "lora_r"])
    assert note.startswith("frameworks did not do the same work at lora_r=8 (trainable_params: hf 1000, unsloth 1200)")
    block = fairness_block({"train": {"seed": 3, "optimizer": "adamw_torch"}, "model": {"dtype": "float32"}},
                           {"trained_tokens": 5, "trainable_params": 7, "loss_curve": [[1, 2.5], [2, 2.0]]})
    assert block["first_step_loss"] == 2.5 and block["settings"]["seed"] == 3 and block["dtype"] == "float32"
