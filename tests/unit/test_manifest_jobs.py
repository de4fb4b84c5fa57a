"""Per-job files: a job writes only its own file, the view merges them, a rerun or a second host is told apart."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from harness.store import manifest as mf
from harness.store.layout import read_manifest, record_outcome, update_manifest, write_manifest

pytestmark = pytest.mark.unit

GRID = {"0": {"cell_id": "a", "evals": {}, "overrides": ["lora.r=8"]},
        "1": {"cell_id": "b", "evals": {}, "overrides": ["lora.r=16"]}}


@pytest.fixture
def sweep(tmp_path):
    folder = tmp_path / "runs" / "s"
    folder.mkdir(parents=True)
    write_manifest(folder, json.loads(json.dumps(GRID)))
    return folder


def _run(folder):
    return json.loads((folder / "jobs" / "run.json").read_text())


def _held_by(folder, holder):
    """Pretend the run is held by ``holder`` (another command) instead of this process."""
    info = _run(folder)
    (folder / "jobs" / "run.json").write_text(json.dumps({**info, "holders": [holder]}))


def test_a_job_writes_only_its_own_file_and_the_view_merges_it(sweep):
    before = (sweep / "manifest.json").read_bytes()
    update_manifest(sweep, "1", {"cell_id": "b2", "evals": {}, "overrides": ["lora.r=16"], "ended": "ok"})
    record_outcome(sweep, "1", {"status": "ok", "host": "h"})
    record_outcome(sweep, "1", {"ended_at": 5.0})
    assert (sweep / "manifest.json").read_bytes() == before  # the grid is never rewritten by a job
    assert sorted(p.name for p in (sweep / "jobs").iterdir()) == ["1.json", "run.json"]
    jobs = read_manifest(sweep)["jobs"]
    assert jobs["0"] == GRID["0"]
    assert jobs["1"]["cell_id"] == "b2" and jobs["1"]["ended"] == "ok"
    assert jobs["1"]["outcome"] == {"status": "ok", "host": "h", "ended_at": 5.0}
    assert (sweep / "b2").is_symlink()  # its own link, made by the job


def test_a_job_never_parses_the_grid(sweep):
    (sweep / "manifest.json").write_text("{ not json")  # a job that read it would fail or rewrite it
    update_manifest(sweep, "0", {"cell_id": "a", "evals": {}, "overrides": []})
    assert (sweep / "manifest.json").read_text() == "{ not json"


def test_a_rerun_ignores_and_removes_the_job_files_of_the_earlier_run(sweep):
    update_manifest(sweep, "0", {**GRID["0"], "ended": "oom"})
    assert mf.oom_jobs(sweep) == {"0": "a"}
    token = _run(sweep)["run"]
    assert write_manifest(sweep, json.loads(json.dumps(GRID))) is False  # this process again: a new command
    assert _run(sweep)["run"] != token
    assert "ended" not in read_manifest(sweep)["jobs"]["0"] and mf.oom_jobs(sweep) == {}
    stale = sweep / "jobs" / "1.json"  # written by a job of the old run after the new one began
    stale.write_text(json.dumps({"run": token, "entry": {**GRID["1"], "ended": "oom"}}))
    assert "ended" not in read_manifest(sweep)["jobs"]["1"]


def test_a_second_host_with_the_same_grid_joins_the_run(sweep):
    update_manifest(sweep, "0", {**GRID["0"], "ended": "ok"})
    token = _run(sweep)["run"]
    _held_by(sweep, {"host": "other-" + socket.gethostname(), "pid": 1})
    assert write_manifest(sweep, json.loads(json.dumps(GRID))) is True
    assert _run(sweep)["run"] == token and len(_run(sweep)["holders"]) == 2
    assert read_manifest(sweep)["jobs"]["0"]["ended"] == "ok"  # the other host's job file is kept


def test_another_grid_or_a_finished_run_or_a_dead_holder_is_a_new_run(sweep):
    token = _run(sweep)["run"]
    _held_by(sweep, {"host": "elsewhere", "pid": 1})
    other = {**json.loads(json.dumps(GRID)), "2": {"cell_id": "c", "evals": {}, "overrides": ["lora.r=32"]}}
    assert write_manifest(sweep, other) is False and _run(sweep)["run"] != token

    write_manifest(sweep, json.loads(json.dumps(GRID)))
    _held_by(sweep, {"host": "elsewhere", "pid": 1})
    mf.finish_run(sweep)
    assert read_manifest(sweep)["finished"] is not None
    token = _run(sweep)["run"]
    assert write_manifest(sweep, json.loads(json.dumps(GRID))) is False and _run(sweep)["run"] != token

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _held_by(sweep, {"host": socket.gethostname(), "pid": int(dead.stdout)})  # crashed on this host
    token = _run(sweep)["run"]
    assert write_manifest(sweep, json.loads(json.dumps(GRID))) is False and _run(sweep)["run"] != token


def test_a_corrupt_job_file_reads_as_absent_with_one_warning(sweep, capsys):
    (sweep / "jobs" / "0.json").write_text('{"run": "x", "entr')
    (sweep / "jobs" / "1.json").write_text(json.dumps({"run": _run(sweep)["run"], "entry": {"evals": {}}}))
    for _ in range(2):
        assert read_manifest(sweep)["jobs"] == GRID
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
    update_manifest(sweep, "0", GRID["0"])  # the job's next write replaces it
    assert read_manifest(sweep)["jobs"]["0"] == GRID["0"]


def test_the_oom_index_follows_the_entry(sweep):
    update_manifest(sweep, "1", {**GRID["1"], "ended": "oom"})
    assert mf.oom_jobs(sweep) == {"1": "b"}
    update_manifest(sweep, "1", {**GRID["1"], "ended": "ok"})  # rerun of the job in the same run
    assert mf.oom_jobs(sweep) == {}
