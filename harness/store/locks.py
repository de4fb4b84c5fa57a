"""Which lock a cell gets under ``run.root``, and the lease lock for file systems where ``flock`` is unsafe.

``flock`` is only as good as the mount: across nodes on NFS (but a crashed node's lock lasts until the
server's lease ends, ~90 s), GPFS and Lustre mounted ``-o flock``; node-local on Lustre ``-o localflock``
and on BeeGFS by default (two nodes could train one cell); an error on Lustre without either option.
There a cell gets a lease instead: ``<cell>/.lease`` created with ``O_CREAT|O_EXCL``, holding host, pid,
the pid's start time and a heartbeat its holder renews every ``ttl_s / 3``; others break it only once
``renewed + ttl_s`` has passed, or at once when the holder ran on this host and its process is gone.
Stdlib only: the parent imports it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from harness.errors import ConfigError

LEASE = ".lease"
FLOCK = ".lock"  # harness.store.layout.LOCK
_SIZE = 512  # a lease is rewritten in place at this fixed size, so a reader never sees a truncated file
LOCAL = ("ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "ramfs", "overlay", "jfs", "reiserfs", "vfat")
FLOCK_SAFE = ("local", "gpfs", "nfs", "lustre-flock")
"""Kinds where flock holds across every process that can see the folder (run.lock=auto picks flock)."""


def this_host() -> str:
    """This machine's name as written into leases (tests replace it to play another host)."""
    return socket.gethostname()


def _unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (``\\040`` for a space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts(text: str) -> Tuple[Tuple[str, str, str], ...]:
    """(mount point, fs type, mount + super options) of each mountinfo line."""
    rows = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        options = fields[5] + ("," + tail[2] if len(tail) > 2 else "")
        rows.append((_unescape(fields[4]), tail[0], options))
    return tuple(rows)


@lru_cache(maxsize=64)
def _mountinfo(source: str) -> Tuple[Tuple[str, str, str], ...]:
    try:
        return _mounts(Path(source).read_text())
    except OSError:  # not Linux: nothing known about the mount
        return ()


def filesystem(path: Path, mountinfo: str = "/proc/self/mountinfo") -> Tuple[str, str, str]:
    """(fs type, mount point, options) of the mount holding ``path`` (which need not exist yet): the longest
    mount-point prefix of its real path. ``mountinfo`` is a file, or mountinfo text itself (a line with " - ").
    ("unknown", "/", "") when the table cannot be read."""
    rows = _mounts(mountinfo) if " - " in mountinfo else _mountinfo(mountinfo)
    real = os.path.realpath(path)
    best: Optional[Tuple[str, str, str]] = None
    for point, fstype, options in rows:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # later lines overmount earlier ones
            best = (point, fstype, options)
    return (best[1], best[0], best[2]) if best else ("unknown", "/", "")


def classify(fstype: str, options: str) -> str:
    """local, nfs, lustre-flock, lustre-localflock, lustre-noflock, beegfs, gpfs or other (FUSE, CIFS, ...)."""
    words = set(options.split(","))
    if fstype in LOCAL:
        return "local"
    if fstype.startswith("nfs"):
        return "nfs"
    if fstype == "lustre":
        return "lustre-flock" if "flock" in words else "lustre-localflock" if "localflock" in words else "lustre-noflock"
    if fstype in ("beegfs", "gpfs"):
        return fstype
    return "other"


_WHY = {
    "lustre-localflock": ("lustre -o localflock: flock is node-local there", "remount with `mount -o flock`"),
    "lustre-noflock": ("lustre without -o flock: flock fails there", "remount with `mount -o flock`"),
    "beegfs": ("beegfs: flock is node-local unless the client sets tuneUseGlobalFileLocks=true",
               "set tuneUseGlobalFileLocks=true in beegfs-client.conf"),
}


def choose(run_root: Path, requested: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The cell lock to use under ``run_root`` for ``run.lock`` = auto, flock or lease: "flock" or "lease".

    auto: flock where it holds across nodes (local, GPFS, NFS, Lustre -o flock; also when the mount table
    cannot be read), a lease elsewhere. flock where it is node-local or fails raises ConfigError (one line)."""
    if requested == "lease":
        return "lease"
    fstype, point, options = filesystem(run_root, mountinfo)
    kind = classify(fstype, options)
    if requested == "flock":
        if kind in _WHY:
            why, fix = _WHY[kind]
            raise ConfigError(f"run.lock=flock is unsafe under run.root={run_root} (mount {point}, {why}): "
                              f"{fix} or set run.lock=lease")
        return "flock"
    if requested != "auto":
        raise ConfigError(f"run.lock: {requested!r} must be one of auto, flock, lease")
    return "flock" if kind in FLOCK_SAFE or fstype == "unknown" else "lease"


def start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # fields after "(comm)" start at field 3


def _alive(pid: int, ticks: Optional[int]) -> bool:
    """Whether that process (not a later one with its pid) still runs on this host."""
    if not os.path.exists("/proc/self/stat"):  # no /proc (macOS): a signal 0 says whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return pid > 0
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


def _read(path: Path) -> Tuple[Optional[bytes], Optional[Dict[str, Any]]]:
    """(raw bytes, parsed lease) of a lease file; (None, None) when there is none, (bytes, None) if unparsable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    try:
        return raw, json.loads(raw.decode().strip() or "null")
    except ValueError:
        return raw, None


def stale(info: Optional[Dict[str, Any]], path: Path, host: str, now: Optional[float] = None) -> bool:
    """Whether a lease may be broken: past ``renewed + ttl_s``, or its holder was on ``host`` and is dead.
    An unreadable lease (a holder caught between create and first write) counts from the file's mtime."""
    now = time.time() if now is None else now
    if not isinstance(info, dict):
        try:
            return now > path.stat().st_mtime + 60.0
        except FileNotFoundError:
            return True
    if info.get("host") == host and not _alive(int(info.get("pid", -1)), info.get("pid_start")):
        return True
    return now > float(info.get("renewed", 0)) + float(info.get("ttl_s", 60.0))


def describe(info: Dict[str, Any], now: Optional[float] = None) -> str:
    """One line about a lease's holder: "pid 123 on host h since 09:12:03, lease renewed 3 s ago"."""
    now = time.time() if now is None else now
    since = time.strftime("%H:%M:%S", time.localtime(float(info.get("since", now))))
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {since}, "
            f"lease renewed {now - float(info.get('renewed', now)):.0f} s ago")


class LeaseLock:
    """The lease on ``cell_dir``; ``acquire()`` tries once, a daemon thread renews while it is held."""

    def __init__(self, cell_dir: Path, ttl_s: float = 60.0, host: Optional[str] = None) -> None:
        self.path = Path(cell_dir) / LEASE
        self.ttl_s = float(ttl_s)
        self.host = host or this_host()
        self.fd: Optional[int] = None
        self.token = ""
        self.lost = False  # set by the renewer when someone broke the lease (it was not renewed in time)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _body(self, since: float) -> bytes:
        info = {"host": self.host, "pid": os.getpid(), "pid_start": start_ticks(os.getpid()), "since": since,
                "renewed": time.time(), "ttl_s": self.ttl_s, "token": self.token}
        return json.dumps(info).encode().ljust(_SIZE)

    def acquire(self) -> bool:
        """Take the lease if it is free or stale; False when a live holder has it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raw, info = _read(self.path)
            if raw is None:
                return self.acquire()  # released between our create and read: try again
            if not stale(info, self.path, self.host) or not self._break(raw):
                return False
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # another taker won the race
                return False
        self.fd, self.token, since = fd, uuid.uuid4().hex, time.time()
        os.pwrite(fd, self._body(since), 0)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, args=(since,), daemon=True, name=f"lease {self.path}")
        self._thread.start()
        return True

    def _break(self, raw: bytes) -> bool:
        """Move a stale lease aside; False (and put back) when what moved is not the stale lease we read."""
        aside = self.path.with_name(f"{LEASE}.broken.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # gone already: the O_EXCL create decides
        if aside.read_bytes() == raw:
            aside.unlink()
            return True
        try:  # renewed or replaced meanwhile: put it back unless a new lease took the name (link never clobbers)
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False

    def _renew(self, since: float) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            raw, info = _read(self.path)
            if raw is None or info is None:
                continue  # moved aside by a taker that will find it renewed, or a new lease mid-write: look again
            if info.get("token") != self.token:
                self.lost = True  # broken by another process: stop writing into its file
                return
            os.pwrite(self.fd, self._body(since), 0)  # in place: the name never goes missing

    def release(self) -> None:
        """Stop renewing and remove the lease (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.fd is None:
            return
        _, info = _read(self.path)
        if isinstance(info, dict) and info.get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


def holder(cell_dir: Path) -> Optional[str]:
    """One line about the live holder of the cell's lock (flock or lease), None when free. Never blocks or keeps it."""
    lock_file = Path(cell_dir) / FLOCK
    try:  # the shared probe lasts microseconds; a taker meeting it just then sees the cell busy once
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        fd = None
    if fd is not None:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                _, info = _read(lock_file)
                info = info if isinstance(info, dict) else {}
                return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
            except OSError:  # flock unsupported on this mount: only the lease can tell
                pass
        finally:
            os.close(fd)
    lease = Path(cell_dir) / LEASE
    _, info = _read(lease)
    if info is None and not lease.exists():
        return None
    if stale(info, lease, this_host()):
        return None
    return describe(info) if isinstance(info, dict) else "a lease being written"
