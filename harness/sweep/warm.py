"""Parent side of a warm cell (``run.worker``): a child forked by the warm template of this environment.

``start`` finds the template for the cell's interpreter and environment (``harness.store.warm``), starting
one detached when there is none (under a lock, so concurrent parents start one), and asks it to fork the
cell's worker with the cell's log, lock and lease descriptors. What comes back (``WarmProcess``) waits,
times out and is killed the way ``subprocess.Popen`` is, so ``harness.sweep.cell`` treats both alike: its
pid leads its own process group, ``wait`` gives the same return codes. A template that runs stale code
answers ``stale`` and is replaced; one that cannot start (or refuses: a thread or CUDA at import) makes
``start`` raise ``WarmUnavailable`` and the cell is spawned instead, with a line that says why.

The standard library's forkserver (``multiprocessing``, preloaded modules) was the first choice and cannot
keep the contract: it lives only as long as the one process that started it (each ``python -m harness``,
each joblib worker, each ``harness.evaluate`` would pay the imports again), it forks for one interpreter per
process (``set_executable``) and it has no place to refuse a fork on stale code. The template here is the
same design -- fork from a preloaded process, descriptors over SCM_RIGHTS, exit status over the socket --
shared by every parent of one environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from harness.files import file_lock, read_json
from harness.store.warm import (
    Channel,
    difference,
    fingerprint,
    refusal_path,
    send,
    socket_path,
    template_dir,
    template_env,
    template_key,
)

START_TIMEOUT_S = 180.0
"""How long a new template may take to import the training stack before the cell is spawned instead."""
_started: List[subprocess.Popen] = []  # templates this parent started, kept so that they are reaped


class WarmUnavailable(RuntimeError):
    """No template can fork this cell (it failed to start, refused, or stayed stale); spawn it instead."""


def supported() -> bool:
    """Whether this platform can fork from a template and pass descriptors (Linux, macOS)."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds")


def uses_bitsandbytes(config: Dict[str, Any]) -> bool:
    """True for a cell config that calls bitsandbytes: quantized weights or a bitsandbytes optimizer."""
    from harness.config.hf_names import BITSANDBYTES_OPTIMIZERS

    quant = str((config.get("quant") or {}).get("mode") or "none")
    return quant != "none" or str((config.get("train") or {}).get("optimizer")) in BITSANDBYTES_OPTIMIZERS


def mode(requested: str, device: str, python: Path, bitsandbytes: bool = False) -> str:
    """``warm`` or ``spawn`` for a cell: ``auto`` is warm for a CPU cell in the harness's own environment.

    A CUDA cell stays spawned under ``auto`` until a GPU check has shown that its counters read the same
    warm (a library that calls cuInit at import would make a forked child's CUDA unusable); a framework's own
    environment (Unsloth patches libraries when imported) is always spawned, and so is a cell that uses
    bitsandbytes (``bitsandbytes``): the template leaves it out, so that its other cells' memory is a spawned
    cell's (``harness.backends.optional.mark_absent``).
    """
    if requested == "spawn" or bitsandbytes or not supported() or os.path.abspath(python) != os.path.abspath(sys.executable):
        return "spawn"
    if requested == "warm":
        return "warm"
    return "warm" if device.split(":")[0] == "cpu" else "spawn"


class WarmProcess:
    """A forked cell seen as ``subprocess.Popen``: ``pid``, ``args``, ``returncode``, ``poll``, ``wait``."""

    def __init__(self, sock: socket.socket, channel: Channel, pid: int, args: Sequence[str]) -> None:
        self.sock = sock
        self.channel = channel
        self.pid = pid
        self.args = list(args)
        self.returncode: Optional[int] = None
        self.template_died = False
        """True when the template died before it told this cell's exit status (the cell died with it)."""

    def poll(self) -> Optional[int]:
        """The return code, or None while the cell runs."""
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait for the cell's exit status; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if self.returncode is not None or self.template_died:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            message, ended = self.channel.receive(timeout=left)
            if message is not None and "exit" in message:
                self.returncode = int(message["exit"])
                self.sock.close()
                return self.returncode
            if ended:
                self._orphaned()
                return self.returncode
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)

    def _orphaned(self) -> None:
        """The template is gone: make sure its child is too (it has PR_SET_PDEATHSIG), exit status unknown."""
        self.template_died = True
        self.sock.close()
        for _ in range(100):
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _connect(key: str) -> Optional[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path(key)))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None


def _log_tail(path: Path, lines: int = 1) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _launch(python: Path, env: Mapping[str, str], key: str) -> socket.socket:
    """Start the template of ``key`` detached and connect to it once it listens."""
    log_path = template_dir() / f"{key}.log"
    with open(log_path, "wb") as log:  # one template's log at a time
        proc = subprocess.Popen([str(python), "-m", "harness.worker.template", key], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=template_env(env), start_new_session=True)
    _started.append(proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        sock = _connect(key)
        if sock is not None:
            return sock
        if proc.poll() is not None:
            raise WarmUnavailable(f"the warm template exited with code {proc.returncode} ({_log_tail(log_path)})")
        time.sleep(0.05)
    proc.kill()
    raise WarmUnavailable(f"the warm template did not listen within {START_TIMEOUT_S:.0f} s (log: {log_path})")


def _refused(key: str, now: Mapping[str, Any]) -> Optional[str]:
    """Why the template of ``key`` would not serve, while nothing it depends on has changed since (else None)."""
    said = read_json(refusal_path(key))
    if said is None or difference(said.get("fingerprint") or {}, now) is not None:
        return None
    return str(said.get("reason"))


def _template(python: Path, env: Mapping[str, str], key: str, now: Mapping[str, Any]) -> socket.socket:
    sock = _connect(key)
    if sock is not None:
        return sock
    with file_lock(template_dir() / f"{key}.lock"):  # one parent starts it, the others connect
        sock = _connect(key)
        if sock is not None:
            return sock
        refused = _refused(key, now)
        if refused is not None:  # said once by the template that found it; not paid again by every cell
            raise WarmUnavailable(f"the warm template {refused}")
        return _launch(python, env, key)


def status(python: Path, env: Mapping[str, str], cwd: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """What the running template of ``python``, ``env`` and ``cwd`` (default: here) says of itself -- pid, threads,
    whether CUDA is initialised, its fingerprint and running children -- or None when none runs."""
    sock = _connect(template_key(str(python), env, cwd or os.getcwd()))
    if sock is None:
        return None
    with sock:
        send(sock, {"op": "status"})
        message, _ = Channel(sock).receive(timeout=30.0)
        return message


def start(cell_dir: Path, env: Mapping[str, str], fds: Sequence[int], python: Path = Path(sys.executable)) -> WarmProcess:
    """Fork the worker of ``cell_dir`` from this environment's template; ``fds[0]`` is its log (stdout and stderr),
    the rest are held open by the child (the cell's lock, a GPU lease). ``WarmUnavailable`` when none can."""
    try:
        return _start(cell_dir, env, fds, python)
    except OSError as exc:  # the template folder (another user's, unwritable) or its socket
        raise WarmUnavailable(f"no warm template: {exc}") from exc


def _start(cell_dir: Path, env: Mapping[str, str], fds: Sequence[int], python: Path) -> WarmProcess:
    key = template_key(str(python), env, os.getcwd())
    request = {"op": "fork", "env": dict(env), "cwd": os.getcwd(), "cell_dir": str(cell_dir)}
    args = [str(python), "-m", "harness.worker", str(cell_dir)]
    reason = "no answer"
    for _ in range(3):  # a stale template steps aside; its successor starts on the next try
        request["fingerprint"] = now = fingerprint()
        sock = _template(python, env, key, now)
        try:
            send(sock, request, fds)
            channel = Channel(sock)
            reply, _ = channel.receive(timeout=60.0)
        except OSError as exc:  # a template that stopped listening as we connected: try its successor
            reason = f"the warm template did not answer ({exc})"
            sock.close()
            continue
        if reply is not None and "pid" in reply:
            return WarmProcess(sock, channel, int(reply["pid"]), args)
        sock.close()
        reason = (reply or {}).get("stale") or (reply or {}).get("error") or "the template closed the connection"
    raise WarmUnavailable(f"the warm template would not fork: {reason}")
