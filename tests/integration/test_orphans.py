"""``kill -9`` of the sweep parent leaves no process of the sweep alive after 5 s (harness.sweep.orphans).

A process "of the sweep" is any live process whose environment holds the test's tag (every process the sweep
parent starts inherits it: loky's workers and resource tracker, Ray's gcs_server, raylet, agents and workers, the
cells' workers) or, for Ray, whose command line names the sweep's own Ray temp folder (in case a daemon were
started with a cleaned environment). joblib runs in the integration tier; Ray (slow tier) only where it imports,
its own venv: ``make setup-ray`` then ``.venvs/ray/bin/python -m pytest tests/integration/test_orphans.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")]

needs_joblib = pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                                  reason="hydra-joblib-launcher is not installed (pip install -e '.[scale]')")
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="ray / hydra-ray-launcher do not import here: run it in .venvs/ray (make setup-ray; make test-ray)")

CELLS = ["-m", "model=tiny-llama", "lora.r=8,16", "train.max_steps=400", "train.eval_every=0", "run.worker=spawn"]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _of_sweep(tag: str, temp_dir: Optional[str] = None) -> List[int]:
    """Pids of live processes (zombies aside) that hold ``tag`` in their environment or ``temp_dir`` in their
    command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        named = temp_dir is not None and temp_dir.encode() in _cmdline(int(entry.name))
        if state != "Z" and (tag.encode() in environ or named):
            found.append(int(entry.name))
    return found


def _kill_9_leaves_nothing(launcher: List[str], env: Dict[str, str], root: Path, running: List[bytes],
                           temp_dir: Optional[str] = None) -> None:
    """Start a 2-cell sweep, wait for a cell's worker and the launcher's ``running`` processes, ``kill -9`` the parent,
    then assert no process of the sweep is left after 5 s and no cell was recorded other than ``interrupted``."""
    tag = f"HARNESS_ORPHAN_TEST={uuid.uuid4().hex}"
    env = {**env, tag.split("=")[0]: tag.split("=")[1]}
    args = [sys.executable, "-m", "harness", *CELLS, *launcher, f"run.root={root}"]
    parent = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not any(b"harness.worker" in _cmdline(pid) for pid in _of_sweep(tag)):  # a cell's worker is running
            assert parent.poll() is None and time.monotonic() < deadline, "no cell started"
            time.sleep(0.2)
        seen = [_cmdline(pid) for pid in _of_sweep(tag, temp_dir)]
        for name in running:  # the launcher's own processes run the jobs
            assert any(name in line for line in seen), (name, seen)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _of_sweep(tag, temp_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _of_sweep(tag, temp_dir)
        assert not left, [(pid, _cmdline(pid)[:160]) for pid in left]
        ended = [json.loads(path.read_text())["status"] for path in root.glob("cells/*/record.json")]
        assert set(ended) <= {"interrupted"}, ended  # stopped on purpose, never "ok" after training on unwatched
    finally:
        for pid in _of_sweep(tag, temp_dir):  # never leave the orphans of a failed check behind
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@needs_joblib
def test_kill_9_of_the_sweep_parent_under_joblib_leaves_no_process(harness_env, tmp_path):
    """loky's workers and its resource tracker are reparented to init when the sweep parent is killed: they must
    stop, with their cells."""
    _kill_9_leaves_nothing(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], harness_env, tmp_path,
                           [b"loky", b"resource_tracker"])


@pytest.mark.slow
@needs_ray
def test_kill_9_of_the_sweep_parent_under_ray_local_leaves_no_process(harness_env, tmp_path):
    """A local Ray instance (``ray.init()`` with no address, started by the launcher in the sweep parent): its
    daemons, its workers and the cells' workers end with the parent."""
    temp_dir = tempfile.mkdtemp(prefix="hray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = dict(harness_env, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)  # never a cluster this machine happens to know
    launcher = ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
                "+hydra.launcher.ray.init.include_dashboard=false", f"+hydra.launcher.ray.init._temp_dir={temp_dir}"]
    try:
        _kill_9_leaves_nothing(launcher, env, tmp_path, [b"raylet", b"gcs_server"], temp_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
