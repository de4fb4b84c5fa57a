"""Several cells at once through Hydra's own launchers (README "Several cells at once").

joblib (2 at a time) and submitit's local executor give the same records as the sequential
run of the same cells; the verdict and exit code come from the files on disk, since the jobs
run in other processes; Ray (a local instance started here) is in the slow tier.
"""

from __future__ import annotations

import contextlib
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
    assert again.returncode == 0 and again.stdout.count("reused stored cell") == 2, again.stdout + again.stderr


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


def _tagged(tag: str) -> list:
    """Pids of live processes whose environment holds ``tag`` (every process a sweep started inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if tag.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


@needs_joblib
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_of_the_sweep_parent_under_joblib_leaves_no_process(harness_env, tmp_path):
    """loky's workers are reparented to init when the sweep parent is killed: they must stop, with their cells."""
    import signal
    import subprocess
    import sys
    import time
    import uuid

    from tests.conftest import REPO

    tag = f"HARNESS_ORPHAN_TEST={uuid.uuid4().hex}"
    env = {**harness_env, tag.split("=")[0]: tag.split("=")[1]}
    args = [sys.executable, "-m", "harness", "-m", "model=tiny-llama", "lora.r=8,16", "train.max_steps=400",
            "train.eval_every=0", "run.worker=spawn", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"run.root={tmp_path}"]
    parent = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(b"harness.worker" in _cmdline(pid) for pid in _tagged(tag)):  # a cell's worker is running
            assert parent.poll() is None and time.monotonic() < deadline, "no cell started"
            time.sleep(0.2)
        assert any(b"loky" in _cmdline(pid) for pid in _tagged(tag))  # and joblib's workers run the jobs
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _tagged(tag)
        assert not left, [(pid, _cmdline(pid)[:120]) for pid in left]
        ended = [json.loads(path.read_text())["status"] for path in tmp_path.glob("cells/*/record.json")]
        assert set(ended) <= {"interrupted"}, ended  # stopped on purpose, never "ok" after training on unwatched
    finally:
        for pid in _tagged(tag):  # never leave the orphans of a failed check behind
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
