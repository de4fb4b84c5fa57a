"""No cell outlives its sweep: a launcher's worker process ends, with the cells it runs, when the sweep parent dies.

Under the basic launcher a cell's worker is the sweep parent's child and dies with it (PR_SET_PDEATHSIG,
``harness.worker.ranks.die_with_parent``). Under a launcher that runs jobs in processes of its own (joblib's
loky workers, submitit's local jobs) the worker's parent is that process, which a ``kill -9`` of the sweep
parent does not stop: it is reparented to init and goes on training its cells, unwatched. So:

- the sweep parent exports who it is (``SWEEP_ENV``: host, pid and the kernel's start time of that pid, so a
  reused pid is not mistaken for it) before the launcher starts its processes, which inherit it;
- a job that finds itself in another process on the same host (``guard``) starts one daemon thread per
  process that looks at ``/proc/<pid>/stat`` every ``POLL_S``; once the sweep parent is gone (or a zombie),
  it kills the process group of every cell worker this process runs (``tracked``) and exits the process at
  once (``os._exit``), which also takes any worker's PR_SET_PDEATHSIG chain with it.

Polling rather than PR_SET_PDEATHSIG on the launcher's process: that signal follows the *thread* that forked
the process, and loky forks its workers from a manager thread that may end while the sweep goes on. On
another host (SLURM, a Ray cluster) the sweep parent cannot be watched this way, and nothing is started.

The guards stop the processes that run jobs, not the launcher's own helpers: loky's resource tracker, and a
local Ray instance's gcs_server, raylet, dashboard and runtime-env agents (measured: after ``kill -9`` of the
parent Ray's ``DashboardAgent`` and its sibling agent outlived it by more than 5 s). So ``export`` also starts a
``watchdog`` process: when the sweep parent ends without saying so (``kill -9``, a signal, an OOM kill; an
orderly interpreter exit writes ``done`` to its pipe first), it waits for the guards (``POLL_S + GRACE_S``) and
then SIGKILLs every process on this host whose *initial* environment holds this sweep's ``SWEEP_ENV`` value --
only what this sweep started. A Ray cluster given by address (or started with ``ray start``) never has it, and is
left alone; warm templates drop the harness's variables (``harness.store.warm.template_env``) and outlive a sweep
as designed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Set, Tuple

SWEEP_ENV = "HARNESS_SWEEP_PARENT"
"""``host:pid:start_ticks`` of the sweep parent, set by ``export`` and inherited by the launcher's processes."""
POLL_S = 0.5
"""How often a launcher's process checks that the sweep parent is still alive."""
GRACE_S = 2.0
"""How long a worker gets after SIGTERM (to let go of its GPU) before SIGKILL, once the sweep parent is gone."""

GONE: Optional[int] = None
"""The pid of the sweep parent once this process saw it die (a cell stopped then reads ``interrupted``)."""
_RUNNING: Set[Any] = set()
_LOCK = threading.Lock()
_WATCHING: Optional[threading.Thread] = None
_WATCHDOG: Optional[subprocess.Popen] = None


def start_ticks(pid: int) -> Optional[Tuple[str, int]]:
    """(state letter, start time in clock ticks since boot) of ``pid`` from ``/proc/<pid>/stat``; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def export(environ: Any = None) -> None:
    """Mark this process as the sweep parent in ``environ`` (default ``os.environ``), before any launcher starts;
    for ``os.environ`` also start this process's ``watchdog`` (once)."""
    environ = os.environ if environ is None else environ
    me = start_ticks(os.getpid())
    environ[SWEEP_ENV] = f"{socket.gethostname()}:{os.getpid()}:{me[1] if me else 0}"
    if environ is os.environ and me is not None:
        start_watchdog(environ[SWEEP_ENV])


def start_watchdog(value: str) -> None:
    """Start (once per process) the ``watchdog`` of this sweep parent, marked ``value``; an orderly exit of this
    interpreter tells it ``done`` first, so it stops nothing then."""
    global _WATCHDOG
    if _WATCHDOG is not None or not Path("/proc/self/environ").exists():
        return
    read_end, write_end = os.pipe()  # not inheritable: only the watchdog and this process hold it
    try:
        _WATCHDOG = subprocess.Popen([sys.executable, "-m", "harness.sweep.orphans", value], stdin=read_end,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:  # the guards still stop the jobs; only the launchers' helpers may then outlive a kill -9
        print(f"warning: no sweep watchdog ({exc}): a kill -9 of this process may leave Ray's agents behind",
              file=sys.stderr)
        os.close(write_end)
        return
    finally:
        os.close(read_end)
    done = os.fdopen(write_end, "w")

    def _done() -> None:
        with contextlib.suppress(OSError, ValueError):
            done.write("done\n")
            done.close()

    atexit.register(_done)


def of_sweep(value: str) -> List[int]:
    """Pids of this host's processes (this one aside) whose initial environment marks them as the sweep ``value``'s."""
    needle = f"{SWEEP_ENV}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def watchdog(value: str, stdin: int = 0) -> int:
    """Wait for the sweep parent ``value`` to end; when it ends without ``done`` on ``stdin``, give the launchers'
    guards ``POLL_S + GRACE_S`` to stop their cells, then SIGKILL whatever of the sweep is left. The exit code."""
    _, _, rest = value.partition(":")
    pid, _, ticks = rest.partition(":")
    if not pid.isdigit():
        return 2
    said = b""
    while alive(int(pid), int(ticks) if ticks.isdigit() else 0):
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready:
            chunk = os.read(stdin, 64)
            said += chunk
            if b"done" in said:
                return 0
            if not chunk:  # the pipe closed without "done": the parent died
                break
    time.sleep(POLL_S + GRACE_S + 0.5)  # the guards SIGTERM their cells and give them GRACE_S first
    for _ in range(3):  # a daemon may start a process while the first pass runs
        for left in of_sweep(value):
            with contextlib.suppress(OSError):
                os.kill(left, signal.SIGKILL)
        time.sleep(0.2)
    return 1


def parent_of_sweep(environ: Any = None) -> Optional[Tuple[int, int]]:
    """(pid, start ticks) of the sweep parent to watch from this process; None when there is none to watch here
    (not under a sweep, this process is the parent, another host, or ``/proc`` cannot tell)."""
    environ = os.environ if environ is None else environ
    host, _, rest = str(environ.get(SWEEP_ENV) or "").partition(":")
    pid, _, ticks = rest.partition(":")
    if not pid.isdigit() or host != socket.gethostname() or int(pid) == os.getpid() or start_ticks(os.getpid()) is None:
        return None
    return int(pid), int(ticks) if ticks.isdigit() else 0


def alive(pid: int, ticks: int) -> bool:
    """Whether ``pid`` is still the process that started at ``ticks`` and is not a zombie (dead, not yet reaped)."""
    seen = start_ticks(pid)
    return seen is not None and seen[0] != "Z" and (ticks == 0 or seen[1] == ticks)


@contextlib.contextmanager
def tracked(proc: Any) -> Iterator[None]:
    """Count ``proc`` (a cell worker leading its own process group) among those to kill if the sweep parent dies."""
    with _LOCK:
        _RUNNING.add(proc)
    try:
        yield
    finally:
        with _LOCK:
            _RUNNING.discard(proc)


def kill_tracked(grace_s: float = GRACE_S, sleep: Callable[[float], None] = time.sleep) -> None:
    """SIGTERM each tracked worker's process group, then SIGKILL what is left after ``grace_s``."""
    with _LOCK:
        groups = [proc.pid for proc in _RUNNING]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(OSError):
                os.killpg(pgid, sig)
        if sig == signal.SIGTERM and groups:
            sleep(grace_s)


def _watch(pid: int, ticks: int, exit_now: Callable[[int], None]) -> None:
    global GONE
    while alive(pid, ticks):
        time.sleep(POLL_S)
    GONE = pid
    print(f"the sweep parent (pid {pid}) is gone: stopping this launcher process (pid {os.getpid()}) and its cells",
          flush=True)
    kill_tracked()
    exit_now(1)


def guard(environ: Any = None, exit_now: Callable[[int], None] = os._exit) -> bool:
    """Start this process's watch on the sweep parent (once per process); True when one runs."""
    global _WATCHING
    target = parent_of_sweep(environ)
    if target is None:
        return False
    with _LOCK:
        if _WATCHING is None or not _WATCHING.is_alive():
            _WATCHING = threading.Thread(target=_watch, args=(*target, exit_now), name="harness-sweep-parent", daemon=True)
            _WATCHING.start()
    return True


if __name__ == "__main__":
    sys.exit(watchdog(sys.argv[1]))
