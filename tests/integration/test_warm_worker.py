"""Warm cells end to end: a quiet template forks them, steps aside when stale, and its death is recorded.

The fault tests elsewhere (tests/integration/test_sweep.py: kill -9 of a cell, timeout, SIGINT of the parent;
test_memcap_frontier.py: host OOM under the memory cap) run warm as well: ``run.worker=auto`` forks CPU cells.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store import warm as shared
from harness.sweep import warm
from tests.conftest import FAST, REPO, records, run_harness, sweep_of

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not warm.supported(), reason="no fork or SCM_RIGHTS here")]
HANG = ["framework.backend=tests.fault_backend:FaultBackend", "+framework.options.fault=hang"]


def _template(env):
    """The template that forks this test's cells (the parent adds PYTHONUNBUFFERED to the cell's environment)."""
    return warm.status(Path(sys.executable), dict(env, PYTHONUNBUFFERED="1"), str(REPO))


def _gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_warm_cell_is_forked_from_a_quiet_template(harness_env, tmp_path):
    result = run_harness(FAST, harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (record,) = records(sweep_of(tmp_path)).values()
    assert record["status"] == "ok" and record["environment"]["worker"] == "warm"
    state = _template(harness_env)
    assert state is not None, "the template outlives the command for the next one"
    # fork-safe: one thread, CUDA untouched, the training stack already imported, no child left running
    assert state["threads"] == 1 and state["cuda_initialized"] is False and state["children"] == []
    assert state["modules"] > 1000 and state["fingerprint"] == shared.fingerprint()


def test_a_stale_or_crashed_template_is_replaced_and_a_cell_it_took_down_is_recorded(harness_env, tmp_path):
    env = dict(harness_env, WARM_TEST="replace")  # a template of its own: the session's shared one lives on
    assert run_harness(FAST, env, tmp_path / "a").returncode == 0
    first = _template(env)["pid"]
    child_env = dict(env, PYTHONUNBUFFERED="1")
    key = shared.template_key(sys.executable, child_env, str(REPO))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a parent that sees other code than it runs
        sock.connect(str(shared.socket_path(key)))
        stale = {**shared.fingerprint(), "harness_source": "edited since the template started"}
        shared.send(sock, {"op": "fork", "fingerprint": stale, "env": child_env, "cwd": str(REPO), "cell_dir": str(tmp_path)})
        reply, _ = shared.Channel(sock).receive(timeout=30)
    assert reply == {"stale": "harness source changed"}
    assert _gone(first), "a stale template with no running cell exits"

    # the next cell gets a fresh template; killed under it, the cell is recorded, not lost
    proc = subprocess.Popen([sys.executable, "-m", "harness", *HANG, *FAST, f"run.root={tmp_path / 'hang'}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (_template(env) or {}).get("children"):
        time.sleep(0.2)
    state = _template(env)
    assert state["pid"] != first
    (cell,) = state["children"]
    os.kill(state["pid"], signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    (record,) = records(sweep_of(tmp_path / "hang")).values()
    assert record["status"] == "crashed" and "warm template" in record["error"], record["error"]
    assert _gone(cell), "the cell died with its template: nothing runs on unsupervised"
    result = run_harness(FAST, env, tmp_path / "after")
    assert result.returncode == 0, result.stdout + result.stderr
    (after,) = records(sweep_of(tmp_path / "after")).values()
    assert after["environment"]["worker"] == "warm" and _template(env)["pid"] not in (first, state["pid"])


def test_warm_and_spawned_cells_report_the_same_peak_rss(harness_env, tmp_path):
    peaks = {}
    for mode in ("spawn", "warm"):
        result = run_harness([*FAST, f"run.worker={mode}", "run.force=true", f"run.sweep={mode}"], harness_env, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        (record,) = records(tmp_path / mode).values()
        assert record["environment"]["worker"] == mode
        peaks[mode] = record["memory"]["train_peak"]["host_peak_rss_mib"]
        assert record["memory"]["train_peak"]["counter"] == "host_peak_rss"
    # fork does not copy file-backed page tables; the child maps the template's resident library pages again,
    # so its RSS counts what a spawned worker's import touched (tests/bench/test_cell_overhead.py: ABBA, spread)
    assert abs(peaks["warm"] - peaks["spawn"]) <= 0.03 * peaks["spawn"], json.dumps(peaks)
