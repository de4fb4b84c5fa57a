"""Several cells at once through Hydra's own launchers (README "Several cells at once").

joblib (2 at a time) and submitit's local executor give the same records as the sequential
run of the same cells; the verdict and exit code come from the files on disk, since the jobs
run in other processes; Ray (a local instance started here) is in the slow tier.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.conftest import FAST, make_env, records, run_harness, sweep_of

pytestmark = pytest.mark.integration

GRID = ["-m", "model=tiny-llama", "lora.r=8,16", *FAST]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_joblib = pytest.mark.skipif(not _has("hydra_plugins.hydra_joblib_launcher"),
                                  reason="hydra-joblib-launcher is not installed (pip install -e '.[scale]')")
needs_submitit = pytest.mark.skipif(not _has("hydra_plugins.hydra_submitit_launcher"),
                                    reason="hydra-submitit-launcher is not installed (pip install -e '.[scale]')")
needs_ray = pytest.mark.skipif(not (_has("hydra_plugins.hydra_ray_launcher") and _has("ray")),
                               reason="hydra-ray-launcher / ray are not installed (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, cache_dir) -> Path:
    """The grid run one cell at a time (the basic launcher): the records every launcher must reproduce."""
    root = tmp_path_factory.mktemp("sequential")
    result = run_harness(GRID, make_env(cache_dir), root)
    assert result.returncode == 0, result.stdout + result.stderr
    return sweep_of(root)


def comparable(view: Dict[str, Any]) -> Dict[str, Any]:
    """What a cell's result is, as opposed to how fast it came: status, metrics, losses, the fairness block, data."""
    train = view.get("train") or {}
    return {
        "status": view.get("status"),
        "metrics": sorted((row["evaluator"], row["metric"], row.get("value")) for row in view.get("metrics", [])),
        "loss_curve": train.get("loss_curve"),
        "trained_tokens": train.get("trained_tokens"),
        "trainable_params": train.get("trainable_params"),
        "fairness": view.get("fairness"),
        "data": (view.get("data") or {}).get("train"),
    }


def assert_same_records(sweep: Path, reference: Path) -> Dict[str, dict]:
    got, want = records(sweep), records(reference)
    assert set(got) == set(want) and got, (sorted(got), sorted(want))
    for cid in want:
        assert comparable(got[cid]) == comparable(want[cid]), cid
    return got


def _intervals(sweep: Path) -> Dict[str, tuple]:
    """cell id -> (worker spawn, end) in epoch seconds, from each cell's progress.json."""
    out = {}
    for cid in records(sweep):
        state = json.loads((sweep / cid / "progress.json").read_text())
        out[cid] = (state["started"], state["started"] + state["wall_s"])
    return out


@needs_joblib
def test_joblib_two_at_once_gives_the_sequential_records(sequential, harness_env, tmp_path):
    result = run_harness([*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 cells ok" in result.stdout
    sweep = sweep_of(tmp_path)
    got = assert_same_records(sweep, sequential)
    (a0, a1), (b0, b1) = _intervals(sweep).values()
    assert a0 < b1 and b0 < a1, "the two workers ran at the same time"
    cores = len(os.sched_getaffinity(0))
    for view in got.values():
        launch = view["environment"]["launch"]
        assert launch["launcher"] == "joblib" and launch["n_jobs"] == 2 and launch["cells_at_once"] == 2
        assert launch["threads_per_cell"] == max(1, cores // 2) == view["environment"]["torch_threads"]
    # the summary and the report are the parent's, written once, after both cells
    assert result.stdout.count("\nsummary: ") == 1 and (sweep / "report.html").is_file()
    assert "ran up to 2 at once (joblib" in (sweep / "summary.md").read_text()
    # resume: the same command again reuses both cells, still through joblib
    again = run_harness([*GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], harness_env, tmp_path)
    assert again.returncode == 0 and again.stdout.count("reused (stored ok, no job started)") == 2, again.stdout + again.stderr


@needs_joblib
def test_joblib_exit_code_and_verdict_come_from_disk(harness_env, tmp_path):
    """The jobs run in joblib's worker processes: the parent's count of bad cells is read from the records."""
    args = ["-m", "framework.backend=tests.fault_backend:FaultBackend", "+framework.options.fault=raise,exit", *FAST,
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = run_harness(args, harness_env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0/2 cells ok, 2 not ok" in result.stdout
    assert {v["status"] for v in records(sweep_of(tmp_path)).values()} == {"failed"}


@needs_submitit
def test_submitit_local_runs_two_cells_to_ok_records(sequential, harness_env, tmp_path):
    result = run_harness([*GRID, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 cells ok" in result.stdout
    sweep = sweep_of(tmp_path)
    got = assert_same_records(sweep, sequential)
    assert {v["environment"]["launch"]["launcher"] for v in got.values()} == {"submitit_local"}
    assert list((sweep / ".submitit").iterdir()), "submitit kept its job folders in the sweep folder"


# ---- slow tier -------------------------------------------------------------------------------------------------------

README_GRID = ["-m", "model=tiny-llama,tiny-qwen", "lora.r=8,16", *FAST]


@pytest.mark.slow
@needs_joblib
def test_readme_command_four_cells_two_at_once(harness_env, tmp_path):
    """The README's command: 4/4 ok, the console shows two running cells at once, the records equal a sequential run's."""
    par = run_harness([*README_GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], harness_env, tmp_path / "par")
    assert par.returncode == 0, par.stdout + par.stderr
    assert "4/4 cells ok" in par.stdout
    running, most = set(), 0
    for line in par.stdout.splitlines():
        found = re.match(r"#\d+ (\S+): (training|ok|failed)", line)
        if found:
            (running.add if found.group(2) == "training" else running.discard)(found.group(1))
            most = max(most, len(running))
    assert most == 2, par.stdout
    seq = run_harness(README_GRID, harness_env, tmp_path / "seq")
    assert seq.returncode == 0, seq.stdout + seq.stderr
    assert_same_records(sweep_of(tmp_path / "par"), sweep_of(tmp_path / "seq"))


@pytest.mark.slow
@needs_ray
def test_ray_local_instance_runs_two_cells(sequential, harness_env, tmp_path):
    """A local Ray instance (what ``ray.init()`` starts when given no address; its processes end with the command),
    2 CPUs, one per task: both cells at once, the records of the sequential run."""
    env = dict(harness_env, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)  # never a cluster this machine happens to know
    args = [*GRID, "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false"]
    result = run_harness(args, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 cells ok" in result.stdout and "Started a local Ray instance" in result.stdout + result.stderr
    got = assert_same_records(sweep_of(tmp_path), sequential)
    for view in got.values():
        launch = view["environment"]["launch"]
        assert launch["launcher"] == "ray" and launch["cells_at_once"] == 2 and launch["threads_per_cell"] == 1


# kill -9 of the sweep parent under joblib and Ray local: tests/integration/test_orphans.py


# ---- only missing work is launched (harness.sweep.reuse) ------------------------------------------------------------

def _copy_store(sweep: Path, dest: Path) -> Path:
    """A copy of a finished sweep's run root (cells and links), without the jobs' .hydra folders."""
    import shutil

    shutil.copytree(sweep.parent, dest, symlinks=True)
    shutil.rmtree(dest / sweep.name / ".hydra-jobs", ignore_errors=True)
    return dest / sweep.name


def _rerun_starts_no_job(sequential: Path, env: Dict[str, str], root: Path, launcher: str) -> None:
    sweep = _copy_store(sequential, root)
    result = run_harness([*GRID, f"hydra/launcher={launcher}"], env, root)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert out.count("reused (stored ok, no job started)") == 2 and "2/2 cells ok" in result.stdout, out
    # no job ran: a job would print its own line, write its .hydra folder and (submitit) its job folder
    assert "reused stored cell" not in out and "training" not in out, out
    assert not (sweep / ".hydra-jobs").exists() and not (sweep / ".submitit").exists()


@needs_submitit
def test_a_finished_sweep_rerun_under_submitit_local_starts_no_job(sequential, harness_env, tmp_path):
    _rerun_starts_no_job(sequential, harness_env, tmp_path / "root", "submitit_local")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_finished_sweep_rerun_starts_no_job(sequential, harness_env, tmp_path, launcher):
    if launcher == "joblib" and not _has("hydra_plugins.hydra_joblib_launcher"):
        pytest.skip("hydra-joblib-launcher is not installed")
    _rerun_starts_no_job(sequential, harness_env, tmp_path / "root", launcher)


@needs_submitit
def test_a_cell_held_elsewhere_is_left_to_its_holder_and_shown_running(sequential, harness_env, tmp_path):
    """One cell's record gone and its lock held (another host training it): the rerun launches nothing, names the
    holder, and exits 1 (running is not ok); harness.report covers the cell that ended and says what still runs."""
    import fcntl
    import subprocess
    import sys

    from tests.conftest import REPO

    sweep = _copy_store(sequential, tmp_path / "root")
    busy = sorted(records(sweep))[1]
    (sweep / busy / "record.json").unlink()
    fd = os.open(sweep / busy / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": 4242, "host": "node-7", "since": 0}).encode(), 0)
        result = run_harness([*GRID, "hydra/launcher=submitit_local", "run.on_busy=skip"], harness_env, tmp_path / "root")
        out = result.stdout + result.stderr
        assert result.returncode == 1, out
        assert f"{busy}: busy, held by pid 4242 on host node-7; no job started" in out, out
        assert "1/2 cells ok" in out and not (sweep / ".submitit").exists(), out
        assert "1 of 2 cells still running (pid 4242 on host node-7), 0 not started" in out, out
        report = subprocess.run([sys.executable, "-m", "harness.report", str(sweep)], cwd=REPO, env=harness_env,
                                capture_output=True, text=True, timeout=300)
        assert report.returncode == 0, report.stdout + report.stderr
        assert "1 of 2 cells still running (pid 4242 on host node-7), 0 not started: the report covers the 1 that ended" \
            in report.stdout, report.stdout
        assert "running" in (sweep / "report.md").read_text()
    finally:
        os.close(fd)


FAKE_SBATCH = """#!/bin/bash
# fake sbatch: record the arguments and the submitted script; print a job id (900, 901, ...)
n=$(( $(ls "$FAKE_SLURM_LOG".* 2>/dev/null | wc -l) + 900 ))
{ printf '%s\\n' "$@"; for a in "$@"; do [ -f "$a" ] && cat "$a"; done; } > "$FAKE_SLURM_LOG.$n"
echo "Submitted batch job $n"
"""


@needs_submitit
def test_run_finish_slurm_submits_the_array_then_an_afterany_finish_job_and_does_not_wait(harness_env, tmp_path):
    """A fake sbatch on PATH (submitit also wants an srun): the cells' array, then the finish job that depends on it
    (afterany) and runs harness.sweep.finish; the parent exits 0 at once; a rerun while squeue still lists the jobs
    submits nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"sbatch": FAKE_SBATCH, "srun": "#!/bin/bash\nexit 0\n", "squeue": "#!/bin/bash\necho PENDING\n"}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "sbatch"
    env = {**harness_env, "PATH": f"{bin_dir}{os.pathsep}{harness_env['PATH']}", "FAKE_SLURM_LOG": str(log)}
    args = [*GRID, "hydra/launcher=slurm", "run.finish=slurm"]
    result = run_harness(args, env, tmp_path / "root")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "submitted 2 cell(s) as SLURM array 900 and the finish job 901" in out and "cells ok" not in out, out
    array, finish = (tmp_path / "sbatch.900").read_text(), (tmp_path / "sbatch.901").read_text().splitlines()
    assert "#SBATCH --array=0-1" in array
    assert "--dependency=afterany:900" in finish and finish[finish.index("--wrap") + 1].endswith(
        f"-m harness.sweep.finish {sweep_of(tmp_path / 'root')}"), finish
    outcomes = [json.loads(p.read_text())["outcome"] for p in sorted((sweep_of(tmp_path / "root") / "jobs").glob("[0-9]*.json"))]
    assert [o["slurm_job_id"] for o in outcomes] == ["900_0", "900_1"] and {o["status"] for o in outcomes} == {"submitted"}
    again = run_harness([*args, "run.on_busy=skip"], env, tmp_path / "root")
    assert again.stdout.count("busy, held by SLURM job 900_") == 2, again.stdout + again.stderr
    assert not (tmp_path / "sbatch.902").exists()  # nothing submitted twice


@pytest.mark.slow
def test_two_hosts_one_shared_root_train_each_cell_once_and_one_report_covers_all(harness_env, tmp_path):
    """README "Several machines without SLURM": the same command from two working directories (two hosts) on one
    shared run.root with run.on_busy=skip; every cell trains exactly once, and the report afterwards covers all 4 ok."""
    import subprocess
    import sys

    root = tmp_path / "shared"
    args = [sys.executable, "-m", "harness", "-m", "model=tiny-llama,tiny-qwen", "lora.r=8,16", *FAST,
            "run.on_busy=skip", f"run.root={root}"]
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    for host in hosts:
        host.mkdir()
    procs = [subprocess.Popen(args, cwd=host, env=harness_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for host in hosts]
    outs = [proc.communicate(timeout=900)[0] for proc in procs]
    text = "".join(outs)
    cells = sorted(p.name for p in (root / "cells").iterdir())
    assert len(cells) == 4, text
    for cid in cells:
        assert text.count(f"{cid}: training  (log:") == 1, text  # one attempt per cell, across both hosts
    assert 0 in [proc.returncode for proc in procs], text  # the last to end saw every cell ok
    sweep = sweep_of(root)
    from tests.conftest import REPO

    report = subprocess.run([sys.executable, "-m", "harness.report", str(sweep)], cwd=REPO, env=harness_env,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0 and "still running" not in report.stdout, report.stdout + report.stderr
    assert {v["status"] for v in records(sweep).values()} == {"ok"} and len(records(sweep)) == 4
