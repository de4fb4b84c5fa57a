"""The cgroup OOM-kill counter is read for v1 and v2, and a record-less exit is classified without guessing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness.measure.oom import cgroup_paths, classify_exit, oom_kill_count

pytestmark = pytest.mark.unit

V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 4\noom_kill 3\noom_group_kill 0\n"
V1_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"
HYBRID = "9:name=systemd:/\n4:memory:/job/abc\n1:cpu,cpuacct:/\n0::/\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_v2_counter_from_the_unified_path(tmp_path):
    proc = _write(tmp_path / "proc", "0::/user.slice/job-1.scope\n")
    _write(tmp_path / "cg/user.slice/job-1.scope/memory.events", V2_EVENTS)
    assert oom_kill_count(proc, tmp_path / "cg") == 3


def test_v1_counter_from_the_memory_controller_line(tmp_path):
    proc = _write(tmp_path / "proc", HYBRID)
    _write(tmp_path / "cg/memory/job/abc/memory.oom_control", V1_CONTROL)
    assert cgroup_paths(proc) == {"memory": "/job/abc", "v2": "/"}
    assert oom_kill_count(proc, tmp_path / "cg") == 5


def test_v1_memory_controller_wins_on_a_hybrid_host(tmp_path):
    # the v2 tree of a hybrid host has no memory controller; its root must not be read instead
    proc = _write(tmp_path / "proc", HYBRID)
    _write(tmp_path / "cg/memory/job/abc/memory.oom_control", V1_CONTROL)
    _write(tmp_path / "cg/memory.events", "oom_kill 99\n")
    assert oom_kill_count(proc, tmp_path / "cg") == 5


def test_container_mount_without_cgroup_namespace(tmp_path):
    # /proc/self/cgroup names the host path; the container sees its own cgroup as the mount
    proc = _write(tmp_path / "proc", "0::/system.slice/docker-123.scope\n")
    _write(tmp_path / "cg/memory.events", V2_EVENTS)
    assert oom_kill_count(proc, tmp_path / "cg") == 3


def test_comma_joined_v1_controllers(tmp_path):
    proc = _write(tmp_path / "proc", "5:memory,hugetlb:/a\n")
    _write(tmp_path / "cg/memory/a/memory.oom_control", V1_CONTROL)
    assert oom_kill_count(proc, tmp_path / "cg") == 5


@pytest.mark.parametrize(
    "proc_text, files",
    [
        (None, {}),  # no /proc/self/cgroup (macOS)
        ("0::/a\n", {}),  # no memory.events (controller not enabled for this cgroup)
        ("0::/a\n", {"a/memory.events": "low 0\noom 1\n"}),  # kernel before 4.13: no oom_kill line
        ("0::/a\n", {"a/memory.events": "oom_kill many\n"}),  # garbage
        ("4:memory:/a\n", {"memory/a/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"}),
        ("garbage without colons\n", {}),
    ],
)
def test_unreadable_counter_is_none(tmp_path, proc_text, files):
    proc = tmp_path / "proc"
    if proc_text is not None:
        _write(proc, proc_text)
    for name, text in files.items():
        _write(tmp_path / "cg" / name, text)
    assert oom_kill_count(proc, tmp_path / "cg") is None


def test_timeout_wins_over_the_kill_it_caused():
    assert classify_exit(-signal.SIGKILL, True, 600.0, 3, 4) == ("timeout", "killed after run.timeout_s=600 s")
    assert classify_exit(None, True, 2.5, None, None) == ("timeout", "killed after run.timeout_s=2.5 s")


def test_sigkill_with_a_rising_counter_is_oom():
    status, error = classify_exit(-signal.SIGKILL, False, 600.0, 3, 4)
    assert status == "oom"
    assert error == (
        "worker killed by SIGKILL: the kernel OOM killer ran during the cell (cgroup memory.events oom_kill 3 -> 4)"
    )


@pytest.mark.parametrize("before, after", [(3, 3), (None, 4), (3, None), (None, None)])
def test_sigkill_without_evidence_is_crashed_and_names_no_cause(before, after):
    status, error = classify_exit(-signal.SIGKILL, False, 600.0, before, after)
    assert (status, error) == ("crashed", "worker killed by SIGKILL, cause unknown")
    assert "OOM" not in error and "memory" not in error


def test_other_signals_and_exit_codes_are_crashed():
    assert classify_exit(-signal.SIGSEGV, False, 600.0, 0, 1) == ("crashed", "worker killed by SIGSEGV")
    assert classify_exit(-signal.SIGTERM, False, 600.0, None, None) == ("crashed", "worker killed by SIGTERM")
    assert classify_exit(7, False, 600.0, 0, 0) == ("crashed", "worker exited with code 7 without writing a record")
    assert classify_exit(-200, False, 600.0, 0, 0) == ("crashed", "worker killed by signal 200")
    assert classify_exit(None, False, 600.0, 0, 0)[0] == "crashed"
