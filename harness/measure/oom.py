"""Why a worker died without a record: the kernel OOM killer, another signal, or an exit code.

A worker the kernel OOM killer takes gets SIGKILL and writes nothing; a SIGKILL alone
does not say why (a user's ``kill -9``, a container runtime). The cgroup's OOM-kill
counter does: the parent reads it before and after the cell, and only a counter that rose
makes a SIGKILL an ``oom``. Light: the parent imports this module (no torch).

    cgroup v2: /sys/fs/cgroup/<path>/memory.events          line "oom_kill N"   (path from "0::<path>")
    cgroup v1: /sys/fs/cgroup/memory/<path>/memory.oom_control  line "oom_kill N"   (path from "N:memory:<path>")
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
V2_FILE = "memory.events"
V1_FILE = "memory.oom_control"
FIELD = "oom_kill"


def cgroup_paths(proc_cgroup: Path = PROC_CGROUP) -> Dict[str, str]:
    """Hierarchy -> cgroup path of this process: ``"v2"`` from ``0::/p``, ``"memory"`` from a v1 memory line.

    Empty when the file is missing or unreadable.
    """
    try:
        text = Path(proc_cgroup).read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    paths: Dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["memory"] = path
    return paths


def _candidates(mount: Path, path: str) -> Iterator[Path]:
    """``mount/path``, then ever shorter tails of ``path``, down to ``mount`` itself.

    Inside a container the mount is often the container's own cgroup while
    /proc/self/cgroup still names the host's full path (no cgroup namespace), so the
    full path does not exist there but a tail of it (or the mount itself) does.
    """
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for start in range(len(parts) + 1):
        yield mount.joinpath(*parts[start:])


def read_field(path: Path, field: str = FIELD) -> Optional[int]:
    """Integer value of a ``key value`` line in a cgroup file; None when missing or unreadable."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == field:
            try:
                return int(words[1])
            except ValueError:
                return None
    return None


def oom_kill_count(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> Optional[int]:
    """OOM kills so far in this process's memory cgroup (v2 memory.events, else v1 memory.oom_control).

    None when no counter can be read (no cgroup memory controller, a kernel before 4.13,
    macOS): the caller then cannot tell an OOM kill from any other SIGKILL.
    """
    paths = cgroup_paths(proc_cgroup)
    root = Path(cgroup_root)
    # A v1 memory line means the memory controller lives on v1 (a hybrid host's v2 tree has no memory.events).
    if "memory" in paths:
        for folder in _candidates(root / "memory", paths["memory"]):
            count = read_field(folder / V1_FILE)
            if count is not None:
                return count
    if "v2" in paths:
        for folder in _candidates(root, paths["v2"]):
            count = read_field(folder / V2_FILE)
            if count is not None:
                return count
    return None


def signal_name(number: int) -> str:
    """SIGKILL for 9; ``signal 77`` for a number Python does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _seconds(value: float) -> str:
    """600.0 -> 600, 2.5 -> 2.5: the timeout as the user wrote it."""
    return f"{value:g}"


def classify_exit(
    code: Optional[int],
    timed_out: bool,
    timeout_s: float,
    oom_before: Optional[int],
    oom_after: Optional[int],
) -> Tuple[str, str]:
    """(status, one-line error) for a worker that ended without writing a record.

    ``code`` is the subprocess return code (negative: killed by that signal; None:
    unknown). A SIGKILL is ``oom`` only when the cgroup OOM-kill counter rose between
    ``oom_before`` and ``oom_after`` during the cell; otherwise its cause is not guessed.
    """
    if timed_out:
        return "timeout", f"killed after run.timeout_s={_seconds(timeout_s)} s"
    if code is None:
        return "crashed", "worker ended without writing a record (exit status unknown)"
    if code >= 0:
        return "crashed", f"worker exited with code {code} without writing a record"
    number = -code
    if number == signal.SIGKILL:
        if oom_before is not None and oom_after is not None and oom_after > oom_before:
            return "oom", (
                "worker killed by SIGKILL: the kernel OOM killer ran during the cell "
                f"(cgroup memory.events oom_kill {oom_before} -> {oom_after})"
            )
        return "crashed", "worker killed by SIGKILL, cause unknown"
    return "crashed", f"worker killed by {signal_name(number)}"
