"""The cell locks of harness/store/locks.py: which lock a mount gets, and the lease lock across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.store import layout, locks

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

MOUNTS = "\n".join([
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro",
    "30 22 0:40 / /home rw,relatime shared:2 - nfs4 srv:/home rw,vers=4.2,hard,proto=tcp",
    "31 22 0:41 / /scratch rw,relatime - lustre 10.0.0.1@o2ib:/scratch rw,flock,lazystatfs",
    "32 22 0:42 / /work rw,relatime - lustre 10.0.0.1@o2ib:/work rw,localflock,lazystatfs",
    "33 22 0:43 / /project rw,relatime - lustre 10.0.0.1@o2ib:/project rw,lazystatfs",
    "34 22 0:44 / /beegfs rw,relatime - beegfs beegfs_nodev rw,cfgFile=/etc/beegfs/beegfs-client.conf",
    "35 22 0:45 / /gpfs rw,relatime - gpfs gpfs0 rw",
    "36 22 0:46 / /mnt/my\\040drive rw,nosuid - fuse.sshfs me@host:/ rw,user_id=1000",
    "37 31 0:47 / /scratch/tmp rw - tmpfs tmpfs rw,size=100k",
])

TABLE = [
    ("/data/runs", "ext4", "/", "local", "flock"),
    ("/home/me/runs", "nfs4", "/home", "nfs", "flock"),
    ("/scratch/me/runs", "lustre", "/scratch", "lustre-flock", "flock"),
    ("/work/me/runs", "lustre", "/work", "lustre-localflock", "lease"),
    ("/project/runs", "lustre", "/project", "lustre-noflock", "lease"),
    ("/beegfs/runs", "beegfs", "/beegfs", "beegfs", "lease"),
    ("/gpfs/runs", "gpfs", "/gpfs", "gpfs", "flock"),
    ("/mnt/my drive/runs", "fuse.sshfs", "/mnt/my drive", "other", "lease"),
    ("/scratch/tmp/x", "tmpfs", "/scratch/tmp", "local", "flock"),  # the longest mount-point prefix wins
    ("/scratchy/runs", "ext4", "/", "local", "flock"),  # a prefix of the name is not a mount-point prefix
]


@pytest.mark.parametrize("path,fstype,point,kind,auto", TABLE)
def test_mount_table_classifies_each_file_system(path: str, fstype: str, point: str, kind: str, auto: str) -> None:
    found, mount, options = locks.filesystem(Path(path), MOUNTS)
    assert (found, mount) == (fstype, point)
    assert locks.classify(found, options) == kind
    assert locks.choose(Path(path), "auto", MOUNTS) == auto
    assert locks.choose(Path(path), "lease", MOUNTS) == "lease"


@pytest.mark.parametrize("path,fix", [("/work/runs", "mount -o flock"), ("/project/runs", "mount -o flock"),
                                      ("/beegfs/runs", "tuneUseGlobalFileLocks")])
def test_flock_where_it_is_node_local_is_refused_in_one_line(path: str, fix: str) -> None:
    with pytest.raises(ConfigError) as err:
        locks.choose(Path(path), "flock", MOUNTS)
    line = str(err.value)
    assert "\n" not in line and "run.lock=flock" in line and f"run.root={path}" in line and "run.lock=lease" in line
    assert f"mount /{path.split('/')[1]}" in line and fix in line


def test_flock_is_kept_where_it_holds_and_bad_values_are_named() -> None:
    assert locks.choose(Path("/scratch/runs"), "flock", MOUNTS) == "flock"
    assert locks.choose(Path("/x"), "auto", "/nonexistent/mountinfo") == "flock"  # no table: as before
    with pytest.raises(ConfigError, match="run.lock"):
        locks.choose(Path("/x"), "nfs", MOUNTS)
    with pytest.raises(Exception, match="run.lock"):
        from harness.config.run import RunConfig
        RunConfig(lock="nfs")


HOLD = """
import sys, time
from harness.store import locks
lease = locks.LeaseLock(sys.argv[1], float(sys.argv[2]), host=sys.argv[3] or None)
assert lease.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[4]))
lease.release()
print("released", repr(time.time()), flush=True)
"""


def _holder(cell: Path, ttl_s: float, host: str, hold_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(cell), str(ttl_s), host, str(hold_s)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_processes_on_one_host_skip_then_wait(tmp_path: Path) -> None:
    cell = tmp_path / "cells" / "c1"
    cell.mkdir(parents=True)
    proc = _holder(cell, 30.0, "", 1.0)
    said: list = []
    with layout.cell_lock(cell, "skip", said.append, kind="lease") as fd:
        assert fd is None
    assert f"pid {proc.pid} on host" in said[0] and "skipped" in said[0]
    assert f"pid {proc.pid}" in (locks.holder(cell) or "")
    with layout.cell_lock(cell, "wait", said.append, kind="lease") as fd:
        got = time.time()
        assert isinstance(fd, int) and fd >= 0
        subprocess.run([sys.executable, "-c", "pass"], pass_fds=(fd,), check=True)  # run_cell hands it to the worker
        assert f"pid {os.getpid()}" in (locks.holder(cell) or "")
    released = float(proc.stdout.readline().split()[1])
    proc.wait()
    assert "waiting" in said[1] and got >= released
    assert locks.holder(cell) is None and not (cell / locks.LEASE).exists()


def test_a_crashed_holder_on_another_host_is_taken_after_the_lease_never_before(tmp_path: Path) -> None:
    ttl = 1.5
    proc = _holder(tmp_path, ttl, "elsewhere", 60.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    expires = json.loads((tmp_path / locks.LEASE).read_text())["renewed"] + ttl  # its last heartbeat, read after death
    taker, refused = locks.LeaseLock(tmp_path, ttl), 0
    while not taker.acquire():
        refused += 1
        assert time.time() < expires + 2.0, "a stale lease was never taken"
        time.sleep(0.05)
    taken = time.time()
    try:
        assert refused > 0 and taken >= expires
        assert json.loads((tmp_path / locks.LEASE).read_text())["token"] == taker.token
        assert not list(tmp_path.glob(".lease.broken.*"))
    finally:
        taker.release()


def test_a_dead_holder_on_this_host_is_taken_at_once(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 30.0, "", 60.0)
    assert not locks.LeaseLock(tmp_path, 30.0).acquire()  # alive: busy
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert locks.holder(tmp_path) is None
    taker = locks.LeaseLock(tmp_path, 30.0)
    assert taker.acquire()
    taker.release()


def test_renewal_keeps_a_holder_alive_past_three_ttls(tmp_path: Path) -> None:
    ttl = 0.3
    lease = locks.LeaseLock(tmp_path, ttl, host="elsewhere")  # not judged by pid: only the heartbeat keeps it
    assert lease.acquire()
    first = json.loads((tmp_path / locks.LEASE).read_text())["renewed"]
    try:
        end = time.time() + 3.5 * ttl
        while time.time() < end:
            assert not locks.LeaseLock(tmp_path, ttl).acquire()
            time.sleep(ttl / 4)
        assert json.loads((tmp_path / locks.LEASE).read_text())["renewed"] > first and not lease.lost
    finally:
        lease.release()
    assert not (tmp_path / locks.LEASE).exists()


def test_a_lease_renewed_while_being_broken_is_put_back(tmp_path: Path) -> None:
    lease = locks.LeaseLock(tmp_path, 30.0)
    assert lease.acquire()
    try:
        stale_raw = (tmp_path / locks.LEASE).read_bytes()
        os.pwrite(lease.fd, lease._body(time.time()), 0)  # a renewal lands between the taker's read and rename
        assert not locks.LeaseLock(tmp_path, 30.0)._break(stale_raw)
        assert json.loads((tmp_path / locks.LEASE).read_text())["token"] == lease.token
        assert not list(tmp_path.glob(".lease.broken.*"))
    finally:
        lease.release()


def test_holder_sees_a_flock_without_taking_it(tmp_path: Path) -> None:
    assert locks.holder(tmp_path) is None
    with layout.cell_lock(tmp_path, "wait", print) as fd:
        assert fd is not None and f"pid {os.getpid()}" in (locks.holder(tmp_path) or "")
        with layout.cell_lock(tmp_path, "skip", print) as again:
            assert again is None  # the probe released its shared lock at once
    assert locks.holder(tmp_path) is None


def test_run_cell_takes_the_lock_run_lock_names(tmp_path: Path) -> None:
    from harness.sweep.cell import CellPlan, run_cell

    cell = tmp_path / "cells" / "c1"
    cell.mkdir(parents=True)
    other = locks.LeaseLock(cell, 30.0, host="elsewhere")
    assert other.acquire()
    try:
        plan = CellPlan("c1", {}, {"run": {"lock": "lease", "lock_ttl_s": 30.0}}, {}, cell)
        said: list = []
        view, note = run_cell(plan, timeout_s=10.0, force=False, on_busy="skip", say=said.append)
        assert note == "busy" and view["status"] == "skipped" and "on host elsewhere" in said[0]
    finally:
        other.release()


def test_a_holder_whose_lease_was_broken_says_so_and_leaves_the_new_lease(tmp_path: Path) -> None:
    said: list = []
    with layout.cell_lock(tmp_path, "wait", said.append, kind="lease", ttl_s=0.3):
        theirs = {"host": "elsewhere", "pid": 1, "since": time.time(), "renewed": time.time(), "ttl_s": 30, "token": "t"}
        (tmp_path / "new").write_text(json.dumps(theirs))
        os.replace(tmp_path / "new", tmp_path / locks.LEASE)  # a taker's lease where ours was
        time.sleep(0.35)  # past a renewal (every ttl / 3)
    assert any("lease was broken" in line for line in said)
    assert json.loads((tmp_path / locks.LEASE).read_text())["token"] == "t"
