"""A run whose loss goes non-finite ends diverged, never ok (``train.lr=1e30`` used to end ok with eval_loss nan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import run_harness

pytestmark = pytest.mark.integration


def _records(root: Path) -> List[Dict]:
    """Every record.json under ``root``, once each: the store's cells and any sweep view linking to them."""
    found = {p.resolve() for p in [*root.glob("**/record.json"), *root.glob("*/*/record.json")]}
    return [json.loads(p.read_text()) for p in sorted(found)]


def test_non_finite_loss_ends_the_cell_diverged(harness_env, tmp_path):
    result = run_harness(["train.lr=1e30", "train.max_steps=6", "train.eval_every=0"], harness_env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    records = _records(tmp_path)
    assert len(records) == 1, output
    record = records[0]
    assert record["status"] == "diverged", (record["status"], record.get("error"))
    error = record.get("error") or ""
    assert "loss" in error and any(word in error for word in ("nan", "inf")), error
    diverged = record["train"].get("diverged")
    assert diverged and diverged["metric"] in ("loss", "eval_loss") and diverged["value"] in ("nan", "inf", "-inf")
    # training stopped at the first non-finite loss instead of running all six steps on garbage
    assert diverged["step"] is not None and diverged["step"] <= record["train"]["optimizer_steps"] <= 6
