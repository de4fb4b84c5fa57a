"""Ctrl-C: the running cell reads ``interrupted`` (never "skipped, not run"), a never-started cell keeps its axis values."""

from __future__ import annotations

import dataclasses

import pytest

from harness.config.schema import HarnessConfig
from harness.files import read_json
from harness.report.summary import summarise
from harness.store import identity, layout, progress
from harness.store.records import RECORD_NAME
from harness.sweep import cell
from harness.sweep.job import manifest_entry

pytestmark = pytest.mark.unit


@pytest.fixture
def plans(monkeypatch, tmp_path):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    out = []
    for r in (4, 8):
        config = dataclasses.asdict(HarnessConfig())
        config["lora"]["r"] = r
        out.append(cell.plan_cell(config, tmp_path))
    sweep = tmp_path / "s"
    sweep.mkdir()
    layout.write_manifest(sweep, {str(i): manifest_entry(plan, [f"lora.r={plan.config['lora']['r']}"]) for i, plan in enumerate(out)})
    return sweep, out


def test_ctrl_c_leaves_the_running_cell_interrupted_and_the_next_one_keeps_its_axis(plans, monkeypatch):
    sweep, (first, second) = plans

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cell, "spawn_worker", stopped)
    first.cell_dir.mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        cell._attempt(first, True, {}, 60.0, -1)
    record = read_json(first.cell_dir / RECORD_NAME)
    assert record["status"] == "interrupted" and "Ctrl-C" in record["error"]
    assert read_json(first.cell_dir / progress.PROGRESS_NAME)["phase"] == progress.DONE  # not "running" forever
    rows = {row["cell"]: row for row in summarise(sweep).rows}
    assert rows[first.cell_id]["status"] == "interrupted"
    assert rows[second.cell_id]["status"] == "skipped"  # never started
    assert rows[second.cell_id]["lora_r"] == 8 and rows[first.cell_id]["lora_r"] == 4



def test_a_cell_stopped_because_the_sweep_parent_died_is_interrupted(plans, monkeypatch):
    from harness.sweep import orphans

    _, (first, _) = plans
    first.cell_dir.mkdir(parents=True)
    outcome = {"code": -15, "timed_out": False, "timeout_s": 60.0, "wall": 2.0, "oom": (None, None), "watch": None}
    cell._collect(first, "a1", True, {}, outcome)
    assert read_json(first.cell_dir / RECORD_NAME)["status"] == "crashed"  # a SIGTERM from elsewhere
    monkeypatch.setattr(orphans, "GONE", 4242)
    cell._collect(first, "a2", True, {}, outcome)
    record = read_json(first.cell_dir / RECORD_NAME)
    assert record["status"] == "interrupted" and "sweep parent (pid 4242) died" in record["error"]
