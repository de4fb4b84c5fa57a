"""A launcher's process watches the sweep parent and ends, with its cells' workers, once the parent is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness.sweep import orphans

pytestmark = [pytest.mark.unit, pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")]


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_export_names_this_process_and_only_another_process_watches_it():
    env: dict = {}
    orphans.export(env)
    host, pid, ticks = env[orphans.SWEEP_ENV].split(":")
    assert host == socket.gethostname() and int(pid) == os.getpid() and int(ticks) == orphans.start_ticks(os.getpid())[1]
    assert orphans.parent_of_sweep(env) is None  # this process is the sweep parent itself
    assert orphans.parent_of_sweep({orphans.SWEEP_ENV: "another-host:1:5"}) is None
    assert orphans.parent_of_sweep({}) is None
    assert orphans.parent_of_sweep({orphans.SWEEP_ENV: f"{host}:1:5"}) == (1, 5)


def test_alive_tells_a_dead_a_zombie_and_a_reused_pid():
    proc = _sleeper()
    state, ticks = orphans.start_ticks(proc.pid)
    assert orphans.alive(proc.pid, ticks)
    assert not orphans.alive(proc.pid, ticks + 1)  # the same pid, another process
    proc.kill()
    time.sleep(0.3)
    assert not orphans.alive(proc.pid, ticks)  # dead, not reaped yet: a zombie
    proc.wait()
    assert not orphans.alive(proc.pid, ticks) and orphans.start_ticks(proc.pid) is None


def test_when_the_sweep_parent_dies_the_tracked_workers_are_killed_and_the_process_exits(monkeypatch):
    monkeypatch.setattr(orphans, "POLL_S", 0.05)
    monkeypatch.setattr(orphans, "GRACE_S", 0.2)
    monkeypatch.setattr(orphans, "_WATCHING", None)
    monkeypatch.setattr(orphans, "GONE", None)  # _watch sets it: never leak it into later tests' cells
    parent, worker = _sleeper(), _sleeper()
    exited = threading.Event()
    env = {orphans.SWEEP_ENV: f"{socket.gethostname()}:{parent.pid}:{orphans.start_ticks(parent.pid)[1]}"}
    with orphans.tracked(worker):
        assert orphans.guard(env, exit_now=lambda code: exited.set())
        time.sleep(0.2)
        assert not exited.is_set() and worker.poll() is None  # the parent lives: nothing happens
        parent.kill()
        parent.wait()
        assert exited.wait(5)
    assert worker.wait(5) is not None  # its group was killed
    assert not orphans._RUNNING


def test_guard_starts_nothing_outside_a_sweep(monkeypatch):
    monkeypatch.setattr(orphans, "_WATCHING", None)
    assert orphans.guard({}, exit_now=lambda code: None) is False and orphans._WATCHING is None


def _tagged_sleeper(value: str) -> subprocess.Popen:
    env = dict(os.environ, **{orphans.SWEEP_ENV: value})
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)


def test_the_watchdog_kills_what_the_dead_parent_started_and_nothing_else(monkeypatch):
    monkeypatch.setattr(orphans, "POLL_S", 0.05)
    monkeypatch.setattr(orphans, "GRACE_S", 0.05)
    parent = _sleeper()
    value = f"{socket.gethostname()}:{parent.pid}:{orphans.start_ticks(parent.pid)[1]}"
    mine, other, bystander = _tagged_sleeper(value), _tagged_sleeper(value + "0"), _sleeper()
    read_end, write_end = os.pipe()
    try:
        time.sleep(0.3)  # the children have exec'd: their /proc environ is the one given
        assert orphans.of_sweep(value) == [mine.pid]
        parent.kill()
        parent.wait()
        assert orphans.watchdog(value, read_end) == 1
        assert mine.wait(timeout=5) == -9
        assert other.poll() is None and bystander.poll() is None  # another sweep's, and no sweep's
    finally:
        for proc in (mine, other, bystander):
            proc.kill()
            proc.wait()
        os.close(read_end)
        os.close(write_end)


def test_the_watchdog_told_done_stops_nothing(monkeypatch):
    monkeypatch.setattr(orphans, "POLL_S", 0.05)
    parent = _sleeper()
    value = f"{socket.gethostname()}:{parent.pid}:{orphans.start_ticks(parent.pid)[1]}"
    mine = _tagged_sleeper(value)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"done\n")
        assert orphans.watchdog(value, read_end) == 0
        assert mine.poll() is None
    finally:
        for proc in (mine, parent):
            proc.kill()
            proc.wait()
        os.close(read_end)
        os.close(write_end)
