"""Only missing work is launched (harness.sweep.reuse, the sweeper's launch loop), run.cells_at_once, and the
``running`` status of a cell under a live lock (cell_view, the partial-sweep line)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

import hydra_plugins.harness_sweeper.harness_sweeper as sweeper_module
from harness.store.layout import cell_view
from harness.store.partial import partial_line
from harness.store.records import RECORD_NAME, new_record
from harness.sweep import reuse
from harness.sweep.launch import launcher_of, machine_cap
from hydra_plugins.harness_sweeper.harness_sweeper import number_of

pytestmark = pytest.mark.unit

LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def _ok_cell(cell_dir: Path, evals=None) -> None:
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / RECORD_NAME).write_text(json.dumps(new_record(cell_dir.name, "ok", {})))
    for name, key in (evals or {}).items():
        (cell_dir / "evals" / key).mkdir(parents=True)
        (cell_dir / "evals" / key / "result.json").write_text(json.dumps({"evaluator": name, "status": "ok", "rows": []}))


def _hold(cell_dir: Path) -> int:
    """Hold the cell's flock as a cell's parent does (pid and host written into it); the descriptor."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cell_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": 4242, "host": "node-7", "since": 0}).encode(), 0)
    return fd


@pytest.mark.parametrize("run, cores, mem, gpus, cap", [
    ({"cells_at_once": 3}, 64, 512.0, 0, 3),  # the setting wins
    ({}, 16, 512.0, 0, 16),  # cores
    ({}, 16, 5.5, 0, 5),  # memory: 1 GiB per cell
    ({}, 64, 512.0, 4, 4),  # a GPU machine: one cell per GPU
    ({"cells_per_gpu": 2}, 64, 512.0, 4, 8),
    ({}, 8, 0.2, 0, 1),  # at least one
])
def test_machine_cap(run, cores, mem, gpus, cap):
    assert machine_cap(run, cores, environ={}, mem_gib=mem, gpus=gpus) == cap


def test_cells_at_once_caps_joblib_and_submitit_local_not_slurm():
    assert launcher_of({"_target_": JOBLIB, "n_jobs": -1}, 1000, 16, cap=4).at_once == 4
    assert launcher_of({"_target_": LOCAL}, 1000, 16, cap=4).at_once == 4  # never 1,000 at once
    assert launcher_of({"_target_": LOCAL}, 3, 16, cap=4).at_once == 3
    assert launcher_of({"_target_": "x.SlurmLauncher"}, 1000, 16, cap=4).at_once == 1


def test_triage_reuses_ok_cells_and_leaves_busy_ones(tmp_path):
    evals = {"perplexity": "perplexity-1"}
    dirs = [tmp_path / f"c{i}" for i in range(4)]
    _ok_cell(dirs[0], evals)
    _ok_cell(dirs[1])  # trained ok, its evaluation missing: launched
    fd = _hold(dirs[2])
    jobs = [{"cell_id": d.name, "evals": evals} for d in dirs]
    try:
        got = reuse.triage(jobs, dirs, [False] * 4)
        forced = reuse.triage(jobs, dirs, [True, False, False, False])
    finally:
        os.close(fd)
    assert (got.reused, got.launch) == ([0], [1, 3])
    assert got.busy == {2: "pid 4242 on host node-7"}
    assert forced.launch == [0, 1, 3]  # run.force trains a stored cell again
    lines = []
    reuse.say(got, jobs, lines.append)
    assert lines == ["#0 c0: reused (stored ok, no job started)",
                     "#2 c2: busy, held by pid 4242 on host node-7; no job started (the summary shows it as running)"]


def test_a_submitted_slurm_job_still_in_squeue_is_busy(tmp_path):
    asked = []

    def squeue(cmd, **kw):
        asked.append(cmd)
        state = {"11_0": "PENDING\n", "11_1": ""}[cmd[3]]
        return subprocess.CompletedProcess(cmd, 0, stdout=state, stderr="")

    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    outcomes = {0: {"status": "submitted", "slurm_job_id": "11_0"}, 1: {"status": "running", "slurm_job_id": "11_1"},
                2: {"status": "failed", "slurm_job_id": "11_2"}}
    got = reuse.triage([{"cell_id": d.name} for d in dirs], dirs, [False] * 3, outcomes, run=squeue)
    assert got.busy == {0: "SLURM job 11_0 (pending)"} and got.launch == [1, 2]
    assert [cmd[3] for cmd in asked] == ["11_0", "11_1"]  # an ended job is never asked about
    assert asked[0] == ["squeue", "-h", "-j", "11_0", "-o", "%T"]


class _Fake:
    """A launcher that records its launch calls."""

    def __init__(self, **attrs):
        self.calls = []
        self.__dict__.update(attrs)

    def launch(self, job_overrides, initial_job_idx):
        self.calls.append(([number_of(o) for o in job_overrides], initial_job_idx, [o[0] for o in job_overrides]))
        return [SimpleNamespace(return_value=None) for _ in job_overrides]


def _sweeper(tmp_path, target, run, fake):
    # looked up now: tests/unit/test_sweeper_cells.py reloads the module (and Hydra's BasicSweeper) as a sweep does
    sweeper = sweeper_module.ValidatingSweeper(max_batch_size=None)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "launcher": {"_target_": target}}})
    sweeper.launcher, sweeper._run = sweeper_module.GuardedLauncher(fake), run
    return sweeper


def test_submitit_local_gets_the_missing_jobs_in_batches_of_the_cap_under_their_manifest_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))
    fake = _Fake()
    sweeper = _sweeper(tmp_path, LOCAL, {"cells_at_once": 2}, fake)
    sweeper._launch(["lora.r=1,2,3,4,5"], [0, 2, 3, 4])
    assert [(nums, first) for nums, first, _ in fake.calls] == [([0, 2], 0), ([3, 4], 3)]
    assert [values for _, _, values in fake.calls] == [["lora.r=1", "lora.r=3"], ["lora.r=4", "lora.r=5"]]
    assert os.environ["HARNESS_CELLS_AT_ONCE"] == "2" and os.environ["HARNESS_LAUNCHED"] == "4"


def test_joblib_n_jobs_is_capped_and_nothing_missing_launches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))
    fake = _Fake(joblib={"n_jobs": 8})
    sweeper = _sweeper(tmp_path, JOBLIB, {"cells_at_once": 3}, fake)
    sweeper._launch(["lora.r=1,2,3,4,5"], [1, 2, 3, 4])
    assert fake.joblib["n_jobs"] == 3 and fake.calls == [([1, 2, 3, 4], 1, ["lora.r=2", "lora.r=3", "lora.r=4", "lora.r=5"])]
    fake.calls.clear()
    sweeper._launch(["lora.r=1,2"], [])
    assert fake.calls == []


def test_a_cell_without_record_under_a_live_lock_is_running(tmp_path):
    cell = tmp_path / "c1"
    fd = _hold(cell)
    try:
        view = cell_view(cell, {}, "c1")
    finally:
        os.close(fd)
    assert (view["status"], view["error"]) == ("running", "running: pid 4242 on host node-7")
    assert cell_view(cell, {}, "c1")["status"] == "skipped"  # the holder gone: not run


def test_partial_line():
    views = [{"status": "ok"}] * 5 + [{"status": "running", "error": f"running: pid {i} on host h"} for i in range(3)]
    views += [{"status": "skipped", "error": "not run: no record yet"}] * 2
    assert partial_line(views) == ("3 of 10 cells still running (pid 0 on host h, pid 1 on host h, and 1 more), "
                                   "2 not started: the report covers the 5 that ended")
    assert partial_line([{"status": "ok"}, {"status": "failed", "error": "x"}]) is None


def test_on_busy_wait_waits_for_the_holder_without_a_job(tmp_path):
    cell = tmp_path / "c0"
    fd = _hold(cell)
    said, naps = [], []

    def nap(seconds):  # the holder ends during the parent's second look
        naps.append(seconds)
        if len(naps) == 2:
            os.close(fd)

    reuse.wait_for(reuse.Triage(busy={0: "pid 4242 on host node-7"}), [{"cell_id": "c0"}], [cell], line=said.append, sleep=nap)
    assert len(naps) == 2 and said == ["waiting for 1 cell(s) held elsewhere to end (run.on_busy=wait; "
                                       "run.on_busy=skip ends without them)"]


def test_run_finish_slurm_needs_the_slurm_launcher(tmp_path):
    sweeper = _sweeper(tmp_path, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", {}, _Fake())
    job = ([], SimpleNamespace(run=SimpleNamespace(finish="slurm")), {})
    (problem,) = sweeper._finish_problem([job])
    assert problem.startswith("run.finish=slurm: only with hydra/launcher=slurm or submitit_slurm")
    sweeper.config.hydra.launcher._target_ = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert sweeper._finish_problem([job]) == []
